"""The independent backend verifiers (backends/cms_auth_check.py and the CherryPy app built on
it) against the contract's test vectors (cms-contract.md 1.3). Pure Python, no cmsfront: these
prove the verifiers before other tests trust them with cmsfront's output."""

import json
import sys

import pytest

import harness
from harness import RawConnection, request_bytes

sys.path.insert(0, str(harness.HERE / "backends"))

import cms_auth_check as cac  # noqa: E402

KEY = cac.VECTOR_KEY


def test_self_check_passes():
    assert cac.self_check() == []


@pytest.mark.parametrize("headers,digest", [
    (cac.VECTOR_A, cac.VECTOR_A_HMAC),
    (cac.VECTOR_C, cac.VECTOR_C_HMAC),
    (cac.VECTOR_E, cac.VECTOR_E_HMAC),
], ids=["A", "C", "E"])
def test_vectors_sign_the_same_both_ways(headers, digest):
    assert cac.sign_cherrypy(headers, KEY) == digest
    assert cac.sign_raw(headers, KEY) == digest
    raw = {n.encode(): v.encode() for n, v in headers.items()}
    assert cac.sign_raw(raw, KEY) == digest


def test_vector_messages():
    assert cac.message_cherrypy(cac.VECTOR_A).startswith(cac.VECTOR_A_PREFIX)
    assert cac.message_cherrypy(cac.VECTOR_C) == cac.VECTOR_C_MESSAGE
    assert cac.message_raw(cac.VECTOR_C) == cac.VECTOR_C_MESSAGE.encode()
    assert cac.message_cherrypy(cac.VECTOR_E) == cac.VECTOR_E_MESSAGE
    assert cac.sign_raw(cac.VECTOR_C, KEY + b"\n") == cac.VECTOR_C_HMAC_KEY_NEWLINE


def test_verify_vector_a_as_cherrypy_presents_it():
    headers = {n.title(): v for n, v in cac.signed(
        cac.VECTOR_A, "OK", cac.VECTOR_A_HMAC,
        [("cms-auth-cert", "/CN=not signed"), ("cms-request-uri", "/a"),
         ("Remote-Addr", "127.0.0.1")]).items()}
    result = cac.verify(headers, KEY)
    assert result.ok, result
    assert result.identity() == {
        "status": "OK", "method": "X509Proxy", "dn": cac.VECTOR_A["cms-authn-dn"],
        "login": "jdoe", "name": "John Doe",
        "roles": {"admin": ["group:das", "group:reqmgr"],
                  "operator": ["group:dbs", "site:t1-ch-cern"]}}


def test_verify_failures():
    good = cac.signed(cac.VECTOR_C, "OK", cac.VECTOR_C_HMAC)
    assert cac.verify(good, KEY).ok
    assert cac.verify({k: v for k, v in good.items() if k != "cms-authn-hmac"},
                      KEY).reason == "missing hmac"
    assert cac.verify({k: v for k, v in good.items() if k != "cms-auth-status"},
                      KEY).reason == "missing status"
    assert cac.verify(dict(good, **{"cms-auth-status": "FAILED"}), KEY).reason == "status not OK"
    assert cac.verify(dict(good, **{"cms-authn-login": "root"}), KEY).reason == "hmac mismatch"
    assert cac.verify(dict(good, **{"cms-authz-x": "group:evil"}), KEY).reason == "hmac mismatch"
    assert cac.verify(list(good.items()) + [("Cms-Authn-Login", "jdoe")],
                      KEY).reason == "duplicate header"
    assert cac.verify(good, KEY + b"\n").reason == "hmac mismatch"


def test_non_ascii_trap():
    """Contract 1.3: a CherryPy backend sees Latin-1 text and signs its UTF-8 encoding, so a
    value signed over its raw UTF-8 bytes fails there and verifies byte-exact."""
    raw = {b"cms-authn-method": b"X509Cert", b"cms-authn-login": b"jmuller",
           b"cms-authn-name": "José Müller".encode()}
    raw_digest = cac.sign_raw(raw, KEY)
    as_cherrypy = {n.decode("latin-1"): v.decode("latin-1") for n, v in raw.items()}
    cherrypy_digest = cac.sign_cherrypy(as_cherrypy, KEY)
    assert raw_digest != cherrypy_digest
    assert cac.verify_raw(cac.signed(raw, b"OK", raw_digest.encode()), KEY).ok
    assert cac.verify(cac.signed(as_cherrypy, "OK", raw_digest), KEY).reason == "hmac mismatch"
    assert cac.verify(cac.signed(as_cherrypy, "OK", cherrypy_digest), KEY).ok
    assert cac.verify_raw(cac.signed(raw, b"OK", cherrypy_digest.encode()),
                          KEY).reason == "hmac mismatch"


# ---- the CherryPy backend (backends/cherrypy_cms_app.py) ---------------------------------------

@pytest.fixture(scope="module")
def cherry(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("cherrypy-cms")
    key_path = workdir / "hmac.key"
    key_path.write_bytes(KEY)
    app = harness.CmsCherryPyBackend(workdir, key_path)
    yield app
    app.stop()


def get(port, path, pairs):
    """pairs: (name, value) with str values sent as Latin-1 (one byte per character)."""
    with RawConnection(port, tls=False) as conn:
        conn.send(request_bytes("GET", path, headers=pairs))
        resp = conn.read_response()
    return resp.status, json.loads(resp.body)


def test_cherrypy_accepts_vector_a(cherry):
    pairs = list(cac.signed(cac.VECTOR_A, "OK", cac.VECTOR_A_HMAC,
                            [("cms-request-uri", "/cms/reqmgr2")]).items())
    status, body = get(cherry.port, "/cms/reqmgr2/data", pairs)
    assert status == 200, body
    assert body["hmac_ok"] is True and body["login"] == "jdoe"
    assert body["roles"] == {"admin": ["group:das", "group:reqmgr"],
                             "operator": ["group:dbs", "site:t1-ch-cern"]}
    assert body["request_uri"] == "/cms/reqmgr2"
    assert body["headers"]["cms-authn-hmac"] == cac.VECTOR_A_HMAC


def test_cherrypy_accepts_signed_none_and_refuses_bad(cherry):
    status, body = get(cherry.port, "/cms/x", list(cac.signed(
        cac.VECTOR_E, "NONE", cac.VECTOR_E_HMAC).items()))
    assert status == 200 and body["status"] == "NONE", body
    status, body = get(cherry.port, "/cms/x", list(cac.signed(
        cac.VECTOR_E, "NONE", cac.VECTOR_C_HMAC).items()))
    assert status == 403 and body["error"] == "hmac mismatch"
    status, body = get(cherry.port, "/cms/x", list(cac.VECTOR_C.items()))
    assert status == 403 and body["error"] == "missing status"
    status, body = get(cherry.port, "/public/x", [("Cms-Authn-Login", "anyone")])
    assert status == 200 and body["headers"]["cms-authn-login"] == "anyone"


def test_cherrypy_non_ascii(cherry):
    raw = {b"cms-authn-method": b"X509Cert", b"cms-authn-login": b"jmuller",
           b"cms-authn-name": "José Müller".encode(),
           b"cms-authn-dn": "/DC=ch/CN=José Müller".encode()}
    wire = {n.decode("latin-1"): v.decode("latin-1") for n, v in raw.items()}
    # Signed over raw bytes (what the old frontends did): refused, the known trap.
    status, body = get(cherry.port, "/cms/x",
                       list(cac.signed(wire, "OK", cac.sign_raw(raw, KEY)).items()))
    assert status == 403 and body["error"] == "hmac mismatch"
    # Signed the way CherryPy computes it: accepted, and the UTF-8 text comes back.
    status, body = get(cherry.port, "/cms/x",
                       list(cac.signed(wire, "OK", cac.sign_cherrypy(wire, KEY)).items()))
    assert status == 200, body
    assert body["name_utf8"] == "José Müller"
    assert body["dn_utf8"] == "/DC=ch/CN=José Müller"
    assert body["name"] == "José Müller".encode().decode("latin-1")
