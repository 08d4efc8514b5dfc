#!/usr/bin/python3
"""A CherryPy backend like the CMS ones (Debian python3-cherrypy3), that counts its connections.

    /usr/bin/python3 cherrypy_app.py --port N --control-port M [--threads 10]

Serves on 127.0.0.1:N with server.thread_pool = 10, and the same app on 127.0.0.1:M for
control requests, whose connections are not counted. Prints one JSON line once both listen.

Counting: every TCP connection cheroot accepts on port N becomes a CountingConnection; the
count goes up when cheroot creates it and down the first time cheroot closes it (just before
its FIN is sent), under a lock, so `max` is the most connections cheroot held open at once.
A sampler thread also counts ESTABLISHED sockets on port N in /proc/net/tcp every 20
milliseconds ("sampled_max"), which sees connections still in the kernel's accept queue; it is
only indicative, as the kernel does not list all sockets atomically (a connection closing while
another opens can be listed twice).

  /work?ms=N   sleeps N ms (default 20), answers JSON {"headers": {...}, "thread": name}
  /stats       {"current", "max", "accepted", "sampled_max", "requests"}
  /reset       max and sampled_max become the current counts, accepted and requests 0
"""

import argparse
import json
import sys
import threading
import time

import cheroot.server
import cherrypy


class Counters:
    lock = threading.Lock()
    port = 0
    current = 0
    max = 0
    accepted = 0
    requests = 0
    sampled_max = 0

    @classmethod
    def snapshot(cls):
        with cls.lock:
            return {"current": cls.current, "max": cls.max, "accepted": cls.accepted,
                    "sampled_max": cls.sampled_max, "requests": cls.requests}


class CountingConnection(cheroot.server.HTTPConnection):
    def __init__(self, server, sock, *args, **kwargs):
        super().__init__(server, sock, *args, **kwargs)
        self._counted = False
        try:
            local_port = sock.getsockname()[1]
        except OSError:
            return
        if local_port == Counters.port:
            self._counted = True
            with Counters.lock:
                Counters.current += 1
                Counters.accepted += 1
                Counters.max = max(Counters.max, Counters.current)

    def close(self):
        # Count the connection as gone before its FIN leaves: a proxy that waits for the FIN
        # before opening a replacement must never be seen with one connection too many.
        counted, self._counted = self._counted, False
        if counted:
            with Counters.lock:
                Counters.current -= 1
        super().close()


def count_established(port):
    """ESTABLISHED TCP sockets whose local port is `port` (IPv4)."""
    wanted = ":%04X" % port
    n = 0
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split(None, 4)
            if fields[1].endswith(wanted) and fields[3] == "01":
                n += 1
    return n


def sampler():
    while True:
        try:
            n = count_established(Counters.port)
        except OSError:
            n = 0
        with Counters.lock:
            Counters.sampled_max = max(Counters.sampled_max, n)
        time.sleep(0.02)


class App:
    @cherrypy.expose
    @cherrypy.tools.json_out()
    def work(self, ms="20", **_):
        with Counters.lock:
            Counters.requests += 1
        time.sleep(int(ms) / 1000.0)
        return {"headers": dict(cherrypy.request.headers),
                "thread": threading.current_thread().name}

    @cherrypy.expose
    @cherrypy.tools.json_out()
    def stats(self):
        return Counters.snapshot()

    @cherrypy.expose
    @cherrypy.tools.json_out()
    def reset(self):
        with Counters.lock:
            Counters.max = Counters.current
            Counters.accepted = 0
            Counters.requests = 0
            Counters.sampled_max = count_established(Counters.port)
        return Counters.snapshot()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--control-port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=10)
    args = parser.parse_args()
    Counters.port = args.port

    # Must be set before CherryPy builds its servers (it sets RequestHandlerClass on it).
    cheroot.server.HTTPServer.ConnectionClass = CountingConnection

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
    control = cherrypy._cpserver.Server()
    control.socket_host = "127.0.0.1"
    control.socket_port = args.control_port
    control.thread_pool = 4
    control.subscribe()

    cherrypy.tree.mount(App(), "/")
    cherrypy.engine.signals.subscribe()
    threading.Thread(target=sampler, daemon=True).start()
    cherrypy.engine.start()
    print(json.dumps({"port": args.port, "control_port": args.control_port}), flush=True)
    cherrypy.engine.block()


if __name__ == "__main__":
    sys.exit(main())
