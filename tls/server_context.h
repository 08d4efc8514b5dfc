// The server side SSL_CTX of one [tls.NAME] profile: certificate chains (a default one and
// more chosen by SNI), key, protocol range, ALPN, client certificate verification against the
// profile's trust store, session cache and tickets, and the hardening every connection gets
// (no renegotiation, no compression, server cipher preference).
//
// Built off the event loops (at start and by the reloader when a certificate changes) and
// shared read-only by all workers: an SSL_CTX is safe to use from several threads once
// configured. The state its callbacks need (ALPN list, SNI certificates, trust store and
// ticket key slots) is owned by the SSL_CTX itself, so it lives exactly as long as the last
// connection made from it, even after a reload has replaced this context.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "tls/client_identity.h"
#include "tls/openssl_ptr.h"
#include "tls/published.h"
#include "tls/ticket_keys.h"
#include "tls/trust_store.h"

namespace tls {

enum class ClientCertMode : std::uint8_t { off, request, require };

struct CertificateFiles {
  std::string certificate_file;  // PEM chain, leaf first
  std::string key_file;
};

struct ServerContextSettings {
  std::string name;  // the profile name: session id context, messages
  CertificateFiles certificate;
  std::vector<CertificateFiles> sni_certificates;  // chosen by the names in their SAN
  int min_protocol = 0;                            // TLS1_2_VERSION ...
  int max_protocol = 0;
  std::vector<std::string> alpn;  // in server preference order

  ClientCertMode client_certificates = ClientCertMode::off;
  std::shared_ptr<const Published<TrustStore>> trust;  // required unless off
  std::string client_ca_names_file;                    // empty: the CertificateRequest names none

  std::shared_ptr<const Published<TicketKeys>> ticket_keys;  // required
  std::chrono::seconds session_lifetime{3600};
  std::size_t session_cache_size = 20480;
};

class ServerContext {
 public:
  // Returns the context, or a message saying what OpenSSL refused (for the operator).
  static std::variant<std::shared_ptr<const ServerContext>, std::string> create(
      const ServerContextSettings& settings);

  explicit ServerContext(SslCtxPtr ctx) : ctx_(std::move(ctx)) {}

  SSL_CTX* get() const { return ctx_.get(); }

  // A new SSL object for one accepted connection, or null when OpenSSL is out of memory.
  SslPtr new_session() const { return SslPtr(SSL_new(ctx_.get())); }

 private:
  SslCtxPtr ctx_;
};

// Where the handshake of `ssl` leaves the client's identity when it verifies a certificate.
// The slot belongs to the connection and must outlive the handshake.
void attach_identity_slot(SSL* ssl, IdentityPtr* slot);

// After the handshake: the connection's identity. On a resumed session it is the one stored
// with the session (marked resumed); otherwise what the verification left in the slot, or the
// "no certificate" identity.
IdentityPtr connection_identity(SSL* ssl, const IdentityPtr& verified);

// The protocol a connection negotiated, for logs.
std::string_view negotiated_protocol(const SSL* ssl);

}  // namespace tls
