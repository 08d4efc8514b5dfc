"""Routes (ordered, first match wins; prefixes on segment boundaries; regex; rewrite), the
404 for no route, and the plain-HTTP listener that redirects to https."""

import ssl
from types import SimpleNamespace

import pytest

from harness import Listener, RawConnection, backend_entries_since, request_bytes


@pytest.fixture(scope="module")
def stack(launcher):
    first = launcher.echo("first")
    second = launcher.echo("second")
    tls = Listener()
    redirect = Listener(tls=False, redirect_to_https=True)
    front = launcher.cmsfront(
        [tls, redirect],
        {"first": {"servers": [first.url]}, "second": {"servers": [second.url]}},
        [
            {"name": "exact-app", "path": "/app/special", "backend": "second"},
            {"name": "app", "path": "/app", "backend": "first"},
            {"name": "couch", "match": "^/couchdb(/.*)?$", "rewrite": "/db$1",
             "backend": "second"},
            {"name": "strip", "path": "/strip", "rewrite": "", "backend": "first"},
            {"name": "moved", "path": "/old", "rewrite": "/new", "backend": "first"},
            {"name": "by-query", "match": "^/q/x\\?.*tier=t1", "query": True,
             "backend": "second"},
            {"name": "q-fallback", "path": "/q", "backend": "first"},
            {"name": "slash", "path": "/dir/", "backend": "second"},
        ])
    return SimpleNamespace(first=first, second=second, front=front, tls=tls,
                           redirect=redirect, pki=launcher.pki)


def get(stack, target, host="localhost", port=None, tls=True):
    with RawConnection(port or stack.tls.port, stack.pki, tls=tls) as conn:
        conn.send(request_bytes("GET", target, host=host))
        return conn.read_response()


@pytest.mark.parametrize("target,backend,forwarded", [
    ("/app", "first", "/app"),
    ("/app/", "first", "/app/"),
    ("/app/x/y?z=1", "first", "/app/x/y?z=1"),
    ("/app?z=1", "first", "/app?z=1"),
    ("/app/special", "second", "/app/special"),
    ("/app/special/more", "second", "/app/special/more"),
    ("/app/specialist", "first", "/app/specialist"),
    ("/couchdb", "second", "/db"),
    ("/couchdb/mydb/_all_docs?limit=1", "second", "/db/mydb/_all_docs?limit=1"),
    ("/strip/a/b", "first", "/a/b"),
    ("/strip", "first", "/"),
    ("/old/page?x=1", "first", "/new/page?x=1"),
    ("/q/x?a=1&tier=t1", "second", "/q/x?a=1&tier=t1"),
    ("/q/x?a=1&tier=t2", "first", "/q/x?a=1&tier=t2"),
    ("/dir/", "second", "/dir/"),
    ("/dir/file", "second", "/dir/file"),
])
def test_route_and_rewrite(stack, target, backend, forwarded):
    resp = get(stack, target)
    assert resp.status == 200, resp
    got = resp.json()
    assert got["backend"] == backend
    assert got["target"] == forwarded


@pytest.mark.parametrize("target", ["/", "/nothing", "/appx", "/application", "/couchdbx",
                                    "/dir", "/oldish", "/stripped"])
def test_no_route_is_404_and_reaches_no_backend(stack, target):
    before = (len(stack.first.log()), len(stack.second.log()))
    resp = get(stack, target)
    assert resp.status == 404, resp
    assert backend_entries_since(stack.first, before[0]) == []
    assert backend_entries_since(stack.second, before[1], settle=0) == []


def test_404_keeps_the_connection(stack):
    with RawConnection(stack.tls.port, stack.pki) as conn:
        conn.send(request_bytes("GET", "/nothing") + request_bytes("GET", "/app/after-404"))
        assert conn.read_response().status == 404
        resp = conn.read_response()
        assert resp.status == 200 and resp.json()["target"] == "/app/after-404"


@pytest.mark.parametrize("target,path", [
    ("/app/page?x=1&y=2", "/app/page?x=1&y=2"),
    ("/app/page", "/app/page"),
    ("/", "/"),
    ("/no/route/needed", "/no/route/needed"),
])
def test_plain_listener_redirects_to_https(stack, target, path):
    # The Location names the host the client asked for and the port of the HTTPS listener
    # (no port when that is 443).
    before = len(stack.first.log())
    resp = get(stack, target, host="cmsweb.example.org:%d" % stack.redirect.port,
               port=stack.redirect.port, tls=False)
    assert resp.status == 301, resp
    assert resp.header("location") == "https://cmsweb.example.org:%d%s" % (stack.tls.port, path)
    assert backend_entries_since(stack.first, before) == []


def test_redirect_listener_is_still_strict(stack):
    with RawConnection(stack.redirect.port, tls=False) as conn:
        conn.send(b"GET /app HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
        assert conn.read_response().status == 400


def test_tls_on_the_plain_port_does_not_hang(stack):
    # A TLS ClientHello on a plain listener is garbage there: refused or closed, promptly.
    try:
        RawConnection(stack.redirect.port, stack.pki, tls=True, timeout=15).close()
    except TimeoutError:
        pytest.fail("a TLS handshake on the plain listener hung")
    except (ssl.SSLError, OSError):
        pass
