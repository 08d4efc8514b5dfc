// The CAs and CRLs client certificates are verified against, read from an IGTF-style hashed
// directory (/etc/grid-security/certificates): `<hash>.N` hold CA certificates, `<hash>.rN`
// CRLs; every other file (.signing_policy, .namespaces, .info, .crl_url, ...) is ignored, and
// a CA present twice (symlinks by the old hash) is added once.
//
// Immutable once loaded, and loaded off the event loops: the whole directory is read into one
// X509_STORE without lookup methods, so a handshake never touches the file system and never
// sees a half-updated directory. OpenSSL caches CRLs inside a store, which is why a changed
// directory means a new TrustStore (published by the reloader), never an updated one.
// Loading never fails as a whole: unreadable or malformed files are listed in problems() and
// skipped, so one bad CRL written by fetch-crl cannot take authentication down.
//
// Thread: built by the reloader thread, then shared read-only (shared_ptr<const TrustStore>)
// by all workers; its VerificationCache is the only mutable part and locks itself.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tls/openssl_ptr.h"
#include "tls/verification_cache.h"

namespace tls {

enum class CrlMode : std::uint8_t {
  require,     // every CA of a chain must have a current CRL
  if_present,  // a CA without a CRL is accepted
  off,         // CRLs are not loaded or checked
};

struct TrustStoreSettings {
  std::string ca_dir;
  CrlMode crl = CrlMode::require;
  std::chrono::seconds crl_grace{24 * 3600};  // a CRL stays usable this long past nextUpdate
  int verify_depth = 10;
  bool allow_proxies = true;
  std::size_t cache_capacity = 20000;  // verified chains remembered (0 = no cache)
};

// One CRL as loaded, for logs, the trouble page and metrics (CRL age per CA).
struct CrlInfo {
  std::string file;
  std::string issuer;            // slash form
  std::int64_t last_update = 0;  // unix seconds
  std::int64_t next_update = 0;  // 0 when the CRL has none
  std::size_t revoked = 0;       // entries
};

class TrustStore {
 public:
  // Reads `settings.ca_dir` now. Never null. `generation` numbers successive stores.
  // `previous` (the store in service, or null): a CRL file that no longer parses keeps the
  // CRL the previous store read from it, so a damaged download does not lock out every user
  // of a CA until the next fetch (it is still listed in problems()).
  static std::shared_ptr<const TrustStore> load(const TrustStoreSettings& settings,
                                                std::uint64_t generation,
                                                const TrustStore* previous = nullptr);

  // True for the names this loader reads (`<8 hex>.<digits>` and `<8 hex>.r<digits>`): the
  // reloader fingerprints only those, so a changed .info file does not rebuild the store.
  static bool is_store_file(const std::string& name);

  X509_STORE* x509_store() const { return store_.get(); }
  const TrustStoreSettings& settings() const { return settings_; }
  std::uint64_t generation() const { return generation_; }
  std::size_t ca_count() const { return ca_count_; }
  const std::vector<CrlInfo>& crls() const { return crls_; }
  const std::vector<std::string>& problems() const { return problems_; }
  bool directory_readable() const { return directory_readable_; }
  // When (unix seconds) the CRL of the CA named `issuer` stops being acceptable (its
  // nextUpdate + crl_grace); INT64_MAX when that CA has no CRL here. A cached verdict never
  // outlives the CRLs of its own chain (a stale CRL of another CA does not matter to it).
  std::int64_t crl_deadline_for(const X509_NAME* issuer) const;
  VerificationCache& cache() const { return cache_; }

  // Only load() constructs (the key is private); public for make_shared.
  struct Key {
   private:
    Key() = default;
    friend class TrustStore;
  };
  TrustStore(Key, const TrustStoreSettings& settings, std::uint64_t generation);
  TrustStore(const TrustStore&) = delete;
  TrustStore& operator=(const TrustStore&) = delete;

 private:
  void read_directory(const TrustStore* previous);
  void add_ca_file(const std::string& path);
  void add_crl_file(const std::string& path, const TrustStore* previous);
  void add_crl(const std::string& path, X509CrlPtr crl);

  TrustStoreSettings settings_;
  std::uint64_t generation_;
  X509StorePtr store_;
  std::size_t ca_count_ = 0;
  std::vector<std::string> ca_fingerprints_;  // sorted SHA-256 of each added CA (dedup)
  std::vector<CrlInfo> crls_;
  std::vector<X509CrlPtr> crl_objects_;  // parallel to crls_ (for the next store's fallback)
  std::vector<std::string> problems_;
  bool directory_readable_ = false;
  mutable VerificationCache cache_;
};

}  // namespace tls
