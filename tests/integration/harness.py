"""Processes and clients for the integration tests: cmsfront, the test backends, raw HTTP/1.1.

Everything binds 127.0.0.1 only. Every process started here is registered so the session can
stop whatever a failing test left behind (terminate, wait, kill on timeout).
"""

import http.client
import json
import os
import select
import signal
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
PYTHON = "/usr/bin/python3"  # Debian's: python3-cherrypy3, python3-requests, python3-pytest
BIN = os.environ.get("CMSFRONT_BIN", str(REPO / "build" / "cmsfront"))
EX_CONFIG = 78

_started = []
_started_lock = threading.Lock()


def free_port():
    """A port that was free a moment ago (bind 0, close, reuse)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, timeout=20.0, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def stop_process(proc, sig=signal.SIGTERM, timeout=15.0):
    """Signals proc and waits; kills it after timeout. Returns the exit status."""
    if proc.poll() is None:
        try:
            proc.send_signal(sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    with _started_lock:
        if proc in _started:
            _started.remove(proc)
    return proc.returncode


def stop_everything():
    with _started_lock:
        procs = list(_started)
    for proc in procs:
        stop_process(proc, timeout=5)


def _spawn(argv, stdout, stderr, **kwargs):
    proc = subprocess.Popen(argv, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL,
                            **kwargs)
    with _started_lock:
        _started.append(proc)
    return proc


def _read_ready_line(proc, timeout, what, log_path):
    """The JSON line a backend prints once it listens."""
    deadline = time.monotonic() + timeout
    line = b""
    while time.monotonic() < deadline and not line.endswith(b"\n"):
        ready, _, _ = select.select([proc.stdout], [], [], 0.1)
        if ready:
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                break
            line += chunk
    if not line.endswith(b"\n"):
        stop_process(proc, timeout=2)
        raise RuntimeError("%s did not start: %s" % (what, Path(log_path).read_text()[-2000:]))
    return json.loads(line)


def http_get_json(port, path, timeout=10):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise RuntimeError("GET %s on port %d: %d %r" % (path, port, resp.status, body))
        return json.loads(body)
    finally:
        conn.close()


class EchoBackend:
    """tests/integration/backends/echo_backend.py as a subprocess."""

    def __init__(self, workdir, name="echo"):
        self.name = name
        self.log_path = Path(workdir) / ("echo-%s-%d.log" % (name, time.monotonic_ns()))
        self._log_file = open(self.log_path, "wb")
        self.proc = _spawn([PYTHON, str(HERE / "backends" / "echo_backend.py"), "--name", name],
                           subprocess.PIPE, self._log_file)
        ports = _read_ready_line(self.proc, 20, "echo backend", self.log_path)
        self.port = ports["port"]
        self.control_port = ports["control_port"]
        self.url = "http://127.0.0.1:%d" % self.port

    def log(self):
        return http_get_json(self.control_port, "/__log")

    def stats(self):
        return http_get_json(self.control_port, "/__stats")

    def reset(self):
        return http_get_json(self.control_port, "/__reset")

    def stop(self):
        stop_process(self.proc, timeout=5)
        self._log_file.close()


class CherryPyBackend:
    """tests/integration/backends/cherrypy_app.py as a subprocess (Debian's CherryPy)."""

    def __init__(self, workdir, threads=10):
        self.port = free_port()
        self.control_port = free_port()
        self.log_path = Path(workdir) / ("cherrypy-%d.log" % time.monotonic_ns())
        self._log_file = open(self.log_path, "wb")
        self.proc = _spawn([PYTHON, str(HERE / "backends" / "cherrypy_app.py"),
                            "--port", str(self.port), "--control-port", str(self.control_port),
                            "--threads", str(threads)], subprocess.PIPE, self._log_file)
        _read_ready_line(self.proc, 30, "cherrypy backend", self.log_path)
        self.url = "http://127.0.0.1:%d" % self.port

    def stats(self):
        return http_get_json(self.control_port, "/stats")

    def reset(self):
        return http_get_json(self.control_port, "/reset")

    def stop(self):
        stop_process(self.proc, timeout=10)
        self._log_file.close()


class CmsCherryPyBackend:
    """backends/cherrypy_cms_app.py: a CherryPy backend that verifies cms-authn-hmac the way
    WMCore's Python 3 services do (403 on a mismatch) and answers with what it saw."""

    def __init__(self, workdir, key_path, threads=10):
        self.port = free_port()
        self.log_path = Path(workdir) / ("cherrypy-cms-%d.log" % time.monotonic_ns())
        self._log_file = open(self.log_path, "wb")
        self.proc = _spawn([PYTHON, str(HERE / "backends" / "cherrypy_cms_app.py"),
                            "--port", str(self.port), "--key", str(key_path),
                            "--threads", str(threads)], subprocess.PIPE, self._log_file)
        _read_ready_line(self.proc, 30, "cherrypy cms backend", self.log_path)
        self.url = "http://127.0.0.1:%d" % self.port

    def stop(self):
        stop_process(self.proc, timeout=10)
        self._log_file.close()


def native_backend_binary():
    """cmsfront-test-backend: in $CMSFRONT_BUILD when set, else next to the cmsfront binary."""
    build = os.environ.get("CMSFRONT_BUILD")
    return (Path(build) if build else Path(BIN).parent) / "cmsfront-test-backend"


class VerifyingBackend:
    """cmsfront-test-backend --hmac-key: verifies cms-authn-hmac byte for byte (as Go
    backends do) on /verify..., 403 on a mismatch; /echo... echoes every header."""

    def __init__(self, workdir, key_path):
        binary = native_backend_binary()
        if not binary.exists():
            raise RuntimeError("%s is not built" % binary)
        self.log_path = Path(workdir) / ("native-verify-%d.log" % time.monotonic_ns())
        self._log_file = open(self.log_path, "wb")
        self.proc = _spawn([str(binary), "--listen", "127.0.0.1:0", "--hmac-key", str(key_path)],
                           subprocess.PIPE, self._log_file)
        line = self.proc.stdout.readline().decode()
        if not line.startswith("listening on "):
            self.stop()
            raise RuntimeError("native backend did not start: %r %s" % (
                line, self.log_path.read_text()))
        self.port = int(line.rsplit(":", 1)[1])
        self.url = "http://127.0.0.1:%d" % self.port

    def stop(self):
        stop_process(self.proc, timeout=5)
        self._log_file.close()


# Configuration.

def _toml_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string for the ASCII text used here
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(value)


def _toml_table(header, values):
    lines = [header]
    lines += ["%s = %s" % (k, _toml_value(v)) for k, v in values.items() if v is not None]
    return "\n".join(lines) + "\n"


class Listener:
    def __init__(self, tls=True, redirect_to_https=False):
        self.port = free_port()
        self.tls = tls
        self.redirect_to_https = redirect_to_https


# The key the tests' backends verify cms-authn-hmac with (20 raw bytes, like production's).
TEST_HMAC_KEY = b"cmsfront-test-key-20"


def default_auth(pki, routes, auth):
    """The [auth] table, completed for routes that need an identity: cmsfront refuses those
    without an HMAC key and a user map, so tests that are not about the map get a key file and
    a one-user map in the PKI directory, with unknown_users = "forward" (every verified
    certificate passes, with its method and DN)."""
    protected = any(route.get("auth", "none") != "none" for route in routes)
    auth = dict(auth or {})
    if not protected:
        return auth
    if "hmac_key" not in auth:
        key = Path(pki) / "test-hmac.key"
        if not key.exists():
            key.write_bytes(TEST_HMAC_KEY)
        auth["hmac_key"] = str(key)
    if "user_map" not in auth and "user_map_url" not in auth:
        user_map = Path(pki) / "test-usermap.json"
        if not user_map.exists():
            user_map.write_text(json.dumps([{
                "DN": "/DC=org/DC=example/CN=placeholder", "ID": 1, "LOGIN": "placeholder",
                "NAME": "Placeholder", "ROLES": {}}]))
        auth["user_map"] = str(user_map)
        auth.setdefault("unknown_users", "forward")
    return auth


def render_config(pki, listeners, backends, routes, limits=None, server=None, tls=None,
                  auth=None, server_cert=None, metrics=None, access_log=None):
    """TOML text. backends: {name: {"servers": [...], ...}}; routes: list of dicts.
    tls: extra keys of [tls.main] (e.g. client_certificates, ca_dir); auth: the [auth] table;
    server_cert: (certificate, key) paths instead of the PKI's server.pem/server.key;
    metrics: the [metrics] table ({} serves the defaults, 127.0.0.1:9091 /metrics);
    access_log: the [access_log] table (e.g. {"path": str(log), "format": "json"}).
    None leaves a section out."""
    parts = [_toml_table("[server]", {"workers": 2, "max_connections": 5000,
                                      "shutdown_timeout": "10s"} | (server or {}))]
    for listener in listeners:
        values = {"address": "127.0.0.1:%d" % listener.port}
        if listener.tls:
            values["tls"] = "main"
        if listener.redirect_to_https:
            values["redirect_to_https"] = True
        parts.append(_toml_table("[[listener]]", values))
    certificate, key = server_cert or (pki / "server.pem", pki / "server.key")
    parts.append(_toml_table("[tls.main]", {
        "certificate": str(certificate), "key": str(key),
        "protocols": ["TLSv1.2", "TLSv1.3"], "alpn": ["http/1.1"]} | (tls or {})))
    auth = default_auth(pki, routes, auth)
    if auth:
        parts.append(_toml_table("[auth]", auth))
    if metrics is not None:
        parts.append(_toml_table("[metrics]", metrics))
    if access_log is not None:
        parts.append(_toml_table("[access_log]", access_log))
    if limits:
        parts.append(_toml_table("[limits]", limits))
    for name, values in backends.items():
        parts.append(_toml_table("[backend.%s]" % name, values))
    for route in routes:
        parts.append(_toml_table("[[route]]", {"auth": "none"} | route))
    return "\n".join(parts)


class Cmsfront:
    """One cmsfront process on a configuration file; waits until every listener accepts."""

    def __init__(self, workdir, config_text, name="cmsfront", listeners=(), env=None):
        if not os.access(BIN, os.X_OK):
            raise RuntimeError("cmsfront binary not found at %s (set CMSFRONT_BIN)" % BIN)
        stamp = time.monotonic_ns()
        self.config_path = Path(workdir) / ("%s-%d.toml" % (name, stamp))
        self.config_path.write_text(config_text)
        self.log_path = Path(workdir) / ("%s-%d.log" % (name, stamp))
        self._log_file = open(self.log_path, "wb")
        self.proc = _spawn([BIN, "--config", str(self.config_path)], subprocess.DEVNULL,
                           self._log_file, env=env)
        self.pid = self.proc.pid
        for listener in listeners:
            if not wait_for_port(listener.port, 20, self.proc):
                self.stop(timeout=2)
                raise RuntimeError("cmsfront did not listen on %d:\n%s\n%s" % (
                    listener.port, config_text, self.log_tail()))

    def log_tail(self, n=4000):
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def status_field(self, field):
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        raise KeyError(field)

    def vmhwm_kib(self):
        return self.status_field("VmHWM")

    def alive(self):
        return self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=20):
        rc = stop_process(self.proc, sig, timeout)
        self._log_file.close()
        return rc


# Clients.

def client_context(pki, alpn=("http/1.1",), minimum=None, maximum=None):
    ctx = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    if minimum is not None:
        ctx.minimum_version = minimum
    if maximum is not None:
        ctx.maximum_version = maximum
    return ctx


class IncompleteResponse(Exception):
    pass


class Response:
    def __init__(self):
        self.status = 0
        self.reason = ""
        self.version = ""
        self.headers = []
        self.body = b""
        self.interim = []      # statuses of 1xx responses received before this one
        self.framing = "none"  # content-length | chunked | close | none
        self.complete = True   # False: the connection ended inside the body

    def header(self, name):
        values = self.all(name)
        return values[0] if values else None

    def all(self, name):
        return [v for n, v in self.headers if n.lower() == name.lower()]

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "<Response %d %r %s body=%d bytes%s>" % (
            self.status, self.headers, self.framing, len(self.body),
            "" if self.complete else " INCOMPLETE")


class RawConnection:
    """One TCP (optionally TLS) connection on which exact bytes are sent and responses parsed."""

    def __init__(self, port, pki=None, tls=True, timeout=10.0, alpn=("http/1.1",), context=None):
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if tls:
            ctx = context or client_context(pki, alpn)
            sock = ctx.wrap_socket(sock, server_hostname="localhost")
        self.sock = sock
        self.buf = bytearray()
        self.eof = False
        self.reset = False  # the peer reset the connection (RST, or TLS without close_notify)
        self.timeout = timeout

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data):
        """Sends data; returns False if the peer had already closed (that can be legitimate)."""
        try:
            self.sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, ssl.SSLEOFError):
            return False

    def _recv(self, deadline):
        if self.eof:
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no data within the deadline; received so far: %r"
                               % bytes(self.buf[:300]))
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(256 * 1024)
        except socket.timeout:
            raise TimeoutError("no data within the deadline; received so far: %r"
                               % bytes(self.buf[:300])) from None
        except ssl.SSLZeroReturnError:
            data = b""
        except (ssl.SSLEOFError, ConnectionResetError):
            self.reset = True
            data = b""
        except ssl.SSLError as e:
            # e.g. a TLS alert after an error; counts as the end of the connection.
            self.reset = True
            self.ssl_error = e
            data = b""
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def _line(self, deadline):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[:i + 2]
                return line
            if not self._recv(deadline):
                raise IncompleteResponse("connection ended inside a line: %r" % bytes(self.buf))

    def _exact(self, n, deadline):
        while len(self.buf) < n:
            if not self._recv(deadline):
                data = bytes(self.buf)
                self.buf.clear()
                return data, False
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data, True

    def read_response(self, head=False, timeout=None, allow_incomplete=False):
        """Reads one final response (after any 1xx). head: the request was HEAD."""
        deadline = time.monotonic() + (timeout or self.timeout)
        resp = Response()
        while True:
            while b"\r\n\r\n" not in self.buf:
                if not self._recv(deadline):
                    raise IncompleteResponse("connection closed before a response head%s: %r" % (
                        " (reset)" if self.reset else "", bytes(self.buf[:300])))
            head_end = self.buf.find(b"\r\n\r\n")
            head_bytes = bytes(self.buf[:head_end])
            del self.buf[:head_end + 4]
            lines = head_bytes.split(b"\r\n")
            version, _, rest = lines[0].partition(b" ")
            code, _, reason = rest.partition(b" ")
            resp.version = version.decode("latin-1")
            resp.status = int(code)
            resp.reason = reason.decode("latin-1")
            resp.headers = []
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                resp.headers.append((name.decode("latin-1"), value.strip().decode("latin-1")))
            if 100 <= resp.status < 200 and resp.status != 101:
                resp.interim.append(resp.status)
                continue
            break
        te = resp.all("transfer-encoding")
        cl = resp.all("content-length")
        if head or resp.status in (204, 304):
            resp.framing = "none"
        elif te:
            resp.framing = "chunked"
            body = bytearray()
            while True:
                try:
                    size_line = self._line(deadline)
                except IncompleteResponse:
                    resp.complete = False
                    break
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    try:
                        while self._line(deadline):
                            pass
                    except IncompleteResponse:
                        resp.complete = False
                    break
                data, ok = self._exact(size + 2, deadline)
                body += data[:size]
                if not ok:
                    resp.complete = False
                    break
            resp.body = bytes(body)
        elif cl:
            resp.framing = "content-length"
            resp.body, resp.complete = self._exact(int(cl[0]), deadline)
        else:
            resp.framing = "close"
            while self._recv(deadline):
                pass
            resp.body = bytes(self.buf)
            self.buf.clear()
        if not resp.complete and not allow_incomplete:
            raise IncompleteResponse("connection ended inside the body of %r" % resp)
        return resp

    def read_until_close(self, timeout=None):
        """Everything until the peer closes; raises TimeoutError if it does not."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while self._recv(deadline):
            pass
        data = bytes(self.buf)
        self.buf.clear()
        return data

    def closed_within(self, timeout):
        try:
            self.read_until_close(timeout)
            return True
        except TimeoutError:
            return False


def request_bytes(method, target, host="localhost", headers=(), body=b"", version="HTTP/1.1"):
    """An HTTP/1.1 request; adds Content-Length when a body is given without framing headers."""
    lines = ["%s %s %s" % (method, target, version)]
    if host is not None:
        lines.append("Host: %s" % host)
    names = {n.lower() for n, _ in headers}
    lines += ["%s: %s" % (n, v) for n, v in headers]
    if body and "content-length" not in names and "transfer-encoding" not in names:
        lines.append("Content-Length: %d" % len(body))
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def curl(args, timeout=120, check=False):
    """Runs curl; returns CompletedProcess (text)."""
    return subprocess.run(["curl", "-sS"] + list(args), capture_output=True, text=True,
                          timeout=timeout, check=check)


def binary_is_sanitized():
    """True when $CMSFRONT_BIN is built with AddressSanitizer."""
    try:
        with open(BIN, "rb") as f:
            return b"__asan_init" in f.read()
    except OSError:
        return False


def backend_entries_since(backend, before, settle=0.3):
    """Log entries the backend recorded after it had `before` of them; waits `settle` seconds
    first so that anything a proxy forwarded asynchronously has arrived."""
    time.sleep(settle)
    return backend.log()[before:]


def exchange_error(port, pki, data, tls=True, timeout=10.0):
    """Sends data on a new connection, reads one response and then waits for the connection to
    close. Returns (response, closed)."""
    with RawConnection(port, pki, tls=tls, timeout=timeout) as conn:
        conn.send(data)
        resp = conn.read_response()
        return resp, conn.closed_within(timeout)
