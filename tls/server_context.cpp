#include "tls/server_context.h"

#include <openssl/err.h>

namespace tls {
namespace {

std::string openssl_errors() {
  std::string text;
  while (unsigned long code = ERR_get_error()) {
    char buffer[256];
    ERR_error_string_n(code, buffer, sizeof buffer);
    if (!text.empty()) text += "; ";
    text += buffer;
  }
  return text.empty() ? "unknown OpenSSL error" : text;
}

// Picks the first of our protocols the client offers; without a common protocol the
// handshake continues without ALPN (HTTP/1.1 is then assumed), as RFC 7301 allows.
int select_alpn(SSL*, const unsigned char** out, unsigned char* out_length, const unsigned char* in,
                unsigned int in_length, void* arg) noexcept {
  const auto* ours = static_cast<const std::string*>(arg);
  unsigned char* selected = nullptr;
  const int result = SSL_select_next_proto(&selected, out_length,
                                           reinterpret_cast<const unsigned char*>(ours->data()),
                                           static_cast<unsigned int>(ours->size()), in, in_length);
  if (result != OPENSSL_NPN_NEGOTIATED) return SSL_TLSEXT_ERR_NOACK;
  *out = selected;
  return SSL_TLSEXT_ERR_OK;
}

}  // namespace

std::variant<ServerContext, std::string> ServerContext::create(
    const ServerContextSettings& settings) {
  ERR_clear_error();
  SslCtxPtr ctx(SSL_CTX_new(TLS_server_method()));
  if (!ctx) return "cannot create TLS context: " + openssl_errors();

  if (SSL_CTX_set_min_proto_version(ctx.get(), settings.min_protocol) != 1 ||
      SSL_CTX_set_max_proto_version(ctx.get(), settings.max_protocol) != 1) {
    return "unsupported TLS protocol range: " + openssl_errors();
  }
  // Renegotiation lets a client restart the handshake on an established connection (a CPU
  // attack, and an identity change HTTP/2 forbids); compression leaks secrets (CRIME).
  SSL_CTX_set_options(
      ctx.get(), SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  // Mozilla "intermediate" TLS 1.2 suites: forward secret AEAD only.
  if (SSL_CTX_set_cipher_list(ctx.get(),
                              "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                              "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                              "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305") != 1) {
    return "cannot set TLS 1.2 cipher list: " + openssl_errors();
  }
  SSL_CTX_set_session_cache_mode(ctx.get(), SSL_SESS_CACHE_SERVER);
  // Partial writes and a moving write buffer are what bufferevent_openssl relies on.
  SSL_CTX_set_mode(ctx.get(), SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                                  SSL_MODE_RELEASE_BUFFERS);

  if (SSL_CTX_use_certificate_chain_file(ctx.get(), settings.certificate_file.c_str()) != 1) {
    return "cannot load certificate chain '" + settings.certificate_file + "': " + openssl_errors();
  }
  if (SSL_CTX_use_PrivateKey_file(ctx.get(), settings.key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
    return "cannot load private key '" + settings.key_file + "': " + openssl_errors();
  }
  if (SSL_CTX_check_private_key(ctx.get()) != 1) {
    return "private key '" + settings.key_file + "' does not match certificate '" +
           settings.certificate_file + "'";
  }

  auto wire = std::make_unique<std::string>();
  for (const std::string& protocol : settings.alpn) {
    if (protocol.empty() || protocol.size() > 255) return "invalid ALPN protocol name";
    wire->push_back(static_cast<char>(protocol.size()));
    *wire += protocol;
  }
  if (!wire->empty()) SSL_CTX_set_alpn_select_cb(ctx.get(), select_alpn, wire.get());
  return ServerContext(std::move(ctx), std::move(wire));
}

SslPtr ServerContext::new_session() const { return SslPtr(SSL_new(ctx_.get())); }

std::string_view negotiated_protocol(const SSL* ssl) {
  return ssl == nullptr ? std::string_view("-") : std::string_view(SSL_get_version(ssl));
}

}  // namespace tls
