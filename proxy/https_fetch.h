// A small blocking HTTPS GET for the user-map refresher: it fetches CRIC's JSON with a robot
// certificate and verifies the server against the configured CAs and the URL's host name.
// Never used on an event loop (it blocks for up to `timeout`); one call = one connection.
//
// What it does: TLS 1.2 or later; the server certificate is verified and must match the URL's
// host (DNS name, or iPAddress for an IP literal; SNI is sent for names only). One request,
// "GET <path?query> HTTP/1.1" with Host, "User-Agent: cmsfront", "Accept: application/json" and
// "Connection: close"; 1xx heads are skipped; the body is framed by Content-Length, chunked, or
// the end of the connection, which must then be a TLS close_notify (a bare TCP close could be a
// cut). No redirects, no compression, no proxies, no CRL checks on the server's chain.
//
// Threads: any thread, any number at once (no shared state). SIGPIPE is blocked in the calling
// thread for the duration of the call. Name resolution (getaddrinfo) is not bounded by
// `timeout`: the resolver's own timeouts apply to it.
#pragma once

#include <chrono>
#include <cstddef>
#include <string>

namespace proxy {

struct FetchSettings {
  // https://host[:port][/path][?query]: host a DNS name, IPv4 or [IPv6]; no userinfo, no
  // fragment, path and query as RFC 3986 allows (%XX)
  std::string url;
  std::string certificate;  // client certificate chain, PEM (may also hold the key, as a grid
                            // proxy file does); empty: no client certificate
  std::string key;          // its key, PEM, unencrypted; empty: taken from `certificate`
  std::string ca_file;      // CAs to verify the server; both empty: the system default paths
  std::string ca_dir;       // hashed CA directory (e.g. /etc/grid-security/certificates)
  std::chrono::milliseconds timeout{30000};    // the whole exchange, connect to last byte
  std::size_t max_bytes = 256u * 1024 * 1024;  // a longer body is refused
};

struct FetchResult {
  bool ok = false;    // a complete 200 response body is in `body`
  int status = 0;     // HTTP status when a response head arrived, else 0
  std::string body;   // empty unless ok
  std::string error;  // why not ok, one line for the log, naming the step that failed:
                      // "connect 10.0.0.1:443: Connection refused",
                      // "TLS handshake with host (10.0.0.1:443): certificate verify failed: ...",
                      // "HTTP 503 Service Unavailable: <start of the body>",
                      // "timed out after 30s (reading the response from ...)",
                      // "response larger than N bytes", "response body truncated: ..."
};

// Never throws for network or protocol trouble: every failure is in FetchResult::error.
FetchResult https_get(const FetchSettings& settings);

}  // namespace proxy
