// The 403 and trouble pages. Everything taken from a certificate (DNs, reasons built from
// them) is attacker-chosen text: it goes through html_escape() or append_json_string(), which
// also turn invalid UTF-8 into U+FFFD so that neither output can be broken by raw bytes.
// Pure functions; any thread.
#include "auth/auth_pages.h"

#include <algorithm>
#include <cstddef>
#include <ctime>

namespace auth {
namespace {

constexpr std::string_view kHtmlType = "text/html; charset=utf-8";
constexpr std::string_view kJsonType = "application/json";
constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD in UTF-8

// ---- Accept header ----------------------------------------------------------------------------

constexpr char ascii_lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

bool iequals(std::string_view text, std::string_view lower) {
  return text.size() == lower.size() &&
         std::equal(text.begin(), text.end(), lower.begin(),
                    [](char a, char b) { return ascii_lower(a) == b; });
}

bool iends_with(std::string_view text, std::string_view lower) {
  return text.size() >= lower.size() && iequals(text.substr(text.size() - lower.size()), lower);
}

bool is_tchar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

// RFC 9110 §12.4.2 qvalue, in thousandths; nullopt when malformed.
std::optional<int> parse_qvalue(std::string_view text) {
  if (text.empty() || text.size() > 5 || (text[0] != '0' && text[0] != '1')) return std::nullopt;
  int value = text[0] == '1' ? 1000 : 0;
  if (text.size() == 1) return value;
  if (text[1] != '.') return std::nullopt;
  int scale = 100;
  for (char c : text.substr(2)) {
    if (c < '0' || c > '9') return std::nullopt;
    value += (c - '0') * scale;
    scale /= 10;
  }
  return value <= 1000 ? std::optional<int>(value) : std::nullopt;
}

// A cursor over the Accept header (RFC 9110 §12.5.1):
//   #( type "/" subtype *( OWS ";" OWS name "=" ( token / quoted-string ) ) )
class AcceptParser {
 public:
  explicit AcceptParser(std::string_view text) : text_(text) {}

  // The highest q of JSON types and of text/html; false when the header is malformed.
  bool parse(int& json_q, int& html_q) {
    json_q = 0;
    html_q = 0;
    while (true) {
      skip_ows();
      if (pos_ == text_.size()) return true;
      if (text_[pos_] == ',') {  // empty list elements are allowed
        ++pos_;
        continue;
      }
      const std::string_view type = token();
      if (type.empty() || !consume('/')) return false;
      const std::string_view subtype = token();
      if (subtype.empty()) return false;
      int q = 1000;
      if (!parameters(q)) return false;
      skip_ows();
      if (pos_ != text_.size() && !consume(',')) return false;
      if (iequals(type, "text") && iequals(subtype, "html")) html_q = std::max(html_q, q);
      if ((iequals(type, "application") && iequals(subtype, "json")) ||
          (subtype.size() > 5 && iends_with(subtype, "+json"))) {
        json_q = std::max(json_q, q);
      }
    }
  }

 private:
  bool parameters(int& q) {
    while (true) {
      const std::size_t before = pos_;
      skip_ows();
      if (!consume(';')) {
        pos_ = before;
        return true;
      }
      skip_ows();
      const std::string_view name = token();
      if (name.empty() || !consume('=')) return false;
      if (pos_ < text_.size() && text_[pos_] == '"') {
        if (!quoted_string() || iequals(name, "q")) return false;
        continue;
      }
      const std::string_view value = token();
      if (value.empty()) return false;
      if (iequals(name, "q")) {
        const std::optional<int> parsed = parse_qvalue(value);
        if (!parsed) return false;
        q = *parsed;
      }
    }
  }

  std::string_view token() {
    const std::size_t start = pos_;
    while (pos_ < text_.size() && is_tchar(text_[pos_])) ++pos_;
    return text_.substr(start, pos_ - start);
  }

  bool quoted_string() {
    ++pos_;  // opening quote
    while (pos_ < text_.size()) {
      const char c = text_[pos_++];
      if (c == '"') return true;
      if (c == '\\') {
        if (pos_ == text_.size()) return false;
        ++pos_;
      } else if ((static_cast<unsigned char>(c) < 0x20 && c != '\t') || c == 0x7f) {
        return false;
      }
    }
    return false;
  }

  void skip_ows() {
    while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\t')) ++pos_;
  }

  bool consume(char c) {
    if (pos_ == text_.size() || text_[pos_] != c) return false;
    ++pos_;
    return true;
  }

  std::string_view text_;
  std::size_t pos_ = 0;
};

// ---- Escaping -------------------------------------------------------------------------------

// Length of the well-formed UTF-8 sequence (RFC 3629: no overlongs, no surrogates, at most
// U+10FFFF) starting at text[i], or 0 when the bytes there are not one.
std::size_t utf8_sequence_length(std::string_view text, std::size_t i) {
  const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(text[k]); };
  const unsigned char lead = byte(i);
  if (lead < 0x80) return 1;
  std::size_t length = 0;
  unsigned char low = 0x80;
  unsigned char high = 0xBF;
  if (lead >= 0xC2 && lead <= 0xDF) {
    length = 2;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    length = 3;
    if (lead == 0xE0) low = 0xA0;   // overlong
    if (lead == 0xED) high = 0x9F;  // surrogates
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    length = 4;
    if (lead == 0xF0) low = 0x90;   // overlong
    if (lead == 0xF4) high = 0x8F;  // beyond U+10FFFF
  } else {
    return 0;
  }
  if (text.size() - i < length || byte(i + 1) < low || byte(i + 1) > high) return 0;
  for (std::size_t k = 2; k < length; ++k)
    if (byte(i + k) < 0x80 || byte(i + k) > 0xBF) return 0;
  return length;
}

// Text content and attribute values alike. Control characters other than tab and newline are
// not allowed in HTML text: they become U+FFFD like invalid UTF-8.
void append_html(std::string& out, std::string_view text) {
  for (std::size_t i = 0; i < text.size();) {
    const char c = text[i];
    const std::size_t length = utf8_sequence_length(text, i);
    if (length == 0 || (static_cast<unsigned char>(c) < 0x20 && c != '\t' && c != '\n') ||
        c == 0x7f) {
      out += kReplacement;
      ++i;
      continue;
    }
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out.append(text.substr(i, length));
    }
    i += length;
  }
}

// A JSON string literal, quotes included (RFC 8259 §7).
void append_json_string(std::string& out, std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  out += '"';
  for (std::size_t i = 0; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
    const std::size_t length = utf8_sequence_length(text, i);
    if (length == 0) {
      out += kReplacement;
      ++i;
      continue;
    }
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20) {
      out += "\\u00";
      out += kHex[c >> 4];
      out += kHex[c & 0xf];
    } else {
      out.append(text.substr(i, length));
    }
    i += length;
  }
  out += '"';
}

// ---- Facts ----------------------------------------------------------------------------------

// Whole days until not_after, rounded down: -1 from the first second after expiry. The inputs
// are clamped so that the subtraction cannot overflow whatever a decoded session holds.
std::int64_t days_left(std::int64_t not_after, std::int64_t now) {
  constexpr std::int64_t kLimit = std::int64_t{1} << 50;
  const std::int64_t seconds =
      std::clamp(not_after, -kLimit, kLimit) - std::clamp(now, -kLimit, kLimit);
  constexpr std::int64_t kDay = 86400;
  return seconds / kDay - (seconds % kDay < 0 ? 1 : 0);
}

std::string_view kind_label(tls::CredentialKind kind) {
  switch (kind) {
    case tls::CredentialKind::none:
      return "none";
    case tls::CredentialKind::certificate:
      return "certificate";
    case tls::CredentialKind::proxy:
      return "proxy";
    case tls::CredentialKind::limited_proxy:
      return "limited_proxy";
  }
  return "none";
}

std::string_view yes_no(bool value) { return value ? "yes" : "no"; }
std::string_view json_bool(bool value) { return value ? "true" : "false"; }

// The opening of both HTML pages, up to and including <body>.
void append_html_head(std::string& out, std::string_view title) {
  out +=
      "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
      "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>";
  append_html(out, title);
  out +=
      "</title>\n<style>body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em}"
      "table{border-collapse:collapse}th,td{text-align:left;vertical-align:top;padding:.3em .8em;"
      "border-bottom:1px solid #ddd}td{overflow-wrap:anywhere}code{background:#f4f4f4}</style>\n"
      "</head>\n<body>\n";
}

void append_row(std::string& out, std::string_view name, std::string_view value) {
  out += "<tr><th>";
  out += name;  // our own labels: plain ASCII, nothing to escape
  out += "</th><td>";
  append_html(out, value);
  out += "</td></tr>\n";
}

// The one-sentence state of the credential, as the 403 page would put it.
std::string summary(const tls::ClientIdentity& identity, const TroubleFacts& facts) {
  if (!facts.tls) return "You are connected over plain HTTP, so no certificate could be presented.";
  if (!identity.offered()) {
    return "Your client did not present a certificate on this connection. Pages that need "
           "one will refuse it; load your grid certificate (or proxy) into the client.";
  }
  if (!identity.verified()) return denial_message(Denial::verification_failed, identity);
  if (facts.now >= identity.not_after) return denial_message(Denial::expired_since, identity);
  std::string text = identity.is_proxy() ? "Your proxy certificate" : "Your certificate";
  text += " was verified; it is valid until " + tls::format_utc(identity.not_after) + ".";
  return text;
}

constexpr std::string_view kRenewProxy =
    "Create a fresh proxy with <code>voms-proxy-init --voms cms</code> and try again.";

// What the user can do about the state summary() describes; empty when nothing is needed.
std::string advice(const tls::ClientIdentity& identity, const TroubleFacts& facts) {
  using tls::VerifyOutcome;
  if (!facts.tls) return "Use <code>https://</code>: certificates are only asked for over TLS.";
  if (!identity.offered()) {
    return "Load your grid certificate (the <code>.p12</code> file from your CA) into your "
           "browser's certificate store, then restart the browser so that it offers the "
           "certificate, and choose it when asked. From the command line, pass it explicitly, e.g. "
           "<code>curl --cert ~/.globus/usercert.pem --key ~/.globus/userkey.pem</code>, or a "
           "proxy with <code>curl --cert $X509_USER_PROXY --key $X509_USER_PROXY</code>.";
  }
  const bool expired_now = identity.verified() && facts.now >= identity.not_after;
  if (identity.outcome == VerifyOutcome::expired || expired_now) {
    if (identity.is_proxy()) return std::string(kRenewProxy);
    return "Renew your certificate with the CA that issued it, then load the new one into your "
           "browser (or <code>~/.globus</code>).";
  }
  switch (identity.outcome) {
    case VerifyOutcome::ok:
      if (identity.kind == tls::CredentialKind::limited_proxy) {
        return "Some pages do not accept a limited proxy: create a full one with "
               "<code>voms-proxy-init --voms cms</code> for those.";
      }
      if (!identity.is_proxy() && days_left(identity.not_after, facts.now) < 14)
        return "Your certificate expires soon: renew it with the CA that issued it.";
      return "";
    case VerifyOutcome::no_certificate:
    case VerifyOutcome::expired:
      return "";  // handled above
    case VerifyOutcome::not_yet_valid:
      return "Wait until the start of its validity, and check that your computer's clock is "
             "right.";
    case VerifyOutcome::revoked:
      return "A revoked certificate cannot be used again: request a new one from your CA.";
    case VerifyOutcome::unknown_ca:
      return "Use a certificate from an IGTF-accredited CA (such as the CERN Grid CA); personal "
             "and self-signed certificates are not accepted.";
    case VerifyOutcome::crl_missing:
    case VerifyOutcome::crl_expired:
      return "This is a problem on the server side: please report it to the service "
             "administrators, quoting the issuer shown above.";
    case VerifyOutcome::bad_signature:
    case VerifyOutcome::bad_proxy:
      if (identity.is_proxy() || identity.outcome == VerifyOutcome::bad_proxy)
        return std::string(kRenewProxy);
      return "Load your certificate again from the files your CA issued.";
    case VerifyOutcome::proxy_forbidden:
      return "Present your certificate itself rather than a proxy.";
    case VerifyOutcome::invalid:
      break;
  }
  return "Check that you present the right certificate; if the problem persists, contact the "
         "service administrators with the details above.";
}

// Why the identity has, or has not, a CMS account: one sentence.
std::string mapping_summary(const tls::ClientIdentity& identity, const TroubleFacts& facts) {
  if (!facts.user_map_loaded) return "This server does not map certificates to CMS accounts.";
  if (!identity.offered()) return "No certificate, so no CMS account to look up.";
  if (!identity.verified()) {
    return "Not looked up: only a verified certificate is mapped to a CMS account.";
  }
  if (facts.user == nullptr) {
    return "Your DN is not registered to a CMS account (the user map has " +
           std::to_string(facts.user_map_users) +
           " users). Register this certificate with your account in CRIC; pages that need a "
           "CMS account refuse it until then.";
  }
  return "Your DN is registered to the CMS account '" + facts.user->login + "'.";
}

std::string roles_text(const UserRecord& user) {
  std::string text;
  for (const auto& [role, items] : user.roles) {
    if (!text.empty()) text += "; ";
    text += role + ": " + items;
  }
  return text.empty() ? "(none)" : text;
}

void append_mapping_html(std::string& out, const tls::ClientIdentity& identity,
                         const TroubleFacts& facts) {
  append_row(out, "CMS account", mapping_summary(identity, facts));
  if (facts.user == nullptr) return;
  append_row(out, "Login", facts.user->login);
  if (!facts.user->name.empty()) append_row(out, "Name", facts.user->name);
  append_row(out, "Roles", roles_text(*facts.user));
}

void append_mapping_json(std::string& out, const tls::ClientIdentity& identity,
                         const TroubleFacts& facts) {
  out += ",\"cms_account\":{\"mapped\":";
  out += json_bool(facts.user != nullptr);
  out += ",\"summary\":";
  append_json_string(out, mapping_summary(identity, facts));
  if (facts.user != nullptr) {
    out += ",\"login\":";
    append_json_string(out, facts.user->login);
    out += ",\"name\":";
    append_json_string(out, facts.user->name);
    out += ",\"roles\":{";
    bool first = true;
    for (const auto& [role, items] : facts.user->roles) {
      if (!first) out += ",";
      first = false;
      append_json_string(out, role);
      out += ":";
      append_json_string(out, items);
    }
    out += "}";
  }
  out += "}";
}

std::string trouble_html(const tls::ClientIdentity& identity, const TroubleFacts& facts) {
  std::string out;
  append_html_head(out, "Certificate troubleshooting");
  out += "<h1>Your connection and certificate</h1>\n<p>";
  append_html(out, summary(identity, facts));
  out += "</p>\n<table>\n";
  append_row(out, "TLS", facts.tls ? "yes (" + std::string(facts.protocol) + ")" : "no");
  append_row(out, "Certificate offered", yes_no(identity.offered()));
  append_row(out, "Verified", yes_no(identity.verified()));
  append_row(out, "Verification result", tls::outcome_label(identity.outcome));
  if (!identity.reason.empty()) append_row(out, "Reason", identity.reason);
  append_row(out, "Credential", kind_label(identity.kind));
  if (identity.offered()) {
    append_row(out, "User DN", identity.user_dn);
    append_row(out, "Certificate subject", identity.leaf_dn);
    append_row(out, "Issuer", identity.issuer_dn);
    append_row(out, "Valid from", tls::format_utc(identity.not_before));
    append_row(out, "Valid until", tls::format_utc(identity.not_after));
    append_row(out, "Days left", std::to_string(days_left(identity.not_after, facts.now)));
  }
  if (identity.verify_error != 0) {
    append_row(out, "OpenSSL error",
               std::to_string(identity.verify_error) + " at chain depth " +
                   std::to_string(identity.error_depth));
  }
  append_row(out, "Session resumed", yes_no(identity.resumed));
  append_mapping_html(out, identity, facts);
  out += "</table>\n";
  const std::string what_to_do = advice(identity, facts);
  if (!what_to_do.empty()) {
    out += "<h2>What to do</h2>\n<p>";
    out += what_to_do;  // our own text with markup: contains no certificate data
    out += "</p>\n";
  }
  out += "</body>\n</html>\n";
  return out;
}

std::string trouble_json(const tls::ClientIdentity& identity, const TroubleFacts& facts) {
  std::string out = "{\"tls\":";
  out += json_bool(facts.tls);
  out += ",\"protocol\":";
  append_json_string(out, facts.protocol);
  out += ",\"certificate_offered\":";
  out += json_bool(identity.offered());
  out += ",\"verified\":";
  out += json_bool(identity.verified());
  out += ",\"outcome\":";
  append_json_string(out, tls::outcome_label(identity.outcome));
  out += ",\"reason\":";
  append_json_string(out, identity.reason);
  out += ",\"kind\":";
  append_json_string(out, kind_label(identity.kind));
  if (identity.offered()) {
    out += ",\"user_dn\":";
    append_json_string(out, identity.user_dn);
    out += ",\"leaf_dn\":";
    append_json_string(out, identity.leaf_dn);
    out += ",\"issuer_dn\":";
    append_json_string(out, identity.issuer_dn);
    out += ",\"not_before\":";
    append_json_string(out, tls::format_utc(identity.not_before));
    out += ",\"not_after\":";
    append_json_string(out, tls::format_utc(identity.not_after));
    out += ",\"days_left\":";
    out += std::to_string(days_left(identity.not_after, facts.now));
  }
  out += ",\"verify_error\":";
  out += std::to_string(identity.verify_error);
  out += ",\"error_depth\":";
  out += std::to_string(identity.error_depth);
  out += ",\"resumed\":";
  out += json_bool(identity.resumed);
  append_mapping_json(out, identity, facts);
  out += "}";
  return out;
}

}  // namespace

bool wants_json(std::string_view accept_header) {
  int json_q = 0;
  int html_q = 0;
  return AcceptParser(accept_header).parse(json_q, html_q) && json_q > html_q;
}

Page render_denied(const Decision& decision, const tls::ClientIdentity& identity,
                   std::string_view trouble_page, bool json) {
  const std::string message = denial_message(decision.denial, identity);
  std::string out;
  if (json) {
    out = "{\"status\":403,\"reason\":";
    append_json_string(out, denial_label(decision.denial, identity));
    out += ",\"message\":";
    append_json_string(out, message);
    out += ",\"trouble_page\":";
    append_json_string(out, trouble_page);
    out += "}";
    return {std::string(kJsonType), std::move(out)};
  }
  append_html_head(out, "403 Forbidden");
  out += "<h1>403 Forbidden</h1>\n<p>";
  append_html(out, message);
  out += "</p>\n<p>The <a href=\"";
  append_html(out, trouble_page);
  out +=
      "\">certificate troubleshooting page</a> shows what this server sees of your certificate "
      "and what you can do about it.</p>\n</body>\n</html>\n";
  return {std::string(kHtmlType), std::move(out)};
}

Page render_trouble(const tls::ClientIdentity& identity, const TroubleFacts& facts, bool json) {
  // Over plain HTTP no certificate can have been presented, whatever the caller passes.
  const tls::ClientIdentity& shown = facts.tls ? identity : *tls::no_certificate_identity();
  // Only a verified identity has a CMS account, whatever the caller looked up.
  TroubleFacts checked = facts;
  if (!shown.verified()) checked.user = nullptr;
  if (json) return {std::string(kJsonType), trouble_json(shown, checked)};
  return {std::string(kHtmlType), trouble_html(shown, checked)};
}

}  // namespace auth
