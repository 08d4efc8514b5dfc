"""cmsfront-load (tools/load/cmsfront_load.cpp), the benchmarks' load generator, against a real
cmsfront: keep-alive and --new-connection counts, a grid proxy as client certificate, --urls,
the open loop of --rate, and the exit status for a bad --urls file."""

import json
import os
import subprocess
from types import SimpleNamespace

import pytest

import harness
from harness import Listener

LOAD = harness.REPO / "build" / "cmsfront-load"

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
