#include "metrics/sharded.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <stdexcept>
#include <utility>

namespace metrics {
namespace {

std::size_t lines_for(std::size_t cells) {
  return (cells + CounterLine::kCells - 1) / CounterLine::kCells;
}

// As in CounterSet::add: the cell's worker is its only writer, so no read-modify-write.
inline void bump(std::atomic<std::uint64_t>& cell, std::uint64_t n) noexcept {
  cell.store(cell.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}

// One observation is at most this long (about 31 years): keeps the microsecond conversion
// far from overflowing a uint64 sum.
constexpr double kMaxSeconds = 1e9;

}  // namespace

CounterSet::CounterSet(std::size_t workers, std::size_t slots)
    : workers_(workers),
      slots_(slots),
      lines_per_worker_(lines_for(slots)),
      lines_(std::make_unique<CounterLine[]>(workers * lines_per_worker_)) {}

std::uint64_t CounterSet::total(std::size_t slot) const noexcept {
  std::uint64_t sum = 0;
  for (std::size_t worker = 0; worker < workers_; ++worker) {
    sum += cell(worker, slot).load(std::memory_order_relaxed);
  }
  return sum;
}

HistogramSet::HistogramSet(std::size_t workers, std::size_t slots, std::vector<double> upper_bounds)
    : workers_(workers), slots_(slots), bounds_(std::move(upper_bounds)) {
  for (std::size_t i = 0; i < bounds_.size(); ++i) {
    if (!std::isfinite(bounds_[i])) {
      throw std::invalid_argument("histogram bounds must be finite (+Inf is implicit)");
    }
    if (i > 0 && !(bounds_[i - 1] < bounds_[i])) {
      throw std::invalid_argument("histogram bounds must be strictly increasing");
    }
  }
  lines_per_worker_ = lines_for(slots_ * cells_per_slot());
  lines_ = std::make_unique<CounterLine[]>(workers_ * lines_per_worker_);
}

std::atomic<std::uint64_t>& HistogramSet::cell(std::size_t worker,
                                               std::size_t index) const noexcept {
  return lines_[worker * lines_per_worker_ + index / CounterLine::kCells]
      .cell[index % CounterLine::kCells];
}

void HistogramSet::observe(std::size_t worker, std::size_t slot, double seconds) noexcept {
  assert(worker < workers_ && slot < slots_);
  if (!(seconds >= 0)) seconds = 0;  // also catches NaN
  if (seconds > kMaxSeconds) seconds = kMaxSeconds;
  // First bound >= seconds: "le" semantics; past the end is the +Inf bucket.
  const auto bucket = static_cast<std::size_t>(
      std::lower_bound(bounds_.begin(), bounds_.end(), seconds) - bounds_.begin());
  const std::size_t base = slot * cells_per_slot();
  bump(cell(worker, base + bucket), 1);
  // seconds >= 0 here, so adding 0.5 and truncating rounds to nearest without a libm call.
  const auto micros =
      static_cast<std::uint64_t>(seconds * 1e6 + 0.5);  // NOLINT(bugprone-incorrect-roundings)
  bump(cell(worker, base + bounds_.size() + 1), micros);
}

HistogramSet::Snapshot HistogramSet::snapshot(std::size_t slot) const {
  assert(slot < slots_);
  Snapshot out;
  out.bucket_counts.assign(bounds_.size() + 1, 0);
  std::uint64_t sum_us = 0;
  const std::size_t base = slot * cells_per_slot();
  for (std::size_t worker = 0; worker < workers_; ++worker) {
    for (std::size_t b = 0; b <= bounds_.size(); ++b) {
      out.bucket_counts[b] += cell(worker, base + b).load(std::memory_order_relaxed);
    }
    sum_us += cell(worker, base + bounds_.size() + 1).load(std::memory_order_relaxed);
  }
  for (std::size_t b = 1; b < out.bucket_counts.size(); ++b) {
    out.bucket_counts[b] += out.bucket_counts[b - 1];
  }
  out.count = out.bucket_counts.back();
  out.sum = static_cast<double>(sum_us) / 1e6;
  return out;
}

const std::vector<double>& latency_buckets() {
  static const std::vector<double> buckets = {
      0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300};
  return buckets;
}

}  // namespace metrics
