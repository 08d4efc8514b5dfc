// Parsers for the value syntaxes of the configuration file: durations, sizes, listener
// addresses and backend URLs. They know nothing about TOML and never throw; each returns the
// value or a one-line reason that names the offending text, e.g.
// "invalid duration '5x': unknown unit 'x' (expected ms, s, m, h or d)".
// load_config() prefixes the reason with the key and the file position.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "proxy/config.h"

namespace proxy {

// Either a value or the reason there is none (error is empty exactly when value is set).
template <typename T>
struct Parsed {
  std::optional<T> value;
  std::string error;

  static Parsed ok(T v) { return Parsed{std::optional<T>(std::move(v)), {}}; }
  static Parsed fail(std::string reason) { return Parsed{std::nullopt, std::move(reason)}; }
  explicit operator bool() const { return value.has_value(); }
};

// "250ms", "5s", "4m", "1h", "2d" and combinations in decreasing unit order ("1h30m",
// "1m30s500ms"); whole numbers only. "0" alone needs no unit. Rejected: empty text, a sign,
// a missing or unknown unit, a unit repeated or out of order, spaces, fractions, and totals
// beyond what a 64-bit millisecond count holds.
[[nodiscard]] Parsed<Duration> parse_duration(std::string_view text);

// Byte counts: "0", "512", "512B", decimal units "1KB" (1000), "MB", "GB", "TB" and binary
// units "64KiB" (65536), "MiB", "GiB", "TiB". Case matters; no spaces, signs or fractions;
// totals must fit 64 bits.
[[nodiscard]] Parsed<std::uint64_t> parse_size(std::string_view text);

// A listener address: "IPv4:port" or "[IPv6]:port" with a numeric address (no host names, so a
// listener never depends on DNS) and a port from 1 to 65535. The result keeps `text`.
[[nodiscard]] Parsed<SocketAddress> parse_socket_address(std::string_view text);

// A backend server: "http://host[:port][/]", host a name, an IPv4 address or "[IPv6]", port 80
// when omitted. No user info, query, fragment or path other than "/". "https://" is refused
// (not supported yet). With `resolve`, the host is looked up once with getaddrinfo (any
// family) and the first address is kept; without it only numeric hosts get an address and a
// name leaves `address.length` at 0 (for checking a file on a machine without DNS).
[[nodiscard]] Parsed<BackendServer> parse_backend_url(std::string_view url, bool resolve = true);

}  // namespace proxy
