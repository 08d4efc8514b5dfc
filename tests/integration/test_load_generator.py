"""cmsfront-load (tools/load/cmsfront_load.cpp), the benchmarks' load generator, against a real
cmsfront: keep-alive and --new-connection counts, a grid proxy as client certificate, --urls,
the open loop of --rate, the exit status for a bad --urls file, and --hold. Its HTTP/2 (--h2)
against nghttpd (cmsfront speaks HTTP/1.1 only; it stands for a server without h2).

The binary is cmsfront-load next to $CMSFRONT_BIN (default build/)."""

import json
import os
import resource
import shutil
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

import harness
from harness import Listener

LOAD = Path(harness.BIN).parent / "cmsfront-load"

pytestmark = pytest.mark.skipif(not os.access(LOAD, os.X_OK),
                                reason="%s not built" % LOAD)


def run_load(url, *args, timeout=60):
    proc = subprocess.run([str(LOAD), "--json", *map(str, args), url], capture_output=True,
                          text=True, timeout=timeout)
    return proc


def load_json(url, *args):
    proc = run_load(url, *args)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def plain(launcher):
    """cmsfront without client certificates: one route, / to an echo backend."""
    echo = launcher.echo()
    listener = Listener()
    launcher.cmsfront([listener], {"echo": {"servers": [echo.url]}},
                      [{"name": "all", "path": "/", "backend": "echo"}])
    return SimpleNamespace(echo=echo, url="https://127.0.0.1:%d/" % listener.port)


def test_keep_alive(plain):
    got = load_json(plain.url, "-n", 500, "-c", 10)
    assert got["requests"] == 500, got
    assert got["status"] == {"200": 500}, got
    assert got["failures_total"] == 0, got
    assert got["handshakes"] <= 10, got
    assert got["urls"] == 1, got


def test_new_connection(plain):
    got = load_json(plain.url, "--new-connection", "-n", 60, "-c", 4)
    assert got["status"] == {"200": 60}, got
    assert got["handshakes"] == 60, got
    assert got["failures_total"] == 0, got


def test_grid_proxy_certificate(launcher, grid, plain):
    server = grid["servers"]["server"]
    listener = Listener()
    launcher.cmsfront([listener], {"echo": {"servers": [plain.echo.url]}},
                      [{"name": "all", "path": "/", "backend": "echo", "auth": "cert"}],
                      tls={"client_certificates": "request", "ca_dir": str(grid["ca_dir"])},
                      server_cert=(server["cert"], server["key"]), name="cmsfront-grid")
    got = load_json("https://127.0.0.1:%d/" % listener.port, "-n", 50, "-c", 5,
                    "--cert", grid["cases"]["proxy_rfc"]["pem"])
    assert got["status"] == {"200": 50}, got
    assert got["failures_total"] == 0, got


def test_urls_spread_over_the_targets(plain, tmp_path):
    targets = ["/a/one", "/b/two?x=1", "/c"]
    urls = tmp_path / "urls.txt"
    urls.write_text("# three targets\n\n" + "\n".join(targets) + "\n")
    plain.echo.reset()
    got = load_json(plain.url + "ignored/path", "--urls", urls, "-n", 300, "-c", 6)
    assert got["status"] == {"200": 300}, got
    assert got["urls"] == 3, got
    seen = [entry["target"] for entry in plain.echo.log()]
    assert len(seen) == 300
    assert set(seen) == set(targets), sorted(set(seen))
    assert all(seen.count(target) >= 1 for target in targets)


def test_rate_paces_the_requests(plain):
    got = load_json(plain.url, "--rate", 200, "--duration", 2, "-c", 4)
    assert 300 <= got["requests"] <= 450, got
    assert got["failures_total"] == 0, got
    assert "late" in got, got


@pytest.mark.parametrize("content", ["", "# only a comment\n\n", "/ok\nno-slash\n",
                                     "/with space\n", None])
def test_bad_urls_file_is_a_usage_error(plain, tmp_path, content):
    urls = tmp_path / "urls.txt"
    if content is not None:
        urls.write_text(content)
    proc = run_load(plain.url, "--urls", urls, "-n", 1)
    assert proc.returncode == 64, (proc.returncode, proc.stdout, proc.stderr)
    assert "urls" in proc.stderr or str(urls) in proc.stderr, proc.stderr
    assert proc.stdout == ""


def test_hold_keeps_connections_open_idle(plain):
    started = time.monotonic()
    got = load_json(plain.url, "--hold", 2, "-n", 20, "-c", 20)
    took = time.monotonic() - started
    assert got["status"] == {"200": 20}, got
    assert got["handshakes"] == 20, got
    assert got["held"] == 20 and got["held_ok"] == 20, got
    assert got["failures_total"] == 0, got
    assert took >= 2.0, took


def test_hold_counts_connections_the_server_closes(fresh_launcher, plain):
    listener = Listener()
    fresh_launcher.cmsfront([listener], {"echo": {"servers": [plain.echo.url]}},
                            [{"name": "all", "path": "/", "backend": "echo"}],
                            limits={"idle_timeout": "1s"}, name="cmsfront-idle")
    got = load_json("https://127.0.0.1:%d/" % listener.port, "--hold", 2, "-n", 5, "-c", 5)
    assert got["status"] == {"200": 5}, got
    assert got["held"] == 5 and got["held_ok"] == 0, got
    assert got["failures_total"] == 0, got


def test_ramp_spreads_the_connects(plain):
    got = load_json(plain.url, "--ramp", 1, "--hold", 0.2, "-n", 10, "-c", 10)
    assert got["status"] == {"200": 10}, got
    assert got["handshakes"] == 10 and got["held"] == 10, got
    # The last of 10 slots starts 0.9 s in (early slots may have taken the budget by then).
    assert got["elapsed_s"] >= 0.85, got


def test_too_many_connections_for_the_descriptor_limit(plain):
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY or hard > 900000:
        pytest.skip("hard RLIMIT_NOFILE %s: no -c can exceed it" % hard)
    proc = run_load(plain.url, "-c", hard + 1, "-n", 1)
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    assert "RLIMIT_NOFILE" in proc.stderr, proc.stderr
    assert proc.stdout == ""


def test_option_conflicts_are_usage_errors(plain):
    for args in (["--streams", 2], ["--h2", "--streams", 2, "--new-connection"],
                 ["--h2", "--streams", 2, "--hold", 1], ["--hold", 1, "--new-connection"]):
        proc = run_load(plain.url, *args, "-n", 1)
        assert proc.returncode == 64, (args, proc.returncode, proc.stderr)
    proc = run_load(plain.url.replace("https:", "http:"), "--h2", "-n", 1)
    assert proc.returncode == 64, (proc.returncode, proc.stderr)


# ---- --h2 ----------------------------------------------------------------------------------------

def start_nghttpd(pki, docroot, *options):
    """nghttpd (package nghttp2-server) serving docroot over h2 with the test PKI's server
    certificate; returns (process, log file, URL of index.html)."""
    binary = shutil.which("nghttpd") or shutil.which("nghttpd", path="/usr/sbin:/sbin")
    if binary is None:
        pytest.skip("nghttpd not installed (package nghttp2-server)")
    (docroot / "index.html").write_text("hello over h2\n")
    port = harness.free_port()
    log = open(docroot / ("nghttpd-%d.log" % port), "wb")
    proc = harness._spawn([binary, *options, "-a", "127.0.0.1", "-d", str(docroot), str(port),
                           str(pki / "server.key"), str(pki / "server.pem")], log, log)
    if not harness.wait_for_port(port, proc=proc):
        harness.stop_process(proc, timeout=5)
        log.close()
        pytest.fail("nghttpd did not start on %d" % port)
    return proc, log, "https://127.0.0.1:%d/index.html" % port


@pytest.fixture(scope="module")
def nghttpd(pki, tmp_path_factory):
    proc, log, url = start_nghttpd(pki, tmp_path_factory.mktemp("h2root"))
    yield url
    harness.stop_process(proc, timeout=5)
    log.close()


def test_h2_keep_alive_multiplexes(nghttpd):
    got = load_json(nghttpd, "--h2", "-n", 300, "-c", 3, "--streams", 4)
    assert got["protocol"] == "h2", got
    assert got["status"] == {"200": 300}, got
    assert got["requests"] == 300, got
    assert got["handshakes"] == 3, got
    assert got["failures_total"] == 0, got


def test_h2_new_connection(nghttpd):
    got = load_json(nghttpd, "--h2", "--new-connection", "-n", 20, "-c", 4)
    assert got["status"] == {"200": 20}, got
    assert got["handshakes"] == 20, got
    assert got["failures_total"] == 0, got


def test_h2_hold(nghttpd):
    got = load_json(nghttpd, "--h2", "--hold", 1, "-n", 4, "-c", 4)
    assert got["status"] == {"200": 4}, got
    assert got["held"] == 4 and got["held_ok"] == 4, got


def test_h2_client_certificate(pki, tmp_path):
    # -V: nghttpd asks for a client certificate and ends the handshake without one.
    proc, log, url = start_nghttpd(pki, tmp_path, "-V")
    try:
        got = load_json(url, "--h2", "-n", 6, "-c", 2, "--streams", 2)
        assert got["errors"]["tls_handshake"] == 6, got
        assert got["handshakes"] == 0, got
        got = load_json(url, "--h2", "-n", 6, "-c", 2, "--streams", 2,
                        "--cert", pki / "user.pem", "--key", pki / "user.key")
        assert got["status"] == {"200": 6}, got
        assert got["handshakes"] == 2, got
    finally:
        harness.stop_process(proc, timeout=5)
        log.close()


def test_h2_against_a_server_without_h2_fails_with_alpn(plain):
    proc = run_load(plain.url, "--h2", "-n", 10, "-c", 2)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got["protocol"] == "h2", got
    assert got["requests"] == 0, got
    assert got["errors"]["alpn"] == 10, got
    assert got["failures_total"] == 10, got
    assert "alpn" in proc.stderr, proc.stderr


def test_http1_summary_names_its_protocol(plain):
    got = load_json(plain.url, "-n", 5, "-c", 1)
    assert got["protocol"] == "http/1.1", got
    assert got["held"] == 0 and got["held_ok"] == 0, got
