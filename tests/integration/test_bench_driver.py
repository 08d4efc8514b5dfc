"""bench/run.sh (the benchmark driver) and bench/report.py on a tiny scenario list, against
cmsfront only: well-formed results.jsonl / results.csv with one row per scenario, the
scheduled request counts, every request answered 200, and a report with its tables. With a
cmsfront-load that has --h2 and --hold: an HTTP/2 scenario, which cmsfront (no HTTP/2 yet)
must come out of as outcome "unsupported", and the memory-per-idle-connection measurement
with a handful of connections. Then the all-cores mode (WORKERS=2, frontend and client on the
same two CPUs, as a small machine allows): rows that carry workers = 2 and a report that
warns that its CPU sets overlap; and the process-tree accounting of bench/lib.sh on a parent
with forked children.

Installs nothing (INSTALL=0), builds nothing (BUILD=0), reuses the session's grid fixtures
(FIXTURES, REVOKED=0) and writes only under pytest's tmp_path (OUT), never bench/RESULTS.md.
"""

import csv
import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

import harness

RUN = harness.REPO / "bench" / "run.sh"
BUILD_DIR = Path(harness.BIN).resolve().parent
NEEDED = [BUILD_DIR / "cmsfront", BUILD_DIR / "cmsfront-test-backend", BUILD_DIR / "cmsfront-load"]

pytestmark = pytest.mark.skipif(
    not all(os.access(p, os.X_OK) for p in NEEDED) or shutil.which("taskset") is None,
    reason="needs cmsfront, cmsfront-test-backend and cmsfront-load in %s, and taskset" % BUILD_DIR)


def load_features():
    """What this cmsfront-load can do: {"h2": bool, "hold": bool}."""
    try:
        text = subprocess.run([str(BUILD_DIR / "cmsfront-load"), "--help"], capture_output=True,
                              text=True, timeout=10)
        text = text.stdout + text.stderr
    except (OSError, subprocess.SubprocessError):
        text = ""
    return {"h2": "--h2" in text and "--streams" in text, "hold": "--hold" in text}


FEATURES = load_features()

SCALE = 10
# token -> (normalised id, requests sent, concurrency, keep-alive, backend, credential).
# Requests sent = max(N // SCALE, min(N, C)).
SCENARIOS = {
    "200/10:off": ("200/10:off:native:user", 20, 10, False, "native", "user"),
    "200/10:on": ("200/10:on:native:user", 20, 10, True, "native", "user"),
    "100/10:off:native:proxy": ("100/10:off:native:proxy", 10, 10, False, "native", "proxy"),
    "100/20:on:cherrypy": ("100/20:on:cherrypy:user", 20, 20, True, "cherrypy", "user"),
}
# HTTP/2, which cmsfront does not speak yet: (normalised id, requests sent, connections,
# streams per connection).
H2_SCENARIOS = {"100/10:h2x2": ("100/10:h2x2:native:user", 10, 10, 2)}
# Memory per idle connection: that many connections, held this many seconds each.
IDLE_CONNECTIONS = 100  # enough for the RSS growth to stand out of the allocator's noise
IDLE_HOLD = 3
needs_h2 = pytest.mark.skipif(not FEATURES["h2"], reason="cmsfront-load has no --h2 yet")
needs_hold = pytest.mark.skipif(not FEATURES["hold"], reason="cmsfront-load has no --hold yet")

CSV_COLUMNS = ["frontend", "scenario", "keepalive", "requests", "concurrency", "ok", "failed",
               "rps", "p50_ms", "p99_ms", "cpu_s", "req_per_cpu_s", "rss_mib"]


def cpus():
    allowed = sorted(os.sched_getaffinity(0))
    return str(allowed[0]), str(allowed[-1])


def driver_env(tmp_path, grid, **extra):
    frontend_cpu, client_cpu = cpus()
    env = dict(os.environ)
    scenarios = list(SCENARIOS) + (list(H2_SCENARIOS) if FEATURES["h2"] else [])
    env.update({
        "FRONTENDS": "cmsfront",
        "SCENARIOS": " ".join(scenarios),
        "IDLE_CONNECTIONS": str(IDLE_CONNECTIONS if FEATURES["hold"] else 0),
        "IDLE_HOLD": str(IDLE_HOLD),
        "SCALE": str(SCALE),
        "OUT": str(tmp_path / "out"),
        "INSTALL": "0",
        "BUILD": "0",
        "BUILD_DIR": str(BUILD_DIR),
        "PLOTS": "0",
        "FIXTURES": str(grid["dir"]),
        "REVOKED": "0",
        "WARMUP": "20",
        "RUN_TIMEOUT": "60",
        "MAX_SECONDS": "300",
        "FRONTEND_CPU": frontend_cpu,
        "CLIENT_CPU": client_cpu,
        "TMPDIR": str(tmp_path),
    })
    env.pop("RESULTS_COPY", None)
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def bench_run(grid, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("bench")
    results_md = harness.REPO / "bench" / "RESULTS.md"
    before = results_md.stat().st_mtime_ns if results_md.exists() else None
    proc = subprocess.run([str(RUN)], env=driver_env(tmp_path, grid), capture_output=True,
                          text=True, timeout=150)
    after = results_md.stat().st_mtime_ns if results_md.exists() else None
    assert proc.returncode == 0, "run.sh exited %d:\n%s" % (proc.returncode, proc.stderr[-4000:])
    assert before == after, "run.sh with OUT set must not touch bench/RESULTS.md"
    return tmp_path / "out", proc


def read_rows(out):
    lines = (out / "results.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def test_jsonl_has_one_complete_row_per_scenario(bench_run):
    out, proc = bench_run
    rows = read_rows(out)
    expected = {spec[0] for spec in SCENARIOS.values()}
    if FEATURES["h2"]:
        expected |= {spec[0] for spec in H2_SCENARIOS.values()}
    if FEATURES["hold"]:
        expected.add("idle/%d" % IDLE_CONNECTIONS)
    assert len(rows) == len(expected), rows
    by_id = {row["scenario"]: row for row in rows}
    assert set(by_id) == expected, sorted(by_id)
    for scenario_id, n, c, keepalive, backend, credential in SCENARIOS.values():
        row = by_id[scenario_id]
        context = json.dumps(row)
        assert row["frontend"] == "cmsfront", context
        assert row["workers"] == 1, context
        assert row["outcome"] == "ran", context
        assert row["measure"] == "load", context
        assert row["protocol"] == "http/1.1" and row["streams"] == 1, context
        assert row["requests"] == n, context
        assert row["concurrency"] == c, context
        assert row["keepalive"] is keepalive, context
        assert row["backend"] == backend, context
        assert row["credential"] == credential, context
        assert row["completed"] == n, context
        assert row["ok"] == n, context
        assert row["failed"] == 0, context
        assert row["errors"] == {}, context
        assert row["status"] == {"200": n}, context
        assert row["rps"] > 0, context
        assert 0 < row["p50_ms"] <= row["p99_ms"], context
        assert row["cpu_s"] is not None and row["cpu_s"] >= 0, context
        if row["cpu_s"] > 0:
            assert row["req_per_cpu_s"] == round(n / row["cpu_s"]), context
        assert row["rss_mib"] > 0, context
        if keepalive:
            assert 1 <= row["handshakes"] <= c, context
        else:
            assert row["handshakes"] == n, context
        if backend == "cherrypy":
            # cmsfront's max_connections = 10 in front of the 10-thread CherryPy app.
            assert 1 <= row["backend_conns_max"] <= 10, context


@needs_h2
def test_h2_row_says_cmsfront_does_not_speak_http2(bench_run):
    """Detected from the run, not assumed: every attempt failed with the load generator's ALPN
    error, so the row is "unsupported" with the reason, not a row of failures."""
    out, _ = bench_run
    by_id = {row["scenario"]: row for row in read_rows(out)}
    for scenario_id, n, c, streams in H2_SCENARIOS.values():
        row = by_id[scenario_id]
        context = json.dumps(row)
        assert row["frontend"] == "cmsfront", context
        assert row["outcome"] == "unsupported", context
        assert row["measure"] == "load", context
        assert row["protocol"] == "h2" and row["streams"] == streams, context
        assert row["keepalive"] is True, context
        assert row["requests"] == n and row["concurrency"] == c, context
        assert row["ok"] == 0 and row["failed"] == n, context
        assert row["status"] == {}, context
        assert row["errors"] and all("alpn" in kind for kind in row["errors"]), context
        assert "cmsfront: HTTP/2 not implemented yet (ALPN offers http/1.1 only)" in row["note"]
        assert row["req_per_cpu_s"] is None and row["p99_ms"] is None, context


@needs_hold
def test_idle_memory_row(bench_run):
    out, _ = bench_run
    by_id = {row["scenario"]: row for row in read_rows(out)}
    row = by_id["idle/%d" % IDLE_CONNECTIONS]
    context = json.dumps(row)
    k = IDLE_CONNECTIONS
    assert row["frontend"] == "cmsfront", context
    assert row["measure"] == "idle", context
    assert row["outcome"] == "ran", context
    assert row["requests"] == k and row["concurrency"] == k, context
    assert row["ok"] == k and row["failed"] == 0 and row["errors"] == {}, context
    assert row["status"] == {"200": k}, context
    assert row["held"] == k and row["held_ok"] == k, context
    assert row["hold_s"] == IDLE_HOLD, context
    # Read on the server side while all of them were open.
    assert row["established_held"] == k, context
    assert 0 < row["rss_before_kib"] <= row["rss_held_kib"], context
    # A TLS connection with a client certificate costs cmsfront some KiB, not nothing and not
    # megabytes (a few connections: a coarse bound).
    assert 0 < row["kib_per_idle_conn"] < 2048, context
    assert row["kib_per_idle_conn"] == pytest.approx(
        (row["rss_held_kib"] - row["rss_before_kib"]) / k, abs=0.1), context
    assert row["rps"] is None and row["req_per_cpu_s"] is None, context
    assert row["rss_mib"] > 0, context


def test_csv_matches_the_jsonl(bench_run):
    out, _ = bench_run
    rows = read_rows(out)
    with open(out / "results.csv", newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames[:len(CSV_COLUMNS)] == CSV_COLUMNS, reader.fieldnames
        for column in ("measure", "protocol", "streams", "held", "held_ok",
                       "kib_per_idle_conn"):
            assert column in reader.fieldnames, reader.fieldnames
        table = list(reader)
    assert len(table) == len(rows)
    for line, row in zip(table, rows):
        assert line["frontend"] == row["frontend"]
        assert line["scenario"] == row["scenario"]
        assert line["keepalive"] == ("on" if row["keepalive"] else "off")
        assert int(line["requests"]) == row["requests"]
        assert int(line["concurrency"]) == row["concurrency"]
        assert int(line["ok"]) == row["ok"]
        assert int(line["failed"]) == row["failed"]
        assert line["outcome"] == row["outcome"]
        assert line["measure"] == row["measure"]
        assert line["protocol"] == row["protocol"]
        assert int(line["streams"]) == row["streams"]
        if row["outcome"] == "unsupported":
            continue
        assert int(line["ok"]) == row["requests"]
        assert int(line["failed"]) == 0
        assert float(line["p99_ms"]) == pytest.approx(row["p99_ms"])
        assert float(line["rss_mib"]) > 0
        if row["measure"] == "idle":
            assert line["rps"] == ""
            assert int(line["held_ok"]) == row["held_ok"]
            assert float(line["kib_per_idle_conn"]) == pytest.approx(row["kib_per_idle_conn"])
        else:
            assert float(line["rps"]) == pytest.approx(row["rps"])
            assert line["kib_per_idle_conn"] == ""


def test_report_has_the_tables(bench_run):
    out, proc = bench_run
    report = (out / "report.md").read_text()
    # run.sh prints the report too
    assert report.strip() in proc.stdout
    assert "## Keep-alive off" in report
    assert "## Keep-alive on" in report
    assert "## A CherryPy backend" in report
    assert "## Grid proxies" in report
    assert "| requests / clients | cmsfront |" in report
    assert "| 20 / 10 (of 200) |" in report
    assert "**accepts proxies**" in report
    assert "SCALE = %d" % SCALE in report
    if FEATURES["h2"]:
        assert "## HTTP/2 clients" in report
        assert "| 10 / 10 × 2 streams (of 100) | *unsupported* |" in report
        assert "HTTP/2 not implemented yet" in report  # the reason, in the problems table
    if FEATURES["hold"]:
        assert "## Memory per idle connection" in report
        assert "| cmsfront | %d | %d |" % (IDLE_CONNECTIONS, IDLE_CONNECTIONS) in report
    meta = json.loads((out / "meta.json").read_text())
    assert meta["scale"] == SCALE
    assert meta["frontend_order"] == ["cmsfront"]
    # The per-core mode: one worker, a one-thread load generator, no CPU warning.
    assert meta["workers"] == 1 and meta["load_threads"] == 1
    assert "| cmsfront | " in report and "| 1 | %s |" % meta["frontend_cpu"] in report
    assert "overlap**" not in report
    assert "workers = 1\n" in (out / "logs" / "cmsfront-native" / "cmsfront.toml").read_text()
    try:
        import matplotlib  # noqa: F401
        plots = True
    except ImportError:
        plots = False
    if plots:
        names = ["rps_vs_concurrency.png", "failures_vs_concurrency.png",
                 "req_per_cpu_vs_concurrency.png"]
        names += ["h2.png"] if FEATURES["h2"] else []
        names += ["idle_memory.png"] if FEATURES["hold"] else []
        for name in names:
            assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    else:
        assert "No plots: matplotlib is not installed" in report
    # Each frontend's configuration and the load generator's output are kept.
    assert (out / "logs" / "cmsfront-native" / "cmsfront.toml").exists()
    assert list((out / "logs" / "cmsfront-native").glob("load-*.json"))


def test_report_py_rewrites_the_report(bench_run, tmp_path):
    out, _ = bench_run
    elsewhere = tmp_path / "copy" / "RESULTS.md"
    proc = subprocess.run([harness.PYTHON, str(harness.REPO / "bench" / "report.py"), str(out),
                           "--output", str(elsewhere), "--no-plots"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    text = elsewhere.read_text()
    assert "| requests / clients | cmsfront |" in text
    assert "No plots: turned off" in text


def test_report_py_copies_the_plots_next_to_the_copy(bench_run, tmp_path):
    """What the default run does for bench/RESULTS.md: the plots copied into a directory that
    can be committed, stale ones removed, and linked relative to the copy."""
    out, _ = bench_run
    pngs = sorted(p.name for p in out.glob("*.png"))
    if not pngs:
        pytest.skip("no plots were drawn (matplotlib missing)")
    copy = tmp_path / "bench" / "RESULTS.md"
    plots = tmp_path / "bench" / "results" / "plots"
    plots.mkdir(parents=True)
    (plots / "stale.png").write_bytes(b"old")
    proc = subprocess.run([harness.PYTHON, str(harness.REPO / "bench" / "report.py"), str(out),
                           "--output", str(copy), "--plots-dir", str(plots)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in plots.glob("*.png")) == pngs
    text = copy.read_text()
    for name in pngs:
        assert "](results/plots/%s)" % name in text


@pytest.mark.parametrize("variable,value", [("SCENARIOS", "200/10:maybe"),
                                            ("SCENARIOS", "10:off"),
                                            ("SCENARIOS", "200/10:h2x0"),
                                            ("SCENARIOS", "200/10:h3"),
                                            ("FRONTENDS", "cmsfront lighttpd"),
                                            ("SCALE", "0"),
                                            ("IDLE_CONNECTIONS", "many"),
                                            ("WORKERS", "0"),
                                            ("WORKERS", "two"),
                                            ("LOAD_THREADS", "0"),
                                            ("FRONTEND_CPU", "0-"),
                                            ("CLIENT_CPU", "3-1")])
def test_bad_arguments_are_refused(grid, tmp_path, variable, value):
    proc = subprocess.run([str(RUN)], env=driver_env(tmp_path, grid, **{variable: value}),
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "run.sh:" in proc.stderr
    assert not (tmp_path / "out").exists()


# --- all cores: WORKERS > 1 -----------------------------------------------------------------------
# Two scenarios, a handshake per request and keep-alive: (normalised id, requests, clients,
# keep-alive). SCALE 1: that few requests are sent as they are.
WORKERS_SCENARIOS = {
    "20/4:off": ("20/4:off:native:user", 20, 4, False),
    "40/4:on": ("40/4:on:native:user", 40, 4, True),
}


def shared_cpus():
    """Up to two CPUs this process may use, as a taskset list: the frontend and the load
    generator both get all of them (a 2-core machine has no other way to run WORKERS=2)."""
    return ",".join(str(c) for c in sorted(os.sched_getaffinity(0))[:2])


@pytest.fixture(scope="module")
def workers_run(grid, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("bench-workers")
    cpus = shared_cpus()
    env = driver_env(tmp_path, grid, SCENARIOS=" ".join(WORKERS_SCENARIOS), SCALE="1",
                     IDLE_CONNECTIONS="0", WORKERS="2", FRONTEND_CPU=cpus, CLIENT_CPU=cpus)
    proc = subprocess.run([str(RUN)], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, "run.sh exited %d:\n%s" % (proc.returncode, proc.stderr[-4000:])
    return tmp_path / "out", proc, cpus


def test_workers_rows_carry_the_workers(workers_run):
    out, _, cpus = workers_run
    rows = read_rows(out)
    by_id = {row["scenario"]: row for row in rows}
    assert set(by_id) == {spec[0] for spec in WORKERS_SCENARIOS.values()}, sorted(by_id)
    assert len(rows) == len(WORKERS_SCENARIOS)
    for scenario_id, n, c, keepalive in WORKERS_SCENARIOS.values():
        row = by_id[scenario_id]
        context = json.dumps(row)
        assert row["frontend"] == "cmsfront", context
        assert row["workers"] == 2, context
        assert row["outcome"] == "ran", context
        assert row["keepalive"] is keepalive, context
        assert row["requests"] == n and row["concurrency"] == c, context
        assert row["ok"] == n and row["failed"] == 0 and row["errors"] == {}, context
        assert row["status"] == {"200": n}, context
        assert row["rps"] > 0 and 0 < row["p50_ms"] <= row["p99_ms"], context
        assert row["cpu_s"] is not None and row["cpu_s"] >= 0, context
        if row["cpu_s"] > 0:
            assert row["req_per_cpu_s"] == round(n / row["cpu_s"]), context
        assert row["rss_mib"] > 0, context
    with open(out / "results.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [line["workers"] for line in table] == ["2"] * len(rows)
    meta = json.loads((out / "meta.json").read_text())
    threads = len(cpus.split(","))
    assert meta["workers"] == 2
    assert meta["load_threads"] == threads
    assert meta["frontend_cpus"] == meta["client_cpus"] == [int(c) for c in cpus.split(",")]
    assert meta["cpu_overlap"] is True
    # cmsfront got the workers; the load generator one thread per client CPU.
    assert "workers = 2\n" in (out / "logs" / "cmsfront-native" / "cmsfront.toml").read_text()
    assert "workers = 2," in meta["frontends"]["cmsfront"]["settings"]


def test_workers_report_warns_about_the_overlap(workers_run):
    out, proc, cpus = workers_run
    report = (out / "report.md").read_text()
    assert report.strip() in proc.stdout
    assert "**Warning: the frontend's CPUs (%s) and the load generator's (%s) overlap**" % (
        cpus, cpus) in report
    assert "not per-core comparable" in report
    assert "FRONTEND_CPU=0-7 CLIENT_CPU=8-15 WORKERS=8" in report
    # The header table: the workers and the CPU set.
    assert "| frontend | version | workers | CPUs | settings |" in report
    assert "| 2 | %s | workers = 2," % cpus in report
    assert "warning: FRONTEND_CPU (%s) and CLIENT_CPU (%s) overlap" % (cpus, cpus) in proc.stderr


# --- the process-tree accounting (bench/lib.sh) ----------------------------------------------------
FORKING = r"""
import os, sys, time
# A master with two workers: each worker burns 0.3 s of CPU, says so, then sleeps.
r, w = os.pipe()
kids = []
for _ in range(2):
    pid = os.fork()
    if pid == 0:
        os.close(r)
        start = time.process_time()
        while time.process_time() - start < 0.3:
            pass
        os.write(w, b"x")
        time.sleep(120)
        os._exit(0)
    kids.append(pid)
os.close(w)
got = 0
while got < 2:
    got += len(os.read(r, 2))
print(" ".join(map(str, kids)), flush=True)
time.sleep(120)
"""


def lib_sh(script):
    proc = subprocess.run(["bash", "-c", "set -euo pipefail; source bench/lib.sh; " + script],
                          cwd=str(harness.REPO), capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def test_tree_accounting_sums_a_master_and_its_workers():
    master = subprocess.Popen([harness.PYTHON, "-c", FORKING], stdout=subprocess.PIPE, text=True)
    kids = []
    try:
        kids = [int(p) for p in master.stdout.readline().split()]
        assert len(kids) == 2
        pid = master.pid
        assert sorted(int(p) for p in lib_sh("proc_tree %d" % pid)) == sorted([pid] + kids)
        assert sorted(int(p) for p in lib_sh("serving_pids %d" % pid)) == sorted(kids)
        # Each read on its own first, then the tree: the workers sleep, so nothing moves but
        # the master's few ticks.
        own, *each = (int(v) for v in lib_sh(
            "cpu_ticks %d; for k in %s; do cpu_ticks $k; done" % (pid, " ".join(map(str, kids)))))
        tree = int(lib_sh("tree_cpu_ticks %d" % pid)[0])
        hz = os.sysconf("SC_CLK_TCK")
        assert tree >= own + sum(each), (tree, own, each)
        assert tree - own >= 0.5 * hz, (tree, own, each)  # 2 x 0.3 s in the workers
        rss = int(lib_sh("tree_rss_now_kib %d" % pid)[0])
        assert rss > 0
        peak = int(lib_sh("tree_rss_peak_kib %d" % pid)[0])
        assert peak >= rss * 0.9, (peak, rss)
        # One process that forked nothing: the tree is the process, the same numbers as before.
        kid = kids[0]
        single = lib_sh("proc_tree %d; serving_pids %d; cpu_ticks %d; tree_cpu_ticks %d; "
                        "rss_peak_kib %d; tree_rss_peak_kib %d" % ((kid,) * 6))
        assert single[:2] == [str(kid), str(kid)]
        assert single[2] == single[3] and single[4] == single[5], single
        # A gone pid: nothing, and a failure for the CPU time.
        assert lib_sh("proc_tree 999999999; tree_cpu_ticks 999999999 || echo gone") == ["gone"]
    finally:
        for p in kids + [master.pid]:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        master.wait(timeout=10)


@pytest.mark.parametrize("cpus,expanded", [("0", [0]), ("0-3", [0, 1, 2, 3]),
                                           ("8-15:4,1,1", [1, 8, 12]), ("3,0-1", [0, 1, 3])])
def test_cpu_list_expand(cpus, expanded):
    assert [int(c) for c in lib_sh("cpu_list_expand %s" % cpus)] == expanded


@pytest.mark.parametrize("cpus", ["", "a", "0-", "3-1", "1,,2", "0-3:0"])
def test_cpu_list_expand_refuses(cpus):
    assert lib_sh("cpu_list_expand '%s' || echo refused" % cpus) == ["refused"]
