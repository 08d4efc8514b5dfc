#include "auth/auth_pages.h"

#include <gtest/gtest.h>

#include <cstddef>
#include <map>
#include <memory>
#include <optional>

namespace auth {
namespace {

using tls::ClientIdentity;
using tls::CredentialKind;
using tls::VerifyOutcome;

constexpr std::int64_t kNotAfter = 1795867200;  // 2026-11-28 12:00:00 UTC
constexpr std::int64_t kDay = 86400;
constexpr std::string_view kHostileDn = "/DC=org/CN=<script>alert(\"x\")</script>'&amp;";

ClientIdentity verified(CredentialKind kind = CredentialKind::certificate) {
  ClientIdentity identity;
  identity.outcome = VerifyOutcome::ok;
  identity.kind = kind;
  identity.user_dn = "/DC=ch/DC=cern/OU=Users/CN=jdoe";
  identity.leaf_dn = identity.user_dn;
  identity.issuer_dn = "/DC=ch/DC=cern/CN=CERN Grid Certification Authority";
  identity.not_before = kNotAfter - 365 * kDay;  // 2025-11-28 12:00:00 UTC
  identity.not_after = kNotAfter;
  return identity;
}

TroubleFacts tls13(std::int64_t now) { return {true, "TLSv1.3", now}; }

bool contains(std::string_view text, std::string_view part) {
  return text.find(part) != std::string_view::npos;
}

// ---- A small strict JSON reader for the objects the pages produce ----------------------------
// Strings, literals, integers and nested objects (no arrays: the pages have none).

struct JsonValue;
using JsonObject = std::map<std::string, JsonValue>;
struct JsonValue {
  bool is_string = false;
  std::string text;                          // decoded string, or the literal/number as written
  std::shared_ptr<const JsonObject> object;  // a nested object (then text is empty)
};

class JsonReader {
 public:
  explicit JsonReader(std::string_view text) : text_(text) {}

  std::optional<JsonObject> object() {
    JsonObject result;
    if (!members(result, 0) || pos_ != text_.size()) return std::nullopt;
    return result;
  }

 private:
  static constexpr int kMaxDepth = 8;

  // '{' members '}', duplicate keys refused.
  bool members(JsonObject& result, int depth) {
    if (depth > kMaxDepth || !consume('{')) return false;
    if (consume('}')) return true;
    do {
      std::string key;
      JsonValue value;
      if (!string(key) || !consume(':') || !value_of(value, depth)) return false;
      if (!result.emplace(std::move(key), std::move(value)).second) return false;
    } while (consume(','));
    return consume('}');
  }

  bool value_of(JsonValue& value, int depth) {
    if (pos_ < text_.size() && text_[pos_] == '{') {
      auto nested = std::make_shared<JsonObject>();
      if (!members(*nested, depth + 1)) return false;
      value.object = std::move(nested);
      return true;
    }
    return scalar(value);
  }

  bool consume(char c) {
    if (pos_ < text_.size() && text_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }

  bool scalar(JsonValue& value) {
    if (pos_ < text_.size() && text_[pos_] == '"') {
      value.is_string = true;
      return string(value.text);
    }
    for (std::string_view literal : {"true", "false", "null"}) {
      if (text_.substr(pos_, literal.size()) == literal) {
        value.text = literal;
        pos_ += literal.size();
        return true;
      }
    }
    const std::size_t start = pos_;
    consume('-');
    const std::size_t digits = pos_;
    while (pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9') ++pos_;
    if (pos_ == digits || (text_[digits] == '0' && pos_ - digits > 1)) return false;
    value.text = text_.substr(start, pos_ - start);
    return true;
  }

  bool string(std::string& out) {
    if (!consume('"')) return false;
    while (pos_ < text_.size()) {
      const auto c = static_cast<unsigned char>(text_[pos_]);
      if (c == '"') {
        ++pos_;
        return true;
      }
      if (c < 0x20) return false;
      if (c == '\\') {
        if (!escape(out)) return false;
      } else if (!utf8_character(out)) {
        return false;
      }
    }
    return false;
  }

  bool escape(std::string& out) {
    ++pos_;
    if (pos_ >= text_.size()) return false;
    const char c = text_[pos_++];
    switch (c) {
      case '"':
      case '\\':
      case '/':
        out += c;
        return true;
      case 'n':
        out += '\n';
        return true;
      case 't':
        out += '\t';
        return true;
      case 'u': {
        if (text_.size() - pos_ < 4) return false;
        unsigned code = 0;
        for (int i = 0; i < 4; ++i) {
          const char h = text_[pos_++];
          code <<= 4;
          if (h >= '0' && h <= '9')
            code |= static_cast<unsigned>(h - '0');
          else if (h >= 'a' && h <= 'f')
            code |= static_cast<unsigned>(h - 'a' + 10);
          else if (h >= 'A' && h <= 'F')
            code |= static_cast<unsigned>(h - 'A' + 10);
          else
            return false;
        }
        if (code >= 0x80) return false;  // the pages only escape control characters
        out += static_cast<char>(code);
        return true;
      }
      default:
        return false;
    }
  }

  // One well-formed UTF-8 character (checked by decoding it).
  bool utf8_character(std::string& out) {
    const auto lead = static_cast<unsigned char>(text_[pos_]);
    int extra = 0;
    std::uint32_t code = lead;
    if (lead >= 0xf0 && lead < 0xf8) {
      extra = 3;
      code = lead & 0x07u;
    } else if (lead >= 0xe0) {
      extra = 2;
      code = lead & 0x0fu;
    } else if (lead >= 0xc0) {
      extra = 1;
      code = lead & 0x1fu;
    } else if (lead >= 0x80) {
      return false;
    }
    if (text_.size() - pos_ <= static_cast<std::size_t>(extra)) return false;
    for (int i = 1; i <= extra; ++i) {
      const auto next = static_cast<unsigned char>(text_[pos_ + static_cast<std::size_t>(i)]);
      if ((next & 0xc0) != 0x80) return false;
      code = (code << 6) | (next & 0x3fu);
    }
    constexpr std::uint32_t kMinimum[] = {0, 0x80, 0x800, 0x10000};
    if (code < kMinimum[extra] || code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff))
      return false;
    out.append(text_.substr(pos_, static_cast<std::size_t>(extra) + 1));
    pos_ += static_cast<std::size_t>(extra) + 1;
    return true;
  }

  std::string_view text_;
  std::size_t pos_ = 0;
};

JsonObject parse_json(std::string_view text) {
  std::optional<JsonObject> object = JsonReader(text).object();
  EXPECT_TRUE(object.has_value()) << "not valid JSON: " << text;
  return object.value_or(JsonObject{});
}

// The nested object `key` of `object`; empty (and a failure) when it is missing or not one.
const JsonObject& member_object(const JsonObject& object, const std::string& key) {
  static const JsonObject kEmpty;
  const auto found = object.find(key);
  if (found == object.end() || found->second.object == nullptr) {
    ADD_FAILURE() << "no object member '" << key << "'";
    return kEmpty;
  }
  return *found->second.object;
}

// ---- Accept ---------------------------------------------------------------------------------

TEST(AuthPages, JsonIsChosenWhenOnlyJsonIsAccepted) {
  EXPECT_TRUE(wants_json("application/json"));
  EXPECT_TRUE(wants_json("Application/JSON"));
  EXPECT_TRUE(wants_json("application/problem+json"));
  EXPECT_TRUE(wants_json("application/json; charset=utf-8"));
}

TEST(AuthPages, JsonIsChosenOnlyWhenItsQualityBeatsHtml) {
  EXPECT_FALSE(wants_json("text/html,application/json;q=0.9"));
  EXPECT_TRUE(wants_json("application/json;q=0.5,text/html;q=0.4"));
  EXPECT_TRUE(wants_json("application/json;Q=0.5 , text/html;q=0.4"));
  EXPECT_FALSE(wants_json("application/json,text/html"));
  EXPECT_FALSE(wants_json("application/json;q=0,text/html;q=0"));
  EXPECT_TRUE(wants_json("text/html;q=0.001, application/json;q=0.002"));
  EXPECT_TRUE(wants_json("application/json, text/plain, */*"));
}

TEST(AuthPages, BrowsersAndWildcardsGetHtml) {
  EXPECT_FALSE(wants_json("*/*"));
  EXPECT_FALSE(wants_json(""));
  EXPECT_FALSE(wants_json("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"));
  EXPECT_FALSE(wants_json("application/*"));
  EXPECT_FALSE(wants_json("application/jsonx"));
  EXPECT_FALSE(wants_json("text/json+xml"));
}

TEST(AuthPages, MalformedAcceptHeadersGetHtml) {
  for (std::string_view header :
       {"application/json;q=2", "application/json;q=0.5x", "application/json;q=1.5",
        "application/json;q=0.0001", "application/json;q=", "application/json;q",
        "application/json;q=\"1\"", "application", "application/", "/json", "application/json x",
        "application/json;;q=1", "application/json,,text/html;q=", "appli cation/json",
        "application/json;a=\"unterminated", "application/json\x01"}) {
    EXPECT_FALSE(wants_json(header)) << header;
  }
}

TEST(AuthPages, AcceptParametersAndEmptyElementsAreTolerated) {
  EXPECT_TRUE(wants_json(", application/json ,"));
  EXPECT_TRUE(wants_json("application/json;profile=\"a,b;q=0\";q=1, text/html;q=0.5"));
  EXPECT_TRUE(wants_json("application/json ; q=1.000"));
  EXPECT_TRUE(wants_json("application/json;q=1.,text/html;q=0."));
}

// ---- 403 ------------------------------------------------------------------------------------

TEST(AuthPages, DeniedHtmlHasTitleReasonAndTroubleLink) {
  const ClientIdentity identity = verified();
  const Page page =
      render_denied({Denial::expired_since, false}, identity, "/auth/trouble", /*json=*/false);
  EXPECT_EQ(page.content_type, "text/html; charset=utf-8");
  EXPECT_TRUE(page.body.starts_with("<!DOCTYPE html>"));
  EXPECT_TRUE(contains(page.body, "<title>403 Forbidden</title>"));
  EXPECT_TRUE(contains(page.body, "Your certificate has expired (on 2026-11-28 12:00:00 UTC)."));
  EXPECT_TRUE(contains(page.body, "<a href=\"/auth/trouble\">"));
  EXPECT_TRUE(page.body.ends_with("</html>\n"));
  EXPECT_FALSE(contains(page.body, "http://"));
  EXPECT_FALSE(contains(page.body, "https://"));
  EXPECT_FALSE(contains(page.body, "<script"));
}

TEST(AuthPages, DeniedJsonHasStatusLabelMessageAndTroublePage) {
  ClientIdentity identity = verified();
  identity.outcome = VerifyOutcome::revoked;
  const Page page = render_denied({Denial::verification_failed, false}, identity, "/auth/trouble",
                                  /*json=*/true);
  EXPECT_EQ(page.content_type, "application/json");
  EXPECT_EQ(page.body,
            "{\"status\":403,\"reason\":\"revoked\",\"message\":\"Your certificate has been "
            "revoked by the CA that issued it.\",\"trouble_page\":\"/auth/trouble\"}");
  parse_json(page.body);
}

TEST(AuthPages, DeniedPagesEscapeCertificateText) {
  ClientIdentity identity = verified(CredentialKind::proxy);
  identity.outcome = VerifyOutcome::bad_proxy;
  identity.reason = "proxy subject " + std::string(kHostileDn) + " does not extend its issuer";
  const Decision decision{Denial::verification_failed, false};

  const Page html = render_denied(decision, identity, "/auth/trouble?a=1&b=\"2\"", false);
  EXPECT_FALSE(contains(html.body, "<script>"));
  EXPECT_TRUE(
      contains(html.body, "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&#39;&amp;amp;"));
  EXPECT_TRUE(contains(html.body, "href=\"/auth/trouble?a=1&amp;b=&quot;2&quot;\""));

  const Page json = render_denied(decision, identity, "/auth/trouble", true);
  const JsonObject object = parse_json(json.body);
  ASSERT_TRUE(object.contains("message"));
  EXPECT_EQ(object.at("message").text,
            "Your proxy certificate is not valid: " + identity.reason + ".");
  EXPECT_EQ(object.at("reason").text, "bad_proxy");
}

TEST(AuthPages, DeniedPagesForAnUnknownUserPointToCric) {
  const ClientIdentity identity = verified();
  const Page json =
      render_denied({Denial::unknown_user, false}, identity, "/auth/trouble", /*json=*/true);
  const JsonObject object = parse_json(json.body);
  EXPECT_EQ(object.at("status").text, "403");
  EXPECT_EQ(object.at("reason").text, "unknown_user");
  EXPECT_EQ(object.at("message").text, denial_message(Denial::unknown_user, identity));
  EXPECT_TRUE(contains(object.at("message").text, "CRIC"));
  const Page html = render_denied({Denial::unusable_identity, false}, identity, "/auth/trouble",
                                  /*json=*/false);
  EXPECT_TRUE(contains(html.body, "cannot be passed on to the service."));
  EXPECT_TRUE(contains(html.body, "<a href=\"/auth/trouble\">"));
  EXPECT_EQ(
      parse_json(
          render_denied({Denial::unusable_identity, false}, identity, "/auth/trouble", true).body)
          .at("reason")
          .text,
      "bad_identity");
}

// ---- Trouble page: JSON ---------------------------------------------------------------------

TEST(AuthPages, TroubleJsonWithoutCertificateOmitsCertificateFields) {
  const Page page = render_trouble(ClientIdentity{}, tls13(kNotAfter), /*json=*/true);
  EXPECT_EQ(page.content_type, "application/json");
  EXPECT_EQ(page.body,
            "{\"tls\":true,\"protocol\":\"TLSv1.3\",\"certificate_offered\":false,"
            "\"verified\":false,\"outcome\":\"no_certificate\",\"reason\":\"\",\"kind\":\"none\","
            "\"verify_error\":0,\"error_depth\":-1,\"resumed\":false,"
            "\"cms_account\":{\"mapped\":false,\"summary\":\"This server does not map "
            "certificates to CMS accounts.\"}}");
  parse_json(page.body);
}

TEST(AuthPages, TroubleJsonWithCertificateHasEveryFact) {
  ClientIdentity identity = verified(CredentialKind::proxy);
  identity.leaf_dn = identity.user_dn + "/CN=123";
  identity.resumed = true;
  const Page page = render_trouble(identity, tls13(kNotAfter - 10 * kDay - 1), true);
  EXPECT_EQ(page.body,
            "{\"tls\":true,\"protocol\":\"TLSv1.3\",\"certificate_offered\":true,"
            "\"verified\":true,\"outcome\":\"ok\",\"reason\":\"\",\"kind\":\"proxy\","
            "\"user_dn\":\"/DC=ch/DC=cern/OU=Users/CN=jdoe\","
            "\"leaf_dn\":\"/DC=ch/DC=cern/OU=Users/CN=jdoe/CN=123\","
            "\"issuer_dn\":\"/DC=ch/DC=cern/CN=CERN Grid Certification Authority\","
            "\"not_before\":\"2025-11-28 12:00:00 UTC\",\"not_after\":\"2026-11-28 12:00:00 UTC\","
            "\"days_left\":10,\"verify_error\":0,\"error_depth\":-1,\"resumed\":true,"
            "\"cms_account\":{\"mapped\":false,\"summary\":\"This server does not map "
            "certificates to CMS accounts.\"}}");
  const JsonObject object = parse_json(page.body);
  EXPECT_EQ(object.size(), 17u);
  EXPECT_EQ(member_object(object, "cms_account").size(), 2u);
}

TEST(AuthPages, TroubleJsonDaysLeftRoundsDownAndGoesNegative) {
  const auto days_left = [](std::int64_t now) {
    const JsonObject object = parse_json(render_trouble(verified(), tls13(now), true).body);
    return object.count("days_left") ? object.at("days_left").text : "missing";
  };
  EXPECT_EQ(days_left(kNotAfter - kDay), "1");
  EXPECT_EQ(days_left(kNotAfter - 1), "0");
  EXPECT_EQ(days_left(kNotAfter), "0");
  EXPECT_EQ(days_left(kNotAfter + 1), "-1");
  EXPECT_EQ(days_left(kNotAfter + kDay), "-1");
  EXPECT_EQ(days_left(kNotAfter + kDay + 1), "-2");
  EXPECT_EQ(days_left(kNotAfter + 30 * kDay), "-30");
}

TEST(AuthPages, TroubleJsonReportsAFailedVerification) {
  ClientIdentity identity = verified();
  identity.outcome = VerifyOutcome::revoked;
  identity.reason = "certificate revoked";
  identity.verify_error = 23;
  identity.error_depth = 0;
  const JsonObject object = parse_json(render_trouble(identity, tls13(kNotAfter), true).body);
  EXPECT_EQ(object.at("verified").text, "false");
  EXPECT_EQ(object.at("certificate_offered").text, "true");
  EXPECT_EQ(object.at("outcome").text, "revoked");
  EXPECT_EQ(object.at("reason").text, "certificate revoked");
  EXPECT_EQ(object.at("verify_error").text, "23");
  EXPECT_EQ(object.at("error_depth").text, "0");
}

TEST(AuthPages, TroubleJsonEscapesHostileAndControlCharacters) {
  ClientIdentity identity = verified();
  identity.user_dn = std::string(kHostileDn) + "\\\n\t\x01\x1f\x7f/CN=J\xC3\xB6rg \xE2\x82\xAC";
  const Page page = render_trouble(identity, tls13(kNotAfter), true);
  EXPECT_TRUE(contains(page.body,
                       "\"user_dn\":\"/DC=org/CN=<script>alert(\\\"x\\\")</script>'&amp;"
                       "\\\\\\u000a\\u0009\\u0001\\u001f\x7f/CN=J\xC3\xB6rg \xE2\x82\xAC\""));
  EXPECT_EQ(parse_json(page.body).at("user_dn").text, identity.user_dn);
}

TEST(AuthPages, TroubleJsonReplacesInvalidUtf8) {
  ClientIdentity identity = verified();
  // A lone continuation byte, a truncated sequence, an overlong '/', a surrogate, 0xff, and a
  // sequence cut by the end of the string.
  identity.user_dn =
      "/CN=a\x80"
      "b\xC3"
      "c\xC0\xAF"
      "d\xED\xA0\x80"
      "e\xFF"
      "f\xE2\x82";
  const Page page = render_trouble(identity, tls13(kNotAfter), true);
  const JsonObject object = parse_json(page.body);
  ASSERT_TRUE(object.contains("user_dn"));
  const std::string& dn = object.at("user_dn").text;
  EXPECT_TRUE(
      dn.starts_with("/CN=a\xEF\xBF\xBD"
                     "b\xEF\xBF\xBD"
                     "c"));
  EXPECT_FALSE(contains(dn, "\xC0"));
  EXPECT_FALSE(contains(dn, "\xED\xA0"));
  EXPECT_FALSE(contains(dn, "\xFF"));
  EXPECT_TRUE(dn.ends_with("f\xEF\xBF\xBD\xEF\xBF\xBD"));
}

TEST(AuthPages, TroubleJsonOverPlainHttpShowsNoCertificate) {
  const Page page = render_trouble(verified(), {false, "-", kNotAfter}, true);
  const JsonObject object = parse_json(page.body);
  EXPECT_EQ(object.at("tls").text, "false");
  EXPECT_EQ(object.at("protocol").text, "-");
  EXPECT_EQ(object.at("certificate_offered").text, "false");
  EXPECT_FALSE(object.contains("user_dn"));
}

// ---- Trouble page: HTML ---------------------------------------------------------------------

TEST(AuthPages, TroubleHtmlShowsTheFactsAsATable) {
  const Page page = render_trouble(verified(), tls13(kNotAfter - 100 * kDay), false);
  EXPECT_EQ(page.content_type, "text/html; charset=utf-8");
  EXPECT_TRUE(page.body.starts_with("<!DOCTYPE html>"));
  EXPECT_TRUE(contains(page.body, "<table>"));
  EXPECT_TRUE(contains(page.body, "<tr><th>TLS</th><td>yes (TLSv1.3)</td></tr>"));
  EXPECT_TRUE(contains(page.body, "<td>/DC=ch/DC=cern/OU=Users/CN=jdoe</td>"));
  EXPECT_TRUE(contains(page.body, "<td>2026-11-28 12:00:00 UTC</td>"));
  EXPECT_TRUE(contains(page.body, "<tr><th>Days left</th><td>100</td></tr>"));
  EXPECT_TRUE(contains(page.body, "was verified"));
  EXPECT_FALSE(contains(page.body, "What to do"));
  EXPECT_FALSE(contains(page.body, "https://"));
  EXPECT_FALSE(contains(page.body, "<script"));
}

TEST(AuthPages, TroubleHtmlExplainsHowToPresentACertificate) {
  const Page page = render_trouble(ClientIdentity{}, tls13(kNotAfter), false);
  EXPECT_TRUE(contains(page.body, "did not present"));
  EXPECT_TRUE(contains(page.body, "What to do"));
  EXPECT_TRUE(contains(page.body, "browser"));
  EXPECT_FALSE(contains(page.body, "User DN"));
}

TEST(AuthPages, TroubleHtmlTellsProxyUsersToRenewTheirProxy) {
  ClientIdentity identity = verified(CredentialKind::proxy);
  identity.outcome = VerifyOutcome::expired;
  const Page page = render_trouble(identity, tls13(kNotAfter + kDay), false);
  EXPECT_TRUE(contains(page.body, "has expired (on 2026-11-28 12:00:00 UTC)"));
  EXPECT_TRUE(contains(page.body, "voms-proxy-init"));
  EXPECT_TRUE(contains(page.body, "<tr><th>Days left</th><td>-1</td></tr>"));
}

TEST(AuthPages, TroubleHtmlHasAdviceForEveryFailure) {
  for (int outcome = static_cast<int>(VerifyOutcome::expired);
       outcome <= static_cast<int>(VerifyOutcome::invalid); ++outcome) {
    ClientIdentity identity = verified();
    identity.outcome = static_cast<VerifyOutcome>(outcome);
    const Page page = render_trouble(identity, tls13(kNotAfter - kDay), false);
    EXPECT_TRUE(contains(page.body, "What to do")) << outcome;
  }
}

TEST(AuthPages, TroubleHtmlEscapesCertificateText) {
  ClientIdentity identity = verified();
  identity.user_dn = kHostileDn;
  identity.leaf_dn = std::string(kHostileDn) + "\x01\xFF";
  identity.issuer_dn = kHostileDn;
  identity.outcome = VerifyOutcome::invalid;
  identity.reason = kHostileDn;
  const Page page = render_trouble(identity, tls13(kNotAfter), false);
  EXPECT_FALSE(contains(page.body, "<script>"));
  EXPECT_FALSE(contains(page.body, "\x01"));
  EXPECT_FALSE(contains(page.body, "\xFF"));
  EXPECT_TRUE(contains(page.body,
                       "<td>/DC=org/CN=&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&#39;"
                       "&amp;amp;</td>"));
}

TEST(AuthPages, TroubleHtmlOverPlainHttpPointsToHttps) {
  const Page page = render_trouble(verified(), {false, "-", kNotAfter}, false);
  EXPECT_TRUE(contains(page.body, "<tr><th>TLS</th><td>no</td></tr>"));
  EXPECT_TRUE(contains(page.body, "plain HTTP"));
  EXPECT_FALSE(contains(page.body, "User DN"));
}

// ---- Trouble page: the CMS account ----------------------------------------------------------

constexpr std::string_view kNoMap = "This server does not map certificates to CMS accounts.";

UserRecord jdoe() {
  UserRecord user;
  user.login = "jdoe";
  user.name = "John Doe";
  user.id = 1234;
  user.dns = {"/DC=ch/DC=cern/OU=Users/CN=jdoe"};
  user.roles = {{"admin", "group:reqmgr site:t1-ch-cern"}, {"global-admin", "group:das"}};
  return user;
}

// TLSv1.3 with a user map of `users` users, in which the identity maps to `user`.
TroubleFacts with_map(const UserRecord* user, std::size_t users = 4321) {
  TroubleFacts facts = tls13(kNotAfter - 100 * kDay);
  facts.user_map_loaded = true;
  facts.user_map_users = users;
  facts.user = user;
  return facts;
}

TEST(AuthPages, TroubleJsonShowsTheMappedAccount) {
  const UserRecord user = jdoe();
  const Page page = render_trouble(verified(), with_map(&user), true);
  EXPECT_TRUE(page.body.ends_with(
      ",\"resumed\":false,\"cms_account\":{\"mapped\":true,\"summary\":\"Your DN is registered "
      "to the CMS account 'jdoe'.\",\"login\":\"jdoe\",\"name\":\"John Doe\",\"roles\":{"
      "\"admin\":\"group:reqmgr site:t1-ch-cern\",\"global-admin\":\"group:das\"}}}"))
      << page.body;
  const JsonObject object = parse_json(page.body);
  const JsonObject& account = member_object(object, "cms_account");
  EXPECT_EQ(account.size(), 5u);
  EXPECT_EQ(account.at("mapped").text, "true");
  EXPECT_FALSE(account.at("mapped").is_string);
  EXPECT_EQ(account.at("login").text, "jdoe");
  EXPECT_EQ(account.at("name").text, "John Doe");
  const JsonObject& roles = member_object(account, "roles");
  EXPECT_EQ(roles.size(), 2u);
  EXPECT_EQ(roles.at("admin").text, "group:reqmgr site:t1-ch-cern");
  EXPECT_EQ(roles.at("global-admin").text, "group:das");
}

TEST(AuthPages, TroubleJsonShowsAMappedAccountWithoutNameOrRoles) {
  UserRecord user = jdoe();
  user.name.clear();
  user.roles.clear();
  const JsonObject object = parse_json(render_trouble(verified(), with_map(&user), true).body);
  const JsonObject& account = member_object(object, "cms_account");
  EXPECT_EQ(account.at("mapped").text, "true");
  EXPECT_EQ(account.at("login").text, "jdoe");
  ASSERT_TRUE(account.contains("name"));
  EXPECT_EQ(account.at("name").text, "");
  EXPECT_TRUE(member_object(account, "roles").empty());
}

TEST(AuthPages, TroubleJsonExplainsAnUnmappedVerifiedCertificate) {
  const JsonObject object = parse_json(render_trouble(verified(), with_map(nullptr), true).body);
  const JsonObject& account = member_object(object, "cms_account");
  EXPECT_EQ(account.size(), 2u);
  EXPECT_EQ(account.at("mapped").text, "false");
  EXPECT_EQ(account.at("summary").text,
            "Your DN is not registered to a CMS account (the user map has 4321 users). Register "
            "this certificate with your account in CRIC; pages that need a CMS account refuse "
            "it until then.");
  EXPECT_FALSE(account.contains("login"));
  EXPECT_FALSE(account.contains("roles"));
}

TEST(AuthPages, TroubleJsonDoesNotLookUpAnUnverifiedCertificate) {
  ClientIdentity identity = verified();
  identity.outcome = VerifyOutcome::unknown_ca;
  identity.reason = "unable to get local issuer certificate";
  const JsonObject object = parse_json(render_trouble(identity, with_map(nullptr), true).body);
  const JsonObject& account = member_object(object, "cms_account");
  EXPECT_EQ(account.at("mapped").text, "false");
  EXPECT_EQ(account.at("summary").text,
            "Not looked up: only a verified certificate is mapped to a CMS account.");
  EXPECT_FALSE(account.contains("login"));
}

TEST(AuthPages, TroubleJsonWithoutCertificateOrMap) {
  JsonObject object = parse_json(render_trouble(ClientIdentity{}, with_map(nullptr), true).body);
  EXPECT_EQ(member_object(object, "cms_account").at("summary").text,
            "No certificate, so no CMS account to look up.");
  // Over plain HTTP the certificate is never shown, so neither is an account.
  object = parse_json(render_trouble(verified(), {false, "-", kNotAfter, true, 10}, true).body);
  EXPECT_EQ(member_object(object, "cms_account").at("summary").text,
            "No certificate, so no CMS account to look up.");
  object = parse_json(render_trouble(verified(), tls13(kNotAfter), true).body);
  const JsonObject& account = member_object(object, "cms_account");
  EXPECT_EQ(account.size(), 2u);
  EXPECT_EQ(account.at("mapped").text, "false");
  EXPECT_EQ(account.at("summary").text, kNoMap);
}

// Map entries come from CRIC, not from us: login, name and roles are escaped like DNs, and the
// JSON stays parseable and decodes to the same text.
UserRecord hostile_user() {
  UserRecord user;
  user.login = std::string(kHostileDn) + "\\\x01";
  user.name = "J\xC3\xB6rg </td><script>x()</script> \"&\"\t\x7f \xE2\x82\xAC";
  user.roles = {{"<b>role\"</b>", "group:<i>'x'</i> site:\\\"y\\\""},
                {"ok", std::string(kHostileDn) + "\n"}};
  return user;
}

TEST(AuthPages, TroubleJsonEscapesTheMappedAccount) {
  const UserRecord user = hostile_user();
  const Page page = render_trouble(verified(), with_map(&user), true);
  EXPECT_FALSE(contains(page.body, "\x01"));
  EXPECT_FALSE(contains(page.body, "\n"));
  EXPECT_TRUE(contains(page.body,
                       "\"login\":\"/DC=org/CN=<script>alert(\\\"x\\\")</script>'"
                       "&amp;\\\\\\u0001\""));
  const JsonObject object = parse_json(page.body);
  const JsonObject& account = member_object(object, "cms_account");
  EXPECT_EQ(account.at("login").text, user.login);
  EXPECT_EQ(account.at("name").text, user.name);
  EXPECT_EQ(account.at("summary").text,
            "Your DN is registered to the CMS account '" + user.login + "'.");
  const JsonObject& roles = member_object(account, "roles");
  ASSERT_EQ(roles.size(), 2u);
  EXPECT_EQ(roles.at("<b>role\"</b>").text, "group:<i>'x'</i> site:\\\"y\\\"");
  EXPECT_EQ(roles.at("ok").text, std::string(kHostileDn) + "\n");
}

TEST(AuthPages, TroubleHtmlShowsTheMappedAccount) {
  const UserRecord user = jdoe();
  const Page page = render_trouble(verified(), with_map(&user), false);
  EXPECT_TRUE(contains(page.body,
                       "<tr><th>CMS account</th><td>Your DN is registered to the CMS account "
                       "&#39;jdoe&#39;.</td></tr>\n"
                       "<tr><th>Login</th><td>jdoe</td></tr>\n"
                       "<tr><th>Name</th><td>John Doe</td></tr>\n"
                       "<tr><th>Roles</th><td>admin: group:reqmgr site:t1-ch-cern; global-admin: "
                       "group:das</td></tr>\n</table>"))
      << page.body;

  UserRecord bare = jdoe();
  bare.name.clear();
  bare.roles.clear();
  const Page bare_page = render_trouble(verified(), with_map(&bare), false);
  EXPECT_TRUE(contains(bare_page.body,
                       "<tr><th>Login</th><td>jdoe</td></tr>\n"
                       "<tr><th>Roles</th><td>(none)</td></tr>\n"));
  EXPECT_FALSE(contains(bare_page.body, "<th>Name</th>"));
}

TEST(AuthPages, TroubleHtmlExplainsAMissingAccount) {
  Page page = render_trouble(verified(), with_map(nullptr, 17), false);
  EXPECT_TRUE(contains(page.body,
                       "<tr><th>CMS account</th><td>Your DN is not registered to a CMS account "
                       "(the user map has 17 users). Register this certificate with your account "
                       "in CRIC;"));
  EXPECT_FALSE(contains(page.body, "<th>Login</th>"));
  EXPECT_FALSE(contains(page.body, "<th>Roles</th>"));

  ClientIdentity identity = verified();
  identity.outcome = VerifyOutcome::revoked;
  page = render_trouble(identity, with_map(nullptr), false);
  EXPECT_TRUE(contains(page.body,
                       "<tr><th>CMS account</th><td>Not looked up: only a verified certificate "
                       "is mapped to a CMS account.</td></tr>"));

  page = render_trouble(ClientIdentity{}, with_map(nullptr), false);
  EXPECT_TRUE(contains(page.body,
                       "<tr><th>CMS account</th><td>No certificate, so no CMS account to look "
                       "up.</td></tr>"));

  page = render_trouble(verified(), tls13(kNotAfter), false);
  EXPECT_TRUE(
      contains(page.body, "<tr><th>CMS account</th><td>" + std::string(kNoMap) + "</td></tr>"));
  EXPECT_FALSE(contains(page.body, "<th>Login</th>"));
}

TEST(AuthPages, TroubleHtmlEscapesTheMappedAccount) {
  const UserRecord user = hostile_user();
  const Page page = render_trouble(verified(), with_map(&user), false);
  EXPECT_FALSE(contains(page.body, "<script>"));
  EXPECT_FALSE(contains(page.body, "</td><script>"));
  EXPECT_FALSE(contains(page.body, "<b>"));
  EXPECT_FALSE(contains(page.body, "<i>"));
  EXPECT_FALSE(contains(page.body, "\x01"));
  EXPECT_FALSE(contains(page.body, "\x7f"));
  EXPECT_TRUE(contains(page.body,
                       "<tr><th>Login</th><td>/DC=org/CN=&lt;script&gt;alert(&quot;x&quot;)"
                       "&lt;/script&gt;&#39;&amp;amp;"));
  EXPECT_TRUE(contains(page.body, "<tr><th>Name</th><td>J\xC3\xB6rg &lt;/td&gt;&lt;script&gt;"));
  EXPECT_TRUE(contains(page.body,
                       "<tr><th>Roles</th><td>&lt;b&gt;role&quot;&lt;/b&gt;: "
                       "group:&lt;i&gt;&#39;x&#39;&lt;/i&gt;"));
  EXPECT_TRUE(contains(page.body, "the CMS account &#39;/DC=org/CN=&lt;script&gt;"));
}

}  // namespace
}  // namespace auth
