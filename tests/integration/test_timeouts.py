"""Slow clients: the whole-header deadline (408, then close), the idle keep-alive timeout, the
TLS handshake deadline and the body inactivity timeout. Timeouts are 1 s; the tests only check
that the connection ends within a generous bound, never how fast."""

import socket
import threading
import time
from types import SimpleNamespace

import pytest

from harness import Listener, RawConnection, backend_entries_since, request_bytes

BOUND = 20  # seconds; "it did not hang", not a measurement


@pytest.fixture(scope="module")
def stack(launcher):
    echo = launcher.echo("timeouts")
    tls = Listener()
    plain = Listener(tls=False)
    front = launcher.cmsfront(
        [tls, plain], {"echo": {"servers": [echo.url]}}, [{"path": "/", "backend": "echo"}],
        limits={"header_timeout": "1s", "idle_timeout": "1s", "handshake_timeout": "1s",
                "body_timeout": "1s"})
    return SimpleNamespace(echo=echo, front=front, tls=tls, plain=plain, pki=launcher.pki)


@pytest.mark.parametrize("tls", [True, False], ids=["tls", "plain"])
def test_incomplete_head_gets_408_then_close(stack, tls):
    before = len(stack.echo.log())
    port = stack.tls.port if tls else stack.plain.port
    with RawConnection(port, stack.pki, tls=tls, timeout=BOUND) as conn:
        conn.send(b"GET /echo/slowloris HTTP/1.1\r\nHost: localhost\r\nX-A: 1\r\n")
        resp = conn.read_response()
        assert resp.status == 408, resp
        assert conn.closed_within(BOUND)
    assert backend_entries_since(stack.echo, before) == []


def test_dripping_head_still_hits_the_whole_header_deadline(stack):
    data = b"GET /echo/drip HTTP/1.1\r\nHost: localhost\r\n" + b"X-Drip: " + b"d" * 200
    with RawConnection(stack.tls.port, stack.pki, timeout=BOUND) as conn:
        stop = threading.Event()

        def drip():
            for i in range(len(data)):
                if stop.is_set() or not conn.send(data[i:i + 1]):
                    return
                time.sleep(0.1)

        t = threading.Thread(target=drip, daemon=True)
        t.start()
        try:
            resp = conn.read_response()
            assert resp.status == 408, resp
            assert conn.closed_within(BOUND)
        finally:
            stop.set()
            t.join(5)


def test_idle_keepalive_connection_is_closed(stack):
    with RawConnection(stack.tls.port, stack.pki, timeout=BOUND) as conn:
        conn.send(request_bytes("GET", "/echo/idle"))
        assert conn.read_response().status == 200
        assert conn.closed_within(BOUND), "idle connection still open"


def test_connection_without_a_request_is_closed(stack):
    with RawConnection(stack.tls.port, stack.pki, timeout=BOUND) as conn:
        assert conn.closed_within(BOUND)


def test_tls_handshake_deadline(stack):
    with socket.create_connection(("127.0.0.1", stack.tls.port), timeout=BOUND) as sock:
        try:
            data = sock.recv(100)  # no ClientHello is ever sent
        except ConnectionResetError:
            data = b""
        assert data == b""


def test_stalled_body_is_ended_and_never_completed(stack):
    before = len(stack.echo.log())
    with RawConnection(stack.tls.port, stack.pki, timeout=BOUND) as conn:
        conn.send(b"POST /echo/stall HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n"
                  + b"0123456789")
        data = conn.read_until_close(BOUND)
    if data:
        assert data.startswith(b"HTTP/1.1 4") or data.startswith(b"HTTP/1.1 5"), data[:200]
    new = backend_entries_since(stack.echo, before)
    assert [e for e in new if e["complete"]] == []


def test_quick_requests_are_not_affected(stack):
    with RawConnection(stack.tls.port, stack.pki, timeout=BOUND) as conn:
        for i in range(20):
            conn.send(request_bytes("GET", "/echo/quick/%d" % i))
            assert conn.read_response().status == 200


def test_slow_backend_is_not_cut_by_client_timeouts(stack):
    # header/idle/body timeouts concern the client; a backend taking 3 s is fine.
    with RawConnection(stack.tls.port, stack.pki, timeout=BOUND) as conn:
        conn.send(request_bytes("GET", "/slow?ms=3000"))
        resp = conn.read_response()
        assert resp.status == 200 and resp.json()["target"] == "/slow?ms=3000"
