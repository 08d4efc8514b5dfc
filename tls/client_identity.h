// What the TLS layer learned about the client's certificate: one immutable value per
// connection, computed once at the handshake (or restored from the session on resumption) and
// shared (shared_ptr<const ClientIdentity>) by every request on the connection, and by every
// connection that presented the same chain while a cached verification is valid.
//
// Thread: built on a worker thread during the handshake; immutable afterwards, so any thread
// may read it.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace tls {

// What kind of credential the presented chain is.
enum class CredentialKind : std::uint8_t {
  none,           // no certificate presented
  certificate,    // an end-entity (user, host, robot) certificate
  proxy,          // the chain holds a proxy certificate (RFC 3820 or legacy Globus)
  limited_proxy,  // ... and at least one of them is limited
};

// Why a presented chain was not accepted; `ok` when it verified.
enum class VerifyOutcome : std::uint8_t {
  ok,
  no_certificate,   // nothing presented (not a failure on routes that do not need one)
  expired,          // a certificate of the chain is past notAfter
  not_yet_valid,    // a certificate of the chain is before notBefore
  revoked,          // a certificate of the chain is on its CA's CRL
  unknown_ca,       // the chain does not lead to a CA of the trust store
  crl_missing,      // crl = "require" and a CA of the chain has no CRL
  crl_expired,      // a CRL is past nextUpdate + crl_grace
  bad_signature,    // a signature does not verify (forged issuer, spliced chain)
  bad_proxy,        // proxy rules broken (name, path length, type mix, SAN, limited signs full)
  proxy_forbidden,  // a proxy was presented where proxy_certificates = false
  invalid,          // anything else OpenSSL refuses (bad extension, too deep, ...)
};

// Stable lowercase label ("ok", "expired", "unknown_ca", ...) for JSON, logs and metrics.
std::string_view outcome_label(VerifyOutcome outcome);

struct ClientIdentity {
  VerifyOutcome outcome = VerifyOutcome::no_certificate;
  CredentialKind kind = CredentialKind::none;
  // Subject of the first non-proxy certificate of the chain (the user), in OpenSSL's legacy
  // slash form with raw UTF-8 values: "/DC=ch/DC=cern/OU=Users/CN=jdoe/CN=123456/CN=John Doe".
  // Set whenever a certificate was presented, even when verification failed (for the trouble
  // page); only trustworthy when verified().
  std::string user_dn;
  std::string leaf_dn;    // subject of the presented leaf (the proxy itself for proxies)
  std::string issuer_dn;  // issuer of the user certificate (its CA)
  // Validity of the whole chain as presented (unix seconds): latest notBefore, earliest
  // notAfter. 0 when no certificate was presented.
  std::int64_t not_before = 0;
  std::int64_t not_after = 0;
  int verify_error = 0;  // OpenSSL X509_V_ERR_* code; 0 when ok
  int error_depth = -1;  // chain position of the failing certificate (0 = leaf); -1 = n/a
  std::string reason;    // operator/user readable explanation; empty when ok
  bool resumed = false;  // restored from a resumed TLS session

  bool offered() const { return outcome != VerifyOutcome::no_certificate; }
  bool verified() const { return outcome == VerifyOutcome::ok; }
  bool is_proxy() const {
    return kind == CredentialKind::proxy || kind == CredentialKind::limited_proxy;
  }
};

using IdentityPtr = std::shared_ptr<const ClientIdentity>;

// The shared "no certificate presented" identity.
const IdentityPtr& no_certificate_identity();

// "2026-11-28 12:00:00 UTC" for an identity's times; "@<seconds>" when out of range.
std::string format_utc(std::int64_t unix_seconds);

// Session storage: the identity travels with the TLS session (session cache entry or
// encrypted ticket) so a resumed connection has the same identity without the chain.
std::string encode_identity(const ClientIdentity& identity);
std::optional<ClientIdentity> decode_identity(std::string_view encoded);  // nullopt: malformed

}  // namespace tls
