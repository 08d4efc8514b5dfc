// Builds one prometheus::MetricFamily at scrape time from values the caller has summed.
//
// Name, help, type and label names come from the catalog, so a collector only supplies label
// values (in catalog order) and numbers. Allocates freely: it runs on the scrape thread, never
// on the hot path. A builder is a short-lived local of one collect call (one thread).
#pragma once

#include <string>
#include <vector>

#include "metrics/catalog.h"
#include "metrics/sharded.h"
#include "prometheus/metric_family.h"

namespace metrics {

using LabelValues = std::vector<std::string>;  // in the order of info(family).labels

class FamilyBuilder {
 public:
  explicit FamilyBuilder(Family family);  // name/help/type from the catalog

  // Each adds one series. The method must match the catalog's type and `values` must have one
  // entry per catalog label (both asserted in debug builds).
  void counter(const LabelValues& values, double value);
  void gauge(const LabelValues& values, double value);
  // `bounds` are the HistogramSet's bounds(); the +Inf bucket is added from the snapshot.
  void histogram(const LabelValues& values, const HistogramSet::Snapshot& snapshot,
                 const std::vector<double>& bounds);

  bool empty() const { return family_.metric.empty(); }

  // Hands over the family built so far; the builder is left with no series.
  prometheus::MetricFamily take();

 private:
  prometheus::ClientMetric& add_series(const LabelValues& values, prometheus::MetricType type);

  const FamilyInfo& info_;
  prometheus::MetricFamily family_;
};

}  // namespace metrics
