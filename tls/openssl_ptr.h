// Owning handles for OpenSSL objects: the only place their *_free functions are named.
#pragma once

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <memory>

namespace tls {

struct SslCtxDeleter {
  void operator()(SSL_CTX* ctx) const noexcept { SSL_CTX_free(ctx); }
};
struct SslDeleter {
  void operator()(SSL* ssl) const noexcept { SSL_free(ssl); }
};
struct SslSessionDeleter {
  void operator()(SSL_SESSION* session) const noexcept { SSL_SESSION_free(session); }
};
struct X509Deleter {
  void operator()(X509* cert) const noexcept { X509_free(cert); }
};
struct PkeyDeleter {
  void operator()(EVP_PKEY* key) const noexcept { EVP_PKEY_free(key); }
};
struct BioDeleter {
  void operator()(BIO* bio) const noexcept { BIO_free(bio); }
};

struct X509StoreDeleter {
  void operator()(X509_STORE* store) const noexcept { X509_STORE_free(store); }
};
struct X509StoreCtxDeleter {
  void operator()(X509_STORE_CTX* ctx) const noexcept { X509_STORE_CTX_free(ctx); }
};
struct X509CrlDeleter {
  void operator()(X509_CRL* crl) const noexcept { X509_CRL_free(crl); }
};
// A STACK_OF(X509) that owns its certificates.
struct X509StackDeleter {
  void operator()(STACK_OF(X509) * stack) const noexcept { sk_X509_pop_free(stack, X509_free); }
};
struct ProxyCertInfoDeleter {
  void operator()(PROXY_CERT_INFO_EXTENSION* info) const noexcept {
    PROXY_CERT_INFO_EXTENSION_free(info);
  }
};
struct GeneralNamesDeleter {
  void operator()(GENERAL_NAMES* names) const noexcept { GENERAL_NAMES_free(names); }
};
struct EvpMdDeleter {
  void operator()(EVP_MD* md) const noexcept { EVP_MD_free(md); }
};
struct EvpCipherDeleter {
  void operator()(EVP_CIPHER* cipher) const noexcept { EVP_CIPHER_free(cipher); }
};
struct X509NameDeleter {
  void operator()(X509_NAME* name) const noexcept { X509_NAME_free(name); }
};
struct X509NameEntryDeleter {
  void operator()(X509_NAME_ENTRY* entry) const noexcept { X509_NAME_ENTRY_free(entry); }
};
struct EvpMdCtxDeleter {
  void operator()(EVP_MD_CTX* ctx) const noexcept { EVP_MD_CTX_free(ctx); }
};
struct AsnIntegerDeleter {
  void operator()(ASN1_INTEGER* integer) const noexcept { ASN1_INTEGER_free(integer); }
};
struct AsnObjectDeleter {
  void operator()(ASN1_OBJECT* object) const noexcept { ASN1_OBJECT_free(object); }
};
// Memory OpenSSL allocated for us (e.g. ASN1_STRING_to_UTF8's output).
struct OpensslFreeDeleter {
  void operator()(void* memory) const noexcept { OPENSSL_free(memory); }
};

using SslCtxPtr = std::unique_ptr<SSL_CTX, SslCtxDeleter>;
using SslPtr = std::unique_ptr<SSL, SslDeleter>;
using SslSessionPtr = std::unique_ptr<SSL_SESSION, SslSessionDeleter>;
using X509Ptr = std::unique_ptr<X509, X509Deleter>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyDeleter>;
using BioPtr = std::unique_ptr<BIO, BioDeleter>;
using X509StorePtr = std::unique_ptr<X509_STORE, X509StoreDeleter>;
using X509StoreCtxPtr = std::unique_ptr<X509_STORE_CTX, X509StoreCtxDeleter>;
using X509CrlPtr = std::unique_ptr<X509_CRL, X509CrlDeleter>;
using X509StackPtr = std::unique_ptr<STACK_OF(X509), X509StackDeleter>;
using ProxyCertInfoPtr = std::unique_ptr<PROXY_CERT_INFO_EXTENSION, ProxyCertInfoDeleter>;
using GeneralNamesPtr = std::unique_ptr<GENERAL_NAMES, GeneralNamesDeleter>;
using EvpMdPtr = std::unique_ptr<EVP_MD, EvpMdDeleter>;
using EvpCipherPtr = std::unique_ptr<EVP_CIPHER, EvpCipherDeleter>;
using X509NamePtr = std::unique_ptr<X509_NAME, X509NameDeleter>;
using X509NameEntryPtr = std::unique_ptr<X509_NAME_ENTRY, X509NameEntryDeleter>;
using EvpMdCtxPtr = std::unique_ptr<EVP_MD_CTX, EvpMdCtxDeleter>;
using AsnIntegerPtr = std::unique_ptr<ASN1_INTEGER, AsnIntegerDeleter>;
using AsnObjectPtr = std::unique_ptr<ASN1_OBJECT, AsnObjectDeleter>;
template <typename T>
using OpensslMemoryPtr = std::unique_ptr<T, OpensslFreeDeleter>;

}  // namespace tls
