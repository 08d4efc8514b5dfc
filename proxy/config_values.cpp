#include "proxy/config_values.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <limits>
#include <memory>

namespace proxy {
namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_lower(char c) { return c >= 'a' && c <= 'z'; }
bool is_alpha(char c) { return is_lower(c) || (c >= 'A' && c <= 'Z'); }

// Reads the run of digits at `pos` into `out`; false on overflow. Advances `pos`.
bool read_number(std::string_view text, std::size_t& pos, std::uint64_t& out) {
  out = 0;
  for (; pos < text.size() && is_digit(text[pos]); ++pos) {
    const auto digit = static_cast<std::uint64_t>(text[pos] - '0');
    if (__builtin_mul_overflow(out, std::uint64_t{10}, &out) ||
        __builtin_add_overflow(out, digit, &out)) {
      return false;
    }
  }
  return true;
}

std::string quoted(std::string_view text) { return "'" + std::string(text) + "'"; }

struct Unit {
  std::string_view name;
  std::uint64_t factor;
};

// Largest first: a duration's units must appear in this order.
constexpr std::array<Unit, 5> kDurationUnits{
    {{"d", 86'400'000}, {"h", 3'600'000}, {"m", 60'000}, {"s", 1'000}, {"ms", 1}}};

constexpr std::array<Unit, 9> kSizeUnits{{{"B", 1},
                                          {"KB", 1'000},
                                          {"MB", 1'000'000},
                                          {"GB", 1'000'000'000},
                                          {"TB", 1'000'000'000'000},
                                          {"KiB", std::uint64_t{1} << 10},
                                          {"MiB", std::uint64_t{1} << 20},
                                          {"GiB", std::uint64_t{1} << 30},
                                          {"TiB", std::uint64_t{1} << 40}}};

// "443" -> 443; nothing for an empty, non-numeric or out-of-range (0, > 65535) port.
std::optional<std::uint16_t> parse_port(std::string_view text) {
  if (text.empty() || text.size() > 5) return std::nullopt;
  std::size_t pos = 0;
  std::uint64_t value = 0;
  if (!read_number(text, pos, value) || pos != text.size()) return std::nullopt;
  if (value == 0 || value > 65535) return std::nullopt;
  return static_cast<std::uint16_t>(value);
}

bool is_host_name(std::string_view host) {
  if (host.empty() || host.size() > 253) return false;
  for (char c : host) {
    if (!is_alpha(c) && !is_digit(c) && c != '-' && c != '.') return false;
  }
  return host.front() != '-' && host.front() != '.';
}

// Fills `out` from a numeric IPv4 or IPv6 address (IPv6 without brackets).
bool fill_numeric(const std::string& host, std::uint16_t port, SocketAddress& out) {
  sockaddr_in v4{};
  if (inet_pton(AF_INET, host.c_str(), &v4.sin_addr) == 1) {
    v4.sin_family = AF_INET;
    v4.sin_port = htons(port);
    std::memcpy(&out.storage, &v4, sizeof v4);
    out.length = sizeof v4;
    return true;
  }
  sockaddr_in6 v6{};
  if (inet_pton(AF_INET6, host.c_str(), &v6.sin6_addr) == 1) {
    v6.sin6_family = AF_INET6;
    v6.sin6_port = htons(port);
    std::memcpy(&out.storage, &v6, sizeof v6);
    out.length = sizeof v6;
    return true;
  }
  return false;
}

// Splits "host:port" / "[v6]:port" / "host" / "[v6]". `host` loses its brackets; `port`
// is empty when absent. False when brackets are unbalanced or junk follows them.
bool split_host_port(std::string_view text, std::string_view& host, std::string_view& port,
                     bool& bracketed) {
  bracketed = !text.empty() && text.front() == '[';
  std::size_t host_end = 0;
  if (bracketed) {
    const auto close = text.find(']');
    if (close == std::string_view::npos) return false;
    host = text.substr(1, close - 1);
    host_end = close + 1;
    if (host_end != text.size() && text[host_end] != ':') return false;
  } else {
    host_end = std::min(text.rfind(':'), text.size());
    host = text.substr(0, host_end);
  }
  port = host_end < text.size() ? text.substr(host_end + 1) : std::string_view{};
  if (host_end < text.size() && port.empty()) port = text.substr(host_end);  // lone ':'
  return true;
}

}  // namespace

Parsed<Duration> parse_duration(std::string_view text) {
  using R = Parsed<Duration>;
  const auto fail = [&](std::string_view why) {
    return R::fail("invalid duration " + quoted(text) + ": " + std::string(why));
  };
  if (text.empty()) return fail("empty");
  if (text == "0") return R::ok(Duration{0});
  if (text.front() == '-') return fail("negative durations are not allowed");

  constexpr auto kMax = static_cast<std::uint64_t>(std::numeric_limits<Duration::rep>::max());
  std::uint64_t total = 0;
  std::size_t next_unit = 0;  // index into kDurationUnits: units only get smaller
  std::size_t pos = 0;
  while (pos < text.size()) {
    if (!is_digit(text[pos])) {
      return fail("unexpected character '" + std::string(1, text[pos]) +
                  "' (expected a whole number and a unit, e.g. 30s)");
    }
    std::uint64_t amount = 0;
    if (!read_number(text, pos, amount)) return fail("too large");
    const std::size_t unit_begin = pos;
    while (pos < text.size() && is_alpha(text[pos])) ++pos;
    const auto unit = text.substr(unit_begin, pos - unit_begin);
    if (unit.empty()) {
      if (pos == text.size()) return fail("missing unit (expected ms, s, m, h or d)");
      return fail("unexpected character '" + std::string(1, text[pos]) + "' (whole numbers only)");
    }
    std::size_t index = 0;
    while (index < kDurationUnits.size() && kDurationUnits[index].name != unit) ++index;
    if (index == kDurationUnits.size()) {
      return fail("unknown unit " + quoted(unit) + " (expected ms, s, m, h or d)");
    }
    if (index < next_unit) return fail("each unit may appear once, largest first (e.g. 1h30m)");
    next_unit = index + 1;
    std::uint64_t part = 0;
    if (__builtin_mul_overflow(amount, kDurationUnits[index].factor, &part) ||
        __builtin_add_overflow(total, part, &total) || total > kMax) {
      return fail("too large");
    }
  }
  return R::ok(Duration{static_cast<Duration::rep>(total)});
}

Parsed<std::uint64_t> parse_size(std::string_view text) {
  using R = Parsed<std::uint64_t>;
  const auto fail = [&](std::string_view why) {
    return R::fail("invalid size " + quoted(text) + ": " + std::string(why));
  };
  if (text.empty()) return fail("empty");
  if (text.front() == '-') return fail("negative sizes are not allowed");
  if (!is_digit(text.front())) return fail("expected a whole number of bytes, e.g. 64KiB");
  std::size_t pos = 0;
  std::uint64_t amount = 0;
  if (!read_number(text, pos, amount)) return fail("too large");
  const auto unit = text.substr(pos);
  if (unit.empty()) return R::ok(amount);
  if (!std::all_of(unit.begin(), unit.end(), is_alpha)) {
    return fail("expected a whole number and an optional unit, e.g. 64KiB");
  }
  for (const auto& candidate : kSizeUnits) {
    if (candidate.name != unit) continue;
    std::uint64_t total = 0;
    if (__builtin_mul_overflow(amount, candidate.factor, &total)) return fail("too large");
    return R::ok(total);
  }
  return fail("unknown unit " + quoted(unit) +
              " (expected B, KB, MB, GB, TB, KiB, MiB, GiB or TiB)");
}

Parsed<SocketAddress> parse_socket_address(std::string_view text) {
  using R = Parsed<SocketAddress>;
  const auto fail = [&](std::string_view why) {
    return R::fail("invalid address " + quoted(text) + ": " + std::string(why));
  };
  std::string_view host;
  std::string_view port_text;
  bool bracketed = false;
  if (!split_host_port(text, host, port_text, bracketed) || port_text.empty()) {
    return fail("expected IPv4:port or [IPv6]:port");
  }
  const auto port = parse_port(port_text);
  if (!port) return fail("port must be a number from 1 to 65535");
  if (!bracketed && host.find(':') != std::string_view::npos) {
    return fail("write IPv6 addresses in brackets, e.g. [::]:443");
  }
  SocketAddress address;
  if (!fill_numeric(std::string(host), *port, address) ||
      bracketed != (address.storage.ss_family == AF_INET6)) {
    return fail(quoted(host) + " is not a numeric IP address (listeners take no host names)");
  }
  address.text = std::string(text);
  return R::ok(std::move(address));
}

Parsed<BackendServer> parse_backend_url(std::string_view url, bool resolve) {
  using R = Parsed<BackendServer>;
  const auto fail = [&](std::string_view why) {
    return R::fail("invalid backend URL " + quoted(url) + ": " + std::string(why));
  };
  constexpr std::string_view kHttp = "http://";
  if (url.starts_with("https://")) {
    return R::fail("unsupported backend URL " + quoted(url) +
                   ": https backends are not supported yet");
  }
  if (!url.starts_with(kHttp)) return fail("expected http://host:port");
  const auto rest = url.substr(kHttp.size());
  const auto authority_end = std::min(rest.find_first_of("/?#"), rest.size());
  const auto authority = rest.substr(0, authority_end);
  const auto tail = rest.substr(authority_end);
  if (tail.find_first_of("?#") != std::string_view::npos) {
    return fail("a query or fragment is not allowed");
  }
  if (!tail.empty() && tail != "/") {
    return fail("a path is not allowed (use the route's rewrite)");
  }
  if (authority.find('@') != std::string_view::npos) return fail("user info is not allowed");

  std::string_view host;
  std::string_view port_text;
  bool bracketed = false;
  if (!split_host_port(authority, host, port_text, bracketed) || host.empty()) {
    return fail("missing or malformed host");
  }
  if (!bracketed && host.find(':') != std::string_view::npos) {
    return fail("write IPv6 addresses in brackets, e.g. http://[::1]:8080");
  }
  std::uint16_t port = 80;
  if (!port_text.empty()) {
    const auto parsed_port = parse_port(port_text);
    if (!parsed_port) return fail("port must be a number from 1 to 65535");
    port = *parsed_port;
  }
  BackendServer server;
  server.url = std::string(url);
  const std::string host_string(host);
  server.host_port =
      (bracketed ? "[" + host_string + "]" : host_string) + ":" + std::to_string(port);
  server.address.text = server.host_port;
  if (bracketed) {
    if (!fill_numeric(host_string, port, server.address) ||
        server.address.storage.ss_family != AF_INET6) {
      return fail(quoted(host) + " is not an IPv6 address");
    }
    return R::ok(std::move(server));
  }
  if (fill_numeric(host_string, port, server.address)) return R::ok(std::move(server));
  if (!is_host_name(host)) return fail(quoted(host) + " is not a valid host name");
  if (!resolve) return R::ok(std::move(server));

  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* found = nullptr;
  const std::string port_string = std::to_string(port);
  const int rc = getaddrinfo(host_string.c_str(), port_string.c_str(), &hints, &found);
  if (rc != 0 || found == nullptr) {
    const std::string why = rc == EAI_SYSTEM ? std::strerror(errno) : gai_strerror(rc);
    return R::fail("cannot resolve backend host " + quoted(host) + ": " + why);
  }
  // getaddrinfo's own free function: this is the only addrinfo in the project.
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> owner(found, &freeaddrinfo);
  if (found->ai_addrlen > sizeof server.address.storage) {
    return R::fail("cannot resolve backend host " + quoted(host) + ": address too long");
  }
  std::memcpy(&server.address.storage, found->ai_addr, found->ai_addrlen);
  server.address.length = found->ai_addrlen;
  return R::ok(std::move(server));
}

}  // namespace proxy
