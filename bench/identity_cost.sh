#!/usr/bin/env bash
# What the CMS identity costs: cmsfront's keep-alive requests per CPU-second on a route with
# auth = "cert" (user-map lookup, signed cms-auth headers, cms-request-uri) against the same
# route with auth = "none", in one run of one cmsfront.
#
#   bench/identity_cost.sh
#
# cmsfront-load (keep-alive HTTPS, presenting the demo user's certificate in both cases, so
# the TLS work is the same) -> cmsfront (one worker) -> cmsfront-test-backend --hmac-key. Both
# measured routes get the backend's same small answer; a third route ends at the backend's
# HMAC check (/verify, 403 on a mismatch), loaded before and after to show the headers verify.
# The user map has USERS users (CRIC-like records with roles) and the HMAC key 20 bytes. The
# two routes are measured alternately ROUNDS times; the table keeps every round and the
# summary uses the medians.
#
# Environment (defaults in brackets): N [100000] requests per measurement, C [50] connections,
# ROUNDS [3], USERS [50000], FRONTEND_CPU [0], CLIENT_CPU [1], BUILD_DIR [build].
# Output: Markdown on stdout and in bench/results/identity_cost.md (overwritten).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$PWD
export PATH="/usr/sbin:/usr/bin:/sbin:/bin:$PATH"

requests=${N:-100000}
clients=${C:-50}
rounds=${ROUNDS:-3}
users=${USERS:-50000}
frontend_cpu=${FRONTEND_CPU:-0}
client_cpu=${CLIENT_CPU:-1}
build_dir=${BUILD_DIR:-$repo/build}
cmsfront=$build_dir/cmsfront
backend=$build_dir/cmsfront-test-backend
load=$build_dir/cmsfront-load
results_dir=$repo/bench/results
report=$results_dir/identity_cost.md
clk_tck=$(getconf CLK_TCK)

# shellcheck source=bench/lib.sh
source "$repo/bench/lib.sh"
bench_ensure_built "$cmsfront" "$backend" "$load"
bench_init identity_cost
pki=$work/pki
"$repo/tools/make-test-pki.sh" "$pki" >/dev/null

head -c 20 /dev/urandom >"$work/hmac.key"
/usr/bin/python3 - "$users" "$work/usermap.json" <<'PY'
import json, sys
count, path = int(sys.argv[1]), sys.argv[2]
records = [{"DN": "/DC=ch/DC=cern/OU=Organic Units/OU=Users/CN=demo/CN=100001/CN=Demo User",
            "ID": 100001, "LOGIN": "demo", "NAME": "Demo User",
            "ROLES": {"admin": ["group:reqmgr", "group:das"], "data-manager": ["site:T1_CH_CERN"],
                      "operator": ["group:dbs", "site:T2_CH_CERN"]}}]
for i in range(count - 1):
    records.append({"DN": "/DC=ch/DC=cern/OU=Organic Units/OU=Users/CN=user%d/CN=%d/CN=User %d"
                    % (i, 200000 + i, i), "ID": 200000 + i, "LOGIN": "user%d" % i,
                    "NAME": "User %d" % i, "ROLES": {"production-operator": ["group:crab3"]},
                    "DNs": [], "EMAIL": "user%d@example.org" % i})
with open(path, "w") as f:
    json.dump(records, f)
PY

start_backend "$client_cpu" --hmac-key "$work/hmac.key"

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
client_certificates = "request"
ca_dir = "$pki/ca_dir"

[auth]
hmac_key = "$work/hmac.key"
user_map = "$work/usermap.json"

[backend.b]
servers = ["http://127.0.0.1:$backend_port"]
max_connections = 64

# The two measured routes end at the same backend answer ("ok"), so only cmsfront's work
# differs. /check ends at the backend's /verify, which checks cms-authn-hmac: it is loaded
# before and after the measurements to show that the signed headers are right.
[[route]]
name = "protected"
path = "/cms"
rewrite = "/"
backend = "b"
auth = "cert"

[[route]]
name = "check"
path = "/check"
rewrite = "/verify"
backend = "b"
auth = "cert"

[[route]]
name = "public"
path = "/pub"
rewrite = "/"
backend = "b"
auth = "none"
EOF
taskset -c "$frontend_cpu" "$cmsfront" --config "$work/cmsfront.toml" >"$work/cmsfront.log" 2>&1 &
pid=$!
pids+=("$pid")
for ((i = 0; i < 200; i++)); do
  [[ "$(curl -sk -o /dev/null -w '%{http_code}' "https://127.0.0.1:$port/pub")" == 200 ]] && break
  sleep 0.1
done

rows=()
measure() {  # NAME PATH
  local out=$work/load.json before after ticks ok rps per_cpu status
  before=$(cpu_ticks "$pid")
  taskset -c "$client_cpu" "$load" --json -n "$requests" -c "$clients" \
    --cert "$pki/user.pem" --key "$pki/user.key" "https://127.0.0.1:$port$2" >"$out"
  after=$(cpu_ticks "$pid")
  ticks=$((after - before))
  read -r ok rps status < <(/usr/bin/python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))
print(s["status"].get("200", 0), "%.0f" % s["rps"],
      ",".join("%s:%s" % kv for kv in sorted(s["status"].items())) or "-")' "$out")
  per_cpu=$(awk -v n="$ok" -v t="$ticks" -v hz="$clk_tck" \
            'BEGIN {if (t > 0) printf "%.0f", n * hz / t; else print 0}')
  log "$1: $ok ok ($status), $rps req/s, $per_cpu req per CPU-s"
  rows+=("$1|$rps|$ok|$status|$(awk -v t="$ticks" -v hz="$clk_tck" 'BEGIN {printf "%.2f", t / hz}')|$per_cpu")
}

checked() {  # 2,000 requests to /check: how many the backend's HMAC check accepted
  taskset -c "$client_cpu" "$load" --json -n 2000 -c "$clients" --cert "$pki/user.pem" \
    --key "$pki/user.key" "https://127.0.0.1:$port/check" |
    /usr/bin/python3 -c 'import json, sys; print(json.load(sys.stdin)["status"].get("200", 0))'
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
# Warm-up (connections, the verification cache, the identity block) and the first check.
verified_before=$(checked)
for ((round = 1; round <= rounds; round++)); do
  measure "auth = none (round $round)" /pub
  measure "auth = cert + signed headers (round $round)" /cms
done
verified_after=$(checked)
map_line=$(grep -m1 'user map from file' "$work/cmsfront.log" || true)

mkdir -p "$results_dir"
{
  echo "# What the CMS identity costs cmsfront (keep-alive HTTPS with a client certificate, one core)"
  echo
  echo "Run $(date -u '+%Y-%m-%d %H:%M UTC') by \`bench/identity_cost.sh\` on $(nproc) CPUs" \
       "($(cpu_model)); load average before: $load_before."
  echo
  echo "- load: \`cmsfront-load -n $requests -c $clients --cert user.pem\` (keep-alive) per row," \
       "the two routes alternating; cmsfront workers = 1 on CPU $frontend_cpu, the load and" \
       "\`cmsfront-test-backend --hmac-key\` on CPU $client_cpu"
  echo "- user map: $users users (${map_line#*: })"
  echo "- both routes end at the backend's plain \`ok\` answer; the backend's HMAC check" \
       "(\`/verify\` behind a third protected route) accepted $verified_before of 2,000 requests" \
       "before the measurements and $verified_after of 2,000 after"
  echo
  echo "| route | requests/s | 200 | statuses | cmsfront CPU-s | requests per CPU-s |"
  echo "|---|---:|---:|---|---:|---:|"
  for row in "${rows[@]}"; do
    echo "| ${row//|/ | } |"
  done
  echo
  printf '%s\n' "${rows[@]}" | awk -F'|' '
    /auth = none/ {none[++n] = $6} /auth = cert/ {cert[++m] = $6}
    function median(a, k,   i, j, t) {
      for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (a[j] < a[i]) {t = a[i]; a[i] = a[j]; a[j] = t}
      return k % 2 ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2
    }
    END {
      if (n > 0 && m > 0) {
        a = median(none, n); b = median(cert, m)
        printf "Median requests per CPU-second: auth = none %.0f, auth = cert with signed headers %.0f; ratio **%.2f**.\n", a, b, b / a
      }
    }'
} >"$work/report.md"
cp "$work/report.md" "$report"
cat "$report"
