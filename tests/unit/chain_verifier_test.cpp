// Unit tests for TrustStore::load and verify_client_chain, against a small grid PKI made here
// with the OpenSSL API (EC P-256, in memory, a few milliseconds): CAs in an IGTF-style hashed
// directory, a CRL, users, RFC 3820 and legacy Globus proxies, and the chains RFC 3820 forbids.
// Every certificate is kept as DER and parsed afresh for each verification, as a handshake
// would (verify_client_chain flags legacy proxies in the chain it is given).
#include "tls/chain_verifier.h"

#include <gtest/gtest.h>
#include <openssl/conf.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <limits>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "tls/distinguished_name.h"
#include "tls/openssl_ptr.h"
#include "tls/trust_store.h"

namespace tls {
namespace {

// Handles only these tests need, freed through the same kind of deleter as tls/openssl_ptr.h.
template <auto Free>
struct FreeWith {
  template <typename T>
  void operator()(T* object) const noexcept {
    Free(object);
  }
};
using AsnTimePtr = std::unique_ptr<ASN1_TIME, FreeWith<ASN1_TIME_free>>;
using RevokedPtr = std::unique_ptr<X509_REVOKED, FreeWith<X509_REVOKED_free>>;
using ExtensionPtr = std::unique_ptr<X509_EXTENSION, FreeWith<X509_EXTENSION_free>>;
using ConfPtr = std::unique_ptr<CONF, FreeWith<NCONF_free>>;

constexpr std::int64_t kHour = 3600;
constexpr std::int64_t kDay = 24 * kHour;
constexpr const char* kLimitedLanguage = "1.3.6.1.4.1.3536.1.1.1.9";

// ---- Making certificates --------------------------------------------------------------------

using Rdns = std::vector<std::pair<std::string, std::string>>;
// (name or dotted OID, value) as in openssl.cnf: {"keyUsage", "critical,digitalSignature"}.
using Extensions = std::vector<std::pair<std::string, std::string>>;

X509NamePtr make_name(const Rdns& rdns) {
  X509NamePtr name(X509_NAME_new());
  for (const auto& [field, value] : rdns) {
    EXPECT_EQ(X509_NAME_add_entry_by_txt(name.get(), field.c_str(), MBSTRING_UTF8,
                                         reinterpret_cast<const unsigned char*>(value.c_str()), -1,
                                         -1, 0),
              1);
  }
  return name;
}

// The subject of a proxy of `issuer`: the issuer's subject plus one CN.
X509NamePtr proxy_name(const X509* issuer, const std::string& common_name) {
  X509NamePtr name(X509_NAME_dup(X509_get_subject_name(issuer)));
  EXPECT_EQ(X509_NAME_add_entry_by_txt(name.get(), "CN", MBSTRING_UTF8,
                                       reinterpret_cast<const unsigned char*>(common_name.c_str()),
                                       -1, -1, 0),
            1);
  return name;
}

X509Ptr parse_der(const std::string& der) {
  const auto* data = reinterpret_cast<const unsigned char*>(der.data());
  return X509Ptr(d2i_X509(nullptr, &data, static_cast<long>(der.size())));
}

struct Credential {
  PkeyPtr key;
  X509Ptr cert;  // parsed back from `der`
  std::string der;
  std::int64_t not_after = 0;
  std::string dn;  // slash form of the subject
};

struct CertSpec {
  X509NamePtr subject;
  const Credential* issuer = nullptr;  // null: self-signed
  long serial = 1;
  std::int64_t not_before = -kHour;  // relative to `now`
  std::int64_t not_after = 365 * kDay;
  Extensions extensions;
};

Credential issue(const CertSpec& spec, std::int64_t now) {
  Credential out;
  out.key.reset(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  const X509Ptr cert(X509_new());
  EXPECT_TRUE(out.key && cert);
  if (!out.key || !cert) return out;
  X509_set_version(cert.get(), X509_VERSION_3);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), spec.serial);
  X509_set_subject_name(cert.get(), spec.subject.get());
  X509* issuer = spec.issuer != nullptr ? spec.issuer->cert.get() : cert.get();
  X509_set_issuer_name(cert.get(), X509_get_subject_name(issuer));
  ASN1_TIME_set(X509_getm_notBefore(cert.get()), static_cast<time_t>(now + spec.not_before));
  ASN1_TIME_set(X509_getm_notAfter(cert.get()), static_cast<time_t>(now + spec.not_after));
  X509_set_pubkey(cert.get(), out.key.get());
  X509V3_CTX context;
  X509V3_set_ctx(&context, issuer, cert.get(), nullptr, nullptr, 0);
  // proxyCertInfo is parsed by an "r2i" method, which OpenSSL runs only with a config database
  // to look sections up in (an empty one will do).
  const ConfPtr conf(NCONF_new(nullptr));
  X509V3_set_nconf(&context, conf.get());
  for (const auto& [type, value] : spec.extensions) {
    const ExtensionPtr extension(
        X509V3_EXT_nconf(conf.get(), &context, type.c_str(), value.c_str()));
    EXPECT_TRUE(extension) << type << " = " << value;
    if (extension) X509_add_ext(cert.get(), extension.get(), -1);
  }
  EVP_PKEY* signer = spec.issuer != nullptr ? spec.issuer->key.get() : out.key.get();
  EXPECT_GT(X509_sign(cert.get(), signer, EVP_sha256()), 0);
  unsigned char* der = nullptr;
  const int length = i2d_X509(cert.get(), &der);
  const OpensslMemoryPtr<unsigned char> der_owner(der);
  EXPECT_GT(length, 0);
  if (length <= 0) return out;
  out.der.assign(reinterpret_cast<const char*>(der), static_cast<std::size_t>(length));
  out.cert = parse_der(out.der);
  out.not_after = now + spec.not_after;
  out.dn = slash_form(X509_get_subject_name(out.cert.get()));
  return out;
}

const Extensions kCaExtensions = {
    {"basicConstraints", "critical,CA:TRUE"},
    {"keyUsage", "critical,keyCertSign,cRLSign"},
    {"subjectKeyIdentifier", "hash"},
};
const Extensions kUserExtensions = {
    {"basicConstraints", "critical,CA:FALSE"},
    {"keyUsage", "critical,digitalSignature,keyEncipherment"},
    {"extendedKeyUsage", "clientAuth"},
};
// What grid-proxy-init puts in every proxy besides proxyCertInfo.
constexpr const char* kProxyKeyUsage = "critical,digitalSignature,keyEncipherment";

Credential make_ca(const Rdns& subject, std::int64_t now) {
  return issue({.subject = make_name(subject),
                .serial = 1,
                .not_before = -kDay,
                .not_after = 3650 * kDay,
                .extensions = kCaExtensions},
               now);
}

Credential make_user(const Credential& ca, const Rdns& subject, long serial, std::int64_t now,
                     std::int64_t not_before = -kDay, std::int64_t not_after = 365 * kDay) {
  return issue({.subject = make_name(subject),
                .issuer = &ca,
                .serial = serial,
                .not_before = not_before,
                .not_after = not_after,
                .extensions = kUserExtensions},
               now);
}

// An RFC 3820 proxy of `issuer` (subject: issuer + "/CN=<serial>") with `language`.
Credential make_rfc_proxy(const Credential& issuer, long serial, const std::string& language,
                          std::int64_t now, Extensions extra = {}) {
  Extensions extensions = {
      {"keyUsage", kProxyKeyUsage},
      {"proxyCertInfo", "critical,language:" + language},
  };
  extensions.insert(extensions.end(), extra.begin(), extra.end());
  return issue({.subject = proxy_name(issuer.cert.get(), std::to_string(serial)),
                .issuer = &issuer,
                .serial = serial,
                .not_before = -5 * 60,
                .not_after = 12 * kHour,
                .extensions = std::move(extensions)},
               now);
}

// A legacy Globus proxy: subject = issuer + "/CN=proxy" (or "limited proxy"), no extension
// that says so.
Credential make_legacy_proxy(const Credential& issuer, const std::string& common_name, long serial,
                             std::int64_t now, Extensions extra = {}) {
  Extensions extensions = {{"keyUsage", kProxyKeyUsage}};
  extensions.insert(extensions.end(), extra.begin(), extra.end());
  return issue({.subject = proxy_name(issuer.cert.get(), common_name),
                .issuer = &issuer,
                .serial = serial,
                .not_before = -5 * 60,
                .not_after = 12 * kHour,
                .extensions = std::move(extensions)},
               now);
}

X509CrlPtr make_crl(const Credential& ca, std::int64_t last_update, std::int64_t next_update,
                    const std::vector<long>& revoked_serials) {
  X509CrlPtr crl(X509_CRL_new());
  const AsnTimePtr last(ASN1_TIME_set(nullptr, static_cast<time_t>(last_update)));
  const AsnTimePtr next(ASN1_TIME_set(nullptr, static_cast<time_t>(next_update)));
  EXPECT_TRUE(crl && last && next);
  if (!crl || !last || !next) return crl;
  X509_CRL_set_version(crl.get(), X509_CRL_VERSION_2);
  X509_CRL_set_issuer_name(crl.get(), X509_get_subject_name(ca.cert.get()));
  X509_CRL_set1_lastUpdate(crl.get(), last.get());
  X509_CRL_set1_nextUpdate(crl.get(), next.get());
  for (const long serial : revoked_serials) {
    RevokedPtr revoked(X509_REVOKED_new());
    const AsnIntegerPtr number(ASN1_INTEGER_new());
    ASN1_INTEGER_set(number.get(), serial);
    X509_REVOKED_set_serialNumber(revoked.get(), number.get());
    X509_REVOKED_set_revocationDate(revoked.get(), last.get());
    if (X509_CRL_add0_revoked(crl.get(), revoked.get()) == 1) revoked.release();
  }
  X509_CRL_sort(crl.get());
  EXPECT_GT(X509_CRL_sign(crl.get(), ca.key.get(), EVP_sha256()), 0);
  return crl;
}

// ---- Writing the CA directory ---------------------------------------------------------------

std::string hash_name(unsigned long hash, const std::string& suffix) {
  char name[32];
  std::snprintf(name, sizeof name, "%08lx.%s", hash, suffix.c_str());
  return name;
}

std::string ca_file_name(const Credential& ca, const std::string& suffix) {
  return hash_name(X509_subject_name_hash(ca.cert.get()), suffix);
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream file(path, std::ios::binary | std::ios::trunc);
  file << text;
  EXPECT_TRUE(file.good()) << path;
}

void write_cert(const std::string& path, const Credential& credential) {
  const BioPtr bio(BIO_new_file(path.c_str(), "w"));
  ASSERT_TRUE(bio) << path;
  EXPECT_EQ(PEM_write_bio_X509(bio.get(), credential.cert.get()), 1);
}

void write_crl(const std::string& path, X509_CRL* crl) {
  const BioPtr bio(BIO_new_file(path.c_str(), "w"));
  ASSERT_TRUE(bio) << path;
  EXPECT_EQ(PEM_write_bio_X509_CRL(bio.get(), crl), 1);
}

// The PKI every test of this file uses; made once per test suite, in a temporary directory.
struct GridPki {
  std::int64_t now = std::time(nullptr);
  std::string root;
  std::string ca_dir;     // ca (with CRL), ca_without_crl, and the files an IGTF dir also has
  std::string stale_dir;  // ca, with a CRL whose nextUpdate passed 2 hours ago
  std::int64_t crl_last_update = now - kHour;
  std::int64_t crl_next_update = now + 7 * kDay;
  std::int64_t stale_next_update = now - 2 * kHour;

  Credential ca = make_ca({{"DC", "org"}, {"DC", "example"}, {"CN", "Example Grid CA"}}, now);
  Credential ca_without_crl =
      make_ca({{"DC", "org"}, {"DC", "example"}, {"CN", "Example CA Without CRL"}}, now);
  Credential unknown_ca = make_ca({{"DC", "org"}, {"DC", "elsewhere"}, {"CN", "Unknown CA"}}, now);

  Credential user = make_user(ca,
                              {{"DC", "ch"},
                               {"DC", "cern"},
                               {"OU", "Organic Units"},
                               {"OU", "Users"},
                               {"CN", "jdoe"},
                               {"CN", "123456"},
                               {"CN", "John Doe"}},
                              0x1001, now);
  Credential revoked_user =
      make_user(ca, {{"DC", "ch"}, {"DC", "cern"}, {"CN", "revoked"}}, 0x1002, now);
  Credential expired_user = make_user(ca, {{"DC", "ch"}, {"DC", "cern"}, {"CN", "expired"}}, 0x1003,
                                      now, -30 * kDay, -kDay);
  Credential user_of_ca_without_crl =
      make_user(ca_without_crl, {{"DC", "org"}, {"CN", "no crl"}}, 0x2001, now);
  Credential user_of_unknown_ca =
      make_user(unknown_ca, {{"DC", "org"}, {"CN", "stranger"}}, 0x3001, now);

  Credential rfc_proxy = make_rfc_proxy(user, 1234567890, "id-ppl-inheritAll", now);
  Credential rfc_limited = make_rfc_proxy(user, 1234567891, kLimitedLanguage, now);
  Credential legacy_proxy = make_legacy_proxy(user, "proxy", 0x4001, now);
  Credential legacy_limited = make_legacy_proxy(user, "limited proxy", 0x4002, now);
  Credential rfc_proxy_with_san = make_rfc_proxy(user, 1234567892, "id-ppl-inheritAll", now,
                                                 {{"subjectAltName", "DNS:jdoe.example.org"}});
  Credential legacy_proxy_with_san =
      make_legacy_proxy(user, "proxy", 0x4003, now, {{"subjectAltName", "email:john.doe@cern.ch"}});
  Credential rfc_under_legacy = make_rfc_proxy(legacy_proxy, 1234567893, "id-ppl-inheritAll", now);
  Credential full_under_limited = make_rfc_proxy(rfc_limited, 1234567894, "id-ppl-inheritAll", now);
  // A proxy of the pre-RFC GT3 drafts: its own proxyCertInfo OID, which OpenSSL does not know.
  Credential gt3_proxy = issue({.subject = proxy_name(user.cert.get(), "1234567896"),
                                .issuer = &user,
                                .serial = 1234567896,
                                .not_before = -5 * 60,
                                .not_after = 12 * kHour,
                                .extensions = {{"keyUsage", kProxyKeyUsage},
                                               {"1.3.6.1.4.1.3536.1.222", "critical,DER:30:00"}}},
                               now);
  Credential proxy_of_revoked_user =
      make_rfc_proxy(revoked_user, 1234567895, "id-ppl-inheritAll", now);

  GridPki() {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "cmsfront-tls-pki-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) {
      ADD_FAILURE() << "mkdtemp failed";
      return;
    }
    root = pattern;
    ca_dir = root + "/certificates";
    stale_dir = root + "/stale";
    std::filesystem::create_directory(ca_dir);
    std::filesystem::create_directory(stale_dir);

    const std::string ca_file = ca_file_name(ca, "0");
    write_cert(ca_dir + "/" + ca_file, ca);
    // The same CA under its pre-1.0 hash, as IGTF bundles ship it.
    const std::string old_name = hash_name(X509_subject_name_hash_old(ca.cert.get()), "0");
    std::filesystem::create_symlink(ca_file, ca_dir + "/" + old_name);
    write_cert(ca_dir + "/" + ca_file_name(ca_without_crl, "0"), ca_without_crl);
    for (const char* suffix : {"signing_policy", "namespaces", "info", "crl_url"}) {
      write_text(ca_dir + "/" + ca_file_name(ca, suffix), "# not a certificate\n");
    }
    write_text(ca_dir + "/README", "IGTF accredited CAs\n");
    write_text(ca_dir + "/" + ca_file_name(ca, "1"), "garbage, not PEM\n");
    const X509CrlPtr crl = make_crl(ca, crl_last_update, crl_next_update,
                                    {0x1002, 0x7777});  // revoked_user and someone else
    write_crl(ca_dir + "/" + ca_file_name(ca, "r0"), crl.get());

    write_cert(stale_dir + "/" + ca_file, ca);
    const X509CrlPtr stale = make_crl(ca, now - 2 * kDay, stale_next_update, {});
    write_crl(stale_dir + "/" + ca_file_name(ca, "r0"), stale.get());
  }
  ~GridPki() {
    std::error_code ignored;
    if (!root.empty()) std::filesystem::remove_all(root, ignored);
  }
  GridPki(const GridPki&) = delete;
  GridPki& operator=(const GridPki&) = delete;
};

class GridPkiTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { pki_ = std::make_unique<GridPki>(); }
  static void TearDownTestSuite() { pki_.reset(); }

  static const GridPki& pki() { return *pki_; }

  static std::shared_ptr<const TrustStore> load(const std::string& dir,
                                                CrlMode crl = CrlMode::require,
                                                bool allow_proxies = true) {
    TrustStoreSettings settings;
    settings.ca_dir = dir;
    settings.crl = crl;
    settings.allow_proxies = allow_proxies;
    return TrustStore::load(settings, 1);
  }
  static std::shared_ptr<const TrustStore> load_with_grace(std::chrono::seconds grace) {
    TrustStoreSettings settings;
    settings.ca_dir = pki().stale_dir;
    settings.crl_grace = grace;
    return TrustStore::load(settings, 1);
  }

  // Verifies `chain` (leaf first, leaf included) as presented by a client: parsed afresh.
  static CachedVerdict verify(const TrustStore& store,
                              std::initializer_list<const Credential*> chain) {
    const X509StackPtr presented(sk_X509_new_null());
    for (const Credential* credential : chain) {
      X509Ptr cert = parse_der(credential->der);
      EXPECT_TRUE(cert);
      if (cert && sk_X509_push(presented.get(), cert.get()) > 0) cert.release();
    }
    return verify_client_chain(store, presented.get(), std::time(nullptr));
  }
  static IdentityPtr identity(const TrustStore& store,
                              std::initializer_list<const Credential*> chain) {
    CachedVerdict verdict = verify(store, chain);
    EXPECT_NE(verdict.identity, nullptr);
    if (verdict.identity != nullptr) {
      EXPECT_EQ(verdict.session_data, encode_identity(*verdict.identity));
    }
    return verdict.identity;
  }

 private:
  static std::unique_ptr<GridPki> pki_;
};

std::unique_ptr<GridPki> GridPkiTest::pki_;

// ---- TrustStore -----------------------------------------------------------------------------

using TrustStoreTest = GridPkiTest;

TEST_F(TrustStoreTest, LoadsEachCaOnceAndIgnoresTheOtherFiles) {
  const auto store = load(pki().ca_dir);
  ASSERT_NE(store, nullptr);
  EXPECT_TRUE(store->directory_readable());
  EXPECT_NE(store->x509_store(), nullptr);
  EXPECT_EQ(store->generation(), 1u);
  EXPECT_EQ(store->settings().ca_dir, pki().ca_dir);
  // ca + its old-hash symlink, ca_without_crl; .signing_policy & co. are not even opened.
  EXPECT_EQ(store->ca_count(), 2u);
}

TEST_F(TrustStoreTest, ReportsAGarbageCaFileWithoutFailing) {
  const auto store = load(pki().ca_dir);
  ASSERT_EQ(store->problems().size(), 1u);
  EXPECT_NE(store->problems()[0].find(ca_file_name(pki().ca, "1")), std::string::npos)
      << store->problems()[0];
  EXPECT_EQ(store->ca_count(), 2u);
  EXPECT_TRUE(identity(*store, {&pki().user})->verified());
}

TEST_F(TrustStoreTest, DescribesEachCrl) {
  const auto store = load(pki().ca_dir);
  ASSERT_EQ(store->crls().size(), 1u);
  const CrlInfo& crl = store->crls()[0];
  EXPECT_EQ(crl.file, pki().ca_dir + "/" + ca_file_name(pki().ca, "r0"));
  EXPECT_EQ(crl.issuer, "/DC=org/DC=example/CN=Example Grid CA");
  EXPECT_EQ(crl.last_update, pki().crl_last_update);
  EXPECT_EQ(crl.next_update, pki().crl_next_update);
  EXPECT_EQ(crl.revoked, 2u);
  EXPECT_EQ(store->crl_deadline_for(X509_get_subject_name(pki().ca.cert.get())),
            pki().crl_next_update + 24 * kHour);
}

TEST_F(TrustStoreTest, LoadsNoCrlWhenCrlCheckingIsOff) {
  const auto store = load(pki().ca_dir, CrlMode::off);
  EXPECT_TRUE(store->crls().empty());
  EXPECT_EQ(store->crl_deadline_for(X509_get_subject_name(pki().ca.cert.get())),
            std::numeric_limits<std::int64_t>::max());
  EXPECT_EQ(store->ca_count(), 2u);
}

TEST_F(TrustStoreTest, ReportsAnUnreadableDirectoryWithoutFailing) {
  std::vector<std::string> unreadable = {pki().root + "/missing", pki().root + "/plain-file"};
  write_text(pki().root + "/plain-file", "not a directory\n");
  if (::geteuid() != 0) {  // root reads a mode 000 directory anyway
    const std::string locked = pki().root + "/locked";
    std::filesystem::create_directory(locked);
    ::chmod(locked.c_str(), 0);
    unreadable.push_back(locked);
  }
  for (const std::string& dir : unreadable) {
    const auto store = load(dir);
    ASSERT_NE(store, nullptr) << dir;
    EXPECT_FALSE(store->directory_readable()) << dir;
    EXPECT_EQ(store->ca_count(), 0u) << dir;
    ASSERT_EQ(store->problems().size(), 1u) << dir;
    EXPECT_NE(store->problems()[0].find(dir), std::string::npos) << store->problems()[0];
  }
}

TEST(TrustStoreFiles, StoreFilesAreHashDotNumberOrHashDotRNumber) {
  for (const char* name :
       {"0123abcd.0", "0123abcd.1", "0123abcd.12", "ffffffff.9", "0123abcd.r0", "0123abcd.r12"}) {
    EXPECT_TRUE(TrustStore::is_store_file(name)) << name;
  }
  for (const char* name : {"0123abcd.signing_policy",
                           "0123abcd.namespaces",
                           "0123abcd.info",
                           "0123abcd.crl_url",
                           "README",
                           "",
                           ".",
                           "..",
                           "0123abcd.",
                           "0123abcd.r",
                           "0123abcd.rx",
                           "0123abcd.0x",
                           "0123abcd.r0.tmp",
                           "0123ABCD.0",
                           "0123abc.0",
                           "0123abcde.0",
                           "0123abcg.0",
                           "0123abcd-0",
                           "0123abcd.-1",
                           "0123abcd.pem"}) {
    EXPECT_FALSE(TrustStore::is_store_file(name)) << name;
  }
}

// ---- verify_client_chain -------------------------------------------------------------------

using ChainVerifierTest = GridPkiTest;

constexpr const char* kUserDn =
    "/DC=ch/DC=cern/OU=Organic Units/OU=Users/CN=jdoe/CN=123456/CN=John Doe";
constexpr const char* kCaDn = "/DC=org/DC=example/CN=Example Grid CA";

TEST_F(ChainVerifierTest, NothingPresentedIsNoCertificate) {
  const auto store = load(pki().ca_dir);
  EXPECT_EQ(verify_client_chain(*store, nullptr, pki().now).identity, no_certificate_identity());
  const X509StackPtr empty(sk_X509_new_null());
  EXPECT_EQ(verify_client_chain(*store, empty.get(), pki().now).identity,
            no_certificate_identity());
}

TEST_F(ChainVerifierTest, AcceptsAUserCertificate) {
  const auto store = load(pki().ca_dir);
  const IdentityPtr identity = this->identity(*store, {&pki().user});
  ASSERT_NE(identity, nullptr);
  EXPECT_EQ(identity->outcome, VerifyOutcome::ok) << identity->reason;
  EXPECT_EQ(identity->kind, CredentialKind::certificate);
  EXPECT_EQ(identity->user_dn, kUserDn);
  EXPECT_EQ(identity->leaf_dn, kUserDn);
  EXPECT_EQ(identity->issuer_dn, kCaDn);
  EXPECT_EQ(identity->verify_error, 0);
  EXPECT_EQ(identity->error_depth, -1);
  EXPECT_EQ(identity->reason, "");
  EXPECT_EQ(identity->not_before, pki().now - kDay);  // the later of user and CA
  EXPECT_EQ(identity->not_after, pki().user.not_after);
}

TEST_F(ChainVerifierTest, RefusesARevokedUser) {
  const auto store = load(pki().ca_dir);
  const IdentityPtr identity = this->identity(*store, {&pki().revoked_user});
  EXPECT_EQ(identity->outcome, VerifyOutcome::revoked);
  EXPECT_EQ(identity->verify_error, X509_V_ERR_CERT_REVOKED);
  EXPECT_EQ(identity->verify_error, 23);
  EXPECT_EQ(identity->error_depth, 0);
  EXPECT_EQ(identity->user_dn, pki().revoked_user.dn);  // for the trouble page
  EXPECT_NE(identity->reason.find("revoked"), std::string::npos) << identity->reason;
}

TEST_F(ChainVerifierTest, RefusesAProxyOfARevokedUser) {
  const auto store = load(pki().ca_dir);
  const IdentityPtr identity =
      this->identity(*store, {&pki().proxy_of_revoked_user, &pki().revoked_user});
  EXPECT_EQ(identity->outcome, VerifyOutcome::revoked);
  EXPECT_EQ(identity->verify_error, 23);
  EXPECT_EQ(identity->error_depth, 1);
  EXPECT_EQ(identity->user_dn, pki().revoked_user.dn);
}

TEST_F(ChainVerifierTest, AcceptsARevokedUserWhenCrlsAreOff) {
  const auto store = load(pki().ca_dir, CrlMode::off);
  EXPECT_EQ(identity(*store, {&pki().revoked_user})->outcome, VerifyOutcome::ok);
}

TEST_F(ChainVerifierTest, CaWithoutCrlFailsOnlyWhenCrlsAreRequired) {
  const Credential* chain = &pki().user_of_ca_without_crl;
  const IdentityPtr required = identity(*load(pki().ca_dir, CrlMode::require), {chain});
  EXPECT_EQ(required->outcome, VerifyOutcome::crl_missing);
  EXPECT_EQ(required->verify_error, X509_V_ERR_UNABLE_TO_GET_CRL);
  EXPECT_EQ(required->user_dn, pki().user_of_ca_without_crl.dn);
  const IdentityPtr if_present = identity(*load(pki().ca_dir, CrlMode::if_present), {chain});
  EXPECT_EQ(if_present->outcome, VerifyOutcome::ok) << if_present->reason;
  const IdentityPtr off = identity(*load(pki().ca_dir, CrlMode::off), {chain});
  EXPECT_EQ(off->outcome, VerifyOutcome::ok) << off->reason;
  // if_present still checks the CRLs there are.
  EXPECT_EQ(identity(*load(pki().ca_dir, CrlMode::if_present), {&pki().revoked_user})->outcome,
            VerifyOutcome::revoked);
}

TEST_F(ChainVerifierTest, StaleCrlIsAcceptedWithinTheGracePeriod) {
  const auto lenient = load_with_grace(std::chrono::hours(24));
  ASSERT_EQ(lenient->crls().size(), 1u);
  EXPECT_EQ(lenient->crls()[0].next_update, pki().stale_next_update);
  const IdentityPtr accepted = identity(*lenient, {&pki().user});
  EXPECT_EQ(accepted->outcome, VerifyOutcome::ok) << accepted->reason;

  const IdentityPtr refused = identity(*load_with_grace(std::chrono::hours(1)), {&pki().user});
  EXPECT_EQ(refused->outcome, VerifyOutcome::crl_expired);
  EXPECT_EQ(refused->verify_error, X509_V_ERR_CRL_HAS_EXPIRED);
}

TEST_F(ChainVerifierTest, RefusesAUserOfAnUnknownCa) {
  const auto store = load(pki().ca_dir);
  const IdentityPtr alone = identity(*store, {&pki().user_of_unknown_ca});
  EXPECT_EQ(alone->outcome, VerifyOutcome::unknown_ca);
  EXPECT_EQ(alone->verify_error, X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);
  EXPECT_EQ(alone->issuer_dn, "/DC=org/DC=elsewhere/CN=Unknown CA");
  // Presenting the unknown CA along does not make it trusted.
  const IdentityPtr with_ca = identity(*store, {&pki().user_of_unknown_ca, &pki().unknown_ca});
  EXPECT_EQ(with_ca->outcome, VerifyOutcome::unknown_ca);
  EXPECT_EQ(with_ca->verify_error, X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN);
}

TEST_F(ChainVerifierTest, RefusesAnExpiredUserAndSaysWhen) {
  const auto store = load(pki().ca_dir);
  const IdentityPtr identity = this->identity(*store, {&pki().expired_user});
  EXPECT_EQ(identity->outcome, VerifyOutcome::expired);
  EXPECT_EQ(identity->verify_error, X509_V_ERR_CERT_HAS_EXPIRED);
  EXPECT_EQ(identity->error_depth, 0);
  const std::string date = format_utc(pki().expired_user.not_after);
  EXPECT_NE(identity->reason.find(date), std::string::npos) << identity->reason;
  EXPECT_EQ(identity->not_after, pki().expired_user.not_after);
}

TEST_F(ChainVerifierTest, AcceptsAnRfc3820ProxyAsItsUser) {
  const auto store = load(pki().ca_dir);
  const IdentityPtr identity = this->identity(*store, {&pki().rfc_proxy, &pki().user});
  EXPECT_EQ(identity->outcome, VerifyOutcome::ok) << identity->reason;
  EXPECT_EQ(identity->kind, CredentialKind::proxy);
  EXPECT_EQ(identity->user_dn, kUserDn);
  EXPECT_EQ(identity->leaf_dn, std::string(kUserDn) + "/CN=1234567890");
  EXPECT_EQ(identity->issuer_dn, kCaDn);
  EXPECT_EQ(identity->not_after, pki().rfc_proxy.not_after);  // the earliest of the chain
  EXPECT_EQ(identity->not_before, pki().now - 5 * 60);        // the latest of the chain
}

TEST_F(ChainVerifierTest, AcceptsALegacyProxyAsItsUser) {
  const auto store = load(pki().ca_dir);
  const IdentityPtr identity = this->identity(*store, {&pki().legacy_proxy, &pki().user});
  EXPECT_EQ(identity->outcome, VerifyOutcome::ok) << identity->reason;
  EXPECT_EQ(identity->kind, CredentialKind::proxy);
  EXPECT_EQ(identity->user_dn, kUserDn);
  EXPECT_EQ(identity->leaf_dn, std::string(kUserDn) + "/CN=proxy");
  EXPECT_EQ(identity->not_after, pki().legacy_proxy.not_after);
}

TEST_F(ChainVerifierTest, LegacyLimitedProxyIsLimited) {
  const auto store = load(pki().ca_dir);
  const IdentityPtr identity = this->identity(*store, {&pki().legacy_limited, &pki().user});
  EXPECT_EQ(identity->outcome, VerifyOutcome::ok) << identity->reason;
  EXPECT_EQ(identity->kind, CredentialKind::limited_proxy);
  EXPECT_EQ(identity->user_dn, kUserDn);
}

TEST_F(ChainVerifierTest, RfcLimitedProxyIsLimited) {
  const auto store = load(pki().ca_dir);
  const IdentityPtr identity = this->identity(*store, {&pki().rfc_limited, &pki().user});
  EXPECT_EQ(identity->outcome, VerifyOutcome::ok) << identity->reason;
  EXPECT_EQ(identity->kind, CredentialKind::limited_proxy);
  EXPECT_EQ(identity->user_dn, kUserDn);
}

TEST_F(ChainVerifierTest, RefusesProxiesOfBothKindsWhenNotAllowed) {
  const auto store = load(pki().ca_dir, CrlMode::require, /*allow_proxies=*/false);
  const IdentityPtr rfc = identity(*store, {&pki().rfc_proxy, &pki().user});
  EXPECT_EQ(rfc->outcome, VerifyOutcome::proxy_forbidden) << rfc->reason;
  EXPECT_EQ(rfc->verify_error, X509_V_ERR_PROXY_CERTIFICATES_NOT_ALLOWED);
  EXPECT_EQ(rfc->user_dn, kUserDn);
  const IdentityPtr legacy = identity(*store, {&pki().legacy_proxy, &pki().user});
  EXPECT_EQ(legacy->outcome, VerifyOutcome::proxy_forbidden) << legacy->reason;
  EXPECT_EQ(legacy->verify_error, X509_V_ERR_PROXY_CERTIFICATES_NOT_ALLOWED);
  // The user certificate itself is still welcome.
  EXPECT_EQ(identity(*store, {&pki().user})->outcome, VerifyOutcome::ok);
}

TEST_F(ChainVerifierTest, RefusesAProxyWithASubjectAltName) {
  const auto store = load(pki().ca_dir);
  const IdentityPtr rfc = identity(*store, {&pki().rfc_proxy_with_san, &pki().user});
  EXPECT_EQ(rfc->outcome, VerifyOutcome::bad_proxy) << rfc->reason;
  EXPECT_EQ(rfc->kind, CredentialKind::proxy);
  EXPECT_EQ(rfc->user_dn, kUserDn);
  EXPECT_EQ(rfc->error_depth, 0);
  EXPECT_NE(rfc->reason.find("subjectAltName"), std::string::npos) << rfc->reason;
  const IdentityPtr legacy = identity(*store, {&pki().legacy_proxy_with_san, &pki().user});
  EXPECT_EQ(legacy->outcome, VerifyOutcome::bad_proxy) << legacy->reason;
  EXPECT_EQ(legacy->kind, CredentialKind::proxy);
  EXPECT_EQ(legacy->error_depth, 0);
  EXPECT_NE(legacy->reason.find("subjectAltName"), std::string::npos) << legacy->reason;
  EXPECT_EQ(store->cache().size(), 0u);
}

TEST_F(ChainVerifierTest, RefusesAGt3DraftProxy) {
  const auto store = load(pki().ca_dir);
  const IdentityPtr identity = this->identity(*store, {&pki().gt3_proxy, &pki().user});
  EXPECT_EQ(identity->outcome, VerifyOutcome::bad_proxy) << identity->reason;
  EXPECT_EQ(identity->kind, CredentialKind::proxy);
  EXPECT_EQ(identity->error_depth, 0);
  EXPECT_NE(identity->reason.find("GT3"), std::string::npos) << identity->reason;
}

// The trouble page shows user_dn for refused chains too; a proxy refused before OpenSSL runs
// must still name the user behind it, not the proxy.
TEST_F(ChainVerifierTest, RefusedProxyStillNamesItsUser) {
  const auto strict = load(pki().ca_dir, CrlMode::require, /*allow_proxies=*/false);
  const auto store = load(pki().ca_dir);
  const struct {
    const char* what;
    IdentityPtr identity;
  } cases[] = {
      {"legacy proxy, proxies not allowed", identity(*strict, {&pki().legacy_proxy, &pki().user})},
      {"legacy proxy with a subjectAltName",
       identity(*store, {&pki().legacy_proxy_with_san, &pki().user})},
      {"GT3 draft proxy", identity(*store, {&pki().gt3_proxy, &pki().user})},
  };
  std::string wrong;
  for (const auto& [what, refused] : cases) {
    EXPECT_FALSE(refused->verified()) << what;
    EXPECT_EQ(refused->leaf_dn.substr(0, std::string_view(kUserDn).size()), kUserDn) << what;
    if (refused->user_dn != kUserDn || refused->kind != CredentialKind::proxy) {
      wrong += std::string("; ") + what + ": user_dn " + refused->user_dn + ", kind " +
               (refused->kind == CredentialKind::proxy ? "proxy" : "not proxy");
    }
  }
  EXPECT_EQ(wrong, "") << "early refusals must still name the user behind the proxy";
}

TEST_F(ChainVerifierTest, RefusesAnRfcProxySignedByALegacyProxy) {
  const auto store = load(pki().ca_dir);
  const IdentityPtr identity =
      this->identity(*store, {&pki().rfc_under_legacy, &pki().legacy_proxy, &pki().user});
  EXPECT_EQ(identity->outcome, VerifyOutcome::bad_proxy) << identity->reason;
  EXPECT_EQ(identity->user_dn, kUserDn);
  EXPECT_NE(identity->reason.find("mixes"), std::string::npos) << identity->reason;
}

TEST_F(ChainVerifierTest, RefusesAFullProxySignedByALimitedOne) {
  const auto store = load(pki().ca_dir);
  const IdentityPtr identity =
      this->identity(*store, {&pki().full_under_limited, &pki().rfc_limited, &pki().user});
  EXPECT_EQ(identity->outcome, VerifyOutcome::bad_proxy) << identity->reason;
  EXPECT_EQ(identity->error_depth, 0);
  EXPECT_NE(identity->reason.find("limited"), std::string::npos) << identity->reason;
}

TEST_F(ChainVerifierTest, SecondVerificationOfTheSameChainComesFromTheCache) {
  const auto store = load(pki().ca_dir);
  const CachedVerdict first = verify(*store, {&pki().rfc_proxy, &pki().user});
  ASSERT_TRUE(first.identity->verified()) << first.identity->reason;
  EXPECT_EQ(store->cache().size(), 1u);
  const CachedVerdict second = verify(*store, {&pki().rfc_proxy, &pki().user});
  EXPECT_EQ(second.identity, first.identity);  // the very same object
  EXPECT_EQ(second.session_data, first.session_data);
  EXPECT_EQ(store->cache().size(), 1u);
  // Another chain is another entry; the proxy alone (no user certificate) is another chain.
  EXPECT_NE(verify(*store, {&pki().user}).identity, first.identity);
  EXPECT_EQ(store->cache().size(), 2u);
}

TEST_F(ChainVerifierTest, AStaleCrlOfAnotherCaDoesNotStopCaching) {
  // The user's CA has a current CRL; another CA's CRL is past its grace period. Only the
  // CRLs of the chain's own CAs bound a cached verdict.
  const std::string dir = pki().root + "/mixed";
  std::filesystem::create_directory(dir);
  write_cert(dir + "/" + ca_file_name(pki().ca, "0"), pki().ca);
  std::filesystem::copy_file(pki().ca_dir + "/" + ca_file_name(pki().ca, "r0"),
                             dir + "/" + ca_file_name(pki().ca, "r0"));
  write_cert(dir + "/" + ca_file_name(pki().ca_without_crl, "0"), pki().ca_without_crl);
  const X509CrlPtr stale =
      make_crl(pki().ca_without_crl, pki().now - 2 * kDay, pki().now - 2 * kHour, {});
  write_crl(dir + "/" + ca_file_name(pki().ca_without_crl, "r0"), stale.get());
  TrustStoreSettings settings;
  settings.ca_dir = dir;
  settings.crl_grace = std::chrono::hours(1);
  const auto store = TrustStore::load(settings, 1);
  ASSERT_EQ(store->crls().size(), 2u);

  const CachedVerdict first = verify(*store, {&pki().user});
  ASSERT_TRUE(first.identity->verified()) << first.identity->reason;
  EXPECT_EQ(store->cache().size(), 1u);
  EXPECT_EQ(verify(*store, {&pki().user}).identity, first.identity);
  // The other CA's user is refused (its CRL is too old) and not cached.
  EXPECT_EQ(identity(*store, {&pki().user_of_ca_without_crl})->outcome, VerifyOutcome::crl_expired);
  EXPECT_EQ(store->cache().size(), 1u);
}

TEST_F(ChainVerifierTest, FailedVerificationIsNotCached) {
  const auto store = load(pki().ca_dir);
  const CachedVerdict first = verify(*store, {&pki().revoked_user});
  const CachedVerdict second = verify(*store, {&pki().revoked_user});
  EXPECT_EQ(second.identity->outcome, VerifyOutcome::revoked);
  EXPECT_NE(second.identity, first.identity);
  EXPECT_EQ(store->cache().size(), 0u);
}

TEST_F(ChainVerifierTest, NoCacheWhenItsCapacityIsZero) {
  TrustStoreSettings settings;
  settings.ca_dir = pki().ca_dir;
  settings.cache_capacity = 0;
  const auto store = TrustStore::load(settings, 1);
  const CachedVerdict first = verify(*store, {&pki().user});
  ASSERT_TRUE(first.identity->verified()) << first.identity->reason;
  EXPECT_NE(verify(*store, {&pki().user}).identity, first.identity);
}

TEST_F(ChainVerifierTest, ValidityIsTheIntersectionOfTheChain) {
  const auto store = load(pki().ca_dir);
  const IdentityPtr identity =
      this->identity(*store, {&pki().full_under_limited, &pki().rfc_limited, &pki().user});
  // Reported for refused chains too; here every proxy ends 12 h from now, the user in a year.
  EXPECT_EQ(identity->not_after,
            std::min({pki().full_under_limited.not_after, pki().rfc_limited.not_after,
                      pki().user.not_after, pki().ca.not_after}));
  EXPECT_EQ(identity->not_after, pki().now + 12 * kHour);
}

}  // namespace
}  // namespace tls
