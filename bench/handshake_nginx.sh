#!/usr/bin/env bash
# cmsfront vs nginx: a full TLS handshake with a grid client certificate for every request.
#
#   bench/handshake_nginx.sh
#
# What the grid workload costs a frontend: every request opens a new TLS connection and
# presents a client certificate (ECDSA P-256), which the frontend verifies against a trust
# store of the real IGTF bundle (Debian's igtf-policy-classic) plus the test CAs, one of them
# with a 20,000-entry CRL, before forwarding the request to a backend. The load comes from
# tools/load (cmsfront-load --new-connection: h2load and wrk cannot present certificates).
#
# Each frontend gets CPU 0 to itself; the load generator and the backend share CPU 1. Measured
# per frontend: requests/s, requests that did not get a 200, the frontend's own CPU time
# (/proc/PID/stat, all threads) over the measured run, hence requests per CPU-second.
# cmsfront runs twice: with its verification cache (the default: a returning client's chain
# is verified once) and with verification_cache_size = 0 (every handshake walks the chain and
# the 20,000-entry CRL, as nginx does).
#
# Environment (defaults in brackets):
#   N [5000]     requests (= TLS handshakes) in the measured run
#   C [200]      concurrent connections
#   WARMUP [500] requests before the measured run
#   REVOKED [20000]  entries in the test CA's CRL
#   FRONTEND_CPU [0], CLIENT_CPU [1]   CPUs for taskset
#   BUILD_DIR [build]   where cmsfront, cmsfront-test-backend and cmsfront-load were built
# Output: a Markdown report on stdout and in bench/results/handshake_nginx.md (overwritten).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$PWD
export PATH="/usr/sbin:/usr/bin:/sbin:/bin:$PATH"

requests=${N:-5000}
clients=${C:-200}
warmup=${WARMUP:-500}
revoked=${REVOKED:-20000}
frontend_cpu=${FRONTEND_CPU:-0}
client_cpu=${CLIENT_CPU:-1}
build_dir=${BUILD_DIR:-$repo/build}
cmsfront=$build_dir/cmsfront
backend=$build_dir/cmsfront-test-backend
load=$build_dir/cmsfront-load
nginx=/usr/sbin/nginx
igtf=/etc/grid-security/certificates
results_dir=$repo/bench/results
report=$results_dir/handshake_nginx.md
clk_tck=$(getconf CLK_TCK)

tools/install-deps.sh
if [[ ! -x /usr/sbin/nginx ]]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx-light >/dev/null
fi
if [[ ! -x "$cmsfront" || ! -x "$backend" || ! -x "$load" ]] && [[ -z "${BUILD_DIR:-}" ]]; then
  tools/build.sh --release
fi
for tool in "$cmsfront" "$backend" "$load" "$nginx" "$(command -v taskset || true)"; do
  if [[ -z "$tool" || ! -x "$tool" ]]; then
    echo "handshake_nginx.sh: missing ${tool:-taskset} (build first: tools/build.sh)" >&2
    exit 1
  fi
done
if [[ ! -d "$igtf" ]]; then
  echo "handshake_nginx.sh: $igtf missing (apt-get install igtf-policy-classic)" >&2
  exit 1
fi

# shellcheck source=bench/lib.sh
source "$repo/bench/lib.sh"
bench_init handshake_nginx

# --- the trust store: IGTF + the grid test CAs (one CRL with $revoked entries) ----------------
log "making grid fixtures with a $revoked-entry CRL"
/usr/bin/python3 tests/pki/make_grid_fixtures.py "$work/grid" --revoked-count "$revoked" >/dev/null
grid=$work/grid
ca_dir=$work/ca_dir
mkdir -p "$ca_dir"
cp -P "$igtf"/* "$ca_dir"/
cp -P "$grid/ca_dir"/* "$ca_dir"/
credential=$grid/creds/user_ecdsa.pem
write_identity "$work" "$credential"
# nginx reads one PEM bundle of CAs and one of CRLs.
cat "$ca_dir"/*.[0-9] >"$work/ca-bundle.pem" 2>/dev/null
cat "$ca_dir"/*.r[0-9] >"$work/crl-bundle.pem"
ca_files=$(find "$ca_dir" -maxdepth 1 -regextype posix-extended -regex '.*/[0-9a-f]{8}\.[0-9]+' | wc -l)
crl_entries=$(openssl crl -in "$grid/cas/root/crl.pem" -noout -text | grep -c 'Serial Number:' || true)
log "trust store: $ca_files CA files, CRL of the client's CA: $crl_entries entries"

wait_ready() {  # PORT PID: until the frontend answers 200 to the client certificate
  local port=$1 pid=$2 i
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || return 1
    if [[ "$(curl -sk -o /dev/null -w '%{http_code}' --cert "$credential" \
             "https://127.0.0.1:$port/")" == 200 ]]; then
      return 0
    fi
    sleep 0.1
  done
  return 1
}

write_cmsfront_config() {  # PORT BACKEND_PORT CACHE_SIZE
  cat >"$work/cmsfront.toml" <<EOF
[server]
workers = 1
shutdown_timeout = "1s"

[[listener]]
address = "127.0.0.1:$1"
tls = "main"

[tls.main]
certificate = "$grid/server.pem"
key = "$grid/server.key"
client_certificates = "request"
ca_dir = "$ca_dir"
crl = "require"
verification_cache_size = $3

[backend.b]
servers = ["http://127.0.0.1:$2"]
max_connections = 64

[auth]
hmac_key = "$work/hmac.key"
user_map = "$work/usermap.json"

[[route]]
path = "/"
backend = "b"
auth = "cert"
EOF
}

write_nginx_config() {  # PORT BACKEND_PORT
  local dir=$work/nginx
  mkdir -p "$dir/temp"
  {
    nginx_prelude "$dir"
    cat <<EOF
  upstream b {
    server 127.0.0.1:$2;
    keepalive 64;
  }
  server {
    listen 127.0.0.1:$1 ssl;
    ssl_certificate $grid/server.pem;
    ssl_certificate_key $grid/server.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    # nginx 1.22 needs ssl_client_certificate for ssl_verify_client, and then names every CA
    # of the bundle in its certificate request.
    ssl_verify_client optional;
    ssl_client_certificate $work/ca-bundle.pem;
    ssl_crl $work/crl-bundle.pem;
    ssl_verify_depth 10;
    location / {
      if (\$ssl_client_verify != SUCCESS) { return 403; }
      proxy_pass http://b;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
EOF
  } >"$dir/nginx.conf"
}

# load_run OUTFILE COUNT PORT
load_run() {
  taskset -c "$client_cpu" "$load" --json --new-connection -n "$2" -c "$clients" \
    --cert "$credential" "https://127.0.0.1:$3/" >"$1" 2>"$1.err" || true
}

json_field() {  # FILE EXPRESSION (Python, on the parsed object `j`)
  /usr/bin/python3 -c 'import json, sys; j = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"
}

rows=()
measure() {  # NAME PID PORT
  local name=$1 pid=$2 port=$3 out=$work/load-$1.json before after ticks
  load_run "$work/warmup-$name.json" "$warmup" "$port"
  before=$(cpu_ticks "$pid")
  load_run "$out" "$requests" "$port"
  after=$(cpu_ticks "$pid")
  ticks=$((after - before))
  local rps ok failed cpu_s per_cpu rss p99
  rps=$(json_field "$out" 'round(j["rps"])')
  ok=$(json_field "$out" 'j["status"].get("200", 0)')
  failed=$((requests - ok))
  p99=$(json_field "$out" 'j["latency_ms"]["p99"]')
  cpu_s=$(awk -v t="$ticks" -v hz="$clk_tck" 'BEGIN {printf "%.2f", t / hz}')
  per_cpu=$(awk -v n="$ok" -v t="$ticks" -v hz="$clk_tck" \
            'BEGIN {if (t > 0) printf "%.0f", n * hz / t; else print 0}')
  rss=$(awk -v k="$(rss_peak_kib "$pid")" 'BEGIN {printf "%.1f", k / 1024}')
  log "$name: $ok x 200, $failed not 200, $rps req/s, $cpu_s CPU-s, $per_cpu req per CPU-s"
  rows+=("$name|$rps|$ok|$failed|$p99|$cpu_s|$per_cpu|$rss")
}

run_cmsfront() {  # NAME CACHE_SIZE
  local port pid
  start_backend "$client_cpu"
  port=$(free_port)
  write_cmsfront_config "$port" "$backend_port" "$2"
  taskset -c "$frontend_cpu" "$cmsfront" --config "$work/cmsfront.toml" >"$work/$1.log" 2>&1 &
  pid=$!
  pids+=("$pid")
  if ! wait_ready "$port" "$pid"; then
    log "cmsfront did not come up:"
    tail -20 "$work/$1.log" >&2
    exit 1
  fi
  sed -n 's/.*\(trust store loaded: .*\)/\1/p' "$work/$1.log" | head -1 | sed "s/^/$bench_name: $1: /" >&2
  measure "$1" "$pid" "$port"
  stop "$pid"
  stop "$backend_pid"
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
  if ! wait_ready "$port" "$pid"; then
    log "nginx did not come up:"
    cat "$work/nginx.out" "$work/nginx/error.log" 2>/dev/null | tail -20 >&2
    exit 1
  fi
  measure nginx "$pid" "$port"
  stop "$pid"
  stop "$backend_pid"
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
run_cmsfront cmsfront 20000
run_cmsfront "cmsfront (no verification cache)" 0
run_nginx

# ratio ROW FIELD: row ROW's value over nginx's (the last row), for a numeric column.
ratio() {
  printf '%s\n' "${rows[@]}" | awk -F'|' -v r="$1" -v f="$2" \
    '{v[NR] = $f} END {if (v[NR] + 0 > 0) printf "%.2f", v[r] / v[NR]; else print "n/a"}'
}

mkdir -p "$results_dir"
{
  echo "# cmsfront vs nginx: a TLS handshake with a client certificate per request, one core each"
  echo
  echo "Run $(date -u '+%Y-%m-%d %H:%M UTC') by \`bench/handshake_nginx.sh\` on $(nproc) CPUs" \
       "($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1))."
  echo
  echo "- load: \`cmsfront-load --new-connection -n $requests -c $clients\` after $warmup warm-up" \
       "requests; every request is a new TCP + TLS connection (no resumption) presenting an" \
       "ECDSA P-256 client certificate; the route requires it (cmsfront \`auth = \"cert\"\`," \
       "nginx \`ssl_verify_client optional\` + 403 unless SUCCESS)"
  echo "- trust store: $ca_files CA files (Debian's IGTF bundle + the grid test CAs), CRLs enforced" \
       "for every CA of the chain; the client's CA has a CRL of $crl_entries entries"
  echo "- frontend pinned to CPU $frontend_cpu; load generator and backend" \
       "(\`cmsfront-test-backend --threads 1\`) share CPU $client_cpu"
  echo "- $("$cmsfront" --version 2>&1 | head -1 | tr -d '\n'), workers = 1;" \
       "$("$nginx" -v 2>&1 | sed 's/^nginx version: //'), worker_processes 1, master_process off"
  echo "- load average before the run: $load_before"
  echo
  echo "| frontend | requests/s | 200 | not 200 | p99 ms | frontend CPU-s | requests per CPU-s | peak RSS MiB |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|"
  for row in "${rows[@]}"; do
    echo "| ${row//|/ | } |"
  done
  echo
  echo "Requests per CPU-second against nginx: cmsfront **$(ratio 1 7)**," \
       "cmsfront without its verification cache **$(ratio 2 7)**."
} >"$work/report.md"
cp "$work/report.md" "$report"
cat "$report"
