// The server side SSL_CTX of one [tls.NAME] profile: certificate chain, key, protocol range,
// ALPN, and the hardening every connection gets (no renegotiation, no compression, server
// cipher preference). Built once at start-up; shared read-only by all workers (SSL_CTX is
// safe to use from several threads once configured).
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "tls/openssl_ptr.h"

namespace tls {

struct ServerContextSettings {
  std::string certificate_file;  // PEM chain, leaf first
  std::string key_file;
  int min_protocol = 0;  // TLS1_2_VERSION ...
  int max_protocol = 0;
  std::vector<std::string> alpn;  // in server preference order
};

class ServerContext {
 public:
  // Returns the context, or a message saying what OpenSSL refused (for the operator).
  static std::variant<ServerContext, std::string> create(const ServerContextSettings& settings);

  SSL_CTX* get() const { return ctx_.get(); }

  // A new SSL object for one accepted connection, or null when OpenSSL is out of memory.
  SslPtr new_session() const;

 private:
  ServerContext(SslCtxPtr ctx, std::unique_ptr<std::string> alpn_wire)
      : ctx_(std::move(ctx)), alpn_wire_(std::move(alpn_wire)) {}
  SslCtxPtr ctx_;
  // ALPN protocols in wire format; the selection callback points at it, so its address must
  // not change when the ServerContext moves (hence the unique_ptr).
  std::unique_ptr<std::string> alpn_wire_;
};

// The protocol and cipher a connection negotiated, for logs.
std::string_view negotiated_protocol(const SSL* ssl);

}  // namespace tls
