#include "proxy/connection_quota.h"

namespace proxy {

ConnectionQuota::ConnectionQuota(unsigned limit, std::size_t workers)
    : limit_(limit), workers_(workers), wakeups_(workers) {}

bool ConnectionQuota::try_acquire(std::size_t worker) {
  unsigned current = open_.load(std::memory_order_relaxed);
  do {
    if (current >= limit_) return false;
  } while (!open_.compare_exchange_weak(current, current + 1, std::memory_order_acq_rel,
                                        std::memory_order_relaxed));
  workers_[worker].held.fetch_add(1, std::memory_order_relaxed);
  unsigned peak = peak_.load(std::memory_order_relaxed);
  while (current + 1 > peak &&
         !peak_.compare_exchange_weak(peak, current + 1, std::memory_order_relaxed)) {
  }
  return true;
}

void ConnectionQuota::release(std::size_t worker) {
  workers_[worker].held.fetch_sub(1, std::memory_order_relaxed);
  open_.fetch_sub(1, std::memory_order_acq_rel);
  if (starving_count_.load(std::memory_order_acquire) == 0) return;
  std::lock_guard lock(wakeup_mutex_);
  for (std::size_t index = 0; index < workers_.size(); ++index) {
    if (workers_[index].starving.load(std::memory_order_acquire) && wakeups_[index]) {
      wakeups_[index]();
    }
  }
}

void ConnectionQuota::set_starving(std::size_t worker, bool starving) {
  const bool was = workers_[worker].starving.exchange(starving, std::memory_order_acq_rel);
  if (was == starving) return;
  if (starving) {
    starving_count_.fetch_add(1, std::memory_order_acq_rel);
  } else {
    starving_count_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

bool ConnectionQuota::others_starving(std::size_t worker) const {
  const unsigned count = starving_count_.load(std::memory_order_acquire);
  const bool self = workers_[worker].starving.load(std::memory_order_acquire);
  return count > (self ? 1U : 0U);
}

bool ConnectionQuota::should_yield(std::size_t worker, unsigned held) const {
  if (!others_starving(worker)) return false;
  // Give a connection up only to a starving worker that holds at least two fewer: the split
  // converges to shares that differ by at most one, and then stops moving (each move costs the
  // backend a reconnect). A worker holding nothing while another holds one still gets it.
  const unsigned mine = held;
  for (std::size_t other = 0; other < workers_.size(); ++other) {
    if (other == worker || !workers_[other].starving.load(std::memory_order_acquire)) continue;
    if (held_by(other) + 1 < mine ||
        (mine == 1 && held_by(other) == 0 && limit_ < workers_.size())) {
      return true;
    }
  }
  return false;
}

void ConnectionQuota::wake_holders(std::size_t worker) {
  std::lock_guard lock(wakeup_mutex_);
  for (std::size_t index = 0; index < workers_.size(); ++index) {
    if (index != worker && held_by(index) > 0 && wakeups_[index]) wakeups_[index]();
  }
}

void ConnectionQuota::set_wakeup(std::size_t worker, std::function<void()> wakeup) {
  std::lock_guard lock(wakeup_mutex_);
  wakeups_[worker] = std::move(wakeup);
}

unsigned ConnectionQuota::held_by(std::size_t worker) const {
  return workers_[worker].held.load(std::memory_order_relaxed);
}

}  // namespace proxy
