#!/usr/bin/python3
"""A CherryPy backend that checks the CMS identity headers the way the WMCore ones do.

    /usr/bin/python3 cherrypy_cms_app.py --port N --key FILE [--threads 10]

Debian's python3-cherrypy3 on 127.0.0.1:N (server.thread_pool = --threads). The key is the
whole content of FILE, raw bytes, read once at start (as WMCore's RESTAuth does). Prints one
JSON line {"port": N} on stdout once listening.

  /cms/...   verified with cms_auth_check.verify on the headers exactly as CherryPy presents
             them (str values decoded from the wire as Latin-1), the HMAC message encoded as
             UTF-8 — what WMCore/REST/Auth.py computes on Python 3. A NONE status must carry a
             verifying HMAC too (the frontend signs `cms-authn-method: None`).
             Failure: 403 {"error": reason, "hmac_ok": false, "expected": ..., "received": ...,
             "message": ...} (reason: "missing status", "status not OK", "missing hmac",
             "duplicate header", "hmac mismatch", "bad role item ...").
             Success: 200 {"status", "method", "dn", "login", "name", "roles": {role: [items]},
             "hmac_ok": true, "headers": {lowercased name: value}, "request_uri",
             "name_utf8", "dn_utf8", "path"}; name_utf8/dn_utf8 are the Latin-1 values
             re-decoded as UTF-8 (the text the frontend meant), errors replaced.
  /public... 200 {"headers": {...}, "path": ...}, no verification.
Everything else is 404. JSON is ASCII-escaped, so non-ASCII values arrive intact as \\uXXXX.
"""

import argparse
import json
import sys
from pathlib import Path

import cherrypy

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cms_auth_check  # noqa: E402


def _utf8(value):
    if value is None:
        return None
    try:
        return value.encode("latin-1").decode("utf-8", "replace")
    except UnicodeEncodeError:  # not a Latin-1 decoded wire value
        return value


def _json(status, body):
    cherrypy.response.status = status
    cherrypy.response.headers["Content-Type"] = "application/json"
    return (json.dumps(body) + "\n").encode("ascii")


def _received_headers():
    return {name.lower(): value for name, value in cherrypy.request.headers.items()}


class Cms:
    def __init__(self, key):
        self.key = key

    @cherrypy.expose
    def default(self, *_args, **_kwargs):
        result = cms_auth_check.verify(dict(cherrypy.request.headers), self.key)
        headers = _received_headers()
        if not result.ok:
            # stderr, not cherrypy.log: the harness keeps stderr in a log file, stdout is a pipe.
            print("cms auth: 403 %s %s expected %s received %s" % (
                cherrypy.request.path_info, result.reason, result.expected, result.received),
                file=sys.stderr, flush=True)
            return _json(403, {"error": result.reason, "hmac_ok": False,
                               "expected": result.expected, "received": result.received,
                               "message": result.message})
        return _json(200, {
            "status": result.status, "method": result.method, "dn": result.dn,
            "login": result.login, "name": result.name, "roles": result.roles,
            "hmac_ok": True, "headers": headers,
            "request_uri": headers.get("cms-request-uri"),
            "name_utf8": _utf8(result.name), "dn_utf8": _utf8(result.dn),
            "path": cherrypy.request.path_info,
        })


class Root:
    def __init__(self, key):
        self.cms = Cms(key)

    @cherrypy.expose
    def public(self, *_args, **_kwargs):
        return _json(200, {"headers": _received_headers(), "path": cherrypy.request.path_info})


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--key", required=True, help="HMAC key file (raw bytes)")
    parser.add_argument("--threads", type=int, default=10)
    args = parser.parse_args()
    key = Path(args.key).read_bytes()

    cherrypy.config.update({
        "environment": "production",
        "engine.autoreload.on": False,
        "log.screen": False,
        "log.access_file": "",
        "log.error_file": "",
        "server.socket_host": "127.0.0.1",
        "server.socket_port": args.port,
        "server.thread_pool": args.threads,
        "server.socket_queue_size": 1024,
    })
    cherrypy.tree.mount(Root(key), "/")
    cherrypy.engine.signals.subscribe()
    cherrypy.engine.start()
    print(json.dumps({"port": args.port}), flush=True)
    cherrypy.engine.block()


if __name__ == "__main__":
    sys.exit(main())
