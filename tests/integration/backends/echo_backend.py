#!/usr/bin/python3
"""A small HTTP/1.1 test backend that reports what it received (python3 standard library only).

    echo_backend.py [--port N] [--name NAME]

Listens on 127.0.0.1:N (0 = any free port) for HTTP, and on a second free port for control
requests that never touch the counters. Prints one JSON line on stdout once both listen:
    {"port": N, "control_port": M}

Its own parser is strict enough to notice what a proxy should never forward: it takes CRLF
only, and records the framing it was sent ("content-length", "chunked", "none"), chunk
extensions and trailers, so a test can tell what the proxy re-framed.

Paths (the query string selects variants):
  /echo...            200 with JSON: method, target, version, headers ([name, value] as
                      received), framing, body_length, body_sha256, chunk_extensions, trailers,
                      connection id and the request's index on its connection. Any unknown path
                      is an echo too. ?chunked=1 answers chunked, ?close=1 closes afterwards.
  /big?bytes=N        N bytes of 'x' (Content-Length; ?chunked=1 for chunked)
  /sink               reads and discards the body; JSON {body_length, framing}
  ...?wait_ms=N       (any path) waits N ms before reading the request body
  /slow?ms=N          waits N ms, then echoes
  /die-mid            head with Content-Length: 1000000, 1000 bytes, close (?chunked=1: a
                      chunked head and one chunk, then close)
  /stale              echoes, then the connection turns stale: the next request on it is read,
                      logged with "dropped": true, and answered by closing the connection
  /status?code=N      answers with status N
  /interim?code=N     sends an interim 1xx response N (default 103), then the echo
  /headers-bad?kind=K a response head that breaks HTTP/1.1: cr, nul, lf, space-colon, dup-cl,
                      bad-cl, cl-te, status-line, obs-fold, huge (a 200 kB header)
  /hop                a response carrying hop-by-hop headers (Connection: X-Secret, X-Secret,
                      Keep-Alive, Proxy-Connection, Upgrade)
  /close-delimited    a response without Content-Length or chunked, ended by closing
  /http10             an HTTP/1.0 response with Content-Length

Control port (GET only):
  /__log              JSON list of every request received on the HTTP port, in arrival order;
                      an entry is added as soon as a head is parsed ("complete": false until its
                      body was read in full), and includes heads that failed to parse ("error")
  /__stats            {"current", "max", "accepted", "requests", "dropped"}: connections now
                      open, the most open at once, accepted so far
  /__reset            clears the log and counters (max becomes the current count)
"""

import argparse
import hashlib
import json
import socket
import sys
import threading
import time
import urllib.parse

MAX_HEAD = 128 * 1024
MAX_CONNECTIONS = 4096
BLOCK = b"x" * (1024 * 1024)


class HttpError(Exception):
    """The peer broke HTTP/1.1; answer 400 and close."""


class State:
    def __init__(self, name):
        self.name = name
        self.lock = threading.Lock()
        self.current = 0
        self.max = 0
        self.accepted = 0
        self.dropped = 0
        self.log = []
        self.next_conn_id = 1

    def opened(self):
        with self.lock:
            self.current += 1
            self.accepted += 1
            self.max = max(self.max, self.current)
            conn_id = self.next_conn_id
            self.next_conn_id += 1
            return conn_id

    def closed(self):
        with self.lock:
            self.current -= 1

    def add(self, entry):
        with self.lock:
            entry["seq"] = len(self.log)
            self.log.append(entry)

    def update(self, entry, **fields):
        with self.lock:
            entry.update(fields)

    def snapshot_log(self):
        with self.lock:
            return [dict(e) for e in self.log]

    def stats(self):
        with self.lock:
            return {"current": self.current, "max": self.max, "accepted": self.accepted,
                    "requests": len(self.log), "dropped": self.dropped, "name": self.name}

    def reset(self):
        with self.lock:
            self.log = []
            self.max = self.current
            self.accepted = 0
            self.dropped = 0


class Reader:
    """Buffered reads from a socket with strict CRLF line handling."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()
        self.scratch = bytearray(1024 * 1024)

    def fill(self):
        n = self.sock.recv_into(self.scratch)
        if n == 0:
            raise EOFError
        self.buf += memoryview(self.scratch)[:n]

    def read_head(self):
        """Returns the head up to and including CRLFCRLF, or None on a clean EOF before it."""
        start = 0
        while True:
            end = self.buf.find(b"\r\n\r\n", start)
            if end >= 0:
                head = bytes(self.buf[:end + 4])
                del self.buf[:end + 4]
                return head
            if len(self.buf) > MAX_HEAD:
                raise HttpError("head too large")
            start = max(0, len(self.buf) - 3)
            try:
                self.fill()
            except EOFError:
                if not self.buf:
                    return None
                raise HttpError("EOF inside head: %r" % bytes(self.buf[:200]))

    def read_line(self, limit=64 * 1024):
        start = 0
        while True:
            end = self.buf.find(b"\n", start)
            if end >= 0:
                if end == 0 or self.buf[end - 1] != 0x0D:
                    raise HttpError("bare LF")
                line = bytes(self.buf[:end - 1])
                del self.buf[:end + 1]
                if b"\r" in line:
                    raise HttpError("bare CR")
                return line
            if len(self.buf) > limit:
                raise HttpError("line too long")
            start = len(self.buf)
            self.fill()

    def read_data(self, n, sink):
        """Passes exactly n body bytes to sink(memoryview), without keeping them."""
        if self.buf:
            take = min(n, len(self.buf))
            sink(memoryview(self.buf)[:take])
            del self.buf[:take]
            n -= take
        view = memoryview(self.scratch)
        while n > 0:
            got = self.sock.recv_into(view, min(n, len(self.scratch)))
            if got == 0:
                raise EOFError
            sink(view[:got])
            n -= got

    def read_crlf(self):
        if self.read_line(16) != b"":
            raise HttpError("chunk data not followed by CRLF")


def parse_head(head):
    """Returns (method, target, version, headers) or raises HttpError."""
    text = head[:-4]
    lines = text.split(b"\r\n")
    for line in lines:
        if b"\n" in line or b"\r" in line:
            raise HttpError("bare CR or LF in head")
        if b"\0" in line:
            raise HttpError("NUL in head")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not parts[0] or not parts[1]:
        raise HttpError("bad request line %r" % lines[0])
    method, target, version = (p.decode("latin-1") for p in parts)
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise HttpError("bad version %r" % version)
    headers = []
    for line in lines[1:]:
        if line[:1] in (b" ", b"\t"):
            raise HttpError("obs-fold")
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip() or b" " in name:
            raise HttpError("bad header line %r" % line)
        headers.append([name.decode("latin-1"), value.strip(b" \t").decode("latin-1")])
    return method, target, version, headers


def header_values(headers, name):
    return [v for n, v in headers if n.lower() == name]


class Handler:
    """Serves one accepted connection, one request after another."""

    def __init__(self, state, sock, conn_id):
        self.state = state
        self.sock = sock
        self.conn_id = conn_id
        self.reader = Reader(sock)
        self.stale = False
        self.index = 0

    def run(self):
        try:
            while self.serve_one():
                pass
        except (EOFError, OSError):
            pass
        finally:
            try:
                self.sock.close()
            finally:
                self.state.closed()

    def serve_one(self):
        try:
            head = self.reader.read_head()
        except HttpError as e:
            self.state.add({"error": str(e), "conn_id": self.conn_id, "complete": False,
                            "time": time.time()})
            self.send_simple(400, b"bad request\n", close=True)
            return False
        if head is None:
            return False
        self.index += 1
        entry = {"conn_id": self.conn_id, "index": self.index, "complete": False,
                 "time": time.time(), "raw_head": head.decode("latin-1")}
        try:
            method, target, version, headers = parse_head(head)
        except HttpError as e:
            entry["error"] = str(e)
            self.state.add(entry)
            self.send_simple(400, b"bad request\n", close=True)
            return False
        entry.update(method=method, target=target, version=version, headers=headers)
        self.state.add(entry)
        if self.stale:
            with self.state.lock:
                self.state.dropped += 1
                entry["dropped"] = True
            # Close without an answer, as a backend whose keep-alive timer fired would.
            self.sock.close()
            return False

        url = urllib.parse.urlsplit(target)
        query = dict(urllib.parse.parse_qsl(url.query))
        path = url.path
        conn_tokens = ",".join(header_values(headers, "connection")).lower()
        keep = "close" not in conn_tokens and (version == "HTTP/1.1" or "keep-alive" in conn_tokens)

        hashing = path != "/sink" and path != "/big"
        if "wait_ms" in query:  # a backend slow to read the body: the proxy must not buffer it
            time.sleep(int(query["wait_ms"]) / 1000.0)
        try:
            body = self.read_body(headers, entry, hashing)
        except HttpError as e:
            self.state.update(entry, error=str(e))
            self.send_simple(400, b"bad request body\n", close=True)
            return False
        self.state.update(entry, complete=True, **body)
        if query.get("close") == "1":
            keep = False
        return self.respond(method, path, query, entry, keep)

    def read_body(self, headers, entry, hashing):
        te = header_values(headers, "transfer-encoding")
        cl = header_values(headers, "content-length")
        digest = hashlib.sha256() if hashing else None
        total = [0]

        def sink(view):
            total[0] += len(view)
            if digest is not None:
                digest.update(view)

        extensions, trailers = [], []
        if te:
            if cl or len(te) != 1 or te[0].lower() != "chunked":
                raise HttpError("bad framing")
            framing = "chunked"
            while True:
                line = self.reader.read_line(4096)
                size_text, _, ext = line.partition(b";")
                if ext:
                    extensions.append(ext.decode("latin-1"))
                if not size_text or len(size_text) > 16 or \
                        any(c not in b"0123456789abcdefABCDEF" for c in size_text):
                    raise HttpError("bad chunk size %r" % line)
                size = int(size_text, 16)
                if size == 0:
                    break
                self.reader.read_data(size, sink)
                self.reader.read_crlf()
            while True:
                line = self.reader.read_line(16 * 1024)
                if not line:
                    break
                trailers.append(line.decode("latin-1"))
        elif cl:
            if len(cl) != 1 or not cl[0].isdigit():
                raise HttpError("bad content-length")
            framing = "content-length"
            self.reader.read_data(int(cl[0]), sink)
        else:
            framing = "none"
        return {"framing": framing, "body_length": total[0],
                "body_sha256": digest.hexdigest() if digest else None,
                "chunk_extensions": extensions, "trailers": trailers}

    # Responses.

    def send_simple(self, status, body, close=False, extra=b""):
        head = b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n%s%s\r\n" % (
            status, len(body), extra, b"Connection: close\r\n" if close else b"")
        self.sock.sendall(head + body)

    def send_json(self, method, obj, keep, chunked=False, status=200):
        body = json.dumps(obj).encode()
        head = [b"HTTP/1.1 %d OK" % status, b"Content-Type: application/json",
                b"X-Backend: " + self.state.name.encode()]
        if not keep:
            head.append(b"Connection: close")
        if chunked:
            head.append(b"Transfer-Encoding: chunked")
            payload = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body) if body else b"0\r\n\r\n"
        else:
            head.append(b"Content-Length: %d" % len(body))
            payload = body
        data = b"\r\n".join(head) + b"\r\n\r\n"
        if method != "HEAD":
            data += payload
        self.sock.sendall(data)
        return keep

    def echo_object(self, entry):
        with self.state.lock:
            return {k: entry.get(k) for k in (
                "method", "target", "version", "headers", "framing", "body_length",
                "body_sha256", "chunk_extensions", "trailers", "conn_id", "index")} | {
                    "backend": self.state.name}

    def respond(self, method, path, query, entry, keep):
        if path == "/big":
            return self.send_big(method, int(query.get("bytes", "0")), query.get("chunked") == "1",
                                 keep)
        if path == "/sink":
            return self.send_json(method, {"body_length": entry["body_length"],
                                           "framing": entry["framing"]}, keep)
        if path == "/slow":
            time.sleep(int(query.get("ms", "1000")) / 1000.0)
        if path == "/die-mid":
            if query.get("chunked") == "1":
                data = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3e8\r\n" +
                        b"x" * 1000 + b"\r\n")
            else:
                data = b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n" + b"x" * 1000
            self.sock.sendall(data)
            time.sleep(0.05)
            self.sock.shutdown(socket.SHUT_RDWR)
            return False
        if path == "/stale":
            self.stale = True
            return self.send_json(method, self.echo_object(entry), True)
        if path == "/status":
            code = int(query.get("code", "200"))
            if code in (204, 304) or method == "HEAD":
                self.sock.sendall(b"HTTP/1.1 %d X\r\n%s\r\n" % (
                    code, b"" if keep else b"Connection: close\r\n"))
                return keep
            self.send_simple(code, b"status %d\n" % code, close=not keep)
            return keep
        if path == "/interim":
            code = int(query.get("code", "103"))
            self.sock.sendall(b"HTTP/1.1 %d Interim\r\nLink: </style.css>; rel=preload\r\n\r\n"
                              % code)
        if path == "/headers-bad":
            return self.send_bad(query.get("kind", "cr"))
        if path == "/hop":
            body = b"hop\n"
            self.sock.sendall(
                b"HTTP/1.1 200 OK\r\nConnection: X-Secret\r\nX-Secret: 1\r\n"
                b"Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\n"
                b"Upgrade: h2c\r\nX-Kept: yes\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            return keep
        if path == "/close-delimited":
            self.sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n" +
                              b"close-delimited body\n" * 100)
            self.sock.shutdown(socket.SHUT_RDWR)
            return False
        if path == "/http10":
            body = b"http/1.0 body\n"
            self.sock.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            return False
        return self.send_json(method, self.echo_object(entry), keep,
                              chunked=query.get("chunked") == "1")

    def send_big(self, method, size, chunked, keep):
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
        head += b"Transfer-Encoding: chunked\r\n" if chunked else b"Content-Length: %d\r\n" % size
        if not keep:
            head += b"Connection: close\r\n"
        self.sock.sendall(head + b"\r\n")
        if method == "HEAD":
            return keep
        view = memoryview(BLOCK)
        left = size
        while left > 0:
            n = min(left, len(BLOCK))
            if chunked:
                self.sock.sendall(b"%x\r\n" % n)
                self.sock.sendall(view[:n])
                self.sock.sendall(b"\r\n")
            else:
                self.sock.sendall(view[:n])
            left -= n
        if chunked:
            self.sock.sendall(b"0\r\n\r\n")
        return keep

    def send_bad(self, kind):
        body = b"bad\n"
        heads = {
            "cr": b"HTTP/1.1 200 OK\r\nX-Bad: a\rb\r\nContent-Length: 4\r\n\r\n",
            "nul": b"HTTP/1.1 200 OK\r\nX-Bad: a\0b\r\nContent-Length: 4\r\n\r\n",
            "lf": b"HTTP/1.1 200 OK\nX-Bad: a\nContent-Length: 4\n\n",
            "space-colon": b"HTTP/1.1 200 OK\r\nContent-Length : 4\r\n\r\n",
            "dup-cl": b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\n",
            "bad-cl": b"HTTP/1.1 200 OK\r\nContent-Length: +4\r\n\r\n",
            "cl-te": b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n",
            "status-line": b"HTTP/1.1 2000 OK\r\nContent-Length: 4\r\n\r\n",
            "obs-fold": b"HTTP/1.1 200 OK\r\nX-Bad: a\r\n b\r\nContent-Length: 4\r\n\r\n",
            "huge": b"HTTP/1.1 200 OK\r\nX-Big: " + b"h" * 200000 + b"\r\nContent-Length: 4\r\n\r\n",
        }
        self.sock.sendall(heads[kind] + body)
        time.sleep(0.05)
        return False


def serve_control(state, sock):
    try:
        reader = Reader(sock)
        while True:
            head = reader.read_head()
            if head is None:
                return
            method, target, _, _ = parse_head(head)
            path = urllib.parse.urlsplit(target).path
            if path == "/__log":
                obj = state.snapshot_log()
            elif path == "/__stats":
                obj = state.stats()
            elif path == "/__reset":
                state.reset()
                obj = state.stats()
            else:
                sock.sendall(b"HTTP/1.1 404 X\r\nContent-Length: 0\r\n\r\n")
                continue
            body = json.dumps(obj).encode()
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    except (EOFError, OSError, HttpError):
        pass
    finally:
        sock.close()


def listen(port):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(1024)
    return sock


def accept_loop(sock, serve):
    while True:
        conn, _ = sock.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--name", default="echo")
    args = parser.parse_args()
    state = State(args.name)
    slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
    data = listen(args.port)
    control = listen(0)

    def serve_data(conn):
        if not slots.acquire(blocking=False):
            conn.close()
            return
        try:
            conn.settimeout(600)
            Handler(state, conn, state.opened()).run()
        finally:
            slots.release()

    threading.Thread(target=accept_loop, args=(control, lambda c: serve_control(state, c)),
                     daemon=True).start()
    print(json.dumps({"port": data.getsockname()[1], "control_port": control.getsockname()[1]}),
          flush=True)
    try:
        accept_loop(data, serve_data)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
