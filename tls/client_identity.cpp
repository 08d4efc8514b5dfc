// Labels for verification outcomes, and the session-storage encoding of an identity. The
// encoding is read back from session tickets and cache entries, so decode_identity() treats
// its input as untrusted bytes: every length is checked before it is used. Pure functions;
// any thread.
#include "tls/client_identity.h"

#include <ctime>

#include <cstddef>

namespace tls {
namespace {

// Layout of version 1 (integers big-endian, signed ones in two's complement):
//   u8 version, u8 outcome, u8 kind,
//   i64 not_before, i64 not_after, i32 verify_error, i32 error_depth,
//   4 x (u32 length, bytes): user_dn, leaf_dn, issuer_dn, reason.
// `resumed` is not stored: it describes the connection that restores the identity.
constexpr std::uint8_t kEncodingVersion = 1;
constexpr std::size_t kFixedSize = 3 + 8 + 8 + 4 + 4 + 4 * 4;  // everything but string bytes

void put_uint(std::string& out, std::uint64_t value, int bytes) {
  for (int shift = (bytes - 1) * 8; shift >= 0; shift -= 8)
    out.push_back(static_cast<char>((value >> shift) & 0xff));
}

void put_string(std::string& out, std::string_view text) {
  put_uint(out, text.size(), 4);
  out.append(text);
}

// Consumes the input front to back; any read past the end fails and leaves the reader failed.
class Reader {
 public:
  explicit Reader(std::string_view input) : input_(input) {}

  bool read_uint(int bytes, std::uint64_t& value) {
    if (input_.size() < static_cast<std::size_t>(bytes)) return false;
    value = 0;
    for (int i = 0; i < bytes; ++i) value = (value << 8) | static_cast<unsigned char>(input_[i]);
    input_.remove_prefix(static_cast<std::size_t>(bytes));
    return true;
  }

  bool read_int64(std::int64_t& value) {
    std::uint64_t raw = 0;
    if (!read_uint(8, raw)) return false;
    value = static_cast<std::int64_t>(raw);  // two's complement (defined since C++20)
    return true;
  }

  bool read_int32(int& value) {
    std::uint64_t raw = 0;
    if (!read_uint(4, raw)) return false;
    value = static_cast<int>(static_cast<std::int32_t>(static_cast<std::uint32_t>(raw)));
    return true;
  }

  bool read_string(std::string& value) {
    std::uint64_t length = 0;
    if (!read_uint(4, length) || length > input_.size()) return false;
    value.assign(input_.substr(0, static_cast<std::size_t>(length)));
    input_.remove_prefix(static_cast<std::size_t>(length));
    return true;
  }

  bool at_end() const { return input_.empty(); }

 private:
  std::string_view input_;
};

}  // namespace

std::string_view outcome_label(VerifyOutcome outcome) {
  switch (outcome) {
    case VerifyOutcome::ok:
      return "ok";
    case VerifyOutcome::no_certificate:
      return "no_certificate";
    case VerifyOutcome::expired:
      return "expired";
    case VerifyOutcome::not_yet_valid:
      return "not_yet_valid";
    case VerifyOutcome::revoked:
      return "revoked";
    case VerifyOutcome::unknown_ca:
      return "unknown_ca";
    case VerifyOutcome::crl_missing:
      return "crl_missing";
    case VerifyOutcome::crl_expired:
      return "crl_expired";
    case VerifyOutcome::bad_signature:
      return "bad_signature";
    case VerifyOutcome::bad_proxy:
      return "bad_proxy";
    case VerifyOutcome::proxy_forbidden:
      return "proxy_forbidden";
    case VerifyOutcome::invalid:
      return "invalid";
  }
  return "invalid";
}

const IdentityPtr& no_certificate_identity() {
  static const IdentityPtr identity = std::make_shared<const ClientIdentity>();
  return identity;
}

std::string encode_identity(const ClientIdentity& identity) {
  std::string out;
  out.reserve(kFixedSize + identity.user_dn.size() + identity.leaf_dn.size() +
              identity.issuer_dn.size() + identity.reason.size());
  put_uint(out, kEncodingVersion, 1);
  put_uint(out, static_cast<std::uint8_t>(identity.outcome), 1);
  put_uint(out, static_cast<std::uint8_t>(identity.kind), 1);
  put_uint(out, static_cast<std::uint64_t>(identity.not_before), 8);
  put_uint(out, static_cast<std::uint64_t>(identity.not_after), 8);
  put_uint(out, static_cast<std::uint32_t>(identity.verify_error), 4);
  put_uint(out, static_cast<std::uint32_t>(identity.error_depth), 4);
  put_string(out, identity.user_dn);
  put_string(out, identity.leaf_dn);
  put_string(out, identity.issuer_dn);
  put_string(out, identity.reason);
  return out;
}

std::optional<ClientIdentity> decode_identity(std::string_view encoded) {
  Reader reader(encoded);
  std::uint64_t version = 0;
  std::uint64_t outcome = 0;
  std::uint64_t kind = 0;
  if (!reader.read_uint(1, version) || version != kEncodingVersion) return std::nullopt;
  if (!reader.read_uint(1, outcome) ||
      outcome > static_cast<std::uint8_t>(VerifyOutcome::invalid)) {
    return std::nullopt;
  }
  if (!reader.read_uint(1, kind) || kind > static_cast<std::uint8_t>(CredentialKind::limited_proxy))
    return std::nullopt;

  ClientIdentity identity;
  identity.outcome = static_cast<VerifyOutcome>(outcome);
  identity.kind = static_cast<CredentialKind>(kind);
  if (!reader.read_int64(identity.not_before) || !reader.read_int64(identity.not_after) ||
      !reader.read_int32(identity.verify_error) || !reader.read_int32(identity.error_depth) ||
      !reader.read_string(identity.user_dn) || !reader.read_string(identity.leaf_dn) ||
      !reader.read_string(identity.issuer_dn) || !reader.read_string(identity.reason) ||
      !reader.at_end()) {
    return std::nullopt;
  }
  return identity;
}

std::string format_utc(std::int64_t unix_seconds) {
  const auto time = static_cast<std::time_t>(unix_seconds);
  std::tm parts{};
  char buffer[64];
  if (gmtime_r(&time, &parts) == nullptr ||
      std::strftime(buffer, sizeof buffer, "%Y-%m-%d %H:%M:%S UTC", &parts) == 0) {
    return "@" + std::to_string(unix_seconds);
  }
  return buffer;
}

}  // namespace tls
