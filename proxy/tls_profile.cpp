#include "proxy/tls_profile.h"

#include <chrono>

#include "proxy/log.h"
#include "proxy/observability.h"
#include "tls/file_fingerprint.h"

namespace proxy {
namespace {

tls::ClientCertMode client_cert_mode(ClientCertificates setting) {
  switch (setting) {
    case ClientCertificates::request:
      return tls::ClientCertMode::request;
    case ClientCertificates::require:
      return tls::ClientCertMode::require;
    case ClientCertificates::off:
      break;
  }
  return tls::ClientCertMode::off;
}

tls::CrlMode crl_mode(CrlPolicy policy) {
  switch (policy) {
    case CrlPolicy::if_present:
      return tls::CrlMode::if_present;
    case CrlPolicy::off:
      return tls::CrlMode::off;
    case CrlPolicy::require:
      break;
  }
  return tls::CrlMode::require;
}

void log_trust_store(const std::string& name, const tls::TrustStore& store, const char* event) {
  LOG_INFO("tls.%s: trust store %s: %zu CAs, %zu CRLs from %s (generation %llu)", name.c_str(),
           event, store.ca_count(), store.crls().size(), store.settings().ca_dir.c_str(),
           static_cast<unsigned long long>(store.generation()));
  for (const std::string& problem : store.problems()) {
    LOG_WARN("tls.%s: skipped: %s", name.c_str(), problem.c_str());
  }
}

}  // namespace

tls::TrustStoreSettings trust_store_settings(const TlsProfile& profile) {
  tls::TrustStoreSettings settings;
  settings.ca_dir = profile.ca_dir;
  settings.crl = crl_mode(profile.crl);
  settings.crl_grace = std::chrono::duration_cast<std::chrono::seconds>(profile.crl_grace);
  settings.verify_depth = profile.verify_depth;
  settings.allow_proxies = profile.proxy_certificates;
  settings.cache_capacity = profile.verification_cache_size;
  return settings;
}

std::variant<std::unique_ptr<TlsProfileRuntime>, std::vector<std::string>>
TlsProfileRuntime::create(const TlsProfile& profile) {
  auto runtime = std::make_unique<TlsProfileRuntime>(profile);
  std::vector<std::string> errors;
  const std::string prefix = ": tls." + profile.name + ": ";

  if (profile.client_certificates != ClientCertificates::off) {
    runtime->ca_dir_fingerprint_ =
        tls::fingerprint_directory(profile.ca_dir, tls::TrustStore::is_store_file);
    auto store = tls::TrustStore::load(trust_store_settings(profile), runtime->trust_generation_);
    if (!store->directory_readable() || store->ca_count() == 0) {
      errors.push_back(profile.ca_dir_location.format() + prefix + "ca_dir '" + profile.ca_dir +
                       "' holds no usable CA certificate" +
                       (store->problems().empty() ? "" : " (" + store->problems().front() + ")"));
      return errors;
    }
    log_trust_store(profile.name, *store, "loaded");
    runtime->trust_ = std::make_shared<tls::Published<tls::TrustStore>>(std::move(store));
  }

  std::shared_ptr<const tls::TicketKeys> keys;
  if (profile.session_ticket_keys.empty()) {
    keys = tls::TicketKeys::random();
    if (!keys) {
      errors.push_back(profile.certificate_location.format() + prefix +
                       "cannot generate session ticket keys");
      return errors;
    }
  } else {
    runtime->ticket_keys_fingerprint_ = tls::fingerprint_files({profile.session_ticket_keys});
    auto loaded = tls::TicketKeys::load(profile.session_ticket_keys);
    if (auto* message = std::get_if<std::string>(&loaded)) {
      errors.push_back(profile.session_ticket_keys_location.format() + prefix + *message);
      return errors;
    }
    keys = std::get<std::shared_ptr<const tls::TicketKeys>>(loaded);
  }
  runtime->ticket_keys_ = std::make_shared<tls::Published<tls::TicketKeys>>(std::move(keys));

  runtime->certificates_fingerprint_ = tls::fingerprint_files(runtime->certificate_files());
  auto context = tls::ServerContext::create(runtime->context_settings());
  if (auto* message = std::get_if<std::string>(&context)) {
    errors.push_back(profile.certificate_location.format() + prefix + *message);
    return errors;
  }
  runtime->context_ = std::make_unique<tls::Published<tls::ServerContext>>(
      std::get<std::shared_ptr<const tls::ServerContext>>(context));
  return runtime;
}

tls::ServerContextSettings TlsProfileRuntime::context_settings() const {
  tls::ServerContextSettings settings;
  settings.name = profile_.name;
  settings.certificate = {profile_.certificate, profile_.key};
  for (const SniCertificate& sni : profile_.sni_certificates) {
    settings.sni_certificates.push_back({sni.certificate, sni.key});
  }
  settings.min_protocol = profile_.min_protocol;
  settings.max_protocol = profile_.max_protocol;
  settings.alpn = profile_.alpn;
  settings.client_certificates = client_cert_mode(profile_.client_certificates);
  settings.trust = trust_;
  settings.client_ca_names_file = profile_.client_ca_names;
  settings.ticket_keys = ticket_keys_;
  settings.session_lifetime =
      std::chrono::duration_cast<std::chrono::seconds>(profile_.session_lifetime);
  settings.session_cache_size = profile_.session_cache_size;
  return settings;
}

std::vector<std::string> TlsProfileRuntime::certificate_files() const {
  std::vector<std::string> files = {profile_.certificate, profile_.key};
  for (const SniCertificate& sni : profile_.sni_certificates) {
    files.push_back(sni.certificate);
    files.push_back(sni.key);
  }
  if (!profile_.client_ca_names.empty()) files.push_back(profile_.client_ca_names);
  return files;
}

void TlsProfileRuntime::check_files(bool force, Observability& observability, std::size_t index) {
  if (const auto ok = reload_trust_store(force)) {
    observability.tls_reloaded(index, TlsReloadWhat::trust_store, *ok);
  }
  if (const auto ok = reload_ticket_keys(force)) {
    observability.tls_reloaded(index, TlsReloadWhat::ticket_keys, *ok);
  }
  if (const auto ok = reload_context(force)) {
    observability.tls_reloaded(index, TlsReloadWhat::certificates, *ok);
  }
}

std::optional<bool> TlsProfileRuntime::reload_trust_store(bool force) {
  if (!trust_) return std::nullopt;
  const auto fingerprint =
      tls::fingerprint_directory(profile_.ca_dir, tls::TrustStore::is_store_file);
  if (!force && fingerprint == ca_dir_fingerprint_) return std::nullopt;
  // Remember the state we tried, successful or not, so a broken directory is reported once
  // per change rather than every interval.
  ca_dir_fingerprint_ = fingerprint;
  const std::shared_ptr<const tls::TrustStore> current = trust_->get();
  auto store =
      tls::TrustStore::load(trust_store_settings(profile_), trust_generation_ + 1, current.get());
  if (!store->directory_readable() || store->ca_count() == 0) {
    LOG_ERROR(
        "tls.%s: ca_dir %s now holds no usable CA certificate%s%s; keeping the previous "
        "trust store",
        profile_.name.c_str(), profile_.ca_dir.c_str(), store->problems().empty() ? "" : ": ",
        store->problems().empty() ? "" : store->problems().front().c_str());
    return false;
  }
  ++trust_generation_;
  log_trust_store(profile_.name, *store, "reloaded");
  trust_->publish(std::move(store));
  return true;
}

std::optional<bool> TlsProfileRuntime::reload_ticket_keys(bool force) {
  if (profile_.session_ticket_keys.empty()) return std::nullopt;
  const std::uint64_t fingerprint = tls::fingerprint_files({profile_.session_ticket_keys});
  if (!force && fingerprint == ticket_keys_fingerprint_) return std::nullopt;
  ticket_keys_fingerprint_ = fingerprint;
  auto loaded = tls::TicketKeys::load(profile_.session_ticket_keys);
  if (auto* message = std::get_if<std::string>(&loaded)) {
    LOG_ERROR("tls.%s: %s; keeping the previous session ticket keys", profile_.name.c_str(),
              message->c_str());
    return false;
  }
  auto keys = std::get<std::shared_ptr<const tls::TicketKeys>>(std::move(loaded));
  LOG_INFO("tls.%s: session ticket keys reloaded (%zu keys)", profile_.name.c_str(), keys->size());
  ticket_keys_->publish(std::move(keys));
  return true;
}

std::optional<bool> TlsProfileRuntime::reload_context(bool force) {
  const std::uint64_t fingerprint = tls::fingerprint_files(certificate_files());
  if (!force && fingerprint == certificates_fingerprint_) return std::nullopt;
  certificates_fingerprint_ = fingerprint;
  auto context = tls::ServerContext::create(context_settings());
  if (auto* message = std::get_if<std::string>(&context)) {
    LOG_ERROR("tls.%s: %s; keeping the previous certificates", profile_.name.c_str(),
              message->c_str());
    return false;
  }
  LOG_INFO("tls.%s: server certificates reloaded", profile_.name.c_str());
  context_->publish(std::get<std::shared_ptr<const tls::ServerContext>>(std::move(context)));
  return true;
}

}  // namespace proxy
