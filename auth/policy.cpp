// The per-route authentication decision and the words that explain a refusal. Pure functions;
// any thread.
#include "auth/policy.h"

#include <ctime>

namespace auth {
namespace {

// True while a verified identity is still usable: verification happened at the handshake,
// but a long-lived connection (or a resumed session) can outlive the chain's notAfter.
bool unexpired(const tls::ClientIdentity& identity, std::int64_t now) {
  return now < identity.not_after;
}

std::string_view credential_noun(const tls::ClientIdentity& identity) {
  return identity.is_proxy() ? "proxy certificate" : "certificate";
}

std::string expired_message(const tls::ClientIdentity& identity) {
  std::string message = "Your ";
  message += credential_noun(identity);
  message += " has expired";
  if (identity.not_after != 0) message += " (on " + tls::format_utc(identity.not_after) + ")";
  message += ".";
  return message;
}

// "<prefix>: <reason>." or "<prefix>." when there is no reason.
std::string with_reason(std::string_view prefix, const std::string& reason) {
  std::string message(prefix);
  if (reason.empty()) return message + ".";
  message += ": ";
  message += reason;
  if (message.back() != '.') message += '.';
  return message;
}

std::string verification_message(const tls::ClientIdentity& identity) {
  using tls::VerifyOutcome;
  switch (identity.outcome) {
    case VerifyOutcome::ok:
      break;
    case VerifyOutcome::no_certificate:
      return denial_message(Denial::no_certificate, identity);
    case VerifyOutcome::expired:
      return expired_message(identity);
    case VerifyOutcome::not_yet_valid: {
      std::string message = "Your ";
      message += credential_noun(identity);
      message += " is not valid yet";
      if (identity.not_before != 0)
        message += " (valid from " + tls::format_utc(identity.not_before) + ")";
      return message + ".";
    }
    case VerifyOutcome::revoked:
      return "Your certificate has been revoked by the CA that issued it.";
    case VerifyOutcome::unknown_ca:
      return "Your certificate was issued by a CA this server does not trust.";
    case VerifyOutcome::crl_missing:
      return "This server cannot check whether your certificate has been revoked, because it has "
             "no revocation list (CRL) for the CA that issued it.";
    case VerifyOutcome::crl_expired:
      return "This server cannot check whether your certificate has been revoked, because the "
             "revocation list (CRL) of the CA that issued it is out of date.";
    case VerifyOutcome::bad_signature:
      return "A signature in your certificate chain does not verify.";
    case VerifyOutcome::bad_proxy:
      return with_reason("Your proxy certificate is not valid", identity.reason);
    case VerifyOutcome::proxy_forbidden:
      return "This server does not accept proxy certificates; use your certificate instead.";
    case VerifyOutcome::invalid:
      return with_reason("Your certificate was refused", identity.reason);
  }
  return "Your certificate could not be verified.";
}

}  // namespace

std::string_view policy_name(Policy policy) {
  switch (policy) {
    case Policy::none:
      return "none";
    case Policy::optional:
      return "optional";
    case Policy::cert:
      return "cert";
    case Policy::cert_limited_proxy:
      return "cert+limited-proxy";
  }
  return "unknown";
}

Decision decide(Policy policy, const tls::ClientIdentity& identity, std::int64_t now) {
  const bool limited = identity.kind == tls::CredentialKind::limited_proxy;
  switch (policy) {
    case Policy::none:
      return {Denial::allowed, false};
    case Policy::optional:
      return {Denial::allowed, identity.verified() && unexpired(identity, now) && !limited};
    case Policy::cert:
    case Policy::cert_limited_proxy:
      break;
  }
  // Unknown policy values fall through to the strictest rule.
  if (!identity.offered()) return {Denial::no_certificate, false};
  if (!identity.verified()) return {Denial::verification_failed, false};
  if (!unexpired(identity, now)) return {Denial::expired_since, false};
  if (limited && policy != Policy::cert_limited_proxy) return {Denial::limited_proxy, false};
  return {Denial::allowed, true};
}

std::string_view denial_label(Denial denial, const tls::ClientIdentity& identity) {
  switch (denial) {
    case Denial::allowed:
      return "allowed";
    case Denial::no_certificate:
      return "no_certificate";
    case Denial::verification_failed:
      return tls::outcome_label(identity.outcome);
    case Denial::expired_since:
      return "expired";
    case Denial::limited_proxy:
      return "limited_proxy";
    case Denial::unknown_user:
      return "unknown_user";
    case Denial::unusable_identity:
      return "bad_identity";
  }
  return "denied";
}

std::string denial_message(Denial denial, const tls::ClientIdentity& identity) {
  switch (denial) {
    case Denial::allowed:
      return "Access is allowed.";
    case Denial::no_certificate:
      return "This page requires a grid certificate, and your client did not present one.";
    case Denial::verification_failed:
      return verification_message(identity);
    case Denial::expired_since:
      return expired_message(identity);
    case Denial::limited_proxy:
      return "A limited proxy is not accepted here; use a full proxy or your certificate.";
    case Denial::unknown_user:
      return "Your certificate is valid, but its DN is not registered to a CMS account. "
             "Register the certificate with your CMS account in CRIC; it becomes usable here "
             "within minutes of the registration.";
    case Denial::unusable_identity:
      return "Your certificate's name, or your CMS account's entry, contains characters that "
             "cannot be passed on to the service.";
  }
  return "Access is denied.";
}

}  // namespace auth
