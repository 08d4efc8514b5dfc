"""Headers towards the backend: client-sent copies of the headers cmsfront sets never reach the
backend, the forwarding headers are cmsfront's own, hop-by-hop headers go (also the ones a
Connection header names, but never one cmsfront added), and messages are re-framed."""

import hashlib
from types import SimpleNamespace

import pytest

from harness import Listener, RawConnection, request_bytes

SPOOFED = [
    ("X-Forwarded-For", "6.6.6.6"),
    ("x-forwarded-for", "6.6.6.7"),
    ("X_Forwarded_For", "6.6.6.8"),
    ("X-Forwarded-Proto", "evil-proto"),
    ("X-Forwarded-Host", "evil.example"),
    ("X-Forwarded-Port", "6666"),
    ("X-Forwarded-Server", "evil-server"),
    ("X-FORWARDED-PREFIX", "/evil"),
    ("Forwarded", "for=6.6.6.6;proto=http;host=evil.example"),
    ("Via", "1.1 evil.example"),
    ("cms-authz-superuser", "group:evil"),
    ("CMS-AUTHN-LOGIN", "evil-admin"),
    ("Cms-Authn-Dn", "/CN=evil"),
    ("cms-authn-hmac", "evil0000"),
    ("cms_authz_x", "group:evil"),
    ("CMS_AUTH_STATUS", "OK-evil"),
    ("cms-request-uri", "/evil"),
    ("cms-auth-cert", "/CN=evil"),
    ("cms-anything-else", "evil"),
    ("SSL_CLIENT_S_DN", "/CN=evil"),
    ("ssl-client-verify", "SUCCESS-evil"),
    ("Ssl-Client-Cert", "evil-pem"),
    ("ssl_client_i_dn", "/CN=evil-ca"),
    ("HTTPS", "on-evil"),
    ("https", "1-evil"),
]
RESERVED_PREFIXES = ("x-forwarded-", "cms-", "ssl-client")
RESERVED_NAMES = ("forwarded", "https")


def normalised(name):
    return name.lower().replace("_", "-")


@pytest.fixture(scope="module")
def stack(launcher):
    echo = launcher.echo("headers")
    tls = Listener()
    plain = Listener(tls=False)
    front = launcher.cmsfront([tls, plain], {"echo": {"servers": [echo.url]}},
                              [{"path": "/", "backend": "echo"}])
    return SimpleNamespace(echo=echo, front=front, tls=tls, plain=plain, pki=launcher.pki)


def echo_via(stack, data, tls=True, head=False):
    port = stack.tls.port if tls else stack.plain.port
    with RawConnection(port, stack.pki, tls=tls) as conn:
        conn.send(data)
        resp = conn.read_response(head=head)
    assert resp.status == 200, resp
    return resp


def check_forwarding_headers(headers, proto, host):
    names = [normalised(n) for n, _ in headers]
    for name, value in headers:
        assert "evil" not in value and "6.6.6." not in value, (name, value)
        n = normalised(name)
        assert not n.startswith(("cms-", "ssl-client")), name
        assert n not in RESERVED_NAMES, name
        if n.startswith("x-forwarded-"):
            assert n in ("x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"), name
    values = {}
    for name, value in headers:
        values.setdefault(name.lower(), []).append(value)
    assert names.count("x-forwarded-for") == 1, headers
    assert names.count("x-forwarded-proto") == 1, headers
    assert names.count("x-forwarded-host") == 1, headers
    assert values["x-forwarded-for"] == ["127.0.0.1"]
    assert values["x-forwarded-proto"] == [proto]
    assert values["x-forwarded-host"] == [host]


def test_spoofed_forwarding_and_cms_headers_never_reach_the_backend(stack):
    before = len(stack.echo.log())
    resp = echo_via(stack, request_bytes("GET", "/echo/spoof", headers=SPOOFED + [
        ("X-Custom", "kept"), ("X-Cms-Like", "kept-too")]))
    seen = resp.json()["headers"]
    check_forwarding_headers(seen, "https", "localhost")
    assert ["X-Custom", "kept"] in seen
    assert ["X-Cms-Like", "kept-too"] in seen
    # The same from the backend's own log (what was on its wire).
    entries = stack.echo.log()[before:]
    assert len(entries) == 1
    assert "evil" not in entries[0]["raw_head"] and "6.6.6." not in entries[0]["raw_head"]


def test_spoofed_headers_with_a_body_and_pipelining(stack):
    data = (request_bytes("POST", "/echo/a", headers=SPOOFED, body=b"one") +
            request_bytes("POST", "/echo/b", headers=list(reversed(SPOOFED)), body=b"two"))
    with RawConnection(stack.tls.port, stack.pki) as conn:
        conn.send(data)
        for _ in range(2):
            resp = conn.read_response()
            assert resp.status == 200
            check_forwarding_headers(resp.json()["headers"], "https", "localhost")


def test_plain_listener_sets_proto_http(stack):
    resp = echo_via(stack, request_bytes("GET", "/echo/plain", host="front.example:8080",
                                         headers=SPOOFED), tls=False)
    check_forwarding_headers(resp.json()["headers"], "http", "front.example:8080")


def test_forwarded_host_is_the_clients_host_header(stack):
    host = "cmsweb.example.cern.ch:%d" % stack.tls.port
    resp = echo_via(stack, request_bytes("GET", "/echo/host", host=host))
    check_forwarding_headers(resp.json()["headers"], "https", host)


def test_hop_by_hop_headers_and_connection_listed_ones_are_removed(stack):
    resp = echo_via(stack, request_bytes("GET", "/echo/hop", headers=[
        ("Connection", "keep-alive, X-Remove-Me, X-Forwarded-For, X-Forwarded-Proto,"
                       " X-Forwarded-Host, cms-authn-dn"),
        ("Connection", "X-Remove-Too"),
        ("X-Remove-Me", "1"),
        ("X-Remove-Too", "2"),
        ("Keep-Alive", "timeout=5"),
        ("Proxy-Connection", "keep-alive"),
        ("TE", "trailers"),
        ("Trailer", "X-Checksum"),
        ("Upgrade", "h2c"),
        ("Proxy-Authorization", "Basic ZXZpbDpldmls"),
        ("X-Kept", "yes"),
    ]))
    seen = resp.json()["headers"]
    names = [n.lower() for n, _ in seen]
    for gone in ("x-remove-me", "x-remove-too", "keep-alive", "proxy-connection", "te",
                 "trailer", "upgrade", "proxy-authorization"):
        assert gone not in names, seen
    for name, value in seen:
        if name.lower() == "connection":
            assert "remove" not in value.lower() and "forwarded" not in value.lower(), seen
    assert ["X-Kept", "yes"] in seen
    # Connection may name them, but the headers cmsfront adds stay.
    check_forwarding_headers(seen, "https", "localhost")


def test_hop_by_hop_headers_of_the_response_are_removed(stack):
    with RawConnection(stack.tls.port, stack.pki) as conn:
        conn.send(request_bytes("GET", "/hop"))
        resp = conn.read_response()
        assert resp.status == 200
        assert resp.body == b"hop\n"
        names = [n.lower() for n, _ in resp.headers]
        for gone in ("x-secret", "keep-alive", "proxy-connection", "upgrade"):
            assert gone not in names, resp.headers
        assert resp.header("X-Kept") == "yes"
        # and the connection is still good
        conn.send(request_bytes("GET", "/echo/after-hop"))
        assert conn.read_response().status == 200


def test_chunked_request_is_reframed_without_extensions_or_trailers(stack):
    body = b"".join(b"%x;ext=%d\r\n%s\r\n" % (len(p), i, p)
                    for i, p in enumerate([b"hello ", b"chunked ", b"world"]))
    data = request_bytes("POST", "/echo/chunked", headers=[("Transfer-Encoding", "chunked")],
                         body=body + b"0\r\nX-Trailer: t\r\n\r\n")
    got = echo_via(stack, data).json()
    assert got["version"] == "HTTP/1.1"
    assert got["framing"] in ("chunked", "content-length")
    assert got["body_length"] == len(b"hello chunked world")
    assert got["body_sha256"] == hashlib.sha256(b"hello chunked world").hexdigest()
    assert got["chunk_extensions"] == []
    assert got["trailers"] == []
    framing_headers = [n.lower() for n, _ in got["headers"]
                       if n.lower() in ("content-length", "transfer-encoding")]
    assert len(framing_headers) == 1, got["headers"]


def test_content_length_request_keeps_its_length(stack):
    body = bytes(range(256)) * 100
    got = echo_via(stack, request_bytes("PUT", "/echo/cl", body=body)).json()
    assert got["framing"] in ("content-length", "chunked")
    assert got["body_length"] == len(body)
    assert got["body_sha256"] == hashlib.sha256(body).hexdigest()


def test_empty_chunked_body(stack):
    got = echo_via(stack, request_bytes("POST", "/echo/empty", headers=[
        ("Transfer-Encoding", "chunked")], body=b"0\r\n\r\n")).json()
    assert got["body_length"] == 0


def test_http10_client_gets_an_answer_and_the_backend_sees_http11(stack):
    with RawConnection(stack.tls.port, stack.pki) as conn:
        conn.send(request_bytes("GET", "/echo/old", version="HTTP/1.0"))
        resp = conn.read_response()
        assert resp.status == 200, resp
        assert resp.json()["version"] == "HTTP/1.1"
        # HTTP/1.0 without keep-alive: the connection ends after the answer.
        assert conn.closed_within(10)


def test_get_without_body_has_no_framing_headers(stack):
    got = echo_via(stack, request_bytes("GET", "/echo/nobody")).json()
    assert got["framing"] in ("none", "content-length")
    assert got["body_length"] == 0
