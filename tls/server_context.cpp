#include "tls/server_context.h"

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include <cctype>
#include <cstring>
#include <ctime>

#include "tls/chain_verifier.h"
#include "tls/openssl_util.h"

namespace tls {
namespace {

// A certificate served to clients whose SNI names one of `names`.
struct SniCertificate {
  std::vector<std::string> names;  // lowercase; "*.example.org" matches one label
  X509Ptr leaf;
  X509StackPtr chain;
  PkeyPtr key;
};

// What the callbacks of one SSL_CTX need; owned by that SSL_CTX (ex_data), see the header.
struct ContextState {
  std::string alpn_wire;  // ALPN protocols in wire format
  std::vector<SniCertificate> sni;
  ClientCertMode client_certificates = ClientCertMode::off;
  std::shared_ptr<const Published<TrustStore>> trust;
  std::shared_ptr<const Published<TicketKeys>> ticket_keys;
  std::int64_t session_lifetime = 3600;
};

// Frees a ContextState together with its SSL_CTX (OpenSSL's ex_data destructor).
void free_context_state(void*, void* pointer, CRYPTO_EX_DATA*, int, long, void*) noexcept {
  std::unique_ptr<ContextState> owned(static_cast<ContextState*>(pointer));
}

int context_state_index() {
  static const int index =
      SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, free_context_state);
  return index;
}

int identity_slot_index() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

const ContextState* state_of(const SSL* ssl) {
  return static_cast<const ContextState*>(
      SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), context_state_index()));
}

const EVP_CIPHER* ticket_cipher() {
  static const EvpCipherPtr cipher(EVP_CIPHER_fetch(nullptr, "AES-256-CBC", nullptr));
  return cipher.get();
}

// --- session data: what travels inside the session (cache entry or ticket) ---------------
// [1 byte version][8 bytes authenticated_at, big endian][encode_identity() or nothing]
constexpr unsigned char kSessionDataVersion = 1;

std::string session_data(std::int64_t authenticated_at, std::string_view identity) {
  std::string data(9, '\0');
  data[0] = static_cast<char>(kSessionDataVersion);
  for (int i = 0; i < 8; ++i) {
    data[1 + i] =
        static_cast<char>((static_cast<std::uint64_t>(authenticated_at) >> (56 - 8 * i)) & 0xff);
  }
  data.append(identity);
  return data;
}

struct SessionData {
  std::int64_t authenticated_at = 0;
  std::string_view identity;  // empty: no certificate was presented
};

std::optional<SessionData> read_session_data(SSL_SESSION* session) {
  void* data = nullptr;
  size_t length = 0;
  if (SSL_SESSION_get0_ticket_appdata(session, &data, &length) != 1 || data == nullptr ||
      length < 9) {
    return std::nullopt;
  }
  const auto* bytes = static_cast<const unsigned char*>(data);
  if (bytes[0] != kSessionDataVersion) return std::nullopt;
  std::uint64_t time = 0;
  for (int i = 0; i < 8; ++i) time = (time << 8) | bytes[1 + i];
  return SessionData{static_cast<std::int64_t>(time),
                     std::string_view(reinterpret_cast<const char*>(bytes + 9), length - 9)};
}

// --- callbacks ----------------------------------------------------------------------------

// Picks the first of our protocols the client offers; without a common protocol the
// handshake continues without ALPN (HTTP/1.1 is then assumed), as RFC 7301 allows.
int select_alpn(SSL*, const unsigned char** out, unsigned char* out_length, const unsigned char* in,
                unsigned int in_length, void* arg) noexcept {
  const auto* state = static_cast<const ContextState*>(arg);
  unsigned char* selected = nullptr;
  const int result = SSL_select_next_proto(
      &selected, out_length, reinterpret_cast<const unsigned char*>(state->alpn_wire.data()),
      static_cast<unsigned int>(state->alpn_wire.size()), in, in_length);
  if (result != OPENSSL_NPN_NEGOTIATED) return SSL_TLSEXT_ERR_NOACK;
  *out = selected;
  return SSL_TLSEXT_ERR_OK;
}

bool name_matches(std::string_view pattern, std::string_view host) {
  if (pattern.size() > 2 && pattern[0] == '*' && pattern[1] == '.') {
    const std::size_t dot = host.find('.');
    return dot != std::string_view::npos && dot > 0 && host.substr(dot) == pattern.substr(1);
  }
  return pattern == host;
}

// SNI: serve the certificate naming the requested host; otherwise the default one.
int select_certificate(SSL* ssl, int*, void* arg) noexcept {
  const auto* state = static_cast<const ContextState*>(arg);
  const char* requested = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  if (requested == nullptr) return SSL_TLSEXT_ERR_NOACK;
  std::string host(requested);
  for (char& c : host) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (!host.empty() && host.back() == '.') host.pop_back();
  for (const SniCertificate& entry : state->sni) {
    for (const std::string& name : entry.names) {
      if (!name_matches(name, host)) continue;
      if (SSL_use_cert_and_key(ssl, entry.leaf.get(), entry.key.get(), entry.chain.get(), 1) != 1) {
        ERR_clear_error();
        return SSL_TLSEXT_ERR_ALERT_FATAL;
      }
      return SSL_TLSEXT_ERR_OK;
    }
  }
  return SSL_TLSEXT_ERR_OK;
}

// Replaces OpenSSL's chain verification for client certificates (SSL_CTX_set_cert_verify_
// callback): grid proxies, the reloadable trust store, the verification cache. A failed
// verification does not fail the handshake in `request` mode: the connection goes on
// unauthenticated and the reason reaches the 403 and trouble pages.
int verify_client(X509_STORE_CTX* ctx, void* arg) noexcept {
  const auto* state = static_cast<const ContextState*>(arg);
  auto* ssl =
      static_cast<SSL*>(X509_STORE_CTX_get_ex_data(ctx, SSL_get_ex_data_X509_STORE_CTX_idx()));
  const std::int64_t now = std::time(nullptr);
  const std::shared_ptr<const TrustStore> store = state->trust->get();
  const CachedVerdict verdict =
      verify_client_chain(*store, X509_STORE_CTX_get0_untrusted(ctx), now);
  if (ssl != nullptr) {
    if (auto* slot = static_cast<IdentityPtr*>(SSL_get_ex_data(ssl, identity_slot_index()))) {
      *slot = verdict.identity;
    }
    const std::string data = session_data(now, verdict.session_data);
    SSL_SESSION_set1_ticket_appdata(SSL_get_session(ssl), data.data(), data.size());
  }
  if (verdict.identity->verified() || state->client_certificates != ClientCertMode::require) {
    return 1;
  }
  X509_STORE_CTX_set_error(ctx, verdict.identity->verify_error);
  return 0;
}

// Every ticket records when its client authenticated: see decrypt_ticket.
int generate_ticket(SSL* ssl, void*) noexcept {
  SSL_SESSION* session = SSL_get_session(ssl);
  if (session != nullptr && !read_session_data(session)) {
    const std::string data = session_data(std::time(nullptr), {});
    SSL_SESSION_set1_ticket_appdata(session, data.data(), data.size());
  }
  return 1;
}

// A resumed session carries its first handshake's identity, so a session must not live
// forever: OpenSSL renews a TLS 1.3 session's clock with each new ticket, so the lifetime is
// counted here from the original authentication, and an older ticket means a full handshake
// (and a fresh look at the certificate and CRLs).
SSL_TICKET_RETURN decrypt_ticket(SSL*, SSL_SESSION* session, const unsigned char*, size_t,
                                 SSL_TICKET_STATUS status, void* arg) noexcept {
  const auto* state = static_cast<const ContextState*>(arg);
  switch (status) {
    case SSL_TICKET_SUCCESS:
    case SSL_TICKET_SUCCESS_RENEW:
      break;
    case SSL_TICKET_EMPTY:
    case SSL_TICKET_NO_DECRYPT:
      return SSL_TICKET_RETURN_IGNORE_RENEW;
    default:
      return SSL_TICKET_RETURN_ABORT;
  }
  const auto data = read_session_data(session);
  const std::int64_t now = std::time(nullptr);
  if (!data || data->authenticated_at > now ||
      now - data->authenticated_at >= state->session_lifetime) {
    return SSL_TICKET_RETURN_IGNORE_RENEW;
  }
  return status == SSL_TICKET_SUCCESS_RENEW ? SSL_TICKET_RETURN_USE_RENEW : SSL_TICKET_RETURN_USE;
}

// Encrypts new tickets under the current key; decrypts under any key of the file (an older
// key's ticket is accepted and replaced: return 2).
int ticket_key(SSL* ssl, unsigned char* key_name, unsigned char* iv, EVP_CIPHER_CTX* cipher,
               EVP_MAC_CTX* mac, int encrypt) noexcept {
  const ContextState* state = state_of(ssl);
  if (state == nullptr || ticket_cipher() == nullptr) return -1;
  const std::shared_ptr<const TicketKeys> keys = state->ticket_keys->get();
  const TicketKey* key = nullptr;
  int result = 1;
  if (encrypt == 1) {
    key = &keys->encryption_key();
    std::memcpy(key_name, key->name.data(), key->name.size());
    if (RAND_bytes(iv, EVP_CIPHER_get_iv_length(ticket_cipher())) != 1) return -1;
  } else {
    bool current = false;
    key = keys->find(key_name, current);
    if (key == nullptr) return 0;  // unknown key: full handshake, new ticket
    result = current ? 1 : 2;
  }
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {OSSL_PARAM_construct_octet_string(
                             OSSL_MAC_PARAM_KEY, const_cast<unsigned char*>(key->hmac_key.data()),
                             key->hmac_key.size()),
                         OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                         OSSL_PARAM_construct_end()};
  if (EVP_MAC_CTX_set_params(mac, params) != 1) return -1;
  const int ok =
      encrypt == 1 ? EVP_EncryptInit_ex(cipher, ticket_cipher(), nullptr, key->aes_key.data(), iv)
                   : EVP_DecryptInit_ex(cipher, ticket_cipher(), nullptr, key->aes_key.data(), iv);
  return ok == 1 ? result : -1;
}

// --- building -----------------------------------------------------------------------------

std::variant<SniCertificate, std::string> load_sni_certificate(const CertificateFiles& files) {
  SniCertificate entry;
  const BioPtr cert_bio(BIO_new_file(files.certificate_file.c_str(), "r"));
  if (!cert_bio) return "cannot read certificate '" + files.certificate_file + "'";
  entry.leaf.reset(PEM_read_bio_X509(cert_bio.get(), nullptr, nullptr, nullptr));
  if (!entry.leaf) {
    return "cannot load certificate '" + files.certificate_file + "': " + openssl_errors();
  }
  entry.chain.reset(sk_X509_new_null());
  while (X509Ptr next{PEM_read_bio_X509(cert_bio.get(), nullptr, nullptr, nullptr)}) {
    if (sk_X509_push(entry.chain.get(), next.get()) <= 0) return "out of memory";
    next.release();  // now owned by the stack
  }
  ERR_clear_error();  // the loop ends on "no start line"
  const BioPtr key_bio(BIO_new_file(files.key_file.c_str(), "r"));
  if (!key_bio) return "cannot read private key '" + files.key_file + "'";
  entry.key.reset(PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr));
  if (!entry.key) return "cannot load private key '" + files.key_file + "': " + openssl_errors();
  if (X509_check_private_key(entry.leaf.get(), entry.key.get()) != 1) {
    ERR_clear_error();
    return "private key '" + files.key_file + "' does not match certificate '" +
           files.certificate_file + "'";
  }
  const GeneralNamesPtr names(static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(entry.leaf.get(), NID_subject_alt_name, nullptr, nullptr)));
  for (int i = 0; names && i < sk_GENERAL_NAME_num(names.get()); ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names.get(), i);
    if (name->type != GEN_DNS) continue;
    const ASN1_IA5STRING* dns = name->d.dNSName;
    std::string text(reinterpret_cast<const char*>(ASN1_STRING_get0_data(dns)),
                     static_cast<std::size_t>(ASN1_STRING_length(dns)));
    for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    entry.names.push_back(std::move(text));
  }
  if (entry.names.empty()) {
    return "certificate '" + files.certificate_file +
           "' names no DNS host in its subjectAltName, so no SNI name can select it";
  }
  return entry;
}

std::string session_id_context(const std::string& name) {
  std::string context = "cmsfront/" + name;
  if (context.size() > SSL_MAX_SID_CTX_LENGTH) context.resize(SSL_MAX_SID_CTX_LENGTH);
  return context;
}

std::optional<std::string> configure_client_certificates(SSL_CTX* ctx,
                                                         const ServerContextSettings& settings,
                                                         ContextState& state) {
  if (settings.client_certificates == ClientCertMode::off) return std::nullopt;
  if (!settings.trust) return "client certificates need a trust store";
  int mode = SSL_VERIFY_PEER | SSL_VERIFY_CLIENT_ONCE;
  if (settings.client_certificates == ClientCertMode::require) {
    mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
  }
  SSL_CTX_set_verify(ctx, mode, nullptr);
  SSL_CTX_set_cert_verify_callback(ctx, verify_client, &state);
  if (!settings.client_ca_names_file.empty()) {
    STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(settings.client_ca_names_file.c_str());
    if (names == nullptr) {
      return "cannot load client CA names '" + settings.client_ca_names_file +
             "': " + openssl_errors();
    }
    SSL_CTX_set_client_CA_list(ctx, names);  // takes ownership
  }
  return std::nullopt;
}

}  // namespace

std::variant<std::shared_ptr<const ServerContext>, std::string> ServerContext::create(
    const ServerContextSettings& settings) {
  ERR_clear_error();
  SslCtxPtr ctx(SSL_CTX_new(TLS_server_method()));
  if (!ctx) return "cannot create TLS context: " + openssl_errors();
  auto owned_state = std::make_unique<ContextState>();
  ContextState& state = *owned_state;
  if (SSL_CTX_set_ex_data(ctx.get(), context_state_index(), owned_state.get()) != 1) {
    return "cannot attach TLS context state: " + openssl_errors();
  }
  owned_state.release();  // the SSL_CTX owns it now (free_context_state)

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
  // Partial writes and a moving write buffer are what bufferevent_openssl relies on.
  SSL_CTX_set_mode(ctx.get(), SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                                  SSL_MODE_RELEASE_BUFFERS);

  const CertificateFiles& main = settings.certificate;
  if (SSL_CTX_use_certificate_chain_file(ctx.get(), main.certificate_file.c_str()) != 1) {
    return "cannot load certificate chain '" + main.certificate_file + "': " + openssl_errors();
  }
  if (SSL_CTX_use_PrivateKey_file(ctx.get(), main.key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
    return "cannot load private key '" + main.key_file + "': " + openssl_errors();
  }
  if (SSL_CTX_check_private_key(ctx.get()) != 1) {
    ERR_clear_error();
    return "private key '" + main.key_file + "' does not match certificate '" +
           main.certificate_file + "'";
  }
  for (const CertificateFiles& files : settings.sni_certificates) {
    auto loaded = load_sni_certificate(files);
    if (auto* message = std::get_if<std::string>(&loaded)) return *message;
    state.sni.push_back(std::move(std::get<SniCertificate>(loaded)));
  }
  if (!state.sni.empty()) {
    SSL_CTX_set_tlsext_servername_callback(ctx.get(), select_certificate);
    SSL_CTX_set_tlsext_servername_arg(ctx.get(), &state);
  }

  for (const std::string& protocol : settings.alpn) {
    if (protocol.empty() || protocol.size() > 255) return "invalid ALPN protocol name";
    state.alpn_wire.push_back(static_cast<char>(protocol.size()));
    state.alpn_wire += protocol;
  }
  if (!state.alpn_wire.empty()) SSL_CTX_set_alpn_select_cb(ctx.get(), select_alpn, &state);

  state.client_certificates = settings.client_certificates;
  state.trust = settings.trust;
  if (auto error = configure_client_certificates(ctx.get(), settings, state)) return *error;

  // Sessions: a server-side cache (TLS 1.2 session ids) and tickets under keys shared by all
  // nodes. Both carry the client's identity and both end with session_lifetime.
  if (!settings.ticket_keys) return "session tickets need keys";
  state.ticket_keys = settings.ticket_keys;
  state.session_lifetime = settings.session_lifetime.count();
  const std::string sid_context = session_id_context(settings.name);
  SSL_CTX_set_session_id_context(ctx.get(),
                                 reinterpret_cast<const unsigned char*>(sid_context.data()),
                                 static_cast<unsigned int>(sid_context.size()));
  SSL_CTX_set_timeout(ctx.get(), static_cast<long>(settings.session_lifetime.count()));
  if (settings.session_cache_size == 0) {
    SSL_CTX_set_session_cache_mode(ctx.get(), SSL_SESS_CACHE_OFF);
  } else {
    SSL_CTX_set_session_cache_mode(ctx.get(), SSL_SESS_CACHE_SERVER);
    SSL_CTX_sess_set_cache_size(ctx.get(), static_cast<long>(settings.session_cache_size));
  }
  SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx.get(), ticket_key);
  SSL_CTX_set_session_ticket_cb(ctx.get(), generate_ticket, decrypt_ticket, &state);
  // One TLS 1.3 ticket per handshake (OpenSSL sends two): each costs an encryption.
  SSL_CTX_set_num_tickets(ctx.get(), 1);
  return std::make_shared<const ServerContext>(std::move(ctx));
}

void attach_identity_slot(SSL* ssl, IdentityPtr* slot) {
  SSL_set_ex_data(ssl, identity_slot_index(), slot);
}

IdentityPtr connection_identity(SSL* ssl, const IdentityPtr& verified) {
  if (ssl != nullptr && SSL_session_reused(ssl) == 1) {
    SSL_SESSION* session = SSL_get_session(ssl);
    const auto data = session == nullptr ? std::nullopt : read_session_data(session);
    if (!data || data->identity.empty()) return no_certificate_identity();
    auto identity = decode_identity(data->identity);
    if (!identity) return no_certificate_identity();  // fail closed
    identity->resumed = true;
    return std::make_shared<const ClientIdentity>(std::move(*identity));
  }
  return verified ? verified : no_certificate_identity();
}

std::string_view negotiated_protocol(const SSL* ssl) {
  return ssl == nullptr ? std::string_view("-") : std::string_view(SSL_get_version(ssl));
}

}  // namespace tls
