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
  const std::uint64_t sequence = next_sequence_++;
  auto [position, inserted] = entries_.try_emplace(digest);
  position->second = Entry{std::move(verdict), expires, sequence};
  insertion_order_.push_back(Inserted{digest, sequence});
  while (entries_.size() > capacity_ && !insertion_order_.empty()) {
    evict_if_current(insertion_order_.front());
    insertion_order_.pop_front();
  }
  // Entries that expired or were replaced leave stale items in the queue: keep it from
  // growing without bound when most entries go before they are evicted.
  if (insertion_order_.size() > 2 * capacity_ + 64) {
    std::deque<Inserted> live;
    for (const Inserted& item : insertion_order_) {
      const auto found = entries_.find(item.digest);
      if (found != entries_.end() && found->second.sequence == item.sequence) live.push_back(item);
    }
    insertion_order_.swap(live);
  }
}

void VerificationCache::evict_if_current(const Inserted& item) {
  const auto found = entries_.find(item.digest);
  if (found != entries_.end() && found->second.sequence == item.sequence) entries_.erase(found);
}

std::size_t VerificationCache::size() const {
  std::lock_guard lock(mutex_);
  return entries_.size();
}

}  // namespace tls
