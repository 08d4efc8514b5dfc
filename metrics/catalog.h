// The one table of every metric family cmsfront exports: name, help, type and label names.
//
// Everything else (the proxy's slot tables, the scrape-time builders, the docs) refers to a
// family by its enum value, so a family is added, renamed or relabelled here and nowhere
// else. Label sets are bounded by construction: route and backend names come from the
// configuration, the other labels from fixed enums; never paths, DNs or client addresses.
//
// The table is immutable static data, readable from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "prometheus/metric_type.h"

namespace metrics {

enum class Family : std::uint8_t {
  build_info,
  requests_total,
  request_duration_seconds,
  request_bytes_total,
  response_bytes_total,
  client_connections,
  tls_handshakes_total,
  tls_resumptions_total,
  tls_handshake_duration_seconds,
  client_certificates_total,
  auth_decisions_total,
  backend_connections,
  backend_queue_length,
  backend_queue_wait_seconds,
  backend_retries_total,
  backend_failures_total,
  backend_response_seconds,
  trust_store_cas,
  trust_store_crls,
  trust_store_generation,
  trust_store_crl_next_update_soonest_timestamp_seconds,
  crl_next_update_timestamp_seconds,
  tls_reloads_total,
  tls_last_reload_success_timestamp_seconds,
  access_log_lines_total,
  user_map_users,
  user_map_dns,
  user_map_generation,
  user_map_loads_total,
  user_map_last_load_success_timestamp_seconds,
  hmac_key_loads_total,
  count_
};

inline constexpr std::size_t kFamilyCount = static_cast<std::size_t>(Family::count_);

struct FamilyInfo {
  std::string_view name;  // "cmsfront_..."
  std::string_view help;
  prometheus::MetricType type;
  std::vector<std::string_view> labels;  // in the order FamilyBuilder expects values
};

// `family` must not be Family::count_.
const FamilyInfo& info(Family family);

}  // namespace metrics
