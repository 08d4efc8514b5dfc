# shellcheck shell=bash
# HAProxy (Debian 12: 2.6) as a peer frontend for the bench drivers. Sourced after
# bench/lib.sh (it uses `pids`); defines functions only.
#
#   haproxy_install                     Debian's haproxy, if missing (the service is never started)
#   haproxy_write_config DIR PORT BACKEND_PORT CA_BUNDLE CRL_BUNDLE SERVER_CERT SERVER_KEY WORKERS [H2]
#   haproxy_start DIR CPUSET            sets haproxy_pid (one process, all threads)
#   haproxy_cpu_ticks [PID]             = tree_cpu_ticks of that process (threads included)
#   haproxy_version                     one line
#
# Configured like cmsweb's frontend: TLS 1.2/1.3, `verify optional` with ca-file + crl-file
# (HAProxy then sets X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL: every certificate of
# the chain must have a CRL from its issuer), a failed verification aborts the handshake (no
# ca-ignore-err/crt-ignore-err), 403 without a verified certificate, the client DN in
# SSL_CLIENT_S_DN, keep-alive to the backend (http-reuse always), no log, one process with
# WORKERS threads, maxconn 20000 (less where the open-files hard limit is below ~40,500; see
# below). H2=1 adds `alpn h2,http/1.1` to the TLS bind line: HTTP/2 towards clients (the
# backend side stays HTTP/1.1).
# Not configurable in HAProxy 2.6: the verify depth (OpenSSL's default of 100 applies, not 10).
#
# Backend keep-alive: `http-reuse always` (HAPROXY_HTTP_REUSE to change). The default "safe"
# never gives the first request of a client connection an idle server connection, so with a
# handshake per request it opened one backend connection per request (202 for 202 requests in
# bench/peers/smoke.sh; "always": 11), unlike nginx's `keepalive` pool and Apache's.
#
# The DN header: HAPROXY_DN_FORMAT selects the value. "q" (default) is the form cmsweb's
# HAProxy recipe uses, %{+Q}[ssl_c_s_dn]; in set-header HAProxy 2.6 adds no quotes (checked:
# the backend gets the bare OpenSSL one-line "/DC=ch/.../CN=John Doe"), so "plain"
# (%[ssl_c_s_dn]) gives the same; "rfc2253" gives mod_ssl's "CN=John Doe,...,DC=ch".
# HAProxy sends header names lower-cased (ssl_client_s_dn).

haproxy_bin=${HAPROXY_BIN:-/usr/sbin/haproxy}

haproxy_install() { install_service_package haproxy "$haproxy_bin"; }

haproxy_version() {
  # awk reads all of it: no SIGPIPE under a caller's pipefail.
  "$haproxy_bin" -v 2>/dev/null | awk 'NR == 1 {print $1, $3}'
}

# haproxy_write_config DIR PORT BACKEND_PORT CA_BUNDLE CRL_BUNDLE SERVER_CERT SERVER_KEY WORKERS [H2]
haproxy_write_config() {
  local dir=$1 port=$2 backend_port=$3 ca=$4 crl=$5 cert=$6 key=$7 workers=${8:-1} h2=${9:-0}
  local dn alpn=""
  [[ "$h2" == 1 ]] && alpn=" alpn h2,http/1.1"
  case ${HAPROXY_DN_FORMAT:-q} in
    plain) dn='%[ssl_c_s_dn]' ;;
    rfc2253) dn='%[ssl_c_s_dn(,0,rfc2253)]' ;;
    *) dn='%{+Q}[ssl_c_s_dn]' ;;
  esac
  # maxconn 20000 needs ~40,200 file descriptors by HAProxy's count (two per connection, as
  # if every client had its own server connection); HAProxy raises its soft limit itself but
  # cannot pass the hard one (20,000 in some containers), and then refuses to start
  # (strict-limits). Here a client connection needs one descriptor and the server side at most
  # `server maxconn` (1,000) more, so where the hard limit is too low: maxconn = the hard limit
  # - 1,500 and `no strict-limits` (HAProxy starts, with a warning that it cannot reach its own
  # estimate). Halving maxconn instead would cap a 10,000-client run at 9,750 connections.
  local maxconn=${HAPROXY_MAXCONN:-20000} hard limits=""
  hard=$(ulimit -Hn)
  if [[ "$hard" != unlimited ]] && ((2 * maxconn + 500 > hard)); then
    local fit=$((hard - 1500))
    ((fit < (hard - 500) / 2)) && fit=$(((hard - 500) / 2))  # a small limit: the old halving
    ((maxconn > fit)) && maxconn=$fit
    limits="
  no strict-limits"
    echo "haproxy_write_config: open-files hard limit $hard: maxconn $maxconn, no strict-limits" >&2
  fi
  mkdir -p "$dir"
  # HAProxy wants the certificate and its key in one PEM (or the key in CERT.key).
  cat "$cert" "$key" >"$dir/server.pem"
  chmod 600 "$dir/server.pem"
  cat >"$dir/haproxy.cfg" <<EOF
# Written by bench/peers/haproxy.sh: a self-contained HAProxy TLS reverse proxy.
global
  nbthread $workers
  maxconn $maxconn$limits
  pidfile $dir/haproxy.pid
  ssl-default-bind-options ssl-min-ver TLSv1.2 ssl-max-ver TLSv1.3
  tune.ssl.default-dh-param 2048
  # no "log" line: nothing is logged

defaults
  mode http
  option http-keep-alive
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout http-request 30s
  timeout http-keep-alive 60s

frontend fe
  bind 127.0.0.1:$port ssl crt $dir/server.pem ca-file $ca crl-file $crl verify optional ssl-min-ver TLSv1.2 ssl-max-ver TLSv1.3$alpn
  maxconn $maxconn
  http-request deny deny_status 403 if !{ ssl_c_used } || !{ ssl_c_verify 0 }
  http-request set-header SSL_CLIENT_S_DN $dn
  default_backend be

backend be
  http-reuse ${HAPROXY_HTTP_REUSE:-always}
  server b 127.0.0.1:$backend_port maxconn 1000
EOF
}

# _haproxy_wait_port PORT PID: until a TLS request to PORT gets any HTTP answer.
_haproxy_wait_port() {
  local port=$1 pid=$2 i code
  for ((i = 0; i < 150; i++)); do
    kill -0 "$pid" 2>/dev/null || return 1
    code=$(curl -sk -o /dev/null -m 2 -w '%{http_code}' "https://127.0.0.1:$port/" 2>/dev/null) || true
    [[ -n "$code" && "$code" != 000 ]] && return 0
    sleep 0.1
  done
  return 1
}

# haproxy_start DIR CPUSET: needs DIR/haproxy.cfg from haproxy_write_config.
haproxy_start() {
  local dir=$1 cpuset=$2 port
  port=$(sed -n 's/^  bind 127\.0\.0\.1:\([0-9]*\) .*/\1/p' "$dir/haproxy.cfg" | head -1)
  taskset -c "$cpuset" "$haproxy_bin" -f "$dir/haproxy.cfg" -db >"$dir/haproxy.out" 2>&1 &
  haproxy_pid=$!
  pids+=("$haproxy_pid")
  if ! _haproxy_wait_port "$port" "$haproxy_pid"; then
    echo "haproxy_start: haproxy did not answer on 127.0.0.1:$port:" >&2
    tail -20 "$dir/haproxy.out" >&2 2>/dev/null
    return 1
  fi
}

# haproxy_cpu_ticks [PID]: one process, its threads are counted in /proc/PID/stat; read with
# the rule every frontend is read with (tree_cpu_ticks, bench/lib.sh), which for a process
# that forks nothing is cpu_ticks.
haproxy_cpu_ticks() { tree_cpu_ticks "${1:-$haproxy_pid}"; }
