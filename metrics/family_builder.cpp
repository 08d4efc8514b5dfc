#include "metrics/family_builder.h"

#include <algorithm>
#include <cassert>
#include <limits>
#include <utility>

namespace metrics {

FamilyBuilder::FamilyBuilder(Family family) : info_(info(family)) {
  family_.name = std::string(info_.name);
  family_.help = std::string(info_.help);
  family_.type = info_.type;
}

prometheus::ClientMetric& FamilyBuilder::add_series(const LabelValues& values,
                                                    prometheus::MetricType type) {
  assert(type == info_.type);
  assert(values.size() == info_.labels.size());
  (void)type;
  prometheus::ClientMetric& metric = family_.metric.emplace_back();
  const std::size_t n = std::min(values.size(), info_.labels.size());
  metric.label.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    metric.label.push_back({std::string(info_.labels[i]), values[i]});
  }
  return metric;
}

void FamilyBuilder::counter(const LabelValues& values, double value) {
  add_series(values, prometheus::MetricType::Counter).counter.value = value;
}

void FamilyBuilder::gauge(const LabelValues& values, double value) {
  add_series(values, prometheus::MetricType::Gauge).gauge.value = value;
}

void FamilyBuilder::histogram(const LabelValues& values, const HistogramSet::Snapshot& snapshot,
                              const std::vector<double>& bounds) {
  assert(snapshot.bucket_counts.size() == bounds.size() + 1);
  auto& histogram = add_series(values, prometheus::MetricType::Histogram).histogram;
  histogram.sample_count = snapshot.count;
  histogram.sample_sum = snapshot.sum;
  histogram.bucket.reserve(bounds.size() + 1);
  for (std::size_t i = 0; i < bounds.size() && i < snapshot.bucket_counts.size(); ++i) {
    histogram.bucket.push_back({snapshot.bucket_counts[i], bounds[i]});
  }
  // The text serializer only invents a +Inf bucket when the last one is not +Inf; giving it
  // explicitly keeps the family complete for any other consumer of MetricFamily too.
  histogram.bucket.push_back({snapshot.count, std::numeric_limits<double>::infinity()});
}

prometheus::MetricFamily FamilyBuilder::take() {
  prometheus::MetricFamily out = std::move(family_);
  family_ = prometheus::MetricFamily{};
  family_.name = out.name;
  family_.help = out.help;
  family_.type = out.type;
  return out;
}

}  // namespace metrics
