#include "tls/chain_verifier.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <ctime>
#include <limits>

#include "tls/distinguished_name.h"
#include "tls/openssl_util.h"

namespace tls {
namespace {

// RFC 3820 policy language of a Globus limited proxy.
constexpr const char* kLimitedProxyLanguage = "1.3.6.1.4.1.3536.1.1.1.9";
// proxyCertInfo of the pre-RFC (GT3) drafts.
constexpr const char* kGt3ProxyCertInfo = "1.3.6.1.4.1.3536.1.222";

// Fetched once: implicit fetches (EVP_sha256()) look the algorithm up under a lock each time.
const EVP_MD* sha256() {
  static const EvpMdPtr md(EVP_MD_fetch(nullptr, "SHA256", nullptr));
  return md.get();
}

const ASN1_OBJECT* limited_language() {
  static const AsnObjectPtr object(OBJ_txt2obj(kLimitedProxyLanguage, 1));
  return object.get();
}

const ASN1_OBJECT* gt3_extension() {
  static const AsnObjectPtr object(OBJ_txt2obj(kGt3ProxyCertInfo, 1));
  return object.get();
}

// The verify_error of a chain OpenSSL accepted but one of our proxy rules refused.
constexpr int kOurRule = X509_V_ERR_APPLICATION_VERIFICATION;

struct ChainFacts {
  CredentialKind kind = CredentialKind::certificate;
  int user_index = -1;  // first non-proxy certificate
  bool has_rfc = false;
  bool has_legacy = false;
};

// The last RDN of a legacy proxy's subject, or null.
const char* legacy_proxy_cn(X509* cert) {
  const X509_NAME* subject = X509_get_subject_name(cert);
  const int count = X509_NAME_entry_count(subject);
  if (count < 2) return nullptr;
  const X509_NAME_ENTRY* last = X509_NAME_get_entry(subject, count - 1);
  if (OBJ_obj2nid(X509_NAME_ENTRY_get_object(last)) != NID_commonName) return nullptr;
  const ASN1_STRING* value = X509_NAME_ENTRY_get_data(last);
  const std::string_view text(reinterpret_cast<const char*>(ASN1_STRING_get0_data(value)),
                              static_cast<std::size_t>(ASN1_STRING_length(value)));
  if (text == "proxy") return "proxy";
  if (text == "limited proxy") return "limited proxy";
  return nullptr;
}

// A legacy Globus proxy: no proxyCertInfo, not a CA, and a subject that is exactly its
// issuer's subject plus "/CN=proxy" or "/CN=limited proxy". (Its signature by that issuer is
// checked by the verification itself.)
bool is_legacy_proxy(X509* cert) {
  if (X509_get_ext_by_NID(cert, NID_proxyCertInfo, -1) >= 0) return false;
  if (X509_check_ca(cert) != 0) return false;
  if (legacy_proxy_cn(cert) == nullptr) return false;
  const X509_NAME* subject = X509_get_subject_name(cert);
  const X509NamePtr parent(X509_NAME_dup(subject));
  if (!parent) return false;
  const X509NameEntryPtr removed(
      X509_NAME_delete_entry(parent.get(), X509_NAME_entry_count(parent.get()) - 1));
  return X509_NAME_cmp(parent.get(), X509_get_issuer_name(cert)) == 0;
}

bool is_gt3_proxy(X509* cert) { return X509_get_ext_by_OBJ(cert, gt3_extension(), -1) >= 0; }

// A proxy by OpenSSL's flag (RFC 3820, or legacy once flagged), or by shape when it was not
// flagged (refused early: GT3 drafts, legacy proxies where proxies are off), so that the user
// is still found behind it.
bool is_proxy(X509* cert) {
  return (X509_get_extension_flags(cert) & EXFLAG_PROXY) != 0 || is_gt3_proxy(cert) ||
         is_legacy_proxy(cert);
}

bool is_limited(X509* cert) {
  if (X509_get_ext_by_NID(cert, NID_proxyCertInfo, -1) >= 0) {
    const ProxyCertInfoPtr info(static_cast<PROXY_CERT_INFO_EXTENSION*>(
        X509_get_ext_d2i(cert, NID_proxyCertInfo, nullptr, nullptr)));
    return info && info->proxyPolicy != nullptr &&
           OBJ_cmp(info->proxyPolicy->policyLanguage, limited_language()) == 0;
  }
  const char* cn = legacy_proxy_cn(cert);
  return cn != nullptr && std::string_view(cn) == "limited proxy";
}

bool has_subject_alt_name(X509* cert) {
  return X509_get_ext_by_NID(cert, NID_subject_alt_name, -1) >= 0 ||
         X509_get_ext_by_NID(cert, NID_issuer_alt_name, -1) >= 0;
}

ChainFacts examine(STACK_OF(X509) * chain) {
  ChainFacts facts;
  const int count = sk_X509_num(chain);
  for (int i = 0; i < count; ++i) {
    X509* cert = sk_X509_value(chain, i);
    if (!is_proxy(cert)) {
      facts.user_index = i;
      break;
    }
    if (X509_get_ext_by_NID(cert, NID_proxyCertInfo, -1) >= 0) {
      facts.has_rfc = true;
    } else {
      facts.has_legacy = true;
    }
    if (facts.kind != CredentialKind::limited_proxy) {
      facts.kind = is_limited(cert) ? CredentialKind::limited_proxy : CredentialKind::proxy;
    }
  }
  return facts;
}

bool chain_digest(STACK_OF(X509) * chain, ChainDigest& out) {
  const EVP_MD* md = sha256();
  if (md == nullptr) return false;
  const EvpMdCtxPtr owner(EVP_MD_CTX_new());
  EVP_MD_CTX* ctx = owner.get();
  if (ctx == nullptr) return false;
  bool ok = EVP_DigestInit_ex(ctx, md, nullptr) == 1;
  for (int i = 0; ok && i < sk_X509_num(chain); ++i) {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    ok = X509_digest(sk_X509_value(chain, i), md, digest, &length) == 1 &&
         EVP_DigestUpdate(ctx, digest, length) == 1;
  }
  unsigned int length = 0;
  return ok && EVP_DigestFinal_ex(ctx, out.data(), &length) == 1 && length == out.size();
}

VerifyOutcome outcome_for(int error, bool proxies_allowed) {
  switch (error) {
    case X509_V_OK:
      return VerifyOutcome::ok;
    case X509_V_ERR_CERT_HAS_EXPIRED:
      return VerifyOutcome::expired;
    case X509_V_ERR_CERT_NOT_YET_VALID:
      return VerifyOutcome::not_yet_valid;
    case X509_V_ERR_CERT_REVOKED:
      return VerifyOutcome::revoked;
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
      return VerifyOutcome::unknown_ca;
    case X509_V_ERR_UNABLE_TO_GET_CRL:
      return VerifyOutcome::crl_missing;
    case X509_V_ERR_CRL_HAS_EXPIRED:
      return VerifyOutcome::crl_expired;
    case X509_V_ERR_CERT_SIGNATURE_FAILURE:
    case X509_V_ERR_UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY:
    case X509_V_ERR_UNABLE_TO_DECRYPT_CERT_SIGNATURE:
      return VerifyOutcome::bad_signature;
    case X509_V_ERR_PROXY_PATH_LENGTH_EXCEEDED:
    case X509_V_ERR_PROXY_SUBJECT_NAME_VIOLATION:
      return VerifyOutcome::bad_proxy;
    case X509_V_ERR_PROXY_CERTIFICATES_NOT_ALLOWED:
      return proxies_allowed ? VerifyOutcome::bad_proxy : VerifyOutcome::proxy_forbidden;
    default:
      return VerifyOutcome::invalid;
  }
}

// Fills DNs, kind and validity from `chain` (verified, or as presented when it failed).
void describe(ClientIdentity& identity, STACK_OF(X509) * chain) {
  const ChainFacts facts = examine(chain);
  identity.kind = facts.kind;
  X509* leaf = sk_X509_value(chain, 0);
  identity.leaf_dn = slash_form(X509_get_subject_name(leaf));
  if (facts.user_index >= 0) {
    X509* user = sk_X509_value(chain, facts.user_index);
    identity.user_dn = slash_form(X509_get_subject_name(user));
    identity.issuer_dn = slash_form(X509_get_issuer_name(user));
  }
  std::int64_t not_before = 0;
  std::int64_t not_after = std::numeric_limits<std::int64_t>::max();
  for (int i = 0; i < sk_X509_num(chain); ++i) {
    X509* cert = sk_X509_value(chain, i);
    not_before = std::max(not_before, unix_time(X509_get0_notBefore(cert)));
    not_after = std::min(not_after, unix_time(X509_get0_notAfter(cert)));
  }
  identity.not_before = not_before;
  identity.not_after = not_after;
}

void fail(ClientIdentity& identity, VerifyOutcome outcome, int error, int depth,
          std::string reason) {
  identity.outcome = outcome;
  identity.verify_error = error;
  identity.error_depth = depth;
  identity.reason = std::move(reason);
}

// RFC 3820 rules OpenSSL does not enforce, checked on a chain OpenSSL accepted.
bool check_proxy_rules(ClientIdentity& identity, STACK_OF(X509) * chain) {
  const ChainFacts facts = examine(chain);
  if (facts.has_rfc && facts.has_legacy) {
    fail(identity, VerifyOutcome::bad_proxy, kOurRule, 0,
         "the chain mixes RFC 3820 and legacy Globus proxies");
    return false;
  }
  const int last_proxy = facts.user_index < 0 ? sk_X509_num(chain) - 1 : facts.user_index - 1;
  bool limited_above = false;
  for (int i = last_proxy; i >= 0; --i) {  // from the user's first proxy down to the leaf
    X509* cert = sk_X509_value(chain, i);
    const bool limited = is_limited(cert);
    if (limited_above && !limited) {
      fail(identity, VerifyOutcome::bad_proxy, kOurRule, i,
           "a limited proxy signed the full proxy at depth " + std::to_string(i));
      return false;
    }
    limited_above = limited_above || limited;
  }
  return true;
}

std::string failure_reason(X509_STORE_CTX* ctx, int error, int depth) {
  std::string reason = X509_verify_cert_error_string(error);
  X509* cert = X509_STORE_CTX_get_current_cert(ctx);
  if (cert != nullptr && error == X509_V_ERR_CERT_HAS_EXPIRED) {
    reason += " on " + format_utc(unix_time(X509_get0_notAfter(cert)));
  } else if (cert != nullptr && error == X509_V_ERR_CERT_NOT_YET_VALID) {
    reason += " until " + format_utc(unix_time(X509_get0_notBefore(cert)));
  }
  reason += " (depth " + std::to_string(depth);
  if (cert != nullptr) reason += ": " + slash_form(X509_get_subject_name(cert));
  reason += ")";
  return reason;
}

CachedVerdict finish(ClientIdentity identity) {
  CachedVerdict verdict;
  verdict.session_data = encode_identity(identity);
  verdict.identity = std::make_shared<const ClientIdentity>(std::move(identity));
  return verdict;
}

}  // namespace

CachedVerdict verify_client_chain(const TrustStore& store, STACK_OF(X509) * presented,
                                  std::int64_t now) {
  if (presented == nullptr || sk_X509_num(presented) == 0) {
    return CachedVerdict{no_certificate_identity(), encode_identity(*no_certificate_identity())};
  }
  ChainDigest digest{};
  const bool cacheable = chain_digest(presented, digest);
  CachedVerdict cached;
  if (cacheable && store.cache().find(digest, now, cached)) return cached;

  const bool proxies_allowed = store.settings().allow_proxies;
  ClientIdentity identity;
  for (int i = 0; i < sk_X509_num(presented); ++i) {
    X509* cert = sk_X509_value(presented, i);
    if (is_gt3_proxy(cert)) {
      describe(identity, presented);
      fail(identity, VerifyOutcome::bad_proxy, kOurRule, i,
           "GT3 draft proxy certificates are not accepted (depth " + std::to_string(i) + ")");
      return finish(std::move(identity));
    }
    const bool legacy = is_legacy_proxy(cert);
    // OpenSSL marks an RFC proxy with a subjectAltName invalid and then reports an unknown
    // issuer; say what is wrong instead.
    if ((legacy || X509_get_ext_by_NID(cert, NID_proxyCertInfo, -1) >= 0) &&
        has_subject_alt_name(cert)) {
      describe(identity, presented);
      fail(identity, VerifyOutcome::bad_proxy, kOurRule, i,
           "proxy certificate at depth " + std::to_string(i) + " has a subjectAltName");
      return finish(std::move(identity));
    }
    if (legacy) {
      if (!proxies_allowed) {
        describe(identity, presented);
        fail(identity, VerifyOutcome::proxy_forbidden, X509_V_ERR_PROXY_CERTIFICATES_NOT_ALLOWED, i,
             "proxy certificates are not accepted by this server");
        return finish(std::move(identity));
      }
      X509_set_proxy_flag(cert);
    }
  }

  const X509StoreCtxPtr ctx(X509_STORE_CTX_new());
  if (!ctx || X509_STORE_CTX_init(ctx.get(), store.x509_store(), sk_X509_value(presented, 0),
                                  presented) != 1) {
    describe(identity, presented);
    fail(identity, VerifyOutcome::invalid, X509_V_ERR_OUT_OF_MEM, -1,
         "cannot set up verification: " + openssl_errors());
    return finish(std::move(identity));
  }
  // As OpenSSL's own TLS server does: a client certificate must be fit for client auth.
  X509_STORE_CTX_set_default(ctx.get(), "ssl_client");
  // The store's verify callback reads the CRL policy from here.
  X509_STORE_CTX_set_app_data(ctx.get(), const_cast<TrustStore*>(&store));
  const int verified = X509_verify_cert(ctx.get());
  ERR_clear_error();
  if (verified != 1) {
    const int error = X509_STORE_CTX_get_error(ctx.get());
    const int depth = X509_STORE_CTX_get_error_depth(ctx.get());
    describe(identity, presented);
    const int code = error == X509_V_OK ? X509_V_ERR_UNSPECIFIED : error;
    fail(identity, outcome_for(code, proxies_allowed), code, depth,
         failure_reason(ctx.get(), code, depth));
    return finish(std::move(identity));
  }
  STACK_OF(X509)* chain = X509_STORE_CTX_get0_chain(ctx.get());
  describe(identity, chain);
  // The verdict holds while every CRL it was checked against does: those of the CAs that
  // issued the chain's non-proxy certificates.
  std::int64_t expires = std::numeric_limits<std::int64_t>::max();
  for (int i = 0; i < sk_X509_num(chain); ++i) {
    X509* cert = sk_X509_value(chain, i);
    if (!is_proxy(cert)) {
      expires = std::min(expires, store.crl_deadline_for(X509_get_issuer_name(cert)));
    }
  }
  identity.outcome = VerifyOutcome::ok;
  if (identity.kind != CredentialKind::certificate && !check_proxy_rules(identity, chain)) {
    return finish(std::move(identity));
  }
  CachedVerdict verdict = finish(std::move(identity));
  if (cacheable) {
    store.cache().insert(digest, verdict, std::min(verdict.identity->not_after, expires), now);
  }
  return verdict;
}

}  // namespace tls
