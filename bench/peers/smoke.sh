#!/usr/bin/env bash
# Smoke test of the peer frontends in bench/peers/ (Apache, HAProxy): each one in front of the
# native test backend, with the grid fixtures and their CRLs, answers
#   (a) a user certificate with 200 and passes its DN to the backend in SSL_CLIENT_S_DN,
#   (b) no certificate with 403,
#   (c) a revoked certificate with a refusal (handshake failure or 403: recorded),
#   (d) an RFC 3820 proxy with whatever it does (recorded, not judged: no peer accepts them),
# and survives a tiny load (cmsfront-load --new-connection -n 200 -c 10, ECDSA user).
#
#   bench/peers/smoke.sh [apache] [haproxy]      (default: both)
#
# Builds nothing: needs build/cmsfront-test-backend and build/cmsfront-load (BUILD_DIR to
# change). Installs apache2/haproxy if missing (never starting their services). Trust store:
# the grid test CAs only (IGTF=1 adds /etc/grid-security/certificates, as the benchmarks do);
# REVOKED (default 0) extra entries in the root CA's CRL. FRONTEND_CPU [0], CLIENT_CPU [1].
# Exit status: 0 when (a), (b), (c) and the load (all 200) pass for every peer tried.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
repo=$PWD
export PATH="/usr/sbin:/usr/bin:/sbin:/bin:$PATH"

build_dir=${BUILD_DIR:-$repo/build}
backend=$build_dir/cmsfront-test-backend
load=$build_dir/cmsfront-load
frontend_cpu=${FRONTEND_CPU:-0}
client_cpu=${CLIENT_CPU:-1}
peers_wanted=("$@")
((${#peers_wanted[@]})) || peers_wanted=(apache haproxy)

for tool in "$backend" "$load"; do
  if [[ ! -x "$tool" ]]; then
    echo "smoke.sh: missing $tool (build first: tools/build.sh)" >&2
    exit 1
  fi
done

# shellcheck source=bench/lib.sh
source "$repo/bench/lib.sh"
# shellcheck source=bench/peers/apache.sh
source "$repo/bench/peers/apache.sh"
# shellcheck source=bench/peers/haproxy.sh
source "$repo/bench/peers/haproxy.sh"
bench_init peers-smoke

# --- fixtures and trust store ------------------------------------------------------------------
log "making grid fixtures"
/usr/bin/python3 tests/pki/make_grid_fixtures.py "$work/grid" \
  ${REVOKED:+--revoked-count "$REVOKED"} >/dev/null
grid=$work/grid
ca_dir=$work/ca_dir
mkdir -p "$ca_dir"
if [[ "${IGTF:-0}" == 1 && -d /etc/grid-security/certificates ]]; then
  cp -P /etc/grid-security/certificates/* "$ca_dir"/
fi
cp -P "$grid/ca_dir"/* "$ca_dir"/
cat "$ca_dir"/*.[0-9] >"$work/ca-bundle.pem" 2>/dev/null
cat "$ca_dir"/*.r[0-9] >"$work/crl-bundle.pem"
user_dn=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["cases"]["user"]["user_dn"])' \
  "$grid/manifest.json")
# The same DN in RFC 2253 order (mod_ssl's default SSL_CLIENT_S_DN form).
user_dn_rfc=$(openssl x509 -in "$grid/creds/user.pem" -noout -subject -nameopt RFC2253 | sed 's/^subject=//')

# probe PORT [CERT] [PATH]: prints the HTTP status ("000" when no HTTP answer) then, on a
# second line, curl's exit code; the body goes to $work/body.
probe() {
  local port=$1 cert=${2:-} path=${3:-/echo} code rc=0
  local args=(-sSk -m 10 -o "$work/body" -w '%{http_code}')
  [[ -n "$cert" ]] && args+=(--cert "$cert")
  : >"$work/body"
  code=$(curl "${args[@]}" "https://127.0.0.1:$port$path" 2>"$work/curl.err") || rc=$?
  echo "${code:-000}"
  echo "$rc"
}

# outcome STATUS RC: words for a table cell.
outcome() {
  if [[ "$1" != 000 ]]; then
    echo "HTTP $1"
  else
    case $2 in
      35 | 56)
        local why
        why=$(grep -o 'alert [a-z ]*' "$work/curl.err" | head -1) || true
        echo "handshake refused (curl $2${why:+: $why})" ;;
      52) echo "empty reply (curl 52)" ;;
      *) echo "no answer (curl $2)" ;;
    esac
  fi
}

failures=0
rows=()
smoke_peer() {  # NAME
  local name=$1 dir=$work/$1 port workers
  # Apache: a thread per connection in a handshake; HAProxy: one thread for its one core.
  case $name in apache) workers=64 ;; *) workers=1 ;; esac
  mkdir -p "$dir"
  "${name}_install"
  start_backend "$client_cpu"
  port=$(free_port)
  "${name}_write_config" "$dir" "$port" "$backend_port" "$work/ca-bundle.pem" \
    "$work/crl-bundle.pem" "$grid/server.pem" "$grid/server.key" "$workers"
  if ! "${name}_start" "$dir" "$frontend_cpu"; then
    rows+=("$name|$("${name}_version")|did not start|||||")
    failures=$((failures + 1))
    stop "$backend_pid"
    return
  fi
  local pid_var=${name}_pid version
  version=$("${name}_version")
  log "$name started (pid ${!pid_var}): $version"

  # (a) a user certificate: 200, and the backend saw the DN.
  local res code rc a b c d dn_seen verdict
  mapfile -t res < <(probe "$port" "$grid/creds/user.pem")
  code=${res[0]} rc=${res[1]}
  dn_seen=$(python3 -c '
import json, sys
try:
    j = json.load(open(sys.argv[1]))
except Exception:
    print(""); sys.exit()
h = j.get("headers", {})
if isinstance(h, list):
    h = {k: v for k, v in h}
for k, v in h.items():
    if k.lower() == "ssl_client_s_dn":
        print(v); break
' "$work/body")
  log "$name (a): the backend got: $(python3 -c 'import json, sys; print(json.load(open(sys.argv[1])).get("headers"))' "$work/body" 2>/dev/null)"
  verdict=FAIL
  if [[ "$code" == 200 ]]; then
    case $dn_seen in
      "$user_dn" | "\"$user_dn\"" | "$user_dn_rfc" | "\"$user_dn_rfc\"") verdict=ok ;;
    esac
  fi
  [[ $verdict == ok ]] || { failures=$((failures + 1)); log "$name (a): $code, body: $(head -c 400 "$work/body")"; }
  a="$verdict: $(outcome "$code" "$rc"), DN header \`${dn_seen:-none}\`"

  # (b) no certificate: 403.
  mapfile -t res < <(probe "$port" "")
  verdict=FAIL
  [[ "${res[0]}" == 403 ]] && verdict=ok
  [[ $verdict == ok ]] || failures=$((failures + 1))
  b="$verdict: $(outcome "${res[0]}" "${res[1]}")"

  # (c) a revoked certificate: refused one way or the other.
  mapfile -t res < <(probe "$port" "$grid/creds/revoked.pem")
  verdict=FAIL
  [[ "${res[0]}" == 403 || "${res[0]}" == 000 ]] && verdict=ok
  [[ $verdict == ok ]] || failures=$((failures + 1))
  c="$verdict: $(outcome "${res[0]}" "${res[1]}")"
  [[ "${res[0]}" == 000 ]] && log "$name (c): $(tr '\n' ' ' <"$work/curl.err")"

  # (d) an RFC 3820 proxy: recorded only.
  mapfile -t res < <(probe "$port" "$grid/creds/proxy_rfc.pem")
  d="$(outcome "${res[0]}" "${res[1]}")"
  [[ "${res[0]}" == 000 ]] && log "$name (d): $(tr '\n' ' ' <"$work/curl.err")"

  # A tiny load: a handshake per request, ECDSA user.
  local before after out=$work/load-$name.json summary
  before=$("${name}_cpu_ticks")
  taskset -c "$client_cpu" "$load" --new-connection -n 200 -c 10 \
    --cert "$grid/creds/user_ecdsa.pem" --json "https://127.0.0.1:$port/" >"$out" 2>"$out.err" || true
  after=$("${name}_cpu_ticks")
  summary=$(python3 -c '
import json, sys
try:
    j = json.load(open(sys.argv[1]))
except Exception as e:
    print("no JSON|0"); sys.exit()
st = j.get("status", {})
print("%s requests, status %s, %.0f req/s|%s" % (j.get("requests", "?"),
      json.dumps(st, sort_keys=True), j.get("rps", 0), st.get("200", 0)))
' "$out")
  local ok=${summary##*|}
  summary=${summary%|*}
  if [[ "$ok" != 200 ]]; then
    failures=$((failures + 1))
    summary="FAIL: $summary"
    log "$name load: $(head -c 400 "$out") $(head -c 400 "$out.err")"
  fi
  local conns
  conns=$(curl -s -m 5 "http://127.0.0.1:$backend_port/__stats" | python3 -c '
import json, sys
j = json.load(sys.stdin)
print("%s backend connections for %s requests" % (j.get("connections_total"), j.get("requests")))' 2>/dev/null) || conns="backend stats unavailable"
  summary="$summary, $((after - before)) CPU ticks, $conns"
  log "$name load: $summary"
  rows+=("$name|$version|$a|$b|$c|$d|$summary")

  stop "${!pid_var}"
  stop "$backend_pid"
}

for peer in "${peers_wanted[@]}"; do
  smoke_peer "$peer"
done

echo
echo "Trust store: $(find "$ca_dir" -maxdepth 1 -regextype posix-extended -regex '.*/[0-9a-f]{8}\.[0-9]+' | wc -l) CA files, CRLs: $(grep -c 'BEGIN X509 CRL' "$work/crl-bundle.pem"); user DN: \`$user_dn\`"
echo
echo "| peer | version | (a) user cert | (b) no cert | (c) revoked | (d) RFC 3820 proxy | load: --new-connection -n 200 -c 10 |"
echo "|---|---|---|---|---|---|---|"
for row in "${rows[@]}"; do
  echo "| ${row//|/ | } |"
done
echo
if ((failures)); then
  echo "smoke.sh: $failures check(s) failed" >&2
  exit 1
fi
echo "smoke.sh: all checks passed"
