"""500 concurrent keep-alive TLS clients through cmsfront to a CherryPy backend with
server.thread_pool = 10 and max_connections = 10: every request succeeds, and CherryPy never
holds more than 10 connections from cmsfront (counted on the backend side)."""

import json
import threading
from types import SimpleNamespace

import pytest

from harness import Listener, RawConnection, client_context, request_bytes

CLIENTS = 500
REQUESTS_PER_CLIENT = 3
MAX_CONNECTIONS = 10


@pytest.fixture(scope="module")
def stack(launcher):
    app = launcher.cherrypy(threads=10)
    tls = Listener()
    front = launcher.cmsfront(
        [tls],
        {"cherrypy": {"servers": [app.url], "max_connections": MAX_CONNECTIONS,
                      "max_queue": 2000, "queue_timeout": "120s", "response_timeout": "60s",
                      "idle_timeout": "5s"}},
        [{"path": "/", "backend": "cherrypy"}],
        server={"workers": 4, "max_connections": 5000})
    return SimpleNamespace(app=app, front=front, tls=tls, pki=launcher.pki)


def run_clients(stack, clients, requests_per_client, target):
    ctx = client_context(stack.pki)
    barrier = threading.Barrier(clients, timeout=120)
    results = [None] * clients

    def client(i):
        statuses = []
        try:
            with RawConnection(stack.tls.port, stack.pki, timeout=120, context=ctx) as conn:
                try:
                    barrier.wait()  # all connections open before the first request
                except threading.BrokenBarrierError:
                    pass
                for j in range(requests_per_client):
                    conn.send(request_bytes("GET", "%s&client=%d&req=%d" % (target, i, j)))
                    resp = conn.read_response()
                    ok = resp.status == 200
                    if ok:
                        headers = {k.lower(): v for k, v in json.loads(resp.body)["headers"].items()}
                        ok = headers.get("x-forwarded-for") == "127.0.0.1"
                    statuses.append(resp.status if ok else ("bad", resp.status, resp.body[:200]))
        except Exception as e:  # collected and reported below
            barrier.abort()
            statuses.append(repr(e))
        results[i] = statuses

    old = threading.stack_size(512 * 1024)
    try:
        threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    finally:
        threading.stack_size(old)
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    return results


def test_500_keepalive_clients_through_a_10_connection_pool(stack):
    stack.app.reset()
    results = run_clients(stack, CLIENTS, REQUESTS_PER_CLIENT, "/work?ms=20")
    failures = [(i, r) for i, r in enumerate(results) if r != [200] * REQUESTS_PER_CLIENT]
    assert not failures, "%d clients failed, e.g. %r" % (len(failures), failures[:5])
    stats = stack.app.stats()
    assert stats["requests"] == CLIENTS * REQUESTS_PER_CLIENT, stats
    assert 1 <= stats["max"] <= MAX_CONNECTIONS, json.dumps(stats)
    assert stack.front.alive()


def test_pool_is_reused_after_the_burst(stack):
    # The pooled connections stay usable (and bounded) for a second, smaller burst.
    stack.app.reset()
    results = run_clients(stack, 50, 2, "/work?ms=5")
    assert all(r == [200, 200] for r in results), results
    stats = stack.app.stats()
    assert stats["max"] <= MAX_CONNECTIONS, json.dumps(stats)
