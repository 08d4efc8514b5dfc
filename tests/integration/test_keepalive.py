"""Keep-alive, pipelining, Expect: 100-continue, HEAD, 1xx, and the response framings cmsfront
re-frames towards the client; TLS basics with real clients (curl, requests)."""

import hashlib
import ssl
import subprocess
import time
from types import SimpleNamespace

import pytest
import requests

from harness import Listener, RawConnection, client_context, curl, request_bytes


@pytest.fixture(scope="module")
def stack(launcher):
    echo = launcher.echo("keepalive")
    tls = Listener()
    front = launcher.cmsfront([tls], {"echo": {"servers": [echo.url], "max_connections": 4}},
                              [{"path": "/", "backend": "echo"}])
    return SimpleNamespace(echo=echo, front=front, tls=tls, pki=launcher.pki,
                           base="https://localhost:%d" % tls.port)


def test_curl_get(stack):
    out = curl(["--cacert", str(stack.pki / "ca.pem"), "-o", "/dev/null",
                "-w", "%{http_code} %{http_version}", stack.base + "/echo/curl"])
    assert out.returncode == 0, out.stderr
    assert out.stdout == "200 1.1"


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_tls_version(stack, version):
    out = curl(["--cacert", str(stack.pki / "ca.pem"), "--tlsv" + version, "--tls-max", version,
                "-o", "/dev/null", "-w", "%{http_code}", stack.base + "/echo/tls"])
    assert out.returncode == 0, out.stderr
    assert out.stdout == "200"


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_tls_1_1_is_refused(stack):
    ctx = client_context(stack.pki, maximum=ssl.TLSVersion.TLSv1_1,
                         minimum=ssl.TLSVersion.TLSv1)
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        RawConnection(stack.tls.port, stack.pki, context=ctx).close()


def test_alpn_selects_http11_when_h2_is_offered(stack):
    with RawConnection(stack.tls.port, stack.pki, alpn=("h2", "http/1.1")) as conn:
        assert conn.sock.selected_alpn_protocol() == "http/1.1"
        conn.send(request_bytes("GET", "/echo/alpn"))
        assert conn.read_response().status == 200


def test_curl_asking_for_http2_falls_back_to_http11(stack):
    out = curl(["--cacert", str(stack.pki / "ca.pem"), "--http2", "-o", "/dev/null",
                "-w", "%{http_code} %{http_version}", stack.base + "/echo/h2"])
    assert out.returncode == 0, out.stderr
    assert out.stdout == "200 1.1"


def test_python_requests_session_keeps_the_connection(stack):
    with requests.Session() as session:
        for i in range(10):
            r = session.post(stack.base + "/echo/req/%d" % i, data=b"z" * i,
                             verify=str(stack.pki / "ca.pem"), timeout=10)
            assert r.status_code == 200
            assert r.json()["target"] == "/echo/req/%d" % i
            assert r.json()["body_length"] == i


def test_curl_reuses_one_connection_for_several_urls(stack):
    out = curl(["--cacert", str(stack.pki / "ca.pem"), "-w", "%{num_connects}\n",
                "-o", "/dev/null", "-o", "/dev/null", "-o", "/dev/null",
                stack.base + "/echo/1", stack.base + "/echo/2", stack.base + "/echo/3"])
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1", "0", "0"]


def test_sequential_requests_on_one_connection(stack):
    with RawConnection(stack.tls.port, stack.pki) as conn:
        for i in range(30):
            conn.send(request_bytes("GET", "/echo/seq/%d" % i))
            resp = conn.read_response()
            assert resp.status == 200
            assert resp.json()["target"] == "/echo/seq/%d" % i


def test_pipelined_requests_are_answered_in_order(stack):
    targets = ["/slow?ms=300&n=0", "/echo/p1", "/echo/p2?chunked=1", "/slow?ms=100&n=3",
               "/echo/p4"]
    data = b""
    for i, t in enumerate(targets):
        body = b"b" * (i * 1000)
        data += request_bytes("POST" if body else "GET", t, body=body)
    with RawConnection(stack.tls.port, stack.pki) as conn:
        conn.send(data)
        for i, t in enumerate(targets):
            resp = conn.read_response()
            assert resp.status == 200, resp
            assert resp.json()["target"] == t
            assert resp.json()["body_length"] == i * 1000


def test_pipelined_head_and_get(stack):
    data = (request_bytes("HEAD", "/big?bytes=100000") + request_bytes("GET", "/echo/after-head")
            + request_bytes("HEAD", "/echo/h2") + request_bytes("GET", "/big?bytes=10"))
    with RawConnection(stack.tls.port, stack.pki) as conn:
        conn.send(data)
        r1 = conn.read_response(head=True)
        r2 = conn.read_response()
        r3 = conn.read_response(head=True)
        r4 = conn.read_response()
    assert r1.status == 200 and r1.body == b""
    assert r2.status == 200 and r2.json()["target"] == "/echo/after-head"
    assert r3.status == 200 and r3.body == b""
    assert r4.status == 200 and r4.body == b"x" * 10


def test_head_has_no_body_and_keeps_the_connection(stack):
    with RawConnection(stack.tls.port, stack.pki) as conn:
        conn.send(request_bytes("HEAD", "/big?bytes=1000000"))
        resp = conn.read_response(head=True)
        assert resp.status == 200
        # Whatever framing header is given describes the GET body; no body bytes follow.
        if resp.header("content-length") is not None:
            assert resp.header("content-length") == "1000000"
        conn.send(request_bytes("GET", "/echo/after"))
        resp = conn.read_response()
        assert resp.status == 200 and resp.json()["target"] == "/echo/after"
    out = curl(["--cacert", str(stack.pki / "ca.pem"), "-I", "-o", "/dev/null",
                "-w", "%{http_code}", "--max-time", "20", stack.base + "/big?bytes=5000"])
    assert out.returncode == 0, out.stderr
    assert out.stdout == "200"


def test_expect_100_continue_is_answered_before_the_body(stack):
    body = b"continue me" * 100
    with RawConnection(stack.tls.port, stack.pki) as conn:
        conn.send(request_bytes("POST", "/echo/expect", headers=[
            ("Content-Length", str(len(body))), ("Expect", "100-continue")]))
        # Nothing but the interim response can come before the body is sent.
        while b"\r\n\r\n" not in conn.buf:
            assert conn._recv(time.monotonic() + 10), "closed before 100"
        assert conn.buf.startswith(b"HTTP/1.1 100 Continue\r\n"), bytes(conn.buf)
        conn.send(body)
        resp = conn.read_response()
    assert resp.status == 200
    assert resp.interim == [100]
    got = resp.json()
    assert got["body_length"] == len(body)
    assert got["body_sha256"] == hashlib.sha256(body).hexdigest()


def test_curl_upload_with_expect(stack):
    # curl sends Expect: 100-continue for large uploads and waits for the 100.
    out = subprocess.run(
        "head -c 3000000 /dev/zero | curl -sS --cacert %s -T - -H 'Expect: 100-continue' "
        "--expect100-timeout 30 --max-time 60 %s/echo/curl-upload" % (
            stack.pki / "ca.pem", stack.base), shell=True, capture_output=True, text=True,
        timeout=90)
    assert out.returncode == 0, out.stderr
    assert '"body_length": 3000000' in out.stdout


def test_interim_103_then_final_response(stack):
    with RawConnection(stack.tls.port, stack.pki) as conn:
        conn.send(request_bytes("GET", "/interim?code=103"))
        resp = conn.read_response()
        assert resp.status == 200
        assert resp.json()["target"] == "/interim?code=103"
        assert set(resp.interim) <= {103}
        conn.send(request_bytes("GET", "/echo/after-1xx"))
        assert conn.read_response().status == 200


def test_unsolicited_100_from_the_backend_does_not_end_the_exchange(stack):
    with RawConnection(stack.tls.port, stack.pki) as conn:
        conn.send(request_bytes("GET", "/interim?code=100"))
        resp = conn.read_response()
        assert resp.status == 200
        assert resp.json()["target"] == "/interim?code=100"


@pytest.mark.parametrize("code", [204, 304, 404, 500, 503])
def test_backend_status_is_passed_on(stack, code):
    with RawConnection(stack.tls.port, stack.pki) as conn:
        conn.send(request_bytes("GET", "/status?code=%d" % code))
        resp = conn.read_response()
        assert resp.status == code
        if code in (204, 304):
            assert resp.body == b""
        else:
            assert resp.body == b"status %d\n" % code
        conn.send(request_bytes("GET", "/echo/after-status"))
        assert conn.read_response().status == 200


def test_chunked_response(stack):
    with RawConnection(stack.tls.port, stack.pki) as conn:
        conn.send(request_bytes("GET", "/big?bytes=300000&chunked=1"))
        resp = conn.read_response()
        assert resp.status == 200 and resp.body == b"x" * 300000
        conn.send(request_bytes("GET", "/echo/after-chunked"))
        assert conn.read_response().status == 200


def test_close_delimited_response_is_delivered_whole(stack):
    with RawConnection(stack.tls.port, stack.pki) as conn:
        conn.send(request_bytes("GET", "/close-delimited"))
        resp = conn.read_response()
        assert resp.status == 200
        assert resp.body == b"close-delimited body\n" * 100
        assert resp.header("connection") != "keep-alive" or resp.framing != "close"


def test_http10_backend_response(stack):
    with RawConnection(stack.tls.port, stack.pki) as conn:
        conn.send(request_bytes("GET", "/http10"))
        resp = conn.read_response()
        assert resp.status == 200 and resp.body == b"http/1.0 body\n"
        assert resp.version == "HTTP/1.1"
        conn.send(request_bytes("GET", "/echo/after-http10"))
        assert conn.read_response().status == 200


def test_connection_close_from_the_client_is_honoured(stack):
    with RawConnection(stack.tls.port, stack.pki) as conn:
        conn.send(request_bytes("GET", "/echo/bye", headers=[("Connection", "close")]))
        assert conn.read_response().status == 200
        assert conn.closed_within(10)


def test_backend_connections_are_reused(stack):
    stack.echo.reset()
    for i in range(20):
        with RawConnection(stack.tls.port, stack.pki) as conn:
            conn.send(request_bytes("GET", "/echo/reuse/%d" % i))
            assert conn.read_response().status == 200
    stats = stack.echo.stats()
    assert stats["requests"] == 20
    assert stats["accepted"] <= 8, stats  # max_connections = 4 per server; 20 without reuse
    assert stats["max"] <= 4, stats
