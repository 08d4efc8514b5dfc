// Request path and query checks: one pass over the bytes, a 256-entry class table, no
// allocation. Pure functions; any thread.
#include "routes/request_path.h"

#include <array>
#include <cstdint>

namespace routes {
namespace {

constexpr std::uint8_t kPathChar = 1;   // RFC 3986 pchar (without '%') and '/'
constexpr std::uint8_t kQueryChar = 2;  // RFC 3986 query: pchar, '/', '?'

constexpr std::array<std::uint8_t, 256> make_classes() {
  std::array<std::uint8_t, 256> classes{};
  auto both = [&](unsigned char c) { classes[c] = kPathChar | kQueryChar; };
  for (unsigned char c = 'a'; c <= 'z'; ++c) both(c);
  for (unsigned char c = 'A'; c <= 'Z'; ++c) both(c);
  for (unsigned char c = '0'; c <= '9'; ++c) both(c);
  for (unsigned char c : std::string_view("-._~!$&'()*+,;=:@/")) both(c);
  classes[static_cast<unsigned char>('?')] = kQueryChar;
  return classes;
}

constexpr std::array<std::uint8_t, 256> kClasses = make_classes();

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Decodes the escape at s[i] == '%'; -1 when malformed.
int decode_escape(std::string_view s, std::size_t i) {
  if (s.size() - i < 3) return -1;
  int hi = hex_value(s[i + 1]);
  int lo = hex_value(s[i + 2]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

bool is_dot_segment(std::string_view segment) { return segment == "." || segment == ".."; }

}  // namespace

std::optional<std::string_view> check_request_path(std::string_view path) {
  if (path.empty() || path.front() != '/') return "path does not start with '/'";
  std::size_t segment_start = 1;
  for (std::size_t i = 1; i < path.size(); ++i) {
    char c = path[i];
    if (c == '/') {
      if (is_dot_segment(path.substr(segment_start, i - segment_start)))
        return "dot segment in path";
      segment_start = i + 1;
    } else if (c == '%') {
      int value = decode_escape(path, i);
      if (value < 0) return "bad percent-escape in path";
      if (value == '.') return "encoded dot in path";
      if (value == '/') return "encoded slash in path";
      if (value == '\\') return "encoded backslash in path";
      i += 2;
    } else if (c == '\\') {
      return "backslash in path";
    } else if ((kClasses[static_cast<unsigned char>(c)] & kPathChar) == 0) {
      return "invalid character in path";
    }
  }
  if (is_dot_segment(path.substr(segment_start))) return "dot segment in path";
  return std::nullopt;
}

std::optional<std::string_view> check_request_query(std::string_view query) {
  for (std::size_t i = 0; i < query.size(); ++i) {
    char c = query[i];
    if (c == '%') {
      if (decode_escape(query, i) < 0) return "bad percent-escape in query";
      i += 2;
    } else if ((kClasses[static_cast<unsigned char>(c)] & kQueryChar) == 0) {
      return "invalid character in query";
    }
  }
  return std::nullopt;
}

}  // namespace routes
