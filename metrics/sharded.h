// Per-worker metric storage for the hot path: plain counters and fixed-bucket histograms.
//
// Each worker thread writes only its own shard, so an update is a relaxed load and a relaxed
// store of a line no other thread writes: no lock, no read-modify-write, no label lookup, no
// allocation. The scrape thread sums the shards when Prometheus asks (it may see an update a
// little late, never a torn one). prometheus-cpp's own Counter/Histogram are deliberately not
// used: each update there is a CAS loop on a shared atomic<double> behind a family lookup.
//
// Ownership: built once at start-up (sized for the number of workers and for every label
// combination, "slot", the caller will ever use) and kept alive until the exporter is gone.
// Thread rules: add()/observe() for worker W only from worker W's thread; total()/snapshot()
// from any thread.
#pragma once

#include <atomic>
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace metrics {

// One cache line of counters. Shards start on a line boundary so that two workers never write
// the same line (false sharing would turn every update into a cross-core transfer).
struct alignas(64) CounterLine {
  static constexpr std::size_t kCells = 8;
  std::atomic<std::uint64_t> cell[kCells] = {};
};
static_assert(sizeof(CounterLine) == 64);
static_assert(std::atomic<std::uint64_t>::is_always_lock_free);

// Counters written by one worker each (relaxed atomic stores by the only writer, so no RMW
// contention), read by the scrape thread. Shards are cache-line aligned so workers never share
// a line.
class CounterSet {
 public:
  CounterSet(std::size_t workers, std::size_t slots);

  // Only from `worker`'s own thread; inline because it is the per-request call.
  // Preconditions (asserted in debug builds): worker < workers, slot < slots.
  void add(std::size_t worker, std::size_t slot, std::uint64_t n = 1) noexcept {
    // The only writer of a cell is its worker, so load + store cannot lose an update and avoids
    // the locked read-modify-write a fetch_add would cost.
    std::atomic<std::uint64_t>& c = cell(worker, slot);
    c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  std::uint64_t total(std::size_t slot) const noexcept;  // sum over workers
  std::size_t slots() const noexcept { return slots_; }
  std::size_t workers() const noexcept { return workers_; }

 private:
  std::atomic<std::uint64_t>& cell(std::size_t worker, std::size_t slot) const noexcept {
    assert(worker < workers_ && slot < slots_);
    return lines_[worker * lines_per_worker_ + slot / CounterLine::kCells]
        .cell[slot % CounterLine::kCells];
  }

  std::size_t workers_;
  std::size_t slots_;
  std::size_t lines_per_worker_;
  std::unique_ptr<CounterLine[]> lines_;
};

// Fixed-bucket histograms, same sharding. Values in seconds (doubles in the API; stored as
// integer microseconds for the sum, so an observation is plain integer stores).
class HistogramSet {
 public:
  // `upper_bounds` must be finite and strictly increasing (std::invalid_argument otherwise);
  // the +Inf bucket is implicit.
  HistogramSet(std::size_t workers, std::size_t slots, std::vector<double> upper_bounds);

  // Only from `worker`'s own thread. A value equal to a bound counts in that bound's bucket
  // (Prometheus "le"). Negative and NaN values count as 0 (a clock step must not make the sum
  // go backwards); values above the last bound land in +Inf.
  void observe(std::size_t worker, std::size_t slot, double seconds) noexcept;

  struct Snapshot {
    std::vector<std::uint64_t> bucket_counts;  // cumulative, one per bound plus +Inf
    double sum = 0;                            // seconds
    std::uint64_t count = 0;                   // == bucket_counts.back()
  };
  Snapshot snapshot(std::size_t slot) const;
  const std::vector<double>& bounds() const noexcept { return bounds_; }
  std::size_t slots() const noexcept { return slots_; }
  std::size_t workers() const noexcept { return workers_; }

 private:
  // Per (worker, slot): one non-cumulative count per bucket (bounds + 1 for +Inf), then the
  // sum in microseconds. The count is not stored: it is the sum of the buckets, which also
  // keeps a scrape's count and +Inf bucket consistent with each other.
  std::size_t cells_per_slot() const noexcept { return bounds_.size() + 2; }
  std::atomic<std::uint64_t>& cell(std::size_t worker, std::size_t index) const noexcept;

  std::size_t workers_;
  std::size_t slots_;
  std::vector<double> bounds_;
  std::size_t lines_per_worker_;
  std::unique_ptr<CounterLine[]> lines_;
};

// Default latency buckets (seconds): 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
// 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300.
const std::vector<double>& latency_buckets();

}  // namespace metrics
