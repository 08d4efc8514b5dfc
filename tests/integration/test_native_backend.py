"""cmsfront in front of the project's native backend (tools/backend, cmsfront-test-backend),
the one the benchmarks use: headers, large bodies and the pool bound hold there too."""

import json
import subprocess
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

import harness
from harness import Listener, RawConnection, request_bytes

MAX_CONNECTIONS = 2


class NativeBackend:
    def __init__(self, workdir):
        binary = Path(harness.BIN).parent / "cmsfront-test-backend"
        if not binary.exists():
            pytest.fail("%s is not built" % binary, pytrace=False)
        self.log_path = Path(workdir) / ("native-%d.log" % time.monotonic_ns())
        self._log_file = open(self.log_path, "wb")
        self.proc = harness._spawn([str(binary), "--listen", "127.0.0.1:0"], subprocess.PIPE,
                                   self._log_file)
        line = self.proc.stdout.readline().decode()
        if not line.startswith("listening on "):
            pytest.fail("native backend did not start: %r" % line, pytrace=False)
        self.port = int(line.rsplit(":", 1)[1])
        self.url = "http://127.0.0.1:%d" % self.port

    def stats(self):
        return harness.http_get_json(self.port, "/__stats")

    def stop(self):
        harness.stop_process(self.proc, timeout=5)
        self._log_file.close()


@pytest.fixture(scope="module")
def stack(launcher):
    native = NativeBackend(launcher.workdir)
    launcher._running.append(native)
    tls = Listener()
    front = launcher.cmsfront(
        [tls], {"native": {"servers": [native.url], "max_connections": MAX_CONNECTIONS}},
        [{"path": "/", "backend": "native"}])
    return SimpleNamespace(native=native, front=front, tls=tls, pki=launcher.pki)


def test_native_backend_sees_forwarding_headers_and_no_spoofed_ones(stack):
    with RawConnection(stack.tls.port, stack.pki) as conn:
        conn.send(request_bytes("GET", "/echo", headers=[
            ("Cms-Authz-Admin", "group:evil"), ("X-Forwarded-For", "6.6.6.6"),
            ("SSL_CLIENT_S_DN", "/CN=forged")]))
        resp = conn.read_response()
    assert resp.status == 200
    seen = {name.lower(): value for name, value in json.loads(resp.body)["headers"]}
    assert seen["x-forwarded-for"] == "127.0.0.1"
    assert seen["x-forwarded-proto"] == "https"
    assert seen["x-forwarded-host"] == "localhost"
    assert not any(name.startswith(("cms-", "cms_", "ssl_client", "ssl-client")) for name in seen)


def test_large_native_response_arrives_intact(stack):
    size = 5 * 1000 * 1000
    with RawConnection(stack.tls.port, stack.pki, timeout=60) as conn:
        conn.send(request_bytes("GET", "/bytes/%d" % size))
        resp = conn.read_response(timeout=60)
    assert resp.status == 200
    assert len(resp.body) == size
    expected = bytes(ord("a") + i % 26 for i in range(26))
    assert resp.body[:26] == expected and resp.body[-1] == ord("a") + (size - 1) % 26


def test_keepalive_clients_share_at_most_max_connections(stack):
    errors = []

    def client():
        try:
            with RawConnection(stack.tls.port, stack.pki, timeout=30) as conn:
                for _ in range(10):
                    conn.send(request_bytes("GET", "/"))
                    if conn.read_response().status != 200:
                        errors.append("status")
        except Exception as e:  # reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=client) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    stats = stack.native.stats()
    # The backend's own count includes the connection this query arrives on.
    assert stats["connections_max"] <= MAX_CONNECTIONS + 1, stats
    assert stats["requests"] >= 200
