#include "proxy/observability.h"

#include <prometheus/metric_family.h>

#include <algorithm>
#include <array>
#include <ctime>
#include <limits>

#include "metrics/catalog.h"
#include "metrics/family_builder.h"
#include "proxy/cms_identity.h"
#include "proxy/runtime.h"
#include "version.h"

namespace proxy {
namespace {

using Seconds = std::chrono::duration<double>;

constexpr std::size_t kMethods = 8;        // http1::Method, `other` last
constexpr std::size_t kStatusClasses = 6;  // 1xx..5xx, then "none" (no response started)
constexpr std::array<std::string_view, kStatusClasses> kStatusClassNames = {"1xx", "2xx", "3xx",
                                                                            "4xx", "5xx", "none"};
constexpr std::size_t kKinds = 4;  // tls::CredentialKind
constexpr std::array<std::string_view, kKinds> kAuthMethods = {"None", "X509Cert", "X509Proxy",
                                                               "X509LimitedProxy"};
// Results of an auth decision: allowed (authenticated or not), or why it was refused.
constexpr std::array<std::string_view, 16> kAuthResults = {
    "ok",        "anonymous",       "no_certificate", "expired",      "not_yet_valid",
    "revoked",   "unknown_ca",      "crl_missing",    "crl_expired",  "bad_signature",
    "bad_proxy", "proxy_forbidden", "unknown_user",   "bad_identity", "limited_proxy",
    "invalid"};
constexpr std::size_t kOutcomes = 12;  // tls::VerifyOutcome
constexpr std::size_t kFailures = static_cast<std::size_t>(Failure::shutting_down) + 1;
constexpr std::size_t kHandshakeResults = static_cast<std::size_t>(HandshakeResult::count_);
constexpr std::array<std::string_view, kHandshakeResults> kHandshakeResultNames = {"ok", "failed",
                                                                                   "timeout"};
constexpr std::size_t kProtocols = static_cast<std::size_t>(ConnectionProtocol::count_);
constexpr std::array<std::string_view, kProtocols> kProtocolNames = {"https", "http"};
constexpr std::size_t kStates = static_cast<std::size_t>(BackendState::count_);
constexpr std::array<std::string_view, kStates> kStateNames = {"connecting", "idle", "busy",
                                                               "closing"};
constexpr std::size_t kReloadWhats = static_cast<std::size_t>(TlsReloadWhat::count_);
constexpr std::array<std::string_view, kReloadWhats> kReloadWhatNames = {
    "trust_store", "certificates", "ticket_keys"};

std::size_t status_class(int status) {
  return status >= 100 && status < 600 ? static_cast<std::size_t>(status / 100 - 1)
                                       : kStatusClasses - 1;
}

std::string text(std::string_view view) { return std::string(view); }

}  // namespace

Observability::Observability(const Config& config, std::size_t workers,
                             std::unique_ptr<AccessLog> access_log)
    : config_(config),
      workers_(workers),
      routes_(config.routes.size() + 1),
      backends_(std::max<std::size_t>(config.backends.size(), 1)),
      profiles_(std::max<std::size_t>(config.tls.size(), 1)),
      requests_(workers, routes_ * kMethods * kStatusClasses),
      request_seconds_(workers, routes_, metrics::latency_buckets()),
      bytes_(workers, routes_ * 2),
      connections_(workers, kProtocols * 2),
      handshakes_(workers, profiles_ * kHandshakeResults),
      resumptions_(workers, profiles_),
      handshake_seconds_(workers, profiles_, metrics::latency_buckets()),
      certificates_(workers, profiles_ * kOutcomes),
      auth_(workers, routes_ * kKinds * kAuthResults.size()),
      queue_seconds_(workers, backends_, metrics::latency_buckets()),
      response_seconds_(workers, backends_, metrics::latency_buckets()),
      retries_(workers, backends_),
      backend_failures_(workers, backends_ * kFailures),
      backend_states_(workers, backends_ * kStates * 2),
      tls_reloads_(1, profiles_ * kReloadWhats * 2),
      last_reload_ok_(profiles_ * kReloadWhats),
      access_log_(std::move(access_log)) {
  for (std::size_t i = 0; i < config.routes.size(); ++i) {
    route_names_.push_back(config.routes.rule(i).name);
  }
  route_names_.push_back("none");  // requests no route took (local answers, errors)
  for (const auto& [name, profile] : config.tls) profile_names_.push_back(name);
  if (profile_names_.empty()) profile_names_.push_back("none");
  const std::int64_t now = std::time(nullptr);
  for (auto& value : last_reload_ok_) value.store(now, std::memory_order_relaxed);
}

Observability::~Observability() = default;

std::size_t Observability::request_slot(std::size_t route, std::size_t method,
                                        std::size_t status) const {
  return (route * kMethods + method) * kStatusClasses + status;
}

void Observability::request_finished(std::size_t worker, const RequestRecord& record,
                                     http1::Method method) {
  const std::size_t route = record.route < routes_ - 1 ? record.route : routes_ - 1;
  const auto method_index = std::min<std::size_t>(static_cast<std::size_t>(method), kMethods - 1);
  requests_.add(worker, request_slot(route, method_index, status_class(record.status)));
  request_seconds_.observe(worker, route, static_cast<double>(record.duration_us) / 1e6);
  bytes_.add(worker, route * 2, record.bytes_in);
  bytes_.add(worker, route * 2 + 1, record.bytes_out);
  if (access_log_) access_log_->log(worker, record);
}

void Observability::handshake_finished(std::size_t worker, std::size_t profile,
                                       HandshakeResult result,
                                       std::chrono::steady_clock::duration took, bool resumed,
                                       tls::VerifyOutcome certificate) {
  profile = std::min(profile, profiles_ - 1);
  handshakes_.add(worker, profile * kHandshakeResults + static_cast<std::size_t>(result));
  if (result != HandshakeResult::ok) return;
  handshake_seconds_.observe(worker, profile, std::chrono::duration_cast<Seconds>(took).count());
  if (resumed) resumptions_.add(worker, profile);
  certificates_.add(
      worker, profile * kOutcomes +
                  std::min<std::size_t>(static_cast<std::size_t>(certificate), kOutcomes - 1));
}

void Observability::auth_decided(std::size_t worker, std::size_t route, tls::CredentialKind kind,
                                 std::string_view result) {
  route = std::min(route, routes_ - 1);
  std::size_t index = kAuthResults.size() - 1;
  for (std::size_t i = 0; i < kAuthResults.size(); ++i) {
    if (kAuthResults[i] == result) {
      index = i;
      break;
    }
  }
  const auto kind_index = std::min<std::size_t>(static_cast<std::size_t>(kind), kKinds - 1);
  auth_.add(worker, (route * kKinds + kind_index) * kAuthResults.size() + index);
}

void Observability::backend_exchange(std::size_t worker, std::size_t backend,
                                     std::chrono::steady_clock::duration queued,
                                     std::chrono::steady_clock::duration response, bool answered,
                                     Failure failure, bool retried) {
  if (backend >= backends_) return;
  queue_seconds_.observe(worker, backend, std::chrono::duration_cast<Seconds>(queued).count());
  if (answered) {
    response_seconds_.observe(worker, backend,
                              std::chrono::duration_cast<Seconds>(response).count());
  }
  if (retried) retries_.add(worker, backend);
  if (failure != Failure::none) {
    backend_failures_.add(worker, backend * kFailures + static_cast<std::size_t>(failure));
  }
}

void Observability::connection_opened(std::size_t worker, ConnectionProtocol protocol) {
  connections_.add(worker, static_cast<std::size_t>(protocol) * 2);
}

void Observability::connection_closed(std::size_t worker, ConnectionProtocol protocol) {
  connections_.add(worker, static_cast<std::size_t>(protocol) * 2 + 1);
}

void Observability::backend_connection(std::size_t worker, std::size_t backend, BackendState from,
                                       BackendState to) {
  if (backend >= backends_) return;
  if (from != BackendState::count_) {
    backend_states_.add(worker, (backend * kStates + static_cast<std::size_t>(from)) * 2 + 1);
  }
  if (to != BackendState::count_) {
    backend_states_.add(worker, (backend * kStates + static_cast<std::size_t>(to)) * 2);
  }
}

void Observability::tls_reloaded(std::size_t profile, TlsReloadWhat what, bool ok) {
  profile = std::min(profile, profiles_ - 1);
  const std::size_t slot = profile * kReloadWhats + static_cast<std::size_t>(what);
  tls_reloads_.add(0, slot * 2 + (ok ? 0 : 1));
  if (ok) last_reload_ok_[slot].store(std::time(nullptr), std::memory_order_relaxed);
}

std::vector<prometheus::MetricFamily> Observability::collect(const Runtime& runtime) const {
  using metrics::Family;
  using metrics::FamilyBuilder;
  std::vector<prometheus::MetricFamily> families;
  const auto as_double = [](std::uint64_t value) { return static_cast<double>(value); };

  FamilyBuilder build(Family::build_info);
  build.gauge({CMSFRONT_VERSION, OPENSSL_VERSION_TEXT}, 1);
  families.push_back(build.take());

  FamilyBuilder requests(Family::requests_total);
  FamilyBuilder request_seconds(Family::request_duration_seconds);
  FamilyBuilder request_bytes(Family::request_bytes_total);
  FamilyBuilder response_bytes(Family::response_bytes_total);
  for (std::size_t route = 0; route < routes_; ++route) {
    for (std::size_t method = 0; method < kMethods; ++method) {
      for (std::size_t status = 0; status < kStatusClasses; ++status) {
        const std::uint64_t count = requests_.total(request_slot(route, method, status));
        if (count == 0) continue;  // only combinations that happened
        requests.counter(
            {route_names_[route], text(http1::method_name(static_cast<http1::Method>(method))),
             text(kStatusClassNames[status])},
            as_double(count));
      }
    }
    request_seconds.histogram({route_names_[route]}, request_seconds_.snapshot(route),
                              request_seconds_.bounds());
    request_bytes.counter({route_names_[route]}, as_double(bytes_.total(route * 2)));
    response_bytes.counter({route_names_[route]}, as_double(bytes_.total(route * 2 + 1)));
  }
  families.push_back(requests.take());
  families.push_back(request_seconds.take());
  families.push_back(request_bytes.take());
  families.push_back(response_bytes.take());

  FamilyBuilder connections(Family::client_connections);
  for (std::size_t protocol = 0; protocol < kProtocols; ++protocol) {
    const auto opened = connections_.total(protocol * 2);
    const auto closed = connections_.total(protocol * 2 + 1);
    connections.gauge({text(kProtocolNames[protocol])},
                      opened >= closed ? as_double(opened - closed) : 0.0);
  }
  families.push_back(connections.take());

  FamilyBuilder handshakes(Family::tls_handshakes_total);
  FamilyBuilder resumptions(Family::tls_resumptions_total);
  FamilyBuilder handshake_seconds(Family::tls_handshake_duration_seconds);
  FamilyBuilder certificates(Family::client_certificates_total);
  for (std::size_t profile = 0; profile < profiles_; ++profile) {
    const std::string& name = profile_names_[profile];
    for (std::size_t result = 0; result < kHandshakeResults; ++result) {
      handshakes.counter({name, text(kHandshakeResultNames[result])},
                         as_double(handshakes_.total(profile * kHandshakeResults + result)));
    }
    resumptions.counter({name}, as_double(resumptions_.total(profile)));
    handshake_seconds.histogram({name}, handshake_seconds_.snapshot(profile),
                                handshake_seconds_.bounds());
    for (std::size_t outcome = 0; outcome < kOutcomes; ++outcome) {
      const std::uint64_t count = certificates_.total(profile * kOutcomes + outcome);
      if (count == 0) continue;
      certificates.counter(
          {name, text(tls::outcome_label(static_cast<tls::VerifyOutcome>(outcome)))},
          as_double(count));
    }
  }
  families.push_back(handshakes.take());
  families.push_back(resumptions.take());
  families.push_back(handshake_seconds.take());
  families.push_back(certificates.take());

  FamilyBuilder auth(Family::auth_decisions_total);
  for (std::size_t route = 0; route < routes_; ++route) {
    for (std::size_t kind = 0; kind < kKinds; ++kind) {
      for (std::size_t result = 0; result < kAuthResults.size(); ++result) {
        const std::uint64_t count =
            auth_.total((route * kKinds + kind) * kAuthResults.size() + result);
        if (count == 0) continue;
        auth.counter({route_names_[route], text(kAuthMethods[kind]), text(kAuthResults[result])},
                     as_double(count));
      }
    }
  }
  families.push_back(auth.take());

  FamilyBuilder backend_connections(Family::backend_connections);
  FamilyBuilder queue_length(Family::backend_queue_length);
  FamilyBuilder queue_seconds(Family::backend_queue_wait_seconds);
  FamilyBuilder retries(Family::backend_retries_total);
  FamilyBuilder failures(Family::backend_failures_total);
  FamilyBuilder response_seconds(Family::backend_response_seconds);
  for (std::size_t backend = 0; backend < config_.backends.size(); ++backend) {
    const std::string& name = config_.backends[backend].name;
    for (std::size_t state = 0; state < kStates; ++state) {
      const auto entered = backend_states_.total((backend * kStates + state) * 2);
      const auto left = backend_states_.total((backend * kStates + state) * 2 + 1);
      backend_connections.gauge({name, text(kStateNames[state])},
                                entered >= left ? as_double(entered - left) : 0.0);
    }
    queue_length.gauge(
        {name},
        backend < runtime.backends.size()
            ? static_cast<double>(runtime.backends[backend]->queued.load(std::memory_order_relaxed))
            : 0.0);
    queue_seconds.histogram({name}, queue_seconds_.snapshot(backend), queue_seconds_.bounds());
    response_seconds.histogram({name}, response_seconds_.snapshot(backend),
                               response_seconds_.bounds());
    retries.counter({name}, as_double(retries_.total(backend)));
    for (std::size_t failure = 1; failure < kFailures; ++failure) {
      const std::uint64_t count = backend_failures_.total(backend * kFailures + failure);
      if (count == 0) continue;
      failures.counter({name, text(failure_info(static_cast<Failure>(failure)).label)},
                       as_double(count));
    }
  }
  families.push_back(backend_connections.take());
  families.push_back(queue_length.take());
  families.push_back(queue_seconds.take());
  families.push_back(retries.take());
  families.push_back(failures.take());
  families.push_back(response_seconds.take());

  FamilyBuilder cas(Family::trust_store_cas);
  FamilyBuilder crls(Family::trust_store_crls);
  FamilyBuilder generation(Family::trust_store_generation);
  FamilyBuilder soonest(Family::trust_store_crl_next_update_soonest_timestamp_seconds);
  FamilyBuilder next_update(Family::crl_next_update_timestamp_seconds);
  for (const auto& profile : runtime.tls_profiles) {
    const std::shared_ptr<const tls::TrustStore> store = profile->trust_store();
    if (!store) continue;
    const std::string& name = profile->profile().name;
    cas.gauge({name}, static_cast<double>(store->ca_count()));
    crls.gauge({name}, static_cast<double>(store->crls().size()));
    generation.gauge({name}, static_cast<double>(store->generation()));
    std::int64_t earliest = 0;
    for (const tls::CrlInfo& crl : store->crls()) {
      if (crl.next_update == 0) continue;
      earliest = earliest == 0 ? crl.next_update : std::min(earliest, crl.next_update);
      const std::size_t slash = crl.file.rfind('/');
      next_update.gauge({name, slash == std::string::npos ? crl.file : crl.file.substr(slash + 1)},
                        static_cast<double>(crl.next_update));
    }
    if (earliest != 0) soonest.gauge({name}, static_cast<double>(earliest));
  }
  families.push_back(cas.take());
  families.push_back(crls.take());
  families.push_back(generation.take());
  families.push_back(soonest.take());
  families.push_back(next_update.take());

  FamilyBuilder reloads(Family::tls_reloads_total);
  FamilyBuilder last_ok(Family::tls_last_reload_success_timestamp_seconds);
  for (std::size_t profile = 0; profile < profile_names_.size(); ++profile) {
    for (std::size_t what = 0; what < kReloadWhats; ++what) {
      const std::size_t slot = profile * kReloadWhats + what;
      const std::string& name = profile_names_[profile];
      reloads.counter({name, text(kReloadWhatNames[what]), "ok"},
                      as_double(tls_reloads_.total(slot * 2)));
      reloads.counter({name, text(kReloadWhatNames[what]), "failed"},
                      as_double(tls_reloads_.total(slot * 2 + 1)));
      last_ok.gauge({name, text(kReloadWhatNames[what])},
                    static_cast<double>(last_reload_ok_[slot].load(std::memory_order_relaxed)));
    }
  }
  families.push_back(reloads.take());
  families.push_back(last_ok.take());

  FamilyBuilder lines(Family::access_log_lines_total);
  lines.counter({"written"}, access_log_ ? as_double(access_log_->written()) : 0.0);
  lines.counter({"dropped"}, access_log_ ? as_double(access_log_->dropped()) : 0.0);
  families.push_back(lines.take());
  if (runtime.cms_identity) collect_user_map(runtime.cms_identity->status(), families);
  return families;
}

void Observability::collect_user_map(const CmsIdentityStatus& status,
                                     std::vector<prometheus::MetricFamily>& families) {
  using metrics::Family;
  using metrics::FamilyBuilder;
  const auto as_double = [](std::uint64_t value) { return static_cast<double>(value); };
  FamilyBuilder users(Family::user_map_users);
  users.gauge({}, static_cast<double>(status.users));
  families.push_back(users.take());
  FamilyBuilder dns(Family::user_map_dns);
  dns.gauge({}, static_cast<double>(status.dns));
  families.push_back(dns.take());
  FamilyBuilder generation(Family::user_map_generation);
  generation.gauge({}, static_cast<double>(status.generation));
  families.push_back(generation.take());
  constexpr std::array<std::string_view, kUserMapLoadResults> kResults = {"ok", "failed",
                                                                          "refused"};
  FamilyBuilder loads(Family::user_map_loads_total);
  FamilyBuilder last_ok(Family::user_map_last_load_success_timestamp_seconds);
  for (std::size_t source = 0; source < kUserMapSources; ++source) {
    const std::string name(user_map_source_name(static_cast<UserMapSource>(source)));
    for (std::size_t result = 0; result < kUserMapLoadResults; ++result) {
      loads.counter({name, std::string(kResults[result])}, as_double(status.loads[source][result]));
    }
    last_ok.gauge({name}, status.last_success[source]);
  }
  families.push_back(loads.take());
  families.push_back(last_ok.take());
  FamilyBuilder key_loads(Family::hmac_key_loads_total);
  key_loads.counter({"ok"}, as_double(status.key_reloads_ok));
  key_loads.counter({"failed"}, as_double(status.key_reloads_failed));
  families.push_back(key_loads.take());
}

}  // namespace proxy
