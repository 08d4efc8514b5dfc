#include "proxy/failure.h"

#include <array>

namespace proxy {
namespace {

constexpr std::array<FailureInfo, 22> kFailures = {{
    {200, "no failure", "none"},
    {400, "the request is malformed", "bad_request"},
    {400, "the request path is not acceptable", "bad_path"},
    {414, "the request line is too long", "uri_too_long"},
    {431, "the request headers are too large", "headers_too_large"},
    {413, "the request body is too large", "body_too_large"},
    {501, "the transfer coding is not implemented", "unsupported_coding"},
    {505, "the HTTP version is not supported", "unsupported_version"},
    {417, "the expectation cannot be met", "expectation_failed"},
    {405, "the method is not allowed", "method_not_allowed"},
    {404, "no service is configured for this path", "no_route"},
    {408, "the request head took too long to arrive", "header_timeout"},
    {408, "the request body stopped arriving", "body_timeout"},
    {503, "the service has too many waiting requests", "queue_full"},
    {503, "the service did not become available in time", "queue_timeout"},
    {503, "every server of the service is down", "backends_down"},
    {502, "the service refused the connection", "backend_connect"},
    {502, "the service did not accept the connection in time", "backend_connect_timeout"},
    {502, "the service closed the connection", "backend_reset"},
    {502, "the service sent an invalid response", "backend_protocol"},
    {504, "the service did not answer in time", "backend_timeout"},
    {503, "the frontend is shutting down", "shutting_down"},
}};

}  // namespace

const FailureInfo& failure_info(Failure failure) {
  return kFailures.at(static_cast<std::size_t>(failure));
}

std::string_view status_reason(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 101:
      return "Switching Protocols";
    case 103:
      return "Early Hints";
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 202:
      return "Accepted";
    case 204:
      return "No Content";
    case 206:
      return "Partial Content";
    case 301:
      return "Moved Permanently";
    case 302:
      return "Found";
    case 303:
      return "See Other";
    case 304:
      return "Not Modified";
    case 307:
      return "Temporary Redirect";
    case 308:
      return "Permanent Redirect";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 409:
      return "Conflict";
    case 411:
      return "Length Required";
    case 413:
      return "Content Too Large";
    case 414:
      return "URI Too Long";
    case 417:
      return "Expectation Failed";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "";
  }
}

}  // namespace proxy
