// The CMS identity header block and its HMAC (contract sections 1.2 and 1.3). Runs once per
// connection (or per map/key change), so clarity comes before speed; any thread.
#include "auth/cms_headers.h"

#include <openssl/evp.h>
#include <openssl/x509.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstddef>
#include <cstdio>
#include <system_error>
#include <vector>

namespace auth {
namespace {

constexpr std::string_view kHmacHeader = "cms-authn-hmac";
// A CMS key is 20 bytes; anything this large is the wrong file (or a device that never ends).
constexpr std::size_t kMaxKeyBytes = 64 * 1024;

unsigned char byte_of(char c) { return static_cast<unsigned char>(c); }

// Header names are ASCII tokens: only A-Z is folded, exactly like the backends' lower().
char ascii_lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool iequals_prefix(std::string_view text, std::string_view lower_prefix) {
  if (text.size() < lower_prefix.size()) return false;
  for (std::size_t i = 0; i < lower_prefix.size(); ++i) {
    if (ascii_lower(text[i]) != lower_prefix[i]) return false;
  }
  return true;
}

bool iequals(std::string_view text, std::string_view lower) {
  return text.size() == lower.size() && iequals_prefix(text, lower);
}

// Contract 1.3 step 1: the test is on the first 9 characters of the lowercased name, so
// cms-auth-status and cms-auth-cert are not signed while any cms-authz-<role> is.
bool is_signed_name(std::string_view name) {
  return (iequals_prefix(name, "cms-authn") || iequals_prefix(name, "cms-authz")) &&
         !iequals(name, kHmacHeader);
}

// Byte order of the lowercased names, without building them.
bool lowered_less(const HeaderView* a, const HeaderView* b) {
  return std::lexicographical_compare(
      a->first.begin(), a->first.end(), b->first.begin(), b->first.end(),
      [](char x, char y) { return byte_of(ascii_lower(x)) < byte_of(ascii_lower(y)); });
}

void append_hex(std::string& out, std::size_t value) {
  std::array<char, 2 * sizeof(std::size_t)> digits{};
  const auto result = std::to_chars(digits.data(), digits.data() + digits.size(), value, 16);
  out.append(digits.data(), result.ptr);
}

// One byte of the message suffix. In python3 mode the backend sees the byte as the Latin-1
// character U+00XX and hashes its UTF-8 form, which takes two bytes from 0x80 on.
void append_encoded(std::string& out, char c, HmacEncoding encoding) {
  const unsigned char b = byte_of(c);
  if (encoding == HmacEncoding::raw || b < 0x80) {
    out.push_back(c);
    return;
  }
  out.push_back(static_cast<char>(0xC0 | (b >> 6)));
  out.push_back(static_cast<char>(0x80 | (b & 0x3F)));
}

// ---- the identity block ------------------------------------------------------------------------

// A value the backend would not receive byte for byte (a control character would end or split
// the header line).
bool header_safe(std::string_view value) {
  return std::none_of(value.begin(), value.end(), [](char c) {
    const unsigned char b = byte_of(c);
    return b < 0x20 || b == 0x7F;
  });
}

// A role name becomes part of a header name, so it must stay a token; UserRecord promises
// [a-z0-9-], this only makes sure a broken map cannot forge header framing.
bool canonical_role(std::string_view role) {
  return !role.empty() && std::all_of(role.begin(), role.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
  });
}

// HTTP parsers (cheroot, Go's textproto) strip spaces around a field value, so a value with an
// edge space would arrive different from what was signed: send and sign it trimmed, which is
// what the backend would read anyway. Tabs never get here (header_safe refuses them).
std::string_view trim_spaces(std::string_view value) {
  const auto first = value.find_first_not_of(' ');
  if (first == std::string_view::npos) return {};
  return value.substr(first, value.find_last_not_of(' ') - first + 1);
}

// The headers an identity is described with, before any text is written: names and values
// are views into the identity, the user record and `storage`.
struct Block {
  std::vector<HeaderView> headers;   // in the order they go on the wire
  std::vector<std::string> storage;  // owned names (cms-authz-<role>)
  bool ok = true;                    // false: some value cannot be sent

  void add(std::string_view name, std::string_view value) {
    if (!header_safe(value)) ok = false;
    headers.emplace_back(name, trim_spaces(value));
  }
};

// cms-authn-method, -dn, and the mapped user's login, name and roles: the signed part.
void add_signed_identity(const tls::ClientIdentity& identity, const UserRecord* user,
                         Block& block) {
  // "Authenticated" without a certificate is a caller bug: refuse rather than send "None".
  if (identity.kind == tls::CredentialKind::none) block.ok = false;
  const std::string_view method = authn_method_name(identity.kind);
  block.add("cms-authn-method", method);
  block.add("cms-authn-dn", identity.user_dn);
  if (user == nullptr) return;
  block.add("cms-authn-login", user->login);
  if (!trim_spaces(user->name).empty()) block.add("cms-authn-name", user->name);
  // Names first, views after: `storage` must not reallocate under the views.
  block.storage.reserve(user->roles.size());
  for (const auto& [role, items] : user->roles) {
    if (!canonical_role(role)) block.ok = false;
    block.storage.push_back("cms-authz-" + role);
  }
  for (std::size_t i = 0; i < user->roles.size(); ++i) {
    block.add(block.storage[i], user->roles[i].second);
  }
}

// mod_ssl's variables: the leaf DN when one was offered, and the verification result.
void add_ssl_client(const tls::ClientIdentity& identity, std::string& reason_storage,
                    Block& block) {
  if (identity.offered()) block.add("ssl_client_s_dn", identity.leaf_dn);
  if (identity.verified()) {
    block.add("ssl_client_verify", "SUCCESS");
  } else if (!identity.offered()) {
    block.add("ssl_client_verify", "NONE");
  } else {
    reason_storage = "FAILED:";
    if (identity.verify_error != 0) {
      reason_storage += X509_verify_cert_error_string(identity.verify_error);
    } else {
      reason_storage += tls::outcome_label(identity.outcome);
    }
    block.add("ssl_client_verify", reason_storage);
  }
}

void append_line(std::string& out, std::string_view name, std::string_view value) {
  out.append(name);
  out.append(": ");
  out.append(value);
  out.append("\r\n");
}

}  // namespace

std::string_view hmac_encoding_name(HmacEncoding encoding) {
  switch (encoding) {
    case HmacEncoding::python3:
      return "python3";
    case HmacEncoding::raw:
      return "raw";
  }
  return "python3";
}

std::string signed_message(std::span<const HeaderView> headers, HmacEncoding encoding) {
  std::vector<const HeaderView*> taken;
  taken.reserve(headers.size());
  for (const HeaderView& header : headers) {
    if (is_signed_name(header.first)) taken.push_back(&header);
  }
  // Stable: a name given twice keeps its input order (the backends would see one merged value
  // and fail anyway, but the message stays deterministic).
  std::stable_sort(taken.begin(), taken.end(), lowered_less);

  std::string message;
  for (const HeaderView* header : taken) {
    message.push_back('h');
    append_hex(message, header->first.size());
    message.push_back('v');
    append_hex(message, header->second.size());  // bytes: Latin-1 decoding keeps the count
  }
  message.push_back('#');
  for (const HeaderView* header : taken) {
    for (char c : header->first) append_encoded(message, ascii_lower(c), encoding);
    for (char c : header->second) append_encoded(message, c, encoding);
  }
  return message;
}

std::string hmac_sha1_hex(std::string_view key, std::string_view message) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  std::size_t digest_size = 0;
  // A null key pointer means "no key" to OpenSSL; an empty key must still be a key.
  static constexpr unsigned char kEmpty = 0;
  const void* key_bytes = key.empty() ? &kEmpty : static_cast<const void*>(key.data());
  if (EVP_Q_mac(nullptr, "HMAC", nullptr, "SHA1", nullptr, key_bytes, key.size(),
                reinterpret_cast<const unsigned char*>(message.data()), message.size(),
                digest.data(), digest.size(), &digest_size) == nullptr) {
    return {};  // only when no provider offers HMAC-SHA1 (e.g. a strict FIPS setup)
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  hex.reserve(2 * digest_size);
  for (std::size_t i = 0; i < digest_size; ++i) {
    hex.push_back(kHex[digest[i] >> 4]);
    hex.push_back(kHex[digest[i] & 0x0F]);
  }
  return hex;
}

std::shared_ptr<const HmacKey> HmacKey::load(const std::string& path, std::string& error) {
  struct FileCloser {
    void operator()(std::FILE* file) const noexcept { std::fclose(file); }
  };
  // std::error_code's message is the thread-safe strerror: keys are reloaded off the loops.
  const auto failed = [&](int code) {
    error = "cannot read HMAC key file " + path + ": " + std::generic_category().message(code);
    return nullptr;
  };
  std::unique_ptr<std::FILE, FileCloser> file(std::fopen(path.c_str(), "rb"));
  if (!file) return failed(errno);
  errno = 0;  // so a read error below reports its own cause

  std::string bytes;
  std::array<char, 4096> chunk{};
  while (true) {
    const std::size_t got = std::fread(chunk.data(), 1, chunk.size(), file.get());
    bytes.append(chunk.data(), got);
    if (bytes.size() > kMaxKeyBytes) {
      error = "HMAC key file " + path + " is larger than " + std::to_string(kMaxKeyBytes) +
              " bytes (a CMS key is 20 bytes): wrong file?";
      return nullptr;
    }
    if (got < chunk.size()) break;
  }
  if (std::ferror(file.get())) return failed(errno != 0 ? errno : EIO);
  if (bytes.empty()) {
    error = "HMAC key file " + path + " is empty";
    return nullptr;
  }
  return std::make_shared<const HmacKey>(std::move(bytes));
}

bool append_identity_headers(const IdentityHeadersInput& input, std::string_view key,
                             HmacEncoding encoding, std::string& out) {
  const tls::ClientIdentity& identity =
      input.identity != nullptr ? *input.identity : *tls::no_certificate_identity();

  // Everything is collected (as views) first and written only once every value has been
  // checked, so a refusal leaves `out` untouched.
  Block block;
  block.add("cms-auth-status", input.authenticated ? "OK" : "NONE");
  const std::size_t signed_begin = block.headers.size();
  if (input.authenticated) {
    add_signed_identity(identity, input.user, block);
  } else {
    block.add("cms-authn-method", "None");
  }
  const std::size_t signed_end = block.headers.size();
  if (!block.ok) return false;

  const std::string hmac = hmac_sha1_hex(
      key, signed_message(std::span(block.headers).subspan(signed_begin, signed_end - signed_begin),
                          encoding));
  if (hmac.empty()) return false;  // unsigned identity headers would be worthless, refuse
  block.add("cms-authn-hmac", hmac);
  if (input.authenticated) block.add("cms-auth-cert", identity.user_dn);
  std::string reason_storage;
  add_ssl_client(identity, reason_storage, block);
  if (!block.ok) return false;

  for (const auto& [name, value] : block.headers) append_line(out, name, value);
  return true;
}

std::string_view authn_method_name(tls::CredentialKind kind) {
  switch (kind) {
    case tls::CredentialKind::certificate:
      return "X509Cert";
    case tls::CredentialKind::proxy:
      return "X509Proxy";
    case tls::CredentialKind::limited_proxy:
      return "X509LimitedProxy";
    case tls::CredentialKind::none:
      break;
  }
  return "None";
}

}  // namespace auth
