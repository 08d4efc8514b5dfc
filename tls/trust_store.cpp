#include "tls/trust_store.h"

#include <dirent.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <limits>

#include "tls/distinguished_name.h"
#include "tls/openssl_util.h"

namespace tls {
namespace {

bool all_hex(const std::string& text, std::size_t begin, std::size_t end) {
  for (std::size_t i = begin; i < end; ++i) {
    const char c = text[i];
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

bool all_digits(const std::string& text, std::size_t begin) {
  if (begin >= text.size()) return false;
  for (std::size_t i = begin; i < text.size(); ++i) {
    if (text[i] < '0' || text[i] > '9') return false;
  }
  return true;
}

bool is_ca_name(const std::string& name) {
  return name.size() > 9 && name[8] == '.' && all_hex(name, 0, 8) && all_digits(name, 9);
}

bool is_crl_name(const std::string& name) {
  return name.size() > 10 && name[8] == '.' && name[9] == 'r' && all_hex(name, 0, 8) &&
         all_digits(name, 10);
}

std::string fingerprint(X509* cert) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  if (X509_digest(cert, EVP_sha256(), digest, &length) != 1) return {};
  return std::string(reinterpret_cast<const char*>(digest), length);
}

struct DirCloser {
  void operator()(DIR* dir) const noexcept { closedir(dir); }
};

// The X509_STORE verify callback: where the CRL policy relaxes OpenSSL's verdict. OpenSSL
// reports each problem here and continues when we return 1.
int relax_crl_errors(int ok, X509_STORE_CTX* ctx) noexcept {
  if (ok == 1) return 1;
  const auto* store = static_cast<const TrustStore*>(X509_STORE_CTX_get_app_data(ctx));
  if (store == nullptr) return 0;
  const TrustStoreSettings& settings = store->settings();
  switch (X509_STORE_CTX_get_error(ctx)) {
    case X509_V_ERR_UNABLE_TO_GET_CRL:
      return settings.crl == CrlMode::if_present ? 1 : 0;
    case X509_V_ERR_CRL_HAS_EXPIRED: {
      // fetch-crl can fail for a while (CA web server down): a CRL somewhat past nextUpdate
      // still lists every revocation it knew, and refusing all of a CA's users would be worse.
      const X509_CRL* crl = X509_STORE_CTX_get0_current_crl(ctx);
      const ASN1_TIME* next_update = crl == nullptr ? nullptr : X509_CRL_get0_nextUpdate(crl);
      if (next_update == nullptr) return 0;
      time_t cutoff = std::time(nullptr) - static_cast<time_t>(settings.crl_grace.count());
      return X509_cmp_time(next_update, &cutoff) > 0 ? 1 : 0;
    }
    default:
      return 0;
  }
}

}  // namespace

std::int64_t TrustStore::crl_deadline_for(const X509_NAME* issuer) const {
  std::int64_t deadline = std::numeric_limits<std::int64_t>::max();
  bool found = false;
  for (std::size_t i = 0; i < crls_.size(); ++i) {
    if (X509_NAME_cmp(X509_CRL_get_issuer(crl_objects_[i].get()), issuer) != 0) continue;
    if (crls_[i].next_update == 0) continue;  // a CRL without nextUpdate never goes stale
    // With several CRLs for one CA, OpenSSL uses the newest: take the latest deadline.
    const std::int64_t candidate =
        crls_[i].next_update + static_cast<std::int64_t>(settings_.crl_grace.count());
    deadline = found ? std::max(deadline, candidate) : candidate;
    found = true;
  }
  return deadline;
}

bool TrustStore::is_store_file(const std::string& name) {
  return is_ca_name(name) || is_crl_name(name);
}

TrustStore::TrustStore(Key, const TrustStoreSettings& settings, std::uint64_t generation)
    : settings_(settings),
      generation_(generation),
      store_(X509_STORE_new()),
      cache_(settings.cache_capacity) {}

std::shared_ptr<const TrustStore> TrustStore::load(const TrustStoreSettings& settings,
                                                   std::uint64_t generation,
                                                   const TrustStore* previous) {
  auto store = std::make_shared<TrustStore>(Key{}, settings, generation);
  if (!store->store_) {
    store->problems_.push_back("cannot create X509_STORE: " + openssl_errors());
    return store;
  }
  unsigned long flags = 0;
  if (settings.allow_proxies) flags |= X509_V_FLAG_ALLOW_PROXY_CERTS;
  // CRL_CHECK alone checks only the leaf: a proxy made from a revoked user certificate would
  // pass. CRL_CHECK_ALL checks every certificate (OpenSSL skips the proxies themselves).
  if (settings.crl != CrlMode::off) flags |= X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL;
  X509_STORE_set_flags(store->store_.get(), flags);
  X509_STORE_set_depth(store->store_.get(), settings.verify_depth);
  X509_STORE_set_verify_cb(store->store_.get(), relax_crl_errors);
  store->read_directory(previous);
  return store;
}

void TrustStore::read_directory(const TrustStore* previous) {
  const std::unique_ptr<DIR, DirCloser> dir(::opendir(settings_.ca_dir.c_str()));
  if (!dir) {
    problems_.push_back(settings_.ca_dir + ": cannot read directory: " + std::strerror(errno));
    return;
  }
  directory_readable_ = true;
  std::vector<std::string> ca_files;
  std::vector<std::string> crl_files;
  while (const dirent* entry = ::readdir(dir.get())) {
    const std::string name = entry->d_name;
    if (is_ca_name(name)) ca_files.push_back(settings_.ca_dir + "/" + name);
    if (is_crl_name(name) && settings_.crl != CrlMode::off) {
      crl_files.push_back(settings_.ca_dir + "/" + name);
    }
  }
  // Sorted, so the same directory always yields the same store and the same messages.
  std::sort(ca_files.begin(), ca_files.end());
  std::sort(crl_files.begin(), crl_files.end());
  for (const std::string& path : ca_files) add_ca_file(path);
  for (const std::string& path : crl_files) add_crl_file(path, previous);
}

void TrustStore::add_ca_file(const std::string& path) {
  const BioPtr bio(BIO_new_file(path.c_str(), "r"));
  if (!bio) {
    ERR_clear_error();
    problems_.push_back(path + ": cannot open: " + std::strerror(errno));
    return;
  }
  std::size_t read = 0;
  while (X509Ptr cert{PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)}) {
    ++read;
    std::string digest = fingerprint(cert.get());
    const auto position =
        std::lower_bound(ca_fingerprints_.begin(), ca_fingerprints_.end(), digest);
    if (position != ca_fingerprints_.end() && *position == digest) continue;  // same CA again
    if (X509_STORE_add_cert(store_.get(), cert.get()) != 1) {
      problems_.push_back(path + ": cannot add CA: " + openssl_errors());
      continue;
    }
    ca_fingerprints_.insert(position, std::move(digest));
    ++ca_count_;
  }
  // The loop ends with "no start line" at the end of the file; anything else is damage.
  const unsigned long last = ERR_peek_last_error();
  if (read == 0 || (last != 0 && ERR_GET_REASON(last) != PEM_R_NO_START_LINE)) {
    problems_.push_back(path + ": no readable certificate" +
                        (last != 0 ? ": " + openssl_errors() : std::string()));
  }
  ERR_clear_error();
}

void TrustStore::add_crl_file(const std::string& path, const TrustStore* previous) {
  const BioPtr bio(BIO_new_file(path.c_str(), "r"));
  X509CrlPtr crl;
  std::string problem;
  if (!bio) {
    ERR_clear_error();
    problem = path + ": cannot open: " + std::strerror(errno);
  } else {
    crl.reset(PEM_read_bio_X509_CRL(bio.get(), nullptr, nullptr, nullptr));
    if (!crl) problem = path + ": no readable CRL: " + openssl_errors();
  }
  if (!crl && previous != nullptr) {
    for (std::size_t i = 0; i < previous->crls_.size(); ++i) {
      if (previous->crls_[i].file != path) continue;
      X509_CRL_up_ref(previous->crl_objects_[i].get());
      crl.reset(previous->crl_objects_[i].get());
      problem += "; keeping the CRL read from it before";
      break;
    }
  }
  if (!problem.empty()) problems_.push_back(std::move(problem));
  if (crl) add_crl(path, std::move(crl));
}

void TrustStore::add_crl(const std::string& path, X509CrlPtr crl) {
  CrlInfo info;
  info.file = path;
  info.issuer = slash_form(X509_CRL_get_issuer(crl.get()));
  info.last_update = unix_time(X509_CRL_get0_lastUpdate(crl.get()));
  info.next_update = unix_time(X509_CRL_get0_nextUpdate(crl.get()));
  const STACK_OF(X509_REVOKED)* revoked = X509_CRL_get_REVOKED(crl.get());
  info.revoked = revoked == nullptr ? 0 : static_cast<std::size_t>(sk_X509_REVOKED_num(revoked));
  // OpenSSL sorts a CRL's entries on its first lookup, under a lock: do it now, once, rather
  // than in the first handshake that needs it.
  X509_REVOKED* found = nullptr;
  if (const AsnIntegerPtr zero{ASN1_INTEGER_new()}) {
    X509_CRL_get0_by_serial(crl.get(), &found, zero.get());
  }
  if (X509_STORE_add_crl(store_.get(), crl.get()) != 1) {
    problems_.push_back(path + ": cannot add CRL: " + openssl_errors());
    return;
  }
  crls_.push_back(std::move(info));
  crl_objects_.push_back(std::move(crl));
}

}  // namespace tls
