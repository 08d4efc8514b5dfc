// Verification of a client's certificate chain, grid style: end-entity certificates, RFC 3820
// proxy certificates (proxies of proxies, path length constraints) and legacy Globus proxies
// (subject = issuer + "/CN=proxy" or "/CN=limited proxy", no extension), which OpenSSL only
// accepts once each is flagged as a proxy before verification. On top of OpenSSL's checks it
// refuses what RFC 3820 forbids but OpenSSL lets through: a subjectAltName in a proxy, RFC and
// legacy proxies mixed in one chain, a limited proxy signing a full one, and GT3 draft proxies.
//
// Pure with respect to the connection: certificates in, a ClientIdentity out (with the reason
// on failure). Runs on a worker thread inside the TLS handshake.
#pragma once

#include <openssl/x509.h>

#include <cstdint>

#include "tls/trust_store.h"
#include "tls/verification_cache.h"

namespace tls {

// `presented` is the chain as the client sent it, leaf first (OpenSSL's peer chain). Legacy
// proxies in it get their proxy flag set (the chain belongs to this handshake only). Uses and
// fills `store.cache()`. `now` is unix seconds.
CachedVerdict verify_client_chain(const TrustStore& store, STACK_OF(X509) * presented,
                                  std::int64_t now);

}  // namespace tls
