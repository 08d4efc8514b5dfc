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

# start_backend CPU: a fresh cmsfront-test-backend (one thread) on CPU; sets backend_pid and
# backend_port. Needs $backend (the binary).
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
  exit 1
}

# nginx_prelude DIR: the top of an nginx.conf for a benchmark: one process that is itself the
# worker (so its /proc counters are the ones that matter), temp paths under DIR (which must
# exist: the caller creates it), no access log.
nginx_prelude() {
  local dir=$1
  cat <<EOF
worker_processes 1;
master_process off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $dir/temp/body;
  proxy_temp_path $dir/temp/proxy;
  fastcgi_temp_path $dir/temp/fastcgi;
  uwsgi_temp_path $dir/temp/uwsgi;
  scgi_temp_path $dir/temp/scgi;
EOF
}
