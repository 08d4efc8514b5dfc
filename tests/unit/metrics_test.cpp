#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "metrics/catalog.h"
#include "metrics/exporter.h"
#include "metrics/family_builder.h"
#include "metrics/sharded.h"
#include "prometheus/check_names.h"
#include "prometheus/text_serializer.h"

namespace metrics {
namespace {

// ---- CounterSet -------------------------------------------------------------------------------

TEST(CounterSet, SumsEachSlotAcrossWorkers) {
  CounterSet set(3, 10);  // 10 slots span two cache lines per worker
  EXPECT_EQ(set.slots(), 10u);
  set.add(0, 0);
  set.add(1, 0, 4);
  set.add(2, 0, 5);
  set.add(2, 9, 7);
  set.add(0, 8);
  EXPECT_EQ(set.total(0), 10u);
  EXPECT_EQ(set.total(9), 7u);
  EXPECT_EQ(set.total(8), 1u);
  for (std::size_t slot = 1; slot < 8; ++slot) EXPECT_EQ(set.total(slot), 0u) << slot;
}

TEST(CounterSet, ConcurrentAddsOnOwnShardsSumExactly) {
  constexpr std::size_t kWorkers = 8;
  constexpr std::size_t kSlots = 5;
  constexpr std::uint64_t kAdds = 200000;
  CounterSet set(kWorkers, kSlots);
  std::vector<std::thread> threads;
  for (std::size_t w = 0; w < kWorkers; ++w) {
    threads.emplace_back([&set, w] {
      for (std::uint64_t i = 0; i < kAdds; ++i) set.add(w, i % kSlots, 1 + w % 2);
    });
  }
  // A concurrent scrape sees totals that never go backwards.
  std::uint64_t last = 0;
  for (int i = 0; i < 1000; ++i) {
    const std::uint64_t now = set.total(0);
    EXPECT_GE(now, last);
    last = now;
  }
  for (auto& t : threads) t.join();
  std::uint64_t per_slot_expected = 0;
  for (std::size_t w = 0; w < kWorkers; ++w) per_slot_expected += (kAdds / kSlots) * (1 + w % 2);
  for (std::size_t slot = 0; slot < kSlots; ++slot) {
    EXPECT_EQ(set.total(slot), per_slot_expected) << slot;
  }
}

// ---- HistogramSet -----------------------------------------------------------------------------

TEST(HistogramSet, ValueEqualToABoundCountsInThatBucket) {
  HistogramSet set(1, 1, {0.1, 1, 10});
  set.observe(0, 0, 0.1);
  set.observe(0, 0, 1.0);
  set.observe(0, 0, 10.0);
  const auto snap = set.snapshot(0);
  ASSERT_EQ(snap.bucket_counts.size(), 4u);
  EXPECT_EQ(snap.bucket_counts[0], 1u);  // le 0.1
  EXPECT_EQ(snap.bucket_counts[1], 2u);  // le 1
  EXPECT_EQ(snap.bucket_counts[2], 3u);  // le 10
  EXPECT_EQ(snap.bucket_counts[3], 3u);  // +Inf
}

TEST(HistogramSet, JustAboveABoundGoesToTheNextBucket) {
  HistogramSet set(1, 1, {0.1, 1});
  set.observe(0, 0, std::nextafter(0.1, 1.0));
  set.observe(0, 0, std::nextafter(1.0, 2.0));
  const auto snap = set.snapshot(0);
  EXPECT_EQ(snap.bucket_counts, (std::vector<std::uint64_t>{0, 1, 2}));
}

TEST(HistogramSet, BucketsAreCumulativeWithInfAndSumAndCount) {
  HistogramSet set(2, 2, {0.01, 0.1, 1});
  set.observe(0, 1, 0.005);  // le 0.01
  set.observe(1, 1, 0.05);   // le 0.1
  set.observe(1, 1, 0.05);   // le 0.1
  set.observe(0, 1, 0.5);    // le 1
  set.observe(1, 1, 42);     // +Inf only
  set.observe(0, 0, 3);      // other slot
  const auto snap = set.snapshot(1);
  EXPECT_EQ(snap.bucket_counts, (std::vector<std::uint64_t>{1, 3, 4, 5}));
  EXPECT_EQ(snap.count, 5u);
  EXPECT_NEAR(snap.sum, 0.005 + 0.05 + 0.05 + 0.5 + 42, 1e-9);
  const auto other = set.snapshot(0);
  EXPECT_EQ(other.bucket_counts, (std::vector<std::uint64_t>{0, 0, 0, 1}));
  EXPECT_EQ(other.count, 1u);
  EXPECT_DOUBLE_EQ(other.sum, 3);
}

TEST(HistogramSet, SumIsKeptInMicroseconds) {
  HistogramSet set(1, 1, latency_buckets());
  set.observe(0, 0, 0.0000004);  // rounds to 0 us
  set.observe(0, 0, 0.0000016);  // rounds to 2 us
  const auto snap = set.snapshot(0);
  EXPECT_EQ(snap.count, 2u);
  EXPECT_DOUBLE_EQ(snap.sum, 0.000002);
}

TEST(HistogramSet, NegativeAndNanCountAsZeroAndInfinityAsInf) {
  HistogramSet set(1, 1, {1});
  set.observe(0, 0, -5);
  set.observe(0, 0, std::numeric_limits<double>::quiet_NaN());
  set.observe(0, 0, std::numeric_limits<double>::infinity());
  const auto snap = set.snapshot(0);
  EXPECT_EQ(snap.bucket_counts, (std::vector<std::uint64_t>{2, 3}));
  EXPECT_TRUE(std::isfinite(snap.sum));
  EXPECT_GT(snap.sum, 0);
}

TEST(HistogramSet, EmptySnapshotHasOneZeroPerBucketPlusInf) {
  HistogramSet set(4, 3, latency_buckets());
  const auto snap = set.snapshot(2);
  EXPECT_EQ(snap.bucket_counts, std::vector<std::uint64_t>(latency_buckets().size() + 1, 0));
  EXPECT_EQ(snap.count, 0u);
  EXPECT_EQ(snap.sum, 0);
  EXPECT_EQ(set.bounds(), latency_buckets());
}

TEST(HistogramSet, RejectsUnsortedDuplicateOrInfiniteBounds) {
  EXPECT_THROW(HistogramSet(1, 1, {1, 0.5}), std::invalid_argument);
  EXPECT_THROW(HistogramSet(1, 1, {1, 1}), std::invalid_argument);
  EXPECT_THROW(HistogramSet(1, 1, {1, std::numeric_limits<double>::infinity()}),
               std::invalid_argument);
  EXPECT_THROW(HistogramSet(1, 1, {std::numeric_limits<double>::quiet_NaN()}),
               std::invalid_argument);
  EXPECT_NO_THROW(HistogramSet(1, 1, {}));
}

TEST(HistogramSet, ConcurrentObservesOnOwnShardsSumExactly) {
  constexpr std::size_t kWorkers = 6;
  constexpr int kObservations = 100000;
  HistogramSet set(kWorkers, 3, {0.001, 0.01});
  std::vector<std::thread> threads;
  for (std::size_t w = 0; w < kWorkers; ++w) {
    threads.emplace_back([&set, w] {
      for (int i = 0; i < kObservations; ++i) set.observe(w, 1, i % 2 ? 0.005 : 0.0005);
    });
  }
  for (auto& t : threads) t.join();
  const auto snap = set.snapshot(1);
  const std::uint64_t total = kWorkers * kObservations;
  EXPECT_EQ(snap.bucket_counts, (std::vector<std::uint64_t>{total / 2, total, total}));
  EXPECT_NEAR(snap.sum, static_cast<double>(total / 2) * (0.005 + 0.0005), 1e-6);
  EXPECT_EQ(set.snapshot(0).count, 0u);
}

TEST(LatencyBuckets, AreTheDocumentedSeventeen) {
  EXPECT_EQ(latency_buckets(), (std::vector<double>{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                    0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300}));
}

// ---- Catalog ----------------------------------------------------------------------------------

std::vector<Family> all_families() {
  std::vector<Family> out;
  for (std::size_t i = 0; i < kFamilyCount; ++i) out.push_back(static_cast<Family>(i));
  return out;
}

TEST(Catalog, EveryFamilyHasNameHelpAndOnlyValidLabels) {
  for (Family family : all_families()) {
    const FamilyInfo& f = info(family);
    SCOPED_TRACE(std::string(f.name));
    EXPECT_TRUE(prometheus::CheckMetricName(std::string(f.name)));
    EXPECT_EQ(f.name.substr(0, 9), "cmsfront_");
    EXPECT_FALSE(f.help.empty());
    EXPECT_EQ(f.help.find('\n'), std::string_view::npos);
    // Labels may be empty: process-wide gauges (the user map's size) have none.
    std::set<std::string_view> seen;
    for (std::string_view label : f.labels) {
      EXPECT_TRUE(prometheus::CheckLabelName(std::string(label))) << label;
      EXPECT_TRUE(seen.insert(label).second) << "duplicate label " << label;
      // Reserved by histogram and summary series.
      EXPECT_NE(label, "le");
      EXPECT_NE(label, "quantile");
    }
  }
}

TEST(Catalog, NamesAreUnique) {
  std::set<std::string_view> names;
  for (Family family : all_families()) {
    EXPECT_TRUE(names.insert(info(family).name).second) << info(family).name;
  }
  EXPECT_EQ(names.size(), kFamilyCount);
}

TEST(Catalog, NamesFollowPrometheusSuffixConventions) {
  for (Family family : all_families()) {
    const FamilyInfo& f = info(family);
    const bool total = f.name.ends_with("_total");
    EXPECT_EQ(total, f.type == prometheus::MetricType::Counter) << f.name;
    if (f.type == prometheus::MetricType::Histogram) {
      EXPECT_TRUE(f.name.ends_with("_seconds")) << f.name;
    }
  }
}

// Pins each enum value to its row, so a row inserted out of order fails here.
TEST(Catalog, EachEnumValueNamesItsOwnFamily) {
  const std::vector<std::string_view> expected = {
      "build_info",
      "requests_total",
      "request_duration_seconds",
      "request_bytes_total",
      "response_bytes_total",
      "client_connections",
      "tls_handshakes_total",
      "tls_resumptions_total",
      "tls_handshake_duration_seconds",
      "client_certificates_total",
      "auth_decisions_total",
      "backend_connections",
      "backend_queue_length",
      "backend_queue_wait_seconds",
      "backend_retries_total",
      "backend_failures_total",
      "backend_response_seconds",
      "trust_store_cas",
      "trust_store_crls",
      "trust_store_generation",
      "trust_store_crl_next_update_soonest_timestamp_seconds",
      "crl_next_update_timestamp_seconds",
      "tls_reloads_total",
      "tls_last_reload_success_timestamp_seconds",
      "access_log_lines_total",
      "user_map_users",
      "user_map_dns",
      "user_map_generation",
      "user_map_loads_total",
      "user_map_last_load_success_timestamp_seconds",
      "hmac_key_loads_total",
  };
  ASSERT_EQ(expected.size(), kFamilyCount);
  for (std::size_t i = 0; i < kFamilyCount; ++i) {
    EXPECT_EQ(info(static_cast<Family>(i)).name, "cmsfront_" + std::string(expected[i]));
  }
}

TEST(Catalog, LabelsAreTheDocumentedOnes) {
  using V = std::vector<std::string_view>;
  EXPECT_EQ(info(Family::requests_total).labels, (V{"route", "method", "status_class"}));
  EXPECT_EQ(info(Family::tls_handshakes_total).labels, (V{"profile", "result"}));
  EXPECT_EQ(info(Family::backend_connections).labels, (V{"backend", "state"}));
  EXPECT_EQ(info(Family::crl_next_update_timestamp_seconds).labels, (V{"profile", "file"}));
  EXPECT_EQ(info(Family::tls_reloads_total).labels, (V{"profile", "what", "result"}));
  EXPECT_EQ(info(Family::build_info).labels, (V{"version", "openssl"}));
  EXPECT_EQ(info(Family::access_log_lines_total).labels, (V{"result"}));
}

// ---- FamilyBuilder ----------------------------------------------------------------------------

std::string serialize(const std::vector<prometheus::MetricFamily>& families) {
  return prometheus::TextSerializer().Serialize(families);
}

TEST(FamilyBuilder, CounterFamilyCarriesCatalogNameHelpTypeAndLabels) {
  FamilyBuilder builder(Family::requests_total);
  builder.counter({"reqmgr2", "GET", "2xx"}, 12);
  builder.counter({"reqmgr2", "POST", "5xx"}, 1);
  const prometheus::MetricFamily family = builder.take();
  EXPECT_EQ(family.name, "cmsfront_requests_total");
  EXPECT_EQ(family.help, info(Family::requests_total).help);
  EXPECT_EQ(family.type, prometheus::MetricType::Counter);
  ASSERT_EQ(family.metric.size(), 2u);
  const auto& labels = family.metric[0].label;
  ASSERT_EQ(labels.size(), 3u);
  EXPECT_EQ(labels[0].name, "route");
  EXPECT_EQ(labels[0].value, "reqmgr2");
  EXPECT_EQ(labels[1].name, "method");
  EXPECT_EQ(labels[1].value, "GET");
  EXPECT_EQ(labels[2].name, "status_class");
  EXPECT_EQ(labels[2].value, "2xx");
  EXPECT_EQ(family.metric[0].counter.value, 12);
  EXPECT_EQ(family.metric[1].counter.value, 1);
  EXPECT_NE(
      serialize({family}).find(
          "cmsfront_requests_total{route=\"reqmgr2\",method=\"POST\",status_class=\"5xx\"} 1"),
      std::string::npos);
}

TEST(FamilyBuilder, GaugeFamily) {
  FamilyBuilder builder(Family::backend_connections);
  builder.gauge({"couchdb", "idle"}, 3);
  const auto family = builder.take();
  EXPECT_EQ(family.type, prometheus::MetricType::Gauge);
  ASSERT_EQ(family.metric.size(), 1u);
  EXPECT_EQ(family.metric[0].gauge.value, 3);
  EXPECT_EQ(family.metric[0].label[1].name, "state");
  EXPECT_EQ(family.metric[0].label[1].value, "idle");
}

TEST(FamilyBuilder, HistogramFamilyHasEveryBucketAndInf) {
  HistogramSet set(1, 1, {0.1, 1});
  set.observe(0, 0, 0.05);
  set.observe(0, 0, 0.5);
  set.observe(0, 0, 5);
  FamilyBuilder builder(Family::request_duration_seconds);
  builder.histogram({"reqmgr2"}, set.snapshot(0), set.bounds());
  const auto family = builder.take();
  EXPECT_EQ(family.type, prometheus::MetricType::Histogram);
  ASSERT_EQ(family.metric.size(), 1u);
  const auto& h = family.metric[0].histogram;
  EXPECT_EQ(h.sample_count, 3u);
  EXPECT_NEAR(h.sample_sum, 5.55, 1e-9);
  ASSERT_EQ(h.bucket.size(), 3u);
  EXPECT_EQ(h.bucket[0].upper_bound, 0.1);
  EXPECT_EQ(h.bucket[0].cumulative_count, 1u);
  EXPECT_EQ(h.bucket[1].upper_bound, 1);
  EXPECT_EQ(h.bucket[1].cumulative_count, 2u);
  EXPECT_TRUE(std::isinf(h.bucket[2].upper_bound));
  EXPECT_EQ(h.bucket[2].cumulative_count, 3u);

  // Exactly one +Inf line in the exposition: the serializer must not add a second one.
  const std::string text = serialize({family});
  const std::string inf =
      "cmsfront_request_duration_seconds_bucket{route=\"reqmgr2\",le=\"+Inf\"} 3";
  const auto at = text.find(inf);
  ASSERT_NE(at, std::string::npos) << text;
  EXPECT_EQ(text.find(inf, at + 1), std::string::npos) << text;
  EXPECT_NE(text.find("cmsfront_request_duration_seconds_count{route=\"reqmgr2\"} 3"),
            std::string::npos)
      << text;
}

TEST(FamilyBuilder, TakeLeavesAnEmptyReusableBuilder) {
  FamilyBuilder builder(Family::access_log_lines_total);
  builder.counter({"written"}, 5);
  EXPECT_FALSE(builder.empty());
  EXPECT_EQ(builder.take().metric.size(), 1u);
  EXPECT_TRUE(builder.empty());
  builder.counter({"dropped"}, 1);
  const auto again = builder.take();
  EXPECT_EQ(again.name, "cmsfront_access_log_lines_total");
  ASSERT_EQ(again.metric.size(), 1u);
  EXPECT_EQ(again.metric[0].label[0].value, "dropped");
}

#ifndef NDEBUG
TEST(FamilyBuilderDeathTest, WrongLabelCountAsserts) {
  FamilyBuilder builder(Family::requests_total);
  EXPECT_DEATH(builder.counter({"only-route"}, 1), "");
}
#endif

// ---- Exporter ---------------------------------------------------------------------------------

// A plain HTTP/1.0 GET over a raw socket; returns the whole response ("" if it cannot connect).
std::string http_get(int port, const std::string& path) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return "";
  timeval timeout{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string response;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    const std::string request = "GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) ==
        static_cast<ssize_t>(request.size())) {
      char buffer[4096];
      for (ssize_t n; (n = ::recv(fd, buffer, sizeof buffer, 0)) > 0;) {
        response.append(buffer, static_cast<std::size_t>(n));
      }
    }
  }
  ::close(fd);
  return response;
}

std::vector<prometheus::MetricFamily> sample_families() {
  FamilyBuilder requests(Family::requests_total);
  requests.counter({"reqmgr2", "GET", "2xx"}, 7);
  HistogramSet durations(1, 1, latency_buckets());
  durations.observe(0, 0, 0.02);
  FamilyBuilder duration(Family::request_duration_seconds);
  duration.histogram({"reqmgr2"}, durations.snapshot(0), durations.bounds());
  FamilyBuilder build(Family::build_info);
  build.gauge({"0.1.0", "OpenSSL 3.0.11"}, 1);
  return {build.take(), requests.take(), duration.take()};
}

std::unique_ptr<Exporter> start_or_fail(const std::string& address, Exporter::Collect collect) {
  auto started = Exporter::start(address, "/metrics", std::move(collect));
  if (auto* message = std::get_if<std::string>(&started)) {
    ADD_FAILURE() << *message;
    return nullptr;
  }
  return std::move(std::get<std::unique_ptr<Exporter>>(started));
}

TEST(Exporter, ServesTextExpositionOnAnEphemeralPort) {
  auto exporter = start_or_fail("127.0.0.1:0", sample_families);
  ASSERT_NE(exporter, nullptr);
  ASSERT_GT(exporter->port(), 0);
  const std::string response = http_get(exporter->port(), "/metrics");
  EXPECT_EQ(response.rfind("HTTP/1.1 200", 0), 0u) << response;
  EXPECT_NE(response.find("# TYPE cmsfront_requests_total counter"), std::string::npos);
  EXPECT_NE(response.find(
                "cmsfront_requests_total{route=\"reqmgr2\",method=\"GET\",status_class=\"2xx\"} 7"),
            std::string::npos)
      << response;
  EXPECT_NE(response.find("# TYPE cmsfront_request_duration_seconds histogram"), std::string::npos);
  EXPECT_NE(
      response.find("cmsfront_request_duration_seconds_bucket{route=\"reqmgr2\",le=\"0.025\"} 1"),
      std::string::npos)
      << response;

  // promtool is optional (apt package "prometheus"): lint the exposition when it is there.
  if (::access("/usr/bin/promtool", X_OK) == 0) {
    const auto body_at = response.find("\r\n\r\n");
    ASSERT_NE(body_at, std::string::npos);
    const std::string file = ::testing::TempDir() + "cmsfront_metrics.txt";
    std::ofstream(file) << response.substr(body_at + 4);
    const std::string command = "/usr/bin/promtool check metrics < " + file;
    EXPECT_EQ(std::system(command.c_str()), 0) << response;
    std::remove(file.c_str());
  }
}

TEST(Exporter, CallsCollectOnEveryScrape) {
  std::atomic<int> calls{0};
  auto exporter = start_or_fail("127.0.0.1:0", [&calls] {
    FamilyBuilder builder(Family::access_log_lines_total);
    builder.counter({"written"}, ++calls);
    return std::vector<prometheus::MetricFamily>{builder.take()};
  });
  ASSERT_NE(exporter, nullptr);
  EXPECT_NE(http_get(exporter->port(), "/metrics").find("{result=\"written\"} 1"),
            std::string::npos);
  EXPECT_NE(http_get(exporter->port(), "/metrics").find("{result=\"written\"} 2"),
            std::string::npos);
}

TEST(Exporter, SecondExporterOnTheSamePortReturnsAMessage) {
  auto first = start_or_fail("127.0.0.1:0", sample_families);
  ASSERT_NE(first, nullptr);
  const std::string address = "127.0.0.1:" + std::to_string(first->port());
  auto second = Exporter::start(address, "/metrics", sample_families);
  ASSERT_TRUE(std::holds_alternative<std::string>(second));
  EXPECT_NE(std::get<std::string>(second).find(address), std::string::npos)
      << std::get<std::string>(second);
  // The first one keeps serving.
  EXPECT_NE(http_get(first->port(), "/metrics").find("cmsfront_build_info"), std::string::npos);
}

TEST(Exporter, ThrowingCollectGivesAnEmptyScrapeNotACrash) {
  auto exporter = start_or_fail("127.0.0.1:0", []() -> std::vector<prometheus::MetricFamily> {
    throw std::runtime_error("collector bug");
  });
  ASSERT_NE(exporter, nullptr);
  const std::string response = http_get(exporter->port(), "/metrics");
  EXPECT_EQ(response.rfind("HTTP/1.1 200", 0), 0u) << response;
  EXPECT_EQ(response.find("cmsfront_"), std::string::npos) << response;
}

TEST(Exporter, RejectsAPathWithoutLeadingSlashAndAMissingCollect) {
  EXPECT_TRUE(std::holds_alternative<std::string>(
      Exporter::start("127.0.0.1:0", "metrics", sample_families)));
  EXPECT_TRUE(std::holds_alternative<std::string>(Exporter::start("127.0.0.1:0", "/metrics", {})));
}

TEST(Exporter, AnUnusableAddressReturnsAMessageNamingIt) {
  for (const std::string address : {"not-an-address:x", "[::1]:0"}) {
    auto started = Exporter::start(address, "/metrics", sample_families);
    if (address == "[::1]:0" && started.index() == 0) continue;  // civetweb built with IPv6
    ASSERT_TRUE(std::holds_alternative<std::string>(started)) << address;
    EXPECT_NE(std::get<std::string>(started).find(address), std::string::npos)
        << std::get<std::string>(started);
  }
}

TEST(Exporter, StopsServingPromptlyWhenDestroyed) {
  auto exporter = start_or_fail("127.0.0.1:0", sample_families);
  ASSERT_NE(exporter, nullptr);
  const int port = exporter->port();
  const auto before = std::chrono::steady_clock::now();
  exporter.reset();
  // Civetweb alone needs up to 2 s (its accept poll timeout) to notice the stop.
  EXPECT_LT(std::chrono::steady_clock::now() - before, std::chrono::milliseconds(1500));
  EXPECT_EQ(http_get(port, "/metrics"), "");
}

}  // namespace
}  // namespace metrics
