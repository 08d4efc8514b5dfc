// One [tls.NAME] profile at run time: its current server context, trust store and session
// ticket keys, each an immutable object published for the workers and replaced when its files
// change on disk (checked every server.file_check_interval, and at once on SIGHUP). A
// replacement never disturbs established connections: each keeps the objects it started with.
// A file that fails to load keeps the previous object in service and is reported in the log.
//
// Owner: the Runtime. Threads: workers call context() (one atomic load per accepted
// connection); only the main thread calls check_files().
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "proxy/config.h"
#include "tls/published.h"
#include "tls/server_context.h"
#include "tls/ticket_keys.h"
#include "tls/trust_store.h"

namespace proxy {

class Observability;

class TlsProfileRuntime {
 public:
  // Loads everything now; errors (file:line:column: message) make the start fail.
  static std::variant<std::unique_ptr<TlsProfileRuntime>, std::vector<std::string>> create(
      const TlsProfile& profile);

  std::shared_ptr<const tls::ServerContext> context() const { return context_->get(); }
  // Null when the profile does not ask for client certificates.
  std::shared_ptr<const tls::TrustStore> trust_store() const {
    return trust_ ? trust_->get() : nullptr;
  }
  const TlsProfile& profile() const { return profile_; }

  // Main thread: reloads whatever changed on disk (everything when `force`), logging each
  // reload and each problem.
  void check_files(bool force, Observability& observability, std::size_t index);

  explicit TlsProfileRuntime(const TlsProfile& profile) : profile_(profile) {}

 private:
  tls::ServerContextSettings context_settings() const;
  std::vector<std::string> certificate_files() const;
  // Each returns nullopt when nothing changed, else whether the reload worked.
  std::optional<bool> reload_trust_store(bool force);
  std::optional<bool> reload_ticket_keys(bool force);
  std::optional<bool> reload_context(bool force);

  const TlsProfile& profile_;
  std::shared_ptr<tls::Published<tls::TrustStore>> trust_;
  std::shared_ptr<tls::Published<tls::TicketKeys>> ticket_keys_;
  std::unique_ptr<tls::Published<tls::ServerContext>> context_;
  // What the files looked like when last loaded (main thread only).
  std::optional<std::uint64_t> ca_dir_fingerprint_;
  std::uint64_t certificates_fingerprint_ = 0;
  std::uint64_t ticket_keys_fingerprint_ = 0;
  std::uint64_t trust_generation_ = 1;
};

// The trust store settings of a profile (also used by tests and tools).
tls::TrustStoreSettings trust_store_settings(const TlsProfile& profile);

}  // namespace proxy
