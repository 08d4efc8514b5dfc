#include "proxy/access_log.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <new>
#include <optional>
#include <random>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

// Counts allocations made by the calling thread, so a test can show that a warm log() makes
// none (the writer thread's allocations are its own and not counted). GCC 12 wrongly flags
// free() of what this operator new returned as mismatched once both are inlined.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
namespace {
thread_local std::size_t t_allocations = 0;
}  // namespace

void* operator new(std::size_t size) {
  ++t_allocations;
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t size) { return operator new(size); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }

namespace proxy {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

// Every cmsweb line cmsfront writes matches this regex (ECMAScript, and Python's `re` reads it
// the same way), '\n' excluded. The integration tests reuse it to parse access logs. Groups:
//  1 host (%v)  2 client (%a)  3 request line (%r)  4 status or "-"  5 bytes in  6 bytes out
//  7 body bytes or "-"  8 duration us  9 TLS protocol  10 cipher  11 client DN  12 auth method
//  13 referer  14 user agent  15 local port.
// Quoted items are Apache-escaped (\" \\ \n \xhh ...), so (?:[^"\\]|\\.)* spans them exactly.
constexpr const char* kCmswebLineRegex =
    R"re(^\[\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} \+0000\] (\S+) (\S+) )re"
    R"re("((?:[^"\\]|\\.)*)" (\d{3}|-) )re"
    R"re(\[data: (\d+) in (\d+) out (\d+|-) body (\d+) us \] )re"
    R"re(\[auth: (\S+) (\S+) "((?:[^"\\]|\\.)*)" "((?:[^"\\]|\\.)*)" \] )re"
    R"re(\[ref: "((?:[^"\\]|\\.)*)" "((?:[^"\\]|\\.)*)" \] (\d+)$)re";

bool matches_cmsweb_regex(const std::string& line) {
  static const std::regex re(kCmswebLineRegex);
  return std::regex_match(line, re);
}

// 2026-11-29T01:02:03.123456Z
constexpr std::int64_t kNovember29 = 1795914123LL * 1000000 + 123456;

RequestRecord tls_get() {
  RequestRecord r;
  r.connection_id = 7;
  r.request_number = 3;
  r.start_unix_us = kNovember29;
  r.duration_us = 12345;
  r.backend_us = 11000;
  r.queue_us = 5;
  r.method = "GET";
  r.target = "/dbs/prod/global/DBSReader/datasets?dataset=/A/B/RAW";
  r.path = "/dbs/prod/global/DBSReader/datasets";
  r.http_version = "HTTP/1.1";
  r.host = "cmsweb.cern.ch:8443";
  r.referer = "https://cmsweb.cern.ch/das/";
  r.user_agent = "dasgoclient/v02.04.52";
  r.client_ip = "188.184.1.2";
  r.local_port = 8443;
  r.status = 200;
  r.bytes_in = 512;
  r.bytes_out = 2048;
  r.body_bytes_out = 1500;
  r.route = 2;
  r.backend = 1;
  r.tls_protocol = "TLSv1.3";
  r.tls_cipher = "TLS_AES_256_GCM_SHA384";
  r.client_dn = "/DC=ch/DC=cern/OU=Organic Units/OU=Users/CN=jdoe/CN=123456/CN=John Doe";
  r.user_dn = r.client_dn;
  r.auth_method = "X509Cert";
  r.auth_result = "ok";
  return r;
}

RequestRecord plain_local_404() {
  RequestRecord r;
  r.connection_id = 1;
  r.request_number = 1;
  r.start_unix_us = kNovember29;
  r.duration_us = 210;
  r.method = "GET";
  r.target = "/nothing";
  r.path = "/nothing";
  r.http_version = "HTTP/1.0";
  r.host = "-";
  r.user_agent = "curl/8.5.0";
  r.client_ip = "127.0.0.1";
  r.local_port = 8080;
  r.status = 404;
  r.bytes_in = 78;
  r.bytes_out = 150;
  r.failure = "no_route";
  r.auth_result = "none";
  return r;
}

std::string cmsweb(const RequestRecord& r) {
  std::string out;
  format_cmsweb(r, out);
  return out;
}

std::string json(const RequestRecord& r, const std::vector<std::string>* routes = nullptr,
                 const std::vector<std::string>* backends = nullptr) {
  std::string out;
  format_json(r, out, routes, backends);
  return out;
}

// ---- a minimal JSON checker: one flat object of strings, numbers, booleans and nulls --------

struct JsonValue {
  enum Kind { string, number, boolean, null } kind;
  std::string text;  // decoded string, or the literal
};

bool valid_utf8(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    const auto b = static_cast<unsigned char>(s[i]);
    std::size_t n = b < 0x80                 ? 1
                    : b >= 0xc2 && b <= 0xdf ? 2
                    : b >= 0xe0 && b <= 0xef ? 3
                    : b >= 0xf0 && b <= 0xf4 ? 4
                                             : 0;
    if (n == 0 || i + n > s.size()) return false;
    std::uint32_t cp = n == 1 ? b : n == 2 ? (b & 0x1f) : n == 3 ? (b & 0x0f) : (b & 0x07);
    for (std::size_t k = 1; k < n; ++k) {
      const auto c = static_cast<unsigned char>(s[i + k]);
      if ((c & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (c & 0x3f);
    }
    static constexpr std::uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMin[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    i += n;
  }
  return true;
}

// Parses `{"k":v,...}\n`; nullopt on any syntax error, duplicate key, raw control character or
// invalid UTF-8. \uXXXX escapes are decoded to UTF-8 (BMP only: the formatter emits no others).
std::optional<std::map<std::string, JsonValue>> parse_json_line(const std::string& line) {
  if (line.empty() || line.back() != '\n' || !valid_utf8(line)) return std::nullopt;
  std::size_t i = 0;
  const auto parse_string = [&](std::string& out) -> bool {
    if (line[i] != '"') return false;
    for (++i; i < line.size(); ++i) {
      const auto c = static_cast<unsigned char>(line[i]);
      if (c == '"') {
        ++i;
        return true;
      }
      if (c < 0x20) return false;
      if (c != '\\') {
        out.push_back(line[i]);
        continue;
      }
      if (++i >= line.size()) return false;
      switch (line[i]) {
        case '"':
          out.push_back('"');
          break;
        case '\\':
          out.push_back('\\');
          break;
        case '/':
          out.push_back('/');
          break;
        case 'b':
          out.push_back('\b');
          break;
        case 'f':
          out.push_back('\f');
          break;
        case 'n':
          out.push_back('\n');
          break;
        case 'r':
          out.push_back('\r');
          break;
        case 't':
          out.push_back('\t');
          break;
        case 'u': {
          if (i + 4 >= line.size()) return false;
          const unsigned long cp = std::stoul(line.substr(i + 1, 4), nullptr, 16);
          if (cp < 0x80) {
            out.push_back(static_cast<char>(cp));
          } else if (cp < 0x800) {
            out.push_back(static_cast<char>(0xc0 | (cp >> 6)));
            out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
          } else {
            out.push_back(static_cast<char>(0xe0 | (cp >> 12)));
            out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
            out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
          }
          i += 4;
          break;
        }
        default:
          return false;
      }
    }
    return false;
  };
  std::map<std::string, JsonValue> object;
  if (line[i++] != '{') return std::nullopt;
  for (bool first = true; line[i] != '}'; first = false) {
    if (!first && line[i++] != ',') return std::nullopt;
    std::string key;
    if (!parse_string(key) || line[i++] != ':') return std::nullopt;
    JsonValue value{JsonValue::null, {}};
    if (line[i] == '"') {
      value.kind = JsonValue::string;
      if (!parse_string(value.text)) return std::nullopt;
    } else {
      const std::size_t end = line.find_first_of(",}", i);
      if (end == std::string::npos) return std::nullopt;
      value.text = line.substr(i, end - i);
      i = end;
      if (value.text == "true" || value.text == "false") {
        value.kind = JsonValue::boolean;
      } else if (value.text == "null") {
        value.kind = JsonValue::null;
      } else if (!value.text.empty() &&
                 value.text.find_first_not_of("0123456789") == std::string::npos) {
        value.kind = JsonValue::number;
      } else {
        return std::nullopt;
      }
    }
    if (!object.emplace(std::move(key), std::move(value)).second) return std::nullopt;
  }
  if (line.substr(i) != "}\n") return std::nullopt;
  return object;
}

// ---- cmsweb lines ----------------------------------------------------------------------------

TEST(AccessLogCmsweb, TlsGetWithDnIsTheApacheLine) {
  EXPECT_EQ(cmsweb(tls_get()),
            "[29/Nov/2026:01:02:03 +0000] cmsweb.cern.ch 188.184.1.2 "
            "\"GET /dbs/prod/global/DBSReader/datasets?dataset=/A/B/RAW HTTP/1.1\" 200 "
            "[data: 512 in 2048 out 1500 body 12345 us ] "
            "[auth: TLSv1.3 TLS_AES_256_GCM_SHA384 "
            "\"/DC=ch/DC=cern/OU=Organic Units/OU=Users/CN=jdoe/CN=123456/CN=John Doe\" "
            "\"X509Cert\" ] "
            "[ref: \"https://cmsweb.cern.ch/das/\" \"dasgoclient/v02.04.52\" ] 8443\n");
}

TEST(AccessLogCmsweb, PlainLocal404HasDashesForTlsDnAuthRefererAndEmptyBody) {
  EXPECT_EQ(cmsweb(plain_local_404()),
            "[29/Nov/2026:01:02:03 +0000] - 127.0.0.1 \"GET /nothing HTTP/1.0\" 404 "
            "[data: 78 in 150 out - body 210 us ] [auth: - - \"-\" \"-\" ] "
            "[ref: \"-\" \"curl/8.5.0\" ] 8080\n");
}

TEST(AccessLogCmsweb, HostileFieldsAreEscapedAsApacheDoesOnOneLine) {
  RequestRecord r = tls_get();
  r.start_unix_us = 1709251199LL * 1000000 + 999999;  // leap day, last microsecond
  r.host = "a b:443";
  r.target = "/a\"b\\c\nd\x01\xc3\xa9\x7f\xff";
  r.user_agent = "evil\" ] [ref: \"x";
  r.referer = "\t\r\b\v";
  r.client_dn = "/CN=J\xc3\xbcrgen \"Q\"";
  r.auth_method = "X509Proxy";
  const std::string line = cmsweb(r);
  EXPECT_EQ(line,
            "[29/Feb/2024:23:59:59 +0000] a\\x20b 188.184.1.2 "
            "\"GET /a\\\"b\\\\c\\nd\\x01\\xc3\\xa9\\x7f\\xff HTTP/1.1\" 200 "
            "[data: 512 in 2048 out 1500 body 12345 us ] "
            "[auth: TLSv1.3 TLS_AES_256_GCM_SHA384 \"/CN=J\\xc3\\xbcrgen \\\"Q\\\"\" "
            "\"X509Proxy\" ] [ref: \"\\t\\r\\b\\v\" \"evil\\\" ] [ref: \\\"x\" ] 8443\n");
  EXPECT_EQ(line.find('\n'), line.size() - 1);
  std::smatch m;
  const std::string body = line.substr(0, line.size() - 1);
  ASSERT_TRUE(std::regex_match(body, m, std::regex(kCmswebLineRegex)));
  EXPECT_EQ(m[14].str(), "evil\\\" ] [ref: \\\"x");  // the forged field stays inside its quotes
  EXPECT_EQ(m[15].str(), "8443");
}

TEST(AccessLogCmsweb, EveryByteValueIsEscapedExactlyAsApacheLogitem) {
  for (int b = 0; b < 256; ++b) {
    RequestRecord r = plain_local_404();
    const char ch = static_cast<char>(b);
    r.user_agent = std::string_view(&ch, 1);
    const std::string line = cmsweb(r);
    const auto start = line.find("[ref: \"-\" \"") + 11;
    const std::string item = line.substr(start, line.find("\" ] ", start) - start);
    std::string expected;
    switch (b) {
      case '\b':
        expected = "\\b";
        break;
      case '\n':
        expected = "\\n";
        break;
      case '\r':
        expected = "\\r";
        break;
      case '\t':
        expected = "\\t";
        break;
      case '\v':
        expected = "\\v";
        break;
      case '"':
        expected = "\\\"";
        break;
      case '\\':
        expected = "\\\\";
        break;
      default:
        if (b >= 0x20 && b < 0x7f) {
          expected = std::string(1, ch);
        } else {
          char hex[5];
          std::snprintf(hex, sizeof hex, "\\x%02x", b);
          expected = hex;
        }
    }
    EXPECT_EQ(item, expected) << "byte " << b;
  }
}

TEST(AccessLogCmsweb, HostLosesItsPortIncludingIpv6Literals) {
  RequestRecord r = tls_get();
  const auto host_field = [&](std::string_view host) {
    r.host = host;
    const std::string line = cmsweb(r);
    const auto start = line.find("] ") + 2;
    return line.substr(start, line.find(' ', start) - start);
  };
  EXPECT_EQ(host_field("cmsweb.cern.ch"), "cmsweb.cern.ch");
  EXPECT_EQ(host_field("cmsweb.cern.ch:443"), "cmsweb.cern.ch");
  EXPECT_EQ(host_field("[2001:db8::1]:8443"), "[2001:db8::1]");
  EXPECT_EQ(host_field("[2001:db8::1]"), "[2001:db8::1]");
  EXPECT_EQ(host_field(""), "-");
  EXPECT_EQ(host_field("-"), "-");
}

TEST(AccessLogCmsweb, AbandonedRequestPrintsStatusAsDash) {
  RequestRecord r = tls_get();
  r.status = 0;
  r.bytes_out = 0;
  r.body_bytes_out = 0;
  r.client_aborted = true;
  const std::string line = cmsweb(r);
  EXPECT_NE(line.find("HTTP/1.1\" - [data: 512 in 0 out - body 12345 us ]"), std::string::npos)
      << line;
}

TEST(AccessLogCmsweb, UnparsedRequestLineIsDash) {
  RequestRecord r = plain_local_404();
  r.method = "";
  r.target = "";
  r.http_version = "";
  r.status = 400;
  EXPECT_NE(cmsweb(r).find(" 127.0.0.1 \"-\" 400 "), std::string::npos);
}

TEST(AccessLogCmsweb, TimeIsUtcFloorOfTheMicroseconds) {
  RequestRecord r = plain_local_404();
  r.start_unix_us = 0;
  EXPECT_EQ(cmsweb(r).substr(0, 28), "[01/Jan/1970:00:00:00 +0000]");
  r.start_unix_us = 1735689599LL * 1000000 + 999999;
  EXPECT_EQ(cmsweb(r).substr(0, 28), "[31/Dec/2024:23:59:59 +0000]");
  r.start_unix_us = -1;  // never expected, but still a valid date
  EXPECT_EQ(cmsweb(r).substr(0, 28), "[31/Dec/1969:23:59:59 +0000]");
}

// Random bytes in every client-controlled field: still one line, still parsed by the regex.
TEST(AccessLogCmsweb, RandomFieldsAlwaysGiveOneLineTheRegexMatches) {
  std::mt19937 rng(20261129);
  std::uniform_int_distribution<int> byte(0, 255), length(0, 12);
  const auto random_text = [&] {
    std::string s(static_cast<std::size_t>(length(rng)), '\0');
    for (char& c : s) c = static_cast<char>(byte(rng));
    return s;
  };
  for (int n = 0; n < 2000; ++n) {
    std::string fields[9];
    for (auto& f : fields) f = random_text();
    RequestRecord r = tls_get();
    r.method = fields[0];
    r.target = fields[1];
    r.host = fields[2];
    r.referer = fields[3];
    r.user_agent = fields[4];
    r.client_dn = fields[5];
    r.client_ip = fields[6];
    r.tls_protocol = fields[7];
    r.auth_method = fields[8];
    r.status = n % 7 == 0 ? 0 : 100 + n % 500;
    r.body_bytes_out = static_cast<std::uint64_t>(n % 3);
    const std::string line = cmsweb(r);
    ASSERT_EQ(line.find('\n'), line.size() - 1);
    ASSERT_TRUE(matches_cmsweb_regex(line.substr(0, line.size() - 1))) << line;
    ASSERT_TRUE(parse_json_line(json(r)).has_value()) << json(r);
  }
}

// ---- JSON lines -----------------------------------------------------------------------------

TEST(AccessLogJson, TlsGetIsTheExpectedObject) {
  EXPECT_EQ(json(tls_get()),
            "{\"time\":\"2026-11-29T01:02:03.123456Z\",\"connection\":7,\"request\":3,"
            "\"client_ip\":\"188.184.1.2\",\"local_port\":8443,\"method\":\"GET\","
            "\"target\":\"/dbs/prod/global/DBSReader/datasets?dataset=/A/B/RAW\","
            "\"path\":\"/dbs/prod/global/DBSReader/datasets\",\"version\":\"HTTP/1.1\","
            "\"host\":\"cmsweb.cern.ch:8443\",\"status\":200,\"bytes_in\":512,\"bytes_out\":2048,"
            "\"body_bytes_out\":1500,\"duration_us\":12345,\"backend_us\":11000,\"queue_us\":5,"
            "\"route\":2,\"backend\":1,\"failure\":null,\"client_aborted\":false,"
            "\"tls_protocol\":\"TLSv1.3\",\"tls_cipher\":\"TLS_AES_256_GCM_SHA384\","
            "\"client_dn\":\"/DC=ch/DC=cern/OU=Organic Units/OU=Users/CN=jdoe/CN=123456/CN=John "
            "Doe\",\"user_dn\":\"/DC=ch/DC=cern/OU=Organic Units/OU=Users/CN=jdoe/CN=123456/"
            "CN=John Doe\",\"auth_method\":\"X509Cert\",\"auth_result\":\"ok\","
            "\"referer\":\"https://cmsweb.cern.ch/das/\","
            "\"user_agent\":\"dasgoclient/v02.04.52\"}\n");
}

TEST(AccessLogJson, AbsentValuesAreNulls) {
  RequestRecord r = plain_local_404();
  r.status = 0;
  r.client_aborted = true;
  const auto object = parse_json_line(json(r));
  ASSERT_TRUE(object.has_value()) << json(r);
  for (const char* key : {"status", "route", "backend", "tls_protocol", "tls_cipher", "client_dn",
                          "user_dn", "auth_method", "referer"}) {
    ASSERT_EQ(object->count(key), 1U) << key;
    EXPECT_EQ(object->at(key).kind, JsonValue::null) << key;
  }
  EXPECT_EQ(object->at("failure").text, "no_route");
  EXPECT_EQ(object->at("user_agent").text, "curl/8.5.0");
  EXPECT_EQ(object->at("client_aborted").text, "true");
  EXPECT_EQ(object->at("time").text, "2026-11-29T01:02:03.123456Z");
  EXPECT_EQ(object->size(), 29U);
}

TEST(AccessLogJson, InvalidUtf8BecomesReplacementCharacters) {
  RequestRecord r = plain_local_404();
  const auto target_json = [&](std::string_view target) {
    r.target = target;
    const std::string line = json(r);
    const auto start = line.find("\"target\":") + 9;
    return line.substr(start, line.find(",\"path\"") - start);
  };
  EXPECT_EQ(target_json("/caf\xc3\xa9"), "\"/caf\xc3\xa9\"");            // valid: kept
  EXPECT_EQ(target_json("/\xf0\x9f\x98\x80"), "\"/\xf0\x9f\x98\x80\"");  // 4 bytes: kept
  EXPECT_EQ(target_json("/\xff"), "\"/\\ufffd\"");
  EXPECT_EQ(target_json("/\xc3"), "\"/\\ufffd\"");                        // truncated at the end
  EXPECT_EQ(target_json("/\xe2\x82x"), "\"/\\ufffdx\"");                  // one per maximal subpart
  EXPECT_EQ(target_json("/\xc0\xaf"), "\"/\\ufffd\\ufffd\"");             // overlong
  EXPECT_EQ(target_json("/\xed\xa0\x80"), "\"/\\ufffd\\ufffd\\ufffd\"");  // surrogate
  EXPECT_EQ(target_json("/\xf4\x90\x80\x80"), "\"/\\ufffd\\ufffd\\ufffd\\ufffd\"");  // > U+10FFFF
  EXPECT_EQ(target_json("/\x80\xbf"), "\"/\\ufffd\\ufffd\"");  // lone continuations
}

TEST(AccessLogJson, ControlCharactersQuotesAndBackslashesAreEscaped) {
  RequestRecord r = plain_local_404();
  r.user_agent = std::string_view("a\"b\\c\n\t\x01\x7f\0z", 11);
  const std::string line = json(r);
  EXPECT_NE(line.find("\"user_agent\":\"a\\\"b\\\\c\\u000a\\u0009\\u0001\\u007f\\u0000z\"}"),
            std::string::npos)
      << line;
  const auto object = parse_json_line(line);
  ASSERT_TRUE(object.has_value());
  EXPECT_EQ(object->at("user_agent").text, std::string("a\"b\\c\n\t\x01\x7f\0z", 11));
  EXPECT_EQ(line.find('\n'), line.size() - 1);
}

TEST(AccessLogJson, NamesReplaceIndicesWhenGiven) {
  const std::vector<std::string> routes = {"root", "dbs", "das"};
  const std::vector<std::string> backends = {"local", "dbs-backends"};
  RequestRecord r = tls_get();
  auto object = parse_json_line(json(r, &routes, &backends));
  ASSERT_TRUE(object.has_value());
  EXPECT_EQ(object->at("route").text, "das");
  EXPECT_EQ(object->at("backend").text, "dbs-backends");
  r.route = 9;  // unknown to the table: the index
  object = parse_json_line(json(r, &routes, &backends));
  ASSERT_TRUE(object.has_value());
  EXPECT_EQ(object->at("route").kind, JsonValue::number);
  EXPECT_EQ(object->at("route").text, "9");
  // The cmsweb line has no place for names: identical with or without them.
  std::string with_names;
  format_cmsweb(r, with_names, &routes, &backends);
  EXPECT_EQ(with_names, cmsweb(r));
}

// ---- AccessLog: the writer ------------------------------------------------------------------

class AccessLogWriter : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/cmsfront-access-log-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { fs::remove_all(dir_); }

  static std::unique_ptr<AccessLog> open_log(const std::string& path, std::size_t workers,
                                             std::size_t queue_lines,
                                             AccessLogFormat format = AccessLogFormat::cmsweb) {
    auto opened = AccessLog::open(path, format, workers, queue_lines, {}, {});
    if (auto* error = std::get_if<std::string>(&opened)) {
      ADD_FAILURE() << *error;
      return nullptr;
    }
    return std::move(std::get<std::unique_ptr<AccessLog>>(opened));
  }

  static std::vector<std::string> read_lines(const std::string& path) {
    std::ifstream in(path);
    std::vector<std::string> lines;
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    return lines;
  }

  // Waits (bounded) until `done` holds.
  template <typename Predicate>
  static bool eventually(Predicate done, std::chrono::milliseconds limit = 10s) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!done()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(1ms);
    }
    return true;
  }

  std::string dir_;
};

// A record whose user agent carries "worker/sequence", to find every line again.
struct TaggedRecord {
  std::string tag;
  RequestRecord record = tls_get();
  void set(std::size_t worker, std::size_t sequence) {
    tag = "w" + std::to_string(worker) + "/" + std::to_string(sequence);
    record.user_agent = tag;
  }
};

std::string tag_of(const std::string& line) {
  static const std::regex re(kCmswebLineRegex);
  std::smatch m;
  if (!std::regex_match(line, m, re)) return "";
  return m[14].str();
}

TEST_F(AccessLogWriter, OpenFailureIsAMessage) {
  auto opened =
      AccessLog::open(dir_ + "/missing/dir/access.log", AccessLogFormat::cmsweb, 1, 8, {}, {});
  ASSERT_TRUE(std::holds_alternative<std::string>(opened));
  EXPECT_NE(std::get<std::string>(opened).find("missing/dir/access.log"), std::string::npos);
}

TEST_F(AccessLogWriter, ConcurrentWorkersGetEveryLineWholeAndInOrder) {
  constexpr std::size_t kWorkers = 4, kLines = 20000;
  const std::string path = dir_ + "/access.log";
  {
    auto log = open_log(path, kWorkers, kLines);  // room for all: nothing may be dropped
    ASSERT_NE(log, nullptr);
    std::vector<std::thread> workers;
    for (std::size_t w = 0; w < kWorkers; ++w) {
      workers.emplace_back([&log, w] {
        TaggedRecord tagged;
        for (std::size_t i = 0; i < kLines; ++i) {
          tagged.set(w, i);
          log->log(w, tagged.record);
          if (i % 1000 == 0) std::this_thread::yield();
        }
      });
    }
    for (auto& t : workers) t.join();
    // The destructor writes whatever is still queued.
    EXPECT_EQ(log->dropped(), 0U);
    log.reset();
  }
  const auto lines = read_lines(path);
  ASSERT_EQ(lines.size(), kWorkers * kLines);
  std::vector<std::size_t> next(kWorkers, 0);
  for (const auto& line : lines) {
    const std::string tag = tag_of(line);
    ASSERT_FALSE(tag.empty()) << "torn or malformed: " << line;
    const auto slash = tag.find('/');
    const std::size_t w = std::stoul(tag.substr(1, slash - 1));
    ASSERT_LT(w, kWorkers);
    ASSERT_EQ(std::stoul(tag.substr(slash + 1)), next[w]++) << "lost or reordered in worker " << w;
  }
}

TEST_F(AccessLogWriter, WarmLogCallsDoNotAllocate) {
  const std::string path = dir_ + "/access.log";
  auto log = open_log(path, 1, 8);
  ASSERT_NE(log, nullptr);
  const RequestRecord record = tls_get();
  std::uint64_t expected = 0;
  // Warm up: every slot has held this line once.
  for (int round = 0; round < 2; ++round) {
    for (int i = 0; i < 8; ++i) log->log(0, record);
    expected += 8;
    ASSERT_TRUE(eventually([&] { return log->written() == expected; }));
  }
  const std::size_t before = t_allocations;
  for (int round = 0; round < 10; ++round) {
    for (int i = 0; i < 8; ++i) log->log(0, record);
    expected += 8;
    const std::size_t during = t_allocations;
    ASSERT_TRUE(eventually([&] { return log->written() == expected; }));
    t_allocations = during;  // eventually() may allocate; log() is what is measured
  }
  EXPECT_EQ(t_allocations, before);
  EXPECT_EQ(log->dropped(), 0U);
}

TEST_F(AccessLogWriter, StalledFifoDropsLinesInsteadOfBlockingWorkers) {
  const std::string path = dir_ + "/fifo";
  ASSERT_EQ(::mkfifo(path.c_str(), 0600), 0);
  // A reader that does not read: the writer's open() succeeds, its writes soon block.
  const int reader = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  ASSERT_GE(reader, 0);
  auto log = open_log(path, 1, 1024);
  ASSERT_NE(log, nullptr);

  TaggedRecord tagged;
  const auto start = std::chrono::steady_clock::now();
  for (std::size_t i = 0; i < 100000; ++i) {
    tagged.set(0, i);
    log->log(0, tagged.record);
  }
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_LT(elapsed, 5s) << "log() waited for the stalled writer";
  EXPECT_GT(log->dropped(), 90000U);  // ring 1024 + pipe 64 KiB + one batch at most got through

  // Now somebody reads: the writer resumes and later lines arrive.
  ASSERT_EQ(::fcntl(reader, F_SETFL, 0), 0);
  std::string received;
  std::thread drain([&] {
    char buffer[65536];
    for (ssize_t n; (n = ::read(reader, buffer, sizeof buffer)) != 0;) {
      if (n > 0) received.append(buffer, static_cast<std::size_t>(n));
    }
  });
  const std::uint64_t dropped_before = log->dropped();
  tagged.set(0, 999999);
  ASSERT_TRUE(eventually([&] {
    // Keep offering the marker until a ring slot is free again.
    const std::uint64_t dropped = log->dropped();
    log->log(0, tagged.record);
    return log->dropped() == dropped;
  }));
  log.reset();  // writes what is queued, closes the FIFO: the reader sees end of file
  drain.join();
  ::close(reader);
  EXPECT_GE(dropped_before, 90000U);
  EXPECT_NE(received.find("\"w0/999999\""), std::string::npos);
  // Whatever got through is whole lines.
  std::istringstream in(received);
  std::size_t count = 0;
  for (std::string line; std::getline(in, line); ++count) {
    ASSERT_FALSE(tag_of(line).empty()) << line;
  }
  EXPECT_GT(count, 0U);
}

TEST_F(AccessLogWriter, ReopenAfterRenameMovesNewLinesWithoutLosingAny) {
  constexpr std::size_t kLines = 40000;
  const std::string path = dir_ + "/access.log";
  const std::string rotated = dir_ + "/access.log.1";
  auto log = open_log(path, 1, kLines);
  ASSERT_NE(log, nullptr);
  std::atomic<std::size_t> logged{0};
  std::thread worker([&] {
    TaggedRecord tagged;
    for (std::size_t i = 0; i < kLines; ++i) {
      tagged.set(0, i);
      log->log(0, tagged.record);
      logged.store(i + 1);
      if (i % 100 == 0) std::this_thread::sleep_for(50us);
    }
  });
  ASSERT_TRUE(eventually([&] { return log->written() >= 2000; }));
  fs::rename(path, rotated);  // what logrotate does, then it signals us
  log->reopen();
  ASSERT_TRUE(eventually([&] { return fs::exists(path); }));
  const std::size_t logged_after_reopen = logged.load();
  worker.join();
  log.reset();

  // The old file holds lines 0..k-1 and the new one k..N-1: nothing lost, nothing twice, and
  // every line logged once the new file existed is in the new file.
  const auto old_lines = read_lines(rotated);
  const auto new_lines = read_lines(path);
  ASSERT_GE(old_lines.size(), 2000U);
  ASSERT_EQ(old_lines.size() + new_lines.size(), kLines);
  EXPECT_LE(old_lines.size(), logged_after_reopen);
  std::size_t expected = 0;
  for (const auto* lines : {&old_lines, &new_lines}) {
    for (const auto& line : *lines) {
      ASSERT_EQ(tag_of(line), "w0/" + std::to_string(expected++));
    }
  }
}

TEST_F(AccessLogWriter, FailedReopenKeepsTheOldFileAndReports) {
  const std::string sub = dir_ + "/logs";
  fs::create_directory(sub);
  auto log = open_log(sub + "/access.log", 1, 64);
  ASSERT_NE(log, nullptr);
  std::mutex mutex;
  std::vector<std::string> errors;
  log->set_error_handler([&](const std::string& message) {
    std::lock_guard lock(mutex);
    errors.push_back(message);
  });
  const RequestRecord record = tls_get();
  log->log(0, record);
  ASSERT_TRUE(eventually([&] { return log->written() == 1; }));
  fs::rename(sub, dir_ + "/moved");  // the path's directory is gone: the reopen cannot succeed
  log->reopen();
  ASSERT_TRUE(eventually([&] {
    std::lock_guard lock(mutex);
    return !errors.empty();
  }));
  log->log(0, record);
  ASSERT_TRUE(eventually([&] { return log->written() == 2; }));
  log.reset();
  EXPECT_NE(errors.front().find("cannot reopen"), std::string::npos) << errors.front();
  EXPECT_EQ(read_lines(dir_ + "/moved/access.log").size(), 2U);
}

TEST_F(AccessLogWriter, WriteErrorsDropTheBatchReportOnceAndCarryOn) {
  auto log = open_log("/dev/full", 1, 64);  // every write fails with ENOSPC
  ASSERT_NE(log, nullptr);
  std::atomic<int> reports{0};
  log->set_error_handler([&](const std::string&) { ++reports; });
  const RequestRecord record = tls_get();
  for (int i = 0; i < 10; ++i) {
    log->log(0, record);
    ASSERT_TRUE(eventually([&] { return log->dropped() == static_cast<std::uint64_t>(i + 1); }));
  }
  EXPECT_EQ(log->written(), 0U);
  EXPECT_EQ(reports.load(), 1);
}

TEST_F(AccessLogWriter, DashWritesJsonLinesToStandardOutput) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  std::fflush(stdout);
  const int saved_stdout = ::dup(STDOUT_FILENO);
  ASSERT_GE(saved_stdout, 0);
  ASSERT_GE(::dup2(fds[1], STDOUT_FILENO), 0);
  ::close(fds[1]);
  {
    auto log = open_log("-", 2, 16, AccessLogFormat::json);
    if (log != nullptr) {
      log->log(0, tls_get());
      log->log(1, plain_local_404());
      log->reopen();  // standard output: nothing to reopen, nothing lost
      log->log(1, plain_local_404());
    }
  }  // the destructor flushed; standard output itself stays open
  ASSERT_GE(::dup2(saved_stdout, STDOUT_FILENO), 0);
  ::close(saved_stdout);
  std::string received;
  char buffer[4096];
  for (ssize_t n; (n = ::read(fds[0], buffer, sizeof buffer)) > 0;) {
    received.append(buffer, static_cast<std::size_t>(n));
  }
  ::close(fds[0]);
  std::istringstream in(received);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line + "\n");
  ASSERT_EQ(lines.size(), 3U) << received;
  for (const auto& line : lines) EXPECT_TRUE(parse_json_line(line).has_value()) << line;
  EXPECT_NE(::fcntl(STDOUT_FILENO, F_GETFD), -1);  // still open
}

}  // namespace
}  // namespace proxy
