#!/usr/bin/env bash
# cmsfront vs nginx as TLS reverse proxies in front of the same backend, side by side.
#
#   bench/compare_nginx.sh
#
# Keep-alive HTTPS on one machine: h2load (the client) -> frontend -> cmsfront-test-backend.
# Each frontend gets CPU 0 to itself; the backend and h2load share CPU 1 (the development
# machines have two cores). The frontends run one at a time, each with a fresh backend.
# Measured per frontend: requests/s as h2load saw it, requests that did not succeed, and the
# frontend's own CPU time (utime + stime from /proc/PID/stat, all its threads) over the
# measured run, hence requests per CPU-second: the frontend's efficiency, which depends far
# less than requests/s on what else the machine is doing.
#
# Environment (defaults in brackets):
#   N [100000]      requests in the measured run
#   C [100]         concurrent keep-alive client connections
#   WARMUP [2000]   requests sent first and not measured (TLS handshakes, backend pool)
#   FRONTEND_CPU [0], CLIENT_CPU [1]   CPUs for taskset
#   NGINX_KEEPALIVE [64]   nginx's upstream keepalive (idle connections it keeps; unlike
#                   cmsfront's max_connections it is no cap: above it nginx opens and closes
#                   backend connections as the load needs)
#   BUILD_DIR [build]   where cmsfront and cmsfront-test-backend were built
# Output: a Markdown report on stdout and in bench/results/compare_nginx.md (overwritten);
# progress and h2load's summaries on stderr. Everything listens on 127.0.0.1 on free ports;
# whatever the script starts is stopped when it exits.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$PWD
export PATH="/usr/sbin:/usr/bin:/sbin:/bin:$PATH"

requests=${N:-100000}
clients=${C:-100}
nginx_keepalive=${NGINX_KEEPALIVE:-64}
warmup=${WARMUP:-2000}
frontend_cpu=${FRONTEND_CPU:-0}
client_cpu=${CLIENT_CPU:-1}
build_dir=${BUILD_DIR:-$repo/build}
cmsfront=$build_dir/cmsfront
backend=$build_dir/cmsfront-test-backend
nginx=/usr/sbin/nginx
results_dir=$repo/bench/results
report=$results_dir/compare_nginx.md
clk_tck=$(getconf CLK_TCK)

# Everything it needs comes from Debian packages and this tree: install and build what is
# missing, so the script also works on a fresh machine.
tools/install-deps.sh
if [[ ! -x /usr/sbin/nginx ]]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx-light >/dev/null
fi
if [[ ! -x "$cmsfront" || ! -x "$backend" ]] && [[ -z "${BUILD_DIR:-}" ]]; then
  tools/build.sh --release
fi

for tool in "$cmsfront" "$backend" "$nginx" "$(command -v h2load || true)" \
            "$(command -v taskset || true)" "$(command -v curl || true)"; do
  if [[ -z "$tool" || ! -x "$tool" ]]; then
    echo "compare_nginx.sh: missing ${tool:-h2load, taskset or curl} (build first: ninja -C build)" >&2
    exit 1
  fi
done

# shellcheck source=bench/lib.sh
source "$repo/bench/lib.sh"
bench_init compare_nginx

# wait_https PORT PID: until the frontend answers 200 through to the backend.
wait_https() {
  local port=$1 pid=$2 i
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || return 1
    if [[ "$(curl -s -o /dev/null -w '%{http_code}' --cacert "$work/pki/ca.pem" \
             "https://127.0.0.1:$port/")" == 200 ]]; then
      return 0
    fi
    sleep 0.1
  done
  return 1
}

write_cmsfront_config() {  # PORT BACKEND_PORT
  cat >"$work/cmsfront.toml" <<EOF
[server]
workers = 1
shutdown_timeout = "1s"

[[listener]]
address = "127.0.0.1:$1"
tls = "main"

[tls.main]
certificate = "$work/pki/server.pem"
key = "$work/pki/server.key"
protocols = ["TLSv1.2", "TLSv1.3"]

[limits]
idle_timeout = "75s"

[backend.b]
servers = ["http://127.0.0.1:$2"]
max_connections = 64

[[route]]
path = "/"
backend = "b"
auth = "none"
EOF
}

write_nginx_config() {  # PORT BACKEND_PORT
  local dir=$work/nginx
  mkdir -p "$dir/temp"
  # keepalive_requests raised so neither side closes connections mid-run (1000 by default,
  # which N=100000 over C=100 would hit exactly).
  {
    nginx_prelude "$dir"
    cat <<EOF
  keepalive_requests 1000000;
  upstream b {
    server 127.0.0.1:$2;
    keepalive $nginx_keepalive;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:$1 ssl;
    ssl_certificate $work/pki/server.pem;
    ssl_certificate_key $work/pki/server.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    location / {
      proxy_pass http://b;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For \$remote_addr;
    }
  }
}
EOF
  } >"$dir/nginx.conf"
}

# h2load_run OUTFILE COUNT PORT: the load, on the client CPU.
h2load_run() {
  taskset -c "$client_cpu" h2load --h1 -n "$2" -c "$3" "https://127.0.0.1:$4/" >"$1" 2>&1 || true
}

# measure NAME PID PORT: warm-up, then the measured run; appends a row to rows[].
rows=()
measure() {
  local name=$1 pid=$2 port=$3 out=$work/h2load-$1.txt before after ticks
  h2load_run "$work/warmup-$name.txt" "$warmup" "$clients" "$port"
  before=$(cpu_ticks "$pid")
  h2load_run "$out" "$requests" "$clients" "$port"
  after=$(cpu_ticks "$pid")
  ticks=$((after - before))
  grep -E '^(finished in|requests:|status codes:)' "$out" | sed "s/^/  $name: /" >&2
  local rps succeeded non2xx stats
  rps=$(sed -n 's/^finished in [^,]*, \([0-9.]*\) req\/s.*/\1/p' "$out")
  succeeded=$(sed -n 's/^requests: .* \([0-9]*\) succeeded.*/\1/p' "$out")
  non2xx=$(awk '/^status codes:/ {print $5 + $7 + $9}' "$out")
  stats=$(curl -s "http://127.0.0.1:$backend_port/__stats")
  if ! kill -0 "$pid" 2>/dev/null; then
    log "$name died during the run"
    rows+=("$name|${rps:-0}|${succeeded:-0}|$((requests - ${succeeded:-0}))|${non2xx:-?}|?|0|?|?")
    return
  fi
  local cpu_s per_cpu rss conns_max conns_total
  cpu_s=$(awk -v t="$ticks" -v hz="$clk_tck" 'BEGIN {printf "%.2f", t / hz}')
  per_cpu=$(awk -v n="${succeeded:-0}" -v t="$ticks" -v hz="$clk_tck" \
            'BEGIN {if (t > 0) printf "%.0f", n * hz / t; else print 0}')
  rss=$(awk -v k="$(rss_peak_kib "$pid")" 'BEGIN {printf "%.1f", k / 1024}')
  conns_max=$(sed -n 's/.*"connections_max":\([0-9]*\).*/\1/p' <<<"$stats")
  conns_total=$(sed -n 's/.*"connections_total":\([0-9]*\).*/\1/p' <<<"$stats")
  conns_total=$((${conns_total:-1} - 1))  # not the connection that read the counters
  rows+=("$name|${rps:-0}|${succeeded:-0}|$((requests - ${succeeded:-0}))|${non2xx:-?}|$cpu_s|$per_cpu|$rss|$conns_max / $conns_total")
}

run_cmsfront() {
  local port pid
  start_backend "$client_cpu"
  port=$(free_port)
  write_cmsfront_config "$port" "$backend_port"
  taskset -c "$frontend_cpu" "$cmsfront" --config "$work/cmsfront.toml" \
    >"$work/cmsfront.log" 2>&1 &
  pid=$!
  pids+=("$pid")
  if ! wait_https "$port" "$pid"; then
    log "cmsfront did not come up:"
    tail -20 "$work/cmsfront.log" >&2
    exit 1
  fi
  log "cmsfront (pid $pid) on 127.0.0.1:$port, backend on 127.0.0.1:$backend_port"
  measure cmsfront "$pid" "$port"
  stop "$pid"
  stop "$backend_pid"
  # Anything above info level in its log is worth a look.
  cmsfront_notes=$(grep -ciE 'warn|error' "$work/cmsfront.log" || true)
  if ((cmsfront_notes > 0)); then
    log "cmsfront logged $cmsfront_notes warning/error lines; the first ones:"
    grep -iE 'warn|error' "$work/cmsfront.log" | head -5 >&2
  fi
}

run_nginx() {
  local port pid
  start_backend "$client_cpu"
  port=$(free_port)
  write_nginx_config "$port" "$backend_port"
  taskset -c "$frontend_cpu" "$nginx" -p "$work/nginx" -c "$work/nginx/nginx.conf" \
    -g 'daemon off;' >"$work/nginx.out" 2>&1 &
  pid=$!
  pids+=("$pid")
  if ! wait_https "$port" "$pid"; then
    log "nginx did not come up:"
    cat "$work/nginx.out" "$work/nginx/error.log" 2>/dev/null | tail -20 >&2
    exit 1
  fi
  log "nginx (pid $pid) on 127.0.0.1:$port, backend on 127.0.0.1:$backend_port"
  measure nginx "$pid" "$port"
  stop "$pid"
  stop "$backend_pid"
}

log "building a test PKI"
"$repo/tools/make-test-pki.sh" "$work/pki" >/dev/null
cmsfront_notes=0
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
run_cmsfront
run_nginx

# ratio FIELD: cmsfront's value over nginx's, for columns 2 (req/s) and 7 (req per CPU-s).
ratio() {
  awk -F'|' -v f="$1" 'NR == 1 {a = $f} NR == 2 {b = $f}
    END {if (b + 0 > 0) printf "%.2f", a / b; else print "n/a"}' < <(printf '%s\n' "${rows[@]}")
}

mkdir -p "$results_dir"
{
  echo "# cmsfront vs nginx: keep-alive HTTPS reverse proxy, one core each"
  echo
  echo "Run $(date -u '+%Y-%m-%d %H:%M UTC') by \`bench/compare_nginx.sh\` on $(nproc) CPUs" \
       "($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1))."
  echo
  echo "- load: \`h2load --h1 -n $requests -c $clients https://127.0.0.1:PORT/\`" \
       "after $warmup warm-up requests; TLS with an ECDSA P-256 certificate, no client certificate"
  echo "- frontend pinned to CPU $frontend_cpu; h2load and the backend" \
       "(\`cmsfront-test-backend --threads 1\`, answers \`ok\\n\`) share CPU $client_cpu"
  echo "- $("$cmsfront" --version 2>&1 | head -1 | tr -d '\n'): workers = 1," \
       "backend max_connections = 64"
  echo "- $("$nginx" -v 2>&1 | sed 's/^nginx version: //'): worker_processes 1," \
       "master_process off, access_log off, upstream keepalive $nginx_keepalive, proxy_http_version 1.1"
  echo "- load average before the run: $load_before (other work on the machine skews req/s more" \
       "than req per CPU-s)"
  echo
  echo "| frontend | requests/s | succeeded | failed | non-2xx | frontend CPU-s | requests per CPU-s | peak RSS MiB | backend conns: peak open¹ / opened |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
  for row in "${rows[@]}"; do
    echo "| ${row//|/ | } |"
  done
  echo
  echo "cmsfront / nginx: requests/s **$(ratio 2)**, requests per CPU-second **$(ratio 7)**."
  echo
  echo "¹ the backend's own count, over its whole life (warm-up, readiness probes and the" \
       "connection that reads the counters included, so it may be one too high)."
  if ((cmsfront_notes > 0)); then
    echo
    echo "cmsfront logged $cmsfront_notes warning or error lines during the run."
  fi
} >"$work/report.md"
cp "$work/report.md" "$report"
cat "$report"
