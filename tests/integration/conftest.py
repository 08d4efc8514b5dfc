"""Fixtures for the integration tests: the test PKI, and launchers that start cmsfront and the
backends and always stop what they started.

Run with Debian's interpreter (it has CherryPy, requests and pytest):
    /usr/bin/python3 -m pytest tests/integration -q
    /usr/bin/python3 -m pytest tests/integration -q -m "not large"   # without the 2 GB runs
The binary under test is $CMSFRONT_BIN (default: build/cmsfront).
"""

import json
import resource
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "large: streams 2 GB through cmsfront (deselect with -m 'not large')")
    # 500 concurrent clients need more descriptors than a default soft limit of 1024 leaves
    # (cmsfront inherits the limit too).
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    """A throw-away CA and a server certificate for localhost/127.0.0.1 (once per session)."""
    directory = tmp_path_factory.mktemp("pki")
    subprocess.run([str(harness.REPO / "tools" / "make-test-pki.sh"), str(directory)],
                   check=True, timeout=60)
    return directory


@pytest.fixture(scope="session")
def grid(tmp_path_factory):
    """Grid certificate fixtures (tests/pki/make_grid_fixtures.py): a hashed CA directory with
    CRLs, users, RFC 3820 / legacy / VOMS proxies and the negative cases; returns the parsed
    manifest.json with "dir" added (once per session)."""
    directory = tmp_path_factory.mktemp("grid")
    subprocess.run([harness.PYTHON, str(harness.REPO / "tests" / "pki" / "make_grid_fixtures.py"),
                    str(directory)], check=True, timeout=300)
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["dir"] = directory
    return manifest


@pytest.fixture(scope="session", autouse=True)
def _stop_leftovers():
    yield
    harness.stop_everything()


class Launcher:
    """Starts processes for one scope and stops them, newest first, when the scope ends."""

    def __init__(self, workdir, pki):
        self.workdir = workdir
        self.pki = pki
        self._running = []

    def echo(self, name="echo"):
        backend = harness.EchoBackend(self.workdir, name)
        self._running.append(backend)
        return backend

    def cherrypy(self, threads=10):
        backend = harness.CherryPyBackend(self.workdir, threads)
        self._running.append(backend)
        return backend

    def cmsfront(self, listeners, backends, routes, limits=None, server=None, name="cmsfront",
                 tls=None, auth=None, server_cert=None, metrics=None, access_log=None):
        text = harness.render_config(self.pki, listeners, backends, routes, limits, server, tls,
                                     auth, server_cert, metrics=metrics, access_log=access_log)
        try:
            front = harness.Cmsfront(self.workdir, text, name, listeners)
        except RuntimeError as e:
            pytest.fail(str(e), pytrace=False)
        self._running.append(front)
        return front

    def close(self):
        """Stops everything; fails if a cmsfront did not exit 0 on SIGTERM (a crash, a hang
        past its shutdown, or a sanitizer report at exit)."""
        problems = []
        while self._running:
            process = self._running.pop()
            rc = process.stop()
            if isinstance(process, harness.Cmsfront) and rc != 0:
                problems.append("cmsfront exited with %s on SIGTERM:\n%s" % (
                    rc, process.log_tail()))
        if problems:
            pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture(scope="module")
def launcher(tmp_path_factory, pki):
    """Processes shared by the tests of one module."""
    launch = Launcher(tmp_path_factory.mktemp("module"), pki)
    yield launch
    launch.close()


@pytest.fixture
def fresh_launcher(tmp_path, pki):
    """Processes for one test only."""
    launch = Launcher(tmp_path, pki)
    yield launch
    launch.close()
