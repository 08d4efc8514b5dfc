// Tests for proxy/config_values.h (value syntaxes) and proxy/config.h (load_config).
// Error fixtures live in tests/unit/data/config/, one file per class of error; the expected
// messages are exact because operators (and scripts) read them.
#include "proxy/config.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "proxy/config_values.h"

namespace proxy {
namespace {

using namespace std::chrono_literals;
using Strings = std::vector<std::string>;

std::string fixture(const std::string& name) {
  return std::string(CMSFRONT_TEST_DATA) + "/config/" + name;
}

// The formatted errors of loading fixture `name`, with the fixture directory cut off so that
// expectations read "name.toml:line:column: message".
Strings load_errors(const std::string& name, const ConfigLoadOptions& options = {}) {
  const std::string path = fixture(name);
  const auto result = load_config(path, options);
  EXPECT_EQ(result.config == nullptr, !result.errors.empty()) << name;
  Strings out;
  for (const auto& error : result.errors) {
    std::string text = error.format();
    EXPECT_EQ(text.rfind(path + ":", 0), 0u) << text;
    out.push_back(name + text.substr(path.size()));
  }
  return out;
}

std::string duration_error(std::string_view text) { return parse_duration(text).error; }
std::string size_error(std::string_view text) { return parse_size(text).error; }
std::string address_error(std::string_view text) { return parse_socket_address(text).error; }
std::string url_error(std::string_view text) { return parse_backend_url(text).error; }

int port_of(const SocketAddress& address) {
  if (address.storage.ss_family == AF_INET) {
    return ntohs(reinterpret_cast<const sockaddr_in&>(address.storage).sin_port);
  }
  return ntohs(reinterpret_cast<const sockaddr_in6&>(address.storage).sin6_port);
}

// ---- value parsers ---------------------------------------------------------------------------

TEST(ParseDuration, AcceptsEveryUnitAndCombinationsLargestFirst) {
  EXPECT_EQ(parse_duration("250ms").value, Duration(250));
  EXPECT_EQ(parse_duration("5s").value, Duration(5s));
  EXPECT_EQ(parse_duration("4m").value, Duration(4min));
  EXPECT_EQ(parse_duration("1h").value, Duration(1h));
  EXPECT_EQ(parse_duration("2d").value, Duration(48h));
  EXPECT_EQ(parse_duration("1h30m").value, Duration(90min));
  EXPECT_EQ(parse_duration("1m30s500ms").value, Duration(90500));
  EXPECT_EQ(parse_duration("0").value, Duration(0));
  EXPECT_EQ(parse_duration("0s").value, Duration(0));
  EXPECT_TRUE(parse_duration("300s").error.empty());
}

TEST(ParseDuration, RejectsMalformedTextWithAReason) {
  EXPECT_EQ(duration_error(""), "invalid duration '': empty");
  EXPECT_EQ(duration_error("-5s"), "invalid duration '-5s': negative durations are not allowed");
  EXPECT_EQ(duration_error("30"),
            "invalid duration '30': missing unit (expected ms, s, m, h or d)");
  EXPECT_EQ(duration_error("5x"),
            "invalid duration '5x': unknown unit 'x' (expected ms, s, m, h or d)");
  EXPECT_EQ(duration_error("5S"),
            "invalid duration '5S': unknown unit 'S' (expected ms, s, m, h or d)");
  EXPECT_EQ(duration_error("30s1m"),
            "invalid duration '30s1m': each unit may appear once, largest first (e.g. 1h30m)");
  EXPECT_EQ(duration_error("1s1s"),
            "invalid duration '1s1s': each unit may appear once, largest first (e.g. 1h30m)");
  EXPECT_EQ(duration_error("1.5s"),
            "invalid duration '1.5s': unexpected character '.' (whole numbers only)");
  EXPECT_EQ(duration_error("5 s"),
            "invalid duration '5 s': unexpected character ' ' (whole numbers only)");
  EXPECT_EQ(duration_error("s"),
            "invalid duration 's': unexpected character 's' "
            "(expected a whole number and a unit, e.g. 30s)");
  EXPECT_EQ(duration_error("+5s"),
            "invalid duration '+5s': unexpected character '+' "
            "(expected a whole number and a unit, e.g. 30s)");
}

TEST(ParseDuration, RejectsTotalsBeyondSixtyFourBitMilliseconds) {
  EXPECT_EQ(duration_error("99999999999999999999ms"),
            "invalid duration '99999999999999999999ms': too large");
  EXPECT_EQ(duration_error("9223372036854775807d"),
            "invalid duration '9223372036854775807d': too large");
  EXPECT_EQ(duration_error("106751991168d"), "invalid duration '106751991168d': too large");
  EXPECT_TRUE(parse_duration("106751991167d1h"));
  EXPECT_EQ(parse_duration("9223372036854775807ms").value,
            Duration(std::numeric_limits<Duration::rep>::max()));
}

TEST(ParseSize, AcceptsPlainBytesAndDecimalAndBinaryUnits) {
  EXPECT_EQ(parse_size("0").value, 0u);
  EXPECT_EQ(parse_size("512").value, 512u);
  EXPECT_EQ(parse_size("512B").value, 512u);
  EXPECT_EQ(parse_size("1KB").value, 1000u);
  EXPECT_EQ(parse_size("3MB").value, 3'000'000u);
  EXPECT_EQ(parse_size("64KiB").value, 65536u);
  EXPECT_EQ(parse_size("1MiB").value, 1048576u);
  EXPECT_EQ(parse_size("2GiB").value, 2147483648u);
  EXPECT_EQ(parse_size("1TiB").value, std::uint64_t{1} << 40);
}

TEST(ParseSize, RejectsJunkNegativeAndOverflow) {
  EXPECT_EQ(size_error(""), "invalid size '': empty");
  EXPECT_EQ(size_error("-1"), "invalid size '-1': negative sizes are not allowed");
  EXPECT_EQ(size_error("KiB"), "invalid size 'KiB': expected a whole number of bytes, e.g. 64KiB");
  EXPECT_EQ(size_error("64kib"),
            "invalid size '64kib': unknown unit 'kib' "
            "(expected B, KB, MB, GB, TB, KiB, MiB, GiB or TiB)");
  EXPECT_EQ(size_error("1.5GiB"),
            "invalid size '1.5GiB': expected a whole number and an optional unit, e.g. 64KiB");
  EXPECT_EQ(size_error("18446744073709551616"), "invalid size '18446744073709551616': too large");
  EXPECT_EQ(size_error("16777216TiB"), "invalid size '16777216TiB': too large");
  EXPECT_EQ(parse_size("18446744073709551615").value, std::numeric_limits<std::uint64_t>::max());
}

TEST(ParseSocketAddress, AcceptsNumericIpv4AndBracketedIpv6) {
  const auto v4 = parse_socket_address("0.0.0.0:443");
  ASSERT_TRUE(v4) << v4.error;
  EXPECT_EQ(v4.value->storage.ss_family, AF_INET);
  EXPECT_EQ(v4.value->length, sizeof(sockaddr_in));
  EXPECT_EQ(port_of(*v4.value), 443);
  EXPECT_EQ(v4.value->text, "0.0.0.0:443");

  const auto v6 = parse_socket_address("[::1]:8443");
  ASSERT_TRUE(v6) << v6.error;
  EXPECT_EQ(v6.value->storage.ss_family, AF_INET6);
  EXPECT_EQ(v6.value->length, sizeof(sockaddr_in6));
  EXPECT_EQ(port_of(*v6.value), 8443);
  EXPECT_TRUE(parse_socket_address("[::]:443"));
  EXPECT_TRUE(parse_socket_address("127.0.0.1:65535"));
}

TEST(ParseSocketAddress, RejectsNamesPortZeroAndUnbracketedIpv6) {
  EXPECT_EQ(address_error("localhost:80"),
            "invalid address 'localhost:80': 'localhost' is not a "
            "numeric IP address (listeners take no host names)");
  EXPECT_EQ(address_error("127.0.0.1:0"),
            "invalid address '127.0.0.1:0': port must be a number from 1 to 65535");
  EXPECT_EQ(address_error("127.0.0.1:65536"),
            "invalid address '127.0.0.1:65536': port must be a number from 1 to 65535");
  EXPECT_EQ(address_error("127.0.0.1:"),
            "invalid address '127.0.0.1:': port must be a number from 1 to 65535");
  EXPECT_EQ(address_error("127.0.0.1"),
            "invalid address '127.0.0.1': expected IPv4:port or [IPv6]:port");
  EXPECT_EQ(address_error(""), "invalid address '': expected IPv4:port or [IPv6]:port");
  EXPECT_EQ(address_error("::1:443"),
            "invalid address '::1:443': write IPv6 addresses in brackets, e.g. [::]:443");
  EXPECT_EQ(address_error("[::1:443"),
            "invalid address '[::1:443': expected IPv4:port or [IPv6]:port");
  EXPECT_EQ(address_error("[127.0.0.1]:443"),
            "invalid address '[127.0.0.1]:443': '127.0.0.1' is not a numeric IP address "
            "(listeners take no host names)");
}

TEST(ParseBackendUrl, DefaultsToPort80AndKeepsNumericAddresses) {
  const auto plain = parse_backend_url("http://127.0.0.1");
  ASSERT_TRUE(plain) << plain.error;
  EXPECT_EQ(plain.value->url, "http://127.0.0.1");
  EXPECT_EQ(plain.value->host_port, "127.0.0.1:80");
  EXPECT_EQ(port_of(plain.value->address), 80);

  const auto v6 = parse_backend_url("http://[::1]:8246/");
  ASSERT_TRUE(v6) << v6.error;
  EXPECT_EQ(v6.value->host_port, "[::1]:8246");
  EXPECT_EQ(v6.value->address.storage.ss_family, AF_INET6);
  EXPECT_EQ(port_of(v6.value->address), 8246);
}

TEST(ParseBackendUrl, ResolvesHostNamesToTheFirstAddress) {
  const auto local = parse_backend_url("http://localhost:8246");
  ASSERT_TRUE(local) << local.error;
  EXPECT_EQ(local.value->host_port, "localhost:8246");
  EXPECT_GT(local.value->address.length, 0u);
  EXPECT_EQ(port_of(local.value->address), 8246);

  const auto unresolved = parse_backend_url("http://localhost:8246", false);
  ASSERT_TRUE(unresolved) << unresolved.error;
  EXPECT_EQ(unresolved.value->address.length, 0u);
}

TEST(ParseBackendUrl, ReportsAHostThatDoesNotResolve) {
  const auto error = url_error("http://no-such-host.invalid:80");
  EXPECT_EQ(error.rfind("cannot resolve backend host 'no-such-host.invalid': ", 0), 0u) << error;
}

TEST(ParseBackendUrl, RefusesHttpsPathsAndAnythingButHttp) {
  EXPECT_EQ(
      url_error("https://127.0.0.1:8443"),
      "unsupported backend URL 'https://127.0.0.1:8443': https backends are not supported yet");
  EXPECT_EQ(url_error("http://127.0.0.1:8246/reqmgr2"),
            "invalid backend URL 'http://127.0.0.1:8246/reqmgr2': a path is not allowed (use the "
            "route's rewrite)");
  EXPECT_EQ(url_error("http://127.0.0.1:8246?x"),
            "invalid backend URL 'http://127.0.0.1:8246?x': a query or fragment is not allowed");
  EXPECT_EQ(url_error("ftp://127.0.0.1"),
            "invalid backend URL 'ftp://127.0.0.1': expected http://host:port");
  EXPECT_EQ(url_error("127.0.0.1:8246"),
            "invalid backend URL '127.0.0.1:8246': expected http://host:port");
  EXPECT_EQ(url_error("http://user@127.0.0.1"),
            "invalid backend URL 'http://user@127.0.0.1': user info is not allowed");
  EXPECT_EQ(url_error("http://:80"), "invalid backend URL 'http://:80': missing or malformed host");
  EXPECT_EQ(url_error("http://127.0.0.1:0"),
            "invalid backend URL 'http://127.0.0.1:0': port must be a number from 1 to 65535");
  EXPECT_EQ(url_error("http://::1:80"),
            "invalid backend URL 'http://::1:80': write IPv6 "
            "addresses in brackets, e.g. http://[::1]:8080");
  EXPECT_EQ(url_error("http://[localhost]:80"),
            "invalid backend URL 'http://[localhost]:80': 'localhost' is not an IPv6 address");
  EXPECT_EQ(url_error("http://bad_host:80"),
            "invalid backend URL 'http://bad_host:80': 'bad_host' is not a valid host name");
}

// ---- load_config: valid files ------------------------------------------------------------------

TEST(ConfigError, FormatsAsFileLineColumnMessage) {
  const ConfigError error{{"/etc/cmsfront.toml", 12, 7}, "unknown key 'x' in [server]"};
  EXPECT_EQ(error.location.format(), "/etc/cmsfront.toml:12:7");
  EXPECT_EQ(error.format(), "/etc/cmsfront.toml:12:7: unknown key 'x' in [server]");
}

TEST(LoadConfig, MinimalFileGetsEveryDefault) {
  const auto result = load_config(fixture("minimal.toml"));
  ASSERT_TRUE(result.errors.empty()) << result.errors.front().format();
  ASSERT_NE(result.config, nullptr);
  const Config& config = *result.config;
  EXPECT_EQ(config.source_file, fixture("minimal.toml"));
  EXPECT_EQ(config.server.workers, std::max(1u, std::thread::hardware_concurrency()));
  EXPECT_EQ(config.server.user, "");
  EXPECT_EQ(config.server.max_connections, 20000u);
  EXPECT_EQ(config.server.shutdown_timeout, Duration(30s));
  EXPECT_EQ(config.server.file_check_interval, Duration(5s));
  EXPECT_EQ(config.server.log_format, LogFormat::text);
  ASSERT_EQ(config.listeners.size(), 1u);
  EXPECT_EQ(config.listeners[0].address.text, "127.0.0.1:8080");
  EXPECT_EQ(config.listeners[0].tls, "");
  EXPECT_FALSE(config.listeners[0].redirect_to_https);
  EXPECT_TRUE(config.tls.empty());
  EXPECT_EQ(config.limits.header_size, 65536u);
  EXPECT_EQ(config.limits.header_count, 100u);
  EXPECT_EQ(config.limits.body_size, 0u);
  EXPECT_EQ(config.limits.header_timeout, Duration(20s));
  EXPECT_EQ(config.limits.idle_timeout, Duration(75s));
  EXPECT_EQ(config.limits.handshake_timeout, Duration(10s));
  EXPECT_EQ(config.limits.body_timeout, Duration(60s));
  EXPECT_EQ(config.auth.trouble_page, "/auth/trouble");
  // No protected route, so no CMS identity: the [auth] keys keep their defaults.
  EXPECT_EQ(config.auth.hmac_key, "");
  EXPECT_EQ(config.auth.hmac_encoding, auth::HmacEncoding::python3);
  EXPECT_EQ(config.auth.user_map, "");
  EXPECT_EQ(config.auth.user_map_url, "");
  EXPECT_EQ(config.auth.user_map_cache, "");
  EXPECT_EQ(config.auth.user_map_refresh, Duration(4min));
  EXPECT_EQ(config.auth.user_map_timeout, Duration(30s));
  EXPECT_EQ(config.auth.user_map_certificate, "");
  EXPECT_EQ(config.auth.user_map_key, "");
  EXPECT_EQ(config.auth.user_map_ca_file, "");
  EXPECT_EQ(config.auth.user_map_ca_dir, "");
  EXPECT_EQ(config.auth.user_map_max_drop_percent, 50u);
  EXPECT_EQ(config.auth.unknown_users, UnknownUsers::reject);
  ASSERT_EQ(config.backends.size(), 1u);
  const BackendSettings& app = config.backends[0];
  EXPECT_EQ(app.name, "app");
  ASSERT_EQ(app.servers.size(), 1u);
  EXPECT_EQ(app.servers[0].host_port, "127.0.0.1:8246");
  EXPECT_EQ(app.max_connections, 32u);
  EXPECT_EQ(app.max_queue, 1000u);
  EXPECT_EQ(app.queue_timeout, Duration(10s));
  EXPECT_EQ(app.connect_timeout, Duration(5s));
  EXPECT_EQ(app.response_timeout, Duration(300s));
  EXPECT_EQ(app.idle_timeout, Duration(60s));
  EXPECT_EQ(app.balance, Balance::round_robin);
  EXPECT_FALSE(app.hmac_encoding.has_value());
  ASSERT_EQ(config.routes.size(), 1u);
  const routes::RouteRule& rule = config.routes.rule(0);
  EXPECT_EQ(rule.name, "route1");
  EXPECT_EQ(rule.path_prefix, "/app");
  EXPECT_EQ(rule.match_regex, "");
  EXPECT_FALSE(rule.rewrite.has_value());
  EXPECT_EQ(rule.backend_index, 0u);
  EXPECT_EQ(rule.auth_policy, static_cast<std::size_t>(AuthPolicy::none));
  EXPECT_FALSE(config.metrics.enabled);
  EXPECT_EQ(config.metrics.address.length, 0u);
  EXPECT_EQ(config.metrics.path, "/metrics");
  EXPECT_FALSE(config.access_log.enabled);
  EXPECT_EQ(config.access_log.path, "");
  EXPECT_EQ(config.access_log.format, AccessLogFormat::cmsweb);
  EXPECT_EQ(config.access_log.queue_lines, 8192u);
}

// Writes a configuration and the certificate/key files it names into a fresh directory.
class LoadConfigFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (std::filesystem::temp_directory_path() / "cmsfront-config-XXXXXX");
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    std::ofstream(dir_ / "cert.pem") << "not parsed by the loader\n";
    std::ofstream(dir_ / "key.pem") << "not parsed by the loader\n";
    std::ofstream(dir_ / "hmac.key") << "not read by the loader\n";
    std::ofstream(dir_ / "usermap.json") << "not parsed by the loader\n";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string write(const std::string& text) {
    std::string expanded = text;
    for (std::size_t at = 0; (at = expanded.find("DIR", at)) != std::string::npos;) {
      expanded.replace(at, 3, dir_.string());
    }
    const auto path = (dir_ / "cmsfront.toml").string();
    std::ofstream(path) << expanded;
    return path;
  }

  std::filesystem::path dir_;
};

constexpr const char* kFullConfig = R"(
[server]
workers = 3
user = "cmsweb"
max_connections = 500
shutdown_timeout = "1m30s"

[[listener]]
address = "[::1]:8443"
tls = "main"

[[listener]]
address = "127.0.0.1:8080"
redirect_to_https = true

[tls.main]
certificate = "DIR/cert.pem"
key = "DIR/key.pem"
protocols = ["TLSv1.3"]

[tls.spare]
certificate = "DIR/cert.pem"
key = "DIR/key.pem"

[limits]
header_size = "32KiB"
header_count = 50
body_size = "2GiB"
header_timeout = "5s"
idle_timeout = "1m"
handshake_timeout = "3s"
body_timeout = "250ms"

[backend.zeta]
servers = ["http://127.0.0.1:9000", "http://localhost"]
max_connections = 4
max_queue = 0
queue_timeout = "2s"
connect_timeout = "1s"
response_timeout = "1h"
idle_timeout = "30s"
balance = "random"
protocol = "http/1.1"

[backend.alpha]
servers = ["http://[::1]:9001/"]
balance = "least-connections"

[[route]]
path = "/z"
backend = "zeta"
auth = "none"

[[route]]
name = "couch"
match = "^/a(/.*)?$"
query = true
rewrite = "$1"
backend = "alpha"
auth = "none"
)";

TEST_F(LoadConfigFiles, FullFileSetsEveryValue) {
  const auto result = load_config(write(kFullConfig));
  ASSERT_TRUE(result.errors.empty()) << result.errors.front().format();
  const Config& config = *result.config;
  EXPECT_EQ(config.server.workers, 3u);
  EXPECT_EQ(config.server.user, "cmsweb");
  EXPECT_EQ(config.server.max_connections, 500u);
  EXPECT_EQ(config.server.shutdown_timeout, Duration(90s));

  ASSERT_EQ(config.listeners.size(), 2u);
  EXPECT_EQ(config.listeners[0].address.text, "[::1]:8443");
  EXPECT_EQ(config.listeners[0].tls, "main");
  EXPECT_TRUE(config.listeners[1].redirect_to_https);

  ASSERT_EQ(config.tls.size(), 2u);
  const TlsProfile& main = config.tls.at("main");
  EXPECT_EQ(main.name, "main");
  EXPECT_EQ(main.certificate, (dir_ / "cert.pem").string());
  EXPECT_EQ(main.key, (dir_ / "key.pem").string());
  EXPECT_EQ(main.certificate_location.format(), (dir_ / "cmsfront.toml").string() + ":17:15");
  EXPECT_EQ(main.key_location.format(), (dir_ / "cmsfront.toml").string() + ":18:7");
  EXPECT_EQ(main.min_protocol, TLS1_3_VERSION);
  EXPECT_EQ(main.max_protocol, TLS1_3_VERSION);
  EXPECT_EQ(main.alpn, Strings{"http/1.1"});
  EXPECT_EQ(config.tls.at("spare").min_protocol, TLS1_2_VERSION);
  EXPECT_EQ(config.tls.at("spare").max_protocol, TLS1_3_VERSION);

  // A profile without the grid authentication and session keys gets their defaults.
  const TlsProfile& spare = config.tls.at("spare");
  EXPECT_TRUE(spare.sni_certificates.empty());
  EXPECT_EQ(spare.client_certificates, ClientCertificates::off);
  EXPECT_EQ(spare.ca_dir, "");
  EXPECT_EQ(spare.crl, CrlPolicy::require);
  EXPECT_EQ(spare.crl_grace, Duration(24h));
  EXPECT_EQ(spare.verify_depth, 10);
  EXPECT_TRUE(spare.proxy_certificates);
  EXPECT_EQ(spare.client_ca_names, "");
  EXPECT_EQ(spare.session_ticket_keys, "");
  EXPECT_EQ(spare.session_lifetime, Duration(1h));
  EXPECT_EQ(spare.session_cache_size, 20480u);
  EXPECT_EQ(spare.verification_cache_size, 20000u);
  EXPECT_EQ(config.server.file_check_interval, Duration(5s));
  EXPECT_EQ(config.auth.trouble_page, "/auth/trouble");

  EXPECT_EQ(config.limits.header_size, 32768u);
  EXPECT_EQ(config.limits.header_count, 50u);
  EXPECT_EQ(config.limits.body_size, 2147483648u);
  EXPECT_EQ(config.limits.header_timeout, Duration(5s));
  EXPECT_EQ(config.limits.idle_timeout, Duration(60s));
  EXPECT_EQ(config.limits.handshake_timeout, Duration(3s));
  EXPECT_EQ(config.limits.body_timeout, Duration(250));

  ASSERT_EQ(config.backends.size(), 2u);
  ASSERT_EQ(config.routes.size(), 2u);
  const BackendSettings& zeta = config.backends.at(config.routes.rule(0).backend_index);
  EXPECT_EQ(zeta.name, "zeta");
  ASSERT_EQ(zeta.servers.size(), 2u);
  EXPECT_EQ(zeta.servers[1].host_port, "localhost:80");
  EXPECT_GT(zeta.servers[1].address.length, 0u);
  EXPECT_EQ(zeta.max_connections, 4u);
  EXPECT_EQ(zeta.max_queue, 0u);
  EXPECT_EQ(zeta.queue_timeout, Duration(2s));
  EXPECT_EQ(zeta.connect_timeout, Duration(1s));
  EXPECT_EQ(zeta.response_timeout, Duration(1h));
  EXPECT_EQ(zeta.idle_timeout, Duration(30s));
  EXPECT_EQ(zeta.balance, Balance::random);
  const BackendSettings& alpha = config.backends.at(config.routes.rule(1).backend_index);
  EXPECT_EQ(alpha.name, "alpha");
  EXPECT_EQ(alpha.balance, Balance::least_connections);
  EXPECT_EQ(alpha.servers.at(0).host_port, "[::1]:9001");

  const routes::RouteRule& couch = config.routes.rule(1);
  EXPECT_EQ(config.routes.rule(0).name, "route1");
  EXPECT_EQ(couch.name, "couch");
  EXPECT_EQ(couch.match_regex, "^/a(/.*)?$");
  EXPECT_TRUE(couch.match_query);
  EXPECT_EQ(couch.rewrite, "$1");
}

TEST_F(LoadConfigFiles, EmptyFileNeedsListenersAndRoutes) {
  const std::string path = write("");
  const auto result = load_config(path);
  ASSERT_EQ(result.errors.size(), 2u);
  EXPECT_EQ(result.errors[0].format(), path + ":0:0: at least one [[listener]] is required");
  EXPECT_EQ(result.errors[1].format(), path + ":0:0: at least one [[route]] is required");
}

TEST_F(LoadConfigFiles, UnusedTlsProfileIsStillChecked) {
  const std::string path = write(R"([[listener]]
address = "127.0.0.1:8080"
[tls.unused]
certificate = "DIR/cert.pem"
key = "DIR/missing.pem"
[backend.app]
servers = ["http://127.0.0.1:8246"]
[[route]]
path = "/"
backend = "app"
auth = "none"
)");
  const auto result = load_config(path);
  ASSERT_EQ(result.errors.size(), 1u);
  EXPECT_EQ(result.errors[0].format(), path + ":5:7: cannot read key file '" +
                                           (dir_ / "missing.pem").string() +
                                           "': No such file or directory");
  EXPECT_TRUE(load_config(path, {.check_files = false}).errors.empty());
}

TEST_F(LoadConfigFiles, CertificateMustBeARegularFile) {
  const std::string path = write(R"([[listener]]
address = "127.0.0.1:8443"
tls = "main"
[tls.main]
certificate = "DIR"
key = "DIR/key.pem"
[backend.app]
servers = ["http://127.0.0.1:8246"]
[[route]]
path = "/"
backend = "app"
auth = "none"
)");
  const auto result = load_config(path);
  ASSERT_EQ(result.errors.size(), 1u);
  EXPECT_EQ(result.errors[0].format(), path + ":5:15: cannot read certificate file '" +
                                           dir_.string() + "': not a regular file");
}

// Every grid authentication, SNI and session key, on files that exist.
constexpr const char* kGridConfig = R"([server]
file_check_interval = "250ms"

[[listener]]
address = "127.0.0.1:8443"
tls = "grid"

[tls.grid]
certificate = "DIR/cert.pem"
key = "DIR/key.pem"
sni_certificates = [
  {certificate = "DIR/alias-cert.pem", key = "DIR/alias-key.pem"},
  {key = "DIR/key.pem", certificate = "DIR/cert.pem"},
]
client_certificates = "require"
ca_dir = "DIR/certificates"
crl = "if-present"
crl_grace = "0"
verify_depth = 100
proxy_certificates = false
client_ca_names = "DIR/ca-names.pem"
session_ticket_keys = "DIR/ticket-keys"
session_lifetime = "7d"
session_cache_size = 0

[tls.anonymous]
certificate = "DIR/cert.pem"
key = "DIR/key.pem"
client_certificates = "request"
ca_dir = "DIR/certificates"
crl = "off"
crl_grace = "90m"
verify_depth = 1
session_lifetime = "1s"
verification_cache_size = 0

[[tls.anonymous.sni_certificates]]
certificate = "DIR/alias-cert.pem"
key = "DIR/alias-key.pem"

[auth]
trouble_page = "/cms/auth-trouble"
hmac_key = "DIR/hmac.key"
user_map = "DIR/usermap.json"

[backend.app]
servers = ["http://127.0.0.1:8246"]

[[route]]
path = "/none"
backend = "app"
auth = "none"

[[route]]
path = "/optional"
backend = "app"
auth = "optional"

[[route]]
path = "/cert"
backend = "app"
auth = "cert"

[[route]]
path = "/limited"
backend = "app"
auth = "cert+limited-proxy"
)";

TEST_F(LoadConfigFiles, GridAuthenticationKeysAreParsed) {
  std::ofstream(dir_ / "alias-cert.pem") << "not parsed by the loader\n";
  std::ofstream(dir_ / "alias-key.pem") << "not parsed by the loader\n";
  std::ofstream(dir_ / "ca-names.pem") << "not parsed by the loader\n";
  std::ofstream(dir_ / "ticket-keys") << std::string(160, 'k');
  std::filesystem::create_directory(dir_ / "certificates");
  const std::string path = write(kGridConfig);
  const auto result = load_config(path);
  ASSERT_TRUE(result.errors.empty()) << result.errors.front().format();
  const Config& config = *result.config;
  EXPECT_EQ(config.server.file_check_interval, Duration(250));
  EXPECT_EQ(config.auth.trouble_page, "/cms/auth-trouble");

  const TlsProfile& grid = config.tls.at("grid");
  ASSERT_EQ(grid.sni_certificates.size(), 2u);
  EXPECT_EQ(grid.sni_certificates[0].certificate, (dir_ / "alias-cert.pem").string());
  EXPECT_EQ(grid.sni_certificates[0].key, (dir_ / "alias-key.pem").string());
  EXPECT_EQ(grid.sni_certificates[0].location.format(), path + ":12:3");
  EXPECT_EQ(grid.sni_certificates[1].certificate, (dir_ / "cert.pem").string());
  EXPECT_EQ(grid.sni_certificates[1].key, (dir_ / "key.pem").string());
  EXPECT_EQ(grid.sni_certificates[1].location.format(), path + ":13:3");
  EXPECT_EQ(grid.client_certificates, ClientCertificates::require);
  EXPECT_EQ(grid.ca_dir, (dir_ / "certificates").string());
  EXPECT_EQ(grid.ca_dir_location.format(), path + ":16:10");
  EXPECT_EQ(grid.crl, CrlPolicy::if_present);
  EXPECT_EQ(grid.crl_grace, Duration(0));
  EXPECT_EQ(grid.verify_depth, 100);
  EXPECT_FALSE(grid.proxy_certificates);
  EXPECT_EQ(grid.client_ca_names, (dir_ / "ca-names.pem").string());
  EXPECT_EQ(grid.session_ticket_keys, (dir_ / "ticket-keys").string());
  EXPECT_EQ(grid.session_ticket_keys_location.format(), path + ":22:23");
  EXPECT_EQ(grid.session_lifetime, Duration(168h));
  EXPECT_EQ(grid.session_cache_size, 0u);

  const TlsProfile& anonymous = config.tls.at("anonymous");
  ASSERT_EQ(anonymous.sni_certificates.size(), 1u);
  EXPECT_EQ(anonymous.sni_certificates[0].certificate, (dir_ / "alias-cert.pem").string());
  EXPECT_EQ(anonymous.sni_certificates[0].location.format(), path + ":37:1");
  EXPECT_EQ(anonymous.client_certificates, ClientCertificates::request);
  EXPECT_EQ(anonymous.crl, CrlPolicy::off);
  EXPECT_EQ(anonymous.crl_grace, Duration(90min));
  EXPECT_EQ(anonymous.verify_depth, 1);
  EXPECT_TRUE(anonymous.proxy_certificates);
  EXPECT_EQ(anonymous.client_ca_names, "");
  EXPECT_EQ(anonymous.session_ticket_keys, "");
  EXPECT_EQ(anonymous.session_lifetime, Duration(1s));
  EXPECT_EQ(anonymous.session_cache_size, 20480u);
  EXPECT_EQ(anonymous.verification_cache_size, 0u);

  ASSERT_EQ(config.routes.size(), 4u);
  EXPECT_EQ(config.routes.rule(0).auth_policy, static_cast<std::size_t>(AuthPolicy::none));
  EXPECT_EQ(config.routes.rule(1).auth_policy, static_cast<std::size_t>(AuthPolicy::optional));
  EXPECT_EQ(config.routes.rule(2).auth_policy, static_cast<std::size_t>(AuthPolicy::cert));
  EXPECT_EQ(config.routes.rule(3).auth_policy,
            static_cast<std::size_t>(AuthPolicy::cert_limited_proxy));
}

// What every protected route needs, on files SetUp() writes.
constexpr const char* kIdentityKeys = R"([auth]
hmac_key = "DIR/hmac.key"
user_map = "DIR/usermap.json"
)";

// A profile asking for client certificates, with `extra` keys, and one route.
constexpr const char* kClientCertificateProfile = R"([[listener]]
address = "127.0.0.1:8443"
tls = "main"
[backend.app]
servers = ["http://127.0.0.1:8246"]
[[route]]
path = "/"
backend = "app"
auth = "cert"
[tls.main]
certificate = "DIR/cert.pem"
key = "DIR/key.pem"
client_certificates = "request"
)";

// kClientCertificateProfile with `extra` keys of [tls.main] (from line 14 on), then the [auth]
// keys its protected route needs.
std::string client_certificate_config(const std::string& extra) {
  return std::string(kClientCertificateProfile) + extra + kIdentityKeys;
}

TEST_F(LoadConfigFiles, TicketKeyFileHoldsWholeEightyByteKeys) {
  std::filesystem::create_directory(dir_ / "certificates");
  const std::string path =
      write(client_certificate_config("ca_dir = \"DIR/certificates\"\n"
                                      "session_ticket_keys = \"DIR/ticket-keys\"\n"));
  const std::string keys = (dir_ / "ticket-keys").string();
  for (const std::size_t size : {80u, 160u}) {
    std::ofstream(keys, std::ios::trunc) << std::string(size, 'k');
    const auto result = load_config(path);
    EXPECT_TRUE(result.errors.empty()) << size << ": " << result.errors.front().format();
  }
  for (const std::size_t size : {0u, 81u}) {
    std::ofstream(keys, std::ios::trunc) << std::string(size, 'k');
    const auto result = load_config(path);
    ASSERT_EQ(result.errors.size(), 1u) << size;
    EXPECT_EQ(result.errors[0].format(),
              path + ":15:23: session ticket key file '" + keys + "' has " + std::to_string(size) +
                  " bytes, not a positive multiple of 80 (one or more 80-byte keys; make one "
                  "with: openssl rand 80 > " +
                  keys + ")");
    EXPECT_TRUE(load_config(path, {.check_files = false}).errors.empty());
  }
}

TEST_F(LoadConfigFiles, CaDirMustBeAReadableDirectory) {
  for (const std::string name : {"cert.pem", "missing"}) {
    const std::string path = write(client_certificate_config("ca_dir = \"DIR/" + name + "\"\n"));
    const auto result = load_config(path);
    ASSERT_EQ(result.errors.size(), 1u) << name;
    EXPECT_EQ(result.errors[0].format(),
              path + ":14:10: cannot read CA directory '" + (dir_ / name).string() +
                  "': " + (name == "missing" ? "No such file or directory" : "Not a directory"));
    EXPECT_TRUE(load_config(path, {.check_files = false}).errors.empty());
  }
}

TEST_F(LoadConfigFiles, GridFilesMustBeReadable) {
  std::filesystem::create_directory(dir_ / "certificates");
  const std::string path =
      write(client_certificate_config("ca_dir = \"DIR/certificates\"\n"
                                      "client_ca_names = \"DIR/names.pem\"\n"
                                      "session_ticket_keys = \"DIR/keys\"\n"
                                      "sni_certificates = [{certificate = \"DIR/cert.pem\", "
                                      "key = \"DIR/alias.key\"}]\n"));
  Strings errors;
  for (const auto& error : load_config(path).errors) errors.push_back(error.format());
  const std::string missing = "': No such file or directory";
  EXPECT_EQ(errors, (Strings{
                        path + ":15:19: cannot read client CA names file '" +
                            (dir_ / "names.pem").string() + missing,
                        path + ":16:23: cannot read session ticket key file '" +
                            (dir_ / "keys").string() + missing,
                        path + ":17:" + std::to_string(55 + dir_.string().size()) +
                            ": cannot read key file '" + (dir_ / "alias.key").string() + missing,
                    }));
  EXPECT_TRUE(load_config(path, {.check_files = false}).errors.empty());
}

TEST_F(LoadConfigFiles, TroublePageMustBeAPlainAcceptablePath) {
  const std::string rest = R"([[listener]]
address = "127.0.0.1:8080"
[backend.app]
servers = ["http://127.0.0.1:8246"]
[[route]]
path = "/"
backend = "app"
auth = "none"
)";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"\"auth/trouble\"", "'trouble_page' must start with '/'"},
      {"\"\"", "'trouble_page' must start with '/'"},
      {"\"/auth/trouble?x=1\"",
       "'trouble_page' must be a plain path, without '?', '#' or whitespace"},
      {"\"/auth#top\"", "'trouble_page' must be a plain path, without '?', '#' or whitespace"},
      {"\"/auth trouble\"", "'trouble_page' must be a plain path, without '?', '#' or whitespace"},
      {"\"/auth/\\ttrouble\"",
       "'trouble_page' must be a plain path, without '?', '#' or whitespace"},
      {"\"/auth/../trouble\"",
       "'trouble_page' is not an acceptable request path: dot segment in path"},
      {"\"/auth/%2e%2e/x\"",
       "'trouble_page' is not an acceptable request path: encoded dot in path"},
      {"\"/auth\\\\trouble\"",
       "'trouble_page' is not an acceptable request path: backslash in path"},
      {"7", "'trouble_page' must be a string"},
  };
  for (const auto& [value, message] : cases) {
    const std::string path = write("[auth]\ntrouble_page = " + value + "\n" + rest);
    const auto result = load_config(path);
    ASSERT_EQ(result.errors.size(), 1u) << value;
    EXPECT_EQ(result.errors[0].format(), path + ":2:16: " + message) << value;
  }
  const std::string path = write("[auth]\ntrouble_page = \"/_cmsfront/trouble-1.html\"\n" + rest);
  const auto result = load_config(path);
  ASSERT_TRUE(result.errors.empty()) << result.errors.front().format();
  EXPECT_EQ(result.config->auth.trouble_page, "/_cmsfront/trouble-1.html");
}

// One plain listener (LISTENER, default 127.0.0.1:8080), one backend and one route, after the
// sections given; the sections' own lines come first so their positions are easy to state.
std::string with_rest(const std::string& sections, const std::string& listener = "127.0.0.1:8080") {
  return sections + "[[listener]]\naddress = \"" + listener +
         "\"\n[backend.app]\nservers = [\"http://127.0.0.1:8246\"]\n"
         "[[route]]\npath = \"/\"\nbackend = \"app\"\nauth = \"none\"\n";
}

Strings formatted_errors(const ConfigLoadResult& result) {
  Strings out;
  for (const auto& error : result.errors) out.push_back(error.format());
  return out;
}

TEST_F(LoadConfigFiles, EmptyMetricsSectionServesTheDefaultEndpoint) {
  const auto result = load_config(write(with_rest("[metrics]\n")));
  ASSERT_TRUE(result.errors.empty()) << result.errors.front().format();
  const MetricsSettings& metrics = result.config->metrics;
  EXPECT_TRUE(metrics.enabled);
  EXPECT_EQ(metrics.address.text, "127.0.0.1:9091");
  EXPECT_EQ(metrics.address.storage.ss_family, AF_INET);
  EXPECT_EQ(metrics.address.length, sizeof(sockaddr_in));
  EXPECT_EQ(port_of(metrics.address), 9091);
  EXPECT_EQ(metrics.path, "/metrics");
  EXPECT_FALSE(result.config->access_log.enabled);
}

TEST_F(LoadConfigFiles, MetricsAddressAndPathAreSet) {
  const auto result = load_config(
      write(with_rest("[metrics]\naddress = \"[::1]:9100\"\npath = \"/_cmsfront/metrics\"\n")));
  ASSERT_TRUE(result.errors.empty()) << result.errors.front().format();
  const MetricsSettings& metrics = result.config->metrics;
  EXPECT_TRUE(metrics.enabled);
  EXPECT_EQ(metrics.address.text, "[::1]:9100");
  EXPECT_EQ(metrics.address.storage.ss_family, AF_INET6);
  EXPECT_EQ(port_of(metrics.address), 9100);
  EXPECT_EQ(metrics.path, "/_cmsfront/metrics");
}

TEST_F(LoadConfigFiles, MetricsValuesAreChecked) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"address = \"127.0.0.1\"",
       "2:11: invalid address '127.0.0.1': expected IPv4:port or [IPv6]:port"},
      {"address = \"::1:9091\"",
       "2:11: invalid address '::1:9091': write IPv6 addresses in brackets, e.g. [::]:443"},
      {"address = \"127.0.0.1:0\"",
       "2:11: invalid address '127.0.0.1:0': port must be a number from 1 to 65535"},
      {"address = 9091", "2:11: 'address' must be a string"},
      {"path = \"\"", "2:8: 'path' must start with '/'"},
      {"path = \"metrics\"", "2:8: 'path' must start with '/'"},
      {"path = \"/metrics?x=1\"",
       "2:8: 'path' must be a plain path, without '?', '#' or whitespace"},
      {"path = \"/metrics#top\"",
       "2:8: 'path' must be a plain path, without '?', '#' or whitespace"},
      {"path = \"/my metrics\"",
       "2:8: 'path' must be a plain path, without '?', '#' or whitespace"},
      {"path = \"/a/../metrics\"",
       "2:8: 'path' is not an acceptable request path: dot segment in path"},
      {"path = true", "2:8: 'path' must be a string"},
      {"enabled = true", "2:1: unknown key 'enabled' in [metrics]"},
  };
  for (const auto& [line, message] : cases) {
    const std::string path = write(with_rest("[metrics]\n" + line + "\n"));
    EXPECT_EQ(formatted_errors(load_config(path)), Strings{path + ":" + message}) << line;
  }
  const std::string path = write(with_rest("metrics = \"127.0.0.1:9091\"\n"));
  EXPECT_EQ(formatted_errors(load_config(path)),
            Strings{path + ":1:11: 'metrics' must be a table"});
}

// The same socket as a listener, however written, and a wildcard listener on the metrics port
// (or metrics on a wildcard address at a listener's port) are refused; the message points at
// the metrics address, or at [metrics] when the default address is the one taken.
TEST_F(LoadConfigFiles, MetricsMustNotShareAListenerAddress) {
  const std::string message = "the metrics endpoint must not share a listener's address";
  const std::vector<std::tuple<std::string, std::string, std::string>> refused = {
      {"127.0.0.1:8080", "address = \"127.0.0.1:8080\"", "2:11"},
      {"[::1]:8443", "address = \"[0::0:1]:8443\"", "2:11"},
      {"0.0.0.0:443", "address = \"127.0.0.1:443\"", "2:11"},
      {"127.0.0.1:443", "address = \"0.0.0.0:443\"", "2:11"},
      {"[::]:443", "address = \"127.0.0.1:443\"", "2:11"},
      {"127.0.0.1:443", "address = \"[::]:443\"", "2:11"},
      {"127.0.0.1:9091", "path = \"/m\"", "1:1"},
  };
  for (const auto& [listener, line, where] : refused) {
    const std::string path = write(with_rest("[metrics]\n" + line + "\n", listener));
    EXPECT_EQ(formatted_errors(load_config(path)), Strings{path + ":" + where + ": " + message})
        << listener << " / " << line;
  }
  const std::vector<std::pair<std::string, std::string>> accepted = {
      {"127.0.0.1:8080", "address = \"127.0.0.1:8081\""},
      {"127.0.0.2:9091", "path = \"/m\""},
      {"0.0.0.0:9091", "address = \"[::1]:9091\""},
      {"[::1]:9091", "address = \"127.0.0.1:9091\""},
  };
  for (const auto& [listener, line] : accepted) {
    const auto result = load_config(write(with_rest("[metrics]\n" + line + "\n", listener)));
    EXPECT_TRUE(result.errors.empty())
        << listener << " / " << line << ": " << result.errors.front().format();
  }
}

TEST_F(LoadConfigFiles, AccessLogDefaultsAndExplicitValues) {
  auto result = load_config(write(with_rest("[access_log]\npath = \"-\"\n")));
  ASSERT_TRUE(result.errors.empty()) << result.errors.front().format();
  EXPECT_TRUE(result.config->access_log.enabled);
  EXPECT_EQ(result.config->access_log.path, "-");
  EXPECT_EQ(result.config->access_log.format, AccessLogFormat::cmsweb);
  EXPECT_EQ(result.config->access_log.queue_lines, 8192u);
  EXPECT_FALSE(result.config->metrics.enabled);

  for (const std::size_t lines : {16u, 10'000'000u}) {
    result =
        load_config(write(with_rest("[access_log]\npath = \"DIR/logs/access.log\"\n"
                                    "format = \"json\"\nqueue_lines = " +
                                    std::to_string(lines) + "\n")));
    // The directory is checked now; the file itself is not created until cmsfront opens it.
    ASSERT_EQ(result.errors.size(), 1u) << lines;
    std::filesystem::create_directory(dir_ / "logs");
    result = load_config((dir_ / "cmsfront.toml").string());
    ASSERT_TRUE(result.errors.empty()) << result.errors.front().format();
    const AccessLogSettings& log = result.config->access_log;
    EXPECT_TRUE(log.enabled);
    EXPECT_EQ(log.path, (dir_ / "logs" / "access.log").string());
    EXPECT_EQ(log.format, AccessLogFormat::json);
    EXPECT_EQ(log.queue_lines, lines);
    EXPECT_FALSE(std::filesystem::exists(dir_ / "logs" / "access.log"));
    std::filesystem::remove(dir_ / "logs");
  }

  // An existing, writable log file is fine.
  std::ofstream(dir_ / "access.log") << "an earlier line\n";
  result = load_config(write(with_rest("[access_log]\npath = \"DIR/access.log\"\n")));
  ASSERT_TRUE(result.errors.empty()) << result.errors.front().format();
  EXPECT_EQ(result.config->access_log.path, (dir_ / "access.log").string());
}

TEST_F(LoadConfigFiles, AccessLogValuesAreChecked) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"path = \"\"", "2:8: 'path' must not be empty"},
      {"path = 1", "2:8: 'path' must be a string"},
      {"path = \"-\"\nformat = \"apache\"",
       "3:10: 'format' must be one of cmsweb, json (got 'apache')"},
      {"path = \"-\"\nformat = 2", "3:10: 'format' must be a string"},
      {"path = \"-\"\nqueue_lines = 15", "3:15: 'queue_lines' must be at least 16"},
      {"path = \"-\"\nqueue_lines = 10000001", "3:15: 'queue_lines' must be at most 10000000"},
      {"path = \"-\"\nqueue_lines = \"64KiB\"", "3:15: 'queue_lines' must be an integer"},
      {"path = \"-\"\nformat = \"json\"\nlevel = \"info\"",
       "4:1: unknown key 'level' in [access_log]"},
      {"format = \"json\"", "1:1: missing required key 'path' in [access_log]"},
  };
  for (const auto& [lines, message] : cases) {
    const std::string path = write(with_rest("[access_log]\n" + lines + "\n"));
    EXPECT_EQ(formatted_errors(load_config(path)), Strings{path + ":" + message}) << lines;
  }
  const std::string path = write(with_rest("access_log = \"-\"\n"));
  EXPECT_EQ(formatted_errors(load_config(path)),
            Strings{path + ":1:14: 'access_log' must be a table"});
}

// With check_files the log's directory must exist and be writable now (cmsfront opens the file
// after binding, and reopens it on SIGUSR1); without, only the syntax is checked.
TEST_F(LoadConfigFiles, AccessLogDirectoryMustBeWritable) {
  std::vector<std::pair<std::string, std::string>> cases = {
      {"DIR/missing/access.log", "No such file or directory"},
      {"DIR/cert.pem/access.log", "Not a directory"},
      {"DIR", "Is a directory"},
  };
  if (::geteuid() != 0) {
    // root writes anywhere, so these only fail for other users.
    std::filesystem::create_directory(dir_ / "read-only");
    std::filesystem::permissions(dir_ / "read-only", std::filesystem::perms::owner_read |
                                                         std::filesystem::perms::owner_exec);
    std::ofstream(dir_ / "old.log") << "not writable\n";
    std::filesystem::permissions(dir_ / "old.log", std::filesystem::perms::owner_read);
    cases.emplace_back("DIR/read-only/access.log", "Permission denied");
    cases.emplace_back("DIR/old.log", "Permission denied");
  }
  for (const auto& [name, reason] : cases) {
    const std::string path = write(with_rest("[access_log]\npath = \"" + name + "\"\n"));
    std::string expanded = name;
    expanded.replace(0, 3, dir_.string());
    EXPECT_EQ(formatted_errors(load_config(path)),
              Strings{path + ":2:8: cannot write access log '" + expanded + "': " + reason})
        << name;
    EXPECT_TRUE(load_config(path, {.check_files = false}).errors.empty()) << name;
  }
  if (::geteuid() != 0) {
    std::filesystem::permissions(dir_ / "read-only", std::filesystem::perms::owner_all);
  }
}

// ---- [auth]: the CMS identity ------------------------------------------------------------------

// Every [auth] identity key with a good value, a backend overriding hmac_encoding and one
// taking [auth]'s.
constexpr const char* kIdentityConfig = R"([auth]
hmac_key = "DIR/hmac.key"
hmac_encoding = "raw"
user_map = "DIR/usermap.json"
user_map_url = "https://cms-cric.cern.ch/api/accounts/user/query/?json&preset=roles"
user_map_cache = "/var/lib/cmsfront/usermap.json"
user_map_refresh = "1s"
user_map_timeout = "1m30s"
user_map_certificate = "DIR/robot-cert.pem"
user_map_key = "DIR/robot-key.pem"
user_map_ca_file = "DIR/cric-ca.pem"
user_map_ca_dir = "/etc/grid-security/certificates"
user_map_max_drop_percent = 100
unknown_users = "forward"

[[listener]]
address = "127.0.0.1:8443"
tls = "main"

[tls.main]
certificate = "DIR/cert.pem"
key = "DIR/key.pem"
client_certificates = "request"
ca_dir = "DIR"

[backend.python]
servers = ["http://127.0.0.1:8246"]
hmac_encoding = "python3"

[backend.go]
servers = ["http://127.0.0.1:8247"]

[[route]]
path = "/python"
backend = "python"
auth = "cert"

[[route]]
path = "/go"
backend = "go"
auth = "optional"
)";

TEST_F(LoadConfigFiles, IdentityKeysAreParsed) {
  std::ofstream(dir_ / "robot-cert.pem") << "not parsed by the loader\n";
  std::ofstream(dir_ / "robot-key.pem") << "not parsed by the loader\n";
  std::ofstream(dir_ / "cric-ca.pem") << "not parsed by the loader\n";
  const auto result = load_config(write(kIdentityConfig));
  ASSERT_TRUE(result.errors.empty()) << result.errors.front().format();
  const AuthSettings& auth = result.config->auth;
  EXPECT_EQ(auth.trouble_page, "/auth/trouble");
  EXPECT_EQ(auth.hmac_key, (dir_ / "hmac.key").string());
  EXPECT_EQ(auth.hmac_encoding, auth::HmacEncoding::raw);
  EXPECT_EQ(auth.user_map, (dir_ / "usermap.json").string());
  EXPECT_EQ(auth.user_map_url,
            "https://cms-cric.cern.ch/api/accounts/user/query/?json&preset=roles");
  EXPECT_EQ(auth.user_map_cache, "/var/lib/cmsfront/usermap.json");
  EXPECT_EQ(auth.user_map_refresh, Duration(1s));
  EXPECT_EQ(auth.user_map_timeout, Duration(90s));
  EXPECT_EQ(auth.user_map_certificate, (dir_ / "robot-cert.pem").string());
  EXPECT_EQ(auth.user_map_key, (dir_ / "robot-key.pem").string());
  EXPECT_EQ(auth.user_map_ca_file, (dir_ / "cric-ca.pem").string());
  EXPECT_EQ(auth.user_map_ca_dir, "/etc/grid-security/certificates");
  EXPECT_EQ(auth.user_map_max_drop_percent, 100u);
  EXPECT_EQ(auth.unknown_users, UnknownUsers::forward);

  const Config& config = *result.config;
  ASSERT_EQ(config.routes.size(), 2u);
  const BackendSettings& python = config.backends.at(config.routes.rule(0).backend_index);
  EXPECT_EQ(python.name, "python");
  EXPECT_EQ(python.hmac_encoding, auth::HmacEncoding::python3);
  const BackendSettings& go = config.backends.at(config.routes.rule(1).backend_index);
  EXPECT_EQ(go.name, "go");
  EXPECT_FALSE(go.hmac_encoding.has_value());
  EXPECT_EQ(config.routes.rule(0).auth_policy, static_cast<std::size_t>(AuthPolicy::cert));
  EXPECT_EQ(config.routes.rule(1).auth_policy, static_cast<std::size_t>(AuthPolicy::optional));

  // The robot's files are checked like every other file.
  std::filesystem::remove(dir_ / "robot-key.pem");
  EXPECT_EQ(formatted_errors(load_config((dir_ / "cmsfront.toml").string())),
            Strings{(dir_ / "cmsfront.toml").string() + ":10:16: cannot read user map TLS file '" +
                    (dir_ / "robot-key.pem").string() + "': No such file or directory"});
  EXPECT_TRUE(
      load_config((dir_ / "cmsfront.toml").string(), {.check_files = false}).errors.empty());
}

// Either source alone is enough for protected routes; the defaults of the other keys stay.
TEST_F(LoadConfigFiles, EitherUserMapSourceIsEnough) {
  const std::string url = "https://cms-cric.cern.ch/api/accounts/user/query/?json";
  for (const std::string& source :
       {std::string("user_map = \"DIR/usermap.json\"\n"),
        "user_map_url = \"" + url + "\"\nuser_map_cache = \"/var/lib/cmsfront/usermap.json\"\n"}) {
    const auto result =
        load_config(write(std::string(kClientCertificateProfile) + "ca_dir = \"DIR\"\n" +
                          "[auth]\nhmac_key = \"DIR/hmac.key\"\n" + source));
    ASSERT_TRUE(result.errors.empty()) << source << ": " << result.errors.front().format();
    const AuthSettings& auth = result.config->auth;
    const bool file = source.starts_with("user_map =");
    EXPECT_EQ(auth.user_map, file ? (dir_ / "usermap.json").string() : "");
    EXPECT_EQ(auth.user_map_url, file ? "" : url);
    EXPECT_EQ(auth.user_map_cache, file ? "" : "/var/lib/cmsfront/usermap.json");
    EXPECT_EQ(auth.hmac_encoding, auth::HmacEncoding::python3);
    EXPECT_EQ(auth.user_map_refresh, Duration(4min));
    EXPECT_EQ(auth.user_map_timeout, Duration(30s));
    EXPECT_EQ(auth.user_map_certificate, "");
    EXPECT_EQ(auth.user_map_key, "");
    EXPECT_EQ(auth.user_map_ca_file, "");
    EXPECT_EQ(auth.user_map_ca_dir, "");
    EXPECT_EQ(auth.user_map_max_drop_percent, 50u);
    EXPECT_EQ(auth.unknown_users, UnknownUsers::reject);
  }
}

// The route (line 9, `auth` at column 8) is protected; [auth] follows the profile.
TEST_F(LoadConfigFiles, ProtectedRoutesNeedHmacKeyAndUserMap) {
  const std::string hmac_key = "hmac_key = \"DIR/hmac.key\"\n";
  const std::string user_map = "user_map = \"DIR/usermap.json\"\n";
  const std::string no_key =
      ":9:8: auth = \"cert\" needs [auth] hmac_key (the backends verify the cms-authn headers "
      "with it)";
  const std::string no_map =
      ":9:8: auth = \"cert\" needs [auth] user_map or user_map_url (the CMS user map)";
  const std::string profile = std::string(kClientCertificateProfile) + "ca_dir = \"DIR\"\n";
  std::string path = write(profile);
  EXPECT_EQ(formatted_errors(load_config(path)), (Strings{path + no_key, path + no_map}));
  path = write(profile + "[auth]\n" + user_map);
  EXPECT_EQ(formatted_errors(load_config(path)), Strings{path + no_key});
  path = write(profile + "[auth]\n" + hmac_key);
  EXPECT_EQ(formatted_errors(load_config(path)), Strings{path + no_map});
  path = write(profile + "[auth]\n" + hmac_key + user_map);
  EXPECT_TRUE(load_config(path).errors.empty());
  // A key given with a bad value is reported there only: one typo, one message.
  path = write(profile + "[auth]\nhmac_key = \"\"\n" + user_map);
  EXPECT_EQ(formatted_errors(load_config(path)),
            Strings{path + ":16:12: 'hmac_key' must not be empty"});
  path = write(profile + "[auth]\n" + hmac_key + "user_map = 7\n");
  EXPECT_EQ(formatted_errors(load_config(path)),
            Strings{path + ":17:12: 'user_map' must be a string"});
}

// Each bad [auth] value alone, on a file whose only route is auth = "none"; positions are
// "line:column" in the file with_rest() writes ([auth] on line 1).
TEST_F(LoadConfigFiles, IdentityValuesAreChecked) {
  const std::string cache = "\nuser_map_cache = \"/var/lib/cmsfront/usermap.json\"";
  const std::string no_url = " has no effect without 'user_map_url'";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"hmac_key = \"\"", "2:12: 'hmac_key' must not be empty"},
      {"hmac_key = \"DIR/missing.key\"",
       "2:12: cannot read HMAC key file 'DIR/missing.key': No such file or directory"},
      {"user_map = \"DIR/missing.json\"",
       "2:12: cannot read user map file 'DIR/missing.json': No such file or directory"},
      {"hmac_encoding = \"utf-8\"",
       "2:17: 'hmac_encoding' must be one of python3, raw (got 'utf-8')"},
      {"hmac_encoding = \"Python3\"",
       "2:17: 'hmac_encoding' must be one of python3, raw (got 'Python3')"},
      {"hmac_encoding = 3", "2:17: 'hmac_encoding' must be a string"},
      {"unknown_users = \"allow\"",
       "2:17: 'unknown_users' must be one of reject, forward (got 'allow')"},
      {"unknown_users = \"Reject\"",
       "2:17: 'unknown_users' must be one of reject, forward (got 'Reject')"},
      {"user_map_url = \"http://cms-cric.cern.ch/api\"" + cache,
       "2:16: 'user_map_url' must be an https:// URL (got 'http://cms-cric.cern.ch/api')"},
      {"user_map_url = \"HTTPS://cms-cric.cern.ch/api\"" + cache,
       "2:16: 'user_map_url' must be an https:// URL (got 'HTTPS://cms-cric.cern.ch/api')"},
      {"user_map_url = \"https://\"" + cache,
       "2:16: 'user_map_url' must be an https:// URL (got 'https://')"},
      {"user_map_url = \"https://cms-cric.cern.ch/a b\"" + cache,
       "2:16: 'user_map_url' must be an https:// URL (got 'https://cms-cric.cern.ch/a b')"},
      {"user_map_url = \"cms-cric.cern.ch\"" + cache,
       "2:16: 'user_map_url' must be an https:// URL (got 'cms-cric.cern.ch')"},
      {"user_map_url = 443" + cache, "2:16: 'user_map_url' must be a string"},
      {"user_map_url = \"https://cms-cric.cern.ch/api\"",
       "2:16: 'user_map_url' needs 'user_map_cache' (where the last good download is kept, so a "
       "restart while CRIC is down starts with the full map)"},
      {"user_map_cache = \"var/lib/cmsfront/usermap.json\"",
       "2:18: 'user_map_cache' must be an absolute path"},
      {"user_map_cache = \"\"", "2:18: 'user_map_cache' must be an absolute path"},
      {"user_map_cache = \"./usermap.json\"", "2:18: 'user_map_cache' must be an absolute path"},
      {"user_map_refresh = \"999ms\"", "2:20: 'user_map_refresh' must be at least 1s"},
      {"user_map_refresh = \"0\"", "2:20: 'user_map_refresh' must be greater than 0"},
      {"user_map_refresh = 240",
       "2:20: 'user_map_refresh' must be a duration string such as "
       "\"30s\""},
      {"user_map_timeout = \"0\"", "2:20: 'user_map_timeout' must be greater than 0"},
      {"user_map_timeout = \"30\"",
       "2:20: 'user_map_timeout': invalid duration '30': missing unit (expected ms, s, m, h or "
       "d)"},
      {"user_map_max_drop_percent = 101", "2:29: 'user_map_max_drop_percent' must be at most 100"},
      {"user_map_max_drop_percent = -1", "2:29: 'user_map_max_drop_percent' must be at least 0"},
      {"user_map_max_drop_percent = \"50%\"",
       "2:29: 'user_map_max_drop_percent' must be an integer"},
      {"user_map_certificate = \"DIR/cert.pem\"", "2:24: 'user_map_certificate'" + no_url},
      {"user_map_key = \"DIR/key.pem\"", "2:16: 'user_map_key'" + no_url},
      {"user_map_ca_file = \"DIR/cert.pem\"", "2:20: 'user_map_ca_file'" + no_url},
      {"user_map_ca_dir = \"/etc/grid-security/certificates\"", "2:19: 'user_map_ca_dir'" + no_url},
      // A URL given with a bad value does not make its TLS keys "without" one as well.
      {"user_map_url = \"http://cms-cric.cern.ch/api\"" + cache +
           "\nuser_map_certificate = \"DIR/cert.pem\"\nuser_map_ca_dir = \"/etc/ssl/certs\"",
       "2:16: 'user_map_url' must be an https:// URL (got 'http://cms-cric.cern.ch/api')"},
      {"user_map_url = \"https://cms-cric.cern.ch/api\"" + cache +
           "\nuser_map_key = \"DIR/missing.pem\"",
       "4:16: cannot read user map TLS file 'DIR/missing.pem': No such file or directory"},
      {"user_map_file = \"DIR/usermap.json\"", "2:1: unknown key 'user_map_file' in [auth]"},
  };
  const auto expand = [&](std::string text) {
    for (std::size_t at = 0; (at = text.find("DIR", at)) != std::string::npos;) {
      text.replace(at, 3, dir_.string());
    }
    return text;
  };
  for (const auto& [lines, message] : cases) {
    const std::string path = write(with_rest("[auth]\n" + lines + "\n"));
    EXPECT_EQ(formatted_errors(load_config(path)), Strings{path + ":" + expand(message)}) << lines;
  }
  // The limits themselves are accepted.
  for (const std::string lines :
       {"user_map_max_drop_percent = 0", "user_map_max_drop_percent = 100",
        "user_map_refresh = \"1s\"", "user_map_timeout = \"1ms\"", "hmac_encoding = \"python3\"",
        "hmac_encoding = \"raw\"", "unknown_users = \"reject\"", "unknown_users = \"forward\""}) {
    const auto result = load_config(write(with_rest("[auth]\n" + lines + "\n")));
    EXPECT_TRUE(result.errors.empty()) << lines << ": " << result.errors.front().format();
  }
  const std::string path =
      write(with_rest("[backend.b]\nservers = [\"http://127.0.0.1:1\"]\n"
                      "hmac_encoding = \"go\"\n"));
  EXPECT_EQ(formatted_errors(load_config(path)),
            Strings{path + ":3:17: 'hmac_encoding' must be one of python3, raw (got 'go')"});
}

// ---- the shipped example ---------------------------------------------------------------------

const std::string kExample = std::string(CMSFRONT_SOURCE_DIR) + "/etc/cmsfront.toml";

TEST(ExampleConfiguration, LoadsWhenFilesAndHostsAreNotChecked) {
  const auto result = load_config(kExample, {.check_files = false, .resolve_backends = false});
  ASSERT_TRUE(result.errors.empty()) << result.errors.front().format();
  const Config& config = *result.config;
  ASSERT_EQ(config.listeners.size(), 2u);
  EXPECT_EQ(config.listeners[0].address.text, "0.0.0.0:443");
  EXPECT_EQ(config.listeners[0].tls, "main");
  EXPECT_EQ(config.listeners[1].address.text, "0.0.0.0:80");
  EXPECT_TRUE(config.listeners[1].redirect_to_https);
  EXPECT_EQ(config.tls.at("main").certificate, "/etc/grid-security/hostcert.pem");
  EXPECT_EQ(config.tls.at("main").min_protocol, TLS1_2_VERSION);
  EXPECT_EQ(config.tls.at("main").max_protocol, TLS1_3_VERSION);
  ASSERT_EQ(config.routes.size(), 2u);
  const routes::RouteRule& couchdb = config.routes.rule(1);
  EXPECT_EQ(couchdb.match_regex, "^/couchdb(/.*)?$");
  EXPECT_EQ(couchdb.rewrite, "$1");
  EXPECT_EQ(config.backends.at(couchdb.backend_index).name, "couchdb");
  EXPECT_EQ(config.backends.at(config.routes.rule(0).backend_index).name, "reqmgr2");

  EXPECT_EQ(config.server.file_check_interval, Duration(5s));
  const TlsProfile& main = config.tls.at("main");
  EXPECT_TRUE(main.sni_certificates.empty());
  EXPECT_EQ(main.client_certificates, ClientCertificates::request);
  EXPECT_EQ(main.ca_dir, "/etc/grid-security/certificates");
  EXPECT_EQ(main.crl, CrlPolicy::require);
  EXPECT_EQ(main.crl_grace, Duration(24h));
  EXPECT_EQ(main.verify_depth, 10);
  EXPECT_TRUE(main.proxy_certificates);
  EXPECT_EQ(main.client_ca_names, "");
  EXPECT_EQ(main.session_ticket_keys, "");
  EXPECT_EQ(main.session_lifetime, Duration(1h));
  EXPECT_EQ(main.session_cache_size, 20480u);
  EXPECT_EQ(config.auth.trouble_page, "/auth/trouble");
  EXPECT_EQ(config.auth.hmac_key, "/etc/cmsfront/hmac.key");
  EXPECT_EQ(config.auth.hmac_encoding, auth::HmacEncoding::python3);
  EXPECT_EQ(config.auth.user_map, "/etc/cmsfront/usermap.json");
  EXPECT_EQ(config.auth.user_map_url, "");
  EXPECT_EQ(config.auth.unknown_users, UnknownUsers::reject);
  for (const BackendSettings& backend : config.backends) {
    EXPECT_FALSE(backend.hmac_encoding.has_value()) << backend.name;
  }
  EXPECT_EQ(config.routes.rule(0).auth_policy, static_cast<std::size_t>(AuthPolicy::cert));
  EXPECT_EQ(couchdb.auth_policy, static_cast<std::size_t>(AuthPolicy::cert_limited_proxy));

  EXPECT_TRUE(config.metrics.enabled);
  EXPECT_EQ(config.metrics.address.text, "127.0.0.1:9091");
  EXPECT_EQ(port_of(config.metrics.address), 9091);
  EXPECT_EQ(config.metrics.path, "/metrics");
  EXPECT_TRUE(config.access_log.enabled);
  EXPECT_EQ(config.access_log.path, "/var/log/cmsfront/access.log");
  EXPECT_EQ(config.access_log.format, AccessLogFormat::cmsweb);
  EXPECT_EQ(config.access_log.queue_lines, 8192u);
}

// Where `needle` starts in `file`, as "line:column" (1-based), or "" when absent.
std::string position_of(const std::string& file, const std::string& needle) {
  std::ifstream in(file);
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    const auto column = line.find(needle);
    if (column != std::string::npos) {
      return std::to_string(number) + ":" + std::to_string(column + 1);
    }
  }
  return "";
}

TEST(ExampleConfiguration, ReportsTheUnreadableCertificateWithItsPosition) {
  if (::access("/etc/grid-security/hostcert.pem", R_OK) == 0) {
    GTEST_SKIP() << "this machine has a host certificate";
  }
  const auto result = load_config(kExample, {.check_files = true, .resolve_backends = false});
  ASSERT_FALSE(result.errors.empty());
  EXPECT_EQ(result.config, nullptr);
  const std::string where = position_of(kExample, "\"/etc/grid-security/hostcert.pem\"");
  ASSERT_NE(where, "");
  EXPECT_EQ(result.errors[0].format(),
            kExample + ":" + where +
                ": cannot read certificate file '/etc/grid-security/hostcert.pem': No such file "
                "or directory");
}

// The example's commented-out [auth] and backend keys are valid as written: uncommented, they
// load (the URL's keys with it) and mean what their comments say.
TEST(ExampleConfiguration, CommentedIdentityKeysAreValid) {
  std::ifstream in(kExample);
  std::ostringstream text;
  int uncommented = 0;
  for (std::string line; std::getline(in, line);) {
    if (line.starts_with("#user_map_") || line.starts_with("#hmac_encoding = ")) {
      line.erase(0, 1);
      ++uncommented;
    }
    text << line << "\n";
  }
  EXPECT_EQ(uncommented, 10);
  std::string pattern = (std::filesystem::temp_directory_path() / "cmsfront-example-XXXXXX");
  ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
  const std::filesystem::path dir = pattern;
  const std::string path = (dir / "cmsfront.toml").string();
  std::ofstream(path) << text.str();
  const auto result = load_config(path, {.check_files = false, .resolve_backends = false});
  std::filesystem::remove_all(dir);
  ASSERT_TRUE(result.errors.empty()) << result.errors.front().format();
  const AuthSettings& auth = result.config->auth;
  EXPECT_EQ(auth.user_map, "/etc/cmsfront/usermap.json");
  EXPECT_TRUE(auth.user_map_url.starts_with("https://cms-cric.cern.ch/")) << auth.user_map_url;
  EXPECT_EQ(auth.user_map_cache, "/var/lib/cmsfront/usermap.json");
  EXPECT_EQ(auth.user_map_refresh, Duration(4min));
  EXPECT_EQ(auth.user_map_timeout, Duration(30s));
  EXPECT_EQ(auth.user_map_certificate, "/etc/cmsfront/robot-cert.pem");
  EXPECT_EQ(auth.user_map_key, "/etc/cmsfront/robot-key.pem");
  EXPECT_FALSE(auth.user_map_ca_file.empty());
  EXPECT_EQ(auth.user_map_ca_dir, "/etc/grid-security/certificates");
  EXPECT_EQ(auth.user_map_max_drop_percent, 50u);
  for (const BackendSettings& backend : result.config->backends) {
    // Only [backend.reqmgr2] shows the key.
    EXPECT_EQ(backend.hmac_encoding.has_value(), backend.name == "reqmgr2") << backend.name;
    EXPECT_EQ(backend.hmac_encoding.value_or(auth::HmacEncoding::raw),
              backend.name == "reqmgr2" ? auth::HmacEncoding::python3 : auth::HmacEncoding::raw);
  }
}

// ---- load_config: one fixture per class of error ----------------------------------------------

TEST(LoadConfigErrors, UnreadableConfigurationFile) {
  EXPECT_EQ(
      load_errors("does-not-exist.toml"),
      Strings{"does-not-exist.toml:0:0: cannot read configuration: No such file or directory"});
  const auto directory = load_config(CMSFRONT_TEST_DATA);
  ASSERT_EQ(directory.errors.size(), 1u);
  EXPECT_EQ(directory.errors[0].format(),
            std::string(CMSFRONT_TEST_DATA) + ":0:0: cannot read configuration: Is a directory");
}

TEST(LoadConfigErrors, SyntaxError) {
  EXPECT_EQ(load_errors("syntax_error.toml"),
            Strings{"syntax_error.toml:3:15: Error while parsing string: unescaped control "
                    "characters other than TAB (U+0009) are explicitly prohibited"});
}

TEST(LoadConfigErrors, UnknownKey) {
  EXPECT_EQ(load_errors("unknown_key.toml"),
            (Strings{
                "unknown_key.toml:2:1: unknown key 'worker' in [server]",
                "unknown_key.toml:4:2: unknown key 'metric' at the top level",
                "unknown_key.toml:12:1: unknown key 'timeout' in [backend.app]",
                "unknown_key.toml:15:1: unknown key 'paht' in [[route]]",
            }));
}

TEST(LoadConfigErrors, WrongType) {
  EXPECT_EQ(load_errors("wrong_type.toml"),
            (Strings{
                "wrong_type.toml:2:11: 'workers' must be an integer",
                "wrong_type.toml:3:19: 'max_connections' must be an integer",
                "wrong_type.toml:7:21: 'redirect_to_https' must be a boolean (true or false)",
                "wrong_type.toml:10:11: 'servers' must be an array of strings",
                "wrong_type.toml:13:37: 'servers' must be an array of strings",
                "wrong_type.toml:18:9: 'query' must be a boolean (true or false)",
            }));
}

TEST(LoadConfigErrors, BadDuration) {
  EXPECT_EQ(load_errors("bad_duration.toml"),
            (Strings{
                "bad_duration.toml:2:20: 'shutdown_timeout': invalid duration '30': missing unit "
                "(expected ms, s, m, h or d)",
                "bad_duration.toml:5:18: 'header_timeout': invalid duration '5x': unknown unit "
                "'x' (expected ms, s, m, h or d)",
                "bad_duration.toml:6:16: 'idle_timeout': invalid duration '-1s': negative "
                "durations are not allowed",
                "bad_duration.toml:7:16: 'body_timeout' must be greater than 0",
                "bad_duration.toml:8:21: 'handshake_timeout' must be a duration string such as "
                "\"30s\"",
                "bad_duration.toml:15:20: 'response_timeout': invalid duration '5m1h': each unit "
                "may appear once, largest first (e.g. 1h30m)",
                "bad_duration.toml:16:19: 'connect_timeout': invalid duration '1.5s': unexpected "
                "character '.' (whole numbers only)",
            }));
}

TEST(LoadConfigErrors, BadSize) {
  EXPECT_EQ(load_errors("bad_size.toml"),
            (Strings{
                "bad_size.toml:2:15: 'header_size': invalid size '64kib': unknown unit 'kib' "
                "(expected B, KB, MB, GB, TB, KiB, MiB, GiB or TiB)",
                "bad_size.toml:3:13: 'body_size' must not be negative",
            }));
  EXPECT_EQ(load_errors("small_header_size.toml"),
            (Strings{
                "small_header_size.toml:2:15: 'header_size' must be at least 1024 bytes",
                "small_header_size.toml:3:13: 'body_size': invalid size '10 MiB': expected a "
                "whole number and an optional unit, e.g. 64KiB",
            }));
}

TEST(LoadConfigErrors, BadAddress) {
  EXPECT_EQ(load_errors("bad_address.toml"),
            (Strings{
                "bad_address.toml:2:11: invalid address 'localhost:80': 'localhost' is not a "
                "numeric IP address (listeners take no host names)",
                "bad_address.toml:5:11: invalid address '0.0.0.0:0': port must be a number from 1 "
                "to 65535",
                "bad_address.toml:8:11: invalid address '::1:443': write IPv6 addresses in "
                "brackets, e.g. [::]:443",
                "bad_address.toml:14:11: duplicate listener address '[::1]:8443'",
                "bad_address.toml:18:3: unsupported backend URL 'https://127.0.0.1:8443': https "
                "backends are not supported yet",
                "bad_address.toml:19:3: invalid backend URL 'http://127.0.0.1:8246/app': a path "
                "is not allowed (use the route's rewrite)",
                "bad_address.toml:20:3: invalid backend URL 'ftp://127.0.0.1': expected "
                "http://host:port",
            }));
}

TEST(LoadConfigErrors, UnknownBackend) {
  EXPECT_EQ(load_errors("unknown_backend.toml"),
            Strings{"unknown_backend.toml:9:11: unknown backend 'reqmgr'"});
}

TEST(LoadConfigErrors, UnknownTlsProfile) {
  EXPECT_EQ(load_errors("unknown_tls.toml", {.check_files = false}),
            Strings{"unknown_tls.toml:3:7: unknown tls profile 'mian'"});
}

TEST(LoadConfigErrors, UnreadableCertificateAndKey) {
  EXPECT_EQ(load_errors("unreadable_tls_files.toml"),
            (Strings{
                "unreadable_tls_files.toml:6:15: cannot read certificate file "
                "'/nonexistent/cmsfront-test/hostcert.pem': No such file or directory",
                "unreadable_tls_files.toml:7:7: cannot read key file "
                "'/nonexistent/cmsfront-test/hostkey.pem': No such file or directory",
            }));
  EXPECT_EQ(load_errors("unreadable_tls_files.toml", {.check_files = false}), Strings{});
}

// The message comes from routes::RouteTable (PCRE2's wording); the loader adds the position of
// each bad 'match', all of them, not only the first.
TEST(LoadConfigErrors, BadRegex) {
  EXPECT_EQ(load_errors("bad_regex.toml"),
            (Strings{
                "bad_regex.toml:8:9: invalid regex '^/couchdb(/.*$': missing closing parenthesis "
                "at offset 14",
                "bad_regex.toml:20:9: invalid regex '[z-a]': range out of order in character "
                "class at offset 3",
            }));
}

TEST(LoadConfigErrors, MissingRequiredKey) {
  EXPECT_EQ(load_errors("missing_required.toml", {.check_files = false}),
            (Strings{
                "missing_required.toml:1:1: missing required key 'address' in [[listener]]",
                "missing_required.toml:4:1: missing required key 'key' in [tls.main]",
                "missing_required.toml:7:1: missing required key 'servers' in [backend.app]",
                "missing_required.toml:10:1: missing required key 'backend' in [[route]]",
                "missing_required.toml:14:1: missing required key 'path' or 'match' in [[route]]",
                "missing_required.toml:18:1: missing required key 'auth' in [[route]] (one of "
                "none, optional, cert, cert+limited-proxy)",
            }));
  EXPECT_EQ(load_errors("missing_sections.toml"),
            (Strings{
                "missing_sections.toml:0:0: at least one [[listener]] is required",
                "missing_sections.toml:0:0: at least one [[route]] is required",
            }));
}

TEST(LoadConfigErrors, BadEnumValue) {
  EXPECT_EQ(load_errors("bad_enum.toml", {.check_files = false}),
            (Strings{
                "bad_enum.toml:8:14: unsupported TLS protocol 'TLSv1.1' (expected TLSv1.2 or "
                "TLSv1.3)",
                "bad_enum.toml:9:9: h2 is not supported yet",
                "bad_enum.toml:9:27: unsupported ALPN protocol 'spdy/3' (expected http/1.1)",
                "bad_enum.toml:10:23: 'client_certificates' must be one of off, request, require "
                "(got 'optional')",
                "bad_enum.toml:11:7: 'crl' must be one of require, if-present, off (got 'yes')",
                "bad_enum.toml:15:11: balance = 'affinity' is not supported yet",
                "bad_enum.toml:16:12: protocol = 'h2c' is not supported yet",
                "bad_enum.toml:20:11: 'balance' must be one of round-robin, least-connections, "
                "random (got 'fastest')",
                "bad_enum.toml:21:12: 'protocol' must be http/1.1 (got 'http/2')",
                "bad_enum.toml:32:8: 'auth' must be one of none, optional, cert, "
                "cert+limited-proxy (got 'everyone')",
            }));
}

TEST(LoadConfigErrors, MultipleErrorsAreAllReportedInFileOrder) {
  EXPECT_EQ(load_errors("multiple_errors.toml"),
            (Strings{
                "multiple_errors.toml:5:13: 'max_queue' must be at least 0",
                "multiple_errors.toml:8:8: 'path' must start with '/'",
                "multiple_errors.toml:13:11: invalid address '127.0.0.1:99999': port must be a "
                "number from 1 to 65535",
                "multiple_errors.toml:16:16: 'header_count' must be at least 1",
                "multiple_errors.toml:19:11: 'servers' must not be empty",
                "multiple_errors.toml:22:1: unknown key 'colour' in [server]",
            }));
}

TEST(LoadConfigErrors, BadTlsAndServerValues) {
  EXPECT_EQ(load_errors("bad_tls_values.toml", {.check_files = false}),
            (Strings{
                "bad_tls_values.toml:2:23: 'file_check_interval' must be at least 100ms",
                "bad_tls_values.toml:12:10: 'ca_dir' must not be empty",
                "bad_tls_values.toml:13:13: 'crl_grace': invalid duration '1x': unknown unit 'x' "
                "(expected ms, s, m, h or d)",
                "bad_tls_values.toml:14:16: 'verify_depth' must be at least 1",
                "bad_tls_values.toml:15:22: 'proxy_certificates' must be a boolean (true or false)",
                "bad_tls_values.toml:16:19: 'client_ca_names' must be a string",
                "bad_tls_values.toml:17:20: 'session_lifetime' must be at least 1s",
                "bad_tls_values.toml:18:22: 'session_cache_size' must be at least 0",
                // Not a string, so [tls.b] is not also told that it lacks ca_dir.
                "bad_tls_values.toml:23:23: 'client_certificates' must be a string",
                "bad_tls_values.toml:24:16: 'verify_depth' must be at most 100",
                "bad_tls_values.toml:25:23: 'session_ticket_keys' must not be empty",
                "bad_tls_values.toml:26:20: 'session_lifetime' must be at most 7d",
            }));
}

TEST(LoadConfigErrors, SniCertificatesAreTablesOfCertificateAndKey) {
  EXPECT_EQ(load_errors("bad_sni_certificates.toml", {.check_files = false}),
            (Strings{
                "bad_sni_certificates.toml:8:20: 'sni_certificates' must be an array of tables "
                "such as [{certificate = \"...\", key = \"...\"}]",
                "bad_sni_certificates.toml:13:20: 'sni_certificates' must not be empty",
                "bad_sni_certificates.toml:20:3: missing required key 'key' in "
                "[[tls.c.sni_certificates]]",
                "bad_sni_certificates.toml:21:61: 'key' must be a string",
                "bad_sni_certificates.toml:21:64: unknown key 'names' in "
                "[[tls.c.sni_certificates]]",
                "bad_sni_certificates.toml:28:1: missing required key 'certificate' in "
                "[[tls.d.sni_certificates]]",
            }));
}

// An operator who writes ca_dir but forgets client_certificates must not believe that
// certificates are checked.
TEST(LoadConfigErrors, ClientCertificateKeysNeedClientCertificates) {
  EXPECT_EQ(load_errors("client_certificates_off.toml", {.check_files = false}),
            (Strings{
                "client_certificates_off.toml:9:10: 'ca_dir' has no effect with "
                "client_certificates = \"off\"",
                "client_certificates_off.toml:10:7: 'crl' has no effect with "
                "client_certificates = \"off\"",
                "client_certificates_off.toml:11:13: 'crl_grace' has no effect with "
                "client_certificates = \"off\"",
                "client_certificates_off.toml:12:16: 'verify_depth' has no effect with "
                "client_certificates = \"off\"",
                "client_certificates_off.toml:13:22: 'proxy_certificates' has no effect with "
                "client_certificates = \"off\"",
                "client_certificates_off.toml:14:19: 'client_ca_names' has no effect with "
                "client_certificates = \"off\"",
                "client_certificates_off.toml:20:10: 'ca_dir' has no effect with "
                "client_certificates = \"off\"",
            }));
}

TEST(LoadConfigErrors, ClientCertificatesNeedCaDir) {
  EXPECT_EQ(load_errors("missing_ca_dir.toml", {.check_files = false}),
            (Strings{
                "missing_ca_dir.toml:8:23: missing required key 'ca_dir' in [tls.a] "
                "(client_certificates = \"request\" needs it)",
                "missing_ca_dir.toml:13:23: missing required key 'ca_dir' in [tls.b] "
                "(client_certificates = \"require\" needs it)",
            }));
}

TEST(LoadConfigErrors, RoutesNeedingAnIdentityNeedClientCertificates) {
  EXPECT_EQ(load_errors("auth_needs_client_certificates.toml", {.check_files = false}),
            (Strings{
                "auth_needs_client_certificates.toml:21:8: auth = \"optional\" needs a [tls.*] "
                "profile with client_certificates = \"request\" or \"require\"",
                "auth_needs_client_certificates.toml:26:8: auth = \"cert\" needs a [tls.*] "
                "profile with client_certificates = \"request\" or \"require\"",
                "auth_needs_client_certificates.toml:31:8: auth = \"cert+limited-proxy\" needs a "
                "[tls.*] profile with client_certificates = \"request\" or \"require\"",
            }));
}

TEST(LoadConfigErrors, BadAuthSection) {
  EXPECT_EQ(load_errors("bad_auth_section.toml"),
            (Strings{
                "bad_auth_section.toml:2:16: 'trouble_page' must start with '/'",
                "bad_auth_section.toml:3:1: unknown key 'login_page' in [auth]",
            }));
}

// Every bad identity value, each at its own position. The protected route is not blamed: [auth]
// names hmac_key and user_map_url (whose bad value is reported where it is).
TEST(LoadConfigErrors, BadIdentityValues) {
  EXPECT_EQ(load_errors("bad_auth_values.toml", {.check_files = false}),
            (Strings{
                "bad_auth_values.toml:3:17: 'hmac_encoding' must be one of python3, raw (got "
                "'latin1')",
                "bad_auth_values.toml:4:16: 'user_map_url' must be an https:// URL (got "
                "'http://cms-cric.cern.ch/api/accounts/user/query/?json&preset=roles')",
                "bad_auth_values.toml:5:18: 'user_map_cache' must be an absolute path",
                "bad_auth_values.toml:6:20: 'user_map_refresh' must be at least 1s",
                "bad_auth_values.toml:7:20: 'user_map_timeout' must be greater than 0",
                "bad_auth_values.toml:8:29: 'user_map_max_drop_percent' must be at most 100",
                "bad_auth_values.toml:9:17: 'unknown_users' must be one of reject, forward (got "
                "'allow')",
                "bad_auth_values.toml:23:17: 'hmac_encoding' must be one of python3, raw (got "
                "'utf-8')",
            }));
}

// The robot certificate and CA keys serve only the CRIC download.
TEST(LoadConfigErrors, UserMapTlsKeysNeedAUrl) {
  EXPECT_EQ(load_errors("user_map_tls_without_url.toml", {.check_files = false}),
            (Strings{
                "user_map_tls_without_url.toml:6:24: 'user_map_certificate' has no effect "
                "without 'user_map_url'",
                "user_map_tls_without_url.toml:7:16: 'user_map_key' has no effect without "
                "'user_map_url'",
                "user_map_tls_without_url.toml:8:20: 'user_map_ca_file' has no effect without "
                "'user_map_url'",
                "user_map_tls_without_url.toml:9:19: 'user_map_ca_dir' has no effect without "
                "'user_map_url'",
                "user_map_tls_without_url.toml:10:29: 'user_map_max_drop_percent' must be at "
                "least 0",
            }));
}

// Said once, at the first protected route, however many follow.
TEST(LoadConfigErrors, ProtectedRoutesNeedTheCmsIdentityKeys) {
  EXPECT_EQ(load_errors("auth_needs_identity_keys.toml", {.check_files = false}),
            (Strings{
                "auth_needs_identity_keys.toml:27:8: auth = \"optional\" needs [auth] hmac_key "
                "(the backends verify the cms-authn headers with it)",
                "auth_needs_identity_keys.toml:27:8: auth = \"optional\" needs [auth] user_map "
                "or user_map_url (the CMS user map)",
            }));
}

TEST(LoadConfigErrors, BadMetricsSection) {
  EXPECT_EQ(load_errors("bad_metrics_section.toml"),
            (Strings{
                "bad_metrics_section.toml:2:11: invalid address 'localhost:9091': 'localhost' is "
                "not a numeric IP address (listeners take no host names)",
                "bad_metrics_section.toml:3:8: 'path' must start with '/'",
                "bad_metrics_section.toml:4:1: unknown key 'port' in [metrics]",
            }));
}

// Same address and port as a listener, written differently: metrics are never served on a
// public listener.
TEST(LoadConfigErrors, MetricsOnAListenerAddress) {
  EXPECT_EQ(load_errors("metrics_on_listener.toml"),
            (Strings{
                "metrics_on_listener.toml:9:11: the metrics endpoint must not share a "
                "listener's address",
                "metrics_on_listener.toml:10:8: 'path' must be a plain path, without '?', '#' or "
                "whitespace",
            }));
}

TEST(LoadConfigErrors, BadAccessLogSection) {
  EXPECT_EQ(load_errors("bad_access_log_section.toml"),
            (Strings{
                "bad_access_log_section.toml:3:10: 'format' must be one of cmsweb, json (got "
                "'xml')",
                "bad_access_log_section.toml:4:15: 'queue_lines' must be at least 16",
                "bad_access_log_section.toml:5:1: unknown key 'rotate' in [access_log]",
            }));
  EXPECT_EQ(load_errors("access_log_without_path.toml"),
            (Strings{
                "access_log_without_path.toml:4:1: missing required key 'path' in [access_log]",
                "access_log_without_path.toml:6:15: 'queue_lines' must be at most 10000000",
            }));
}

TEST_F(LoadConfigFiles, RouteKeyConflictsAreReported) {
  const std::string path = write(R"([[listener]]
address = "127.0.0.1:8080"
tls = "main"
redirect_to_https = true
[tls.main]
certificate = "DIR/cert.pem"
key = "DIR/key.pem"
[backend.app]
servers = ["http://127.0.0.1:8246"]
[[route]]
path = "/a"
match = "^/a"
backend = "app"
auth = "none"
[[route]]
path = "/b"
query = true
backend = "app"
auth = "none"
)");
  Strings errors;
  for (const auto& error : load_config(path).errors) errors.push_back(error.format());
  EXPECT_EQ(errors,
            (Strings{
                path + ":4:21: 'redirect_to_https' is only valid on a plain listener (this one "
                       "has 'tls')",
                path + ":12:9: a route takes either 'path' or 'match', not both",
                path + ":17:9: 'query' is only valid with 'match'",
            }));
}

}  // namespace
}  // namespace proxy
