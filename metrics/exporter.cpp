#include "metrics/exporter.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CivetServer.h>
#include <civetweb.h>

#include <chrono>
#include <cstdint>
#include <exception>
#include <optional>
#include <string>
#include <thread>
#include <utility>

#include "prometheus/collectable.h"
#include "prometheus/exposer.h"

namespace metrics {
namespace {

// Adapts the proxy's collect function to prometheus-cpp. Owned by the Exporter (shared only
// because Exposer insists on a weak_ptr); Collect() runs on civetweb threads.
class CallbackCollectable final : public prometheus::Collectable {
 public:
  explicit CallbackCollectable(Exporter::Collect collect) : collect_(std::move(collect)) {}

  std::vector<prometheus::MetricFamily> Collect() const override {
    // An exception would unwind into civetweb's C code and terminate the proxy; an empty
    // scrape is visible to monitoring (every series goes stale) without taking traffic down.
    try {
      return collect_();
    } catch (...) {
      return {};
    }
  }

 private:
  Exporter::Collect collect_;
};

// Civetweb answers each request on one of these; two let a slow scrape overlap a health probe.
constexpr std::size_t kHttpThreads = 2;

// CivetServer's exception only says "possible problem binding to port"; the reason (address
// in use, bad address, bad syntax) goes to civetweb's log callback, which runs synchronously
// on the thread calling mg_start. start() points this at a string for that call only; on
// civetweb's own threads it stays null and civetweb's default handling applies.
thread_local std::string* start_errors = nullptr;

int capture_log(const mg_connection* /*connection*/, const char* message) {
  if (start_errors == nullptr) return 0;
  if (start_errors->empty()) *start_errors = message;  // the first line is the cause
  return 1;
}

const CivetCallbacks& callbacks() {
  static const CivetCallbacks instance = [] {
    CivetCallbacks c;
    c.log_message = capture_log;
    return c;
  }();
  return instance;
}

constexpr unsigned kCivetFeatureIpv6 = 8;  // MG_FEATURES_IPV6 in civetweb.h

// The loopback-reachable IPv4 address of a "host:port" / "port" listen spec, for wake_master.
std::optional<std::uint32_t> local_address(const std::string& spec) {
  const auto colon = spec.rfind(':');
  std::string host = colon == std::string::npos ? "" : spec.substr(0, colon);
  if (host.empty() || host == "0.0.0.0") host = "127.0.0.1";
  in_addr addr{};
  if (::inet_pton(AF_INET, host.c_str(), &addr) != 1) return std::nullopt;
  return addr.s_addr;
}

// Civetweb's accept thread polls its listening socket with a 2 s timeout and only then sees
// the stop flag, so mg_stop takes up to 2 s. Connecting to the socket while it stops wakes the
// poll at once: shutdown (and every test that starts an exporter) is not delayed.
void wake_master(const std::stop_token& stop, std::uint32_t host, int port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  addr.sin_addr.s_addr = host;
  while (!stop.stop_requested()) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return;
    (void)::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
    ::close(fd);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

}  // namespace

std::variant<std::unique_ptr<Exporter>, std::string> Exporter::start(const std::string& address,
                                                                     const std::string& path,
                                                                     Collect collect) {
  if (!collect) return std::string("metrics: no collect function");
  if (path.empty() || path.front() != '/') {
    return "metrics: path \"" + path + "\" must start with '/'";
  }
  if (address.starts_with('[') && mg_check_feature(kCivetFeatureIpv6) == 0) {
    return "metrics: cannot listen on " + address +
           ": this civetweb library was built without IPv6 support";
  }
  std::unique_ptr<prometheus::Exposer> exposer;
  std::string errors;
  try {
    // CivetServer's constructor throws CivetException (a std::runtime_error) when it cannot
    // bind; Exposer lets it through.
    start_errors = &errors;
    exposer = std::make_unique<prometheus::Exposer>(address, kHttpThreads, &callbacks());
    start_errors = nullptr;
  } catch (const std::exception& e) {
    start_errors = nullptr;
    return "metrics: cannot listen on " + address + ": " + (errors.empty() ? e.what() : errors);
  }
  auto collectable = std::make_shared<CallbackCollectable>(std::move(collect));
  exposer->RegisterCollectable(collectable, path);
  const std::vector<int> ports = exposer->GetListeningPorts();
  const int port = ports.empty() ? 0 : ports.front();
  return std::make_unique<Exporter>(Key{}, std::move(collectable), std::move(exposer), port,
                                    local_address(address));
}

Exporter::Exporter(Key /*key*/, std::shared_ptr<prometheus::Collectable> collectable,
                   std::unique_ptr<prometheus::Exposer> exposer, int port,
                   std::optional<std::uint32_t> wake_address)
    : collectable_(std::move(collectable)),
      exposer_(std::move(exposer)),
      port_(port),
      wake_address_(wake_address) {}

Exporter::~Exporter() {
  // Stop serving (joins civetweb's threads, so no scrape is still inside collect) before the
  // collectable and whatever its function captured go away. The waker only shortens mg_stop;
  // it is stopped and joined when it goes out of scope, after the exposer is gone.
  std::jthread waker;
  if (wake_address_ && port_ > 0) waker = std::jthread(wake_master, *wake_address_, port_);
  exposer_.reset();
}

}  // namespace metrics
