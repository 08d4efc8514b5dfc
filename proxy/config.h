// The configuration: parsed once from TOML into plain immutable data (the only toml++ user).
//
// load_config() reports every problem it finds, not just the first, each with file:line:column,
// so an operator fixes a file in one pass; `cmsfront --check-config` prints them and exits 78.
// Defaults live in the member initialisers below and nowhere else.
// A loaded Config is shared as std::shared_ptr<const Config>: every connection keeps the
// snapshot it started with until it ends.
#pragma once

#include <sys/socket.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "auth/cms_headers.h"
#include "auth/policy.h"
#include "routes/route_table.h"

namespace proxy {

using Duration = std::chrono::milliseconds;

// A position in a configuration file, for messages about values found valid by the loader
// but refused later (e.g. a certificate OpenSSL cannot parse).
struct SourceLocation {
  std::string file;
  int line = 0;
  int column = 0;
  std::string format() const;  // "file:line:column"
};

struct SocketAddress {
  sockaddr_storage storage{};
  socklen_t length = 0;
  std::string text;  // as written in the configuration, e.g. "127.0.0.1:8443"
};

// The error log's lines on stderr: "text" (`cmsfront[level]: message`, with a syslog priority
// prefix that journald turns into the entry's level when stderr is the journal) or "json"
// (one object per line: time, level, message).
enum class LogFormat : std::uint8_t { text, json };

struct ServerSettings {
  unsigned workers = 0;  // 0 = one per CPU core (resolved by the loader)
  std::string user;      // drop privileges to this user after binding; empty = no
  std::size_t max_connections = 20000;
  Duration shutdown_timeout = std::chrono::seconds(30);
  // How often files loaded at start (CA directory and CRLs, server certificates and keys,
  // session ticket keys) are checked for changes; a changed file is reloaded without a restart.
  // SIGHUP reloads them at once. Must be >= 100ms.
  Duration file_check_interval = std::chrono::seconds(5);
  LogFormat log_format = LogFormat::text;
};

// Whether the server asks the client for a certificate in the TLS handshake.
enum class ClientCertificates : std::uint8_t {
  off,      // never asked
  request,  // asked; a missing or failing certificate leaves the connection unauthenticated
  require,  // asked; the handshake fails without a valid one
};

// How certificate revocation lists in ca_dir are enforced.
enum class CrlPolicy : std::uint8_t {
  require,     // every CA of a chain must have a current CRL (missing CRL = rejected)
  if_present,  // a CA without a CRL is accepted; one with a CRL is checked
  off,         // CRLs are not loaded
};

// An additional server certificate, served to clients whose SNI names one of the names in its
// subjectAltName (dNSName entries, "*.example.org" wildcards match one label).
struct SniCertificate {
  std::string certificate;  // PEM chain, leaf first
  std::string key;
  SourceLocation location;  // of the table entry
};

struct TlsProfile {
  std::string name;
  std::string certificate;  // PEM chain, leaf first; served when no SNI certificate matches
  std::string key;
  SourceLocation certificate_location;
  SourceLocation key_location;
  int min_protocol = 0;  // TLS1_2_VERSION or TLS1_3_VERSION (OpenSSL constants)
  int max_protocol = 0;
  std::vector<std::string> alpn = {"http/1.1"};  // only "http/1.1" accepted until h2 lands
  std::vector<SniCertificate> sni_certificates;  // key "sni_certificates", array of tables

  // Client certificates (grid X.509, proxies). ca_dir is required unless this is off.
  ClientCertificates client_certificates = ClientCertificates::off;
  std::string ca_dir;  // <hash>.N CA certificates and <hash>.rN CRLs
  SourceLocation ca_dir_location;
  CrlPolicy crl = CrlPolicy::require;
  Duration crl_grace = std::chrono::hours(24);  // accept a CRL this long past its nextUpdate
  int verify_depth = 10;                        // 1..100
  bool proxy_certificates = true;               // RFC 3820 and legacy Globus proxies
  // PEM file of CA certificates named in the CertificateRequest; empty = name none (the
  // default: IGTF has ~150 CAs and sending their names costs every handshake).
  std::string client_ca_names;
  // Verified chains remembered (keyed by the chain's SHA-256; emptied whenever the CA
  // directory changes) so a returning client skips chain and CRL checks. 0 = verify always.
  std::size_t verification_cache_size = 20000;

  // Sessions. The ticket key file holds one or more 80-byte keys (16 name, 32 HMAC, 32 AES;
  // `openssl rand 80`), the first encrypts and all decrypt; empty = random keys per process.
  std::string session_ticket_keys;
  SourceLocation session_ticket_keys_location;
  Duration session_lifetime = std::chrono::hours(1);  // 1s..7d; caps cache and tickets
  std::size_t session_cache_size = 20480;             // 0 = no server-side session cache
};

struct ListenerSettings {
  SocketAddress address;
  std::string tls;                 // profile name; empty = plain HTTP
  bool redirect_to_https = false;  // plain listeners only: answer every request with a 301
};

struct Limits {
  std::size_t header_size = 64 * 1024;
  std::size_t header_count = 100;
  std::uint64_t body_size = 0;  // 0 = unlimited
  Duration header_timeout = std::chrono::seconds(20);
  Duration idle_timeout = std::chrono::seconds(75);
  Duration handshake_timeout = std::chrono::seconds(10);
  Duration body_timeout = std::chrono::seconds(60);  // no body byte in either direction
};

enum class Balance : std::uint8_t { round_robin, least_connections, random };

struct BackendServer {
  std::string url;        // "http://host:port" as configured
  std::string host_port;  // "host:port" for logs
  SocketAddress address;  // resolved at load time
};

struct BackendSettings {
  std::string name;
  std::vector<BackendServer> servers;
  unsigned max_connections = 32;  // per server, whole process
  unsigned max_queue = 1000;      // whole process
  Duration queue_timeout = std::chrono::seconds(10);
  Duration connect_timeout = std::chrono::seconds(5);
  Duration response_timeout = std::chrono::seconds(300);
  Duration idle_timeout = std::chrono::seconds(60);
  Balance balance = Balance::round_robin;
  // How cms-authn-hmac is computed for this group's servers; unset: [auth] hmac_encoding.
  std::optional<auth::HmacEncoding> hmac_encoding;
};

// A route's `auth` (route key "auth"). Every route must state it: a forgotten key must not
// silently publish a protected service.
using AuthPolicy = auth::Policy;

// [metrics]: the Prometheus scrape endpoint. Absent section: no endpoint.
struct MetricsSettings {
  bool enabled = false;   // the section is present
  SocketAddress address;  // default 127.0.0.1:9091 (set by the loader when enabled)
  std::string path = "/metrics";
};

enum class AccessLogFormat : std::uint8_t { cmsweb, json };

// [access_log]: one line per request, written by a dedicated thread. Absent section: none.
struct AccessLogSettings {
  bool enabled = false;
  std::string path;  // "-" = standard output; reopened on SIGUSR1 (logrotate)
  AccessLogFormat format = AccessLogFormat::cmsweb;
  std::size_t queue_lines = 8192;  // per worker; a full queue drops lines (counted), never waits
};

// What to do with a verified certificate whose DN the user map does not know.
enum class UnknownUsers : std::uint8_t {
  reject,   // `cert` routes answer 403; `optional` routes forward it as anonymous (NONE)
  forward,  // forwarded with cms-authn-method and cms-authn-dn only (signed)
};

// [auth]: the CMS identity given to backends. Required (hmac_key and a user map source) as
// soon as one route has auth != "none".
struct AuthSettings {
  std::string trouble_page = "/auth/trouble";  // always answered locally with 200
  std::string hmac_key;  // file whose whole content (raw bytes) signs cms-authn-hmac
  // The CRIC JSON map: a local file (refreshed by another job) and/or CRIC's URL, fetched by
  // cmsfront. With both, the file's records win for the DNs they name.
  std::string user_map;
  std::string user_map_url;
  // Where the last good download of user_map_url is kept, so a restart while CRIC is down
  // starts with the full map. Required with user_map_url.
  std::string user_map_cache;
  Duration user_map_refresh = std::chrono::minutes(4);   // URL fetch period and file re-check
  Duration user_map_timeout = std::chrono::seconds(30);  // one download, connect to last byte
  // The robot certificate presenting cmsfront to CRIC, and the CAs that verify CRIC's server
  // (empty: the system's default CA paths).
  std::string user_map_certificate;
  std::string user_map_key;
  std::string user_map_ca_file;
  std::string user_map_ca_dir;
  // A new map with fewer users than (100 - this)% of the last good one is refused as a
  // probable partial answer (logged). 100 turns the check off.
  unsigned user_map_max_drop_percent = 50;
  UnknownUsers unknown_users = UnknownUsers::reject;
  auth::HmacEncoding hmac_encoding = auth::HmacEncoding::python3;  // backends may override
};

struct Config {
  std::string source_file;
  ServerSettings server;
  std::vector<ListenerSettings> listeners;
  std::map<std::string, TlsProfile> tls;
  Limits limits;
  std::vector<BackendSettings> backends;
  AuthSettings auth;
  MetricsSettings metrics;
  AccessLogSettings access_log;
  routes::RouteTable routes;  // RouteRule::backend_index indexes `backends`
};

// One problem found in the file. Positions are 1-based and point at the offending value, key
// or table header; a problem without a position (the file cannot be read, a required section
// is missing) has line and column 0 and formats as "file:0:0: message", e.g.
// "/etc/cmsfront.toml:0:0: cannot read configuration: No such file or directory".
struct ConfigError {
  SourceLocation location;  // line/column 0 when the problem has no position (file unreadable)
  std::string message;
  std::string format() const;  // "file:line:column: message"
};

struct ConfigLoadResult {
  std::shared_ptr<const Config> config;  // null when errors is not empty
  std::vector<ConfigError> errors;
};

// Checks that need the machine the file is meant for; both are on in production. Tests and a
// config check on another machine may turn them off.
struct ConfigLoadOptions {
  bool check_files = true;       // certificate, key, ca_dir and ticket files must be readable now
  bool resolve_backends = true;  // look backend host names up now (else address.length == 0)
};

// Never throws. Errors are sorted by position (file order); config is null iff errors is not
// empty.
ConfigLoadResult load_config(const std::string& path, const ConfigLoadOptions& options = {});

}  // namespace proxy
