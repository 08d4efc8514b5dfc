"""The CMS identity block end to end (cms-contract.md sections 1, 2.2, 2.3, 3): cmsfront maps
the grid fixtures' certificates through a CRIC user map written here, signs cms-authn-* /
cms-authz-* with cms-authn-hmac, and real backends verify what arrives:

  - backends/cherrypy_cms_app.py: Debian's CherryPy, verifying like WMCore on Python 3
    (Latin-1 str headers, message encoded as UTF-8), behind the default hmac_encoding
    ("python3") and, to document the trap, behind a backend with hmac_encoding = "raw";
  - cmsfront-test-backend --hmac-key: a byte-exact (Go-like) verifier on /verify, and /echo
    that lists every header it received, in order -- what spoofing tests inspect.

Clients: curl, python-requests, and raw TLS sockets (ssl module) where those would normalise
what is sent (underscore names, duplicates, Connection options). Two cmsfront processes share
the backends: unknown_users = "reject" (most tests) and unknown_users = "forward"."""

import json
import ssl
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests

import harness
from harness import Listener, RawConnection, request_bytes

sys.path.insert(0, str(harness.HERE / "backends"))

import cms_auth_check as cac  # noqa: E402

KEY = b"\x8f\x01cms-identity-key\x00\xfe"  # 20 raw bytes, not text (as in production)

JDOE_ROLES_CRIC = {
    "Admin": ["group:ReqMgr", "group:DAS"],
    "Data Manager": ["site:T1_CH_CERN"],
    "data_manager": ["group:Data Ops", "site:t1_ch_cern"],  # merges with "Data Manager"
    "operator": ["Site:T2 CH CSCS", "group:dbs", "group:DBS"],
}
JDOE_ROLES = {  # as the cms-authz-* headers must carry them
    "admin": ["group:reqmgr", "group:das"],
    "data-manager": ["site:t1-ch-cern", "group:data-ops"],
    "operator": ["site:t2-ch-cscs", "group:dbs"],
}
JOSE_NAME = "José Müller"
BENCH_OLD_DN = "/DC=ch/DC=cern/OU=Organic Units/OU=Users/CN=bench/CN=111111/CN=Bench Old"

# What a client must never be able to put in front of a backend (contract 1.1). Sent over a
# raw socket, so names and duplicates go out exactly like this.
SPOOFED = [
    ("cms-authz-admin", "group:evil"),
    ("Cms-Authz-Admin", "group:evil2"),
    ("CMS-AUTHN-LOGIN", "root"),
    ("cms_authz_x", "y"),
    ("Cms-Auth-Status", "OK"),
    ("cms-authn-dn", "/DC=ch/CN=evil"),
    ("Connection", "cms-authn-dn"),
    ("cms-authn-hmac", "0123456789abcdef0123456789abcdef01234567"),
    ("cms-authn-method", "X509Cert"),
    ("cms-auth-cert", "/DC=ch/CN=evil"),
    ("cms-request-uri", "/evil"),
    ("ssl_client_verify", "SUCCESS"),
    ("SSL_CLIENT_S_DN", "/DC=ch/CN=evil"),
    ("ssl-client-verify", "SUCCESS"),
    ("x-forwarded-for", "6.6.6.6"),
    ("X-Forwarded-Proto", "http"),
    ("x-forwarded-host", "evil.example"),
    ("Forwarded", "for=6.6.6.6"),
    ("Via", "1.1 evil"),
    ("HTTPS", "on"),
]
# Headers the backend may see that describe the request's origin or identity.
ORIGIN_PREFIXES = ("cms", "ssl", "x-forwarded", "forwarded", "via", "https")

ROUTES = [
    # CherryPy (python3 signing, the default)
    {"path": "/cp/cert", "rewrite": "/cms/cert", "backend": "cp", "auth": "cert"},
    {"path": "/cp/limited", "rewrite": "/cms/limited", "backend": "cp",
     "auth": "cert+limited-proxy"},
    {"path": "/cp/optional", "rewrite": "/cms/optional", "backend": "cp", "auth": "optional"},
    {"path": "/cp/public", "rewrite": "/public", "backend": "cp", "auth": "none"},
    # CherryPy behind a backend that signs raw bytes: the trap for non-ASCII users
    {"path": "/cpraw/cert", "rewrite": "/cms/raw", "backend": "cpraw", "auth": "cert"},
    # the byte-exact verifier, raw signing (as for a Go backend)
    {"path": "/nat/cert", "rewrite": "/verify/cert", "backend": "nat", "auth": "cert"},
    {"path": "/nat/optional", "rewrite": "/verify/optional", "backend": "nat",
     "auth": "optional"},
    {"path": "/nat/limited", "rewrite": "/verify/limited", "backend": "nat",
     "auth": "cert+limited-proxy"},
    # the byte-exact verifier behind python3 signing (what it must refuse for non-ASCII)
    {"path": "/natpy/cert", "rewrite": "/verify/py", "backend": "natpy", "auth": "cert"},
    # every header, as received, for the spoofing checks
    {"path": "/echo/cert", "backend": "nat", "auth": "cert"},
    {"path": "/echo/optional", "backend": "nat", "auth": "optional"},
    {"path": "/echo/public", "backend": "nat", "auth": "none"},
]


# ---- backends -------------------------------------------------------------------------------

def user_map(grid):
    cases = grid["cases"]
    grace = cases["user_gracecrl"]["user_dn"]
    # The same DN with its parts in another order: found through the "sorted DN" lookup.
    grace_parts = [p for p in grace.split("/") if p]
    permuted = "/" + "/".join(grace_parts[::-1])
    return [
        {"DN": cases["user"]["user_dn"], "ID": 123456, "LOGIN": "jdoe", "NAME": "John Doe",
         "ROLES": JDOE_ROLES_CRIC, "EMAIL": "ignored@cern.invalid"},
        {"DN": cases["user_utf8"]["user_dn"], "ID": 234567, "LOGIN": "jmuller",
         "NAME": JOSE_NAME, "ROLES": {"user": ["group:das"]}},
        # An alias: the ECDSA certificate's DN is one of the account's "DNs".
        {"DN": BENCH_OLD_DN, "DNs": [BENCH_OLD_DN, cases["user_ecdsa"]["user_dn"]],
         "ID": 654321, "LOGIN": "bench", "NAME": "", "ROLES": {}},
        {"DN": permuted, "ID": 456789, "LOGIN": "grace", "NAME": "Grace User",
         "ROLES": {"viewer": ["group:wmstats"]}},
        # user_sub is left out: the unknown user.
    ]


def start_front(launch, grid, stack, unknown_users):
    listener = Listener()
    front = launch.cmsfront(
        [listener],
        {"cp": {"servers": [stack.cherry.url]},
         "cpraw": {"servers": [stack.cherry.url], "hmac_encoding": "raw"},
         "nat": {"servers": [stack.native.url], "hmac_encoding": "raw"},
         "natpy": {"servers": [stack.native.url]}},
        ROUTES,
        tls={"client_certificates": "request", "ca_dir": str(grid["ca_dir"])},
        server_cert=(grid["servers"]["server"]["cert"], grid["servers"]["server"]["key"]),
        auth={"hmac_key": str(stack.key_path), "user_map": str(stack.map_path),
              "unknown_users": unknown_users},
        name="cmsfront-%s" % unknown_users)
    return SimpleNamespace(port=listener.port, front=front)


@pytest.fixture(scope="module")
def stack(launcher, grid):
    workdir = Path(launcher.workdir)
    s = SimpleNamespace(grid=grid, cases=grid["cases"], root=grid["cas"]["root"]["cert"])
    s.key_path = workdir / "cms-identity-hmac.key"
    s.key_path.write_bytes(KEY)
    s.map_path = workdir / "cms-identity-usermap.json"
    s.map_path.write_text(json.dumps(user_map(grid), ensure_ascii=False), encoding="utf-8")
    s.cherry = harness.CmsCherryPyBackend(workdir, s.key_path)
    launcher._running.append(s.cherry)
    s.native = harness.VerifyingBackend(workdir, s.key_path)
    launcher._running.append(s.native)
    reject = start_front(launcher, grid, s, "reject")
    s.port, s.front = reject.port, reject.front
    s.contexts = {}
    return s


@pytest.fixture(scope="module")
def forward(launcher, stack):
    return start_front(launcher, stack.grid, stack, "forward")


# ---- clients --------------------------------------------------------------------------------

def context(stack, name=None):
    """A client TLS context trusting the grid root, presenting case `name` (None: nothing)."""
    if name not in stack.contexts:
        ctx = ssl.create_default_context(cafile=stack.root)
        ctx.set_alpn_protocols(["http/1.1"])
        if name is not None:
            ctx.load_cert_chain(stack.cases[name]["pem"])
        stack.contexts[name] = ctx
    return stack.contexts[name]


def fetch(stack, name, path, headers=(), port=None, method="GET"):
    """One request on a fresh TLS connection (raw bytes: headers go out exactly as given).
    Returns (status, parsed JSON body or raw bytes)."""
    with RawConnection(port or stack.port, context=context(stack, name), timeout=20) as conn:
        conn.send(request_bytes(method, path, headers=[("Accept", "application/json")]
                                + list(headers)))
        resp = conn.read_response()
    return resp.status, body_of(resp.body)


def body_of(raw):
    return json.loads(raw) if raw[:1] == b"{" else raw


def curl_get(stack, name, path, port=None):
    marker = "\n@@status@@"
    port = port or stack.port
    args = ["curl", "-sS", "--noproxy", "*", "--max-time", "20", "--cacert", str(stack.root),
            "--resolve", "localhost:%d:127.0.0.1" % port, "-H", "Accept: application/json",
            "-w", marker + "%{http_code}", "--cert", stack.cases[name]["pem"],
            "https://localhost:%d%s" % (port, path)]
    proc = subprocess.run(args, capture_output=True, timeout=30)
    body, _, code = proc.stdout.rpartition(marker.encode())
    assert proc.returncode == 0, proc.stderr
    return int(code), body_of(body)


def header_pairs(body):
    """The native backend's [[name, value]...] as (lowercased name, value) pairs; values are
    Latin-1 text (one character per wire byte)."""
    return [(n.lower(), v) for n, v in body["headers"]]


def origin_headers(body):
    return [(n, v) for n, v in header_pairs(body) if n.startswith(ORIGIN_PREFIXES)]


def wire(text):
    """A header value as the backend decoded it (Latin-1) back to its bytes."""
    return text.encode("latin-1")


def assert_denied(status, body, reason):
    assert status == 403, body
    assert isinstance(body, dict) and body.get("reason") == reason, body
    assert body["trouble_page"] == "/auth/trouble", body


# CherryPy (like any WSGI/CGI-style server) presents ssl_client_s_dn as "ssl-client-s-dn":
# underscores and dashes are one name there, which is why cmsfront scrubs both spellings.

def assert_cherrypy_ok(status, body):
    assert status == 200, body
    assert body["hmac_ok"] is True, body


# ---- a mapped user --------------------------------------------------------------------------

def test_user_with_roles_via_curl_cherrypy(stack):
    user = stack.cases["user"]
    status, body = curl_get(stack, "user", "/cp/cert/reqmgr2/data?limit=5&x=%2Fy")
    assert_cherrypy_ok(status, body)
    assert body["status"] == "OK"
    assert body["method"] == "X509Cert"
    assert body["dn"] == user["user_dn"]
    assert body["login"] == "jdoe"
    assert body["name"] == "John Doe"
    assert body["roles"] == JDOE_ROLES
    assert body["request_uri"] == "/cp/cert/reqmgr2/data"
    assert body["path"] == "/cms/cert/reqmgr2/data"
    headers = body["headers"]
    assert headers["cms-auth-cert"] == user["user_dn"]
    assert headers["ssl-client-s-dn"] == user["leaf_dn"]
    assert headers["ssl-client-verify"] == "SUCCESS"
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert headers["x-forwarded-proto"] == "https"
    assert headers["x-forwarded-host"] == "localhost:%d" % stack.port
    assert headers["cms-authz-admin"] == "group:reqmgr group:das"
    assert sorted(n for n in headers if n.startswith("cms")) == sorted([
        "cms-auth-status", "cms-authn-method", "cms-authn-dn", "cms-authn-login",
        "cms-authn-name", "cms-authz-admin", "cms-authz-data-manager", "cms-authz-operator",
        "cms-authn-hmac", "cms-auth-cert", "cms-request-uri"])
    # The same headers verify with the independent check, as CherryPy presented them.
    assert cac.verify(headers, KEY).ok


def test_user_with_roles_native_raw(stack):
    user = stack.cases["user"]
    status, body = curl_get(stack, "user", "/nat/cert/dbs?dataset=/a/b/c")
    assert status == 200, body
    assert body["hmac_ok"] is True
    assert (body["status"], body["method"], body["dn"], body["login"], body["name"]) == (
        "OK", "X509Cert", user["user_dn"], "jdoe", "John Doe")
    seen = dict(header_pairs(body))
    assert seen["cms-request-uri"] == "/nat/cert/dbs"
    assert seen["cms-authz-data-manager"] == "site:t1-ch-cern group:data-ops"
    assert seen["cms-authz-operator"] == "site:t2-ch-cscs group:dbs"
    # Every header once, lowercase names (contract 1.2).
    names = [n for n, _ in body["headers"] if n.lower().startswith(("cms", "ssl", "x-forw"))]
    assert names == [n.lower() for n in names]
    assert len(names) == len(set(names)), names
    assert cac.verify_raw(body["headers"], KEY).ok


def test_ascii_identity_signs_alike_in_both_encodings(stack):
    # For an ASCII identity "python3" and "raw" are the same HMAC: CherryPy accepts the raw
    # one and the byte-exact verifier the python3 one.
    status, raw_side = fetch(stack, "user", "/cpraw/cert/x")
    assert_cherrypy_ok(status, raw_side)
    status, py_side = fetch(stack, "user", "/natpy/cert/x")
    assert status == 200 and py_side["hmac_ok"] is True, py_side
    status, py_cherry = fetch(stack, "user", "/cp/cert/x")
    assert_cherrypy_ok(status, py_cherry)
    assert py_cherry["headers"]["cms-authn-hmac"] == raw_side["headers"]["cms-authn-hmac"]


def test_alias_dn_and_empty_name(stack):
    ecdsa = stack.cases["user_ecdsa"]
    status, body = fetch(stack, "user_ecdsa", "/cp/cert/x")
    assert_cherrypy_ok(status, body)
    assert body["login"] == "bench"
    assert body["dn"] == ecdsa["user_dn"]  # the certificate's DN, not the record's main DN
    assert body["name"] is None and "cms-authn-name" not in body["headers"]
    assert body["roles"] == {}
    assert not [n for n in body["headers"] if n.startswith("cms-authz")]


def test_sorted_dn_lookup(stack):
    grace = stack.cases["user_gracecrl"]
    status, body = fetch(stack, "user_gracecrl", "/cp/cert/x")
    assert_cherrypy_ok(status, body)
    assert body["login"] == "grace"
    assert body["dn"] == grace["user_dn"]  # as the certificate says, not the map's order
    assert body["roles"] == {"viewer": ["group:wmstats"]}


# ---- proxies --------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["proxy_rfc", "proxy_legacy", "proxy_of_proxy"])
def test_proxy_carries_the_users_dn(stack, name):
    case = stack.cases[name]
    assert case["user_dn"] != case["leaf_dn"]
    status, body = fetch(stack, name, "/cp/cert/x")
    assert_cherrypy_ok(status, body)
    assert body["method"] == "X509Proxy"
    assert body["dn"] == case["user_dn"]
    assert body["login"] == "jdoe" and body["roles"] == JDOE_ROLES
    assert body["headers"]["cms-auth-cert"] == case["user_dn"]
    assert body["headers"]["ssl-client-s-dn"] == case["leaf_dn"]
    assert body["headers"]["ssl-client-verify"] == "SUCCESS"
    status, native = fetch(stack, name, "/nat/cert/x")
    assert status == 200 and native["hmac_ok"] is True, native
    assert native["method"] == "X509Proxy" and native["dn"] == case["user_dn"]


@pytest.mark.parametrize("name", ["proxy_limited_rfc", "proxy_limited_legacy"])
def test_limited_proxy(stack, name):
    case = stack.cases[name]
    status, body = fetch(stack, name, "/cp/limited/x")
    assert_cherrypy_ok(status, body)
    assert body["method"] == "X509LimitedProxy"
    assert body["dn"] == case["user_dn"] and body["login"] == "jdoe"
    assert body["headers"]["ssl-client-s-dn"] == case["leaf_dn"]
    status, native = fetch(stack, name, "/nat/limited/x")
    assert status == 200 and native["hmac_ok"] is True, native
    assert native["method"] == "X509LimitedProxy"
    assert_denied(*fetch(stack, name, "/cp/cert/x"), "limited_proxy")
    assert_denied(*fetch(stack, name, "/nat/cert/x"), "limited_proxy")


# ---- unknown users --------------------------------------------------------------------------

def test_unknown_user_rejected_on_cert_routes(stack):
    assert_denied(*fetch(stack, "user_sub", "/cp/cert/x"), "unknown_user")
    assert_denied(*fetch(stack, "user_sub", "/cp/limited/x"), "unknown_user")
    assert_denied(*fetch(stack, "user_sub", "/nat/cert/x"), "unknown_user")
    # HTML without Accept: application/json, pointing at the trouble page.
    with RawConnection(stack.port, context=context(stack, "user_sub")) as conn:
        conn.send(request_bytes("GET", "/cp/cert/x"))
        resp = conn.read_response()
    assert resp.status == 403 and resp.header("content-type").startswith("text/html"), resp
    assert b'href="/auth/trouble"' in resp.body


def test_unknown_user_on_optional_route_is_anonymous(stack):
    sub = stack.cases["user_sub"]
    status, body = fetch(stack, "user_sub", "/cp/optional/x")
    assert_cherrypy_ok(status, body)
    assert (body["status"], body["method"], body["dn"], body["login"]) == (
        "NONE", "None", None, None)
    assert "cms-auth-cert" not in body["headers"]
    assert not [n for n in body["headers"] if n.startswith("cms-authz")]
    assert body["headers"]["cms-authn-hmac"] == cac.sign_raw(cac.VECTOR_E, KEY)
    assert body["headers"]["ssl-client-s-dn"] == sub["leaf_dn"]
    status, native = fetch(stack, "user_sub", "/nat/optional/x")
    assert status == 200 and native["hmac_ok"] is True, native
    assert native["status"] == "NONE" and native["dn"] is None


def test_unknown_user_forwarded(forward, stack):
    sub = stack.cases["user_sub"]
    status, body = fetch(stack, "user_sub", "/cp/cert/x?q=1", port=forward.port)
    assert_cherrypy_ok(status, body)
    assert (body["status"], body["method"], body["dn"]) == ("OK", "X509Cert", sub["user_dn"])
    assert body["login"] is None and body["name"] is None and body["roles"] == {}
    assert body["request_uri"] == "/cp/cert/x"
    signed = sorted(n for n in body["headers"] if n.startswith(("cms-authn", "cms-authz")))
    assert signed == ["cms-authn-dn", "cms-authn-hmac", "cms-authn-method"]
    status, native = fetch(stack, "user_sub", "/nat/cert/x", port=forward.port)
    assert status == 200 and native["hmac_ok"] is True, native
    assert native["status"] == "OK" and native["login"] is None
    assert native["dn"] == sub["user_dn"]
    # Mapped users are unchanged there.
    status, body = fetch(stack, "user", "/cp/cert/x", port=forward.port)
    assert_cherrypy_ok(status, body)
    assert body["login"] == "jdoe" and body["roles"] == JDOE_ROLES


# ---- no certificate, failed certificate, public ---------------------------------------------

def test_optional_without_certificate(stack):
    status, body = fetch(stack, None, "/cp/optional/x?y=2")
    assert_cherrypy_ok(status, body)
    assert (body["status"], body["method"], body["dn"], body["login"]) == (
        "NONE", "None", None, None)
    headers = body["headers"]
    # Vector E's property: the NONE block is signed over `cms-authn-method: None` alone.
    assert headers["cms-authn-hmac"] == cac.sign_raw(cac.VECTOR_E, KEY)
    assert headers["ssl-client-verify"] == "NONE"
    assert "cms-authn-dn" not in headers and "ssl-client-s-dn" not in headers
    assert "cms-auth-cert" not in headers
    assert headers["cms-request-uri"] == "/cp/optional/x"
    status, native = fetch(stack, None, "/nat/optional/x")
    assert status == 200 and native["hmac_ok"] is True, native
    assert native["status"] == "NONE" and native["method"] == "None"
    # The cert routes refuse.
    assert_denied(*fetch(stack, None, "/cp/cert/x"), "no_certificate")


def test_optional_with_failed_certificate(stack):
    status, native = fetch(stack, "revoked", "/nat/optional/x")
    assert status == 200 and native["hmac_ok"] is True, native
    assert native["status"] == "NONE" and native["method"] == "None" and native["dn"] is None
    seen = dict(header_pairs(native))
    assert seen["ssl_client_verify"].startswith("FAILED:"), seen
    assert "revoked" in seen["ssl_client_verify"], seen
    assert seen["ssl_client_s_dn"] == stack.cases["revoked"]["leaf_dn"]
    assert_denied(*fetch(stack, "revoked", "/cp/cert/x"), "revoked")


@pytest.mark.parametrize("name", [None, "user"])
def test_public_route_has_no_cms_headers(stack, name):
    status, body = fetch(stack, name, "/cp/public/x?z=1")
    assert status == 200, body
    headers = body["headers"]
    assert not [n for n in headers if n.startswith(("cms", "ssl"))], headers
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert headers["x-forwarded-proto"] == "https"
    assert headers["x-forwarded-host"] == "localhost"


# ---- the non-ASCII user ---------------------------------------------------------------------

def test_utf8_user_python3_cherrypy_accepts(stack):
    case = stack.cases["user_utf8"]
    status, body = fetch(stack, "user_utf8", "/cp/cert/x")
    assert_cherrypy_ok(status, body)
    assert body["name_utf8"] == JOSE_NAME
    assert body["dn_utf8"] == case["user_dn"]
    assert body["login"] == "jmuller" and body["roles"] == {"user": ["group:das"]}
    # The wire carries the UTF-8 bytes as they are; only the HMAC is computed differently.
    assert wire(body["name"]) == JOSE_NAME.encode("utf-8")
    assert wire(body["headers"]["cms-auth-cert"]) == case["user_dn"].encode("utf-8")


def test_utf8_user_raw_signing_is_refused_by_cherrypy(stack):
    """The known trap (contract 1.3): raw-byte signing in front of a Python 3 backend."""
    status, body = fetch(stack, "user_utf8", "/cpraw/cert/x")
    assert status == 403, body
    assert body["error"] == "hmac mismatch" and body["hmac_ok"] is False, body


def test_utf8_user_raw_signing_native_accepts(stack):
    case = stack.cases["user_utf8"]
    status, body = fetch(stack, "user_utf8", "/nat/cert/x")
    assert status == 200 and body["hmac_ok"] is True, body
    assert wire(body["name"]) == JOSE_NAME.encode("utf-8")
    assert wire(body["dn"]) == case["user_dn"].encode("utf-8")
    # And the python3 form is what a byte-exact verifier refuses.
    status, body = fetch(stack, "user_utf8", "/natpy/cert/x")
    assert status == 403 and body["reason"] == "hmac mismatch", body


# ---- spoofing -------------------------------------------------------------------------------

SPOOF_CASES = [
    ("cert", "user", "/nat/cert/spoof", True),
    ("cert-proxy", "proxy_rfc", "/nat/cert/spoof", True),
    ("optional-cert", "user", "/nat/optional/spoof", True),
    ("optional-unknown", "user_sub", "/nat/optional/spoof", True),
    ("optional-none", None, "/nat/optional/spoof", True),
    ("public-cert", "user", "/echo/public/spoof", False),
    ("public-none", None, "/echo/public/spoof", False),
    ("echo-cert", "user", "/echo/cert/spoof", False),
    ("echo-optional-none", None, "/echo/optional/spoof", False),
]


@pytest.mark.parametrize("name,path,verifies", [c[1:] for c in SPOOF_CASES],
                         ids=[c[0] for c in SPOOF_CASES])
def test_spoofed_headers_never_reach_the_backend(stack, name, path, verifies):
    marker = [("X-Test", "kept")]
    clean_status, clean = fetch(stack, name, path, marker)
    status, spoofed = fetch(stack, name, path, marker + SPOOFED)
    assert clean_status == 200 and status == 200, (clean, spoofed)
    if verifies:
        assert clean["hmac_ok"] is True and spoofed["hmac_ok"] is True, spoofed
    # What the backend sees is exactly what it sees without the spoofed headers.
    assert header_pairs(spoofed) == header_pairs(clean)
    seen = header_pairs(spoofed)
    assert ("x-test", "kept") in seen
    values = [v for _, v in seen]
    for evil in ("group:evil", "group:evil2", "root", "/DC=ch/CN=evil", "6.6.6.6", "/evil",
                 "evil.example", "for=6.6.6.6", "1.1 evil", SPOOFED[7][1]):
        assert evil not in values, (evil, seen)
    names = [n for n, _ in seen]
    assert "cms_authz_x" not in names
    assert not [n for n in names if n.startswith(("forwarded", "via", "https"))]
    if path.startswith("/echo/public"):
        assert not [n for n in names if n.startswith(("cms", "ssl"))], seen
    else:
        assert names.count("cms-authn-dn") == (1 if name not in (None, "user_sub") else 0)
    origin = dict(origin_headers(spoofed))
    assert origin["x-forwarded-for"] == "127.0.0.1"
    assert origin["x-forwarded-proto"] == "https"
    assert origin["x-forwarded-host"] == "localhost"
    if not path.startswith("/echo/public"):
        assert cac.verify_raw(spoofed["headers"], KEY).ok


def test_spoofed_headers_through_cherrypy(stack):
    """The same attack on the python3 path: CherryPy sees the real identity, verified."""
    status, clean = fetch(stack, "user", "/cp/cert/x")
    status2, spoofed = fetch(stack, "user", "/cp/cert/x", SPOOFED)
    assert_cherrypy_ok(status, clean)
    assert_cherrypy_ok(status2, spoofed)
    assert spoofed["roles"] == JDOE_ROLES and spoofed["login"] == "jdoe"
    assert spoofed["headers"] == clean["headers"]
    status, anonymous = fetch(stack, None, "/cp/optional/x", SPOOFED)
    assert_cherrypy_ok(status, anonymous)
    assert anonymous["status"] == "NONE" and anonymous["login"] is None
    assert "cms-authz-admin" not in anonymous["headers"]


def test_spoofed_identity_cannot_pass_a_cert_route(stack):
    # Claiming an identity in headers without a certificate gets nowhere.
    assert_denied(*fetch(stack, None, "/nat/cert/x", SPOOFED), "no_certificate")


# ---- the trouble page -----------------------------------------------------------------------

def trouble(stack, name, port=None):
    status, page = fetch(stack, name, "/auth/trouble", port=port)
    assert status == 200, page
    return page


def test_trouble_page_mapped_user(stack):
    account = trouble(stack, "user")["cms_account"]
    assert account["mapped"] is True, account
    assert account["login"] == "jdoe" and account["name"] == "John Doe"
    assert account["roles"] == {r: " ".join(items) for r, items in JDOE_ROLES.items()}
    assert "jdoe" in account["summary"]
    proxy = trouble(stack, "proxy_rfc")["cms_account"]
    assert proxy["mapped"] is True and proxy["login"] == "jdoe", proxy
    jose = trouble(stack, "user_utf8")["cms_account"]
    assert jose["name"] == JOSE_NAME and jose["login"] == "jmuller", jose


def test_trouble_page_unknown_user(stack, forward):
    for port in (stack.port, forward.port):
        page = trouble(stack, "user_sub", port)
        assert page["verified"] is True, page
        account = page["cms_account"]
        assert account["mapped"] is False, account
        assert account["summary"] and "not registered" in account["summary"], account
        assert "login" not in account and "roles" not in account, account
    account = trouble(stack, None)["cms_account"]
    assert account["mapped"] is False and account["summary"], account


# ---- keep-alive -----------------------------------------------------------------------------

def test_keep_alive_one_connection(stack):
    """Several requests, routes and encodings on one connection: each carries its own
    complete, verifying identity block (the block is cached per connection)."""
    paths = ["/cp/cert/a", "/nat/cert/b", "/cp/public/c", "/cp/optional/d", "/cp/cert/e?x=1",
             "/natpy/cert/f", "/cp/limited/g", "/nat/cert/h"]
    with RawConnection(stack.port, context=context(stack, "user"), timeout=20) as conn:
        answers = []
        for path in paths:
            assert conn.send(request_bytes("GET", path, headers=[("Accept", "application/json")]))
            resp = conn.read_response()
            assert resp.status == 200, (path, resp)
            answers.append(body_of(resp.body))
        # Pipelined: three at once.
        conn.send(b"".join(request_bytes("GET", "/cp/cert/p%d" % i) for i in range(3)))
        piped = [body_of(conn.read_response().body) for _ in range(3)]
        assert not conn.eof
    cherry = [a for p, a in zip(paths, answers) if p.startswith(("/cp/cert", "/cp/limited",
                                                                  "/cp/optional"))] + piped
    for answer in cherry:
        assert answer["hmac_ok"] is True, answer
    identity_blocks = set()
    for path, answer in zip(paths, answers):
        if path.startswith("/cp/public"):
            assert not [n for n in answer["headers"] if n.startswith(("cms", "ssl"))]
        elif path.startswith("/cp/optional"):
            assert answer["login"] == "jdoe" and answer["status"] == "OK"
        elif path.startswith("/cp/"):
            assert answer["login"] == "jdoe" and answer["roles"] == JDOE_ROLES
            assert answer["request_uri"] == path.split("?")[0]
            identity_blocks.add(tuple(sorted(
                (n, v) for n, v in answer["headers"].items()
                if n.startswith("cms") and n != "cms-request-uri")))
        else:
            assert answer["hmac_ok"] is True and answer["login"] == "jdoe", (path, answer)
    for i, answer in enumerate(piped):
        assert answer["request_uri"] == "/cp/cert/p%d" % i
        identity_blocks.add(tuple(sorted(
            (n, v) for n, v in answer["headers"].items()
            if n.startswith("cms") and n != "cms-request-uri")))
    # cert and limited routes with the same certificate: one identity block.
    assert len(identity_blocks) == 1, identity_blocks


def test_keep_alive_requests_session(stack):
    with requests.Session() as session:
        session.trust_env = False
        session.verify = stack.root
        session.cert = stack.cases["proxy_rfc"]["pem"]
        base = "https://localhost:%d" % stack.port
        blocks = set()
        for i in range(5):
            resp = session.get(base + "/cp/cert/ka/%d?i=%d" % (i, i), timeout=20)
            assert resp.status_code == 200, resp.text
            body = resp.json()
            assert body["hmac_ok"] is True and body["method"] == "X509Proxy"
            assert body["request_uri"] == "/cp/cert/ka/%d" % i
            blocks.add(tuple(sorted((n, v) for n, v in body["headers"].items()
                                    if n.startswith(("cms", "ssl")) and n != "cms-request-uri")))
        assert len(blocks) == 1, blocks
        resp = session.get(base + "/nat/cert/ka", timeout=20)
        assert resp.status_code == 200 and resp.json()["hmac_ok"] is True, resp.text
