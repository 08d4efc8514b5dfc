// The per-route authentication decision: a plain function of the route's policy and the
// connection's identity (computed once per handshake by tls/). No I/O, no state.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "tls/client_identity.h"

namespace auth {

// A route's `auth` setting.
enum class Policy : std::uint8_t {
  none,                // public: no identity needed, no cms-auth headers
  optional,            // forwarded either way; the identity is used when it verified
  cert,                // a verified certificate or full proxy; else 403
  cert_limited_proxy,  // as cert, and limited proxies are accepted too
};

std::string_view policy_name(Policy policy);  // "none", "optional", "cert", "cert+limited-proxy"

// Why a request is refused (or `allowed`).
enum class Denial : std::uint8_t {
  allowed,
  no_certificate,       // the route needs a certificate and none was presented
  verification_failed,  // presented but refused at the handshake: see identity.outcome/reason
  expired_since,        // verified at the handshake, but the chain expired since then
  limited_proxy,        // a limited proxy on a route that does not accept one
  unknown_user,         // verified, but the DN is not in the CMS user map (unknown_users = reject)
  unusable_identity,    // the DN or the user's map entry cannot be sent in a header
};

struct Decision {
  Denial denial = Denial::allowed;
  // The identity counts as authenticated for this request (cert routes when allowed; optional
  // routes when the identity verified, is unexpired and, if limited, ... see decide()).
  bool authenticated = false;
  bool allowed() const { return denial == Denial::allowed; }
};

// `now` is unix seconds. On `optional` routes the request is always allowed; it is
// authenticated only when a verified, unexpired, non-limited credential was presented.
Decision decide(Policy policy, const tls::ClientIdentity& identity, std::int64_t now);

// Stable label for JSON and logs: "allowed", "no_certificate", the identity's outcome label
// for verification_failed (e.g. "revoked"), "expired", "limited_proxy", "unknown_user",
// "bad_identity".
std::string_view denial_label(Denial denial, const tls::ClientIdentity& identity);

// One sentence for people, e.g. "Your certificate was revoked by its CA.", "Your certificate
// expired on 2026-11-28 12:00:00 UTC.", "A limited proxy is not accepted here.".
std::string denial_message(Denial denial, const tls::ClientIdentity& identity);

}  // namespace auth
