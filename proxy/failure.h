// Every way a request can end without a backend answer, in one table: the HTTP status the
// client gets, the phrase for the error log and page, and a short label for metrics/logs.
#pragma once

#include <cstdint>
#include <string_view>

namespace proxy {

enum class Failure : std::uint8_t {
  none,
  bad_request,              // request head or body framing violates RFC 9112 (400)
  bad_path,                 // dot segments, encoded slashes, bad escapes (400)
  uri_too_long,             // request line over limits.header_size (414)
  headers_too_large,        // header section over the size or count limit (431)
  body_too_large,           // Content-Length or received body over limits.body_size (413)
  unsupported_coding,       // a transfer coding we do not know (501)
  unsupported_version,      // HTTP/2.0 and friends in an HTTP/1.x request line (505)
  expectation_failed,       // an Expect other than 100-continue (417)
  method_not_allowed,       // method outside HEAD GET POST PUT DELETE OPTIONS PATCH (405)
  no_route,                 // no route matches the path (404)
  header_timeout,           // the request head did not arrive within limits.header_timeout (408)
  body_timeout,             // no request body byte within limits.body_timeout (408)
  queue_full,               // the backend's wait queue is at max_queue (503)
  queue_timeout,            // waited queue_timeout for a backend connection (503)
  backends_down,            // every server of the backend group is marked down (503)
  backend_connect,          // connection refused or reset while connecting (502)
  backend_connect_timeout,  // no connection within connect_timeout (502)
  backend_reset,            // backend closed or reset before a complete response head (502)
  backend_protocol,         // invalid response from the backend (502)
  backend_timeout,          // no response head within response_timeout (504)
  shutting_down,            // the frontend is draining (503)
};

struct FailureInfo {
  int status;
  std::string_view phrase;  // human readable, for the error page and the error log
  std::string_view label;   // bounded label for metrics and the access log
};

const FailureInfo& failure_info(Failure failure);

// The reason phrase of an HTTP status code ("Not Found"), "" when unknown.
std::string_view status_reason(int status);

}  // namespace proxy
