#!/usr/bin/python3
"""The demo backend behind cmsfront: a CherryPy app that shows what reached it.

CMS Python services are CherryPy applications, so the demo uses the same framework with the
same kind of thread pool (server.thread_pool = 10). Every page answers with JSON describing the
request as the backend received it -- method, target, and the request headers --
so `tools/demo.sh` can show that cmsfront sets X-Forwarded-* and drops spoofed cms-* headers.

    /usr/bin/python3 tools/demo_backend.py [--host 127.0.0.1] [--port 8246]

Stops on SIGTERM or SIGINT.
"""

import argparse
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
    }


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
    arguments = parser.parse_args()

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
