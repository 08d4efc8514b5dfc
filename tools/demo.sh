#!/usr/bin/env bash
# cmsfront in front of a demo backend, on a throw-away PKI: the README's first command.
#
#   tools/demo.sh           install packages, build, start everything; Ctrl-C stops it
#   tools/demo.sh --smoke   same, but send one request through it, check it, stop (for tests)
#
# Everything it writes goes to demo-run/ (git-ignored): the PKI, the rendered configuration
# demo.toml and the backend's log. Ports (on 127.0.0.1) come from the environment:
#   CMSFRONT_DEMO_HTTPS_PORT (8443), CMSFRONT_DEMO_HTTP_PORT (8080, redirects to HTTPS),
#   CMSFRONT_DEMO_BACKEND_PORT (8246).
# A default port that is taken is replaced by a free one; --smoke always uses free ports.
set -euo pipefail

caller_dir=$PWD
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$PWD
# Debian's python3 has CherryPy; a pyenv/virtualenv one earlier on PATH may not.
export PATH="/usr/sbin:/usr/bin:/sbin:/bin:$PATH"
python=/usr/bin/python3

smoke=0
case "${1:-}" in
  "") ;;
  --smoke) smoke=1 ;;
  *)
    echo "usage: tools/demo.sh [--smoke]" >&2
    exit 2
    ;;
esac

tools/install-deps.sh
tools/build.sh --release

run_dir=$repo/demo-run
pki_dir=$run_dir/pki
mkdir -p "$run_dir"

# Port helpers. A port counts as taken when a listening socket holds it (SO_REUSEADDR, as a
# server would bind, so leftover TIME_WAIT connections don't count).
port_taken() {
  "$python" - "$1" <<'EOF'
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(0)
sys.exit(1)
EOF
}

free_port() {
  "$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# pick_port ENV_VALUE DEFAULT: the configured port, else the default if free, else a free one.
pick_port() {
  if [[ -n "$1" ]]; then
    echo "$1"
  elif ((smoke)) || port_taken "$2"; then
    free_port
  else
    echo "$2"
  fi
}

https_port=$(pick_port "${CMSFRONT_DEMO_HTTPS_PORT:-}" 8443)
http_port=$(pick_port "${CMSFRONT_DEMO_HTTP_PORT:-}" 8080)
backend_port=$(pick_port "${CMSFRONT_DEMO_BACKEND_PORT:-}" 8246)

# make-test-pki.sh keeps a PKI that is still valid and renews one that is about to expire, so a
# CA the user chose to trust stays the same across runs.
tools/make-test-pki.sh "$pki_dir" >/dev/null
for file in ca.pem server.pem server.key user.pem user.key; do
  if [[ ! -s "$pki_dir/$file" ]]; then
    echo "demo.sh: tools/make-test-pki.sh did not create $pki_dir/$file" >&2
    exit 1
  fi
done

# The CMS identity: an HMAC key (20 random bytes, kept across runs like the PKI) and a user
# map in CRIC's format that knows the demo user.
if [[ ! -s "$run_dir/hmac.key" ]]; then
  head -c 20 /dev/urandom >"$run_dir/hmac.key"
fi
cat >"$run_dir/usermap.json" <<'MAP'
[{"DN": "/DC=ch/DC=cern/OU=Organic Units/OU=Users/CN=demo/CN=100001/CN=Demo User",
  "ID": 100001, "LOGIN": "demo", "NAME": "Demo User",
  "ROLES": {"admin": ["group:demo"], "data-manager": ["site:T2_CH_CERN"]}}]
MAP

# Render etc/demo.toml.in. Values are escaped for sed's replacement text (\, & and |).
sed_escape() {
  printf '%s' "$1" | sed -e 's/[\\&|]/\\&/g'
}
sed -e "s|@HTTPS_PORT@|$https_port|g" \
  -e "s|@HTTP_PORT@|$http_port|g" \
  -e "s|@BACKEND_PORT@|$backend_port|g" \
  -e "s|@PKI_DIR@|$(sed_escape "$pki_dir")|g" \
  -e "s|@RUN_DIR@|$(sed_escape "$run_dir")|g" \
  etc/demo.toml.in >"$run_dir/demo.toml"

backend_pid=""
cmsfront_pid=""
# shellcheck disable=SC2317  # called through the EXIT trap
cleanup() {
  local pid
  for pid in $cmsfront_pid $backend_pid; do
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
}
trap cleanup EXIT

# The backend runs in the background; a non-interactive shell starts it with SIGINT ignored,
# so Ctrl-C reaches cmsfront only and the backend is stopped by cleanup, after cmsfront.
"$python" tools/demo_backend.py --port "$backend_port" --hmac-key "$run_dir/hmac.key" >"$run_dir/backend.log" 2>&1 &
backend_pid=$!
for _ in $(seq 100); do
  if curl -sf -o /dev/null "http://127.0.0.1:$backend_port/"; then
    break
  fi
  if ! kill -0 "$backend_pid" 2>/dev/null; then
    echo "demo.sh: the demo backend exited; its log:" >&2
    cat "$run_dir/backend.log" >&2
    exit 1
  fi
  sleep 0.1
done

build/cmsfront --check-config "$run_dir/demo.toml"

# Paths in the printed commands are relative when the caller stands in the repository.
shown_dir=$run_dir
if [[ "$caller_dir" == "$repo" ]]; then
  shown_dir=demo-run
fi
try_command="curl --cacert $shown_dir/pki/ca.pem https://localhost:$https_port/echo -H 'cms-authz-admin: group:evil'"

if ((smoke)); then
  build/cmsfront --config "$run_dir/demo.toml" >"$run_dir/cmsfront.log" 2>&1 &
  cmsfront_pid=$!
  ready=0
  for _ in $(seq 100); do
    if curl -s -o /dev/null --cacert "$pki_dir/ca.pem" "https://localhost:$https_port/"; then
      ready=1
      break
    fi
    kill -0 "$cmsfront_pid" 2>/dev/null || break
    sleep 0.1
  done
  if ((!ready)); then
    echo "demo.sh: cmsfront did not answer on port $https_port; its output:" >&2
    cat "$run_dir/cmsfront.log" >&2
    exit 1
  fi

  echo "demo smoke: $try_command"
  response=$(curl -sS --fail --cacert "$pki_dir/ca.pem" "https://localhost:$https_port/echo" \
    -H 'cms-authz-admin: group:evil')
  "$python" -c '
import json, sys
headers = {name.lower(): value for name, value in json.loads(sys.argv[1])["headers"].items()}
problems = []
if headers.get("x-forwarded-for") != "127.0.0.1":
    problems.append("X-Forwarded-For is not 127.0.0.1")
if headers.get("x-forwarded-proto") != "https":
    problems.append("X-Forwarded-Proto is not https")
if "x-forwarded-host" not in headers:
    problems.append("no X-Forwarded-Host")
problems += [f"spoofed {name} reached the backend" for name in headers if name.startswith("cms-")]
if problems:
    sys.exit("demo smoke: " + "; ".join(problems) + "\n" + sys.argv[1])
' "$response"

  # The protected route: 403 (JSON when asked) without a certificate, forwarded with one.
  denied=$(curl -sS --cacert "$pki_dir/ca.pem" -H 'Accept: application/json' \
    -w ' %{http_code}' "https://localhost:$https_port/protected/echo")
  if [[ "$denied" != *'"reason":"no_certificate"'*' 403' ]]; then
    echo "demo smoke: /protected/echo without a certificate answered '$denied', expected 403 no_certificate" >&2
    exit 1
  fi
  allowed=$(curl -sS --cacert "$pki_dir/ca.pem" --cert "$pki_dir/user.pem" --key "$pki_dir/user.key" \
    -w ' %{http_code}' "https://localhost:$https_port/protected/echo")
  if [[ "$allowed" != *' 200' ]]; then
    echo "demo smoke: /protected/echo with the demo user certificate answered $allowed, expected 200" >&2
    exit 1
  fi
  # The backend saw the demo user's CMS identity, signed with the key it knows.
  "$python" -c '
import json, sys
document = json.loads(sys.argv[1].rsplit(" ", 1)[0])
auth = document.get("cms_auth", {})
if not (auth.get("hmac_ok") and auth.get("login") == "demo"):
    sys.exit("demo smoke: the backend did not get a verified identity for demo: %s" % document)
' "$allowed"
  trouble=$(curl -sS --cacert "$pki_dir/ca.pem" --cert "$pki_dir/user.pem" --key "$pki_dir/user.key" \
    -H 'Accept: application/json' "https://localhost:$https_port/auth/trouble")
  if [[ "$trouble" != *'"verified":true'*'CN=Demo User'* ]]; then
    echo "demo smoke: /auth/trouble did not show the verified demo user: $trouble" >&2
    exit 1
  fi

  redirect=$(curl -s -o /dev/null -w '%{http_code} %{redirect_url}' "http://localhost:$http_port/echo?x=1")
  if [[ "$redirect" != "301 https://localhost"*"/echo?x=1" ]]; then
    echo "demo smoke: plain HTTP answered '$redirect', expected a 301 to https://localhost/echo?x=1" >&2
    exit 1
  fi

  kill -TERM "$cmsfront_pid"
  status=0
  wait "$cmsfront_pid" || status=$?
  cmsfront_pid=""
  if ((status != 0)); then
    echo "demo smoke: cmsfront exited with status $status after SIGTERM; its output:" >&2
    cat "$run_dir/cmsfront.log" >&2
    exit 1
  fi
  echo "demo smoke: ok (forwarding headers set, cms-* stripped, certificate auth, trouble page, redirect, clean shutdown)"
  exit 0
fi

cat <<EOF

cmsfront demo: https://localhost:$https_port -> demo backend http://127.0.0.1:$backend_port
(CherryPy, 10 threads; configuration $shown_dir/demo.toml)

Try, from another terminal in $repo:

  $try_command

The backend answers with the headers it received: X-Forwarded-For/-Proto/-Host set by
cmsfront, and no cms-authz-admin (cmsfront strips client-sent cms-* headers).
Plain HTTP redirects: curl -i http://localhost:$http_port/echo

/protected/ needs a grid certificate; the demo user has one:
  curl --cacert $shown_dir/pki/ca.pem https://localhost:$https_port/protected/echo            (403)
  curl --cacert $shown_dir/pki/ca.pem --cert $shown_dir/pki/user.pem --key $shown_dir/pki/user.key \\
       https://localhost:$https_port/protected/echo                                          (200)
What the server saw of your certificate: https://localhost:$https_port/auth/trouble

Ctrl-C stops cmsfront (it lets in-flight requests finish first) and the backend.

EOF

# cmsfront runs in the foreground and gets the terminal's Ctrl-C itself; the shell only waits
# for it to finish draining, then cleanup stops the backend.
trap 'true' INT
status=0
build/cmsfront --config "$run_dir/demo.toml" || status=$?
exit "$status"
