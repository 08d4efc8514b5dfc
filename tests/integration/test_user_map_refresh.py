"""The user map and HMAC key while cmsfront runs: a map file replaced under load (new identities,
zero failed requests), bad replacements that must not replace the last good map, SIGHUP, the
key file, CRIC's URL fetched with a robot certificate, the kept copy a restart uses while CRIC
is down, and the metrics that show all of it.

The backend is cmsfront-test-backend with --hmac-key: it verifies cms-authn-hmac on /verify with
its own implementation and answers 403 on a mismatch, so a 200 means a correctly signed
identity."""

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests

import harness
from harness import Listener

sys_path = harness.HERE / "backends"
import sys  # noqa: E402

sys.path.insert(0, str(sys_path))
import cms_auth_check  # noqa: E402

LOAD = harness.REPO / "build" / "cmsfront-load"
USER_DN = "/DC=ch/DC=cern/OU=Organic Units/OU=Users/CN=demo/CN=100001/CN=Demo User"


def write_atomically(path, data):
    """As a cron job (or fetch-crl) should: a temporary file renamed over the target."""
    temporary = Path(str(path) + ".new")
    temporary.write_bytes(data if isinstance(data, bytes) else data.encode())
    os.replace(temporary, path)


def user_map(login, fillers=0, roles=None):
    records = [{"DN": USER_DN, "ID": 100001, "LOGIN": login, "NAME": "Demo User",
                "ROLES": roles if roles is not None else {"admin": ["group:" + login]}}]
    records += [{"DN": "/DC=org/DC=example/CN=filler %d" % i, "ID": i, "LOGIN": "filler%d" % i,
                 "NAME": "", "ROLES": {}} for i in range(fillers)]
    return json.dumps(records)


class Stack:
    """cmsfront with a protected /verify (native verifier) and /echo route over the demo PKI."""

    def __init__(self, workdir, pki, auth, key_bytes=harness.TEST_HMAC_KEY, start=True):
        self.workdir = Path(workdir)
        self.pki = Path(pki)
        self.key = self.workdir / "hmac.key"
        self.key.write_bytes(key_bytes)
        self.backend = harness.VerifyingBackend(self.workdir, self.key)
        self.listener = Listener()
        self.metrics_port = harness.free_port()
        self.config = harness.render_config(
            self.pki, [self.listener], {"verifier": {"servers": [self.backend.url]}},
            [{"name": "verify", "path": "/verify", "backend": "verifier", "auth": "cert"},
             {"name": "echo", "path": "/echo", "backend": "verifier", "auth": "cert"}],
            server={"file_check_interval": "200ms"},
            tls={"client_certificates": "request", "ca_dir": str(self.pki / "ca_dir")},
            auth={"hmac_key": str(self.key), "unknown_users": "reject"} | auth,
            metrics={"address": "127.0.0.1:%d" % self.metrics_port})
        self.front = None
        if start:
            self.start()

    def start(self):
        self.front = harness.Cmsfront(self.workdir, self.config, "cmsfront", [self.listener])

    def url(self, path):
        return "https://localhost:%d%s" % (self.listener.port, path)

    def session(self):
        session = requests.Session()
        session.trust_env = False  # else REQUESTS_CA_BUNDLE overrides `verify`
        session.verify = str(self.pki / "ca.pem")
        session.cert = (str(self.pki / "user.pem"), str(self.pki / "user.key"))
        return session

    def login(self, session=None):
        response = (session or self.session()).get(self.url("/verify"), timeout=10)
        if response.status_code != 200:
            return response.status_code
        return response.json().get("login")

    def wait_for_login(self, expected, timeout=10.0):
        deadline = time.monotonic() + timeout
        seen = None
        while time.monotonic() < deadline:
            seen = self.login()
            if seen == expected:
                return
            time.sleep(0.1)
        pytest.fail("login is %r, expected %r\n%s" % (seen, expected, self.front.log_tail()))

    def wait_for_log(self, pattern, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if re.search(pattern, self.front.log_tail(20000)):
                return
            time.sleep(0.1)
        pytest.fail("no log line matching %r:\n%s" % (pattern, self.front.log_tail()))

    def metric(self, name, **labels):
        text = requests.get("http://127.0.0.1:%d/metrics" % self.metrics_port, timeout=10).text
        for line in text.splitlines():
            if not line.startswith(name):
                continue
            series, _, value = line.rpartition(" ")
            if all('%s="%s"' % item in series for item in labels.items()):
                if series.split("{")[0] == name:
                    return float(value)
        return None

    def stop(self):
        rc = self.front.stop() if self.front else 0
        self.backend.stop()
        return rc


@pytest.fixture
def file_stack(tmp_path, pki):
    map_path = tmp_path / "usermap.json"
    write_atomically(map_path, user_map("demo1", fillers=9))
    stack = Stack(tmp_path, pki, {"user_map": str(map_path)})
    stack.map_path = map_path
    yield stack
    assert stack.stop() == 0


@pytest.mark.skipif(not os.access(LOAD, os.X_OK), reason="cmsfront-load not built")
def test_map_replaced_under_load_changes_identities_without_failures(file_stack):
    stack = file_stack
    stack.wait_for_login("demo1")
    load = subprocess.Popen(
        [str(LOAD), "--json", "-n", "4000", "-c", "8", "--cert", str(stack.pki / "user.pem"),
         "--key", str(stack.pki / "user.key"), stack.url("/verify")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # Several replacements while requests flow; each one becomes visible to new requests,
        # on connections that stay open (keep-alive) as well as new ones.
        session = stack.session()
        for generation in range(2, 6):
            write_atomically(stack.map_path, user_map("demo%d" % generation, fillers=9))
            deadline = time.monotonic() + 10
            while stack.login(session) != "demo%d" % generation:
                assert time.monotonic() < deadline, stack.front.log_tail()
                time.sleep(0.05)
        out, err = load.communicate(timeout=120)
    finally:
        if load.poll() is None:
            load.kill()
    summary = json.loads(out)
    assert summary["failures_total"] == 0, summary
    assert summary["status"] == {"200": 4000}, summary
    assert stack.metric("cmsfront_user_map_loads_total", source="file", result="ok") >= 5


def test_bad_replacements_keep_the_last_good_map(file_stack):
    stack = file_stack
    stack.wait_for_login("demo1")
    bad = [
        ("not JSON", b'[{"DN": "/DC=ch/CN=x", "LOGIN": ', "failed"),
        ("not an array", b'{"DN": "x"}', "failed"),
        ("empty", b"[]", "refused"),
        # 10 users -> 1: more than the default 50% drop looks like a partial answer.
        ("shrunk", user_map("shrunk").encode(), "refused"),
    ]
    for what, content, result in bad:
        before = stack.metric("cmsfront_user_map_loads_total", source="file", result=result) or 0
        write_atomically(stack.map_path, content)
        deadline = time.monotonic() + 10
        while (stack.metric("cmsfront_user_map_loads_total", source="file", result=result) or 0) \
                <= before:
            assert time.monotonic() < deadline, (what, stack.front.log_tail())
            time.sleep(0.1)
        assert stack.login() == "demo1", what
    assert "keeping the last good map" in stack.front.log_tail(20000)
    # A missing file is the same: the map stays.
    stack.map_path.unlink()
    time.sleep(0.6)
    assert stack.login() == "demo1"
    # A good file again is taken.
    write_atomically(stack.map_path, user_map("demo7", fillers=9))
    stack.wait_for_login("demo7")
    assert stack.metric("cmsfront_user_map_users") == 10
    assert stack.front.alive()


def test_unknown_user_after_removal_and_sighup(file_stack):
    stack = file_stack
    stack.wait_for_login("demo1")
    # The user leaves the map (9 fillers stay: within the drop limit): 403 unknown_user.
    records = json.loads(user_map("x", fillers=9))[1:]
    write_atomically(stack.map_path, json.dumps(records))
    deadline = time.monotonic() + 10
    while stack.login() != 403:
        assert time.monotonic() < deadline, stack.front.log_tail()
        time.sleep(0.1)
    response = stack.session().get(stack.url("/verify"), headers={"Accept": "application/json"},
                                   timeout=10)
    assert response.json()["reason"] == "unknown_user", response.text
    # SIGHUP re-reads at once, even a file whose metadata did not change.
    generation = stack.metric("cmsfront_user_map_generation")
    stack.front.proc.send_signal(signal.SIGHUP)
    stack.wait_for_log(r"received SIGHUP")
    deadline = time.monotonic() + 10
    while stack.metric("cmsfront_user_map_loads_total", source="file", result="ok") < 3:
        assert time.monotonic() < deadline, stack.front.log_tail()
        time.sleep(0.1)
    assert stack.metric("cmsfront_user_map_generation") > generation


def test_key_file_replaced_signs_with_the_new_key(file_stack):
    stack = file_stack
    stack.wait_for_login("demo1")
    new_key = b"another-key-20-bytes"
    write_atomically(stack.key, new_key)
    deadline = time.monotonic() + 10
    while True:
        echoed = stack.session().get(stack.url("/echo"), timeout=10).json()
        headers = [(name.encode(), value.encode()) for name, value in echoed["headers"]]
        if cms_auth_check.verify_raw(headers, new_key).ok:
            break
        assert time.monotonic() < deadline, stack.front.log_tail()
        time.sleep(0.1)
    # The verifier still has the old key: /verify now fails, as it should.
    assert stack.login() == 403
    assert stack.metric("cmsfront_hmac_key_loads_total", result="ok") >= 2


# --- CRIC's URL ---------------------------------------------------------------------------

class Cric:
    def __init__(self, workdir, pki, map_text):
        self.map_path = Path(workdir) / "cric-map.json"
        write_atomically(self.map_path, map_text)
        self.log_path = Path(workdir) / ("cric-%d.log" % time.monotonic_ns())
        self._log = open(self.log_path, "wb")
        self.proc = harness._spawn(
            [harness.PYTHON, str(sys_path / "cric_server.py"), "--port", "0",
             "--cert", str(pki / "server.pem"), "--key", str(pki / "server.key"),
             "--ca-file", str(pki / "ca.pem"), "--map", str(self.map_path),
             "--require-client-cert"], subprocess.PIPE, self._log)
        self.port = harness._read_ready_line(self.proc, 20, "cric server", self.log_path)["port"]
        self.url = "https://localhost:%d/api/accounts/user/query/?json&preset=roles" % self.port

    def fail_with(self, status):
        status_path = Path(str(self.map_path) + ".status")
        if status is None:
            status_path.unlink(missing_ok=True)
        else:
            status_path.write_text(str(status))

    def stop(self):
        harness.stop_process(self.proc, timeout=5)
        self._log.close()


def url_auth(pki, cric, cache):
    return {"user_map_url": cric.url, "user_map_cache": str(cache), "user_map_refresh": "1s",
            "user_map_timeout": "5s", "user_map_ca_file": str(pki / "ca.pem"),
            "user_map_certificate": str(pki / "user.pem"),
            "user_map_key": str(pki / "user.key")}


def test_user_map_from_cric_with_robot_certificate_and_kept_copy(tmp_path, pki):
    cric = Cric(tmp_path, pki, user_map("cric1", fillers=3))
    cache = tmp_path / "state" / "usermap-cache.json"
    cache.parent.mkdir()
    stack = Stack(tmp_path, pki, url_auth(pki, cric, cache))
    try:
        # First start, no kept copy: cmsfront waited for the download.
        stack.wait_for_login("cric1")
        assert json.loads(cache.read_text())[0]["LOGIN"] == "cric1"
        assert "CN=demo" in cric.log_path.read_text(), "robot certificate not presented"

        write_atomically(cric.map_path, user_map("cric2", fillers=3))
        stack.wait_for_login("cric2")
        deadline = time.monotonic() + 10
        while json.loads(cache.read_text())[0]["LOGIN"] != "cric2":
            assert time.monotonic() < deadline
            time.sleep(0.1)

        # CRIC fails: the last good map stays, the failure is counted and logged.
        cric.fail_with(503)
        failed = stack.metric("cmsfront_user_map_loads_total", source="url", result="failed") or 0
        deadline = time.monotonic() + 10
        while (stack.metric("cmsfront_user_map_loads_total", source="url", result="failed")
               or 0) <= failed:
            assert time.monotonic() < deadline, stack.front.log_tail()
            time.sleep(0.1)
        assert stack.login() == "cric2"
        stack.wait_for_log(r"user_map_url: HTTP 503")

        # A restart while CRIC is down starts complete, from the kept copy.
        assert stack.front.stop() == 0
        stack.start()
        assert stack.login() == "cric2"
        assert "user_map_url" not in stack.front.log_tail() or \
            stack.metric("cmsfront_user_map_loads_total", source="cache", result="ok") == 1

        # CRIC back: the next download wins over the copy.
        write_atomically(cric.map_path, user_map("cric3", fillers=3))
        cric.fail_with(None)
        stack.wait_for_login("cric3")
    finally:
        assert stack.stop() == 0
        cric.stop()


def test_no_map_at_all_refuses_to_start(tmp_path, pki):
    cric = Cric(tmp_path, pki, user_map("cric1"))
    cric.fail_with(503)
    stack = Stack(tmp_path, pki, url_auth(pki, cric, tmp_path / "absent-cache.json"),
                  start=False)
    try:
        config = tmp_path / "no-map.toml"
        config.write_text(stack.config)
        proc = subprocess.run([harness.BIN, "--config", str(config)], capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode != 0
        assert "no user map could be loaded" in proc.stderr, proc.stderr
        assert "HTTP 503" in proc.stderr, proc.stderr
    finally:
        stack.stop()
        cric.stop()


def test_cric_server_certificate_is_verified(tmp_path, pki, grid):
    """A CRIC answering with a certificate the configured CAs do not know is not believed."""
    cric = Cric(tmp_path, pki, user_map("cric1"))
    auth = url_auth(pki, cric, tmp_path / "absent-cache.json")
    # Any CA of the grid fixtures: a real CA, just not the one that signed this server.
    other_ca = Path(grid["dir"]) / next(iter(grid["cas"].values()))["cert"]
    auth["user_map_ca_file"] = str(other_ca)
    stack = Stack(tmp_path, pki, auth, start=False)
    try:
        config = tmp_path / "wrong-ca.toml"
        config.write_text(stack.config)
        proc = subprocess.run([harness.BIN, "--config", str(config)], capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode != 0
        assert "verif" in proc.stderr, proc.stderr
    finally:
        stack.stop()
        cric.stop()
