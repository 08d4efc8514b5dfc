// What one finished request leaves behind for the access log and the metrics: filled by the
// client connection and its exchange while the request runs, handed over once when it ends
// (answered, failed, or abandoned by the client). Views point into the connection's buffers
// and are valid only during that hand-over: the access log copies what it keeps.
//
// Thread: the worker that served the request.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace proxy {

inline constexpr std::size_t kNoIndex = static_cast<std::size_t>(-1);

struct RequestRecord {
  std::uint64_t connection_id = 0;
  std::uint64_t request_number = 0;  // 1, 2, ... on its connection
  std::int64_t start_unix_us = 0;    // wall clock when the request head was complete
  std::uint64_t duration_us = 0;     // request head complete -> last response byte queued
  std::uint64_t backend_us = 0;      // backend connection obtained -> response complete; 0 = none
  std::uint64_t queue_us = 0;        // time spent waiting for a backend connection

  // The request as the client sent it.
  std::string_view method;        // "GET", ... (as sent)
  std::string_view target;        // request-target as sent (path?query)
  std::string_view path;          // path part only (no query)
  std::string_view http_version;  // "HTTP/1.1", "HTTP/1.0" ("HTTP/2" later)
  std::string_view host;          // Host header ("-" when absent)
  std::string_view referer;       // "" when absent
  std::string_view user_agent;    // "" when absent
  std::string_view client_ip;
  unsigned local_port = 0;  // the listener's port

  // The answer.
  int status = 0;                    // 0: no response was started (client gone first)
  std::uint64_t bytes_in = 0;        // request head + body bytes read from the client
  std::uint64_t bytes_out = 0;       // response head + body bytes queued to the client
  std::uint64_t body_bytes_out = 0;  // response body bytes only
  std::size_t route = kNoIndex;      // index into the route table; kNoIndex = none matched
  std::size_t backend = kNoIndex;    // backend group index; kNoIndex = answered locally
  std::string_view failure;          // failure label ("backend_timeout", ...) or "" when none
  bool client_aborted = false;       // the client went away before the response was complete

  // TLS and authentication.
  std::string_view tls_protocol;  // "TLSv1.3", ... or "" on plain HTTP
  std::string_view tls_cipher;    // "TLS_AES_128_GCM_SHA256", ... or ""
  std::string_view client_dn;     // presented leaf's subject (mod_ssl's SSL_CLIENT_S_DN), "" none
  std::string_view user_dn;       // the verified user's DN, "" when not authenticated
  std::string_view auth_method;   // "X509Cert", "X509Proxy", "X509LimitedProxy" or "None"
  std::string_view auth_result;   // "ok", "none", or the denial label ("revoked", ...)
};

}  // namespace proxy
