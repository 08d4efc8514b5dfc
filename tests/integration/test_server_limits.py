"""Process-level protections: the client connection limit, dropping root after binding, and
TLS renegotiation refused."""

import os
import socket
import ssl
import subprocess
import time
from types import SimpleNamespace

import pytest

from harness import Listener, RawConnection, client_context, request_bytes


@pytest.fixture(scope="module")
def stack(launcher):
    echo = launcher.echo()
    tls = Listener()
    server = {"workers": 1, "max_connections": 2}
    if os.geteuid() == 0:
        server["user"] = "nobody"
    front = launcher.cmsfront([tls], {"echo": {"servers": [echo.url]}},
                              [{"path": "/", "backend": "echo"}], server=server)
    return SimpleNamespace(echo=echo, front=front, tls=tls, pki=launcher.pki)


def handshake_and_get(stack, conn):
    conn.send(request_bytes("GET", "/echo/limit"))
    return conn.read_response().status


def test_connections_beyond_server_max_connections_are_closed_at_once(stack):
    with RawConnection(stack.tls.port, stack.pki) as first, \
            RawConnection(stack.tls.port, stack.pki) as second:
        assert handshake_and_get(stack, first) == 200
        assert handshake_and_get(stack, second) == 200
        # The third TCP connection is accepted by the kernel and closed by cmsfront before
        # any TLS byte: the handshake cannot complete.
        with socket.create_connection(("127.0.0.1", stack.tls.port), timeout=10) as raw:
            with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
                client_context(stack.pki).wrap_socket(raw, server_hostname="localhost")
    # The slots are free again once cmsfront has seen the first two close (it may take a
    # moment after our close: retry for a bounded time).
    for _ in range(100):
        try:
            with RawConnection(stack.tls.port, stack.pki) as again:
                assert handshake_and_get(stack, again) == 200
                return
        except (ssl.SSLError, ConnectionError, OSError):
            time.sleep(0.1)
    pytest.fail("no connection accepted after the others closed")


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")
def test_server_user_drops_root_after_binding(stack):
    with open("/proc/%d/status" % stack.front.pid) as status:
        uids = next(line for line in status if line.startswith("Uid:")).split()[1:]
    nobody = int(subprocess.run(["id", "-u", "nobody"], capture_output=True, text=True,
                                check=True).stdout)
    assert [int(u) for u in uids] == [nobody] * 4, "real, effective, saved, fs uid"
    with RawConnection(stack.tls.port, stack.pki) as conn:
        assert handshake_and_get(stack, conn) == 200


def test_client_initiated_renegotiation_is_refused(stack):
    # openssl s_client renegotiates when it reads a line "R"; the request after it must not
    # be answered on that connection.
    script = b"R\n"
    proc = subprocess.run(
        ["openssl", "s_client", "-connect", "127.0.0.1:%d" % stack.tls.port, "-tls1_2",
         "-CAfile", str(stack.pki / "ca.pem"), "-servername", "localhost"],
        input=script + request_bytes("GET", "/echo/after-renegotiation"),
        capture_output=True, timeout=30)
    output = proc.stdout + proc.stderr
    assert b"RENEGOTIATING" in output
    assert b"no renegotiation" in output
    assert not any(e.get("target") == "/after-renegotiation" for e in stack.echo.log())
