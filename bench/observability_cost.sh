#!/usr/bin/env bash
# What metrics and the access log cost: cmsfront's keep-alive requests per CPU-second with
# both off, then with both on, in one run.
#
#   bench/observability_cost.sh
#
# Keep-alive HTTPS (no client certificate): h2load -> cmsfront -> cmsfront-test-backend, as in
# compare_nginx.sh. cmsfront runs twice on CPU 0 with a fresh backend each time: first without
# [metrics] and [access_log], then with both ([metrics] scraped once a second during the run,
# the access log written to a file in the cmsweb format). The number to read is requests per
# CPU-second of cmsfront (all its threads, the access-log writer and the metrics exporter
# included), and the ratio between the two runs.
#
# Environment (defaults in brackets): N [100000] requests, C [100] connections, WARMUP [2000],
# FORMAT [cmsweb] (access log format), FRONTEND_CPU [0], CLIENT_CPU [1], BUILD_DIR [build].
# Output: Markdown on stdout and in bench/results/observability_cost.md (overwritten).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$PWD
export PATH="/usr/sbin:/usr/bin:/sbin:/bin:$PATH"

requests=${N:-100000}
clients=${C:-100}
warmup=${WARMUP:-2000}
format=${FORMAT:-cmsweb}
frontend_cpu=${FRONTEND_CPU:-0}
client_cpu=${CLIENT_CPU:-1}
build_dir=${BUILD_DIR:-$repo/build}
cmsfront=$build_dir/cmsfront
backend=$build_dir/cmsfront-test-backend
results_dir=$repo/bench/results
report=$results_dir/observability_cost.md
clk_tck=$(getconf CLK_TCK)

# shellcheck source=bench/lib.sh
source "$repo/bench/lib.sh"
bench_ensure_built "$cmsfront" "$backend"
bench_init observability_cost
"$repo/tools/make-test-pki.sh" "$work/pki" >/dev/null

write_config() {  # PORT BACKEND_PORT WITH_OBSERVABILITY METRICS_PORT
  {
    cat <<EOF
[server]
workers = 1
shutdown_timeout = "1s"

[[listener]]
address = "127.0.0.1:$1"
tls = "main"

[tls.main]
certificate = "$work/pki/server.pem"
key = "$work/pki/server.key"

[backend.b]
servers = ["http://127.0.0.1:$2"]
max_connections = 64

[[route]]
name = "all"
path = "/"
backend = "b"
auth = "none"
EOF
    if (($3)); then
      cat <<EOF

[metrics]
address = "127.0.0.1:$4"

[access_log]
path = "$work/access.log"
format = "$format"
EOF
    fi
  } >"$work/cmsfront.toml"
}

rows=()
run() {  # NAME WITH_OBSERVABILITY
  local port metrics_port pid before after ticks out=$work/h2load-$1.txt scraper=""
  start_backend "$client_cpu"
  port=$(free_port)
  metrics_port=$(free_port)
  rm -f "$work/access.log"
  write_config "$port" "$backend_port" "$2" "$metrics_port"
  taskset -c "$frontend_cpu" "$cmsfront" --config "$work/cmsfront.toml" >"$work/$1.log" 2>&1 &
  pid=$!
  pids+=("$pid")
  local i
  for ((i = 0; i < 100; i++)); do
    [[ "$(curl -sk -o /dev/null -w '%{http_code}' "https://127.0.0.1:$port/")" == 200 ]] && break
    sleep 0.1
  done
  taskset -c "$client_cpu" h2load --h1 -n "$warmup" -c "$clients" "https://127.0.0.1:$port/" \
    >/dev/null 2>&1 || true
  if (($2)); then  # a scrape a second, as Prometheus would
    (while sleep 1; do curl -s -o /dev/null "http://127.0.0.1:$metrics_port/metrics"; done) &
    scraper=$!
    pids+=("$scraper")
  fi
  before=$(cpu_ticks "$pid")
  taskset -c "$client_cpu" h2load --h1 -n "$requests" -c "$clients" \
    "https://127.0.0.1:$port/" >"$out" 2>&1 || true
  after=$(cpu_ticks "$pid")
  [[ -n "$scraper" ]] && stop "$scraper"
  ticks=$((after - before))
  local succeeded rps per_cpu lines
  succeeded=$(sed -n 's/^requests: .* \([0-9]*\) succeeded.*/\1/p' "$out")
  rps=$(sed -n 's/^finished in [^,]*, \([0-9.]*\) req\/s.*/\1/p' "$out")
  per_cpu=$(awk -v n="${succeeded:-0}" -v t="$ticks" -v hz="$clk_tck" \
            'BEGIN {if (t > 0) printf "%.0f", n * hz / t; else print 0}')
  stop "$pid"
  stop "$backend_pid"
  lines="-"
  if (($2)); then lines=$(wc -l <"$work/access.log"); fi
  log "$1: ${succeeded:-0} ok, ${rps:-0} req/s, $per_cpu req per CPU-s, access log lines: $lines"
  rows+=("$1|${rps:-0}|${succeeded:-0}|$(awk -v t="$ticks" -v hz="$clk_tck" 'BEGIN {printf "%.2f", t / hz}')|$per_cpu|$lines")
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
run "metrics and access log off" 0
run "metrics and access log on" 1

mkdir -p "$results_dir"
{
  echo "# What metrics and the access log cost cmsfront (keep-alive HTTPS, one core)"
  echo
  echo "Run $(date -u '+%Y-%m-%d %H:%M UTC') by \`bench/observability_cost.sh\` on $(nproc) CPUs" \
       "($(cpu_model)); load average before: $load_before."
  echo
  echo "- load: \`h2load --h1 -n $requests -c $clients\` after $warmup warm-up requests; cmsfront" \
       "workers = 1 on CPU $frontend_cpu, h2load and \`cmsfront-test-backend --threads 1\` on CPU $client_cpu"
  echo "- \"on\": \`[metrics]\` scraped once a second during the run, \`[access_log]\` format $format" \
       "to a file; CPU time is the whole cmsfront process (workers, log writer, exporter)"
  echo
  echo "| cmsfront | requests/s | succeeded | CPU-s | requests per CPU-s | access log lines |"
  echo "|---|---:|---:|---:|---:|---:|"
  for row in "${rows[@]}"; do
    echo "| ${row//|/ | } |"
  done
  echo
  printf '%s\n' "${rows[@]}" | awk -F'|' 'NR == 1 {off = $5} NR == 2 {on = $5}
    END {if (off > 0) printf "Requests per CPU-second, on / off: **%.2f**.\n", on / off}'
} >"$work/report.md"
cp "$work/report.md" "$report"
cat "$report"
