#!/usr/bin/python3
"""The demo backend behind cmsfront: a CherryPy app that shows what reached it.

CMS Python services are CherryPy applications, so the demo uses the same framework with the
same kind of thread pool (server.thread_pool = 10). Every page answers with JSON describing the
request as the backend received it -- method, target, and the request headers --
so `tools/demo.sh` can show that cmsfront sets X-Forwarded-* and drops spoofed cms-* headers.
With --hmac-key it also checks cms-authn-hmac the way WMCore's Python 3 backends do and says
so in "cms_auth" (the demo's stand-in for a CMS service that trusts the frontend's headers).

    /usr/bin/python3 tools/demo_backend.py [--host 127.0.0.1] [--port 8246] [--hmac-key FILE]

Stops on SIGTERM or SIGINT.
"""

import argparse
import hashlib
import hmac
import json

import cherrypy


def describe_request():
    request = cherrypy.request
    return {
        "method": request.method,
        "path": request.path_info,
        "query": request.query_string,
        "protocol": request.server_protocol,
        "peer": f"{request.remote.ip}:{request.remote.port}",
        # As CherryPy presents them: names title-cased, one value per name. Remote-Addr is
        # CherryPy's own pseudo-header (the peer), not something that was sent.
        "headers": {
            name: value
            for name, value in sorted(request.headers.items())
            if name != "Remote-Addr"
        },
        **({"cms_auth": check_cms_auth(request.headers)} if HMAC_KEY is not None else {}),
    }


HMAC_KEY = None


def check_cms_auth(headers):
    """WMCore's check: the cms-authn*/cms-authz* headers (not cms-authn-hmac), sorted by name,
    as "h<len>v<len>"... "#" name+value..., HMAC-SHA1 over the UTF-8 encoding of that text
    (CherryPy hands header values over decoded as Latin-1)."""
    signed = sorted((name.lower(), value) for name, value in headers.items()
                    if name.lower()[:9] in ("cms-authn", "cms-authz")
                    and name.lower() != "cms-authn-hmac")
    if not signed:
        return {"present": False}
    prefix = "".join("h%xv%x" % (len(name), len(value)) for name, value in signed)
    suffix = "".join(name + value for name, value in signed)
    expected = hmac.new(HMAC_KEY, (prefix + "#" + suffix).encode("utf-8"),
                        hashlib.sha1).hexdigest()
    received = next((v for n, v in headers.items() if n.lower() == "cms-authn-hmac"), "")
    return {"present": True, "hmac_ok": hmac.compare_digest(expected, received),
            "login": next((v for n, v in signed if n == "cms-authn-login"), None)}


def json_response(document):
    cherrypy.response.headers["Content-Type"] = "application/json"
    return (json.dumps(document, indent=2) + "\n").encode()


class DemoApp:
    @cherrypy.expose
    def index(self):
        document = describe_request()
        document["hint"] = "try /echo: it reports the headers this backend received"
        return json_response(document)

    # /echo and anything below it, any method; a request body is drained (not kept) and its
    # size reported, so uploads of any size work.
    @cherrypy.expose
    def echo(self, *_segments, **_params):
        document = describe_request()
        received = 0
        while chunk := cherrypy.request.rfile.read(65536):
            received += len(chunk)
        document["body_bytes"] = received
        return json_response(document)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8246)
    parser.add_argument("--hmac-key", help="file with the key cmsfront signs with")
    arguments = parser.parse_args()
    global HMAC_KEY
    if arguments.hmac_key:
        with open(arguments.hmac_key, "rb") as key_file:
            HMAC_KEY = key_file.read()

    cherrypy.config.update({
        "server.socket_host": arguments.host,
        "server.socket_port": arguments.port,
        "server.thread_pool": 10,
        "engine.autoreload.on": False,
        "log.screen": False,
        "request.show_tracebacks": False,
        # Let the request body reach the handler raw instead of being parsed as a form.
        "request.process_request_body": False,
    })
    cherrypy.tree.mount(DemoApp(), "/", {"/": {}})
    cherrypy.engine.signals.subscribe()  # SIGTERM/SIGINT stop the engine, SIGHUP restarts
    cherrypy.engine.start()
    print(f"demo backend: listening on http://{arguments.host}:{arguments.port}", flush=True)
    cherrypy.engine.block()


if __name__ == "__main__":
    main()
