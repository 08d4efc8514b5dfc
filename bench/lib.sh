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

# --- a frontend as a process tree ----------------------------------------------------------------
# A frontend is one process (cmsfront, HAProxy: threads; nginx with master_process off) or a
# parent with forked children (nginx's master and its worker_processes, Apache's parent and its
# children). The functions below read all of it from the main pid, with one rule for every
# frontend, so that one process and a master with workers are counted alike.

# proc_children PID: the pids of PID's direct children, one a line (none: nothing). From
# /proc/PID/task/*/children (children forked by any thread) where the kernel has it
# (CONFIG_PROC_CHILDREN; gVisor and some containers do not), else from ps.
proc_children() {
  local files=("/proc/$1/task/"*/children)
  if [[ -e "${files[0]}" ]]; then
    cat "${files[@]}" 2>/dev/null | tr ' ' '\n' | sed '/^$/d' || true
  else
    ps -o pid= --ppid "$1" 2>/dev/null | tr -d ' ' || true  # ps exits 1 when there are none
  fi
}

# proc_tree PID: PID and all its descendants, one a line, parents before their children;
# nothing when PID is gone. A process that exits between two reads is simply left out.
proc_tree() {
  local queue=("$1") pid
  while ((${#queue[@]})); do
    pid=${queue[0]}
    queue=("${queue[@]:1}")
    [[ -r "/proc/$pid/stat" ]] || continue
    echo "$pid"
    # shellcheck disable=SC2207  # one pid a word
    queue+=($(proc_children "$pid"))
  done
}

# tree_cpu_ticks PID: the CPU time of PID's whole process tree in clock ticks: for every live
# process, utime + stime (all its threads) + cutime + cstime (children it has already reaped,
# so that a worker that exits during a run still counts). Returns 1 (prints nothing) when PID
# itself is gone. For a single process that never forked this is exactly cpu_ticks PID;
# for Apache's parent and one child it is what apache_cpu_ticks used to add up.
tree_cpu_ticks() {
  local pid total=0 stat fields
  [[ -r "/proc/$1/stat" ]] || return 1
  for pid in $(proc_tree "$1"); do
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
    stat=${stat##*) }
    read -r -a fields <<<"$stat"
    total=$((total + fields[11] + fields[12] + fields[13] + fields[14]))
  done
  echo "$total"
}

# serving_pids PID: the processes of PID's tree that serve connections, one a line: PID
# itself when it has no children, else its descendants (a master or parent that forked
# workers only supervises them: nginx's master, Apache's root parent). Memory is read from
# these, as it always was for Apache's child.
serving_pids() {
  local tree=()
  mapfile -t tree < <(proc_tree "$1")
  if ((${#tree[@]} > 1)); then
    printf '%s\n' "${tree[@]:1}"
  elif ((${#tree[@]} == 1)); then
    echo "${tree[0]}"
  fi
}

# tree_rss_now_kib PID: VmRSS of PID's serving processes, summed, in KiB (pages that forked
# workers share are counted once per process: what moves in a difference of two readings is
# the per-connection memory, which is not shared).
tree_rss_now_kib() {
  # shellcheck disable=SC2046  # one pid a word
  rss_now_kib $(serving_pids "$1")
}

# tree_rss_peak_kib PID: the peaks (VmHWM) of PID's serving processes, summed, in KiB; empty
# when there are none. One serving process: its own peak, as rss_peak_kib.
tree_rss_peak_kib() {
  local pid total="" v
  for pid in $(serving_pids "$1"); do
    v=$(rss_peak_kib "$pid" 2>/dev/null) || v=""
    [[ -n "$v" ]] && total=$((${total:-0} + v))
  done
  echo "$total"
}

# stop_tree_leftovers PID...: SIGKILL for the given pids that are still alive (the workers a
# master had, read before the master was stopped: a master killed with SIGKILL leaves them
# running, holding the port). Only pids this script's own frontends forked are passed here.
stop_tree_leftovers() {
  local pid
  for pid in "$@"; do
    if kill -0 "$pid" 2>/dev/null; then
      kill -9 "$pid" 2>/dev/null || true
    fi
  done
}

# cpu_list_expand LIST: the CPUs of a taskset list (N, N-M, N-M:STRIDE, comma separated), one
# a line in ascending order without repeats; returns 1 for a list it cannot read.
cpu_list_expand() {
  local part lo hi step cpu parts=() cpus=()
  [[ -n "$1" ]] || return 1
  IFS=, read -r -a parts <<<"$1"
  for part in "${parts[@]}"; do
    if [[ "$part" =~ ^([0-9]+)$ ]]; then
      cpus+=("$((10#${BASH_REMATCH[1]}))")
    elif [[ "$part" =~ ^([0-9]+)-([0-9]+)(:([1-9][0-9]*))?$ ]]; then
      lo=$((10#${BASH_REMATCH[1]})) hi=$((10#${BASH_REMATCH[2]})) step=$((10#${BASH_REMATCH[4]:-1}))
      ((lo <= hi)) || return 1
      for ((cpu = lo; cpu <= hi; cpu += step)); do cpus+=("$cpu"); done
    else
      return 1
    fi
  done
  printf '%s\n' "${cpus[@]}" | sort -n -u
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

# start_backend CPU [ARG...]: a fresh cmsfront-test-backend (one thread) on CPU, with any
# extra arguments (e.g. --hmac-key FILE); sets backend_pid and backend_port. Needs $backend (the binary). Returns 1 when it does not start (a script under
# `set -e` then stops; bench/run.sh records the failure and goes on).
start_backend() {
  local out=$work/backend.out cpu=$1 i
  shift
  : >"$out"
  taskset -c "$cpu" "$backend" --listen 127.0.0.1:0 --threads 1 "$@" >"$out" 2>&1 &
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

# nginx_prelude DIR [WORKER_CONNECTIONS [RLIMIT_NOFILE [WORKERS]]]: the top of an nginx.conf
# for a benchmark: one process that is itself the worker (so its /proc counters are the ones
# that matter), temp paths under DIR (which must exist: the caller creates it), no access log.
# worker_connections (default 4096, per worker) counts client and upstream connections
# together; RLIMIT_NOFILE, when given, becomes worker_rlimit_nofile. WORKERS > 1 (default 1):
# worker_processes WORKERS, which needs master_process on: the master forks the workers, so
# read CPU time and memory over the master's process tree (tree_cpu_ticks, serving_pids).
nginx_prelude() {
  local dir=$1 conns=${2:-4096} nofile=${3:-} workers=${4:-1} master=off
  ((workers > 1)) && master=on
  cat <<EOF
worker_processes $workers;
master_process $master;
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

# bench_ensure_built BINARY...: installs the packages (tools/install-deps.sh) and, unless the
# caller chose BUILD_DIR, builds the release when one of the binaries is missing.
bench_ensure_built() {
  "$repo/tools/install-deps.sh"
  local binary
  for binary in "$@"; do
    if [[ ! -x "$binary" && -z "${BUILD_DIR:-}" ]]; then
      "$repo/tools/build.sh" --release
      return
    fi
  done
}

# cpu_model: the CPU's model name, for report headers ("AMD EPYC ...").
cpu_model() { sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1; }
