#!/usr/bin/python3
"""Markdown report and PNG plots for a bench/run.sh result directory.

    bench/report.py OUTDIR                   # writes OUTDIR/report.md and OUTDIR/*.png
    bench/report.py OUTDIR --output FILE     # the same report at FILE (image links relative
                                             # to FILE; the plots stay in OUTDIR)
    bench/report.py OUTDIR --output FILE --plots-dir DIR
                                             # ... with OUTDIR's plots copied into DIR (its
                                             # old *.png removed first) and linked from there
    bench/report.py OUTDIR --no-plots

Reads OUTDIR/results.jsonl (one object per run, as bench/run.sh writes them), OUTDIR/meta.json
(the setup; optional) and OUTDIR/suite_seconds (optional). The plots need matplotlib (Debian:
python3-matplotlib); without it the report is written without them and says so.
"""

import argparse
import json
import os
import shutil
import sys
from collections import OrderedDict
from pathlib import Path

PEER_ORDER = ["cmsfront", "nginx", "haproxy", "apache"]
PRETTY = {"cmsfront": "cmsfront", "nginx": "nginx", "haproxy": "HAProxy", "apache": "Apache"}

GROUPS = OrderedDict([
    ("off", "Keep-alive off: a new TCP + TLS connection (full handshake, client certificate) "
            "per request"),
    ("on", "Keep-alive on: C connections, each with one handshake, reused for every request"),
    ("h2", "HTTP/2 clients: keep-alive connections speaking h2 (ALPN), one or more streams "
           "each"),
    ("cherrypy", "A CherryPy backend with 10 threads behind each frontend (keep-alive clients)"),
    ("proxy", "Grid proxies: an RFC 3820 proxy as client certificate"),
    ("idle", "Memory per idle connection"),
])

NOT_RUN = {
    "not-installed": "not installed",
    "skipped": "skipped (time)",
    "did-not-start": "did not start",
    "backend-down": "backend down",
    "frontend-down": "frontend down",
    "cannot-run": "cannot run here",
    "unsupported": "unsupported",
}
MARK = {"timeout": "timeout", "frontend-died": "died", "load-error": "load error",
        "no-output": "no output"}


def load_rows(outdir):
    rows = []
    path = outdir / "results.jsonl"
    with open(path) as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                rows.append(json.loads(line))
            except ValueError as e:
                sys.exit("report.py: %s:%d: not JSON: %s" % (path, number, e))
    return rows


def group_of(row):
    if row.get("measure") == "idle":
        return "idle"
    if row.get("credential") == "proxy":
        return "proxy"
    if row.get("protocol") == "h2":
        return "h2"
    if row.get("backend") == "cherrypy":
        return "cherrypy"
    return "on" if row.get("keepalive") else "off"


def ran(row):
    return row.get("outcome") not in NOT_RUN


def fmt_int(v):
    return "–" if v is None else "{:,}".format(int(round(v)))


def fmt_ms(v):
    if v is None:
        return "–"
    return "%.0f" % v if v >= 100 else "%.1f" % v if v >= 10 else "%.2f" % v


def scenario_label(row, scale):
    n, c = row.get("requests"), row.get("concurrency")
    label = "%s / %s" % (fmt_int(n), fmt_int(c))
    if (row.get("streams") or 1) > 1:
        label += " × %d streams" % row["streams"]
    nominal = row.get("requests_nominal")
    if scale and scale != 1 and nominal and nominal != n:
        label += " (of %s)" % fmt_int(nominal)
    return label


def cell(row, value_text):
    """A table cell for one run: its value, or why there is none."""
    if row is None:
        return ""
    outcome = row.get("outcome", "ran")
    if outcome in NOT_RUN:
        return "*%s*" % NOT_RUN[outcome]
    if outcome in MARK:
        return "%s (*%s*)" % (value_text, MARK[outcome])
    return value_text


def ratio(a, b):
    if a is None or b is None or not b:
        return "–"
    return "%.2f×" % (a / b)


class Report:
    def __init__(self, outdir, rows, meta, suite_seconds):
        self.outdir = outdir
        self.rows = rows
        self.meta = meta
        self.scale = meta.get("scale", 1)
        self.suite_seconds = suite_seconds
        present = []
        for name in meta.get("frontend_order", []) + [r["frontend"] for r in rows]:
            if name not in present:
                present.append(name)
        self.frontends = sorted(present, key=lambda n: (PEER_ORDER.index(n)
                                                        if n in PEER_ORDER else 99, n))
        self.peers = [f for f in self.frontends if f != "cmsfront"]
        # scenario ids in run order, per group
        self.groups = OrderedDict((g, []) for g in GROUPS)
        self.by_key = {}
        for row in rows:
            g = group_of(row)
            if row["scenario"] not in self.groups[g]:
                self.groups[g].append(row["scenario"])
            self.by_key[(row["scenario"], row["frontend"])] = row
        self.out = []

    def w(self, line=""):
        self.out.append(line)

    def get(self, scenario, frontend):
        return self.by_key.get((scenario, frontend))

    def first(self, scenario):
        for fe in self.frontends:
            row = self.get(scenario, fe)
            if row:
                return row
        return None

    # --- pieces ------------------------------------------------------------------------------
    def header(self):
        m = self.meta
        self.w("# cmsfront against nginx, HAProxy and Apache: `bench/run.sh`")
        self.w()
        when = m.get("started_utc", "?")
        cpu = m.get("host_cpu", "?")
        took = (" in %d min %02d s" % divmod(self.suite_seconds, 60)
                if self.suite_seconds is not None else "")
        self.w("Run started %s on %s CPUs (%s)%s; load average before: %s." % (
            when, m.get("cpus", "?"), cpu, took, " ".join(m.get("loadavg_before", [])) or "?"))
        if self.scale != 1:
            self.w()
            self.w("**SCALE = %s**: every scenario sent 1/%s of its requests (never fewer than "
                   "its connections); numbers are noisier than a full run's." % (
                       self.scale, self.scale))
        self.w()
        self.cpu_warnings()
        ts = m.get("trust_store", {})
        workers = self.workers()
        threads = m.get("load_threads", 1)
        if workers == 1:
            self.w("- every frontend pinned to CPU %s with one worker; the load generator "
                   "(`build/cmsfront-load`, %s) and the backends share CPU %s" % (
                       m.get("frontend_cpu", "?"),
                       "one thread" if threads == 1 else "%s threads" % threads,
                       m.get("client_cpu", "?")))
        else:
            self.w("- **all cores**: every frontend pinned to CPUs %s with %d workers (cmsfront "
                   "`workers`, nginx `worker_processes` with its master, HAProxy `nbthread`, "
                   "Apache %d children of %s threads); the load generator "
                   "(`build/cmsfront-load -t %s`) and the backends share CPUs %s; CPU-s is "
                   "summed over each frontend's processes and threads" % (
                       m.get("frontend_cpu", "?"), workers, workers,
                       m.get("apache_threads_per_child", "?"), threads,
                       m.get("client_cpu", "?")))
        self.w("- client certificate on every connection: ECDSA P-256 user "
               "(`creds/user_ecdsa.pem`), the proxy row `creds/proxy_rfc.pem`; trust store: "
               "%s CA files (%s+ the grid test CAs), CRLs enforced, the client CA's CRL has "
               "%s entries" % (ts.get("ca_files", "?"),
                               "Debian's IGTF bundle " if ts.get("igtf") else "",
                               fmt_int(ts.get("client_ca_crl_entries"))))
        cp = m.get("cherrypy", {})
        self.w("- backends: `cmsfront-test-backend --threads 1` (answers `ok`), and the CherryPy "
               "app of the integration tests with %s threads, requests to `%s`" % (
                   cp.get("threads", 10), cp.get("path", "?")))
        self.w("- requests/s = successful (2xx) requests ÷ elapsed; **failed** = requests sent "
               "− 2xx answers (other statuses, connection and handshake errors, timeouts); "
               "CPU-s = the frontend's own user+system time from /proc over the run (all "
               "its threads and processes: a master and its workers, Apache's parent and "
               "children); req per CPU-s = 2xx ÷ CPU-s; RSS = peak resident set (VmHWM) of the "
               "serving process since it started%s" % (
                   "" if self.workers() == 1 else
                   ", summed over the serving processes (the workers; pages they share are "
                   "counted once in each)"))
        timeout = m.get("request_timeout_s")
        if timeout is not None:
            self.w("- per-request timeout (connect and handshake included): %s s, or C ÷ 150 s "
                   "for C > %s clients connecting at once (they queue for one core's "
                   "handshakes); open files per process: %s" % (
                       timeout, fmt_int(timeout * 150), fmt_int(m.get("open_files"))))
        if self.groups["h2"]:
            self.w("- HTTP/2 rows: `cmsfront-load --h2` (ALPN offers h2 only) over C keep-alive "
                   "connections, M concurrent streams on each (`--streams`); a frontend whose "
                   "ALPN does not select h2 fails every attempt with the ALPN error, and the "
                   "row says *unsupported* rather than counting failures")
        self.w()
        self.w("| frontend | version | workers | CPUs | settings |")
        self.w("|---|---|---:|---|---|")
        fes = m.get("frontends", {})
        for fe in self.frontends:
            info = fes.get(fe, {})
            version = info.get("version") or next(
                (r.get("version") for r in self.rows if r["frontend"] == fe and r.get("version")), "")
            settings = info.get("settings", "")
            if info.get("unavailable"):
                settings = "**%s** — %s" % (info["unavailable"], settings)
            fe_workers = next((r.get("workers") for r in self.rows
                               if r["frontend"] == fe and r.get("workers")), workers)
            self.w("| %s | %s | %s | %s | %s |" % (PRETTY.get(fe, fe), version or "?", fe_workers,
                                                   m.get("frontend_cpu", "?"), settings))
        self.w()
        self.w("Load generator and backends: CPUs %s (`cmsfront-load`, %s)." % (
            m.get("client_cpu", "?"), "one thread" if threads == 1 else "%s threads" % threads))
        self.w()

    def workers(self):
        """The workers each frontend had: meta's, else the rows' (older runs: 1)."""
        if "workers" in self.meta:
            return int(self.meta["workers"])
        return max([int(r.get("workers") or 1) for r in self.rows] or [1])

    def cpu_warnings(self):
        """The all-cores mode needs the frontend's CPUs to itself and as many as its workers;
        say so where a run did not have that, before any number is read."""
        m = self.meta
        workers = self.workers()
        if workers == 1:
            return
        fcpus, ccpus = m.get("frontend_cpus") or [], m.get("client_cpus") or []
        overlap = m.get("cpu_overlap")
        if overlap is None:
            overlap = bool(set(fcpus) & set(ccpus))
        if overlap:
            shared = sorted(set(fcpus) & set(ccpus))
            self.w("> **Warning: the frontend's CPUs (%s) and the load generator's (%s) overlap** "
                   "(shared: %s). With %d workers per frontend the load generator and the "
                   "backends took CPU time on the frontend's cores, so these numbers are not "
                   "per-core comparable: neither with a one-worker run nor between frontends "
                   "that use their cores differently. Measure the all-cores mode with disjoint "
                   "sets, e.g. `FRONTEND_CPU=0-7 CLIENT_CPU=8-15 WORKERS=8 bench/run.sh` on 16 "
                   "cores." % (m.get("frontend_cpu", "?"), m.get("client_cpu", "?"),
                               ",".join(str(c) for c in shared) or "?", workers))
            self.w()
        if fcpus and len(fcpus) != workers:
            self.w("> **Note: %d workers on %d frontend CPU%s (%s)**: the all-cores figure is "
                   "one worker per core; %s." % (
                       workers, len(fcpus), "" if len(fcpus) == 1 else "s",
                       m.get("frontend_cpu", "?"),
                       "workers share cores" if workers > len(fcpus) else "some cores are idle"))
            self.w()

    def metric_table(self, group, title, value, fmt, ratios, higher_better=True):
        scenarios = self.groups[group]
        self.w("**%s**" % title)
        self.w()
        cols = ["requests / clients"] + [PRETTY.get(f, f) for f in self.frontends]
        if ratios and "cmsfront" in self.frontends:
            cols += ["cmsfront ÷ %s" % PRETTY.get(p, p) for p in self.peers]
        self.w("| " + " | ".join(cols) + " |")
        self.w("|---|" + "---:|" * (len(cols) - 1))
        for sc in scenarios:
            first = self.first(sc)
            cells = [scenario_label(first, self.scale)]
            for fe in self.frontends:
                row = self.get(sc, fe)
                cells.append(cell(row, fmt(value(row))) if row else "")
            if ratios and "cmsfront" in self.frontends:
                mine = self.get(sc, "cmsfront")
                for peer in self.peers:
                    theirs = self.get(sc, peer)
                    ok = mine and theirs and ran(mine) and ran(theirs)
                    cells.append(ratio(value(mine), value(theirs)) if ok else "–")
            self.w("| " + " | ".join(cells) + " |")
        self.w()

    def detail_table(self, group):
        self.w("<details><summary>every run of this table</summary>")
        self.w()
        self.w("Accept-queue drops: connections the kernel dropped during the run because the "
               "frontend's listen queue was full (TcpExt ListenOverflows); each such client "
               "retries after 1, 3, 7, 15 ... s, which is where a burst's long tail comes from.")
        self.w()
        cherry = group == "cherrypy"
        cols = ["requests / clients", "frontend", "req/s", "2xx", "failed", "errors / other status",
                "p50 ms", "p99 ms", "CPU-s", "req per CPU-s", "peak RSS MiB",
                "accept-queue drops"]
        if cherry:
            cols += ["backend conns (max / opened)"]
        self.w("| " + " | ".join(cols) + " |")
        self.w("|---|---|" + "---:|" * 3 + "---|" + "---:|" * (len(cols) - 6))
        for sc in self.groups[group]:
            for fe in self.frontends:
                row = self.get(sc, fe)
                if not row:
                    continue
                label = scenario_label(row, self.scale)
                if row.get("outcome") == "unsupported":
                    self.w("| %s | %s | %s | – | %s | %s |%s" % (
                        label, PRETTY.get(fe, fe), cell(row, ""), fmt_int(row.get("failed")),
                        describe_failures(row) or "–", " |" * (len(cols) - 6)))
                    continue
                if not ran(row):
                    self.w("| %s | %s | %s |%s" % (label, PRETTY.get(fe, fe),
                                                   cell(row, ""), " |" * (len(cols) - 3)))
                    continue
                why = describe_failures(row)
                cells = [label, PRETTY.get(fe, fe), cell(row, fmt_int(row.get("rps"))),
                         fmt_int(row.get("ok")), fmt_int(row.get("failed")), why or "–",
                         fmt_ms(row.get("p50_ms")), fmt_ms(row.get("p99_ms")),
                         "–" if row.get("cpu_s") is None else "%.2f" % row["cpu_s"],
                         fmt_int(row.get("req_per_cpu_s")),
                         "–" if row.get("rss_mib") is None else "%.1f" % row["rss_mib"],
                         fmt_int(row.get("listen_overflows"))]
                if cherry:
                    cells.append("%s / %s" % (fmt_int(row.get("backend_conns_max")),
                                              fmt_int(row.get("backend_conns_opened"))))
                self.w("| " + " | ".join(cells) + " |")
        self.w()
        self.w("</details>")
        self.w()

    def handshake_group(self, group):
        if not self.groups[group]:
            return
        self.w("## %s" % GROUPS[group])
        self.w()
        if group == "on":
            self.w("Each connection carries requests ÷ clients requests (the seed table: 5 to 25; "
                   "2 on average for the 10,000-client row), so its one handshake is still a large part of "
                   "the work; the anchors' keep-alive figure (40,000 requests over 100 "
                   "connections) is a different workload. At 10,000 clients the question is "
                   "whether a frontend takes and keeps that many connections at all: failures "
                   "there say where it stopped (see every run for the errors).")
            self.w()
        self.metric_table(group, "requests per CPU-second of the frontend (higher is better)",
                          lambda r: r and r.get("req_per_cpu_s"), fmt_int, True)
        self.metric_table(group, "requests/s", lambda r: r and r.get("rps"), fmt_int, True)
        self.metric_table(group, "failed requests", lambda r: r and r.get("failed"), fmt_int,
                          False)
        self.metric_table(group, "p99 latency, ms", lambda r: r and r.get("p99_ms"), fmt_ms,
                          False)
        self.detail_table(group)

    def cherrypy_group(self):
        if not self.groups["cherrypy"]:
            return
        self.w("## %s" % GROUPS["cherrypy"])
        self.w()
        self.w("What matters here is failures and latency at many clients: a 10-thread Python "
               "backend is the bottleneck, and a frontend should queue requests for it rather "
               "than pile connections onto it. \"backend conns\" is what the backend counted: "
               "the most connections open at once and the connections accepted during the run.")
        self.w()
        g = "cherrypy"
        self.metric_table(g, "failed requests", lambda r: r and r.get("failed"), fmt_int, False)
        self.metric_table(g, "requests/s", lambda r: r and r.get("rps"), fmt_int, True)
        self.metric_table(g, "p99 latency, ms", lambda r: r and r.get("p99_ms"), fmt_ms, False)
        self.metric_table(g, "most backend connections open at once",
                          lambda r: r and r.get("backend_conns_max"), fmt_int, False)
        self.metric_table(g, "requests per CPU-second of the frontend",
                          lambda r: r and r.get("req_per_cpu_s"), fmt_int, True)
        self.detail_table(g)

    def proxy_group(self):
        if not self.groups["proxy"]:
            return
        self.w("## %s" % GROUPS["proxy"])
        self.w()
        self.w("CMS users authenticate with grid proxies. A frontend that refuses them cannot "
               "replace cmsweb's; the peers are configured as a site would configure them "
               "(OpenSSL's default verification, which rejects proxy certificates).")
        self.w()
        self.w("| requests / clients | frontend | verdict | 2xx | failed | how it failed |")
        self.w("|---|---|---|---:|---:|---|")
        for sc in self.groups["proxy"]:
            for fe in self.frontends:
                row = self.get(sc, fe)
                if not row:
                    continue
                label = scenario_label(row, self.scale)
                if not ran(row):
                    self.w("| %s | %s | %s | | | |" % (label, PRETTY.get(fe, fe), cell(row, "")))
                    continue
                ok, n = row.get("ok") or 0, row.get("requests") or 0
                if n and ok == n:
                    verdict = "**accepts proxies**"
                elif ok == 0:
                    verdict = "**refuses proxies**"
                else:
                    verdict = "partly (%d of %d)" % (ok, n)
                self.w("| %s | %s | %s | %s | %s | %s |" % (
                    label, PRETTY.get(fe, fe), cell(row, verdict), fmt_int(ok),
                    fmt_int(row.get("failed")), describe_failures(row) or "–"))
        self.w()

    def h2_group(self):
        if not self.groups["h2"]:
            return
        self.w("## %s" % GROUPS["h2"])
        self.w()
        self.w("C connections, each with one handshake, carrying the requests as HTTP/2 streams: "
               "`h2` one stream at a time per connection, `× M streams` M at once (C × M "
               "requests in flight). Towards the backend every frontend speaks HTTP/1.1. "
               "*unsupported*: the frontend's ALPN did not select h2, so no request could be "
               "sent (the reason is under \"Runs that did not complete normally\").")
        self.w()
        g = "h2"
        self.metric_table(g, "requests per CPU-second of the frontend (higher is better)",
                          lambda r: r and r.get("req_per_cpu_s"), fmt_int, True)
        self.metric_table(g, "requests/s", lambda r: r and r.get("rps"), fmt_int, True)
        self.metric_table(g, "failed requests", lambda r: r and r.get("failed"), fmt_int, False)
        self.metric_table(g, "p99 latency, ms", lambda r: r and r.get("p99_ms"), fmt_ms, False)
        self.detail_table(g)

    def idle_group(self):
        if not self.groups["idle"]:
            return
        self.w("## %s" % GROUPS["idle"])
        self.w()
        self.w("Each frontend, freshly started in front of the native backend and warmed up, "
               "gets K keep-alive TLS connections with the user certificate; each makes one "
               "request and is then held open, idle (`cmsfront-load --hold`). The resident "
               "memory (VmRSS) of the frontend's serving processes is read before they open and "
               "while they are all open (the reading at the most server-side ESTABLISHED "
               "connections); **KiB per idle connection** = (RSS held − RSS before) ÷ the "
               "connections open at that reading. That count equals \"held to the end\" (still "
               "open when their hold ended) unless the frontend closed idle connections while "
               "they were held, which is itself a result. It includes what the TLS library "
               "keeps per connection (the session, the client's certificate chain, buffers).")
        self.w()
        self.w("| frontend | connections | held to the end | open at the reading | RSS before, "
               "MiB | RSS at the reading, MiB | KiB per idle connection | note |")
        self.w("|---|---:|---:|---:|---:|---:|---:|---|")
        for sc in self.groups["idle"]:
            for fe in self.frontends:
                row = self.get(sc, fe)
                if not row:
                    continue
                n = fmt_int(row.get("requests"))
                if not ran(row):
                    self.w("| %s | %s | %s | | | | | %s |" % (
                        PRETTY.get(fe, fe), n, cell(row, ""),
                        (row.get("note") or "").replace("|", "\\|")))
                    continue
                mib = lambda kib: "–" if kib is None else "%.1f" % (kib / 1024)
                per = row.get("kib_per_idle_conn")
                failures = describe_failures(row)
                note = "; ".join(x for x in (failures, (row.get("note") or "")) if x)
                self.w("| %s | %s | %s | %s | %s | %s | %s | %s |" % (
                    PRETTY.get(fe, fe), n, cell(row, fmt_int(row.get("held_ok"))),
                    fmt_int(row.get("established_held")), mib(row.get("rss_before_kib")),
                    mib(row.get("rss_held_kib")),
                    "**%.1f**" % per if per is not None else "–",
                    note.replace("|", "\\|")))
        self.w()

    def problems(self):
        bad = [r for r in self.rows if r.get("outcome", "ran") != "ran"]
        if not bad:
            return
        self.w("## Runs that did not complete normally")
        self.w()
        self.w("| frontend | scenario | outcome | note |")
        self.w("|---|---|---|---|")
        for r in bad:
            self.w("| %s | `%s` | %s | %s |" % (PRETTY.get(r["frontend"], r["frontend"]),
                                                r["scenario"], r["outcome"],
                                                (r.get("note") or "").replace("|", "\\|")))
        self.w()

    def plots_section(self, plots, plot_error, link_base):
        self.w("## Plots")
        self.w()
        if plot_error:
            self.w("*No plots: %s.*" % plot_error)
            self.w()
            return
        for name, title in plots:
            self.w("![%s](%s)" % (title, link_base + name))
            self.w()

    def files_section(self):
        self.w("## Files")
        self.w()
        self.w("In `%s`: `results.jsonl` (one JSON object per run, everything above and the "
               "load generator's status and error counts), `results.csv` (the same, one row per "
               "run), `meta.json` (the setup), `logs/` (each frontend's configuration and logs, "
               "and cmsfront-load's JSON for every run), the plots." % self.outdir.name)
        self.w()


def describe_failures(row):
    parts = []
    for kind, count in sorted((row.get("errors") or {}).items()):
        if count:
            parts.append("%s %s" % (fmt_int(count), kind.replace("_", " ")))
    for status, count in sorted((row.get("status") or {}).items()):
        if not str(status).startswith("2") and count:
            parts.append("%s × %s" % (fmt_int(count), status))
    n, completed = row.get("requests"), row.get("completed")
    if n is not None and completed is not None:
        attempted = completed + sum((row.get("errors") or {}).values())
        if attempted < n:
            parts.append("%s not sent" % fmt_int(n - attempted))
    return ", ".join(parts)


# The plots vs concurrency: file, title, y label, row field.
PLOTS = [
    ("rps_vs_concurrency.png", "Successful requests/s vs concurrent clients", "requests/s",
     "rps"),
    ("failures_vs_concurrency.png", "Failed requests vs concurrent clients", "failed requests",
     "failed"),
    ("req_per_cpu_vs_concurrency.png",
     "Requests per CPU-second of the frontend vs concurrent clients",
     "requests per frontend CPU-second", "req_per_cpu_s"),
]
H2_PLOT = ("h2.png", "HTTP/2 clients: requests/s and requests per CPU-second")
IDLE_PLOT = ("idle_memory.png", "Memory per idle keep-alive TLS connection")
ALL_PLOTS = [(name, title) for name, title, _, _ in PLOTS] + [H2_PLOT, IDLE_PLOT]
MARKERS = {"cmsfront": "o", "nginx": "s", "haproxy": "^", "apache": "D"}


# --- plots ------------------------------------------------------------------------------------
def draw_plots(report, outdir):
    """Returns ([(file, title)], error text or None)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import NullFormatter, ScalarFormatter
    except ImportError:
        return [], "matplotlib is not installed (Debian: apt-get install python3-matplotlib)"

    for stale in [name for name, _ in ALL_PLOTS]:
        if (outdir / stale).exists():
            (outdir / stale).unlink()  # a redraw must not keep a plot this run has no data for
    panels = [(g, t) for g, t in (("off", "keep-alive off (handshake per request)"),
                                  ("on", "keep-alive on"),
                                  ("cherrypy", "CherryPy backend, keep-alive"))
              if report.groups[g]]
    made = []
    if panels:
        made += concurrency_plots(report, outdir, plt, panels, NullFormatter, ScalarFormatter)
    if report.groups["h2"]:
        made += h2_plot(report, outdir, plt)
    if report.groups["idle"]:
        made += idle_plot(report, outdir, plt)
    if not made:
        return [], "no runs to plot"
    return made, None


def concurrency_plots(report, outdir, plt, panels, NullFormatter, ScalarFormatter):
    def series(group, frontend, value):
        """(concurrency, value) points; for a concurrency run twice (1,000/200 and
        5,000/200), the run with more requests."""
        best = {}
        for sc in report.groups[group]:
            row = report.get(sc, frontend)
            if not row or not ran(row):
                continue
            c = row.get("concurrency")
            if c not in best or (row.get("requests") or 0) > (best[c].get("requests") or 0):
                best[c] = row
        pts = [(c, value(best[c])) for c in sorted(best)]
        return [(c, v) for c, v in pts if v is not None]

    made = []
    values = {"rps": lambda r: r.get("rps"), "failed": lambda r: r.get("failed"),
              "req_per_cpu_s": lambda r: r.get("req_per_cpu_s")}
    for filename, title, ylabel, key in PLOTS:
        value = values[key]
        fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.2), squeeze=False)
        for ax, (group, panel_title) in zip(axes[0], panels):
            xs_all = set()
            for fe in report.frontends:
                pts = series(group, fe, value)
                if not pts:
                    continue
                xs, ys = zip(*pts)
                xs_all.update(xs)
                ax.plot(xs, ys, marker=MARKERS.get(fe, "x"), label=PRETTY.get(fe, fe))
            ax.set_title(panel_title, fontsize=10)
            ax.set_xlabel("concurrent clients")
            ax.set_ylabel(ylabel)
            if xs_all and max(xs_all) >= 20 * min(xs_all):
                # 100 ... 10,000 clients: a linear axis would squash the seed table into a
                # corner. Ticks at the concurrencies run, written out.
                ax.set_xscale("log")
                ax.set_xticks(sorted(xs_all))
                ax.xaxis.set_major_formatter(ScalarFormatter())
                ax.xaxis.set_minor_formatter(NullFormatter())
                ax.tick_params(axis="x", labelsize=7)
            ax.set_ylim(bottom=0)
            if ax.lines and max(max(line.get_ydata()) for line in ax.lines) <= 0:
                ax.set_ylim(0, 1)  # all zero (no failures): a readable axis
            ax.grid(True, alpha=0.3)
            if ax.lines:
                ax.legend(fontsize=8)
        fig.suptitle(title + scale_suffix(report), fontsize=11)
        fig.tight_layout()
        fig.savefig(outdir / filename, dpi=100)
        plt.close(fig)
        made.append((filename, title))
    return made


def scale_suffix(report):
    return " (SCALE %s)" % report.scale if report.scale != 1 else ""


def bars(ax, report, labels, rows_for, value, fmt):
    """Grouped bars: one group per label, one bar per frontend; a frontend without a value
    gets its outcome written where its bar would be."""
    count = len(report.frontends)
    width = 0.8 / max(count, 1)
    top = 0
    for fe in report.frontends:
        for label in labels:
            row = rows_for(label, fe)
            v = value(row) if row and ran(row) else None
            if v is not None:
                top = max(top, v)
    for j, fe in enumerate(report.frontends):
        xs, ys = [], []
        for i, label in enumerate(labels):
            x = i - 0.4 + width * (j + 0.5)
            row = rows_for(label, fe)
            v = value(row) if row and ran(row) else None
            if v is None:
                if row:
                    why = NOT_RUN.get(row.get("outcome"), row.get("outcome", ""))
                    ax.text(x, top * 0.02 if top else 0.02, why, rotation=90, ha="center",
                            va="bottom", fontsize=7, color="0.35")
                continue
            xs.append(x)
            ys.append(v)
            ax.text(x, v, fmt(v), ha="center", va="bottom", fontsize=6)
        ax.bar(xs, ys, width=width * 0.95, label=PRETTY.get(fe, fe))
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, fontsize=8)
    ax.set_ylim(0, (top or 1) * 1.15)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8)


def h2_plot(report, outdir, plt):
    scenarios = report.groups["h2"]
    labels = [scenario_label(report.first(sc), 1).replace(" streams", "")
              for sc in scenarios]
    by_label = dict(zip(labels, scenarios))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), squeeze=False)
    for ax, (key, ylabel) in zip(axes[0], (("rps", "requests/s"),
                                           ("req_per_cpu_s", "requests per frontend CPU-second"))):
        bars(ax, report, labels, lambda label, fe: report.get(by_label[label], fe),
             lambda r: r.get(key), lambda v: "{:,.0f}".format(v))
        ax.set_xlabel("requests / connections (× streams per connection)")
        ax.set_ylabel(ylabel)
    fig.suptitle(H2_PLOT[1] + scale_suffix(report), fontsize=11)
    fig.tight_layout()
    fig.savefig(outdir / H2_PLOT[0], dpi=100)
    plt.close(fig)
    return [H2_PLOT]


def idle_plot(report, outdir, plt):
    scenarios = report.groups["idle"]
    labels = ["%s connections" % fmt_int(report.first(sc).get("requests")) for sc in scenarios]
    by_label = dict(zip(labels, scenarios))
    fig, axes = plt.subplots(1, 1, figsize=(6.5, 4.2), squeeze=False)
    ax = axes[0][0]
    bars(ax, report, labels, lambda label, fe: report.get(by_label[label], fe),
         lambda r: r.get("kib_per_idle_conn"), lambda v: "%.1f" % v)
    ax.set_ylabel("KiB of resident memory per idle connection")
    fig.suptitle(IDLE_PLOT[1], fontsize=11)
    fig.tight_layout()
    fig.savefig(outdir / IDLE_PLOT[0], dpi=100)
    plt.close(fig)
    return [IDLE_PLOT]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--output", type=Path, help="write the report here instead of "
                        "OUTDIR/report.md (plots are not redrawn)")
    parser.add_argument("--plots-dir", type=Path, help="with --output: copy OUTDIR's plots "
                        "into this directory (its old *.png removed first) and link them there")
    parser.add_argument("--no-plots", action="store_true")
    args = parser.parse_args()
    outdir = args.outdir.resolve()
    if not (outdir / "results.jsonl").exists():
        sys.exit("report.py: %s has no results.jsonl" % outdir)
    rows = load_rows(outdir)
    meta = {}
    if (outdir / "meta.json").exists():
        with open(outdir / "meta.json") as f:
            meta = json.load(f)
    suite_seconds = None
    try:
        suite_seconds = int((outdir / "suite_seconds").read_text().strip())
    except (OSError, ValueError):
        pass

    report = Report(outdir, rows, meta, suite_seconds)
    target = (args.output or outdir / "report.md").resolve()
    if args.no_plots:
        plots, plot_error = [], "turned off (--no-plots)"
    elif args.output:
        plots = [(name, title) for name, title in ALL_PLOTS if (outdir / name).exists()]
        plot_error = None if plots else "none were drawn in %s" % outdir
    else:
        plots, plot_error = draw_plots(report, outdir)
    plots_home = outdir
    if args.plots_dir and args.output and not args.no_plots:
        # A stable place next to the copied report, which can be committed (run directories
        # are not); a run replaces every plot there, so none is left from an older run.
        plots_home = args.plots_dir.resolve()
        plots_home.mkdir(parents=True, exist_ok=True)
        for old in plots_home.glob("*.png"):
            old.unlink()
        for name, _ in plots:
            shutil.copyfile(outdir / name, plots_home / name)
    link_base = os.path.relpath(plots_home, target.parent)
    link_base = "" if link_base == "." else link_base.rstrip("/") + "/"

    report.header()
    report.handshake_group("off")
    report.handshake_group("on")
    report.h2_group()
    report.cherrypy_group()
    report.proxy_group()
    report.idle_group()
    report.problems()
    report.plots_section(plots, plot_error, link_base)
    report.files_section()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("\n".join(report.out).rstrip() + "\n")
    print("report.py: wrote %s (%d runs%s)" % (target, len(rows),
                                               ", %d plots" % len(plots) if plots else ""))


if __name__ == "__main__":
    main()
