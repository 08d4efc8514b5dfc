"""The command line and the process: --version, --check-config (file:line:column, exit 78),
and graceful shutdown on SIGTERM/SIGINT (in-flight requests finish, exit 0)."""

import re
import signal
import subprocess
import threading
import time

import pytest

from harness import (BIN, EX_CONFIG, Listener, RawConnection, render_config, request_bytes)


def run_bin(*args, timeout=30):
    return subprocess.run([BIN] + list(args), capture_output=True, text=True, timeout=timeout)


def test_version(pki):
    out = run_bin("--version")
    assert out.returncode == 0, out
    assert out.stdout.strip() or out.stderr.strip()


def good_config(pki):
    return render_config(pki, [Listener()], {"echo": {"servers": ["http://127.0.0.1:9"]}},
                         [{"path": "/", "backend": "echo"}])


def test_check_config_accepts_a_good_file(pki, tmp_path):
    path = tmp_path / "good.toml"
    path.write_text(good_config(pki))
    out = run_bin("--check-config", str(path))
    assert out.returncode == 0, out


BAD = """\
[server]
workers = 2
bogus_key = 1
shutdown_timeout = "10 parsecs"

[[listener]]
address = "127.0.0.1:{port}"
tls = "main"

[tls.main]
certificate = "{pki}/server.pem"
key = "{pki}/server.key"

[backend.echo]
servers = ["http://127.0.0.1:9"]
max_connections = "ten"

[[route]]
path = "/"
backend = "nosuchbackend"
auth = "none"
"""
# line numbers (1-based) of the four mistakes above
BAD_LINES = {3, 4, 16, 20}


def error_lines(output, path):
    pattern = re.compile(r"^%s:(\d+):(\d+): \S" % re.escape(str(path)), re.M)
    return [(int(m.group(1)), int(m.group(2))) for m in pattern.finditer(output)]


def test_check_config_reports_every_error_with_its_position(pki, tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(BAD.format(port=Listener().port, pki=pki))
    out = run_bin("--check-config", str(path))
    assert out.returncode == EX_CONFIG, out
    found = error_lines(out.stdout + out.stderr, path)
    assert {line for line, _ in found} >= BAD_LINES, out.stdout + out.stderr
    assert all(column >= 1 for _, column in found), found


def test_check_config_reports_a_toml_syntax_error(pki, tmp_path):
    path = tmp_path / "syntax.toml"
    path.write_text(good_config(pki) + "\n[server\nworkers = 1\n")
    out = run_bin("--check-config", str(path))
    assert out.returncode == EX_CONFIG, out
    assert error_lines(out.stdout + out.stderr, path), out.stdout + out.stderr


def test_check_config_on_a_missing_file(tmp_path):
    path = tmp_path / "missing.toml"
    out = run_bin("--check-config", str(path))
    assert out.returncode == EX_CONFIG, out
    assert str(path) in out.stdout + out.stderr


def test_config_with_errors_does_not_start(pki, tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(BAD.format(port=Listener().port, pki=pki))
    out = run_bin("--config", str(path))
    assert out.returncode == EX_CONFIG, out
    assert error_lines(out.stdout + out.stderr, path)


@pytest.fixture
def stack(fresh_launcher):
    echo = fresh_launcher.echo("shutdown")
    tls = Listener()
    front = fresh_launcher.cmsfront([tls], {"echo": {"servers": [echo.url]}},
                                    [{"path": "/", "backend": "echo"}],
                                    server={"shutdown_timeout": "60s"})
    return echo, front, tls, fresh_launcher.pki


def slow_request(port, pki, target, result):
    try:
        with RawConnection(port, pki, timeout=120) as conn:
            conn.send(request_bytes("GET", target))
            result["response"] = conn.read_response(allow_incomplete=True)
    except Exception as e:  # reported by the test
        result["error"] = e


def wait_for_log(echo, count, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(echo.log()) < count:
        time.sleep(0.02)
    return len(echo.log()) >= count


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_lets_the_in_flight_request_finish_then_exits_0(stack, sig):
    echo, front, tls, pki = stack
    result = {}
    t = threading.Thread(target=slow_request,
                         args=(tls.port, pki, "/slow?ms=3000", result), daemon=True)
    t.start()
    assert wait_for_log(echo, 1), "request never reached the backend"
    front.proc.send_signal(sig)
    t.join(60)
    assert "error" not in result, result
    resp = result["response"]
    assert resp.status == 200 and resp.complete, resp
    assert resp.json()["target"] == "/slow?ms=3000"
    rc = front.proc.wait(60)
    assert rc == 0, front.log_tail()


def test_sigterm_with_idle_keepalive_connections_exits_promptly(stack):
    echo, front, tls, pki = stack
    conns = []
    for i in range(3):
        conn = RawConnection(tls.port, pki)
        conn.send(request_bytes("GET", "/echo/%d" % i))
        assert conn.read_response().status == 200
        conns.append(conn)
    front.proc.send_signal(signal.SIGTERM)
    try:
        # idle connections have nothing in flight: no need to wait for shutdown_timeout (60 s)
        rc = front.proc.wait(30)
    except subprocess.TimeoutExpired:
        pytest.fail("cmsfront waited for idle keep-alive connections")
    finally:
        for conn in conns:
            conn.close()
    assert rc == 0, front.log_tail()


def test_shutdown_timeout_bounds_the_wait(fresh_launcher):
    echo = fresh_launcher.echo("stuck")
    tls = Listener()
    front = fresh_launcher.cmsfront([tls], {"echo": {"servers": [echo.url]}},
                                    [{"path": "/", "backend": "echo"}],
                                    server={"shutdown_timeout": "1s"})
    result = {}
    t = threading.Thread(target=slow_request, args=(tls.port, fresh_launcher.pki,
                                                    "/slow?ms=60000", result), daemon=True)
    t.start()
    assert wait_for_log(echo, 1)
    front.proc.send_signal(signal.SIGTERM)
    try:
        rc = front.proc.wait(30)
    except subprocess.TimeoutExpired:
        pytest.fail("cmsfront ignored shutdown_timeout")
    assert rc == 0, front.log_tail()
    t.join(30)
    assert not t.is_alive(), "client connection left open after exit"


def test_new_connections_are_refused_after_sigterm(stack):
    echo, front, tls, pki = stack
    result = {}
    t = threading.Thread(target=slow_request,
                         args=(tls.port, pki, "/slow?ms=8000", result), daemon=True)
    t.start()
    assert wait_for_log(echo, 1)
    front.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 6
    refused = False
    while time.monotonic() < deadline and not refused:
        try:
            with RawConnection(tls.port, pki, timeout=3) as conn:
                conn.send(request_bytes("GET", "/echo/late"))
                conn.read_response()
        except (ConnectionRefusedError, ConnectionResetError):
            refused = True
        except Exception:
            refused = True  # accepted by the kernel, then closed without an answer
        else:
            time.sleep(0.1)
    t.join(60)
    assert result.get("response") is not None and result["response"].status == 200, result
    assert front.proc.wait(60) == 0
    assert refused, "cmsfront kept answering new requests after SIGTERM"


def test_json_error_log_lines_parse_and_keep_to_one_line(fresh_launcher):
    # log_format = "json": every stderr line is one JSON object with time, level and message;
    # a backend that refuses connections gives a warning about the backend and a line about
    # the request that names its connection.
    import json
    tls = Listener()
    front = fresh_launcher.cmsfront([tls], {"gone": {"servers": ["http://127.0.0.1:9"]}},
                                    [{"path": "/", "backend": "gone"}],
                                    server={"log_format": "json"})
    with RawConnection(tls.port, fresh_launcher.pki) as conn:
        conn.send(request_bytes("GET", "/x"))
        assert conn.read_response().status == 502
    front.stop()
    lines = [line for line in front.log_path.read_text().splitlines() if line]
    assert lines, "no error log lines"
    records = [json.loads(line) for line in lines]
    assert all(set(r) == {"time", "level", "message"} for r in records), records
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", r["time"]) for r in records)
    assert {r["level"] for r in records} <= {"debug", "info", "warning", "error"}
    assert any(r["message"].startswith("started:") for r in records), records
    assert any(r["level"] == "warning" and "backend gone" in r["message"] for r in records), records
    assert any(re.match(r"conn \d+: 502 ", r["message"]) for r in records), records
