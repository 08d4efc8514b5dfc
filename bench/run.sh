#!/usr/bin/env bash
# The full comparison: cmsfront, nginx, HAProxy and Apache httpd, one command.
#
#   bench/run.sh                                   # everything (about 16 minutes on 2 cores)
#   SCALE=10 bench/run.sh                          # a tenth of the requests: a quick full pass
#   FRONTENDS="cmsfront nginx" SCENARIOS="5000/200:off 5000/200:on" bench/run.sh
#
# What it does, in order: installs what it needs (tools/install-deps.sh; nginx-light, haproxy,
# apache2 only for the frontends selected; python3-matplotlib for the plots), builds cmsfront
# if needed, makes the grid fixtures once (tests/pki/make_grid_fixtures.py, the client CA's
# CRL with REVOKED entries), builds the trust store (Debian's IGTF bundle + the fixture CAs, as
# bench/handshake_nginx.sh does), then, for every frontend and every backend kind the
# scenarios use: starts the backend (the native cmsfront-test-backend, one thread, or the
# CherryPy app of the integration tests with 10 threads) and the frontend pinned to
# FRONTEND_CPU with WORKERS workers (1: the per-core numbers), sends a warm-up, and runs that
# kind's scenarios one after the other with build/cmsfront-load pinned to CLIENT_CPU, reading
# the frontend's CPU time (its whole process tree: a master and its workers count alike) from
# /proc before and after each run. Before its scenarios each frontend also gets, in a fresh
# instance of its own, the idle-connection memory measurement (IDLE_CONNECTIONS below). One
# JSON object per run goes to OUT/results.jsonl and one row to OUT/results.csv;
# bench/report.py then writes OUT/report.md and the PNG plots.
#
# Scenarios (SCENARIOS, space separated): N/C:KEEPALIVE[:BACKEND[:CREDENTIAL]]
#   N           requests (a "k" suffix multiplies by 1000: 5k = 5000), divided by SCALE
#   C           concurrent client connections
#   KEEPALIVE   off: a new TCP + TLS connection (full handshake, client certificate) per
#               request (cmsfront-load --new-connection); on: C keep-alive connections;
#               h2: C keep-alive connections speaking HTTP/2 (ALPN h2; cmsfront-load --h2),
#               one request at a time on each; h2xM: the same with M concurrent streams per
#               connection (--streams M: C x M requests in flight). A frontend whose ALPN
#               does not select h2 fails every request with the load generator's ALPN error:
#               that row is recorded as outcome "unsupported", not as failures.
#   BACKEND     native (default): build/cmsfront-test-backend; cherrypy: the CherryPy app
#               (tests/integration/backends/cherrypy_app.py, 10 threads, CHERRYPY_PATH)
#   CREDENTIAL  user (default): creds/user_ecdsa.pem; proxy: creds/proxy_rfc.pem (an RFC 3820
#               proxy; peers are expected to refuse it, and the report says so)
# The requests actually sent are max(N / SCALE, min(N, C)): SCALE never leaves fewer requests
# than connections, so the concurrency of a row stays what it says.
#
# Environment (defaults in brackets):
#   FRONTENDS ["cmsfront nginx haproxy apache"]
#   SCENARIOS [the seed table 1000/100 1000/200 5000/200 5000/300 5000/500 5000/1000 with
#             keep-alive off, then on; HTTP/2 5000/100:h2 5000/100:h2x10;
#             200/10:off:native:proxy; 10,000 keep-alive clients 20000/10000:on (two requests
#             each; last of the native runs, so that its peak memory does not show in the
#             others' peak RSS); CherryPy 2000/100 2000/500 2000/1000 keep-alive on]
#   SCALE [1]            divisor of every N
#   IDLE_CONNECTIONS [2000]  memory per idle connection: K keep-alive TLS connections with the
#                        user certificate, one request each, then held idle (cmsfront-load
#                        --hold); the frontend's resident memory (VmRSS, summed over its serving
#                        processes) is read before they open and while they are all open, and
#                        (held - before) / connections open is reported. Not divided by SCALE.
#                        0: no idle measurement. 2,000 gives a stable figure (tens of MiB of
#                        difference); 5,000 costs ~2 more minutes of the suite's 20
#   IDLE_RAMP [auto]     seconds over which the K connections start (cmsfront-load --ramp):
#                        by default K / (0.8 x the warm-up's handshake rate), so that they open
#                        about as fast as the frontend can take them (a burst makes Apache close
#                        idle connections while its workers are busy); 0: all at once
#   IDLE_HOLD [auto]     seconds each connection stays idle after its request; it must outlast
#                        the opening of all K: by default 1.5 x the opening time + 5, within
#                        [10, 55] (the peers close idle keep-alive connections after 60 s)
#   OUT [bench/results/run-<UTC timestamp>]; without OUT the report is also copied to
#                        bench/RESULTS.md (RESULTS_COPY=FILE to name another copy, or none
#                        when OUT is given) and the plots to bench/results/plots/ (PLOTS_COPY=DIR
#                        for another place; none when OUT is given), which RESULTS.md links to
#   FRONTEND_CPU [0], CLIENT_CPU [1]   taskset CPU lists (N, N-M, N-M:STRIDE, comma separated;
#                        the backends share CLIENT_CPU)
#   WORKERS [1]          workers (threads or processes) each frontend gets, all pinned to
#                        FRONTEND_CPU: 1 gives the per-core numbers (one worker, one core);
#                        for the all-cores numbers give FRONTEND_CPU as many CPUs as WORKERS and
#                        CLIENT_CPU other ones, e.g. on 16 cores
#                          FRONTEND_CPU=0-7 CLIENT_CPU=8-15 WORKERS=8 bench/run.sh
#                        cmsfront: workers = N (threads of one process); nginx: worker_processes
#                        N with master_process on (1: master_process off, as before); HAProxy:
#                        nbthread N; Apache: N children (ServerLimit N) of APACHE_WORKERS threads
#                        each, its one-core setup once per core. CPU time is summed over each
#                        frontend's process tree, memory over its serving processes (the
#                        workers; a master that forked them only supervises). With WORKERS > 1
#                        and CPU lists that overlap, the report warns: the load generator then
#                        takes CPU from the frontend's cores, and its numbers are not per-core
#                        comparable (a 2-core machine cannot measure the all-cores mode)
#   LOAD_THREADS [auto]  cmsfront-load -t: 1 with WORKERS=1 (as before), else one thread per CPU
#                        of CLIENT_CPU, so that the load generator can use the cores it is given
#   REVOKED [20000]      entries in the client CA's CRL
#   FIXTURES [/var/tmp/cmsfront-bench/grid-r$REVOKED]  fixture directory, reused while fresh
#   IGTF [1]             add /etc/grid-security/certificates to the trust store
#   WARMUP [200]         requests (new connection each, divided by SCALE, at least 20) sent
#                        to each frontend after it starts, not measured
#   RUN_TIMEOUT [300]    seconds one load run may take before it is killed (row: timeout)
#   REQUEST_TIMEOUT [30] cmsfront-load --timeout (per request, connect included); a run with
#                        C connections gets at least C / 150 s: C clients that connect at once
#                        queue for the frontend's handshakes (220-1,000 a second on one core), so
#                        at 10,000 clients a fixed 30 s would cut off a peer at ~7,000 handshakes
#                        and measure its handshake rate again, not whether it holds the clients
#   MAX_SECONDS [1140]   once the suite has run this long, the remaining runs are recorded as
#                        skipped (time budget) instead of being run
#   APACHE_WORKERS [64]  threads of each Apache child process (a thread per handshake; one
#                        child per worker of WORKERS)
#   CHERRYPY_THREADS [10], CHERRYPY_PATH [/work?ms=10], NATIVE_PATH [/]
#   INSTALL [1]          0: install nothing (missing peers are recorded as not installed)
#   BUILD [auto]         auto: build when a binary is missing, else bring build/ up to date
#                        (cmake --build, three targets); 0: never build; BUILD_DIR [build]
#   PLOTS [1]            0: do not install matplotlib (plots are still drawn if it is there)
# Open files: the script raises its soft limit to the hard one (ulimit -Hn; raising the hard
# limit needs CAP_SYS_RESOURCE), and every process it starts inherits it. A scenario whose C
# connections do not fit under it (C + 200 descriptors for cmsfront-load) is recorded as
# "cannot-run" with the limit in its note; nginx gets worker_connections and
# worker_rlimit_nofile from it, HAProxy a maxconn that fits (bench/peers/haproxy.sh).
# Exit status: 0 when the suite ran (failed requests are results, not errors), 1 when it could
# not start (missing binaries, fixtures, trust store), 2 for a bad SCENARIOS/FRONTENDS/SCALE/
# IDLE_CONNECTIONS/WORKERS/LOAD_THREADS/FRONTEND_CPU/CLIENT_CPU.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$PWD
export PATH="/usr/sbin:/usr/bin:/sbin:/bin:$PATH"
PY=/usr/bin/python3

default_scenarios="1000/100:off 1000/200:off 5000/200:off 5000/300:off 5000/500:off 5000/1000:off
1000/100:on 1000/200:on 5000/200:on 5000/300:on 5000/500:on 5000/1000:on
5000/100:h2 5000/100:h2x10
200/10:off:native:proxy
20000/10000:on
2000/100:on:cherrypy 2000/500:on:cherrypy 2000/1000:on:cherrypy"

read -r -a frontends <<<"${FRONTENDS:-cmsfront nginx haproxy apache}"
read -r -d '' -a scenario_tokens <<<"${SCENARIOS:-$default_scenarios}" || true
scale=${SCALE:-1}
stamp=$(date -u +%Y%m%dT%H%M%SZ)
if [[ -n "${OUT:-}" ]]; then
  out=$OUT
  results_copy=${RESULTS_COPY:-}
else
  out=$repo/bench/results/run-$stamp
  results_copy=${RESULTS_COPY:-$repo/bench/RESULTS.md}
fi
if [[ -n "${OUT:-}" ]]; then
  plots_copy=${PLOTS_COPY:-}
else
  plots_copy=${PLOTS_COPY:-$repo/bench/results/plots}
fi
frontend_cpu=${FRONTEND_CPU:-0}
if [[ -z "${CLIENT_CPU:-}" ]] && (($(nproc) < 2)); then
  client_cpu=0
else
  client_cpu=${CLIENT_CPU:-1}
fi
workers=${WORKERS:-1}
load_threads=${LOAD_THREADS:-}
revoked=${REVOKED:-20000}
fixtures=${FIXTURES:-/var/tmp/cmsfront-bench/grid-r$revoked}
use_igtf=${IGTF:-1}
warmup=${WARMUP:-200}
run_timeout=${RUN_TIMEOUT:-300}
request_timeout=${REQUEST_TIMEOUT:-30}
idle_connections=${IDLE_CONNECTIONS:-2000}
idle_hold=${IDLE_HOLD:-}
idle_ramp=${IDLE_RAMP:-}
max_seconds=${MAX_SECONDS:-1140}
apache_workers=${APACHE_WORKERS:-64}
cherrypy_threads=${CHERRYPY_THREADS:-10}
cherrypy_path=${CHERRYPY_PATH:-/work?ms=10}
native_path=${NATIVE_PATH:-/}
install=${INSTALL:-1}
build=${BUILD:-auto}
plots=${PLOTS:-1}
build_dir=${BUILD_DIR:-$repo/build}
cmsfront=$build_dir/cmsfront
backend=$build_dir/cmsfront-test-backend
load=$build_dir/cmsfront-load
nginx=/usr/sbin/nginx
igtf=/etc/grid-security/certificates
clk_tck=$(getconf CLK_TCK)

die_usage() { echo "run.sh: $*" >&2; exit 2; }

# shellcheck source=bench/lib.sh
source "$repo/bench/lib.sh"

# --- arguments ----------------------------------------------------------------------------------
[[ "$workers" =~ ^[1-9][0-9]*$ ]] || die_usage "WORKERS must be a positive integer, not '$workers'"
workers=$((10#$workers))
frontend_cpus=() client_cpus=()
mapfile -t frontend_cpus < <(cpu_list_expand "$frontend_cpu" || true)
mapfile -t client_cpus < <(cpu_list_expand "$client_cpu" || true)
((${#frontend_cpus[@]})) || die_usage "FRONTEND_CPU must be a taskset CPU list (0, 0-7, 0,2,4), not '$frontend_cpu'"
((${#client_cpus[@]})) || die_usage "CLIENT_CPU must be a taskset CPU list (1, 8-15, 1,3,5), not '$client_cpu'"
# The load generator's threads: as before (one) for the per-core runs; with WORKERS > 1 one per
# client CPU, or a single-threaded client would cap what N frontend cores can show.
if [[ -z "$load_threads" ]]; then
  load_threads=1
  ((workers > 1)) && load_threads=${#client_cpus[@]}
fi
if [[ ! "$load_threads" =~ ^[1-9][0-9]{0,3}$ ]] || ((10#$load_threads > 1024)); then
  die_usage "LOAD_THREADS must be an integer from 1 to 1024, not '$load_threads'"
fi
load_threads=$((10#$load_threads))
# Frontend and client CPU sets that share a CPU: with one worker that is the 1-CPU fallback
# above; with WORKERS > 1 the report warns that its numbers are not per-core comparable.
cpu_overlap=0
for cpu in "${client_cpus[@]}"; do
  [[ " ${frontend_cpus[*]} " == *" $cpu "* ]] && cpu_overlap=1
done
# cmsfront-load's -t, only when it is not its default of 1: a WORKERS=1 run runs the very
# command line it always did.
load_thread_args=()
((load_threads > 1)) && load_thread_args=(-t "$load_threads")
[[ "$scale" =~ ^[1-9][0-9]*$ ]] || die_usage "SCALE must be a positive integer, not '$scale'"
[[ "$idle_connections" =~ ^[0-9]+$ ]] ||
  die_usage "IDLE_CONNECTIONS must be a number (0: no idle measurement), not '$idle_connections'"
idle_connections=$((10#$idle_connections))
[[ -z "$idle_hold" || "$idle_hold" =~ ^[1-9][0-9]*$ ]] ||
  die_usage "IDLE_HOLD must be a positive integer, not '$idle_hold'"
[[ -z "$idle_ramp" || "$idle_ramp" =~ ^[0-9]+$ ]] ||
  die_usage "IDLE_RAMP must be a number of seconds, not '$idle_ramp'"
((${#frontends[@]})) || die_usage "FRONTENDS is empty"
for fe in "${frontends[@]}"; do
  case $fe in
    cmsfront | nginx | haproxy | apache) ;;
    *) die_usage "unknown frontend '$fe' (cmsfront, nginx, haproxy, apache)" ;;
  esac
done
((${#scenario_tokens[@]})) || die_usage "SCENARIOS is empty"

# Parsed scenarios, index-aligned: id (normalised token), nominal N, C, keep-alive (on, off;
# on for HTTP/2), protocol (http/1.1, h2), streams per connection (1 but for h2xM), backend
# kind, credential.
sc_id=() sc_n=() sc_c=() sc_ka=() sc_proto=() sc_streams=() sc_kind=() sc_cred=()
for token in "${scenario_tokens[@]}"; do
  if [[ ! "$token" =~ ^([0-9]+)(k?)/([0-9]+):(on|off|h2(x([0-9]+))?)(:(native|cherrypy))?(:(user|proxy))?$ ]]; then
    die_usage "bad scenario '$token' (N/C:on|off|h2|h2xM[:native|cherrypy[:user|proxy]], e.g. 5000/200:off)"
  fi
  n=$((10#${BASH_REMATCH[1]}))
  [[ -n "${BASH_REMATCH[2]}" ]] && n=$((n * 1000))
  c=$((10#${BASH_REMATCH[3]}))
  ((n > 0 && c > 0)) || die_usage "scenario '$token': N and C must be positive"
  ka=${BASH_REMATCH[4]} proto=http/1.1 streams=1
  if [[ "$ka" == h2* ]]; then
    proto=h2
    [[ -n "${BASH_REMATCH[6]}" ]] && streams=$((10#${BASH_REMATCH[6]}))
    ((streams > 0)) || die_usage "scenario '$token': h2xM needs M >= 1"
    # h2x1 is h2: one spelling per scenario, so rows of the same run line up in the report.
    ka=h2
    ((streams > 1)) && ka=h2x$streams
  fi
  kind=${BASH_REMATCH[8]:-native}
  cred=${BASH_REMATCH[10]:-user}
  sc_id+=("$n/$c:$ka:$kind:$cred")
  sc_n+=("$n") sc_c+=("$c") sc_kind+=("$kind") sc_cred+=("$cred")
  sc_proto+=("$proto") sc_streams+=("$streams")
  if [[ "$proto" == h2 ]]; then sc_ka+=(on); else sc_ka+=("$ka"); fi
done
# The most connections any one run opens: sizes the peers' connection limits (nginx
# worker_connections, Apache's AsyncRequestWorkerFactor) so that the limit is the machine's,
# not a default's.
max_clients=$idle_connections
for c in "${sc_c[@]}"; do
  ((c > max_clients)) && max_clients=$c
done
# Backend kinds in the order the scenarios first name them.
kinds=()
for kind in "${sc_kind[@]}"; do
  [[ " ${kinds[*]} " == *" $kind "* ]] || kinds+=("$kind")
done

scheduled() {  # N C: the requests a scenario sends at this SCALE
  local n=$1 c=$2 s
  s=$((n / scale))
  local floor=$((c < n ? c : n))
  ((s < floor)) && s=$floor
  ((s < 1)) && s=1
  echo "$s"
}

selected() { [[ " ${frontends[*]} " == *" $1 "* ]]; }

suite_start=$SECONDS
say() { echo "run.sh [$(date -u +%H:%M:%S)]: $*" >&2; }

# --- dependencies and build ----------------------------------------------------------------------
# shellcheck source=bench/peers/apache.sh
source "$repo/bench/peers/apache.sh"
# shellcheck source=bench/peers/haproxy.sh
source "$repo/bench/peers/haproxy.sh"

declare -A unavailable=()  # frontend -> why it cannot run
if [[ "$install" == 1 ]]; then
  tools/install-deps.sh >&2
  if selected nginx && [[ ! -x "$nginx" ]]; then
    say "installing nginx-light"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx-light \
      >/dev/null 2>&1 || true
  fi
  if selected haproxy; then haproxy_install || true; fi
  if selected apache; then apache_install || true; fi
  if [[ "$plots" == 1 ]] && ! "$PY" -c 'import matplotlib' 2>/dev/null; then
    say "installing python3-matplotlib for the plots"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      python3-matplotlib >/dev/null 2>&1 || {
      apt-get update -qq >/dev/null 2>&1 || true
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        python3-matplotlib >/dev/null 2>&1 || say "python3-matplotlib did not install: no plots"
    }
  fi
fi
selected nginx && [[ ! -x "$nginx" ]] && unavailable[nginx]="not installed ($nginx missing)"
selected haproxy && [[ ! -x "$haproxy_bin" ]] && unavailable[haproxy]="not installed ($haproxy_bin missing)"
selected apache && [[ ! -x "$apache_bin" ]] && unavailable[apache]="not installed ($apache_bin missing)"

if [[ "$build" != 0 ]]; then
  if [[ ! -x "$cmsfront" || ! -x "$backend" || ! -x "$load" || ! -f "$build_dir/build.ninja" ]]; then
    if [[ "$build_dir" == "$repo/build" ]]; then
      say "building (tools/build.sh --release)"
      tools/build.sh --release >&2
    fi
  else
    if ! build_log=$(cmake --build "$build_dir" --target cmsfront cmsfront_test_backend cmsfront-load 2>&1); then
      echo "$build_log" >&2
      echo "run.sh: the build failed" >&2
      exit 1
    fi
  fi
fi
for tool in "$cmsfront" "$backend" "$load" "$(command -v taskset || true)" "$(command -v curl || true)"; do
  if [[ -z "$tool" || ! -x "$tool" ]]; then
    echo "run.sh: missing ${tool:-taskset or curl} (build first: tools/build.sh; tools/install-deps.sh)" >&2
    exit 1
  fi
done

# Open files: a proxy needs a descriptor per client connection plus its backend connections,
# the load generator one per connection; 10,000 clients need more than the usual soft limit
# of 1,024. The soft limit goes up to the hard one (the frontends and cmsfront-load inherit
# it); the hard limit itself only moves with CAP_SYS_RESOURCE, so try, and live with it.
if [[ "$(ulimit -Hn)" != unlimited ]] && (($(ulimit -Hn) < 2 * max_clients + 1000)); then
  ulimit -Hn $((2 * max_clients + 1000)) 2>/dev/null || true
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
nofile=$(ulimit -n)
[[ "$nofile" == unlimited ]] && nofile=1048576
# cmsfront queues requests beyond the backend's max_connections, up to max_queue (then 503):
# 2000, or room for every client of the largest scenario, so that 10,000 clients asking at
# once are queued as nginx and HAProxy would forward or queue them, not refused.
cmsfront_queue=$((max_clients + 100))
((cmsfront_queue < 2000)) && cmsfront_queue=2000
# nginx's worker_connections counts client and upstream connections; as many as the
# descriptors allow (minus listeners, logs, the CA files), at least the old 4096.
nginx_connections=$((nofile - 200))
((nginx_connections > 2 * max_clients + 1000)) && nginx_connections=$((2 * max_clients + 1000))
((nginx_connections < 4096)) && nginx_connections=4096

# What this cmsfront-load can do: HTTP/2 (--h2, --streams) and idle holding (--hold) came
# later than the rest; an older binary makes those rows say so instead of failing on usage.
load_help=$("$load" --help 2>&1 || true)
load_h2=0 load_hold=0 load_ramp=0
[[ "$load_help" == *--h2* && "$load_help" == *--streams* ]] && load_h2=1
[[ "$load_help" == *--hold* ]] && load_hold=1
[[ "$load_help" == *--ramp* ]] && load_ramp=1

bench_init bench-run
chmod 755 "$work"  # Apache's child runs as www-data
mkdir -p "$out/logs"
out=$(cd "$out" && pwd)
jsonl=$out/results.jsonl
csv=$out/results.csv
: >"$jsonl"

# --- fixtures and the trust store ---------------------------------------------------------------
say "grid fixtures in $fixtures (client CA's CRL: $revoked entries; reused while fresh)"
mkdir -p "$(dirname "$fixtures")"
"$PY" tests/pki/make_grid_fixtures.py "$fixtures" --revoked-count "$revoked" >/dev/null
grid=$fixtures
ca_dir=$work/ca_dir
mkdir -p "$ca_dir"
if [[ "$use_igtf" == 1 && -d "$igtf" ]]; then
  cp -P "$igtf"/* "$ca_dir"/
fi
cp -P "$grid/ca_dir"/* "$ca_dir"/
ca_bundle=$work/ca-bundle.pem
crl_bundle=$work/crl-bundle.pem
cat "$ca_dir"/*.[0-9] >"$ca_bundle" 2>/dev/null
cat "$ca_dir"/*.r[0-9] >"$crl_bundle"
chmod 644 "$ca_bundle" "$crl_bundle"
server_cert=$grid/server.pem
server_key=$grid/server.key
ca_files=$(find "$ca_dir" -maxdepth 1 -regextype posix-extended -regex '.*/[0-9a-f]{8}\.[0-9]+' | wc -l)
crl_entries=$(openssl crl -in "$grid/cas/root/crl.pem" -noout -text | grep -c 'Serial Number:' || true)
say "trust store: $ca_files CA files; the client CA's CRL has $crl_entries entries"

credential_file() {  # user|proxy
  case $1 in
    proxy) echo "$grid/creds/proxy_rfc.pem" ;;
    *) echo "$grid/creds/user_ecdsa.pem" ;;
  esac
}

# The CMS identity for cmsfront's protected route: the users behind both credentials mapped.
write_identity "$work" "$grid/creds/user_ecdsa.pem" "$grid/creds/user.pem"

# --- backends -------------------------------------------------------------------------------------
backend_pid="" backend_port="" backend_control=""

start_cherrypy() {
  local i line
  backend_port=$(free_port)
  backend_control=$(free_port)
  taskset -c "$client_cpu" "$PY" tests/integration/backends/cherrypy_app.py --port "$backend_port" \
    --control-port "$backend_control" --threads "$cherrypy_threads" \
    >"$work/cherrypy.out" 2>"$work/cherrypy.err" &
  backend_pid=$!
  pids+=("$backend_pid")
  for ((i = 0; i < 300; i++)); do
    line=$(head -1 "$work/cherrypy.out" 2>/dev/null || true)
    [[ "$line" == *control_port* ]] && return 0
    kill -0 "$backend_pid" 2>/dev/null || break
    sleep 0.1
  done
  say "the CherryPy backend did not start: $(tail -5 "$work/cherrypy.err" 2>/dev/null)"
  return 1
}

start_kind_backend() {  # KIND
  backend_control=""
  case $1 in
    cherrypy) start_cherrypy ;;
    *) start_backend "$client_cpu" ;;
  esac
}

# backend_stats: "MAX OPENED" -- the most backend connections open at once and connections
# accepted, since the last reset (CherryPy) or since the backend started (native).
backend_stats() {
  if [[ -n "$backend_control" ]]; then
    curl -s -m 5 "http://127.0.0.1:$backend_control/stats" | "$PY" -c '
import json, sys
j = json.load(sys.stdin); print(j.get("max", ""), j.get("accepted", ""))' 2>/dev/null || echo " "
  else
    curl -s -m 5 "http://127.0.0.1:$backend_port/__stats" | "$PY" -c '
import json, sys
j = json.load(sys.stdin); print(j.get("connections_max", ""), j.get("connections_total", ""))' \
      2>/dev/null || echo " "
  fi
}

backend_reset() {
  if [[ -n "$backend_control" ]]; then
    curl -s -m 5 -o /dev/null "http://127.0.0.1:$backend_control/reset" || true
  fi
}

# stop_pid PID: SIGTERM, up to 10 s, then SIGKILL; forgets the pid.
stop_pid() {
  local pid=$1 i
  [[ -n "$pid" ]] || return 0
  kill "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    [[ "$(proc_state "$pid")" == Z ]] && break
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
  stop "$pid"
}

proc_state() {  # PID: the state letter, empty when gone
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
  stat=${stat##*) }
  echo "${stat%% *}"
}

# --- frontends ------------------------------------------------------------------------------------
fe_pid="" fe_port="" fe_dir=""

write_cmsfront_config() {  # FILE PORT BACKEND_PORT BACKEND_CONNECTIONS
  cat >"$1" <<EOF
[server]
workers = $workers
max_connections = 20000
shutdown_timeout = "1s"

[[listener]]
address = "127.0.0.1:$2"
tls = "main"

[tls.main]
certificate = "$server_cert"
key = "$server_key"
client_certificates = "request"
ca_dir = "$ca_dir"
crl = "require"

[backend.b]
servers = ["http://127.0.0.1:$3"]
max_connections = $4
max_queue = $cmsfront_queue
queue_timeout = "30s"

# nginx's ssl_handshake_timeout default: a client queued behind thousands of handshakes on
# one core is not cut off sooner than nginx would cut it off (cmsfront's default is 10 s).
[limits]
handshake_timeout = "60s"

[auth]
hmac_key = "$work/hmac.key"
user_map = "$work/usermap.json"

[[route]]
path = "/"
backend = "b"
auth = "cert"
EOF
}

write_nginx_config() {  # DIR PORT BACKEND_PORT KEEPALIVE
  local dir=$1
  mkdir -p "$dir/temp"
  {
    nginx_prelude "$dir" "$nginx_connections" "$nofile" "$workers"
    cat <<EOF
  upstream b {
    server 127.0.0.1:$3;
    keepalive $4;
  }
  server {
    # http2: offered in ALPN next to http/1.1 (nginx 1.22's spelling; 1.25 has "http2 on").
    # backlog: nginx's default is 511; cmsfront, HAProxy (its maxconn, capped by somaxconn)
    # and Apache (ListenBacklog) queue 4096 connections waiting to be accepted.
    listen 127.0.0.1:$2 ssl http2 backlog=4096;
    ssl_certificate $server_cert;
    ssl_certificate_key $server_key;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_verify_client optional;
    ssl_client_certificate $ca_bundle;
    ssl_crl $crl_bundle;
    ssl_verify_depth 10;
    location / {
      if (\$ssl_client_verify != SUCCESS) { return 403; }
      proxy_pass http://b;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header SSL_CLIENT_S_DN \$ssl_client_s_dn;
    }
  }
}
EOF
  } >"$dir/nginx.conf"
}

# wait_ready PORT PID PATH: until a request with the user certificate gets any HTTP answer.
wait_ready() {
  local port=$1 pid=$2 path=$3 i code
  for ((i = 0; i < 150; i++)); do
    fe_alive_pid "$pid" || return 1
    code=$(curl -sk -o /dev/null -m 2 -w '%{http_code}' --cert "$(credential_file user)" \
           "https://127.0.0.1:$port$path" 2>/dev/null) || true
    [[ -n "$code" && "$code" != 000 ]] && return 0
    sleep 0.1
  done
  return 1
}

fe_alive_pid() {
  local state
  state=$(proc_state "$1")
  [[ -n "$state" && "$state" != Z ]]
}

fe_alive() { [[ -n "$fe_pid" ]] && fe_alive_pid "$fe_pid"; }

kind_path() { [[ "$1" == cherrypy ]] && echo "$cherrypy_path" || echo "$native_path"; }

# fe_start NAME KIND [TAG]: starts NAME in front of the running backend; sets fe_pid, fe_port,
# fe_dir (work/fe-NAME-TAG, TAG defaults to KIND). Returns 1 (and leaves nothing running)
# when it does not come up.
fe_start() {
  local name=$1 kind=$2 conns=64 path
  [[ "$kind" == cherrypy ]] && conns=$cherrypy_threads
  path=$(kind_path "$kind")
  fe_dir=$work/fe-$name-${3:-$kind}
  mkdir -p "$fe_dir"
  chmod 755 "$fe_dir"
  fe_port=$(free_port)
  fe_pid=""
  case $name in
    cmsfront)
      write_cmsfront_config "$fe_dir/cmsfront.toml" "$fe_port" "$backend_port" "$conns"
      taskset -c "$frontend_cpu" "$cmsfront" --config "$fe_dir/cmsfront.toml" >"$fe_dir/cmsfront.log" 2>&1 &
      fe_pid=$!
      pids+=("$fe_pid")
      wait_ready "$fe_port" "$fe_pid" "$path" || { tail -20 "$fe_dir/cmsfront.log" >&2; fe_stop_quiet; return 1; }
      ;;
    nginx)
      write_nginx_config "$fe_dir" "$fe_port" "$backend_port" "$conns"
      taskset -c "$frontend_cpu" "$nginx" -p "$fe_dir" -c "$fe_dir/nginx.conf" -g 'daemon off;' \
        >"$fe_dir/nginx.out" 2>&1 &
      fe_pid=$!
      pids+=("$fe_pid")
      wait_ready "$fe_port" "$fe_pid" "$path" || {
        cat "$fe_dir/nginx.out" "$fe_dir/error.log" 2>/dev/null | tail -20 >&2; fe_stop_quiet; return 1; }
      ;;
    haproxy)
      haproxy_write_config "$fe_dir" "$fe_port" "$backend_port" "$ca_bundle" "$crl_bundle" \
        "$server_cert" "$server_key" "$workers" 1 2>>"$fe_dir/driver.log"
      if [[ "$kind" == cherrypy ]]; then
        # Like cmsfront's max_connections: at most $conns backend connections, the rest queue.
        sed -i -e "s/^\(  server b 127\.0\.0\.1:[0-9]* maxconn\) [0-9]*/\1 $conns/" \
          -e 's/^\(  timeout server .*\)$/\1\n  timeout queue 30s/' "$fe_dir/haproxy.cfg"
      fi
      haproxy_start "$fe_dir" "$frontend_cpu" || { fe_pid=${haproxy_pid:-}; fe_stop_quiet; return 1; }
      fe_pid=$haproxy_pid
      ;;
    apache)
      apache_write_config "$fe_dir" "$fe_port" "$backend_port" "$ca_bundle" "$crl_bundle" \
        "$server_cert" "$server_key" "$apache_workers" "$((max_clients + 100))" 1 "$workers"
      if [[ "$kind" == cherrypy ]]; then
        # mod_proxy's pool: at most $conns backend connections per child, the rest wait. The
        # pool is per child, so with WORKERS children each gets its share (rounded up): about
        # $conns in all, as cmsfront's and HAProxy's process-wide caps.
        sed -i "s|^\(  ProxyPass / http://127\.0\.0\.1:[0-9]*/ retry=0 ttl=120\)$|\1 max=$(((conns + workers - 1) / workers))|" \
          "$fe_dir/httpd.conf"
      fi
      apache_start "$fe_dir" "$frontend_cpu" || { fe_pid=${apache_pid:-}; fe_stop_quiet; return 1; }
      fe_pid=$apache_pid
      ;;
  esac
  return 0
}

fe_stop_quiet() {
  local tree=()
  # Its workers first (nginx's with WORKERS > 1, Apache's children): a master that does not
  # stop within stop_pid's 10 s gets SIGKILL, which would leave them running.
  [[ -n "$fe_pid" ]] && mapfile -t tree < <(proc_tree "$fe_pid")
  stop_pid "$fe_pid"
  ((${#tree[@]} > 1)) && stop_tree_leftovers "${tree[@]:1}"
  fe_pid=""
}

# fe_stop NAME KIND: stops it and keeps its configuration and logs in OUT/logs.
fe_stop() {
  fe_stop_quiet
  local keep=$out/logs/$1-$2
  mkdir -p "$keep"
  find "$fe_dir" -maxdepth 1 -type f \( -name '*.log' -o -name '*.out' -o -name '*.conf' \
    -o -name '*.cfg' -o -name '*.toml' \) -exec cp {} "$keep"/ \; 2>/dev/null || true
}

# The frontend's CPU time and memory, by one rule for all of them (bench/lib.sh): CPU over the
# main pid's whole process tree (threads, workers, reaped children), memory over its serving
# processes (the main process when it forked nothing, else its workers: nginx's master and
# Apache's parent only supervise). With WORKERS=1 that is one process for cmsfront, nginx
# (master_process off) and HAProxy, and Apache's parent + its one child, as before.
fe_ticks() {  # NAME: the frontend's CPU ticks (all its processes and threads), empty if gone
  fe_alive || return 0
  tree_cpu_ticks "$fe_pid" 2>/dev/null || true
}

fe_rss_kib() {  # NAME: peak RSS (VmHWM) of its serving processes, summed, empty if gone
  fe_alive || return 0
  tree_rss_peak_kib "$fe_pid" 2>/dev/null || true
}

fe_rss_now_kib() {  # NAME: resident memory (VmRSS) of its serving processes, summed, in KiB
  fe_alive || return 0
  tree_rss_now_kib "$fe_pid"
}

fe_version() {
  case $1 in
    cmsfront) "$cmsfront" --version 2>&1 | head -1 ;;
    nginx) "$nginx" -v 2>&1 | sed 's/^nginx version: //' ;;
    haproxy) haproxy_version ;;
    apache) apache_version ;;
  esac
}

fe_settings() {
  local apache_h2="Protocols h2 http/1.1 (mod_http2)"
  [[ -f "$apache_modules/mod_http2.so" ]] || apache_h2="no mod_http2 in $apache_modules: HTTP/1.1 only"
  # The worker settings, said as each frontend spells them (WORKERS=1: the text of before).
  local nginx_workers="worker_processes 1, master_process off"
  local apache_children="one child with $apache_workers threads (ServerLimit 1)"
  local apache_pool="max=$cherrypy_threads"
  if ((workers > 1)); then
    nginx_workers="worker_processes $workers, master_process on"
    apache_children="$workers children with $apache_workers threads each (ServerLimit $workers, MaxRequestWorkers $((workers * apache_workers)))"
    apache_pool="max=$(((cherrypy_threads + workers - 1) / workers)) per child"
  fi
  case $1 in
    cmsfront) echo "workers = $workers, max_connections = 20000; client_certificates = request, ca_dir, crl = require, verification cache on (default 20000); route auth = cert with the CMS identity (a 5,000-user map, signed cms-auth headers); handshake_timeout 60s (nginx's default); backend max_connections 64 (native) / $cherrypy_threads (CherryPy), max_queue $cmsfront_queue; ALPN http/1.1 only (no HTTP/2 yet)" ;;
    nginx) echo "$nginx_workers, worker_connections $nginx_connections, worker_rlimit_nofile $nofile; listen ssl http2 backlog=4096; ssl_verify_client optional + 403 unless SUCCESS; ssl_client_certificate (CA bundle), ssl_crl (all CRLs); upstream keepalive 64 (native) / $cherrypy_threads (CherryPy; nginx has no cap-and-queue, so no max_conns)" ;;
    haproxy) echo "nbthread $workers, maxconn 20000 or what $nofile open files allow; bind alpn h2,http/1.1; verify optional, ca-file + crl-file, 403 unless verified; http-reuse always; server maxconn 1000 (native) / $cherrypy_threads with timeout queue 30s (CherryPy)" ;;
    apache) echo "event MPM, $apache_children, AsyncRequestWorkerFactor for $((max_clients + 100)) connections; $apache_h2; SSLVerifyClient optional, SSLCARevocationCheck chain, Require SSL_CLIENT_VERIFY == SUCCESS; ProxyPass pool ($apache_pool for CherryPy)" ;;
  esac
}

# --- one run ---------------------------------------------------------------------------------------
csv_header="frontend,scenario,keepalive,requests,concurrency,ok,failed,rps,p50_ms,p99_ms,cpu_s,req_per_cpu_s,rss_mib,backend,credential,outcome,errors,status,backend_conns_max,backend_conns_opened,elapsed_s,note,measure,protocol,streams,timeout_s,held,held_ok,rss_before_kib,rss_held_kib,kib_per_idle_conn,listen_overflows,workers"
echo "$csv_header" >"$csv"

# record: appends one run to results.jsonl and results.csv from the R_* variables and the
# load generator's JSON (R_LOAD_JSON, may be missing or empty; its stderr in R_LOAD_JSON.err).
# R_MEASURE=idle makes it an idle-memory row (R_RSS_BEFORE, R_RSS_HELD, the held counts from
# the load generator's JSON). An HTTP/2 row where every request failed with the load
# generator's ALPN error becomes outcome "unsupported", with R_H2_WHY as its note.
record() {
  R_JSONL=$jsonl R_CSV=$csv R_CLK_TCK=$clk_tck R_WORKERS=$workers "$PY" - <<'PYEOF'
import csv, json, os

e = os.environ
def num(name):
    v = e.get(name, "")
    try:
        return int(v)
    except ValueError:
        try:
            return float(v)
        except ValueError:
            return None

load = {}
path = e.get("R_LOAD_JSON", "")
if path and os.path.exists(path):
    try:
        with open(path) as f:
            text = f.read().strip()
        if text:
            load = json.loads(text.splitlines()[-1])
    except (OSError, ValueError):
        load = {}
stderr_text = ""
if path and os.path.exists(path + ".err"):
    try:
        with open(path + ".err", errors="replace") as f:
            stderr_text = f.read(4000)
    except OSError:
        pass
outcome = e.get("R_OUTCOME", "ran")
note = e.get("R_NOTE", "")
if outcome == "ran" and not load:
    outcome = "no-output"
requests = num("R_REQUESTS")
status = {str(k): int(v) for k, v in (load.get("status") or {}).items()}
ok = sum(v for k, v in status.items() if k.startswith("2"))
errors = {k: int(v) for k, v in (load.get("errors") or {}).items() if int(v)}
protocol = e.get("R_PROTOCOL", "http/1.1") or "http/1.1"
measure = e.get("R_MEASURE", "load") or "load"
# HTTP/2 that the frontend does not speak: its ALPN did not select h2, so the load generator
# failed every attempt with its ALPN error (or, without a summary, said ALPN on stderr). That
# is a capability, not a failure rate: the row says "unsupported" and why.
alpn = sum(v for k, v in errors.items() if "alpn" in k.lower())
if protocol == "h2" and ok == 0 and not status and outcome in ("ran", "load-error", "no-output"):
    if (alpn and alpn == sum(errors.values())) or (not load and "alpn" in stderr_text.lower()):
        outcome = "unsupported"
        why = e.get("R_H2_WHY", "") or "the server's ALPN did not select h2"
        detail = ("%d of %s attempts failed with the ALPN error" % (alpn, requests) if alpn
                  else "cmsfront-load: " + " ".join(stderr_text.split())[:160])
        note = "%s; %s" % (why, detail) if not note else "%s; %s; %s" % (why, detail, note)
elapsed = load.get("elapsed_s")
hz = int(e["R_CLK_TCK"])
before, after = num("R_TICKS_BEFORE"), num("R_TICKS_AFTER")
cpu_s = (after - before) / hz if before is not None and after is not None and after >= before else None
rss_kib = num("R_RSS_KIB")
o0, o1 = num("R_OVERFLOWS_BEFORE"), num("R_OVERFLOWS_AFTER")
overflows = o1 - o0 if o0 is not None and o1 is not None and o1 >= o0 else None
lat = load.get("latency_ms") or {}
held, held_ok = load.get("held"), load.get("held_ok")
rss_before, rss_held = num("R_RSS_BEFORE"), num("R_RSS_HELD")
# Per connection: the memory read while R_ESTABLISHED connections were open on the server
# side, divided by that count. It is held_ok (connections still open when their hold ended)
# whenever no connection was dropped while held; where some were (Apache closes idle
# keep-alive connections while all its workers are busy with handshakes), held_ok would
# divide memory read with more connections open by fewer.
per_conn = None
open_at_reading = num("R_ESTABLISHED") or held_ok
if measure == "idle" and open_at_reading and rss_before is not None and rss_held is not None:
    per_conn = round((rss_held - rss_before) / open_at_reading, 1)
idle = measure == "idle"
# An idle row's elapsed time is mostly the hold, an unsupported row measured nothing: no rate,
# no efficiency.
no_rate = idle or outcome == "unsupported"
row = {
    "frontend": e["R_FRONTEND"],
    "version": e.get("R_VERSION", ""),
    # Workers (threads or processes) the frontend had: WORKERS, the same for every row of a run.
    "workers": num("R_WORKERS") or 1,
    "scenario": e["R_SCENARIO"],
    "measure": measure,
    "backend": e["R_KIND"],
    "credential": e["R_CRED"],
    "keepalive": e["R_KA"] == "on",
    "protocol": protocol,
    "streams": num("R_STREAMS") or 1,
    "requests_nominal": num("R_NOMINAL"),
    "requests": requests,
    "concurrency": num("R_CONCURRENCY"),
    "completed": load.get("requests"),
    "ok": ok,
    "failed": (requests - ok) if requests is not None else None,
    "non_2xx": sum(v for k, v in status.items() if not k.startswith("2")),
    "errors": errors,
    "status": status,
    "elapsed_s": elapsed,
    "rps": None if no_rate else (round(ok / elapsed, 1) if elapsed else (0.0 if load else None)),
    "rps_all": None if no_rate else load.get("rps"),
    "p50_ms": lat.get("p50") if ok or status else None,
    "p99_ms": lat.get("p99") if ok or status else None,
    "handshakes": load.get("handshakes"),
    "cpu_s": round(cpu_s, 3) if cpu_s is not None else None,
    "req_per_cpu_s": None if no_rate else (round(ok / cpu_s) if cpu_s else None),
    "rss_mib": round(rss_kib / 1024, 1) if rss_kib else None,
    "backend_conns_max": num("R_BCONN_MAX"),
    "backend_conns_opened": num("R_BCONN_OPENED"),
    "timeout_s": num("R_TIMEOUT"),
    # Connections the kernel dropped at a full accept queue during the run (machine-wide
    # TcpExt ListenOverflows; each makes a client retry after 1, 3, 7 ... s).
    "listen_overflows": overflows,
    "outcome": outcome,
    "note": note,
    "started_utc": e.get("R_STARTED", ""),
    "wall_s": num("R_WALL"),
}
if idle:
    row.update({
        "held": held, "held_ok": held_ok,
        "hold_s": num("R_HOLD"),
        "ramp_s": num("R_RAMP"),
        "established_held": num("R_ESTABLISHED"),
        "rss_before_kib": rss_before, "rss_held_kib": rss_held,
        "kib_per_idle_conn": per_conn,
    })
with open(e["R_JSONL"], "a") as f:
    f.write(json.dumps(row, sort_keys=False) + "\n")
def cell(v):
    return "" if v is None else v
with open(e["R_CSV"], "a", newline="") as f:
    csv.writer(f).writerow([
        row["frontend"], row["scenario"], "on" if row["keepalive"] else "off", cell(row["requests"]),
        cell(row["concurrency"]), row["ok"], cell(row["failed"]), cell(row["rps"]),
        cell(row["p50_ms"]), cell(row["p99_ms"]), cell(row["cpu_s"]), cell(row["req_per_cpu_s"]),
        cell(row["rss_mib"]), row["backend"], row["credential"], row["outcome"],
        ";".join("%s=%d" % kv for kv in sorted(errors.items())),
        ";".join("%s=%d" % kv for kv in sorted(status.items())),
        cell(row["backend_conns_max"]), cell(row["backend_conns_opened"]), cell(elapsed),
        row["note"], measure, protocol, row["streams"], cell(row["timeout_s"]),
        cell(row.get("held")), cell(row.get("held_ok")), cell(row.get("rss_before_kib")),
        cell(row.get("rss_held_kib")), cell(row.get("kib_per_idle_conn")),
        cell(row["listen_overflows"]), row["workers"]])
if idle:
    print("%s %s: %s, %s of %s held, RSS %s -> %s KiB: %s KiB per idle connection" % (
        row["frontend"], row["scenario"], row["outcome"], held_ok, requests, rss_before,
        rss_held, per_conn))
else:
    print("%s %s: %s, %s ok of %s, %s req/s, %s CPU-s, %s req per CPU-s" % (
        row["frontend"], row["scenario"], row["outcome"], row["ok"], row["requests"], row["rps"],
        row["cpu_s"], row["req_per_cpu_s"]))
PYEOF
}

# record_with VAR=VALUE...: record with those R_* variables (taken from words, which the
# VAR=VALUE prefix of a command cannot be).
# shellcheck disable=SC2163  # the words are VAR=VALUE, exported as such
record_with() { (export "$@"; record) >&2; }

# record_not_run NAME INDEX OUTCOME NOTE: a row for a run that could not happen.
record_not_run() {
  local i=$2
  R_FRONTEND=$1 R_VERSION="${versions[$1]:-}" R_SCENARIO=${sc_id[$i]} R_KIND=${sc_kind[$i]} \
    R_CRED=${sc_cred[$i]} R_KA=${sc_ka[$i]} R_PROTOCOL=${sc_proto[$i]} \
    R_STREAMS=${sc_streams[$i]} R_NOMINAL=${sc_n[$i]} \
    R_REQUESTS=$(scheduled "${sc_n[$i]}" "${sc_c[$i]}") R_CONCURRENCY=${sc_c[$i]} \
    R_OUTCOME=$3 R_NOTE=$4 R_LOAD_JSON="" R_STARTED=$(date -u +%FT%TZ) record >&2
}

# timeout_for C: cmsfront-load's per-request timeout for C connections opened at once (see
# REQUEST_TIMEOUT at the top).
timeout_for() {
  local t=$(($1 / 150))
  ((t < request_timeout)) && t=$request_timeout
  echo "$t"
}

# cannot_run C: why C connections cannot be opened here (empty when they can): cmsfront-load
# needs a descriptor for each, plus a few.
cannot_run() {
  if (($1 + 200 > nofile)); then
    echo "needs $(($1 + 200)) open files for $1 connections; the limit here is $nofile (ulimit -Hn; raising it needs CAP_SYS_RESOURCE)"
  fi
}

# h2_why NAME: the note of an h2 row that found no HTTP/2. Said per frontend where the reason
# is known; the outcome itself is detected from the run (record).
h2_why() {
  case $1 in
    cmsfront) echo "cmsfront: HTTP/2 not implemented yet (ALPN offers http/1.1 only)" ;;
    apache)
      if [[ -f "$apache_modules/mod_http2.so" ]]; then
        echo "apache: ALPN did not select h2 (Protocols h2 http/1.1 is configured)"
      else
        echo "apache: no mod_http2 in $apache_modules"
      fi ;;
    *) echo "$1: ALPN did not select h2 (h2 is configured on its listener)" ;;
  esac
}

# run_scenario NAME INDEX
run_scenario() {
  local name=$1 i=$2 n c ka kind cred path url out_json before after rss rc=0 outcome=ran note=""
  n=$(scheduled "${sc_n[$i]}" "${sc_c[$i]}")
  c=${sc_c[$i]} ka=${sc_ka[$i]} kind=${sc_kind[$i]} cred=${sc_cred[$i]}
  local proto=${sc_proto[$i]} streams=${sc_streams[$i]} why timeout_s
  why=$(cannot_run "$c")
  if [[ -n "$why" ]]; then
    record_not_run "$name" "$i" cannot-run "$why"
    return 0
  fi
  if [[ "$proto" == h2 && "$load_h2" != 1 ]]; then
    record_not_run "$name" "$i" cannot-run "this cmsfront-load has no --h2/--streams (rebuild it: $load)"
    return 0
  fi
  timeout_s=$(timeout_for "$c")
  path=$(kind_path "$kind")
  url="https://127.0.0.1:$fe_port$path"
  local tag="${sc_id[$i]//[\/:]/_}"
  out_json=$out/logs/$name-$kind/load-$tag.json
  mkdir -p "$out/logs/$name-$kind"
  local args=(--json -n "$n" -c "$c" "${load_thread_args[@]}" --timeout "$timeout_s"
              --cert "$(credential_file "$cred")")
  [[ "$ka" == off ]] && args+=(--new-connection)
  [[ "$proto" == h2 ]] && args+=(--h2 --streams "$streams")
  [[ "$cred" == proxy ]] && note="RFC 3820 proxy (creds/proxy_rfc.pem)"
  if ((timeout_s != request_timeout)); then
    note="${note:+$note; }per-request timeout ${timeout_s}s for $c clients connecting at once"
  fi
  backend_reset
  local bstats_before bstats_after started t0
  bstats_before=$(backend_stats)
  started=$(date -u +%FT%TZ)
  t0=$SECONDS
  local overflows0 overflows1
  overflows0=$(listen_overflows)
  before=$(fe_ticks "$name")
  timeout -k 5 "$run_timeout" taskset -c "$client_cpu" "$load" "${args[@]}" "$url" \
    >"$out_json" 2>"$out_json.err" || rc=$?
  after=$(fe_ticks "$name")
  overflows1=$(listen_overflows)
  rss=$(fe_rss_kib "$name")
  bstats_after=$(backend_stats)
  if ((rc == 124 || rc == 137)); then
    outcome=timeout
    note="${note:+$note; }killed after RUN_TIMEOUT=${run_timeout}s"
  elif ! fe_alive; then
    outcome="frontend-died"
    note="${note:+$note; }the frontend exited during the run"
  elif ((rc != 0)); then
    outcome="load-error"
    note="${note:+$note; }cmsfront-load exit $rc: $(head -c 200 "$out_json.err" | tr '\n' ' ')"
  fi
  local bmax bopened b0
  read -r bmax bopened <<<"$bstats_after" || true
  read -r _ b0 <<<"$bstats_before" || true
  if [[ -z "$backend_control" && -n "${bopened:-}" && -n "${b0:-}" ]]; then
    bopened=$((bopened - b0))  # native: totals since start
  fi
  R_FRONTEND=$name R_VERSION="${versions[$name]:-}" R_SCENARIO=${sc_id[$i]} R_KIND=$kind R_CRED=$cred \
    R_KA=$ka R_PROTOCOL=$proto R_STREAMS=$streams R_H2_WHY="$(h2_why "$name")" \
    R_NOMINAL=${sc_n[$i]} R_REQUESTS=$n R_CONCURRENCY=$c R_OUTCOME=$outcome \
    R_NOTE=$note R_LOAD_JSON=$out_json R_TICKS_BEFORE=$before R_TICKS_AFTER=$after \
    R_RSS_KIB=$rss R_BCONN_MAX=${bmax:-} R_BCONN_OPENED=${bopened:-} R_STARTED=$started \
    R_TIMEOUT=$timeout_s R_OVERFLOWS_BEFORE=$overflows0 R_OVERFLOWS_AFTER=$overflows1 \
    R_WALL=$((SECONDS - t0)) record >&2
}

warm_up() {  # NAME KIND [TAG]: the output goes to logs/NAME-TAG/warmup.json
  local n=$((warmup / scale)) path
  ((n < 20)) && n=20
  path=$(kind_path "$2")
  mkdir -p "$out/logs/$1-${3:-$2}"
  timeout -k 5 "$run_timeout" taskset -c "$client_cpu" "$load" --json --new-connection -n "$n" \
    -c 10 "${load_thread_args[@]}" --timeout "$request_timeout" --cert "$(credential_file user)" \
    "https://127.0.0.1:$fe_port$path" >"$out/logs/$1-${3:-$2}/warmup.json" 2>&1 || true
}

# idle_measure NAME: memory per idle connection. A fresh NAME in front of a fresh native
# backend (fresh, so that neither the peak of earlier runs nor memory their connections left
# in the allocator hides the cost), a warm-up, then: the resident memory of its serving
# processes, K = IDLE_CONNECTIONS keep-alive TLS connections with the user certificate, each
# making one request and then held idle (cmsfront-load --hold S), the resident memory again
# while they are all open, and (held - before) / connections open. "All open" is read from the
# server side: the frontend's ESTABLISHED sockets (ss) are counted every half second with its
# memory, and the reading kept is the last one at the highest count; the divisor is that
# count, which is held_ok unless the frontend dropped connections while they were held (the
# row has both). The connections start over R seconds (--ramp; IDLE_RAMP, by default K / (0.8 x
# the warm-up's handshake rate): about as fast as the frontend takes them, so that the
# reading is of idle connections, not of a handshake backlog). Each connection holds S seconds
# after its own response, so S must outlast the opening of all K: without IDLE_HOLD, 1.5 x the
# opening time (R, or K / rate without a ramp) + 5 s, within [10, 55] s (the peers close idle
# keep-alive connections after 60 s).
idle_measure() {
  local name=$1 k=$idle_connections id="idle/$idle_connections" why
  local common=(R_FRONTEND="$name" R_VERSION="${versions[$name]:-}" R_SCENARIO="$id" R_MEASURE=idle
                R_KIND=native R_CRED=user R_KA=on R_PROTOCOL=http/1.1 R_STREAMS=1
                R_NOMINAL="$k" R_REQUESTS="$k" R_CONCURRENCY="$k")
  why=$(cannot_run "$k")
  [[ "$load_hold" == 1 ]] || why="this cmsfront-load has no --hold (rebuild it: $load)"
  if [[ -n "$why" ]]; then
    record_with "${common[@]}" R_OUTCOME=cannot-run R_NOTE="$why" R_STARTED="$(date -u +%FT%TZ)"
    return 0
  fi
  if ! start_kind_backend native; then
    stop_pid "$backend_pid"
    record_with "${common[@]}" R_OUTCOME=backend-down R_NOTE="the native backend did not start" \
      R_STARTED="$(date -u +%FT%TZ)"
    return 0
  fi
  if ! fe_start "$name" native idle; then
    fe_stop "$name" idle
    stop_pid "$backend_pid"
    record_with "${common[@]}" R_OUTCOME=did-not-start R_NOTE="$name did not start (see logs/$name-idle)" \
      R_STARTED="$(date -u +%FT%TZ)"
    return 0
  fi
  warm_up "$name" native idle
  local hold=$idle_hold ramp=$idle_ramp timeout_s rate opening
  timeout_s=$(timeout_for "$k")
  # The warm-up was a handshake per request: its rate is the frontend's handshake rate.
  rate=$("$PY" -c '
import json, sys
try:
    print(int(json.loads(open(sys.argv[1]).read().strip().splitlines()[-1]).get("rps") or 0))
except Exception:
    print(0)' "$out/logs/$name-idle/warmup.json")
  ((rate < 50)) && rate=50
  if [[ -z "$ramp" ]]; then
    ramp=0
    ((load_ramp)) && ramp=$(((5 * k + 4 * rate - 1) / (4 * rate)))  # K / (0.8 rate), rounded up
  fi
  ((load_ramp)) || ramp=0
  opening=$ramp
  ((opening < k / rate)) && opening=$((k / rate))
  if [[ -z "$hold" ]]; then
    hold=$((3 * opening / 2 + 5))
    ((hold < 10)) && hold=10
    ((hold > 55)) && hold=55
  fi
  local ramp_args=()
  ((ramp > 0)) && ramp_args=(--ramp "$ramp")
  sleep 1  # the warm-up's connections closed and freed
  local out_json=$out/logs/$name-idle/load-idle_$k.json started t0 before after rss0 rss est
  local best_est=0 best_rss="" max_rss=0 lpid rc=0 outcome=ran note=""
  started=$(date -u +%FT%TZ)
  t0=$SECONDS
  rss0=$(fe_rss_now_kib "$name")
  local overflows0 overflows1
  overflows0=$(listen_overflows)
  before=$(fe_ticks "$name")
  timeout -k 5 $((ramp + timeout_s + hold + 60)) taskset -c "$client_cpu" "$load" --json \
    -n "$k" -c "$k" "${load_thread_args[@]}" "${ramp_args[@]}" --hold "$hold" --timeout "$timeout_s" \
    --cert "$(credential_file user)" \
    "https://127.0.0.1:$fe_port$(kind_path native)" >"$out_json" 2>"$out_json.err" &
  lpid=$!
  pids+=("$lpid")
  while kill -0 "$lpid" 2>/dev/null; do
    est=$(established_on_port "$fe_port")
    rss=$(fe_rss_now_kib "$name")
    if ((est > 0 && est >= best_est)); then
      best_est=$est best_rss=$rss
    fi
    ((${rss:-0} > max_rss)) && max_rss=$rss
    sleep 0.5
  done
  wait "$lpid" || rc=$?
  stop "$lpid"
  after=$(fe_ticks "$name")
  overflows1=$(listen_overflows)
  local peak
  peak=$(fe_rss_kib "$name")
  if ((rc == 124 || rc == 137)); then
    outcome=timeout
    note="killed after $((ramp + timeout_s + hold + 60))s"
  elif ! fe_alive; then
    outcome="frontend-died"
    note="the frontend exited during the measurement"
  elif ((rc != 0)); then
    outcome="load-error"
    note="cmsfront-load exit $rc: $(head -c 200 "$out_json.err" | tr '\n' ' ')"
  fi
  if ((best_est == 0)); then
    # No server-side count (no ss): the highest reading, divided by held_ok.
    best_rss=$max_rss
    best_est=""
    note="${note:+$note; }no ESTABLISHED count (ss missing): the highest RSS reading / held_ok"
  fi
  note="${note:+$note; }opened over ${ramp}s, held ${hold}s each; at most ${best_est:-?} open at once on the server side"
  fe_stop "$name" idle
  stop_pid "$backend_pid"
  backend_pid=""
  record_with "${common[@]}" R_OUTCOME=$outcome R_NOTE="$note" R_LOAD_JSON="$out_json" \
    R_TICKS_BEFORE="$before" R_TICKS_AFTER="$after" R_RSS_KIB="$peak" R_RSS_BEFORE="$rss0" \
    R_RSS_HELD="$best_rss" R_ESTABLISHED="$best_est" R_HOLD="$hold" R_RAMP="$ramp" \
    R_TIMEOUT="$timeout_s" \
    R_OVERFLOWS_BEFORE="$overflows0" R_OVERFLOWS_AFTER="$overflows1" R_STARTED="$started" \
    R_WALL=$((SECONDS - t0))
}

# --- metadata -----------------------------------------------------------------------------------
declare -A versions=()
meta_args=()
for fe in "${frontends[@]}"; do
  if [[ -z "${unavailable[$fe]:-}" ]]; then
    versions[$fe]=$(fe_version "$fe" 2>/dev/null || true)
  fi
  meta_args+=("$fe" "${versions[$fe]:-}" "$(fe_settings "$fe")" "${unavailable[$fe]:-}")
done
M_STARTED=$(date -u +%FT%TZ) M_SCALE=$scale M_SCENARIOS="${sc_id[*]}" M_FCPU=$frontend_cpu \
  M_CCPU=$client_cpu M_FCPUS="${frontend_cpus[*]}" M_CCPUS="${client_cpus[*]}" M_WORKERS=$workers \
  M_LOAD_THREADS=$load_threads M_OVERLAP=$cpu_overlap M_APACHE_WORKERS=$apache_workers M_CAFILES=$ca_files M_CRL=$crl_entries M_IGTF=$use_igtf \
  M_CPT=$cherrypy_threads M_CPPATH=$cherrypy_path M_NPATH=$native_path M_WARMUP=$warmup \
  M_REVOKED=$revoked M_RUN_TIMEOUT=$run_timeout M_IDLE=$idle_connections M_IDLE_HOLD="$idle_hold" M_IDLE_RAMP="$idle_ramp" \
  M_NOFILE=$nofile M_REQ_TIMEOUT=$request_timeout \
  "$PY" - "$out/meta.json" "${meta_args[@]}" <<'PYEOF'
import json, os, sys
e = os.environ
cpu = ""
try:
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
except OSError:
    pass
with open("/proc/loadavg") as f:
    loadavg = f.read().split()[:3]
args = sys.argv[2:]
frontends = {}
order = []
for i in range(0, len(args), 4):
    name, version, settings, unavailable = args[i:i + 4]
    order.append(name)
    frontends[name] = {"version": version, "settings": settings, "unavailable": unavailable}
meta = {
    "started_utc": e["M_STARTED"], "host_cpu": cpu, "cpus": os.cpu_count(),
    "loadavg_before": loadavg, "scale": int(e["M_SCALE"]),
    "scenarios": e["M_SCENARIOS"].split(), "frontend_order": order, "frontends": frontends,
    "frontend_cpu": e["M_FCPU"], "client_cpu": e["M_CCPU"],
    # The CPU lists expanded, the workers each frontend had, and whether the two sets share a
    # CPU (with workers > 1 the report then warns: not per-core comparable).
    "frontend_cpus": [int(c) for c in e["M_FCPUS"].split()],
    "client_cpus": [int(c) for c in e["M_CCPUS"].split()],
    "workers": int(e["M_WORKERS"]),
    "load_threads": int(e["M_LOAD_THREADS"]),
    "cpu_overlap": e["M_OVERLAP"] == "1",
    "apache_threads_per_child": int(e["M_APACHE_WORKERS"]),
    "trust_store": {"ca_files": int(e["M_CAFILES"]), "client_ca_crl_entries": int(e["M_CRL"] or 0),
                    "revoked_count": int(e["M_REVOKED"]), "igtf": e["M_IGTF"] == "1"},
    "load_generator": "build/cmsfront-load, %s" % (
        "one thread" if e["M_LOAD_THREADS"] == "1" else "%s threads (-t)" % e["M_LOAD_THREADS"]),
    "cherrypy": {"threads": int(e["M_CPT"]), "path": e["M_CPPATH"]},
    "native_path": e["M_NPATH"], "warmup": int(e["M_WARMUP"]),
    "run_timeout_s": int(e["M_RUN_TIMEOUT"]),
    "request_timeout_s": int(e["M_REQ_TIMEOUT"]),
    "open_files": int(e["M_NOFILE"]),
    "idle_connections": int(e["M_IDLE"]),
    "idle_hold_s": int(e["M_IDLE_HOLD"]) if e["M_IDLE_HOLD"] else "auto",
    "idle_ramp_s": int(e["M_IDLE_RAMP"]) if e["M_IDLE_RAMP"] else "auto",
}
with open(sys.argv[1], "w") as f:
    json.dump(meta, f, indent=2)
PYEOF

# --- the runs -------------------------------------------------------------------------------------
say "frontends: ${frontends[*]}; ${#sc_id[@]} scenarios, SCALE $scale; frontend on CPU $frontend_cpu" \
    "with $workers worker(s), load generator ($load_threads thread(s)) and backends on CPU" \
    "$client_cpu; results in $out"
if ((workers > 1 && cpu_overlap)); then
  say "warning: FRONTEND_CPU ($frontend_cpu) and CLIENT_CPU ($client_cpu) overlap: with" \
      "WORKERS=$workers the load generator takes CPU from the frontend's cores, so the numbers" \
      "are not per-core comparable (the report says so)"
fi
for fe in "${frontends[@]}"; do
  if ((idle_connections > 0)); then
    if [[ -n "${unavailable[$fe]:-}" ]]; then
      record_with R_FRONTEND="$fe" R_SCENARIO="idle/$idle_connections" R_MEASURE=idle \
        R_KIND=native R_CRED=user R_KA=on R_NOMINAL="$idle_connections" \
        R_REQUESTS="$idle_connections" R_CONCURRENCY="$idle_connections" \
        R_OUTCOME=not-installed R_NOTE="${unavailable[$fe]}" R_STARTED="$(date -u +%FT%TZ)"
    elif ((SECONDS - suite_start > max_seconds)); then
      record_with R_FRONTEND="$fe" R_VERSION="${versions[$fe]:-}" R_SCENARIO="idle/$idle_connections" \
        R_MEASURE=idle R_KIND=native R_CRED=user R_KA=on R_NOMINAL="$idle_connections" \
        R_REQUESTS="$idle_connections" R_CONCURRENCY="$idle_connections" R_OUTCOME=skipped \
        R_NOTE="time budget: MAX_SECONDS=$max_seconds reached" R_STARTED="$(date -u +%FT%TZ)"
    else
      say "$fe: memory per idle connection ($idle_connections connections)"
      idle_measure "$fe"
    fi
  fi
  for kind in "${kinds[@]}"; do
    mine=()
    for ((i = 0; i < ${#sc_id[@]}; i++)); do
      [[ "${sc_kind[$i]}" == "$kind" ]] && mine+=("$i")
    done
    if [[ -n "${unavailable[$fe]:-}" ]]; then
      for i in "${mine[@]}"; do record_not_run "$fe" "$i" not-installed "${unavailable[$fe]}"; done
      continue
    fi
    if ((SECONDS - suite_start > max_seconds)); then
      for i in "${mine[@]}"; do
        record_not_run "$fe" "$i" skipped "time budget: MAX_SECONDS=$max_seconds reached"
      done
      continue
    fi
    if ! start_kind_backend "$kind"; then
      stop_pid "$backend_pid"
      for i in "${mine[@]}"; do record_not_run "$fe" "$i" backend-down "the $kind backend did not start"; done
      continue
    fi
    say "$fe in front of the $kind backend"
    if ! fe_start "$fe" "$kind"; then
      say "$fe did not start"
      fe_stop "$fe" "$kind"
      stop_pid "$backend_pid"
      for i in "${mine[@]}"; do record_not_run "$fe" "$i" did-not-start "$fe did not start (see logs/$fe-$kind)"; done
      continue
    fi
    mkdir -p "$out/logs/$fe-$kind"
    warm_up "$fe" "$kind"
    for i in "${mine[@]}"; do
      if ((SECONDS - suite_start > max_seconds)); then
        record_not_run "$fe" "$i" skipped "time budget: MAX_SECONDS=$max_seconds reached"
        continue
      fi
      if ! fe_alive; then
        say "$fe is not running: restarting it"
        fe_stop "$fe" "$kind"
        if ! fe_start "$fe" "$kind"; then
          record_not_run "$fe" "$i" frontend-down "$fe had exited and did not restart"
          continue
        fi
      fi
      run_scenario "$fe" "$i"
    done
    fe_stop "$fe" "$kind"
    stop_pid "$backend_pid"
    backend_pid=""
  done
done
suite_seconds=$((SECONDS - suite_start))
say "all runs done in ${suite_seconds}s; writing the report"
echo "$suite_seconds" >"$out/suite_seconds"

"$PY" "$repo/bench/report.py" "$out" >&2
if [[ -n "$results_copy" ]]; then
  # The copy links its plots where they can be committed (PLOTS_COPY, replaced every run)
  # rather than into the run directory, which git ignores.
  copy_args=(--output "$results_copy")
  [[ -n "$plots_copy" ]] && copy_args+=(--plots-dir "$plots_copy")
  "$PY" "$repo/bench/report.py" "$out" "${copy_args[@]}" >&2
  say "report copied to $results_copy${plots_copy:+, plots to $plots_copy}"
fi
cat "$out/report.md"
say "done in $((SECONDS - suite_start))s: $out"
