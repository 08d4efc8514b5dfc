// What all workers share for the lifetime of the process: the configuration snapshot, the
// TLS profiles (whose contexts and trust stores reload themselves), and the few process-wide
// counters (atomics only; no locks on request paths). Owner: the Server; created before the workers
// start and destroyed after they are joined.
#pragma once

#include <atomic>
#include <cstddef>
#include <memory>
#include <vector>

#include "proxy/cms_identity.h"
#include "proxy/config.h"
#include "proxy/connection_quota.h"
#include "proxy/observability.h"
#include "proxy/tls_profile.h"

namespace proxy {

struct ListenerRuntime {
  const ListenerSettings* settings = nullptr;
  const TlsProfileRuntime* tls = nullptr;  // null for plain HTTP
  std::size_t tls_index = 0;               // tls's index in Runtime::tls_profiles
  unsigned port = 0;                       // the port it listens on
  // redirect_to_https listeners: the port of the first TLS listener, 0 when it is 443 (the
  // redirect then names no port).
  unsigned https_port = 0;
};

struct BackendRuntime {
  std::vector<std::unique_ptr<ConnectionQuota>> quotas;  // one per server
  std::atomic<unsigned> queued{0};                       // requests waiting, all workers
};

struct Runtime {
  std::shared_ptr<const Config> config;
  std::size_t workers = 1;
  std::vector<std::unique_ptr<TlsProfileRuntime>> tls_profiles;
  std::vector<ListenerRuntime> listeners;                 // parallel to config->listeners
  std::vector<std::unique_ptr<BackendRuntime>> backends;  // parallel to config->backends
  std::atomic<std::size_t> client_connections{0};
  std::unique_ptr<Observability> observability;  // metrics and access log; never null
  // The user map and HMAC key; null when [auth] configures neither (no protected route).
  std::unique_ptr<CmsIdentity> cms_identity;
};

}  // namespace proxy
