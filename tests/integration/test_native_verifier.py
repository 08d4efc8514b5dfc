"""The native test backend's byte-exact CMS header check (cmsfront-test-backend --hmac-key,
paths under /verify), driven with requests hand-signed by backends/cms_auth_check.py: no
cmsfront here, this proves the verifier itself before tests trust it with cmsfront's output.

The binary is looked for in $CMSFRONT_BUILD when set, else next to $CMSFRONT_BIN (default
build/cmsfront), like test_native_backend.py does.
"""

import json
import subprocess
import sys

import pytest

import harness
from harness import RawConnection, request_bytes

sys.path.insert(0, str(harness.HERE / "backends"))

import cms_auth_check as cac  # noqa: E402

KEY = cac.VECTOR_KEY


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("native-verify")
    key_path = workdir / "hmac.key"
    key_path.write_bytes(KEY)
    native = harness.VerifyingBackend(workdir, key_path)
    yield native
    native.stop()


def send(port, headers, path="/verify/x"):
    """headers: (name, value) pairs, str or raw bytes; bytes go out exactly as given."""
    text = [(n.decode("latin-1") if isinstance(n, bytes) else n,
             v.decode("latin-1") if isinstance(v, bytes) else v) for n, v in headers]
    with RawConnection(port, tls=False) as conn:
        conn.send(request_bytes("GET", path, headers=text))
        resp = conn.read_response()
    return resp.status, json.loads(resp.body) if resp.body.startswith(b"{") else resp.body


def wire(value):
    """A JSON string from the native backend back to the bytes it received (\\u00XX = byte)."""
    return value.encode("latin-1")


def signed_pairs(identity, status="OK", key=KEY, extra=()):
    digest = cac.sign_raw(identity, key)
    return (list(identity.items()) + [("cms-auth-status", status), ("cms-authn-hmac", digest)]
            + list(extra))


def test_vector_a_verifies(backend):
    pairs = signed_pairs(cac.VECTOR_A, extra=[("cms-auth-cert", cac.VECTOR_A["cms-authn-dn"]),
                                              ("cms-request-uri", "/verify/x")])
    assert dict(pairs)["cms-authn-hmac"] == cac.VECTOR_A_HMAC
    status, body = send(backend.port, pairs)
    assert status == 200, body
    assert body["hmac_ok"] is True
    assert body["status"] == "OK"
    assert body["method"] == "X509Proxy"
    assert body["dn"] == cac.VECTOR_A["cms-authn-dn"]
    assert body["login"] == "jdoe"
    assert body["name"] == "John Doe"
    seen = {n.lower(): v for n, v in body["headers"]}
    assert seen["cms-authz-operator"] == "group:dbs site:t1-ch-cern"
    assert seen["cms-request-uri"] == "/verify/x"


def test_header_name_case_does_not_matter(backend):
    pairs = [(n.title(), v) for n, v in signed_pairs(cac.VECTOR_A)]
    status, body = send(backend.port, pairs)
    assert status == 200 and body["hmac_ok"] is True, body


def test_vector_e_none_block_verifies(backend):
    status, body = send(backend.port, signed_pairs(cac.VECTOR_E, status="NONE"))
    assert status == 200, body
    assert body["status"] == "NONE" and body["method"] == "None"
    assert body["dn"] is None and body["login"] is None


def test_tampered_dn_is_refused(backend):
    pairs = signed_pairs(cac.VECTOR_A)
    pairs = [(n, v + "/CN=evil" if n == "cms-authn-dn" else v) for n, v in pairs]
    status, body = send(backend.port, pairs)
    assert status == 403
    assert body == {"hmac_ok": False, "reason": "hmac mismatch",
                    "expected": body["expected"], "message": body["message"]}
    assert body["expected"] != cac.VECTOR_A_HMAC


def test_added_role_is_refused(backend):
    pairs = signed_pairs(cac.VECTOR_A) + [("cms-authz-superuser", "group:evil")]
    status, body = send(backend.port, pairs)
    assert status == 403 and body["reason"] == "hmac mismatch"


def test_missing_hmac_is_refused(backend):
    pairs = [(n, v) for n, v in signed_pairs(cac.VECTOR_A) if n != "cms-authn-hmac"]
    status, body = send(backend.port, pairs)
    assert status == 403
    assert body == {"hmac_ok": False, "reason": "missing hmac"}


def test_missing_or_bad_status_is_refused(backend):
    pairs = [(n, v) for n, v in signed_pairs(cac.VECTOR_A) if n != "cms-auth-status"]
    assert send(backend.port, pairs)[1]["reason"] == "missing status"
    pairs = signed_pairs(cac.VECTOR_A, status="FAILED")
    assert send(backend.port, pairs)[1]["reason"] == "status not OK"


def test_duplicate_signed_header_is_refused(backend):
    pairs = signed_pairs(cac.VECTOR_A) + [("Cms-Authn-Login", "root")]
    status, body = send(backend.port, pairs)
    assert status == 403 and body["reason"] == "duplicate header"


def test_key_with_trailing_newline_does_not_verify(backend):
    pairs = signed_pairs(cac.VECTOR_C, key=KEY + b"\n")
    assert dict(pairs)["cms-authn-hmac"] == cac.VECTOR_C_HMAC_KEY_NEWLINE
    status, body = send(backend.port, pairs)
    assert status == 403 and body["reason"] == "hmac mismatch"
    status, body = send(backend.port, signed_pairs(cac.VECTOR_C))
    assert status == 200, body


def test_non_ascii_signed_over_raw_bytes_verifies(backend):
    name = "José Müller".encode("utf-8")
    dn = "/DC=ch/DC=cern/OU=Organic Units/OU=Users/CN=jmuller/CN=654321/CN=José Müller".encode()
    identity = {b"cms-authn-method": b"X509Cert", b"cms-authn-dn": dn,
                b"cms-authn-login": b"jmuller", b"cms-authn-name": name,
                b"cms-authz-user": b"group:das"}
    digest = cac.sign_raw(identity, KEY)
    pairs = list(identity.items()) + [(b"cms-auth-status", b"OK"), (b"cms-authn-hmac", digest)]
    status, body = send(backend.port, pairs)
    assert status == 200, body
    assert wire(body["name"]) == name and wire(body["dn"]) == dn
    # The same request is what a CherryPy backend refuses (contract 1.3, the known trap) ...
    latin1 = {n.decode("latin-1"): v.decode("latin-1") if isinstance(v, bytes) else v
              for n, v in pairs}
    assert cac.verify(latin1, KEY).reason == "hmac mismatch"
    # ... and one signed the CherryPy way is what this byte-exact backend refuses.
    latin1["cms-authn-hmac"] = cac.sign_cherrypy(latin1, KEY)
    status, body = send(backend.port, list(latin1.items()))
    assert status == 403 and body["reason"] == "hmac mismatch"


def test_other_paths_are_unchanged(backend):
    status, body = send(backend.port, [("X-Test", "1")], path="/echo/a")
    assert status == 200 and ["X-Test", "1"] in body["headers"]
    status, body = send(backend.port, [], path="/anything")
    assert status == 200 and body == b"ok\n"


def test_verify_is_ordinary_without_a_key(tmp_path):
    binary = harness.native_backend_binary()
    log = open(tmp_path / "native.log", "wb")
    proc = harness._spawn([str(binary), "--listen", "127.0.0.1:0"], subprocess.PIPE, log)
    try:
        line = proc.stdout.readline().decode()
        assert line.startswith("listening on "), line
        status, body = send(int(line.rsplit(":", 1)[1]), [], path="/verify")
        assert status == 200 and body == b"ok\n"
    finally:
        harness.stop_process(proc, timeout=5)
        log.close()


def test_unreadable_or_empty_key_file_is_refused(tmp_path):
    empty = tmp_path / "empty.key"
    empty.write_bytes(b"")
    for key_path in (tmp_path / "missing.key", empty):
        done = subprocess.run([str(harness.native_backend_binary()), "--listen", "127.0.0.1:0",
                               "--hmac-key", str(key_path)],
                              capture_output=True, timeout=10)
        assert done.returncode == 66, done
        assert b"--hmac-key" in done.stderr
