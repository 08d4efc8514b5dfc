"""TLS files reloaded while cmsfront runs, and session resumption.

CRLs and CA directories replaced on disk (noticed by the file check, or at once on SIGHUP), a
broken CRL or an emptied ca_dir (the previous trust store is kept), server certificates
replaced (SNI ones too), shared session ticket keys and their rotation, session_lifetime, and
that a resumed session carries the identity of its first handshake.

Everything uses the grid fixtures (tests/pki/make_grid_fixtures.py): the server certificate
under the grid root CA, a private copy of its hashed ca_dir per test, and the users and proxies
it issued. Files are replaced the way fetch-crl and configuration managers do it: a temporary
file in the same directory, renamed over the old one.
"""

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time

import pytest

from harness import Cmsfront, Listener, RawConnection, render_config, request_bytes

CHECK_INTERVAL = "200ms"
TROUBLE = request_bytes("GET", "/auth/trouble", headers=[
    ("Accept", "application/json"), ("Connection", "close")])


# --- helpers ------------------------------------------------------------------------------

def wait_until(predicate, timeout=5.0, interval=0.05):
    """predicate() until it is truthy or timeout seconds passed; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def replace_file(path, data):
    """Writes a temporary file next to path and renames it over path (as fetch-crl does). The
    temporary name (<name>.tmp) is not a CA or CRL name, so a trust store ignores it."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.rename(tmp, path)


def copy_ca_dir(grid, workdir):
    target = workdir / "ca_dir"
    shutil.copytree(grid["ca_dir"], target, symlinks=True)
    return target


def crl_path(grid, ca_dir, ca="root"):
    return ca_dir / ("%s.r0" % grid["cas"][ca]["hash"])


def revoking_crl(grid, workdir, case="user", ca="root"):
    """A new CRL of `ca` that also revokes `case`, made with `openssl ca` on a copy of the CA's
    directory, so the session's fixtures stay as they are. Returns the PEM bytes."""
    info = grid["cas"][ca]
    source = os.path.dirname(info["cert"])
    directory = workdir / ("%s-ca-copy" % ca)
    shutil.copytree(source, directory)
    cnf = directory / "openssl.cnf"
    cnf.write_text(re.sub(r"(?m)^dir\s*=.*$", lambda _: "dir = %s" % directory, cnf.read_text()))
    common = ["-config", str(cnf), "-cert", str(directory / "ca.pem"),
              "-keyfile", str(directory / "ca.key"), "-batch"]
    subprocess.run(["openssl", "ca"] + common + ["-revoke", grid["cases"][case]["cert"],
                                                 "-crl_reason", "keyCompromise"],
                   check=True, capture_output=True, timeout=30)
    out = directory / "revoking-crl.pem"
    subprocess.run(["openssl", "ca"] + common + ["-gencrl", "-crldays", "2", "-out", str(out)],
                   check=True, capture_output=True, timeout=30)
    listed = subprocess.run(["openssl", "crl", "-in", str(out), "-noout", "-text"], check=True,
                            capture_output=True, text=True, timeout=30).stdout
    serial = subprocess.run(["openssl", "x509", "-in", grid["cases"][case]["cert"], "-noout",
                             "-serial"], check=True, capture_output=True, text=True,
                            timeout=30).stdout.strip().split("=")[1]
    assert "Serial Number: %s" % serial in listed, listed  # the CRL really revokes the user
    return out.read_bytes()


def client_context(grid, case=None, maximum=None):
    """Verifies the server against the grid root CA; presents `case`'s certificate (its .pem
    holds the certificate, the key and the chain)."""
    ctx = ssl.create_default_context(cafile=grid["cas"]["root"]["cert"])
    ctx.set_alpn_protocols(["http/1.1"])
    if case is not None:
        ctx.load_cert_chain(grid["cases"][case]["pem"])
    if maximum is not None:
        ctx.maximum_version = maximum
    return ctx


def get(port, ctx, target="/protected/x", conn=None):
    """One GET asking for JSON, on conn or on a new connection (a full handshake)."""
    req = request_bytes("GET", target, headers=[("Accept", "application/json")])
    if conn is not None:
        assert conn.send(req), "the connection was closed"
        return conn.read_response()
    with RawConnection(port, context=ctx) as fresh:
        fresh.send(req)
        return fresh.read_response()


def denial_reason(resp):
    return resp.json().get("reason") if resp.status == 403 else None


def log_text(front):
    return front.log_path.read_text(errors="replace")


def log_count(front, pattern):
    return len(re.findall(pattern, log_text(front)))


def wait_for_log(front, pattern, count=1, timeout=5.0):
    if not wait_until(lambda: log_count(front, pattern) >= count, timeout):
        pytest.fail("no %d line(s) matching %r in the log:\n%s" % (
            count, pattern, front.log_tail()), pytrace=False)


def s_client(port, args, request=TROUBLE, timeout=20):
    """openssl s_client with request on stdin; returns (New|Reused, trouble JSON or None, all
    output)."""
    argv = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-ign_eof"] + list(args)
    out = subprocess.run(argv, input=request, capture_output=True, timeout=timeout)
    text = out.stdout.decode("utf-8", "replace")
    mode = re.search(r"(?m)^(New|Reused), ", text)
    body = None
    start = text.find('{"tls":')
    if start >= 0:
        body = json.JSONDecoder().raw_decode(text, start)[0]
    return (mode.group(1) if mode else None), body, text + out.stderr.decode("utf-8", "replace")


def credential_args(grid, case):
    info = grid["cases"][case]
    args = ["-cert", info["cert"], "-key", info["key"]]
    if os.path.getsize(info["chain"]) > 0:
        args += ["-cert_chain", info["chain"]]
    return args


def resume_args(grid, port, case, protocol, sess_in=None, sess_out=None):
    args = ["-servername", "localhost", "-CAfile", grid["cas"]["root"]["cert"],
            "-" + protocol] + credential_args(grid, case)
    if sess_in is not None:
        args += ["-sess_in", str(sess_in)]
    if sess_out is not None:
        args += ["-sess_out", str(sess_out)]
    return args


def first_cert_der(path):
    text = open(path).read()
    block = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", text, re.S)
    return ssl.PEM_cert_to_DER_cert(block.group(0))


def presented_cert(port, server_name="localhost"):
    """SHA-256 of the certificate the server presents (no verification; server_name None: no
    SNI)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        with ctx.wrap_socket(sock, server_hostname=server_name) as tls:
            return hashlib.sha256(tls.getpeercert(binary_form=True)).hexdigest()


def fingerprint(path):
    return hashlib.sha256(first_cert_der(path)).hexdigest()


def toml_string(value):
    return json.dumps(str(value))


# --- fixtures -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def echo(launcher):
    return launcher.echo("tls-reload")


@pytest.fixture
def start(echo, grid, tmp_path):
    """start(ca_dir, tls=..., server=..., server_cert=..., sni=[(cert, key)]) -> a running
    cmsfront with .port; every one is stopped at the end of the test and must exit 0."""
    started = []

    def launch(ca_dir, tls=None, server=None, server_cert=None, sni=None, name="cmsfront"):
        listener = Listener()
        tls_values = {"client_certificates": "request", "ca_dir": str(ca_dir)} | (tls or {})
        server_values = {"file_check_interval": CHECK_INTERVAL} | (server or {})
        cert = server_cert or (grid["servers"]["server"]["cert"],
                               grid["servers"]["server"]["key"])
        text = render_config(grid["dir"], [listener], {"echo": {"servers": [echo.url]}},
                             [{"path": "/protected", "backend": "echo", "auth": "cert"},
                              {"path": "/", "backend": "echo"}],
                             server=server_values, tls=tls_values, server_cert=cert)
        if sni:
            # harness.render_config has no inline tables: add the array to [tls.main].
            entries = ", ".join("{certificate = %s, key = %s}" % (toml_string(c), toml_string(k))
                                for c, k in sni)
            assert "[tls.main]\n" in text
            text = text.replace("[tls.main]\n", "[tls.main]\nsni_certificates = [%s]\n" % entries,
                                1)
        try:
            front = Cmsfront(tmp_path, text, name, [listener])
        except RuntimeError as e:
            pytest.fail(str(e), pytrace=False)
        front.port = listener.port
        started.append(front)
        return front

    yield launch
    problems = []
    for front in reversed(started):
        rc = front.stop()
        if rc != 0:
            problems.append("cmsfront exited with %s on SIGTERM:\n%s" % (rc, front.log_tail()))
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


# --- CRLs and the CA directory ------------------------------------------------------------

def test_crl_replaced_on_disk_applies_to_new_connections_only(start, grid, tmp_path):
    ca_dir = copy_ca_dir(grid, tmp_path)
    front = start(ca_dir)
    user = client_context(grid, "user")
    first = get(front.port, user)
    assert first.status == 200, first
    wait_for_log(front, r"tls\.main: trust store loaded: .* \(generation 1\)")

    # A keep-alive connection of the user, authenticated before the revocation.
    kept = RawConnection(front.port, context=user)
    try:
        assert get(front.port, None, conn=kept).status == 200
        new_crl = revoking_crl(grid, tmp_path)
        replace_file(crl_path(grid, ca_dir), new_crl)

        refused = wait_until(lambda: denial_reason(get(front.port, user)) == "revoked", 5.0)
        assert refused, "a new connection of the revoked user was still accepted:\n%s" % (
            front.log_tail())
        wait_for_log(front, r"tls\.main: trust store reloaded: \d+ CAs, \d+ CRLs from %s "
                            r"\(generation 2\)" % re.escape(str(ca_dir)))
        resp = get(front.port, user)
        assert resp.status == 403 and resp.json()["reason"] == "revoked", resp

        # The established connection keeps the identity of its handshake.
        resp = get(front.port, None, conn=kept)
        assert resp.status == 200, resp
        trouble = get(front.port, None, "/auth/trouble", conn=kept).json()
        assert trouble["verified"] is True
        assert trouble["user_dn"] == grid["cases"]["user"]["user_dn"]
        assert not kept.eof
    finally:
        kept.close()
    # Another user of the same CA is not affected.
    assert get(front.port, client_context(grid, "user_utf8")).status == 200


def test_sighup_reloads_the_crl_at_once(start, grid, tmp_path):
    ca_dir = copy_ca_dir(grid, tmp_path)
    front = start(ca_dir, server={"file_check_interval": "1h"})
    user = client_context(grid, "user")
    assert get(front.port, user).status == 200
    replace_file(crl_path(grid, ca_dir), revoking_crl(grid, tmp_path))
    time.sleep(0.5)  # several short intervals' worth: nothing may notice it yet
    assert get(front.port, user).status == 200, "reloaded without SIGHUP (interval is 1h)"
    assert "trust store reloaded" not in log_text(front)

    front.proc.send_signal(signal.SIGHUP)
    refused = wait_until(lambda: denial_reason(get(front.port, user)) == "revoked", 5.0)
    assert refused, "still accepted after SIGHUP:\n%s" % front.log_tail()
    wait_for_log(front, r"trust store reloaded: .* \(generation 2\)")
    assert front.alive()


def test_broken_crl_is_skipped_and_an_emptied_ca_dir_keeps_the_store(start, grid, tmp_path):
    ca_dir = copy_ca_dir(grid, tmp_path)
    front = start(ca_dir)
    user = client_context(grid, "user")
    assert get(front.port, user).status == 200

    sub_user = client_context(grid, "user_sub")
    assert get(front.port, sub_user).status == 200

    # Garbage in place of the sub CA's CRL (a damaged download): reported, and the CRL read
    # from that file before stays in force, so the sub CA's users are not locked out
    # (crl = "require" would otherwise refuse them as crl_missing) and the root's go on.
    broken = crl_path(grid, ca_dir, "sub")
    replace_file(broken, b"this is not a CRL\n" * 20)
    wait_for_log(front, r"trust store reloaded: .* \(generation 2\)")
    wait_for_log(front, r"tls\.main: skipped: %s: no readable CRL.*; keeping the CRL read from "
                        r"it before" % re.escape(str(broken)))
    resp = get(front.port, user)
    assert resp.status == 200, resp
    assert get(front.port, client_context(grid, "user_utf8")).status == 200
    resp = get(front.port, sub_user)
    assert resp.status == 200, resp

    # Every file removed: the previous store stays in use.
    for entry in os.listdir(ca_dir):
        os.unlink(ca_dir / entry)
    wait_for_log(front, r"tls\.main: ca_dir %s now holds no usable CA certificate.*; keeping "
                        r"the previous trust store" % re.escape(str(ca_dir)))
    resp = get(front.port, user)
    assert resp.status == 200, resp
    trouble = get(front.port, user, "/auth/trouble").json()
    assert trouble["verified"] is True and trouble["resumed"] is False
    assert trouble["user_dn"] == grid["cases"]["user"]["user_dn"]
    assert log_count(front, r"trust store reloaded") == 1
    assert front.alive()


# --- session resumption -------------------------------------------------------------------

@pytest.mark.parametrize("protocol", ["tls1_3", "tls1_2"])
@pytest.mark.parametrize("case", ["user", "proxy_rfc"])
def test_resumed_session_keeps_the_identity(start, grid, tmp_path, protocol, case):
    front = start(copy_ca_dir(grid, tmp_path))
    session = tmp_path / "session.pem"
    mode, first, out = s_client(front.port, resume_args(grid, front.port, case, protocol,
                                                        sess_out=session))
    assert mode == "New" and first is not None, out
    assert first["resumed"] is False and first["verified"] is True, first
    expected = grid["cases"][case]
    assert (first["user_dn"], first["kind"], first["outcome"]) == (
        expected["user_dn"], expected["kind"], "ok"), first
    assert first["protocol"] == {"tls1_3": "TLSv1.3", "tls1_2": "TLSv1.2"}[protocol]
    assert session.stat().st_size > 0

    mode, second, out = s_client(front.port, resume_args(grid, front.port, case, protocol,
                                                         sess_in=session))
    assert mode == "Reused", out
    assert second["resumed"] is True, second
    for key in ("user_dn", "leaf_dn", "kind", "outcome", "verified", "issuer_dn", "not_after"):
        assert second[key] == first[key], key


def test_resumption_without_a_certificate_stays_anonymous(start, grid, tmp_path):
    front = start(copy_ca_dir(grid, tmp_path))
    session = tmp_path / "anon.pem"
    base = ["-servername", "localhost", "-CAfile", grid["cas"]["root"]["cert"], "-tls1_3"]
    mode, first, out = s_client(front.port, base + ["-sess_out", str(session)])
    assert mode == "New" and first["certificate_offered"] is False, out
    mode, second, out = s_client(front.port, base + ["-sess_in", str(session)])
    assert mode == "Reused", out
    # Resuming an anonymous session must not yield an identity. (cmsfront reports "resumed":
    # false here, as it shows the shared no-certificate identity; not asserted either way.)
    assert second["certificate_offered"] is False and second["verified"] is False, second
    assert second["kind"] == "none" and second["outcome"] == "no_certificate", second
    protected = request_bytes("GET", "/protected/x", headers=[
        ("Accept", "application/json"), ("Connection", "close")])
    mode, _, out = s_client(front.port, base + ["-sess_in", str(session)], request=protected)
    assert mode == "Reused" and "HTTP/1.1 403 " in out, out


@pytest.mark.parametrize("protocol", ["tls1_3", "tls1_2"])
def test_session_lifetime_ends_resumption(start, grid, tmp_path, protocol):
    front = start(copy_ca_dir(grid, tmp_path), tls={"session_lifetime": "2s"})
    session = tmp_path / "session.pem"
    started = time.time()
    mode, first, out = s_client(front.port, resume_args(grid, front.port, "user", protocol,
                                                        sess_out=session))
    assert mode == "New" and first["resumed"] is False, out
    mode, body, out = s_client(front.port, resume_args(grid, front.port, "user", protocol,
                                                       sess_in=session))
    assert mode == "Reused" and body["resumed"] is True, out
    assert body["user_dn"] == grid["cases"]["user"]["user_dn"]

    # Past the lifetime (counted in whole seconds, so wait for 3).
    time.sleep(max(0.0, started + 3.1 - time.time()))
    mode, body, out = s_client(front.port, resume_args(grid, front.port, "user", protocol,
                                                       sess_in=session))
    assert mode == "New", out
    assert body["resumed"] is False and body["verified"] is True, body


def trouble_in_session(port, ctx, session=None):
    """GET /auth/trouble on a new connection offering session (Python's ssl, which, unlike
    s_client, keeps the ticket a resumed TLS 1.2 connection receives). Returns (resumed by the
    client's account, trouble JSON, the session afterwards with any new ticket)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        with ctx.wrap_socket(sock, server_hostname="localhost", session=session) as tls:
            tls.sendall(TROUBLE)
            data = b""
            while True:
                chunk = tls.recv(65536)
                if not chunk:
                    break
                data += chunk
            return tls.session_reused, json.loads(data.split(b"\r\n\r\n", 1)[1]), tls.session


@pytest.mark.parametrize("protocol", ["tls1_3", "tls1_2"])
def test_session_lifetime_counts_from_the_first_authentication(start, grid, tmp_path, protocol):
    """A ticket renewed on a resumed connection carries the first handshake's time: once the
    lifetime has passed since then it is refused although the ticket itself is young (the
    client still offers it: its age is below the lifetime hint)."""
    keys = tmp_path / "ticket-keys"
    old_key, new_key = os.urandom(80), os.urandom(80)
    keys.write_bytes(old_key)
    front = start(copy_ca_dir(grid, tmp_path),
                  tls={"session_lifetime": "3s", "session_ticket_keys": str(keys)})
    version = {"tls1_3": ssl.TLSVersion.TLSv1_3, "tls1_2": ssl.TLSVersion.TLSv1_2}[protocol]
    ctx = client_context(grid, "user", maximum=version)
    ctx.minimum_version = version
    started = time.time()
    reused, body, first_session = trouble_in_session(front.port, ctx)
    assert not reused and body["resumed"] is False and body["verified"] is True, body
    assert first_session is not None and first_session.has_ticket
    # A ticket under a key that is no longer the first is accepted and replaced by a new one.
    replace_file(keys, new_key + old_key)
    wait_for_log(front, r"session ticket keys reloaded \(2 keys\)", timeout=1.5)
    reused, body, renewed = trouble_in_session(front.port, ctx, first_session)
    resumed_at = time.time()
    assert resumed_at - started < 1.9, "too slow to test this (%.1f s)" % (resumed_at - started)
    assert reused and body["resumed"] is True, body
    assert body["user_dn"] == grid["cases"]["user"]["user_dn"]
    assert renewed.has_ticket and renewed.id != first_session.id, "no renewed ticket"

    # 3 s after the first handshake, under 3 s after the renewed ticket arrived.
    time.sleep(max(0.0, started + 3.1 - time.time()))
    assert time.time() - resumed_at < 3.0
    reused, body, _ = trouble_in_session(front.port, ctx, renewed)
    assert not reused, "a renewed ticket outlived session_lifetime: %r" % body
    assert body["resumed"] is False and body["verified"] is True, body


def test_shared_ticket_keys_and_rotation(start, grid, tmp_path):
    keys = tmp_path / "ticket-keys"
    old_key, new_key = os.urandom(80), os.urandom(80)
    keys.write_bytes(old_key)
    ca_dir = copy_ca_dir(grid, tmp_path)
    first = start(ca_dir, tls={"session_ticket_keys": str(keys)}, name="first")
    second = start(ca_dir, tls={"session_ticket_keys": str(keys)}, name="second")
    user_dn = grid["cases"]["user"]["user_dn"]

    def resume(front, session):
        return s_client(front.port, resume_args(grid, front.port, "user", "tls1_3",
                                                sess_in=session))

    old_ticket = tmp_path / "old-ticket.pem"
    mode, body, out = s_client(first.port, resume_args(grid, first.port, "user", "tls1_3",
                                                       sess_out=old_ticket))
    assert mode == "New" and body["resumed"] is False, out
    mode, body, out = resume(second, old_ticket)
    assert mode == "Reused", "a ticket of the first process does not resume on the second:\n" + out
    assert body["resumed"] is True and body["user_dn"] == user_dn, body

    # Rotation, step 1: new key first (encrypts), old key second (still decrypts).
    replace_file(keys, new_key + old_key)
    wait_for_log(second, r"tls\.main: session ticket keys reloaded \(2 keys\)")
    mode, body, out = resume(second, old_ticket)
    assert mode == "Reused" and body["resumed"] is True, out
    new_ticket = tmp_path / "new-ticket.pem"
    mode, body, out = s_client(second.port, resume_args(grid, second.port, "user", "tls1_3",
                                                        sess_out=new_ticket))
    assert mode == "New", out

    # A broken file (81 bytes): reported, the previous keys stay.
    replace_file(keys, os.urandom(81))
    wait_for_log(second, r"tls\.main: .*81 bytes found.*; keeping the previous session ticket "
                         r"keys")
    mode, body, out = resume(second, old_ticket)
    assert mode == "Reused" and body["resumed"] is True, out
    assert log_count(second, r"session ticket keys reloaded") == 1

    # Step 2: the old key is gone; its tickets mean a full handshake, the new key's resume.
    replace_file(keys, new_key)
    wait_for_log(second, r"tls\.main: session ticket keys reloaded \(1 keys\)")
    mode, body, out = resume(second, old_ticket)
    assert mode == "New", "a ticket under a removed key still resumes:\n" + out
    assert body["resumed"] is False and body["user_dn"] == user_dn, body
    mode, body, out = resume(second, new_ticket)
    assert mode == "Reused" and body["resumed"] is True and body["user_dn"] == user_dn, out
    # The first process read the same file: the new key's ticket resumes there too.
    wait_for_log(first, r"session ticket keys reloaded \(1 keys\)")
    mode, body, out = resume(first, new_ticket)
    assert mode == "Reused" and body["user_dn"] == user_dn, out


# --- server certificates ------------------------------------------------------------------

def s_client_certificate(port, args):
    """SHA-256 of the certificate s_client received."""
    out = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port] + args,
                         input=b"", capture_output=True, timeout=20)
    text = out.stdout.decode("latin-1")
    block = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", text, re.S)
    assert block, text + out.stderr.decode("latin-1")
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(block.group(0))).hexdigest()


def test_sni_selects_the_certificate(start, grid, tmp_path):
    servers = grid["servers"]
    front = start(copy_ca_dir(grid, tmp_path),
                  sni=[(servers["server2"]["cert"], servers["server2"]["key"])])
    main, alias = fingerprint(servers["server"]["cert"]), fingerprint(servers["server2"]["cert"])
    assert main != alias
    assert s_client_certificate(front.port, ["-servername", "cmsweb-testbed.localhost"]) == alias
    assert s_client_certificate(front.port, ["-servername", "CMSWEB-testbed.localhost"]) == alias
    assert s_client_certificate(front.port, ["-servername", "localhost"]) == main
    assert s_client_certificate(front.port, ["-servername", "other.localhost"]) == main
    assert s_client_certificate(front.port, ["-noservername"]) == main
    # A client verifying the alias name against the grid CA accepts what it gets.
    ctx = client_context(grid)
    with socket.create_connection(("127.0.0.1", front.port), timeout=10) as sock:
        with ctx.wrap_socket(sock, server_hostname="cmsweb-testbed.localhost") as tls:
            assert hashlib.sha256(tls.getpeercert(True)).hexdigest() == alias


def test_server_certificate_hot_reload(start, grid, tmp_path):
    servers = grid["servers"]
    cert, key = tmp_path / "host-cert.pem", tmp_path / "host-key.pem"
    shutil.copy(servers["server"]["cert"], cert)
    shutil.copy(servers["server"]["key"], key)
    front = start(copy_ca_dir(grid, tmp_path), server_cert=(cert, key))
    old, new = fingerprint(servers["server"]["cert"]), fingerprint(servers["server2"]["cert"])
    assert presented_cert(front.port) == old
    assert presented_cert(front.port, None) == old

    anonymous = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    anonymous.check_hostname = False
    anonymous.verify_mode = ssl.CERT_NONE
    kept = RawConnection(front.port, context=anonymous)
    try:
        assert get(front.port, None, "/open", conn=kept).status == 200
        # Key first, then certificate: a check in between sees a mismatched pair and keeps the
        # old one; the next check takes the complete new pair.
        replace_file(key, open(servers["server2"]["key"], "rb").read())
        replace_file(cert, open(servers["server2"]["cert"], "rb").read())
        assert wait_until(lambda: presented_cert(front.port) == new, 5.0), front.log_tail()
        assert presented_cert(front.port, None) == new
        wait_for_log(front, r"tls\.main: server certificates reloaded")
        resp = get(front.port, None, "/open", conn=kept)
        assert resp.status == 200 and not kept.eof, resp
    finally:
        kept.close()

    # A certificate that does not match the key: refused, the current pair stays.
    errors = log_count(front, r"keeping the previous certificates")
    reloads = log_count(front, r"server certificates reloaded")
    replace_file(cert, open(servers["server"]["cert"], "rb").read())
    wait_for_log(front, r"tls\.main: .*; keeping the previous certificates", errors + 1)
    assert presented_cert(front.port) == new
    assert log_count(front, r"server certificates reloaded") == reloads

    # Mended and reloaded by SIGHUP (also before the next interval would have seen it).
    replace_file(key, open(servers["server"]["key"], "rb").read())
    front.proc.send_signal(signal.SIGHUP)
    assert wait_until(lambda: presented_cert(front.port) == old, 5.0), front.log_tail()
    assert front.alive()
