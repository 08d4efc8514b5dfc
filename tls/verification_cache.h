// Verdicts of earlier chain verifications, so that a client that reconnects with the same
// chain (every new connection of a grid job, a browser, a cron script) costs a hash lookup
// instead of a chain walk with signature and CRL checks.
//
// Keyed by the SHA-256 of the presented chain (every certificate's DER, in order). Only
// successful verifications are stored; each entry expires at the chain's earliest notAfter,
// at the trust store's earliest CRL deadline and at most kMaxAge after it was stored. A cache
// belongs to one TrustStore: rebuilding the store (new CRLs, new CAs) starts an empty cache.
//
// Thread: shared by all workers; one mutex, held for a hash lookup or insert (never during a
// verification). Bounded: when full, the oldest entries are evicted first.
#pragma once

#include <array>
#include <cstdint>
#include <cstring>
#include <deque>
#include <mutex>
#include <string>
#include <unordered_map>

#include "tls/client_identity.h"

namespace tls {

using ChainDigest = std::array<unsigned char, 32>;

struct CachedVerdict {
  IdentityPtr identity;
  std::string session_data;  // encode_identity(*identity), ready for the TLS session
};

class VerificationCache {
 public:
  static constexpr std::int64_t kMaxAge = 600;  // seconds

  explicit VerificationCache(std::size_t capacity) : capacity_(capacity) {}

  // The verdict stored for `digest` when it is still valid at `now` (unix seconds).
  bool find(const ChainDigest& digest, std::int64_t now, CachedVerdict& out);
  void insert(const ChainDigest& digest, CachedVerdict verdict, std::int64_t expires,
              std::int64_t now);

  std::size_t size() const;

 private:
  struct DigestHash {
    std::size_t operator()(const ChainDigest& digest) const noexcept {
      std::size_t value;  // the digest is uniformly distributed: its first bytes are a hash
      std::memcpy(&value, digest.data(), sizeof value);
      return value;
    }
  };
  struct Entry {
    CachedVerdict verdict;
    std::int64_t expires = 0;
    std::uint64_t sequence = 0;  // which insertion made it (see insertion_order_)
  };
  struct Inserted {
    ChainDigest digest;
    std::uint64_t sequence;
  };

  void evict_if_current(const Inserted& item);  // mutex_ held

  const std::size_t capacity_;
  mutable std::mutex mutex_;
  std::unordered_map<ChainDigest, Entry, DigestHash> entries_;
  // Eviction order. An item whose sequence no longer matches its entry's (the entry expired,
  // or was stored again later) is stale and skipped.
  std::deque<Inserted> insertion_order_;
  std::uint64_t next_sequence_ = 0;
};

}  // namespace tls
