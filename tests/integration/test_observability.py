"""Observability end to end (issue 5): the Prometheus endpoint checked by promtool and scraped by
a real Prometheus server, the cmsweb and JSON access logs line by line against the requests
that were sent, SIGUSR1 reopening the log under load (no line lost or doubled), and a stalled
log (a FIFO nobody reads) that drops lines instead of stalling requests.

Needs Debian's `prometheus` package (prometheus and promtool; tools/install-deps.sh installs
it). Everything listens on free loopback ports: a system Prometheus on :9090, if any, is
neither used nor disturbed."""

import http.client
import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import threading
import time
import urllib.parse
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest

import harness
from harness import Listener, RawConnection, free_port, request_bytes

PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")
needs_prometheus = pytest.mark.skipif(
    PROMETHEUS is None or PROMTOOL is None,
    reason="prometheus/promtool not installed (run tools/install-deps.sh)")


# ---- what cmsfront's own sources say ------------------------------------------------------

def cmsweb_regex():
    """kCmswebLineRegex from tests/unit/access_log_test.cpp, so both tests parse alike."""
    source = (harness.REPO / "tests" / "unit" / "access_log_test.cpp").read_text()
    declaration = source.split("kCmswebLineRegex =", 1)[1].split(";", 1)[0]
    pieces = re.findall(r'R"re\((.*?)\)re"', declaration, re.S)
    assert pieces, "kCmswebLineRegex not found in access_log_test.cpp"
    return re.compile("".join(pieces))


CMSWEB = cmsweb_regex()
# Groups of CMSWEB: 1 host, 2 client, 3 request line, 4 status, 5 bytes in, 6 bytes out,
# 7 body bytes, 8 duration us, 9 TLS protocol, 10 cipher, 11 client DN, 12 auth method,
# 13 referer, 14 user agent, 15 local port.


def catalog_families():
    """{name: type} of every family metrics/catalog.cpp declares."""
    source = (harness.REPO / "metrics" / "catalog.cpp").read_text()
    families = dict(re.findall(r'\{"(cmsfront_\w+)",.*?MetricType::(\w+)', source, re.S))
    assert len(families) >= 20, families
    return {name: kind.lower() for name, kind in families.items()}


def apache_escape(value):
    """What Apache's ap_escape_logitem() makes of a quoted item (value: str, sent as UTF-8)."""
    if not value:
        return "-"
    special = {0x08: "\\b", 0x0a: "\\n", 0x0d: "\\r", 0x09: "\\t", 0x0b: "\\v",
               0x22: '\\"', 0x5c: "\\\\"}
    out = []
    for byte in value.encode("utf-8") if isinstance(value, str) else value:
        if 0x20 <= byte < 0x7f and byte not in special:
            out.append(chr(byte))
        else:
            out.append(special.get(byte, "\\x%02x" % byte))
    return "".join(out)


def test_apache_escape_helper():
    # The helper itself, against the escapes the unit tests pin down.
    assert apache_escape("José") == "Jos\\xc3\\xa9"
    assert apache_escape('a "b" \\ c\n') == 'a \\"b\\" \\\\ c\\n'
    assert apache_escape("") == "-"


# ---- clients ------------------------------------------------------------------------------

def tls_context(root, pem=None):
    ctx = ssl.create_default_context(cafile=str(root))
    ctx.set_alpn_protocols(["http/1.1"])
    if pem:
        ctx.load_cert_chain(str(pem))
    return ctx


def one_request(port, target, context=None, method="GET", headers=(), body=b"",
                host="localhost"):
    """One request on a new connection (TLS when context is given); the response."""
    with RawConnection(port, tls=context is not None, context=context, timeout=15) as conn:
        conn.send(request_bytes(method, target, host=host, headers=headers, body=body))
        return conn.read_response(head=method == "HEAD")


def http_get(port, path, timeout=10):
    """(status, body text) of a plain GET that ignores any proxy settings of the environment."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode("utf-8", errors="replace")
    finally:
        conn.close()


def scrape(port):
    status, text = http_get(port, "/metrics")
    assert status == 200, text[:500]
    return text


SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)(?: \d+)?$')
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def samples(text, name):
    """[(labels dict, value)] of the samples called name in a text exposition."""
    found = []
    for line in text.splitlines():
        m = SAMPLE.match(line)
        if m and m.group(1) == name:
            found.append((dict(LABEL.findall(m.group(2) or "")), float(m.group(3))))
    return found


def sample_value(text, name, **labels):
    """Sum of the samples of name whose labels include labels (0 when there is none)."""
    return sum(v for l, v in samples(text, name) if all(l.get(k) == w for k, w in labels.items()))


def read_lines(path):
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return []
    assert data == b"" or data.endswith(b"\n"), data[-300:]
    return data.decode("ascii").splitlines()  # the cmsweb format is ASCII by construction


def wait_for(predicate, timeout, interval=0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


# ---- the module's cmsfront: TLS + plain listener, metrics, a cmsweb access log ------------

ROUTES = [
    {"name": "echo", "path": "/echo", "backend": "echo", "auth": "none"},
    {"name": "cert", "path": "/cert", "backend": "echo", "auth": "cert"},
    {"name": "down", "path": "/down", "backend": "down", "auth": "none"},
]
UA = 'probe "quoted" \\ caf\xe9'  # sent as latin-1: the \xe9 is one byte 0xE9


def grid_tls(grid):
    return {"client_certificates": "request", "ca_dir": str(grid["ca_dir"])}


def grid_server_cert(grid):
    return grid["servers"]["server"]["cert"], grid["servers"]["server"]["key"]


@pytest.fixture(scope="module")
def echo(launcher):
    return launcher.echo()


@pytest.fixture(scope="module")
def obs(launcher, grid, echo, tmp_path_factory):
    """Starts cmsfront and sends a known set of requests; `expected` lists them."""
    workdir = tmp_path_factory.mktemp("obs")
    tls, plain = Listener(), Listener(tls=False)
    metrics_port = free_port()
    log = workdir / "access.log"
    backends = {"echo": {"servers": [echo.url]},
                "down": {"servers": ["http://127.0.0.1:%d" % free_port()],
                         "connect_timeout": "2s"}}
    front = launcher.cmsfront([tls, plain], backends, ROUTES, tls=grid_tls(grid),
                              server_cert=grid_server_cert(grid),
                              metrics={"address": "127.0.0.1:%d" % metrics_port,
                                       "path": "/metrics"},
                              access_log={"path": str(log), "format": "cmsweb"})
    root = grid["cas"]["root"]["cert"]
    user, utf8 = grid["cases"]["user"], grid["cases"]["user_utf8"]
    anonymous = tls_context(root)
    plans = []  # (listener port, context, target, expected status, leaf DN, auth method, UA)
    for i in range(7):
        plans.append((tls.port, anonymous, "/echo/tls/%d" % i, 200, None, "None",
                      UA if i == 3 else None))
    plans.append((tls.port, tls_context(root, utf8["pem"]), "/echo/utf8", 200,
                  utf8["leaf_dn"], "X509Cert", None))
    for i in range(3):
        plans.append((tls.port, anonymous, "/nothing/%d?q=%d" % (i, i), 404, None, "None", None))
    for i in range(2):
        plans.append((tls.port, anonymous, "/cert/anonymous/%d" % i, 403, None, "None", None))
    for i in range(2):
        plans.append((tls.port, tls_context(root, user["pem"]), "/cert/user/%d" % i, 200,
                      user["leaf_dn"], "X509Cert", None))
    plans.append((tls.port, anonymous, "/down/x", 502, None, "None", None))
    plans.append((plain.port, None, "/echo/plain", 200, None, "None", None))

    expected = []
    for port, context, target, status, dn, method, agent in plans:
        headers = [("User-Agent", agent)] if agent else []
        resp = one_request(port, target, context, headers=headers,
                           host="localhost:%d" % port if context is None else "localhost")
        assert resp.status == status, (target, resp, front.log_tail())
        expected.append(SimpleNamespace(port=port, tls=context is not None, target=target,
                                        status=status, dn=dn, auth_method=method, ua=agent))
    return SimpleNamespace(front=front, tls=tls, plain=plain, metrics_port=metrics_port,
                           log=log, expected=expected, workdir=workdir, grid=grid)


# ---- 2. promtool --------------------------------------------------------------------------

@needs_prometheus
def test_promtool_accepts_the_metrics(obs):
    text = scrape(obs.metrics_port)
    proc = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True,
                          text=True, timeout=30)
    report = proc.stdout + proc.stderr
    assert proc.returncode == 0, report
    assert "error" not in report.lower(), report
    # Every family of the catalog is exported once, with its declared type and help.
    for name, kind in catalog_families().items():
        assert text.count("\n# TYPE %s " % name) == 1, name
        assert "\n# TYPE %s %s\n" % (name, kind) in text, (name, kind)
        assert "\n# HELP %s " % name in text, name


def test_metrics_text_counts_the_requests(obs):
    # The same numbers as the Prometheus test, read straight from the exposition (no server).
    text = scrape(obs.metrics_port)
    value = lambda name, **labels: sample_value(text, name, **labels)  # noqa: E731
    assert value("cmsfront_requests_total", route="echo", status_class="2xx") == 9
    assert value("cmsfront_requests_total", route="cert", status_class="2xx") == 2
    assert value("cmsfront_requests_total", route="cert", status_class="4xx") == 2
    assert value("cmsfront_requests_total", route="none", status_class="4xx") == 3
    assert value("cmsfront_requests_total", route="down", status_class="5xx") == 1
    assert value("cmsfront_requests_total") == len(obs.expected)
    assert value("cmsfront_requests_total", method="GET") == len(obs.expected)
    assert value("cmsfront_request_duration_seconds_count", route="echo") == 9
    assert value("cmsfront_auth_decisions_total", route="cert", method="X509Cert",
                 result="ok") == 2
    assert value("cmsfront_auth_decisions_total", route="cert", method="None",
                 result="no_certificate") == 2
    assert value("cmsfront_auth_decisions_total", route="echo") == 0  # auth = "none"
    assert value("cmsfront_client_certificates_total", profile="main", outcome="ok") == 3
    assert value("cmsfront_tls_handshakes_total", profile="main", result="ok") == 16
    assert value("cmsfront_backend_failures_total", backend="down",
                 reason="backend_connect") == 1
    assert value("cmsfront_backend_failures_total", backend="echo") == 0


# ---- 3. a real Prometheus server ----------------------------------------------------------

class Prometheus:
    def __init__(self, workdir, target):
        self.port = free_port()
        self.dir = Path(workdir)
        config = self.dir / "prometheus.yml"
        config.write_text(
            "global:\n"
            "  scrape_interval: 1s\n"
            "  scrape_timeout: 1s\n"
            "  evaluation_interval: 1s\n"
            "scrape_configs:\n"
            "  - job_name: cmsfront\n"
            "    metrics_path: /metrics\n"
            "    static_configs:\n"
            "      - targets: ['%s']\n" % target)
        self.log_path = self.dir / "prometheus.log"
        self._log = open(self.log_path, "wb")
        self.proc = harness._spawn(
            [PROMETHEUS, "--config.file=%s" % config,
             "--storage.tsdb.path=%s" % (self.dir / "data"),
             "--web.listen-address=127.0.0.1:%d" % self.port],
            subprocess.DEVNULL, self._log, cwd=str(self.dir))

    def log_tail(self):
        return self.log_path.read_text(errors="replace")[-3000:]

    def wait_ready(self, timeout=30):
        def ready():
            assert self.proc.poll() is None, "prometheus exited:\n" + self.log_tail()
            try:
                return http_get(self.port, "/-/ready", timeout=2)[0] == 200
            except OSError:
                return False
        assert wait_for(ready, timeout, 0.1), "prometheus not ready:\n" + self.log_tail()

    def query(self, promql):
        status, body = http_get(self.port, "/api/v1/query?" + urllib.parse.urlencode(
            {"query": promql}))
        answer = json.loads(body)
        assert status == 200 and answer["status"] == "success", (promql, body)
        return answer["data"]["result"]

    def scalar(self, promql):
        """The value of a one-element vector; None when the result is empty."""
        result = self.query(promql)
        assert len(result) <= 1, (promql, result)
        return float(result[0]["value"][1]) if result else None

    def stop(self):
        rc = harness.stop_process(self.proc, timeout=15)
        self._log.close()
        return rc


@pytest.fixture
def prometheus(obs, tmp_path):
    server = Prometheus(tmp_path, "127.0.0.1:%d" % obs.metrics_port)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()
    assert server.proc.returncode is not None


@needs_prometheus
def test_prometheus_scrapes_cmsfront(obs, prometheus):
    trust_cas = int(re.search(r"trust store loaded: (\d+) CAs", obs.front.log_tail(200000))[1])
    checks = {
        'up{job="cmsfront"}': lambda v: v == 1,
        'sum(cmsfront_requests_total{route="echo",status_class="2xx"})': lambda v: v == 9,
        'sum(cmsfront_requests_total{route="cert",status_class="2xx"})': lambda v: v == 2,
        'sum(cmsfront_requests_total{route="cert",status_class="4xx"})': lambda v: v == 2,
        'sum(cmsfront_requests_total{route="none",status_class="4xx"})': lambda v: v == 3,
        'sum(cmsfront_requests_total{route="down",status_class="5xx"})': lambda v: v == 1,
        'sum(cmsfront_requests_total)': lambda v: v == len(obs.expected),
        'sum(cmsfront_request_duration_seconds_count{route="echo"})': lambda v: v == 9,
        'sum(cmsfront_request_duration_seconds_bucket{route="echo",le="+Inf"})':
            lambda v: v == 9,
        'sum(cmsfront_auth_decisions_total{route="cert",method="X509Cert",result="ok"})':
            lambda v: v == 2,
        'sum(cmsfront_auth_decisions_total{route="cert",result="no_certificate"})':
            lambda v: v == 2,
        'sum(cmsfront_backend_failures_total{backend="down"})': lambda v: v >= 1,
        'cmsfront_trust_store_cas{profile="main"}': lambda v: v == trust_cas > 0,
        'sum(cmsfront_tls_handshakes_total{profile="main",result="ok"})': lambda v: v >= 16,
        'sum(cmsfront_client_certificates_total{outcome="ok"})': lambda v: v == 3,
        'cmsfront_build_info': lambda v: v == 1,
    }
    deadline = time.monotonic() + 30
    while True:
        values = {q: prometheus.scalar(q) for q in checks}
        failing = {q: v for q, v in values.items() if v is None or not checks[q](v)}
        if not failing or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert not failing, "PromQL checks failing after 30 s: %r\nprometheus log:\n%s" % (
        failing, prometheus.log_tail())

    # The failure reason is a label Prometheus kept.
    failures = prometheus.query('cmsfront_backend_failures_total{backend="down"}')
    assert {r["metric"]["reason"] for r in failures} == {"backend_connect"}, failures
    # Every family of the catalog reached Prometheus (histograms as _count).
    names = {r["metric"]["__name__"] for r in
             prometheus.query('group by (__name__) ({__name__=~"cmsfront_.+"})')}
    for name, kind in catalog_families().items():
        assert (name + "_count" if kind == "histogram" else name) in names, (name, names)
    # The scrape is clean: no samples rejected for being out of order, duplicated, ...
    targets = json.loads(http_get(prometheus.port, "/api/v1/targets")[1])["data"]
    active = targets["activeTargets"]
    assert len(active) == 1 and active[0]["health"] == "up", active
    assert active[0]["lastError"] == "", active


# ---- 4. the cmsweb access log -------------------------------------------------------------

def test_cmsweb_access_log(obs):
    wait_for(lambda: len(read_lines(obs.log)) >= len(obs.expected), 10)
    lines = read_lines(obs.log)
    assert len(lines) == len(obs.expected), lines
    now = datetime.now(timezone.utc)
    by_request = {}
    for line in lines:
        m = CMSWEB.match(line)
        assert m, line
        stamp = datetime.strptime(line[1:27], "%d/%b/%Y:%H:%M:%S %z")
        assert abs((now - stamp).total_seconds()) < 300, line
        method, target, version = m.group(3).split(" ")
        assert target not in by_request, "logged twice: " + line
        by_request[target] = (method, version, m)
    assert set(by_request) == {e.target for e in obs.expected}

    for e in obs.expected:
        method, version, m = by_request[e.target]
        line = m.group(0)
        assert (method, version) == ("GET", "HTTP/1.1"), line
        assert m.group(1) == "localhost", line  # %v: the Host header without its port
        assert m.group(2) == "127.0.0.1", line
        assert int(m.group(4)) == e.status, line
        assert int(m.group(5)) > 0 and int(m.group(6)) > 0, line
        assert m.group(7) != "-" and int(m.group(7)) > 0, line  # every answer here has a body
        assert int(m.group(15)) == e.port, line
        if e.tls:
            assert m.group(9) in ("TLSv1.2", "TLSv1.3"), line
            assert m.group(10) != "-", line
        else:
            assert (m.group(9), m.group(10)) == ("-", "-"), line
        # SSL_CLIENT_S_DN: the leaf DN, Apache-escaped (the UTF-8 name as \xhh bytes).
        assert m.group(11) == apache_escape(e.dn or ""), line
        assert m.group(12) == e.auth_method, line
        assert m.group(13) == "-", line
        assert m.group(14) == (apache_escape(e.ua.encode("latin-1")) if e.ua else "-"), line

    # The cases called out explicitly: the DNs, the refusals, the backend failure.
    user = obs.grid["cases"]["user"]
    for i in range(2):
        assert by_request["/cert/user/%d" % i][2].group(11) == user["leaf_dn"]
    assert by_request["/echo/utf8"][2].group(11).endswith("CN=Jos\\xc3\\xa9 M\\xc3\\xbcller")
    assert by_request["/echo/tls/3"][2].group(14) == 'probe \\"quoted\\" \\\\ caf\\xe9'
    assert sorted(t for t, (_, _, m) in by_request.items() if m.group(4) == "403") == [
        "/cert/anonymous/0", "/cert/anonymous/1"]
    assert [t for t, (_, _, m) in by_request.items() if m.group(4) == "502"] == ["/down/x"]
    assert sorted(t for t, (_, _, m) in by_request.items() if m.group(4) == "404") == [
        "/nothing/0?q=0", "/nothing/1?q=1", "/nothing/2?q=2"]

    text = scrape(obs.metrics_port)
    assert sample_value(text, "cmsfront_access_log_lines_total", result="written") == len(lines)
    assert sample_value(text, "cmsfront_access_log_lines_total", result="dropped") == 0


# ---- 4b. the JSON access log --------------------------------------------------------------

def test_json_access_log(fresh_launcher, grid, echo, tmp_path):
    tls = Listener()
    log = tmp_path / "access.json"
    fresh_launcher.cmsfront([tls], {"echo": {"servers": [echo.url]}}, ROUTES[:2],
                            tls=grid_tls(grid), server_cert=grid_server_cert(grid),
                            access_log={"path": str(log), "format": "json"})
    root = grid["cas"]["root"]["cert"]
    cases = grid["cases"]
    anonymous = tls_context(root)
    sent = [
        # (target, context, method, body, status)
        ("/echo/j?x=1", anonymous, "GET", b"", 200),
        ("/echo/j/post", anonymous, "POST", b"p" * 1234, 200),
        ("/cert/j/user", tls_context(root, cases["user"]["pem"]), "GET", b"", 200),
        ("/cert/j/proxy", tls_context(root, cases["proxy_rfc"]["pem"]), "GET", b"", 200),
        ("/cert/j/anonymous", anonymous, "GET", b"", 403),
        ("/cert/j/revoked", tls_context(root, cases["revoked"]["pem"]), "GET", b"", 403),
        ("/missing/j", anonymous, "GET", b"", 404),
    ]
    for target, context, method, body, status in sent:
        resp = one_request(tls.port, target, context, method=method, body=body)
        assert resp.status == status, (target, resp)

    assert wait_for(lambda: len(read_lines(log)) >= len(sent), 10), read_lines(log)
    raw = log.read_bytes().decode("utf-8").splitlines()
    assert len(raw) == len(sent), raw
    entries = {}
    for line in raw:
        entry = json.loads(line)
        assert entry["target"] not in entries, line
        entries[entry["target"]] = entry
    for target, _, method, body, status in sent:
        e = entries[target]
        assert e["method"] == method and e["status"] == status, e
        assert e["path"] == target.split("?")[0] and e["version"] == "HTTP/1.1", e
        assert e["local_port"] == tls.port and e["client_ip"] == "127.0.0.1", e
        assert e["tls_protocol"] in ("TLSv1.2", "TLSv1.3") and e["tls_cipher"], e
        assert e["bytes_in"] >= len(body) and e["bytes_out"] > 0, e
        assert e["client_aborted"] is False, e
        datetime.strptime(e["time"], "%Y-%m-%dT%H:%M:%S.%fZ")

    def check(target, **want):
        got = {k: entries[target][k] for k in want}
        assert got == want, entries[target]

    user, proxy, revoked = cases["user"], cases["proxy_rfc"], cases["revoked"]
    check("/echo/j?x=1", route="echo", backend="echo", auth_method="None", auth_result="none",
          client_dn=None, user_dn=None, failure=None)
    check("/echo/j/post", route="echo", backend="echo", auth_result="none")
    assert entries["/echo/j/post"]["bytes_in"] > 1234
    check("/cert/j/user", route="cert", backend="echo", auth_method="X509Cert",
          auth_result="ok", client_dn=user["leaf_dn"], user_dn=user["user_dn"])
    # A proxy: the leaf is the proxy, the user is the end-entity certificate it derives from.
    assert proxy["leaf_dn"] != proxy["user_dn"]
    check("/cert/j/proxy", route="cert", backend="echo", auth_method="X509Proxy",
          auth_result="ok", client_dn=proxy["leaf_dn"], user_dn=proxy["user_dn"])
    check("/cert/j/anonymous", route="cert", backend=None, auth_method="None",
          auth_result="no_certificate", client_dn=None, user_dn=None)
    check("/cert/j/revoked", route="cert", backend=None, auth_result="revoked",
          client_dn=revoked["leaf_dn"], user_dn=None)
    check("/missing/j", route=None, backend=None, auth_result="none")


# ---- 5. SIGUSR1 reopens the log under load ------------------------------------------------

def test_sigusr1_reopen_under_load(fresh_launcher, echo, tmp_path):
    plain = Listener(tls=False)
    metrics_port = free_port()
    log = tmp_path / "access.log"
    front = fresh_launcher.cmsfront([plain], {"echo": {"servers": [echo.url]}}, ROUTES[:1],
                                    metrics={"address": "127.0.0.1:%d" % metrics_port},
                                    access_log={"path": str(log)})
    stop = threading.Event()
    sent = {0: [], 1: []}
    errors = []

    def load(worker):
        try:
            with RawConnection(plain.port, tls=False, timeout=10) as conn:
                i = 0
                while not stop.is_set():
                    conn.send(request_bytes("GET", "/echo/load/%d/%d" % (worker, i)))
                    resp = conn.read_response()
                    assert resp.status == 200, resp
                    sent[worker].append(i)
                    i += 1
        except Exception as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=load, args=(w,)) for w in sent]
    for t in threads:
        t.start()
    rotated = []
    try:
        time.sleep(0.5)
        for n in (1, 2):
            assert wait_for(log.exists, 5), "SIGUSR1 did not recreate " + str(log)
            assert not errors, errors
            before = sum(len(v) for v in sent.values())
            target = log.with_name("access.log.%d" % n)
            os.rename(log, target)
            rotated.append(target)
            os.kill(front.pid, signal.SIGUSR1)
            time.sleep(0.6)
            # The load went on across the rename and the reopen.
            assert sum(len(v) for v in sent.values()) > before + 20, sent
        assert wait_for(log.exists, 5), "SIGUSR1 did not recreate " + str(log)
        time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join(20)
    assert not errors, errors
    assert front.alive()
    total = sum(len(v) for v in sent.values())
    assert total > 200, sent  # enough load for the reopen to race with it

    files = rotated + [log]
    wait_for(lambda: sum(len(read_lines(f)) for f in files) >= total, 10)
    seen = {}  # (worker, i) -> file index
    per_file = []
    for index, path in enumerate(files):
        lines = read_lines(path)
        per_file.append(len(lines))
        for line in lines:
            m = CMSWEB.match(line)
            assert m, line
            assert m.group(4) == "200", line
            _, worker, i = m.group(3).split(" ")[1].rsplit("/", 2)
            key = (int(worker), int(i))
            assert key not in seen, "logged twice: %s" % line
            seen[key] = index
    assert sum(per_file) == total, (per_file, total)
    assert set(seen) == {(w, i) for w, v in sent.items() for i in v}
    # Every file got lines, the newest too (after the last rename), and each connection's
    # requests (one worker, one queue, in order) split into consecutive runs, oldest file first.
    assert all(per_file), per_file
    for w, v in sent.items():
        order = [seen[(w, i)] for i in v]
        assert order == sorted(order), (w, order)
    assert seen[(0, sent[0][-1])] == seen[(1, sent[1][-1])] == len(files) - 1

    text = scrape(metrics_port)
    assert sample_value(text, "cmsfront_access_log_lines_total", result="written") == total
    assert sample_value(text, "cmsfront_access_log_lines_total", result="dropped") == 0


# ---- 6. a stalled log drops lines, requests go on ----------------------------------------

def stalled_fifo(tmp_path):
    """A FIFO and a reader descriptor that is never read (cmsfront's blocking O_WRONLY open
    needs a reader to return)."""
    fifo = tmp_path / "access.fifo"
    os.mkfifo(fifo)
    return fifo, os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)


def test_stalled_log_drops_lines_instead_of_stalling(fresh_launcher, echo, tmp_path):
    fifo, reader = stalled_fifo(tmp_path)
    try:
        plain = Listener(tls=False)
        metrics_port = free_port()
        front = fresh_launcher.cmsfront(
            [plain], {"echo": {"servers": [echo.url]}}, ROUTES[:1],
            metrics={"address": "127.0.0.1:%d" % metrics_port},
            access_log={"path": str(fifo), "queue_lines": 16})
        errors, slowest = [], [0.0]
        start = time.monotonic()

        def load(worker, count):
            try:
                with RawConnection(plain.port, tls=False, timeout=10) as conn:
                    for i in range(count):
                        t0 = time.monotonic()
                        conn.send(request_bytes("GET", "/echo/stall/%d/%d" % (worker, i)))
                        resp = conn.read_response()
                        assert resp.status == 200, resp
                        slowest[0] = max(slowest[0], time.monotonic() - t0)
            except Exception as e:  # noqa: BLE001
                errors.append(e)

        threads = [threading.Thread(target=load, args=(w, 1000)) for w in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        took = time.monotonic() - start
        assert not errors, errors
        assert not any(t.is_alive() for t in threads)
        assert took < 30 and slowest[0] < 3, (took, slowest)

        text = scrape(metrics_port)  # the metrics endpoint answers during the stall too
        written = sample_value(text, "cmsfront_access_log_lines_total", result="written")
        dropped = sample_value(text, "cmsfront_access_log_lines_total", result="dropped")
        assert dropped > 0, (written, dropped)
        assert written + dropped <= 2000, (written, dropped)
        assert sample_value(text, "cmsfront_requests_total", route="echo") == 2000
    finally:
        # The reader goes away: the blocked write fails with EPIPE (SIGPIPE is ignored).
        os.close(reader)

    for i in range(20):
        assert one_request(plain.port, "/echo/after/%d" % i).status == 200
    assert front.alive()
    # Once the writer is no longer blocked every line is accounted for: written or dropped.
    def accounted():
        t = scrape(metrics_port)
        return (sample_value(t, "cmsfront_access_log_lines_total", result="written")
                + sample_value(t, "cmsfront_access_log_lines_total", result="dropped")) == 2020
    assert wait_for(accounted, 10, 0.1), scrape(metrics_port)
    assert re.search(r"access log: write to %s failed: Broken pipe" % re.escape(str(fifo)),
                     front.log_tail()), front.log_tail()
    # The fixture's teardown checks that SIGTERM still ends cmsfront with status 0.


def test_sigterm_with_a_stalled_log_exits(fresh_launcher, echo, tmp_path):
    fifo, reader = stalled_fifo(tmp_path)
    try:
        plain = Listener(tls=False)
        front = fresh_launcher.cmsfront(
            [plain], {"echo": {"servers": [echo.url]}}, ROUTES[:1],
            server={"shutdown_timeout": "1s"},
            access_log={"path": str(fifo), "queue_lines": 16})
        with RawConnection(plain.port, tls=False) as conn:
            for i in range(1000):  # far more than the 64 KiB pipe holds
                conn.send(request_bytes("GET", "/echo/term/%d" % i))
                assert conn.read_response().status == 200
        front.proc.send_signal(signal.SIGTERM)
        try:
            rc = front.proc.wait(6)  # shutdown_timeout is 1 s; nothing is in flight
        except subprocess.TimeoutExpired:
            rc = None
    finally:
        os.close(reader)  # lets a hung writer fail with EPIPE, so teardown still succeeds
    assert rc == 0, "cmsfront still running 6 s after SIGTERM:\n" + front.log_tail()
