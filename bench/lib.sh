# Shared by the bench/*.sh scripts (sourced, not run): process bookkeeping, ports, and the
# frontend's CPU time and memory from /proc. The sourcing script sets `work` (its temp dir)
# and `bench_name` (for messages) before calling anything here.

pids=()

# cleanup: stops whatever the script started, then removes its temp dir. Installed as the
# EXIT trap by bench_init.
cleanup() {
  local pid
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  [[ -n "${work:-}" ]] && rm -rf "$work"
}

# bench_init NAME: a temp dir in $work, traps for a clean exit.
bench_init() {
  bench_name=$1
  work=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
  trap cleanup EXIT
  trap 'exit 130' INT TERM
}

log() { echo "$bench_name: $*" >&2; }

# stop PID: ends a process this script started and forgets it.
stop() {
  local pid=$1 kept=() p
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  for p in "${pids[@]}"; do
    [[ "$p" == "$pid" ]] || kept+=("$p")
  done
  pids=("${kept[@]}")
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# cpu_ticks PID: utime + stime of the whole process, in clock ticks. The fields are counted
# after the ")" that closes the command name, which may itself hold spaces.
cpu_ticks() {
  local stat
  stat=$(<"/proc/$1/stat")
  stat=${stat##*) }
  read -r -a fields <<<"$stat"
  echo $((fields[11] + fields[12]))
}

# rss_peak_kib PID: the process's peak resident set (VmHWM).
rss_peak_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }

# rss_now_kib PID...: the resident sets (VmRSS) of the PIDs, summed, in KiB; a PID that is gone
# counts 0. For memory per connection: the difference between two readings, not the peak.
rss_now_kib() {
  local pid total=0 v
  for pid in "$@"; do
    v=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null) || v=""
    total=$((total + ${v:-0}))
  done
  echo "$total"
}

# listen_overflows: the kernel's count of connections dropped because a listener's accept
# queue was full (TcpExt ListenOverflows, machine-wide; empty if unreadable). A burst of
# clients that a frontend does not accept fast enough shows here: their SYNs (or the final
# ACKs) are dropped and they retry after 1, 3, 7, 15 ... s.
listen_overflows() {
  awk '$1 == "TcpExt:" { if (!n++) { for (i = 2; i <= NF; i++) if ($i == "ListenOverflows") f = i }
                         else if (f) print $f }' /proc/net/netstat 2>/dev/null || true
}

# established_on_port PORT: TCP connections in ESTABLISHED state whose local port is PORT (the
# server side of connections to a listener on PORT, accepted or still in its accept queue);
# 0 when ss (iproute2) is missing.
established_on_port() {
  { ss -Htn state established "( sport = :$1 )" 2>/dev/null || true; } | wc -l
}

# start_backend CPU: a fresh cmsfront-test-backend (one thread) on CPU; sets backend_pid and
# backend_port. Needs $backend (the binary). Returns 1 when it does not start (a script under
# `set -e` then stops; bench/run.sh records the failure and goes on).
start_backend() {
  local out=$work/backend.out i
  : >"$out"
  taskset -c "$1" "$backend" --listen 127.0.0.1:0 --threads 1 >"$out" 2>&1 &
  backend_pid=$!
  pids+=("$backend_pid")
  for ((i = 0; i < 100; i++)); do
    backend_port=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$out")
    [[ -n "$backend_port" ]] && return 0
    sleep 0.05
  done
  log "the backend did not start: $(cat "$out")"
  return 1
}

# install_service_package PACKAGE BINARY: installs a Debian package that ships a system
# service (apache2, haproxy) without letting its postinst start that service: a
# policy-rc.d that says no is put in place for the install when there is none. Our instances
# use their own configurations and ports.
install_service_package() {
  local package=$1 binary=$2 made_policy=0 rc=0
  [[ -x "$binary" ]] && return 0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    made_policy=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$package" \
    >/dev/null 2>&1 || {
    apt-get update -qq >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$package" \
      >/dev/null 2>&1 || rc=$?
  }
  ((made_policy)) && rm -f /usr/sbin/policy-rc.d
  if ((rc != 0)) || [[ ! -x "$binary" ]]; then
    echo "install_service_package: apt-get install $package failed" >&2
    return 1
  fi
}

# nginx_prelude DIR [WORKER_CONNECTIONS [RLIMIT_NOFILE]]: the top of an nginx.conf for a
# benchmark: one process that is itself the worker (so its /proc counters are the ones that
# matter), temp paths under DIR (which must exist: the caller creates it), no access log.
# worker_connections (default 4096) counts client and upstream connections together;
# RLIMIT_NOFILE, when given, becomes worker_rlimit_nofile.
nginx_prelude() {
  local dir=$1 conns=${2:-4096} nofile=${3:-}
  cat <<EOF
worker_processes 1;
master_process off;
${nofile:+worker_rlimit_nofile $nofile;}
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections $conns; }
http {
  access_log off;
  client_body_temp_path $dir/temp/body;
  proxy_temp_path $dir/temp/proxy;
  fastcgi_temp_path $dir/temp/fastcgi;
  uwsgi_temp_path $dir/temp/uwsgi;
  scgi_temp_path $dir/temp/scgi;
EOF
}

# write_identity DIR CERT...: what cmsfront's protected routes need, in DIR: an HMAC key
# (hmac.key, 20 random bytes) and a CRIC-format user map (usermap.json) that maps the subject
# of each CERT (first certificate of the file) with a few roles, among 5,000 other users --
# the order of CMS's real map -- so a benchmark pays for the lookups and the signed headers
# as production does.
write_identity() {
  local dir=$1 cert
  shift
  head -c 20 /dev/urandom >"$dir/hmac.key"
  local dns=()
  for cert in "$@"; do
    dns+=("$(openssl x509 -in "$cert" -noout -subject -nameopt compat | sed 's/^subject=//')")
  done
  /usr/bin/python3 - "$dir/usermap.json" "${dns[@]}" <<'PY'
import json, sys
path, dns = sys.argv[1], sys.argv[2:]
records = [{"DN": dn, "ID": 100000 + i, "LOGIN": "bench%d" % i, "NAME": "Bench User %d" % i,
            "ROLES": {"admin": ["group:reqmgr", "group:das"], "data-manager": ["site:T1_CH_CERN"]}}
           for i, dn in enumerate(dns)]
records += [{"DN": "/DC=ch/DC=cern/OU=Organic Units/OU=Users/CN=user%d/CN=%d/CN=User %d"
             % (i, 200000 + i, i), "ID": 200000 + i, "LOGIN": "user%d" % i, "NAME": "User %d" % i,
             "ROLES": {"production-operator": ["group:crab3"]}} for i in range(5000)]
with open(path, "w") as f:
    json.dump(records, f)
PY
}
