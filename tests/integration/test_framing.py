"""Strict HTTP/1.1 from clients: every malformed or ambiguous request of docs/security.md
"HTTP/1.1 framing" is refused with the status its last column gives, the connection is closed
after a parse error, and nothing reaches the backend."""

import time
from types import SimpleNamespace

import pytest

from harness import (Listener, RawConnection, backend_entries_since, exchange_error,
                     request_bytes)

HEADER_SIZE = 8192
HEADER_COUNT = 50
BODY_SIZE = 1024 * 1024


@pytest.fixture(scope="module")
def stack(launcher):
    echo = launcher.echo("framing")
    tls = Listener()
    plain = Listener(tls=False)
    front = launcher.cmsfront(
        [tls, plain], {"echo": {"servers": [echo.url], "max_connections": 4}},
        [{"path": "/", "backend": "echo"}],
        limits={"header_size": "8KiB", "header_count": HEADER_COUNT, "body_size": "1MiB"})
    return SimpleNamespace(echo=echo, front=front, tls=tls, plain=plain, pki=launcher.pki)


def head(*lines):
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


H = "Host: localhost"
POST = "POST /echo HTTP/1.1"

# (id, bytes, expected status). The connection must be closed after each.
PARSE_ERRORS = [
    # Content-Length and Transfer-Encoding
    ("cl-and-te", head(POST, H, "Content-Length: 5", "Transfer-Encoding: chunked") +
     b"0\r\n\r\n", 400),
    ("te-and-cl", head(POST, H, "Transfer-Encoding: chunked", "Content-Length: 5") +
     b"0\r\n\r\n", 400),
    ("two-cl-different", head(POST, H, "Content-Length: 5", "Content-Length: 6") + b"hello!",
     400),
    ("two-cl-equal", head(POST, H, "Content-Length: 5", "Content-Length: 5") + b"hello", 400),
    ("cl-list", head(POST, H, "Content-Length: 5, 5") + b"hello", 400),
    ("cl-plus", head(POST, H, "Content-Length: +5") + b"hello", 400),
    ("cl-minus", head(POST, H, "Content-Length: -5") + b"hello", 400),
    ("cl-hex", head(POST, H, "Content-Length: 0x5") + b"hello", 400),
    ("cl-letters", head(POST, H, "Content-Length: 5a") + b"hello", 400),
    ("cl-decimal", head(POST, H, "Content-Length: 5.0") + b"hello", 400),
    ("cl-empty", head(POST, H, "Content-Length: ") + b"hello", 400),
    ("cl-overflow", head(POST, H, "Content-Length: 99999999999999999999999") + b"hello", 400),
    ("cl-2-pow-64", head(POST, H, "Content-Length: 18446744073709551616") + b"hello", 400),
    # Transfer-Encoding
    ("te-gzip-chunked", head(POST, H, "Transfer-Encoding: gzip, chunked") + b"0\r\n\r\n", 400),
    ("te-chunked-gzip", head(POST, H, "Transfer-Encoding: chunked, gzip") + b"0\r\n\r\n", 400),
    ("te-identity", head(POST, H, "Transfer-Encoding: identity") + b"0\r\n\r\n", 400),
    ("te-twice", head(POST, H, "Transfer-Encoding: chunked", "Transfer-Encoding: chunked") +
     b"0\r\n\r\n", 400),
    ("te-chunked-chunked", head(POST, H, "Transfer-Encoding: chunked, chunked") + b"0\r\n\r\n",
     400),
    ("te-unknown-coding", head(POST, H, "Transfer-Encoding: foo") + b"0\r\n\r\n", 501),
    ("te-on-http10", head("POST /echo HTTP/1.0", H, "Transfer-Encoding: chunked") +
     b"0\r\n\r\n", 400),
    # Header syntax
    ("space-before-colon-te", head(POST, H, "Transfer-Encoding : chunked") + b"0\r\n\r\n", 400),
    ("space-before-colon-cl", head(POST, H, "Content-Length : 5") + b"hello", 400),
    ("tab-before-colon", head(POST, H, "Content-Length\t: 5") + b"hello", 400),
    ("space-before-colon-host", head("GET /echo HTTP/1.1", "Host : localhost"), 400),
    ("space-in-name", head("GET /echo HTTP/1.1", H, "X Foo: bar"), 400),
    ("non-token-name", head("GET /echo HTTP/1.1", H, "X@Foo: bar"), 400),
    ("empty-name", head("GET /echo HTTP/1.1", H, ": bar"), 400),
    ("obs-fold", head("GET /echo HTTP/1.1", H, "X-Foo: a", " b"), 400),
    ("obs-fold-tab", head("GET /echo HTTP/1.1", H, "X-Foo: a", "\tb"), 400),
    ("whitespace-before-first-header", head("GET /echo HTTP/1.1", " X-Foo: a", H), 400),
    ("bare-cr-in-value", head("GET /echo HTTP/1.1", H, "X-Foo: a\rb"), 400),
    ("nul-in-value", head("GET /echo HTTP/1.1", H, "X-Foo: a\0b"), 400),
    ("bare-lf-everywhere", b"GET /echo HTTP/1.1\nHost: localhost\n\n", 400),
    ("bare-lf-after-request-line", b"GET /echo HTTP/1.1\nHost: localhost\r\n\r\n", 400),
    ("bare-lf-after-header", b"GET /echo HTTP/1.1\r\nHost: localhost\nX-Foo: a\r\n\r\n", 400),
    ("bare-lf-end-of-head", b"GET /echo HTTP/1.1\r\nHost: localhost\r\n\n", 400),
    # Host
    ("no-host", head("GET /echo HTTP/1.1"), 400),
    ("two-hosts-equal", head("GET /echo HTTP/1.1", H, H), 400),
    ("two-hosts-different", head("GET /echo HTTP/1.1", H, "Host: example.org"), 400),
    ("absolute-form-other-host", head("GET https://example.org/echo HTTP/1.1", H), 400),
    # Request line
    ("lower-case-method", head("get /echo HTTP/1.1", H), 400),
    ("mixed-case-method", head("Get /echo HTTP/1.1", H), 400),
    ("double-space-request-line", head("GET  /echo HTTP/1.1", H), 400),
    ("space-in-target", head("GET /ec ho HTTP/1.1", H), 400),
    ("http09-request-line", head("GET /echo", H), 400),
    ("cr-in-target", head("GET /echo\rx HTTP/1.1", H), 400),
    # Limits on the head
    ("request-line-too-long", head("GET /echo/" + "a" * (3 * HEADER_SIZE) + " HTTP/1.1", H), 414),
    ("header-too-large", head("GET /echo HTTP/1.1", H, "X-Big: " + "b" * (3 * HEADER_SIZE)), 431),
    ("header-section-too-large",
     head("GET /echo HTTP/1.1", H, *["X-H%02d: %s" % (i, "v" * 400) for i in range(30)]), 431),
    ("too-many-headers",
     head("GET /echo HTTP/1.1", H, *["X-H%03d: v" % i for i in range(HEADER_COUNT + 10)]), 431),
]

# Chunked bodies that break the chunked coding. The head is valid, so a streaming proxy may
# already have passed it on; the backend must never receive a complete request.
CHUNK_ERRORS = [
    ("chunk-size-0x", b"0x5\r\nhello\r\n0\r\n\r\n"),
    ("chunk-size-negative", b"-1\r\nhello\r\n0\r\n\r\n"),
    ("chunk-size-17-digits", b"00000000000000005\r\nhello\r\n0\r\n\r\n"),
    ("chunk-size-overflow", b"fffffffffffffffffff\r\nhello\r\n0\r\n\r\n"),
    ("chunk-extension-bare-lf", b"5;ext=1\nhello\r\n0\r\n\r\n"),
    ("chunk-size-bare-lf", b"5\nhello\r\n0\r\n\r\n"),
    ("chunk-data-without-crlf", b"5\r\nhelloXX0\r\n\r\n"),
    ("chunk-size-empty", b"\r\nhello\r\n0\r\n\r\n"),
]


def assert_refused(stack, data, status, tls=True):
    before = len(stack.echo.log())
    port = stack.tls.port if tls else stack.plain.port
    resp, closed = exchange_error(port, stack.pki, data, tls=tls)
    assert resp.status == status, resp
    assert closed, "connection still open after %d" % status
    assert backend_entries_since(stack.echo, before) == []


@pytest.mark.parametrize("data,status", [c[1:] for c in PARSE_ERRORS],
                         ids=[c[0] for c in PARSE_ERRORS])
def test_malformed_request_is_refused_and_never_forwarded(stack, data, status):
    assert_refused(stack, data, status)


@pytest.mark.parametrize("data,status", [c[1:] for c in PARSE_ERRORS
                                         if c[0] in ("cl-and-te", "bare-lf-everywhere",
                                                     "lower-case-method")],
                         ids=["cl-and-te", "bare-lf-everywhere", "lower-case-method"])
def test_plain_listener_is_as_strict(stack, data, status):
    assert_refused(stack, data, status, tls=False)


@pytest.mark.parametrize("body", [c[1] for c in CHUNK_ERRORS], ids=[c[0] for c in CHUNK_ERRORS])
def test_broken_chunked_body_is_refused_and_never_completed(stack, body):
    before = len(stack.echo.log())
    data = head(POST, H, "Transfer-Encoding: chunked") + body
    resp, closed = exchange_error(stack.tls.port, stack.pki, data)
    assert resp.status == 400, resp
    assert closed
    new = backend_entries_since(stack.echo, before)
    assert [e for e in new if e["complete"]] == [], new


@pytest.mark.parametrize("method", ["TRACE", "PROPFIND", "FOO", "CONNECT"])
def test_method_outside_the_allowed_set_is_405(stack, method):
    target = "localhost:443" if method == "CONNECT" else "/echo"
    before = len(stack.echo.log())
    with RawConnection(stack.tls.port, stack.pki) as conn:
        conn.send(head("%s %s HTTP/1.1" % (method, target), H))
        resp = conn.read_response()
    # CONNECT's authority-form target may be refused by the parser first.
    assert resp.status == 405 or (method == "CONNECT" and resp.status == 400), resp
    assert backend_entries_since(stack.echo, before) == []


@pytest.mark.parametrize("method", ["HEAD", "GET", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"])
def test_allowed_methods_reach_the_backend(stack, method):
    with RawConnection(stack.tls.port, stack.pki) as conn:
        body = b"abc" if method in ("POST", "PUT", "PATCH") else b""
        conn.send(request_bytes(method, "/echo/m", body=body))
        resp = conn.read_response(head=method == "HEAD")
    assert resp.status == 200, resp
    if method != "HEAD":
        assert resp.json()["method"] == method
        assert resp.json()["body_length"] == len(body)


@pytest.mark.parametrize("target", [
    "/echo/../x", "/echo/./x", "/echo/..", "/echo/.", "/../echo", "/echo/%2e%2e/x",
    "/echo/%2E%2E/x", "/echo/%2e/x", "/echo/.%2e/x", "/echo/a%2fb", "/echo/a%2Fb",
])
def test_path_with_dot_segments_or_encoded_slash_is_400(stack, target):
    before = len(stack.echo.log())
    with RawConnection(stack.tls.port, stack.pki) as conn:
        conn.send(head("GET %s HTTP/1.1" % target, H))
        resp = conn.read_response()
    assert resp.status == 400, resp
    assert backend_entries_since(stack.echo, before) == []


def test_body_over_the_limit_is_413(stack):
    before = len(stack.echo.log())
    with RawConnection(stack.tls.port, stack.pki) as conn:
        conn.send(head(POST, H, "Content-Length: %d" % (BODY_SIZE + 1)) + b"x" * 1000)
        resp = conn.read_response()
    assert resp.status == 413, resp
    assert backend_entries_since(stack.echo, before) == []


def test_body_over_the_limit_with_100_continue_is_413_without_100(stack):
    before = len(stack.echo.log())
    with RawConnection(stack.tls.port, stack.pki) as conn:
        conn.send(head(POST, H, "Content-Length: %d" % (BODY_SIZE + 1), "Expect: 100-continue"))
        resp = conn.read_response()
    assert resp.status == 413, resp
    assert 100 not in resp.interim
    assert backend_entries_since(stack.echo, before) == []


def test_chunked_body_over_the_limit_is_413_and_never_completed(stack):
    before = len(stack.echo.log())
    chunk = b"x" * 65536
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(BODY_SIZE // 65536 + 2))
    with RawConnection(stack.tls.port, stack.pki) as conn:
        conn.send(head(POST, H, "Transfer-Encoding: chunked") + body + b"0\r\n\r\n")
        resp = conn.read_response()
    assert resp.status == 413, resp
    new = backend_entries_since(stack.echo, before)
    assert [e for e in new if e["complete"]] == [], new


def test_413_reaches_a_client_that_is_still_sending_its_body(stack):
    # The answer goes out while the client is still sending; cmsfront then shuts its side and
    # keeps reading instead of closing at once, so the client's next bytes do not meet a reset
    # that would destroy the 413 before the client reads it.
    with RawConnection(stack.tls.port, stack.pki) as conn:
        conn.send(head(POST, H, "Content-Length: %d" % (BODY_SIZE * 4)) + b"x" * 1000)
        time.sleep(0.3)  # the 413 has been written and our side shut by now
        for _ in range(8):
            assert conn.send(b"x" * 32768), "cmsfront reset the connection while lingering"
        time.sleep(0.2)
        resp = conn.read_response()
        assert resp.status == 413, resp
        assert resp.header("connection") == "close", resp
        assert conn.closed_within(5)
        assert not conn.reset, "the connection ended with a reset, not a clean close"


def test_body_at_the_limit_passes(stack):
    with RawConnection(stack.tls.port, stack.pki) as conn:
        conn.send(head(POST, H, "Content-Length: %d" % BODY_SIZE) + b"y" * BODY_SIZE)
        resp = conn.read_response()
    assert resp.status == 200, resp
    assert resp.json()["body_length"] == BODY_SIZE


def test_absolute_form_with_the_same_host_is_forwarded_in_origin_form(stack):
    authority = "localhost:%d" % stack.tls.port
    with RawConnection(stack.tls.port, stack.pki) as conn:
        conn.send(head("GET https://%s/echo/abs?q=1 HTTP/1.1" % authority, "Host: " + authority))
        resp = conn.read_response()
    assert resp.status == 200, resp
    assert resp.json()["target"] == "/echo/abs?q=1"


def test_error_after_a_valid_pipelined_request_answers_both_then_closes(stack):
    before = len(stack.echo.log())
    data = head("GET /echo/first HTTP/1.1", H) + head(POST, H, "Content-Length: 1, 2") + b"ab"
    with RawConnection(stack.tls.port, stack.pki) as conn:
        conn.send(data)
        first = conn.read_response()
        second = conn.read_response()
        closed = conn.closed_within(10)
    assert first.status == 200 and first.json()["target"] == "/echo/first"
    assert second.status == 400, second
    assert closed
    new = backend_entries_since(stack.echo, before)
    assert [e["target"] for e in new] == ["/echo/first"]


def test_connection_is_usable_after_an_error_on_another_connection(stack):
    # A refused request must not poison the worker or the backend pool.
    exchange_error(stack.tls.port, stack.pki, head(POST, H, "Content-Length: +1") + b"a")
    with RawConnection(stack.tls.port, stack.pki) as conn:
        conn.send(head("GET /echo/after HTTP/1.1", H))
        assert conn.read_response().status == 200
