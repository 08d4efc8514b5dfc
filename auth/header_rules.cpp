// Header-name classification, called for every header of every request: no allocation, no
// locale, ASCII case folding by hand. Pure functions; any thread.
#include "auth/header_rules.h"

#include <cstddef>

namespace auth {
namespace {

constexpr char ascii_lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

// The folding CGI/WSGI backends apply: case and '_' versus '-'.
constexpr char cgi_fold(char c) { return c == '_' ? '-' : ascii_lower(c); }

// `lower` is lowercase with '-'; compares name's first lower.size() bytes under cgi_fold.
constexpr bool cgi_starts_with(std::string_view name, std::string_view lower) {
  if (name.size() < lower.size()) return false;
  for (std::size_t i = 0; i < lower.size(); ++i)
    if (cgi_fold(name[i]) != lower[i]) return false;
  return true;
}

constexpr bool cgi_equals(std::string_view name, std::string_view lower) {
  return name.size() == lower.size() && cgi_starts_with(name, lower);
}

// Plain ASCII case-insensitive equality; `lower` is lowercase.
constexpr bool iequals(std::string_view name, std::string_view lower) {
  if (name.size() != lower.size()) return false;
  for (std::size_t i = 0; i < lower.size(); ++i)
    if (ascii_lower(name[i]) != lower[i]) return false;
  return true;
}

}  // namespace

bool is_reserved_request_header(std::string_view name) {
  if (name.empty()) return false;
  // The first byte picks the only candidates; lengths are checked by the comparisons.
  switch (ascii_lower(name[0])) {
    case 'c':
      return cgi_starts_with(name, "cms-");
    case 's':
      return cgi_starts_with(name, "ssl-client");
    case 'h':
      return cgi_equals(name, "https");
    case 'x':
      return cgi_starts_with(name, "x-forwarded-");
    case 'f':
      return cgi_equals(name, "forwarded");
    case 'v':
      return cgi_equals(name, "via");
    default:
      return false;
  }
}

bool is_hop_by_hop_header(std::string_view name) {
  switch (name.size()) {
    case 2:
      return iequals(name, "te");
    case 7:
      return iequals(name, "upgrade") || iequals(name, "trailer");
    case 10:
      return iequals(name, "connection") || iequals(name, "keep-alive");
    case 16:
      return iequals(name, "proxy-connection");
    case 17:
      return iequals(name, "transfer-encoding");
    case 18:
      return iequals(name, "proxy-authenticate");
    case 19:
      return iequals(name, "proxy-authorization");
    default:
      return false;
  }
}

}  // namespace auth
