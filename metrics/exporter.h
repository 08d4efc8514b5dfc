// The metrics HTTP endpoint: prometheus-cpp's Exposer (civetweb) on its own threads.
//
// Each scrape calls `collect` on one of the exposer's threads; the collect function sums the
// workers' shards and builds families with FamilyBuilder, so the proxy's event loops never
// see a scrape. Ownership: the proxy owns the Exporter for its whole run; destroying it stops
// the HTTP threads (waiting for a scrape in progress) before `collect` is released, so whatever
// `collect` refers to must outlive the Exporter. start() and the destructor are called from
// the thread that owns it; port() from any thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "prometheus/metric_family.h"

namespace prometheus {
class Collectable;
class Exposer;
}  // namespace prometheus

namespace metrics {

// Serves the exposition over HTTP on its own threads (prometheus-cpp's civetweb), calling
// `collect` on each scrape.
class Exporter {
  struct Key {};  // start() is the only way to build one

 public:
  // Runs on an exposer thread, possibly on two at once for overlapping scrapes. An exception it
  // throws is swallowed and the scrape is answered with no families.
  using Collect = std::function<std::vector<prometheus::MetricFamily>()>;

  // address "127.0.0.1:9091" (or "9091" for all IPv4 interfaces), path "/metrics". A bind
  // failure (or any other failure to start) returns a message naming the address and, from
  // civetweb's log, the cause. "[::1]:9091" needs a civetweb built with IPv6; Debian 12's is
  // not, and such an address then returns a message saying so.
  static std::variant<std::unique_ptr<Exporter>, std::string> start(const std::string& address,
                                                                    const std::string& path,
                                                                    Collect collect);

  Exporter(Key, std::shared_ptr<prometheus::Collectable> collectable,
           std::unique_ptr<prometheus::Exposer> exposer, int port,
           std::optional<std::uint32_t> wake_address);
  ~Exporter();
  Exporter(const Exporter&) = delete;
  Exporter& operator=(const Exporter&) = delete;

  int port() const { return port_; }  // the bound port (useful with port 0)

 private:
  // Declared first so it is destroyed last: the Exposer holds only a weak_ptr to it.
  std::shared_ptr<prometheus::Collectable> collectable_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  int port_;
  std::optional<std::uint32_t> wake_address_;  // IPv4, network order: see wake_master()
};

}  // namespace metrics
