// The process: binds the listeners (one SO_REUSEPORT socket per listener and worker), builds
// the shared runtime, drops privileges, runs the workers, and turns SIGTERM/SIGINT into a
// graceful drain bounded by shutdown_timeout. Its main thread also watches the TLS files
// (certificates, CA directory and CRLs, ticket keys) and reloads them off the event loops.
// Owner: main(). Lives for the whole run.
#pragma once

#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "proxy/config.h"
#include "proxy/runtime.h"

namespace proxy {

class Worker;

class Server {
 public:
  // Builds everything that can fail with a configuration-related message (TLS contexts).
  static std::variant<std::unique_ptr<Server>, std::vector<std::string>> create(
      std::shared_ptr<const Config> config);
  ~Server();

  // Binds, runs until a termination signal and the drain that follows; returns the exit code.
  int run();

  // Main thread: reloads the TLS files that changed (all of them when `force`, on SIGHUP).
  void check_tls_files(bool force);

 private:
  Server() = default;
  bool bind_listeners(std::vector<std::vector<int>>& fds);
  bool drop_privileges();

  Runtime runtime_;
};

}  // namespace proxy
