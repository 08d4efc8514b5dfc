"""Grid client certificates end to end: every case of tests/pki/make_grid_fixtures.py through
cmsfront's trouble page and the per-route `auth` policy (cert, cert+limited-proxy, optional,
none), with curl, python-requests and openssl s_client as clients; then the [tls.main] knobs
that change the verdicts (client_certificates = "require", proxy_certificates, crl, crl_grace,
client_ca_names) and the trust store itself (junk files in ca_dir, the real IGTF bundle)."""

import hashlib
import json
import os
import re
import shutil
import ssl
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests

from harness import Listener, RawConnection, request_bytes

# Every case the fixture generator makes; test_every_case_is_covered keeps the list honest.
CASES = [
    "user", "user_utf8", "user_sub", "user_gracecrl", "user_ecdsa",
    "proxy_rfc", "proxy_legacy", "proxy_limited_rfc", "proxy_limited_legacy", "proxy_of_proxy",
    "proxy_voms",
    "proxy_pathlen_exceeded", "proxy_voms_expired", "proxy_bad_subject", "proxy_with_san",
    "proxy_of_revoked", "revoked", "forged_issuer", "spliced_chain", "user_nocrl",
    "user_stalecrl", "unknown_ca", "expired", "not_yet_valid", "limited_signs_full",
    "mixed_types", "proxy_gt3",
]

ROUTES = [
    {"name": "cert", "path": "/cert", "rewrite": "/echo/cert", "backend": "echo",
     "auth": "cert"},
    {"name": "limited", "path": "/limited", "rewrite": "/echo/limited", "backend": "echo",
     "auth": "cert+limited-proxy"},
    {"name": "optional", "path": "/optional", "rewrite": "/echo/optional", "backend": "echo",
     "auth": "optional"},
    {"name": "public", "path": "/public", "rewrite": "/echo/public", "backend": "echo",
     "auth": "none"},
]

TROUBLE_KEYS = {"tls", "protocol", "certificate_offered", "verified", "outcome", "reason", "kind",
                "verify_error", "error_depth", "resumed"}
# Only when a certificate was offered.
CERTIFICATE_KEYS = {"user_dn", "leaf_dn", "issuer_dn", "not_before", "not_after", "days_left"}

LOADED = re.compile(r"tls\.main: trust store loaded: (\d+) CAs, (\d+) CRLs from (\S+) "
                    r"\(generation 1\)")
CA_FILE = re.compile(r"[0-9a-f]{8}\.\d+")
CRL_FILE = re.compile(r"[0-9a-f]{8}\.r\d+")
PEM_CERT = re.compile(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", re.S)
PEM_CRL = re.compile(r"-----BEGIN X509 CRL-----.*?-----END X509 CRL-----", re.S)
IGTF_DIR = Path("/etc/grid-security/certificates")


# ---- clients ------------------------------------------------------------------------------

class Answer(SimpleNamespace):
    """status (None: no HTTP answer at all), content_type, body (bytes), detail (diagnostics)."""

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "<Answer %s %s body=%r %s>" % (self.status, self.content_type, self.body[:600],
                                             self.detail)


def parse_http(raw, detail=""):
    """The first response in raw bytes (as s_client -quiet prints what it reads)."""
    head, sep, rest = raw.partition(b"\r\n\r\n")
    if not sep or not head.startswith(b"HTTP/"):
        return Answer(status=None, content_type=None, body=raw, detail=detail)
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = headers.get("content-length")
    body = rest[:int(length)] if length is not None else rest
    return Answer(status=int(lines[0].split()[1]), content_type=headers.get("content-type"),
                  body=body, detail=detail)


def curl_get(port, root, path, pem=None, accept_json=True, method=None):
    """One request with curl; status None when no HTTP answer came (e.g. a failed handshake)."""
    marker = "\n@@cmsfront-test@@"
    args = ["curl", "-sS", "--noproxy", "*", "--max-time", "20", "--cacert", str(root),
            "--resolve", "localhost:%d:127.0.0.1" % port,
            "-w", marker + "%{http_code} %{content_type}"]
    if pem:
        args += ["--cert", str(pem)]
    if accept_json:
        args += ["-H", "Accept: application/json"]
    if method:
        args += ["-X", method]
    args.append("https://localhost:%d%s" % (port, path))
    proc = subprocess.run(args, capture_output=True, timeout=30)
    body, _, tail = proc.stdout.rpartition(marker.encode())
    code, _, content_type = tail.decode().partition(" ")
    detail = "curl rc=%d %s" % (proc.returncode, proc.stderr.decode(errors="replace").strip())
    status = int(code) if code.isdigit() and int(code) != 0 else None
    return Answer(status=status, content_type=content_type or None, body=body, detail=detail,
                  rc=proc.returncode)


def s_client_args(port, root, case=None):
    args = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-servername", "localhost",
            "-CAfile", str(root), "-verify_return_error"]
    if case is not None:
        args += ["-cert", case["cert"], "-key", case["key"]]
        if os.path.getsize(case["chain"]):
            args += ["-cert_chain", case["chain"]]
    return args


def s_client_get(port, root, case, path, accept_json=True):
    """One request over openssl s_client -cert -key -cert_chain (Connection: close). Its exit
    status is not looked at: cmsfront closes without close_notify, which s_client reports."""
    headers = [("Connection", "close")]
    if accept_json:
        headers.append(("Accept", "application/json"))
    proc = subprocess.run(s_client_args(port, root, case) + ["-quiet"],
                          input=request_bytes("GET", path, headers=headers),
                          capture_output=True, timeout=30)
    return parse_http(proc.stdout, "s_client rc=%d %s" % (
        proc.returncode, proc.stderr.decode(errors="replace")[-800:]))


def get(port, root, case, path, accept_json=True):
    """curl --cert for the cases whose combined .pem loads, s_client for the others."""
    if case["pem_loadable"]:
        return curl_get(port, root, path, case["pem"], accept_json)
    return s_client_get(port, root, case, path, accept_json)


def trouble(port, root, case=None):
    answer = get(port, root, case, "/auth/trouble") if case else curl_get(port, root,
                                                                          "/auth/trouble")
    assert answer.status == 200, answer
    assert answer.content_type.startswith("application/json"), answer
    page = answer.json()
    assert TROUBLE_KEYS <= set(page), page
    if page["certificate_offered"]:
        assert CERTIFICATE_KEYS <= set(page), page
    return page


def assert_forwarded(answer, route, path="/x"):
    assert answer.status == 200, answer
    echoed = answer.json()
    assert echoed["backend"] == "echo", echoed
    assert echoed["target"] == "/echo/%s%s" % (route, path), echoed


def assert_denied(answer, reason):
    assert answer.status == 403, answer
    assert answer.content_type.startswith("application/json"), answer
    denial = answer.json()
    assert denial["status"] == 403, denial
    assert denial["reason"] == reason, denial
    assert denial["trouble_page"] == "/auth/trouble", denial
    assert denial["message"], denial


# ---- cmsfront set-ups ---------------------------------------------------------------------

def server_cert(grid):
    server = grid["servers"]["server"]
    return server["cert"], server["key"]


def grid_tls(grid, **extra):
    return {"client_certificates": "request", "ca_dir": str(grid["ca_dir"])} | extra


def start(launch, grid, backend_url, **tls):
    listener = Listener()
    front = launch.cmsfront([listener], {"echo": {"servers": [backend_url]}}, ROUTES,
                            tls=grid_tls(grid, **tls), server_cert=server_cert(grid))
    return SimpleNamespace(port=listener.port, front=front, root=grid["cas"]["root"]["cert"])


def loaded_line(front):
    m = LOADED.search(front.log_tail(200000))
    assert m, front.log_tail()
    return int(m.group(1)), int(m.group(2)), m.group(3)


@pytest.fixture(scope="module")
def stack(launcher, grid):
    echo = launcher.echo()
    s = start(launcher, grid, echo.url)
    s.echo = echo
    s.grid = grid
    return s


# ---- 1. every fixture case ----------------------------------------------------------------

def test_every_case_is_covered(grid):
    assert sorted(grid["cases"]) == sorted(CASES)


def test_trust_store_loaded_line(stack, grid):
    # 5 distinct CAs (each under its new and old hash) and 4 CRLs in the fixtures' ca_dir.
    store = Path(grid["ca_dir"])
    assert loaded_line(stack.front) == (distinct_cas(store), distinct_crls(store), str(store))


@pytest.mark.parametrize("name", CASES)
def test_case_verdicts(stack, grid, name):
    case = grid["cases"][name]
    page = trouble(stack.port, stack.root, case)
    assert page["tls"] is True and page["certificate_offered"] is True, page
    assert page["outcome"] == case["expect"], page
    assert page["verified"] == (case["expect"] == "ok"), page
    assert page["kind"] == case["kind"], page
    if case["expect"] == "ok":
        assert page["user_dn"] == case["user_dn"], page
        assert page["leaf_dn"] == case["leaf_dn"], page
        assert page["reason"] == "" and page["verify_error"] == 0, page
    else:
        assert page["reason"], page

    cert = get(stack.port, stack.root, case, "/cert/x")
    limited = get(stack.port, stack.root, case, "/limited/x")
    if case["expect"] != "ok":
        assert_denied(cert, case["expect"])
        assert_denied(limited, case["expect"])
    elif case["kind"] == "limited_proxy":
        assert_denied(cert, "limited_proxy")
        assert_forwarded(limited, "limited")
    else:
        assert_forwarded(cert, "cert")
        assert_forwarded(limited, "limited")
    assert_forwarded(get(stack.port, stack.root, case, "/optional/x"), "optional")


# ---- 2. other clients ---------------------------------------------------------------------

@pytest.mark.parametrize("name,outcome,status", [
    ("user", "ok", 200),
    ("proxy_rfc", "ok", 200),
    ("proxy_legacy", "ok", 200),
    ("revoked", "revoked", 403),
])
def test_python_requests(stack, grid, name, outcome, status):
    case = grid["cases"][name]
    with requests.Session() as session:
        session.trust_env = False
        session.cert = case["pem"]
        session.verify = stack.root
        session.headers["Accept"] = "application/json"
        base = "https://localhost:%d" % stack.port
        page = session.get(base + "/auth/trouble", timeout=20)
        assert page.status_code == 200
        assert page.json()["outcome"] == outcome
        assert page.json()["kind"] == case["kind"]
        resp = session.get(base + "/cert/via-requests", timeout=20)
        assert resp.status_code == status, resp.text
        if status == 200:
            assert resp.json()["target"] == "/echo/cert/via-requests"
            assert page.json()["user_dn"] == case["user_dn"]
        else:
            assert resp.json()["reason"] == outcome


def test_openssl_s_client_voms_proxy(stack, grid):
    case = grid["cases"]["proxy_voms"]
    page = s_client_get(stack.port, stack.root, case, "/auth/trouble")
    assert page.status == 200, page
    assert page.json()["outcome"] == "ok" and page.json()["kind"] == "proxy", page
    assert page.json()["user_dn"] == case["user_dn"], page
    assert_forwarded(s_client_get(stack.port, stack.root, case, "/cert/x"), "cert")


# ---- 3. no certificate --------------------------------------------------------------------

def test_no_certificate(stack):
    html = curl_get(stack.port, stack.root, "/cert/x", accept_json=False)
    assert html.status == 403, html
    assert html.content_type.startswith("text/html"), html
    assert b'href="/auth/trouble"' in html.body, html

    assert_denied(curl_get(stack.port, stack.root, "/cert/x"), "no_certificate")
    assert_denied(curl_get(stack.port, stack.root, "/limited/x"), "no_certificate")
    assert_forwarded(curl_get(stack.port, stack.root, "/optional/x"), "optional")
    assert_forwarded(curl_get(stack.port, stack.root, "/public/x"), "public")

    page = trouble(stack.port, stack.root)
    assert page["certificate_offered"] is False and page["verified"] is False, page
    assert page["outcome"] == "no_certificate" and page["kind"] == "none", page

    html_page = curl_get(stack.port, stack.root, "/auth/trouble", accept_json=False)
    assert html_page.status == 200 and html_page.content_type.startswith("text/html"), html_page


def test_head_trouble_page(stack):
    ctx = ssl.create_default_context(cafile=stack.root)
    with RawConnection(stack.port, context=ctx) as conn:
        conn.send(request_bytes("HEAD", "/auth/trouble")
                  + request_bytes("GET", "/public/after-head"))
        head = conn.read_response(head=True)
        assert head.status == 200, head
        assert head.header("content-type").startswith("text/html"), head
        assert head.body == b""
        # The connection is still in step: no body followed the HEAD answer.
        after = conn.read_response()
        assert after.status == 200 and after.json()["target"] == "/echo/public/after-head"


# ---- 4. client_certificates = "require" ---------------------------------------------------

def test_require_mode(fresh_launcher, stack, grid):
    s = start(fresh_launcher, grid, stack.echo.url, client_certificates="require")
    none = curl_get(s.port, s.root, "/public/x")
    assert none.status is None and none.rc != 0, none
    revoked = curl_get(s.port, s.root, "/public/x", grid["cases"]["revoked"]["pem"])
    assert revoked.status is None and revoked.rc != 0, revoked
    assert_forwarded(curl_get(s.port, s.root, "/cert/x", grid["cases"]["user"]["pem"]), "cert")


# ---- 5. proxy_certificates = false --------------------------------------------------------

def test_proxies_forbidden(fresh_launcher, stack, grid):
    s = start(fresh_launcher, grid, stack.echo.url, proxy_certificates=False)
    for name in ("proxy_rfc", "proxy_legacy"):
        case = grid["cases"][name]
        page = trouble(s.port, s.root, case)
        assert page["outcome"] == "proxy_forbidden" and page["verified"] is False, (name, page)
        assert_denied(get(s.port, s.root, case, "/cert/x"), "proxy_forbidden")
    user = grid["cases"]["user"]
    assert trouble(s.port, s.root, user)["outcome"] == "ok"
    assert_forwarded(get(s.port, s.root, user, "/cert/x"), "cert")


# ---- 6. crl and crl_grace -----------------------------------------------------------------

@pytest.mark.parametrize("settings,outcomes", [
    # A CA without a CRL passes; one with a CRL is still checked against it.
    ({"crl": "if-present"}, {"user_nocrl": "ok", "revoked": "revoked", "user": "ok"}),
    # No revocation checks at all: a revoked user gets in (the documented risk of "off").
    ({"crl": "off"}, {"revoked": "ok", "user_nocrl": "ok", "user": "ok"}),
    # The gracecrl CA's CRL is 2 hours past nextUpdate: outside a 1 hour grace.
    ({"crl_grace": "1h"}, {"user_gracecrl": "crl_expired", "user": "ok"}),
], ids=["if-present", "off", "grace-1h"])
def test_crl_settings(fresh_launcher, stack, grid, settings, outcomes):
    s = start(fresh_launcher, grid, stack.echo.url, **settings)
    for name, outcome in outcomes.items():
        case = grid["cases"][name]
        assert trouble(s.port, s.root, case)["outcome"] == outcome, name
        cert = get(s.port, s.root, case, "/cert/x")
        if outcome == "ok":
            assert_forwarded(cert, "cert")
        else:
            assert_denied(cert, outcome)


# ---- 7. CA names in the CertificateRequest ------------------------------------------------

def s_client_handshake(port, root):
    proc = subprocess.run(s_client_args(port, root), input=b"", capture_output=True, timeout=30)
    return proc.stdout.decode(errors="replace")


def test_no_ca_names_by_default(stack):
    out = s_client_handshake(stack.port, stack.root)
    assert "Verify return code: 0 (ok)" in out, out
    # A certificate was requested (its signature algorithms are listed), naming no CA.
    assert "Requested Signature Algorithms" in out, out
    assert "No client certificate CA names sent" in out, out


def test_client_ca_names(fresh_launcher, stack, grid):
    s = start(fresh_launcher, grid, stack.echo.url, client_ca_names=grid["cas"]["root"]["cert"])
    out = s_client_handshake(s.port, s.root)
    assert "Acceptable client certificate CA names" in out, out
    names = out.split("Acceptable client certificate CA names", 1)[1].split("Requested", 1)[0]
    assert names.split() == "DC = ch, DC = cern, OU = cmsfront, CN = cmsfront grid test CA".split()
    assert "No client certificate CA names sent" not in out


# ---- 8. junk in ca_dir --------------------------------------------------------------------

def test_junk_in_ca_dir_is_skipped(fresh_launcher, stack, grid, tmp_path):
    store = tmp_path / "certificates"
    shutil.copytree(grid["ca_dir"], store)
    (store / "deadbeef.0").write_bytes(b"this is not a certificate\n\x00\xff garbage\n")
    (store / "README").write_text("The IGTF trust anchors; fetch-crl keeps the CRLs.\n")
    s = start(fresh_launcher, grid, stack.echo.url, ca_dir=str(store))
    log = s.front.log_tail(200000)
    assert re.search(r"skipped:.*deadbeef\.0|deadbeef\.0.*skipped", log), log
    assert loaded_line(s.front) == (distinct_cas(store), distinct_crls(store), str(store))
    user = grid["cases"]["user"]
    assert trouble(s.port, s.root, user)["outcome"] == "ok"
    assert_forwarded(get(s.port, s.root, user, "/cert/x"), "cert")
    assert s.front.alive()


# ---- 9. the real IGTF bundle --------------------------------------------------------------

def distinct_cas(directory):
    """Distinct certificates (SHA-256 of the DER) in the <8 hex>.<digits> files."""
    seen = set()
    for entry in os.scandir(directory):
        if CA_FILE.fullmatch(entry.name):
            try:
                text = Path(entry.path).read_text(errors="replace")
            except OSError:
                continue
            for block in PEM_CERT.findall(text):
                try:
                    der = ssl.PEM_cert_to_DER_cert(block)
                except ValueError:
                    continue
                seen.add(hashlib.sha256(der).hexdigest())
    return len(seen)


def distinct_crls(directory):
    seen = set()
    for entry in os.scandir(directory):
        if CRL_FILE.fullmatch(entry.name):
            for block in PEM_CRL.findall(Path(entry.path).read_text(errors="replace")):
                seen.add(hashlib.sha256(block.encode()).hexdigest())
    return len(seen)


@pytest.mark.skipif(not IGTF_DIR.is_dir(), reason="no IGTF bundle in %s" % IGTF_DIR)
def test_igtf_bundle(fresh_launcher, stack, grid, tmp_path):
    store = tmp_path / "certificates"
    store.mkdir()
    igtf = sorted(os.listdir(IGTF_DIR))
    for name in igtf:
        (store / name).symlink_to(IGTF_DIR / name)
    for entry in os.scandir(grid["ca_dir"]):
        assert not (store / entry.name).exists(), "fixture name clashes with IGTF: " + entry.name
        (store / entry.name).symlink_to(entry.path)
    igtf_cas = distinct_cas(IGTF_DIR)
    expected = distinct_cas(store)
    # A real bundle, not a stand-in: Debian's igtf-policy-classic alone has 73 CAs (each under
    # its new and old hash name; the full IGTF distribution has a few hundred).
    assert igtf_cas > 50, igtf_cas
    assert expected == igtf_cas + distinct_cas(grid["ca_dir"])

    s = start(fresh_launcher, grid, stack.echo.url, ca_dir=str(store))
    cas, crls, where = loaded_line(s.front)
    assert (cas, crls, where) == (expected, distinct_crls(store), str(store))
    user = grid["cases"]["user"]
    page = trouble(s.port, s.root, user)
    assert page["outcome"] == "ok" and page["user_dn"] == user["user_dn"], page
    assert_forwarded(get(s.port, s.root, user, "/cert/x"), "cert")
    assert trouble(s.port, s.root, grid["cases"]["revoked"])["outcome"] == "revoked"
