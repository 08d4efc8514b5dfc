// The process-wide budget of connections to one backend server: whatever the number of
// workers, no more than `limit` connections (connecting, idle or busy) exist at once.
//
// Each worker's BackendPool takes a slot before connecting and gives it back when the
// connection closes. The counters are atomics: taking a slot happens once per new backend
// connection, not per request. A worker whose requests wait while the budget is exhausted
// marks itself starving; a worker that then finishes a request on a pooled connection closes
// it instead of keeping it when a starving worker holds clearly fewer, and every release wakes the
// starving workers, so one busy worker cannot keep the whole budget while another's queue
// times out.
//
// Owner: the Server (one per backend server, for the lifetime of the process); shared by all
// workers. Thread-safe.
#pragma once

#include <atomic>
#include <cstddef>
#include <functional>
#include <mutex>
#include <vector>

namespace proxy {

class ConnectionQuota {
 public:
  ConnectionQuota(unsigned limit, std::size_t workers);

  // Takes a slot for `worker`; false when `limit` connections already exist.
  [[nodiscard]] bool try_acquire(std::size_t worker);
  // Gives back a slot `worker` held, and wakes the workers that are starving.
  void release(std::size_t worker);

  // A worker with waiting requests that could not get a slot says so; cleared when it has
  // none left waiting.
  void set_starving(std::size_t worker, bool starving);
  // True when some worker other than `worker` is starving.
  bool others_starving(std::size_t worker) const;
  // True when a starving worker holds at least two connections fewer than `worker` (or, with
  // fewer slots than workers, none while `worker` holds one): `worker` should then close a
  // connection that just became idle rather than keep it.
  // `held` is what `worker` holds minus the connections it is already closing.
  bool should_yield(std::size_t worker, unsigned held) const;
  // Wakes the workers other than `worker` that hold connections, so that one sitting on idle
  // connections can give one up (called by a starving worker).
  void wake_holders(std::size_t worker);

  // How `worker` is woken up (called from any thread; must be thread-safe, e.g. event_active).
  // Set at start-up, cleared before the worker goes away.
  void set_wakeup(std::size_t worker, std::function<void()> wakeup);

  unsigned limit() const { return limit_; }
  unsigned open() const { return open_.load(std::memory_order_relaxed); }
  unsigned held_by(std::size_t worker) const;
  unsigned peak() const { return peak_.load(std::memory_order_relaxed); }

 private:
  struct alignas(64) WorkerSlot {  // one cache line per worker: no false sharing
    std::atomic<unsigned> held{0};
    std::atomic<bool> starving{false};
  };

  const unsigned limit_;
  std::atomic<unsigned> open_{0};
  std::atomic<unsigned> peak_{0};
  std::atomic<unsigned> starving_count_{0};
  std::vector<WorkerSlot> workers_;
  std::mutex wakeup_mutex_;  // guards wakeups_ (taken only when someone is starving)
  std::vector<std::function<void()>> wakeups_;
};

}  // namespace proxy
