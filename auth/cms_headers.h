// The CMS identity headers a backend gets (cms-auth-status, cms-authn-*, cms-authz-*, signed
// with cms-authn-hmac) and the signature itself, exactly as the WMCore (Python) and Go backends
// verify it: see docs/cms-identity.md.
//
// The signed block depends only on the identity, the user-map record and the key, so it is
// built once per connection (or when the map or key changes) and appended to every request
// head as-is; nothing here runs per request.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "auth/user_map.h"
#include "tls/client_identity.h"

namespace auth {

// How the bytes of header names and values enter the HMAC message.
enum class HmacEncoding : std::uint8_t {
  // What a Python 3 CherryPy backend computes: it decodes header bytes as Latin-1 and encodes
  // the message as UTF-8, so every byte >= 0x80 is hashed as the two-byte UTF-8 form of
  // U+0080..U+00FF, while the lengths in the prefix stay byte counts. Identical to `raw` for
  // ASCII identities. The default: most CMS backends are Python 3.
  python3,
  // The bytes as sent (what Apache's mod_perl handler and the Go frontend signed; Go backends
  // verify this).
  raw,
};
std::string_view hmac_encoding_name(HmacEncoding encoding);  // "python3", "raw"

// cms-authn-method's value for a credential: "X509Cert", "X509Proxy", "X509LimitedProxy", or
// "None" (also what the access log records).
std::string_view authn_method_name(tls::CredentialKind kind);

using HeaderView = std::pair<std::string_view, std::string_view>;  // name, value

// The message of the contract's signature: the headers whose lowercased name starts with
// "cms-authn" or "cms-authz" (except cms-authn-hmac), sorted by lowercased name, as
// "h<hex len name>v<hex len value>"... + "#" + <lowercased name><value>...
std::string signed_message(std::span<const HeaderView> headers, HmacEncoding encoding);
// HMAC-SHA1(key, message) as 40 lowercase hex digits.
std::string hmac_sha1_hex(std::string_view key, std::string_view message);

// The key file's whole content, raw bytes (a trailing newline is part of the key, as it is for
// the backends).
class HmacKey {
 public:
  // nullptr and `error` when the file cannot be read or is empty.
  static std::shared_ptr<const HmacKey> load(const std::string& path, std::string& error);
  explicit HmacKey(std::string bytes) : bytes_(std::move(bytes)) {}
  std::string_view bytes() const { return bytes_; }

 private:
  std::string bytes_;
};

// What the backend is told about one identity on a route with auth != none.
struct IdentityHeadersInput {
  const tls::ClientIdentity* identity = nullptr;
  // true: cms-auth-status OK with the identity; false: status NONE, method None (optional
  // route without a usable credential) -- the user DN and record are then not sent.
  bool authenticated = false;
  const UserRecord* user = nullptr;  // nullptr: not mapped (unknown_users = forward)
};

// Appends the block as "name: value\r\n" lines, lowercase names:
//   cms-auth-status, cms-authn-method, [cms-authn-dn, cms-authn-login, cms-authn-name,
//   cms-authz-<role>...], cms-authn-hmac, [cms-auth-cert], ssl_client_s_dn (when a certificate
//   was offered), ssl_client_verify (SUCCESS, NONE or FAILED:<reason>).
// Values are trimmed of spaces at either end (backends' parsers strip them before verifying).
// Returns false (and appends nothing) when the block cannot be sent: a control character in a
// DN or map field, a role name that is not a valid header-name part, an authenticated request
// without a credential, or an HMAC failure. The caller must refuse the request, never forward
// it without its identity.
bool append_identity_headers(const IdentityHeadersInput& input, std::string_view key,
                             HmacEncoding encoding, std::string& out);

}  // namespace auth
