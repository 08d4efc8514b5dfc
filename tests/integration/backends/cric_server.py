#!/usr/bin/python3
"""A stand-in for the CRIC API that serves the CMS user map over HTTPS (contract section 3).

    /usr/bin/python3 cric_server.py --port N --cert PEM --key KEY
                                    (--ca-dir DIR | --ca-file FILE) --map FILE
                                    [--require-client-cert]

Binds 127.0.0.1:N (0 picks a free port) and prints one JSON line {"port": N} on stdout
(flushed) once listening.

  GET (or HEAD) any path: 200, Content-Type application/json, the content of --map read at each
  request, so a test changes the answer by rewriting the file (write a temporary file and
  rename it over the map, so a request never sees half a file). When a file named
  <map>.status exists and holds an integer, that status is answered instead with a short JSON
  body {"error": "simulated status N"} (tests simulate CRIC failures this way; remove the file
  to recover). A missing map file answers 503.

TLS: the server certificate is --cert/--key; client certificates are checked against --ca-dir
(a hashed directory, <hash>.0) or --ca-file. Without --require-client-cert one is asked for but
optional; with it, a handshake without a valid one fails (ssl.CERT_REQUIRED), as a robot
certificate is required by the real API. The TLS handshake runs in the request's thread, so a
stalled client never blocks the others.

Each request is logged on stderr: client address, client certificate subject (slash form, "-"
when none), method, path, status.
"""

import argparse
import http.server
import json
import socketserver
import ssl
import sys
from pathlib import Path

HANDSHAKE_TIMEOUT = 10.0

_SHORT_NAMES = {
    "domainComponent": "DC", "countryName": "C", "stateOrProvinceName": "ST",
    "localityName": "L", "organizationName": "O", "organizationalUnitName": "OU",
    "commonName": "CN", "emailAddress": "emailAddress", "userId": "UID",
}


def subject_of(cert):
    """The peer certificate's subject in OpenSSL's slash form, "-" when there is none."""
    if not cert or "subject" not in cert:
        return "-"
    return "".join("/%s=%s" % (_SHORT_NAMES.get(k, k), v)
                   for rdn in cert["subject"] for k, v in rdn)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "cric-stand-in"
    timeout = 30

    def _answer(self, head_only):
        map_path = self.server.map_path
        status_path = map_path.with_name(map_path.name + ".status")
        status, body = 200, None
        try:
            text = status_path.read_text().strip()
        except OSError:
            text = None
        if text is not None:
            try:
                status = int(text)
            except ValueError:
                status = 500
            body = (json.dumps({"error": "simulated status %d" % status}) + "\n").encode()
        else:
            try:
                body = map_path.read_bytes()
            except OSError as e:
                status = 503
                body = (json.dumps({"error": "map unreadable: %s" % e.strerror}) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head_only:
            self.wfile.write(body)

    def do_GET(self):
        self._answer(False)

    def do_HEAD(self):
        self._answer(True)

    def log_request(self, code="-", size="-"):
        try:
            peer = subject_of(self.connection.getpeercert())
        except (ValueError, AttributeError):
            peer = "-"
        sys.stderr.write("cric: %s \"%s\" %s %s\n" % (self.client_address[0], peer,
                                                     self.requestline, code))
        sys.stderr.flush()

    def log_message(self, format, *args):  # noqa: A002 (the base class's signature)
        sys.stderr.write("cric: %s %s\n" % (self.client_address[0], format % args))
        sys.stderr.flush()


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, context, map_path):
        self.context = context
        self.map_path = map_path
        super().__init__(address, Handler)

    def get_request(self):
        sock, address = self.socket.accept()
        return self.context.wrap_socket(sock, server_side=True,
                                        do_handshake_on_connect=False), address

    def finish_request(self, request, client_address):
        # In the request's thread: a handshake that fails (no or a bad client certificate with
        # --require-client-cert) is logged and ends only this connection.
        try:
            request.settimeout(HANDSHAKE_TIMEOUT)
            request.do_handshake()
        except (ssl.SSLError, OSError) as e:
            sys.stderr.write("cric: %s TLS handshake failed: %s\n" % (client_address[0], e))
            sys.stderr.flush()
            return
        super().finish_request(request, client_address)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert", required=True, help="server certificate (PEM)")
    parser.add_argument("--key", required=True, help="server key (PEM)")
    cas = parser.add_mutually_exclusive_group(required=True)
    cas.add_argument("--ca-dir", help="hashed CA directory for client certificates")
    cas.add_argument("--ca-file", help="CA bundle for client certificates")
    parser.add_argument("--map", required=True, help="the JSON served, read at each request")
    parser.add_argument("--require-client-cert", action="store_true")
    args = parser.parse_args()

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.cert, args.key)
    context.load_verify_locations(cafile=args.ca_file, capath=args.ca_dir)
    context.verify_mode = ssl.CERT_REQUIRED if args.require_client_cert else ssl.CERT_OPTIONAL
    # Grid clients present proxies too; accept RFC 3820 proxy certificates.
    context.verify_flags |= getattr(ssl, "VERIFY_ALLOW_PROXY_CERTS", 0)

    server = Server(("127.0.0.1", args.port), context, Path(args.map))
    print(json.dumps({"port": server.server_address[1]}), flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
