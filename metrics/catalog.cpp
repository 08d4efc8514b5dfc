#include "metrics/catalog.h"

#include <array>
#include <cassert>
#include <cstdio>
#include <cstdlib>

namespace metrics {
namespace {

using prometheus::MetricType;

// Each row repeats its enum value so that a row added in the wrong place is caught at first
// use (see table()) instead of silently shifting every family after it.
struct Row {
  Family family;
  FamilyInfo info;
};

std::array<Row, kFamilyCount> make_rows() {
  return {{
      {Family::build_info,
       {"cmsfront_build_info",
        "Always 1; labels carry the cmsfront version and OpenSSL version.",
        MetricType::Gauge,
        {"version", "openssl"}}},
      {Family::requests_total,
       {"cmsfront_requests_total",
        "Requests finished, by route, method and response status class.",
        MetricType::Counter,
        {"route", "method", "status_class"}}},
      {Family::request_duration_seconds,
       {"cmsfront_request_duration_seconds",
        "Time from request head received to last response byte sent, by route.",
        MetricType::Histogram,
        {"route"}}},
      {Family::request_bytes_total,
       {"cmsfront_request_bytes_total",
        "Request body bytes received from clients, by route.",
        MetricType::Counter,
        {"route"}}},
      {Family::response_bytes_total,
       {"cmsfront_response_bytes_total",
        "Response body bytes sent to clients, by route.",
        MetricType::Counter,
        {"route"}}},
      {Family::client_connections,
       {"cmsfront_client_connections",
        "Client connections currently open, by protocol.",
        MetricType::Gauge,
        {"protocol"}}},
      {Family::tls_handshakes_total,
       {"cmsfront_tls_handshakes_total",
        "Client TLS handshakes finished, by TLS profile and result (ok, failed, timeout).",
        MetricType::Counter,
        {"profile", "result"}}},
      {Family::tls_resumptions_total,
       {"cmsfront_tls_resumptions_total",
        "Client TLS handshakes that resumed a session, by TLS profile.",
        MetricType::Counter,
        {"profile"}}},
      {Family::tls_handshake_duration_seconds,
       {"cmsfront_tls_handshake_duration_seconds",
        "Time from accept to finished client TLS handshake, by TLS profile.",
        MetricType::Histogram,
        {"profile"}}},
      {Family::client_certificates_total,
       {"cmsfront_client_certificates_total",
        "Client certificate verifications, by TLS profile and outcome.",
        MetricType::Counter,
        {"profile", "outcome"}}},
      {Family::auth_decisions_total,
       {"cmsfront_auth_decisions_total",
        "Authorization decisions, by route, method and result.",
        MetricType::Counter,
        {"route", "method", "result"}}},
      {Family::backend_connections,
       {"cmsfront_backend_connections",
        "Backend connections currently open, by backend and state (idle, busy, connecting).",
        MetricType::Gauge,
        {"backend", "state"}}},
      {Family::backend_queue_length,
       {"cmsfront_backend_queue_length",
        "Requests currently waiting for a backend connection, by backend.",
        MetricType::Gauge,
        {"backend"}}},
      {Family::backend_queue_wait_seconds,
       {"cmsfront_backend_queue_wait_seconds",
        "Time requests waited for a backend connection, by backend.",
        MetricType::Histogram,
        {"backend"}}},
      {Family::backend_retries_total,
       {"cmsfront_backend_retries_total",
        "Requests retried on another backend connection, by backend.",
        MetricType::Counter,
        {"backend"}}},
      {Family::backend_failures_total,
       {"cmsfront_backend_failures_total",
        "Backend exchanges that failed, by backend and reason.",
        MetricType::Counter,
        {"backend", "reason"}}},
      {Family::backend_response_seconds,
       {"cmsfront_backend_response_seconds",
        "Time from request sent to backend to response head received, by backend.",
        MetricType::Histogram,
        {"backend"}}},
      {Family::trust_store_cas,
       {"cmsfront_trust_store_cas",
        "CA certificates in the current trust store, by TLS profile.",
        MetricType::Gauge,
        {"profile"}}},
      {Family::trust_store_crls,
       {"cmsfront_trust_store_crls",
        "CRLs in the current trust store, by TLS profile.",
        MetricType::Gauge,
        {"profile"}}},
      {Family::trust_store_generation,
       {"cmsfront_trust_store_generation",
        "Generation of the current trust store (increments on each rebuild), by TLS profile.",
        MetricType::Gauge,
        {"profile"}}},
      {Family::trust_store_crl_next_update_soonest_timestamp_seconds,
       {"cmsfront_trust_store_crl_next_update_soonest_timestamp_seconds",
        "Earliest nextUpdate of any CRL in the trust store, Unix seconds, by TLS profile.",
        MetricType::Gauge,
        {"profile"}}},
      {Family::crl_next_update_timestamp_seconds,
       {"cmsfront_crl_next_update_timestamp_seconds",
        "nextUpdate of each CRL file in the trust store, Unix seconds, by TLS profile and file.",
        MetricType::Gauge,
        {"profile", "file"}}},
      {Family::tls_reloads_total,
       {"cmsfront_tls_reloads_total",
        "TLS material reload attempts, by TLS profile, what was reloaded and result.",
        MetricType::Counter,
        {"profile", "what", "result"}}},
      {Family::tls_last_reload_success_timestamp_seconds,
       {"cmsfront_tls_last_reload_success_timestamp_seconds",
        "Time of the last successful TLS material reload, Unix seconds, by TLS profile and what.",
        MetricType::Gauge,
        {"profile", "what"}}},
      {Family::access_log_lines_total,
       {"cmsfront_access_log_lines_total",
        "Access log lines, by result (written or dropped).",
        MetricType::Counter,
        {"result"}}},
      {Family::user_map_users,
       {"cmsfront_user_map_users", "Users in the CMS user map in use.", MetricType::Gauge, {}}},
      {Family::user_map_dns,
       {"cmsfront_user_map_dns",
        "Certificate DNs in the CMS user map in use.",
        MetricType::Gauge,
        {}}},
      {Family::user_map_generation,
       {"cmsfront_user_map_generation",
        "Generation of the user map and HMAC key in use (increments on each change).",
        MetricType::Gauge,
        {}}},
      {Family::user_map_loads_total,
       {"cmsfront_user_map_loads_total",
        "User map load attempts, by source (file, url, cache) and result (ok; failed: "
        "unreadable, download or JSON error; refused: empty or shrunk too much).",
        MetricType::Counter,
        {"source", "result"}}},
      {Family::user_map_last_load_success_timestamp_seconds,
       {"cmsfront_user_map_last_load_success_timestamp_seconds",
        "When a user map was last loaded from the source, Unix seconds (0: never).",
        MetricType::Gauge,
        {"source"}}},
      {Family::hmac_key_loads_total,
       {"cmsfront_hmac_key_loads_total",
        "HMAC key file loads, by result (ok or failed).",
        MetricType::Counter,
        {"result"}}},
  }};
}

const std::array<Row, kFamilyCount>& table() {
  static const std::array<Row, kFamilyCount> rows = [] {
    auto built = make_rows();
    for (std::size_t i = 0; i < built.size(); ++i) {
      if (static_cast<std::size_t>(built[i].family) != i) {
        // A programming error in this file: fail loudly in every build type.
        std::fprintf(stderr, "metrics catalog: row %zu is out of order\n", i);
        std::abort();
      }
    }
    return built;
  }();
  return rows;
}

}  // namespace

const FamilyInfo& info(Family family) {
  const auto index = static_cast<std::size_t>(family);
  assert(index < kFamilyCount);
  return table()[index].info;
}

}  // namespace metrics
