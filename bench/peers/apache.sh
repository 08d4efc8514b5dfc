# shellcheck shell=bash
# Apache httpd 2.4 (event MPM + mod_ssl + mod_proxy_http) as a peer frontend for the bench
# drivers. Sourced after bench/lib.sh (it uses `pids`, `tree_cpu_ticks`); defines functions only.
#
#   apache_install                      Debian's apache2, if missing (the service is never started)
#   apache_write_config DIR PORT BACKEND_PORT CA_BUNDLE CRL_BUNDLE SERVER_CERT SERVER_KEY WORKERS
#                       [CONNECTIONS [H2 [PROCESSES]]]
#   apache_start DIR CPUSET             sets apache_pid (the parent) and apache_child_pid
#   apache_cpu_ticks [PID]              tree_cpu_ticks of the parent: utime+stime of the parent
#                                       and its live children, and its reaped children
#                                       (cutime+cstime), in clock ticks
#   apache_version                      one line
#
# Configured like cmsweb's Apache frontend, minus its mod_perl auth handler: TLS 1.2/1.3,
# SSLVerifyClient optional, depth 10, CRLs enforced for every certificate of the chain
# (SSLCARevocationCheck chain: a CA without a CRL in CRL_BUNDLE makes its certificates fail),
# the client DN to the backend in SSL_CLIENT_S_DN (mod_ssl's RFC 2253 form:
# "CN=...,OU=...,DC=ch"), 403 unless SSL_CLIENT_VERIFY is SUCCESS, keep-alive (a connection
# pool) to the backend, no access log.
#
# Process model: the parent (root) does not serve; it forks PROCESSES children (default ONE:
# ServerLimit = StartServers = PROCESSES) that run as www-data with WORKERS threads each. The
# event MPM forces MaxRequestWorkers <= ServerLimit * ThreadsPerChild, so MaxRequestWorkers =
# PROCESSES * WORKERS (WORKERS with one process): that is the number of connections in a
# handshake or a request at the same time. Idle keep-alive connections are parked by the
# event listener and do not hold a thread; each child accepts up to ThreadsPerChild *
# (AsyncRequestWorkerFactor + 1) connections, and the factor is set here so that this is >=
# CONNECTIONS (default 1,200: 1,000 concurrent clients fit) whatever WORKERS is. Clients beyond
# that wait in the listen backlog (ListenBacklog 4096). Give it WORKERS >= 64 for the
# handshake runs: a thread blocks for the whole handshake. MaxSpareThreads is above the
# threads of all the children together, so none is stopped for being idle: the PROCESSES
# children live as long as the parent (bench/run.sh's WORKERS = N gives Apache N children,
# one per core, as the one-core runs give it one).
#
# H2=1 loads mod_http2 (Debian's apache2-bin ships it) and sets `Protocols h2 http/1.1` on the
# TLS virtual host: HTTP/2 towards clients, HTTP/1.1 to the backend. Without the module file
# the line is left out (clients asking for h2 then get HTTP/1.1 or nothing in ALPN).
#
# Modules: Debian builds mod_unixd (User/Group), mod_so, mod_log_config in; the config loads
# mpm_event, authz_core, setenvif, headers, socache_shmcb, ssl, proxy, proxy_http (and http2
# with H2=1) from $apache_modules.
#
# Checked (3,000 requests, 1,000 concurrent clients, a handshake each, WORKERS=64, one core):
# all 200, the error log says "server reached MaxRequestWorkers" (the rest queue in the
# backlog), child RSS 28 MB.
#
# CPU time: the work happens in the children, so read apache_cpu_ticks (not cpu_ticks
# $apache_pid). By hand: for p in $apache_pid $(ps -o pid= --ppid $apache_pid); do
# cpu_ticks $p; done, summed (plus the parent's cutime+cstime for children it reaped).

apache_bin=${APACHE_BIN:-/usr/sbin/apache2}
apache_modules=${APACHE_MODULES:-/usr/lib/apache2/modules}

apache_install() { install_service_package apache2 "$apache_bin"; }

apache_version() {
  "$apache_bin" -v 2>/dev/null | awk -F': ' '/^Server version:/ && !n++ {print $2}'
}

# apache_write_config DIR PORT BACKEND_PORT CA_BUNDLE CRL_BUNDLE SERVER_CERT SERVER_KEY WORKERS
#                     [CONNECTIONS [H2 [PROCESSES]]]
apache_write_config() {
  local dir=$1 port=$2 backend_port=$3 ca=$4 crl=$5 cert=$6 key=$7 workers=${8:-64}
  local connections=${9:-1200} h2=${10:-0} processes=${11:-1}
  ((connections < 1200)) && connections=1200
  local factor=$(((connections + workers - 1) / workers))
  ((factor < 2)) && factor=2
  local user=www-data group=www-data
  id -u "$user" >/dev/null 2>&1 || { user=nobody; group=nogroup; }
  mkdir -p "$dir/htdocs"
  # The child runs as $user: it must be able to reach DIR (mktemp dirs are 0700). Keys and
  # CRLs are read by the root parent before the fork, so only DIR itself needs opening.
  chmod 755 "$dir"
  local m=$apache_modules h2_module="" h2_protocols=""
  local children="One child process with $workers threads"
  ((processes > 1)) && children="$processes child processes with $workers threads each"
  if [[ "$h2" == 1 && -f "$m/mod_http2.so" ]]; then
    h2_module="LoadModule http2_module $m/mod_http2.so"
    h2_protocols="Protocols h2 http/1.1"
  fi
  cat >"$dir/httpd.conf" <<EOF
# Written by bench/peers/apache.sh: a self-contained Apache 2.4 TLS reverse proxy.
ServerRoot "$dir"
DefaultRuntimeDir "$dir"
PidFile "$dir/httpd.pid"
ErrorLog "$dir/error.log"
LogLevel warn
Mutex pthread default
ServerName 127.0.0.1
User $user
Group $group

LoadModule mpm_event_module $m/mod_mpm_event.so
LoadModule authz_core_module $m/mod_authz_core.so
LoadModule setenvif_module $m/mod_setenvif.so
LoadModule headers_module $m/mod_headers.so
LoadModule socache_shmcb_module $m/mod_socache_shmcb.so
LoadModule ssl_module $m/mod_ssl.so
LoadModule proxy_module $m/mod_proxy.so
LoadModule proxy_http_module $m/mod_proxy_http.so
$h2_module

# $children (see bench/peers/apache.sh).
StartServers $processes
ServerLimit $processes
ThreadLimit $workers
ThreadsPerChild $workers
MaxRequestWorkers $((processes * workers))
MinSpareThreads 1
MaxSpareThreads $((processes * workers + 1))
AsyncRequestWorkerFactor $factor
MaxConnectionsPerChild 0
ListenBacklog 4096
KeepAlive On
KeepAliveTimeout 60
MaxKeepAliveRequests 0
Timeout 60
EnableSendfile Off
HostnameLookups Off
TraceEnable Off
DocumentRoot "$dir/htdocs"
# No CustomLog: the access log is off.

Listen 127.0.0.1:$port https

SSLRandomSeed startup builtin
SSLRandomSeed connect builtin
SSLSessionCache "shmcb:$dir/ssl_scache(512000)"
SSLSessionCacheTimeout 300
SSLPassPhraseDialog builtin

<VirtualHost 127.0.0.1:$port>
  ServerName 127.0.0.1
  SSLEngine on
  $h2_protocols
  SSLProtocol -all +TLSv1.2 +TLSv1.3
  SSLHonorCipherOrder off
  SSLCertificateFile "$cert"
  SSLCertificateKeyFile "$key"
  SSLCACertificateFile "$ca"
  SSLCARevocationFile "$crl"
  SSLCARevocationCheck chain
  SSLVerifyClient optional
  SSLVerifyDepth 10

  ProxyRequests Off
  ProxyPreserveHost On
  ProxyPass / http://127.0.0.1:$backend_port/ retry=0 ttl=120
  ProxyPassReverse / http://127.0.0.1:$backend_port/
  # The DN mod_ssl verified, never one the client sent.
  RequestHeader unset SSL_CLIENT_S_DN
  RequestHeader set SSL_CLIENT_S_DN "%{SSL_CLIENT_S_DN}s"

  <Location />
    Require expr %{SSL_CLIENT_VERIFY} == 'SUCCESS'
  </Location>
</VirtualHost>
EOF
}

# _apache_wait_port PORT PID: until a TLS request to PORT gets any HTTP answer.
_apache_wait_port() {
  local port=$1 pid=$2 i code
  for ((i = 0; i < 150; i++)); do
    kill -0 "$pid" 2>/dev/null || return 1
    code=$(curl -sk -o /dev/null -m 2 -w '%{http_code}' "https://127.0.0.1:$port/" 2>/dev/null) || true
    [[ -n "$code" && "$code" != 000 ]] && return 0
    sleep 0.1
  done
  return 1
}

# apache_start DIR CPUSET: needs DIR/httpd.conf from apache_write_config.
apache_start() {
  local dir=$1 cpuset=$2 port
  port=$(sed -n 's/^Listen 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$dir/httpd.conf" | head -1)
  rm -f "$dir/httpd.pid"
  taskset -c "$cpuset" "$apache_bin" -d "$dir" -f "$dir/httpd.conf" -DFOREGROUND \
    >"$dir/apache.out" 2>&1 &
  apache_pid=$!
  pids+=("$apache_pid")
  if ! _apache_wait_port "$port" "$apache_pid"; then
    echo "apache_start: apache2 did not answer on 127.0.0.1:$port:" >&2
    tail -20 "$dir/apache.out" "$dir/error.log" >&2 2>/dev/null
    return 1
  fi
  # shellcheck disable=SC2034  # for the caller (memory of the child that serves)
  apache_child_pid=$(ps -o pid= --ppid "$apache_pid" | awk 'NR == 1 {print $1}')
}

# apache_cpu_ticks [PID]: utime+stime of the parent and every live child, plus what the parent
# has already collected from children it reaped (cutime+cstime), in clock ticks: the rule
# every frontend is read with (tree_cpu_ticks, bench/lib.sh).
apache_cpu_ticks() { tree_cpu_ticks "${1:-$apache_pid}"; }
