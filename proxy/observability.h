// What cmsfront tells operators: the Prometheus metrics (metrics/ holds the storage and the
// catalog of families; this class lays out the slots for this configuration and builds the
// families at scrape time) and the access log.
//
// Recording is lock-free and allocation-free: every slot index (route x method x status class,
// backend x reason, ...) is computed from small integers the caller already has, and each worker
// writes only its own shard. Gauges that the runtime already keeps (queue lengths, trust stores)
// are read at scrape time.
//
// Owner: the Runtime (created with it, destroyed after the workers). Threads: the record_*
// methods are called by worker `worker` only, or by the main thread where marked; collect() by
// the exporter's thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "metrics/sharded.h"
#include "proxy/access_log.h"
#include "proxy/config.h"
#include "proxy/failure.h"
#include "proxy/http1_parser.h"
#include "proxy/request_record.h"
#include "tls/client_identity.h"

namespace prometheus {
struct MetricFamily;
}

namespace proxy {

struct Runtime;
struct CmsIdentityStatus;

enum class HandshakeResult : std::uint8_t { ok, failed, timeout, count_ };
enum class ConnectionProtocol : std::uint8_t { https, http, count_ };
enum class BackendState : std::uint8_t { connecting, idle, busy, closing, count_ };
enum class TlsReloadWhat : std::uint8_t { trust_store, certificates, ticket_keys, count_ };

class Observability {
 public:
  // `access_log` may be null (no [access_log]). Slot counts come from `config`.
  Observability(const Config& config, std::size_t workers, std::unique_ptr<AccessLog> access_log);
  ~Observability();

  // --- worker threads ---------------------------------------------------------------------
  // Once per request, when it ends (answered, failed or abandoned): metrics and access log.
  void request_finished(std::size_t worker, const RequestRecord& record, http1::Method method);
  void handshake_finished(std::size_t worker, std::size_t profile, HandshakeResult result,
                          std::chrono::steady_clock::duration took, bool resumed,
                          tls::VerifyOutcome certificate);
  void auth_decided(std::size_t worker, std::size_t route, tls::CredentialKind kind,
                    std::string_view result);
  void backend_exchange(std::size_t worker, std::size_t backend,
                        std::chrono::steady_clock::duration queued,
                        std::chrono::steady_clock::duration response, bool answered,
                        Failure failure, bool retried);
  void connection_opened(std::size_t worker, ConnectionProtocol protocol);
  void connection_closed(std::size_t worker, ConnectionProtocol protocol);
  // A backend connection moved between states (`from` count_ = created, `to` count_ = gone).
  void backend_connection(std::size_t worker, std::size_t backend, BackendState from,
                          BackendState to);

  // --- main thread ------------------------------------------------------------------------
  void tls_reloaded(std::size_t profile, TlsReloadWhat what, bool ok);

  // --- any thread -------------------------------------------------------------------------
  // All families, for one scrape. `runtime` supplies the gauges it owns (queues, trust stores).
  std::vector<prometheus::MetricFamily> collect(const Runtime& runtime) const;

  AccessLog* access_log() const { return access_log_.get(); }

 private:
  static void collect_user_map(const CmsIdentityStatus& status,
                               std::vector<prometheus::MetricFamily>& families);
  std::size_t request_slot(std::size_t route, std::size_t method, std::size_t status_class) const;

  const Config& config_;
  std::size_t workers_;
  std::size_t routes_;    // route slots: every configured route plus one for "none"
  std::size_t backends_;  // backend groups
  std::size_t profiles_;  // TLS profiles, in the configuration's (sorted) order
  std::vector<std::string> route_names_;
  std::vector<std::string> profile_names_;

  metrics::CounterSet requests_;             // route x method class x status class
  metrics::HistogramSet request_seconds_;    // route
  metrics::CounterSet bytes_;                // route x {in, out}
  metrics::CounterSet connections_;          // protocol x {opened, closed}
  metrics::CounterSet handshakes_;           // profile x result
  metrics::CounterSet resumptions_;          // profile
  metrics::HistogramSet handshake_seconds_;  // profile
  metrics::CounterSet certificates_;         // profile x outcome
  metrics::CounterSet auth_;                 // route x kind x {allowed, denied}
  metrics::HistogramSet queue_seconds_;      // backend
  metrics::HistogramSet response_seconds_;   // backend
  metrics::CounterSet retries_;              // backend
  metrics::CounterSet backend_failures_;     // backend x failure
  metrics::CounterSet backend_states_;       // backend x state x {entered, left}
  // Main thread only writes these (one shard).
  metrics::CounterSet tls_reloads_;                        // profile x what x {ok, failed}
  std::vector<std::atomic<std::int64_t>> last_reload_ok_;  // profile x what, unix seconds
  std::unique_ptr<AccessLog> access_log_;
};

}  // namespace proxy
