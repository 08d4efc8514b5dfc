#include "auth/auth_pages.h"

#include <gtest/gtest.h>

#include <cstddef>
#include <map>
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

// ---- A small strict JSON reader for the flat objects the pages produce ------------------------

struct JsonValue {
  bool is_string = false;
  std::string text;  // decoded string, or the literal/number as written
};
using JsonObject = std::map<std::string, JsonValue>;

class JsonReader {
 public:
  explicit JsonReader(std::string_view text) : text_(text) {}

  std::optional<JsonObject> object() {
    JsonObject result;
    if (!consume('{')) return std::nullopt;
    if (consume('}')) return finish(result);
    do {
      std::string key;
      JsonValue value;
      if (!string(key) || !consume(':') || !scalar(value)) return std::nullopt;
      if (!result.emplace(std::move(key), std::move(value)).second) return std::nullopt;
    } while (consume(','));
    if (!consume('}')) return std::nullopt;
    return finish(result);
  }

 private:
  std::optional<JsonObject> finish(JsonObject& result) {
    if (pos_ != text_.size()) return std::nullopt;
    return std::move(result);
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

// ---- Trouble page: JSON ---------------------------------------------------------------------

TEST(AuthPages, TroubleJsonWithoutCertificateOmitsCertificateFields) {
  const Page page = render_trouble(ClientIdentity{}, tls13(kNotAfter), /*json=*/true);
  EXPECT_EQ(page.content_type, "application/json");
  EXPECT_EQ(page.body,
            "{\"tls\":true,\"protocol\":\"TLSv1.3\",\"certificate_offered\":false,"
            "\"verified\":false,\"outcome\":\"no_certificate\",\"reason\":\"\",\"kind\":\"none\","
            "\"verify_error\":0,\"error_depth\":-1,\"resumed\":false}");
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
            "\"days_left\":10,\"verify_error\":0,\"error_depth\":-1,\"resumed\":true}");
  const JsonObject object = parse_json(page.body);
  EXPECT_EQ(object.size(), 16u);
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

}  // namespace
}  // namespace auth
