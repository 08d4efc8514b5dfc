#include "tls/verification_cache.h"

#include <algorithm>

namespace tls {

bool VerificationCache::find(const ChainDigest& digest, std::int64_t now, CachedVerdict& out) {
  std::lock_guard lock(mutex_);
  const auto found = entries_.find(digest);
  if (found == entries_.end()) return false;
  if (found->second.expires <= now) {
    entries_.erase(found);
    return false;
  }
  out = found->second.verdict;
  return true;
}

void VerificationCache::insert(const ChainDigest& digest, CachedVerdict verdict,
                               std::int64_t expires, std::int64_t now) {
  if (capacity_ == 0) return;
  expires = std::min(expires, now + kMaxAge);
  if (expires <= now) return;
  std::lock_guard lock(mutex_);
  auto [position, inserted] = entries_.try_emplace(digest);
  position->second = Entry{std::move(verdict), expires};
  if (!inserted) return;
  insertion_order_.push_back(digest);
  while (entries_.size() > capacity_ && !insertion_order_.empty()) {
    entries_.erase(insertion_order_.front());
    insertion_order_.pop_front();
  }
  // Entries removed on expiry leave their key in the queue: keep it from growing without
  // bound when most entries expire before they are evicted.
  if (insertion_order_.size() > 2 * capacity_ + 64) {
    std::deque<ChainDigest> live;
    for (const ChainDigest& key : insertion_order_) {
      if (entries_.count(key) != 0) live.push_back(key);
    }
    insertion_order_.swap(live);
  }
}

std::size_t VerificationCache::size() const {
  std::lock_guard lock(mutex_);
  return entries_.size();
}

}  // namespace tls
