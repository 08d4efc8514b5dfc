// load_config(): TOML text -> Config, reporting every problem with its position.
//
// The Loader walks the document once, section by section. Each reader checks one key's type and
// value and records an error instead of stopping, so one run lists everything wrong with a file.
// Cross references (a listener's tls profile, a route's backend) are resolved by name against
// the sections as written, even ones with errors of their own, so one typo gives one message.
// toml++ throws toml::parse_error and RouteTable throws routes::RouteError; both are caught here
// and nothing escapes load_config().
#include "proxy/config.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <sys/stat.h>
#include <toml++/toml.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <optional>
#include <string_view>
#include <thread>
#include <utility>

#include "proxy/config_values.h"
#include "routes/request_path.h"

namespace proxy {

std::string SourceLocation::format() const {
  return file + ":" + std::to_string(line) + ":" + std::to_string(column);
}

std::string ConfigError::format() const { return location.format() + ": " + message; }

namespace {

std::string quoted(std::string_view text) { return "'" + std::string(text) + "'"; }

// Empty when `path` can be opened for reading as a regular file, else the reason.
std::optional<std::string> unreadable_reason(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::string(std::strerror(errno));
  struct stat info {};
  const bool regular = ::fstat(fd, &info) == 0 && S_ISREG(info.st_mode);
  ::close(fd);
  if (!regular) return std::string("not a regular file");
  return std::nullopt;
}

// Empty when `path` is a directory that can be listed and searched, else the reason.
std::optional<std::string> unreadable_directory_reason(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return std::string(std::strerror(errno));
  ::close(fd);
  if (::access(path.c_str(), R_OK | X_OK) != 0) return std::string(std::strerror(errno));
  return std::nullopt;
}

// Empty when a log file `path` can be written: its directory exists and can be written and
// searched, and the file, if it exists already, is not a directory and can be written. Nothing
// is created.
std::optional<std::string> unwritable_log_reason(const std::string& path) {
  // The directory part: "." without a '/', "/" for a file in the root directory.
  const auto slash = path.find_last_of('/');
  std::string directory = slash == std::string::npos ? "." : path.substr(0, slash);
  if (directory.empty()) directory = "/";
  struct stat info {};
  if (::stat(directory.c_str(), &info) != 0) return std::string(std::strerror(errno));
  if (!S_ISDIR(info.st_mode)) return std::string(std::strerror(ENOTDIR));
  if (::access(directory.c_str(), W_OK | X_OK) != 0) return std::string(std::strerror(errno));
  if (::stat(path.c_str(), &info) == 0) {
    if (S_ISDIR(info.st_mode)) return std::string(std::strerror(EISDIR));
    if (::access(path.c_str(), W_OK) != 0) return std::string(std::strerror(errno));
  }
  return std::nullopt;
}

// Whether a socket bound to `a` and one bound to `b` would take the same connections: the same
// port, and the same address or a wildcard address covering the other ([::] covers IPv4 too,
// as IPv6 sockets are dual-stack by default).
bool same_endpoint(const SocketAddress& a, const SocketAddress& b) {
  const auto port = [](const SocketAddress& s) -> std::uint16_t {
    if (s.storage.ss_family == AF_INET) {
      return reinterpret_cast<const sockaddr_in&>(s.storage).sin_port;
    }
    return reinterpret_cast<const sockaddr_in6&>(s.storage).sin6_port;
  };
  const auto wildcard = [](const SocketAddress& s) {
    if (s.storage.ss_family == AF_INET) {
      return reinterpret_cast<const sockaddr_in&>(s.storage).sin_addr.s_addr == INADDR_ANY;
    }
    return IN6_IS_ADDR_UNSPECIFIED(&reinterpret_cast<const sockaddr_in6&>(s.storage).sin6_addr);
  };
  const auto covers = [&](const SocketAddress& any, const SocketAddress& other) {
    return wildcard(any) &&
           (any.storage.ss_family == other.storage.ss_family || any.storage.ss_family == AF_INET6);
  };
  if (a.length == 0 || b.length == 0 || port(a) != port(b)) return false;
  if (a.length == b.length && std::memcmp(&a.storage, &b.storage, a.length) == 0) return true;
  return covers(a, b) || covers(b, a);
}

// Reads the whole file; on failure returns nothing and sets `reason`.
std::optional<std::string> read_file(const std::string& path, std::string& reason) {
  std::FILE* file = std::fopen(path.c_str(), "rb");
  if (file == nullptr) {
    reason = std::strerror(errno);
    return std::nullopt;
  }
  std::string text;
  char buffer[16384];
  std::size_t got = 0;
  while ((got = std::fread(buffer, 1, sizeof buffer, file)) > 0) text.append(buffer, got);
  const bool failed = std::ferror(file) != 0;
  const int saved_errno = errno;
  std::fclose(file);
  if (failed) {
    reason = std::strerror(saved_errno);
    return std::nullopt;
  }
  return text;
}

constexpr auto kInt64Max = std::numeric_limits<std::int64_t>::max();
constexpr auto kUnsignedMax = static_cast<std::int64_t>(std::numeric_limits<unsigned>::max());

class Loader {
 public:
  Loader(std::string file, const ConfigLoadOptions& options)
      : file_(std::move(file)), options_(options) {
    config_.source_file = file_;
  }

  ConfigLoadResult run(const toml::table& root);

 private:
  void error(SourceLocation location, std::string message) {
    errors_.push_back(ConfigError{std::move(location), std::move(message)});
  }
  SourceLocation at(const toml::source_region& region) const {
    return SourceLocation{file_, static_cast<int>(region.begin.line),
                          static_cast<int>(region.begin.column)};
  }
  SourceLocation nowhere() const { return SourceLocation{file_, 0, 0}; }
  void error(const toml::node& node, std::string message) {
    error(at(node.source()), std::move(message));
  }

  void check_keys(const toml::table& table, std::initializer_list<std::string_view> allowed,
                  std::string_view section);
  const toml::table* require_table(const toml::node& node, std::string_view name);
  bool require(const toml::table& table, std::string_view key, std::string_view section);

  std::optional<std::string> get_string(const toml::table& table, std::string_view key);
  std::optional<bool> get_bool(const toml::table& table, std::string_view key);
  std::optional<std::int64_t> get_int(const toml::table& table, std::string_view key,
                                      std::int64_t min, std::int64_t max);
  std::optional<Duration> get_duration(const toml::table& table, std::string_view key,
                                       bool positive);
  std::optional<std::uint64_t> get_size(const toml::table& table, std::string_view key);
  const toml::array* get_string_array(const toml::table& table, std::string_view key);
  std::optional<SourceLocation> get_file(const toml::table& table, std::string_view key,
                                         std::string_view what, std::string& out);
  bool check_plain_path(const toml::node& node, std::string_view key, const std::string& path);
  template <typename Enum>
  std::optional<Enum> get_enum(const toml::table& table, std::string_view key,
                               std::initializer_list<std::pair<std::string_view, Enum>> values);

  void load_server(const toml::node& node);
  void load_listeners(const toml::node* node);
  void load_listener(const toml::table& table);
  void load_tls(const toml::node& node);
  void load_tls_profile(const std::string& name, const toml::table& table);
  void load_tls_protocols(const toml::table& table, TlsProfile& profile);
  void load_tls_alpn(const toml::table& table, TlsProfile& profile);
  void load_tls_sni_certificates(const toml::table& table, TlsProfile& profile);
  void load_tls_client_certificates(const toml::table& table, TlsProfile& profile);
  void load_tls_sessions(const toml::table& table, TlsProfile& profile);
  void load_auth(const toml::node& node);
  void load_auth_user_map(const toml::table& table);
  std::optional<auth::HmacEncoding> get_hmac_encoding(const toml::table& table);
  void load_metrics(const toml::node& node);
  void load_access_log(const toml::node& node);
  void load_limits(const toml::node& node);
  void load_backends(const toml::node& node);
  void load_backend(const std::string& name, const toml::table& table);
  void load_backend_servers(const toml::table& table, BackendSettings& backend);
  void load_backend_enums(const toml::table& table, BackendSettings& backend);
  void load_routes(const toml::node* node);
  bool load_route(const toml::table& table, std::size_t number, routes::RouteRule& rule);
  void load_route_auth(const toml::table& table, routes::RouteRule& rule);
  void build_route_table(std::vector<routes::RouteRule> rules,
                         const std::vector<SourceLocation>& where);

  std::string file_;
  ConfigLoadOptions options_;
  std::vector<ConfigError> errors_;
  Config config_;
  std::vector<std::string> tls_names_;  // every [tls.NAME], valid or not
  // Some [tls.*] profile asks for client certificates, or has a broken 'client_certificates'
  // (then routes needing certificates are not blamed for it: one typo, one message).
  bool client_certificates_possible_ = false;
  bool identity_checked_ = false;  // the [auth] needs of protected routes were checked
  // [auth] names hmac_key / a user map source (perhaps with a bad value, reported there: a
  // protected route is then not also told that it is missing).
  bool hmac_key_named_ = false;
  bool user_map_named_ = false;
};

// ---- generic readers --------------------------------------------------------------------

void Loader::check_keys(const toml::table& table, std::initializer_list<std::string_view> allowed,
                        std::string_view section) {
  for (auto&& [key, value] : table) {
    if (std::find(allowed.begin(), allowed.end(), key.str()) != allowed.end()) continue;
    // `section` is "[server]", "[[route]]", ... or "" for the top level.
    error(at(key.source()),
          "unknown key " + quoted(key.str()) +
              (section.empty() ? " at the top level" : " in " + std::string(section)));
  }
}

const toml::table* Loader::require_table(const toml::node& node, std::string_view name) {
  const auto* table = node.as_table();
  if (table == nullptr) error(node, quoted(name) + " must be a table");
  return table;
}

bool Loader::require(const toml::table& table, std::string_view key, std::string_view section) {
  if (table.contains(key)) return true;
  error(at(table.source()), "missing required key " + quoted(key) + " in " + std::string(section));
  return false;
}

std::optional<std::string> Loader::get_string(const toml::table& table, std::string_view key) {
  const toml::node* node = table.get(key);
  if (node == nullptr) return std::nullopt;
  if (const auto* value = node->as_string()) return value->get();
  error(*node, quoted(key) + " must be a string");
  return std::nullopt;
}

std::optional<bool> Loader::get_bool(const toml::table& table, std::string_view key) {
  const toml::node* node = table.get(key);
  if (node == nullptr) return std::nullopt;
  if (const auto* value = node->as_boolean()) return value->get();
  error(*node, quoted(key) + " must be a boolean (true or false)");
  return std::nullopt;
}

std::optional<std::int64_t> Loader::get_int(const toml::table& table, std::string_view key,
                                            std::int64_t min, std::int64_t max) {
  const toml::node* node = table.get(key);
  if (node == nullptr) return std::nullopt;
  const auto* value = node->as_integer();
  if (value == nullptr) {
    error(*node, quoted(key) + " must be an integer");
    return std::nullopt;
  }
  if (value->get() < min) {
    error(*node, quoted(key) + " must be at least " + std::to_string(min));
    return std::nullopt;
  }
  if (value->get() > max) {
    error(*node, quoted(key) + " must be at most " + std::to_string(max));
    return std::nullopt;
  }
  return value->get();
}

std::optional<Duration> Loader::get_duration(const toml::table& table, std::string_view key,
                                             bool positive) {
  const toml::node* node = table.get(key);
  if (node == nullptr) return std::nullopt;
  const auto* value = node->as_string();
  if (value == nullptr) {
    error(*node, quoted(key) + " must be a duration string such as \"30s\"");
    return std::nullopt;
  }
  auto parsed = parse_duration(value->get());
  if (!parsed) {
    error(*node, quoted(key) + ": " + parsed.error);
    return std::nullopt;
  }
  if (positive && parsed.value->count() == 0) {
    error(*node, quoted(key) + " must be greater than 0");
    return std::nullopt;
  }
  return parsed.value;
}

std::optional<std::uint64_t> Loader::get_size(const toml::table& table, std::string_view key) {
  const toml::node* node = table.get(key);
  if (node == nullptr) return std::nullopt;
  if (const auto* integer = node->as_integer()) {
    if (integer->get() >= 0) return static_cast<std::uint64_t>(integer->get());
    error(*node, quoted(key) + " must not be negative");
    return std::nullopt;
  }
  const auto* text = node->as_string();
  if (text == nullptr) {
    error(*node, quoted(key) + " must be a size: an integer or a string such as \"64KiB\"");
    return std::nullopt;
  }
  auto parsed = parse_size(text->get());
  if (!parsed) error(*node, quoted(key) + ": " + parsed.error);
  return parsed.value;
}

// The array when `key` holds a non-empty array of strings, else null (and an error if the key
// is present).
const toml::array* Loader::get_string_array(const toml::table& table, std::string_view key) {
  const toml::node* node = table.get(key);
  if (node == nullptr) return nullptr;
  const auto* array = node->as_array();
  if (array == nullptr) {
    error(*node, quoted(key) + " must be an array of strings");
    return nullptr;
  }
  if (array->empty()) {
    error(*node, quoted(key) + " must not be empty");
    return nullptr;
  }
  for (const auto& element : *array) {
    if (!element.is_string()) {
      error(element, quoted(key) + " must be an array of strings");
      return nullptr;
    }
  }
  return array;
}

// A required file name; with check_files it must be readable. Returns its position.
std::optional<SourceLocation> Loader::get_file(const toml::table& table, std::string_view key,
                                               std::string_view what, std::string& out) {
  auto value = get_string(table, key);
  if (!value) return std::nullopt;
  const toml::node& node = *table.get(key);
  if (value->empty()) {
    error(node, quoted(key) + " must not be empty");
    return std::nullopt;
  }
  if (options_.check_files) {
    if (auto reason = unreadable_reason(*value)) {
      error(node, "cannot read " + std::string(what) + " file " + quoted(*value) + ": " + *reason);
    }
  }
  out = std::move(*value);
  return at(node.source());
}

// A local path such as [auth] trouble_page or [metrics] path: starts with '/', no query,
// fragment or whitespace, and acceptable as a request path. False (with an error) otherwise.
bool Loader::check_plain_path(const toml::node& node, std::string_view key,
                              const std::string& path) {
  if (path.empty() || path.front() != '/') {
    error(node, quoted(key) + " must start with '/'");
  } else if (path.find_first_of("?# \t\r\n\v\f") != std::string::npos) {
    error(node, quoted(key) + " must be a plain path, without '?', '#' or whitespace");
  } else if (auto reason = routes::check_request_path(path)) {
    error(node, quoted(key) + " is not an acceptable request path: " + std::string(*reason));
  } else {
    return true;
  }
  return false;
}

// A string naming one of `values`; anything else is reported as
// "'key' must be one of a, b, c (got 'x')".
template <typename Enum>
std::optional<Enum> Loader::get_enum(
    const toml::table& table, std::string_view key,
    std::initializer_list<std::pair<std::string_view, Enum>> values) {
  auto text = get_string(table, key);
  if (!text) return std::nullopt;
  std::string names;
  for (const auto& [name, value] : values) {
    if (*text == name) return value;
    names += (names.empty() ? "" : ", ") + std::string(name);
  }
  error(*table.get(key), quoted(key) + " must be one of " + names + " (got " + quoted(*text) + ")");
  return std::nullopt;
}

// ---- [server], [[listener]], [tls.*], [limits] ----------------------------------------------

void Loader::load_server(const toml::node& node) {
  const auto* table = require_table(node, "server");
  if (table == nullptr) return;
  check_keys(*table,
             {"workers", "user", "max_connections", "shutdown_timeout", "file_check_interval",
              "log_format"},
             "[server]");
  auto& server = config_.server;
  if (auto v = get_int(*table, "workers", 0, kUnsignedMax)) server.workers = unsigned(*v);
  if (auto v = get_string(*table, "user")) server.user = *v;
  if (auto v = get_int(*table, "max_connections", 1, kInt64Max)) {
    server.max_connections = static_cast<std::size_t>(*v);
  }
  if (auto v = get_duration(*table, "shutdown_timeout", false)) server.shutdown_timeout = *v;
  if (auto v = get_enum<LogFormat>(*table, "log_format",
                                   {{"text", LogFormat::text}, {"json", LogFormat::json}})) {
    server.log_format = *v;
  }
  if (auto v = get_duration(*table, "file_check_interval", false)) {
    if (*v < Duration(100)) {
      error(*table->get("file_check_interval"), "'file_check_interval' must be at least 100ms");
    } else {
      server.file_check_interval = *v;
    }
  }
}

void Loader::load_listeners(const toml::node* node) {
  if (node == nullptr) {
    error(nowhere(), "at least one [[listener]] is required");
    return;
  }
  const auto* array = node->as_array();
  if (array == nullptr || !array->is_array_of_tables() || array->empty()) {
    error(*node, "'listener' must be an array of tables ([[listener]])");
    return;
  }
  for (const auto& element : *array) load_listener(*element.as_table());
}

void Loader::load_listener(const toml::table& table) {
  check_keys(table, {"address", "tls", "redirect_to_https"}, "[[listener]]");
  ListenerSettings listener;
  bool ok = require(table, "address", "[[listener]]");
  if (auto text = get_string(table, "address")) {
    auto parsed = parse_socket_address(*text);
    if (!parsed) {
      error(*table.get("address"), parsed.error);
      ok = false;
    } else {
      listener.address = std::move(*parsed.value);
    }
    for (const auto& other : config_.listeners) {
      if (parsed && other.address.length == listener.address.length &&
          std::memcmp(&other.address.storage, &listener.address.storage, listener.address.length) ==
              0) {
        error(*table.get("address"), "duplicate listener address " + quoted(*text));
        ok = false;
      }
    }
  }
  if (auto name = get_string(table, "tls")) {
    if (std::find(tls_names_.begin(), tls_names_.end(), *name) == tls_names_.end()) {
      error(*table.get("tls"), "unknown tls profile " + quoted(*name));
    }
    listener.tls = *name;
  }
  if (auto redirect = get_bool(table, "redirect_to_https")) {
    if (*redirect && table.contains("tls")) {
      error(*table.get("redirect_to_https"),
            "'redirect_to_https' is only valid on a plain listener (this one has 'tls')");
    }
    listener.redirect_to_https = *redirect;
  }
  if (ok) config_.listeners.push_back(std::move(listener));
}

void Loader::load_tls(const toml::node& node) {
  const auto* table = require_table(node, "tls");
  if (table == nullptr) return;
  for (auto&& [key, value] : *table) tls_names_.emplace_back(key.str());
  for (auto&& [key, value] : *table) {
    const std::string name(key.str());
    if (const auto* profile = require_table(value, "tls." + name)) {
      load_tls_profile(name, *profile);
    }
  }
}

void Loader::load_tls_profile(const std::string& name, const toml::table& table) {
  const std::string section = "[tls." + name + "]";
  check_keys(
      table,
      {"certificate", "key", "protocols", "alpn", "sni_certificates", "client_certificates",
       "ca_dir", "crl", "crl_grace", "verify_depth", "proxy_certificates", "client_ca_names",
       "session_ticket_keys", "session_lifetime", "session_cache_size", "verification_cache_size"},
      section);
  TlsProfile profile;
  profile.name = name;
  require(table, "certificate", section);
  require(table, "key", section);
  if (auto where = get_file(table, "certificate", "certificate", profile.certificate)) {
    profile.certificate_location = *where;
  }
  if (auto where = get_file(table, "key", "key", profile.key)) profile.key_location = *where;
  load_tls_protocols(table, profile);
  load_tls_alpn(table, profile);
  load_tls_sni_certificates(table, profile);
  load_tls_client_certificates(table, profile);
  load_tls_sessions(table, profile);
  config_.tls.emplace(name, std::move(profile));
}

void Loader::load_tls_protocols(const toml::table& table, TlsProfile& profile) {
  profile.min_protocol = TLS1_2_VERSION;
  profile.max_protocol = TLS1_3_VERSION;
  const auto* array = get_string_array(table, "protocols");
  if (array == nullptr) return;
  int min = 0;
  int max = 0;
  for (const auto& element : *array) {
    const std::string& name = element.as_string()->get();
    int version = 0;
    if (name == "TLSv1.2") {
      version = TLS1_2_VERSION;
    } else if (name == "TLSv1.3") {
      version = TLS1_3_VERSION;
    } else {
      error(element, "unsupported TLS protocol " + quoted(name) + " (expected TLSv1.2 or TLSv1.3)");
      continue;
    }
    min = min == 0 ? version : std::min(min, version);
    max = std::max(max, version);
  }
  if (min != 0) {
    profile.min_protocol = min;
    profile.max_protocol = max;
  }
}

void Loader::load_tls_alpn(const toml::table& table, TlsProfile& profile) {
  const auto* array = get_string_array(table, "alpn");
  if (array == nullptr) return;
  profile.alpn.clear();
  for (const auto& element : *array) {
    const std::string& name = element.as_string()->get();
    if (name == "h2") {
      error(element, "h2 is not supported yet");
    } else if (name != "http/1.1") {
      error(element, "unsupported ALPN protocol " + quoted(name) + " (expected http/1.1)");
    } else if (std::find(profile.alpn.begin(), profile.alpn.end(), name) == profile.alpn.end()) {
      profile.alpn.push_back(name);
    }
  }
}

// sni_certificates = [{certificate = "...", key = "..."}, ...] or [[tls.NAME.sni_certificates]].
void Loader::load_tls_sni_certificates(const toml::table& table, TlsProfile& profile) {
  const toml::node* node = table.get("sni_certificates");
  if (node == nullptr) return;
  const auto* array = node->as_array();
  if (array != nullptr && array->empty()) {
    error(*node, "'sni_certificates' must not be empty");
    return;
  }
  if (array == nullptr || !array->is_array_of_tables()) {
    error(*node,
          "'sni_certificates' must be an array of tables such as "
          "[{certificate = \"...\", key = \"...\"}]");
    return;
  }
  const std::string section = "[[tls." + profile.name + ".sni_certificates]]";
  for (const auto& element : *array) {
    const toml::table& entry = *element.as_table();
    check_keys(entry, {"certificate", "key"}, section);
    SniCertificate sni;
    sni.location = at(entry.source());
    bool ok = require(entry, "certificate", section);
    ok = require(entry, "key", section) && ok;
    ok = get_file(entry, "certificate", "certificate", sni.certificate).has_value() && ok;
    ok = get_file(entry, "key", "key", sni.key).has_value() && ok;
    if (ok) profile.sni_certificates.push_back(std::move(sni));
  }
}

// client_certificates and the keys that only matter with it. With client_certificates = "off"
// (the default) each of those keys is an error, not silently ignored: an operator who writes
// ca_dir but forgets client_certificates must not believe certificates are checked.
void Loader::load_tls_client_certificates(const toml::table& table, TlsProfile& profile) {
  const std::string section = "[tls." + profile.name + "]";
  const auto mode = get_enum<ClientCertificates>(table, "client_certificates",
                                                 {{"off", ClientCertificates::off},
                                                  {"request", ClientCertificates::request},
                                                  {"require", ClientCertificates::require}});
  if (mode) profile.client_certificates = *mode;
  const bool broken = table.contains("client_certificates") && !mode;
  if (broken || profile.client_certificates != ClientCertificates::off) {
    client_certificates_possible_ = true;
  }
  if (!broken && profile.client_certificates == ClientCertificates::off) {
    for (const std::string_view key :
         {"ca_dir", "crl", "crl_grace", "verify_depth", "proxy_certificates", "client_ca_names",
          "verification_cache_size"}) {
      if (const toml::node* node = table.get(key)) {
        error(*node, quoted(key) + " has no effect with client_certificates = \"off\"");
      }
    }
    return;
  }

  if (const toml::node* node = table.get("ca_dir")) {
    auto dir = get_string(table, "ca_dir");
    if (dir && dir->empty()) {
      error(*node, "'ca_dir' must not be empty");
    } else if (dir) {
      if (options_.check_files) {
        if (auto reason = unreadable_directory_reason(*dir)) {
          error(*node, "cannot read CA directory " + quoted(*dir) + ": " + *reason);
        }
      }
      profile.ca_dir = std::move(*dir);
      profile.ca_dir_location = at(node->source());
    }
  } else if (!broken) {
    error(*table.get("client_certificates"),
          "missing required key 'ca_dir' in " + section + " (client_certificates = \"" +
              *table.get("client_certificates")->value<std::string>() + "\" needs it)");
  }
  if (auto crl = get_enum<CrlPolicy>(table, "crl",
                                     {{"require", CrlPolicy::require},
                                      {"if-present", CrlPolicy::if_present},
                                      {"off", CrlPolicy::off}})) {
    profile.crl = *crl;
  }
  if (auto v = get_duration(table, "crl_grace", false)) profile.crl_grace = *v;
  if (auto v = get_int(table, "verify_depth", 1, 100)) profile.verify_depth = static_cast<int>(*v);
  if (auto v = get_int(table, "verification_cache_size", 0, 10'000'000)) {
    profile.verification_cache_size = static_cast<std::size_t>(*v);
  }
  if (auto v = get_bool(table, "proxy_certificates")) profile.proxy_certificates = *v;
  get_file(table, "client_ca_names", "client CA names", profile.client_ca_names);
}

void Loader::load_tls_sessions(const toml::table& table, TlsProfile& profile) {
  if (table.contains("session_ticket_keys")) {
    std::string path;
    if (auto where = get_file(table, "session_ticket_keys", "session ticket key", path)) {
      // A file get_file() found unreadable has its message already.
      struct stat info {};
      if (options_.check_files && !unreadable_reason(path) && ::stat(path.c_str(), &info) == 0 &&
          (info.st_size == 0 || info.st_size % 80 != 0)) {
        error(*table.get("session_ticket_keys"),
              "session ticket key file " + quoted(path) + " has " + std::to_string(info.st_size) +
                  " bytes, not a positive multiple of 80 (one or more 80-byte keys; make one "
                  "with: openssl rand 80 > " +
                  path + ")");
      }
      profile.session_ticket_keys = std::move(path);
      profile.session_ticket_keys_location = *where;
    }
  }
  if (auto v = get_duration(table, "session_lifetime", false)) {
    if (*v < std::chrono::seconds(1)) {
      error(*table.get("session_lifetime"), "'session_lifetime' must be at least 1s");
    } else if (*v > std::chrono::days(7)) {
      error(*table.get("session_lifetime"), "'session_lifetime' must be at most 7d");
    } else {
      profile.session_lifetime = *v;
    }
  }
  if (auto v = get_int(table, "session_cache_size", 0, kInt64Max)) {
    profile.session_cache_size = static_cast<std::size_t>(*v);
  }
}

// ---- [auth] -----------------------------------------------------------------------------------

void Loader::load_auth(const toml::node& node) {
  const auto* table = require_table(node, "auth");
  if (table == nullptr) return;
  check_keys(
      *table,
      {"trouble_page", "hmac_key", "hmac_encoding", "user_map", "user_map_url", "user_map_cache",
       "user_map_refresh", "user_map_timeout", "user_map_certificate", "user_map_key",
       "user_map_ca_file", "user_map_ca_dir", "user_map_max_drop_percent", "unknown_users"},
      "[auth]");
  AuthSettings& auth = config_.auth;
  hmac_key_named_ = table->contains("hmac_key");
  user_map_named_ = table->contains("user_map") || table->contains("user_map_url");
  auto page = get_string(*table, "trouble_page");
  if (page && check_plain_path(*table->get("trouble_page"), "trouble_page", *page)) {
    auth.trouble_page = std::move(*page);
  }
  get_file(*table, "hmac_key", "HMAC key", auth.hmac_key);
  if (auto v = get_hmac_encoding(*table)) auth.hmac_encoding = *v;
  if (auto v = get_enum<UnknownUsers>(
          *table, "unknown_users",
          {{"reject", UnknownUsers::reject}, {"forward", UnknownUsers::forward}})) {
    auth.unknown_users = *v;
  }
  load_auth_user_map(*table);
}

std::optional<auth::HmacEncoding> Loader::get_hmac_encoding(const toml::table& table) {
  return get_enum<auth::HmacEncoding>(
      table, "hmac_encoding",
      {{"python3", auth::HmacEncoding::python3}, {"raw", auth::HmacEncoding::raw}});
}

void Loader::load_auth_user_map(const toml::table& table) {
  AuthSettings& auth = config_.auth;
  // The map file is re-read while running: a missing file at start is an error (the loader
  // would have nothing), but the path must only be readable, like every other file here.
  get_file(table, "user_map", "user map", auth.user_map);
  if (auto url = get_string(table, "user_map_url")) {
    const toml::node& url_node = *table.get("user_map_url");
    if (url->rfind("https://", 0) != 0 || url->size() == 8 ||
        url->find_first_of(" \t\r\n") != std::string::npos) {
      error(url_node, "'user_map_url' must be an https:// URL (got " + quoted(*url) + ")");
    } else {
      auth.user_map_url = std::move(*url);
      if (!table.contains("user_map_cache")) {
        error(url_node,
              "'user_map_url' needs 'user_map_cache' (where the last good download is kept, so "
              "a restart while CRIC is down starts with the full map)");
      }
    }
  }
  if (auto cache = get_string(table, "user_map_cache")) {
    if (cache->empty() || cache->front() != '/') {
      error(*table.get("user_map_cache"), "'user_map_cache' must be an absolute path");
    } else {
      auth.user_map_cache = std::move(*cache);
    }
  }
  if (auto v = get_duration(table, "user_map_refresh", true)) {
    if (*v < std::chrono::seconds(1)) {
      error(*table.get("user_map_refresh"), "'user_map_refresh' must be at least 1s");
    } else {
      auth.user_map_refresh = *v;
    }
  }
  if (auto v = get_duration(table, "user_map_timeout", true)) auth.user_map_timeout = *v;
  if (auto v = get_int(table, "user_map_max_drop_percent", 0, 100)) {
    auth.user_map_max_drop_percent = static_cast<unsigned>(*v);
  }
  const bool fetches = table.contains("user_map_url");  // a bad URL is reported once, above
  for (const auto& [key, out] : {std::pair<std::string_view, std::string*>{
                                     "user_map_certificate", &auth.user_map_certificate},
                                 {"user_map_key", &auth.user_map_key},
                                 {"user_map_ca_file", &auth.user_map_ca_file}}) {
    if (!table.contains(key)) continue;
    if (!fetches) error(*table.get(key), quoted(key) + " has no effect without 'user_map_url'");
    get_file(table, key, "user map TLS", *out);
  }
  if (auto dir = get_string(table, "user_map_ca_dir")) {
    const toml::node& node = *table.get("user_map_ca_dir");
    if (!fetches) error(node, "'user_map_ca_dir' has no effect without 'user_map_url'");
    struct stat info {};
    if (dir->empty()) {
      error(node, "'user_map_ca_dir' must not be empty");
    } else if (options_.check_files &&
               (::stat(dir->c_str(), &info) != 0 || !S_ISDIR(info.st_mode))) {
      error(node, "'user_map_ca_dir' " + quoted(*dir) + " is not a readable directory");
    }
    auth.user_map_ca_dir = std::move(*dir);
  }
}

// ---- [metrics], [access_log] ------------------------------------------------------------------

// Read after the listeners: the scrape endpoint must not share a public listener's socket.
void Loader::load_metrics(const toml::node& node) {
  const auto* table = require_table(node, "metrics");
  if (table == nullptr) return;
  check_keys(*table, {"address", "path"}, "[metrics]");
  auto& metrics = config_.metrics;
  metrics.enabled = true;
  const toml::node* address_node = table->get("address");
  const auto text = address_node != nullptr ? get_string(*table, "address")
                                            : std::optional<std::string>("127.0.0.1:9091");
  if (text) {
    auto parsed = parse_socket_address(*text);
    if (!parsed) {
      error(*address_node, parsed.error);
    } else {
      const SourceLocation where =
          at(address_node != nullptr ? address_node->source() : table->source());
      for (const auto& listener : config_.listeners) {
        if (listener.address.text == parsed.value->text ||
            same_endpoint(listener.address, *parsed.value)) {
          error(where, "the metrics endpoint must not share a listener's address");
          break;
        }
      }
      metrics.address = std::move(*parsed.value);
    }
  }
  if (auto path = get_string(*table, "path")) {
    if (check_plain_path(*table->get("path"), "path", *path)) metrics.path = std::move(*path);
  }
}

void Loader::load_access_log(const toml::node& node) {
  const auto* table = require_table(node, "access_log");
  if (table == nullptr) return;
  check_keys(*table, {"path", "format", "queue_lines"}, "[access_log]");
  auto& log = config_.access_log;
  log.enabled = true;
  if (require(*table, "path", "[access_log]")) {
    if (auto path = get_string(*table, "path")) {
      const toml::node& value = *table->get("path");
      if (path->empty()) {
        error(value, "'path' must not be empty");
      } else {
        if (options_.check_files && *path != "-") {
          if (auto reason = unwritable_log_reason(*path)) {
            error(value, "cannot write access log " + quoted(*path) + ": " + *reason);
          }
        }
        log.path = std::move(*path);
      }
    }
  }
  if (auto format = get_enum<AccessLogFormat>(
          *table, "format",
          {{"cmsweb", AccessLogFormat::cmsweb}, {"json", AccessLogFormat::json}})) {
    log.format = *format;
  }
  if (auto v = get_int(*table, "queue_lines", 16, 10'000'000)) {
    log.queue_lines = static_cast<std::size_t>(*v);
  }
}

void Loader::load_limits(const toml::node& node) {
  const auto* table = require_table(node, "limits");
  if (table == nullptr) return;
  check_keys(*table,
             {"header_size", "header_count", "body_size", "header_timeout", "idle_timeout",
              "handshake_timeout", "body_timeout"},
             "[limits]");
  auto& limits = config_.limits;
  if (auto size = get_size(*table, "header_size")) {
    if (*size < 1024) {
      error(*table->get("header_size"), "'header_size' must be at least 1024 bytes");
    } else {
      limits.header_size = static_cast<std::size_t>(*size);
    }
  }
  if (auto v = get_int(*table, "header_count", 1, kInt64Max)) {
    limits.header_count = static_cast<std::size_t>(*v);
  }
  if (auto v = get_size(*table, "body_size")) limits.body_size = *v;
  if (auto v = get_duration(*table, "header_timeout", true)) limits.header_timeout = *v;
  if (auto v = get_duration(*table, "idle_timeout", true)) limits.idle_timeout = *v;
  if (auto v = get_duration(*table, "handshake_timeout", true)) limits.handshake_timeout = *v;
  if (auto v = get_duration(*table, "body_timeout", true)) limits.body_timeout = *v;
}

// ---- [backend.*] ------------------------------------------------------------------------------

void Loader::load_backends(const toml::node& node) {
  const auto* table = require_table(node, "backend");
  if (table == nullptr) return;
  for (auto&& [key, value] : *table) {
    const std::string name(key.str());
    // Every backend gets its index, even a broken one, so routes naming it resolve.
    BackendSettings& backend = config_.backends.emplace_back();
    backend.name = name;
    if (const auto* settings = require_table(value, "backend." + name)) {
      load_backend(name, *settings);
    }
  }
}

void Loader::load_backend(const std::string& name, const toml::table& table) {
  const std::string section = "[backend." + name + "]";
  check_keys(table,
             {"servers", "max_connections", "max_queue", "queue_timeout", "connect_timeout",
              "response_timeout", "idle_timeout", "balance", "protocol", "hmac_encoding"},
             section);
  BackendSettings& backend = config_.backends.back();
  if (require(table, "servers", section)) load_backend_servers(table, backend);
  if (auto v = get_hmac_encoding(table)) backend.hmac_encoding = *v;
  if (auto v = get_int(table, "max_connections", 1, kUnsignedMax)) {
    backend.max_connections = unsigned(*v);
  }
  if (auto v = get_int(table, "max_queue", 0, kUnsignedMax)) backend.max_queue = unsigned(*v);
  if (auto v = get_duration(table, "queue_timeout", true)) backend.queue_timeout = *v;
  if (auto v = get_duration(table, "connect_timeout", true)) backend.connect_timeout = *v;
  if (auto v = get_duration(table, "response_timeout", true)) backend.response_timeout = *v;
  if (auto v = get_duration(table, "idle_timeout", true)) backend.idle_timeout = *v;
  load_backend_enums(table, backend);
}

void Loader::load_backend_servers(const toml::table& table, BackendSettings& backend) {
  const auto* array = get_string_array(table, "servers");
  if (array == nullptr) return;
  for (const auto& element : *array) {
    auto parsed = parse_backend_url(element.as_string()->get(), options_.resolve_backends);
    if (!parsed) {
      error(element, parsed.error);
      continue;
    }
    backend.servers.push_back(std::move(*parsed.value));
  }
}

void Loader::load_backend_enums(const toml::table& table, BackendSettings& backend) {
  if (auto balance = get_string(table, "balance")) {
    const toml::node& node = *table.get("balance");
    if (*balance == "round-robin") {
      backend.balance = Balance::round_robin;
    } else if (*balance == "least-connections") {
      backend.balance = Balance::least_connections;
    } else if (*balance == "random") {
      backend.balance = Balance::random;
    } else if (*balance == "affinity") {
      error(node, "balance = 'affinity' is not supported yet");
    } else {
      error(node, "'balance' must be one of round-robin, least-connections, random (got " +
                      quoted(*balance) + ")");
    }
  }
  if (auto protocol = get_string(table, "protocol")) {
    const toml::node& node = *table.get("protocol");
    if (*protocol == "h2c") {
      error(node, "protocol = 'h2c' is not supported yet");
    } else if (*protocol != "http/1.1") {
      error(node, "'protocol' must be http/1.1 (got " + quoted(*protocol) + ")");
    }
  }
}

// ---- [[route]] --------------------------------------------------------------------------------

void Loader::load_routes(const toml::node* node) {
  if (node == nullptr) {
    error(nowhere(), "at least one [[route]] is required");
    return;
  }
  const auto* array = node->as_array();
  if (array == nullptr || !array->is_array_of_tables() || array->empty()) {
    error(*node, "'route' must be an array of tables ([[route]])");
    return;
  }
  std::vector<routes::RouteRule> rules;
  std::vector<SourceLocation> where;  // per rule: its 'match' value, else its table
  for (const auto& element : *array) {
    const toml::table& table = *element.as_table();
    routes::RouteRule rule;
    if (!load_route(table, rules.size() + 1, rule)) continue;
    const toml::node* match = table.get("match");
    where.push_back(at(match != nullptr ? match->source() : table.source()));
    rules.push_back(std::move(rule));
  }
  build_route_table(std::move(rules), where);
}

bool Loader::load_route(const toml::table& table, std::size_t number, routes::RouteRule& rule) {
  check_keys(table, {"name", "path", "match", "query", "rewrite", "backend", "auth"}, "[[route]]");
  const std::size_t before = errors_.size();
  rule.name = get_string(table, "name").value_or("route" + std::to_string(number));
  const auto path = get_string(table, "path");
  const auto match = get_string(table, "match");
  if (table.contains("path") && table.contains("match")) {
    error(*table.get("match"), "a route takes either 'path' or 'match', not both");
  } else if (!table.contains("path") && !table.contains("match")) {
    error(at(table.source()), "missing required key 'path' or 'match' in [[route]]");
  }
  if (path && (path->empty() || path->front() != '/')) {
    error(*table.get("path"), "'path' must start with '/'");
  }
  if (path) rule.path_prefix = *path;
  if (match) rule.match_regex = *match;
  if (auto query = get_bool(table, "query")) {
    if (!table.contains("match")) error(*table.get("query"), "'query' is only valid with 'match'");
    rule.match_query = *query;
  }
  if (auto rewrite = get_string(table, "rewrite")) rule.rewrite = *rewrite;
  if (require(table, "backend", "[[route]]")) {
    if (auto backend = get_string(table, "backend")) {
      const auto found = std::find_if(config_.backends.begin(), config_.backends.end(),
                                      [&](const auto& b) { return b.name == *backend; });
      if (found == config_.backends.end()) {
        error(*table.get("backend"), "unknown backend " + quoted(*backend));
      }
      rule.backend_index = static_cast<std::size_t>(found - config_.backends.begin());
    }
  }
  load_route_auth(table, rule);
  return errors_.size() == before;
}

// Every route states its auth: a forgotten key must not silently publish a protected service.
void Loader::load_route_auth(const toml::table& table, routes::RouteRule& rule) {
  rule.auth_policy = static_cast<std::size_t>(AuthPolicy::none);
  if (!table.contains("auth")) {
    error(at(table.source()),
          "missing required key 'auth' in [[route]] (one of none, optional, cert, "
          "cert+limited-proxy)");
    return;
  }
  const auto policy =
      get_enum<AuthPolicy>(table, "auth",
                           {{"none", AuthPolicy::none},
                            {"optional", AuthPolicy::optional},
                            {"cert", AuthPolicy::cert},
                            {"cert+limited-proxy", AuthPolicy::cert_limited_proxy}});
  if (!policy) return;
  if (*policy != AuthPolicy::none && !identity_checked_) {
    // Said once: every such route has the same problem.
    identity_checked_ = true;
    if (!hmac_key_named_) {
      error(*table.get("auth"), "auth = \"" + *table.get("auth")->value<std::string>() +
                                    "\" needs [auth] hmac_key (the backends verify the "
                                    "cms-authn headers with it)");
    }
    if (!user_map_named_) {
      error(*table.get("auth"), "auth = \"" + *table.get("auth")->value<std::string>() +
                                    "\" needs [auth] user_map or user_map_url (the CMS user "
                                    "map)");
    }
  }
  if (*policy != AuthPolicy::none && !client_certificates_possible_) {
    error(*table.get("auth"), "auth = \"" + *table.get("auth")->value<std::string>() +
                                  "\" needs a [tls.*] profile with client_certificates = "
                                  "\"request\" or \"require\"");
  }
  rule.auth_policy = static_cast<std::size_t>(*policy);
}

// Each regex rule is compiled alone first so that every bad pattern is reported, not only the
// first one the table's constructor meets; the real table is built only from a clean file.
void Loader::build_route_table(std::vector<routes::RouteRule> rules,
                               const std::vector<SourceLocation>& where) {
  for (std::size_t i = 0; i < rules.size(); ++i) {
    if (rules[i].match_regex.empty() && !rules[i].rewrite) continue;
    try {
      routes::RouteTable single(std::vector<routes::RouteRule>{rules[i]});
    } catch (const routes::RouteError& e) {
      error(where[i], e.what());
    }
  }
  if (!errors_.empty()) return;
  try {
    config_.routes = routes::RouteTable(std::move(rules));
  } catch (const routes::RouteError& e) {
    error(e.rule_index() < where.size() ? where[e.rule_index()] : nowhere(), e.what());
  }
}

ConfigLoadResult Loader::run(const toml::table& root) {
  check_keys(
      root,
      {"server", "listener", "tls", "limits", "backend", "auth", "metrics", "access_log", "route"},
      "");
  // Referenced sections first: listeners name tls profiles, routes name backends (and a route
  // needing an identity needs a profile that asks for client certificates).
  if (const auto* node = root.get("tls")) load_tls(*node);
  if (const auto* node = root.get("backend")) load_backends(*node);
  if (const auto* node = root.get("server")) load_server(*node);
  if (const auto* node = root.get("limits")) load_limits(*node);
  if (const auto* node = root.get("auth")) load_auth(*node);
  load_listeners(root.get("listener"));
  if (const auto* node = root.get("metrics")) load_metrics(*node);
  if (const auto* node = root.get("access_log")) load_access_log(*node);
  load_routes(root.get("route"));

  if (config_.server.workers == 0) {
    config_.server.workers = std::max(1u, std::thread::hardware_concurrency());
  }
  ConfigLoadResult result;
  std::stable_sort(errors_.begin(), errors_.end(), [](const auto& a, const auto& b) {
    return std::pair(a.location.line, a.location.column) <
           std::pair(b.location.line, b.location.column);
  });
  result.errors = std::move(errors_);
  if (result.errors.empty()) result.config = std::make_shared<const Config>(std::move(config_));
  return result;
}

ConfigLoadResult load_noexcept(const std::string& path, const ConfigLoadOptions& options) {
  const auto fail = [&](SourceLocation location, std::string message) {
    ConfigLoadResult result;
    result.errors.push_back(ConfigError{std::move(location), std::move(message)});
    return result;
  };
  std::string reason;
  const auto text = read_file(path, reason);
  if (!text) return fail({path, 0, 0}, "cannot read configuration: " + reason);
  toml::table root;
  try {
    root = toml::parse(std::string_view(*text), std::string_view(path));
  } catch (const toml::parse_error& e) {
    return fail(
        {path, static_cast<int>(e.source().begin.line), static_cast<int>(e.source().begin.column)},
        std::string(e.description()));
  }
  return Loader(path, options).run(root);
}

}  // namespace

ConfigLoadResult load_config(const std::string& path, const ConfigLoadOptions& options) {
  try {
    return load_noexcept(path, options);
  } catch (const std::exception& e) {
    ConfigLoadResult result;
    result.errors.push_back(ConfigError{{path, 0, 0}, std::string("internal error: ") + e.what()});
    return result;
  }
}

}  // namespace proxy
