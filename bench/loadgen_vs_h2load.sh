#!/usr/bin/env bash
# Is cmsfront-load a fair load generator? Its requests/s against h2load's on the same server,
# same connections, no client certificate (h2load cannot present one), in one run.
#
#   bench/loadgen_vs_h2load.sh
#
# HTTP/1.1: cmsfront (one worker, CPU FRONTEND_CPU) in front of cmsfront-test-backend;
# `cmsfront-load -n N -c C` against `h2load --h1 -n N -c C`, keep-alive.
# HTTP/2: nghttpd (one thread) serving a small file, since cmsfront has no HTTP/2 yet;
# `cmsfront-load --h2 -n N -c C` against `h2load -n N -c C`.
# Each pair runs ROUNDS times, alternating, the client on CLIENT_CPU. A load generator that is
# itself the bottleneck shows up as a lower rate at the same server; the server CPU-seconds of
# every run are printed too, so a difference in the work asked of the server would show.
#
# Environment (defaults in brackets): N [50000], C [50], ROUNDS [3], FRONTEND_CPU [0],
# CLIENT_CPU [1], BUILD_DIR [build].
# Output: Markdown on stdout and in bench/results/loadgen_vs_h2load.md (overwritten).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$PWD
export PATH="/usr/sbin:/usr/bin:/sbin:/bin:$PATH"

requests=${N:-50000}
clients=${C:-50}
rounds=${ROUNDS:-3}
frontend_cpu=${FRONTEND_CPU:-0}
client_cpu=${CLIENT_CPU:-1}
build_dir=${BUILD_DIR:-$repo/build}
cmsfront=$build_dir/cmsfront
backend=$build_dir/cmsfront-test-backend
load=$build_dir/cmsfront-load
results_dir=$repo/bench/results
report=$results_dir/loadgen_vs_h2load.md
clk_tck=$(getconf CLK_TCK)

# shellcheck source=bench/lib.sh
source "$repo/bench/lib.sh"
bench_ensure_built "$cmsfront" "$backend" "$load"
bench_init loadgen_vs_h2load
pki=$work/pki
"$repo/tools/make-test-pki.sh" "$pki" >/dev/null

start_backend "$client_cpu"
port=$(free_port)
cat >"$work/cmsfront.toml" <<EOF
[server]
workers = 1
shutdown_timeout = "1s"

[[listener]]
address = "127.0.0.1:$port"
tls = "main"

[tls.main]
certificate = "$pki/server.pem"
key = "$pki/server.key"

[backend.b]
servers = ["http://127.0.0.1:$backend_port"]
max_connections = 64

[[route]]
path = "/"
backend = "b"
auth = "none"
EOF
taskset -c "$frontend_cpu" "$cmsfront" --config "$work/cmsfront.toml" >"$work/cmsfront.log" 2>&1 &
front_pid=$!
pids+=("$front_pid")

mkdir -p "$work/docroot"
printf 'ok\n' >"$work/docroot/index.html"
h2_port=$(free_port)
taskset -c "$frontend_cpu" nghttpd -n 1 -d "$work/docroot" "$h2_port" "$pki/server.key" \
  "$pki/server.pem" >"$work/nghttpd.log" 2>&1 &
h2_pid=$!
pids+=("$h2_pid")
for ((i = 0; i < 100; i++)); do
  if [[ "$(curl -sk -o /dev/null -w '%{http_code}' "https://127.0.0.1:$port/")" == 200 ]] &&
     [[ "$(curl -sk --http2 -o /dev/null -w '%{http_code}' "https://127.0.0.1:$h2_port/")" == 200 ]]; then
    break
  fi
  sleep 0.1
done

rows=()
measure() {  # PROTOCOL TOOL SERVER_PID URL
  local before after rps ok
  before=$(cpu_ticks "$3")
  if [[ "$2" == cmsfront-load ]]; then
    local args=(--json -n "$requests" -c "$clients")
    [[ "$1" == h2 ]] && args+=(--h2)
    read -r rps ok < <(taskset -c "$client_cpu" "$load" "${args[@]}" "$4" |
      /usr/bin/python3 -c 'import json, sys; s = json.load(sys.stdin)
print("%.0f" % s["rps"], s["status"].get("200", 0))')
  else
    local args=(-n "$requests" -c "$clients")
    [[ "$1" == http/1.1 ]] && args+=(--h1)
    local out
    out=$(taskset -c "$client_cpu" h2load "${args[@]}" "$4" 2>&1)
    rps=$(sed -n 's/^finished in [^,]*, \([0-9.]*\) req\/s.*/\1/p' <<<"$out")
    rps=${rps%.*}
    ok=$(sed -n 's/^requests: .* \([0-9]*\) succeeded.*/\1/p' <<<"$out")
  fi
  after=$(cpu_ticks "$3")
  log "$1 $2: $rps req/s, $ok ok"
  rows+=("$1|$2|${rps:-0}|${ok:-0}|$(awk -v t=$((after - before)) -v hz="$clk_tck" 'BEGIN {printf "%.2f", t / hz}')")
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for protocol in http/1.1 h2; do
  if [[ "$protocol" == h2 ]]; then pid=$h2_pid url="https://127.0.0.1:$h2_port/"
  else pid=$front_pid url="https://127.0.0.1:$port/"; fi
  # Warm-up, then the pairs.
  taskset -c "$client_cpu" h2load -n 2000 -c "$clients" ${protocol/http\/1.1/--h1} "$url" >/dev/null 2>&1 || true
  for ((round = 1; round <= rounds; round++)); do
    measure "$protocol" cmsfront-load "$pid" "$url"
    measure "$protocol" h2load "$pid" "$url"
  done
done

mkdir -p "$results_dir"
{
  echo "# cmsfront-load against h2load (keep-alive, no client certificate)"
  echo
  echo "Run $(date -u '+%Y-%m-%d %H:%M UTC') by \`bench/loadgen_vs_h2load.sh\` on $(nproc) CPUs" \
       "($(cpu_model)); load average before: $load_before."
  echo
  echo "- $requests requests over $clients connections per row, the two tools alternating," \
       "client on CPU $client_cpu; HTTP/1.1 against cmsfront (one worker, CPU $frontend_cpu)" \
       "and \`cmsfront-test-backend\`; h2 against \`nghttpd -n 1\` (CPU $frontend_cpu) serving a 3-byte file"
  echo
  echo "| protocol | tool | requests/s | 200 | server CPU-s |"
  echo "|---|---|---:|---:|---:|"
  for row in "${rows[@]}"; do
    echo "| ${row//|/ | } |"
  done
  echo
  printf '%s\n' "${rows[@]}" | awk -F'|' '
    {v[$1 "|" $2, ++n[$1 "|" $2]] = $3; protos[$1] = 1}
    function median(key,   k, i, j, a, t) {
      k = n[key]; for (i = 1; i <= k; i++) a[i] = v[key, i]
      for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (a[j] < a[i]) {t = a[i]; a[i] = a[j]; a[j] = t}
      return k % 2 ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2
    }
    END {
      for (p in protos) {
        a = median(p "|cmsfront-load"); b = median(p "|h2load")
        if (b > 0) printf "- %s: median cmsfront-load %.0f req/s, h2load %.0f req/s: ratio **%.2f**\n", p, a, b, a / b
      }
    }'
} >"$work/report.md"
cp "$work/report.md" "$report"
cat "$report"
