// cmsfront: the command line. Exit codes: 0 clean stop, 64 usage, 71 cannot bind or drop
// privileges, 78 configuration error (sysexits.h, so systemd's RestartPreventExitStatus can
// tell a broken configuration from a crash).
#include <event2/event.h>
#include <event2/thread.h>
#include <openssl/crypto.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <variant>

#include "proxy/config.h"
#include "proxy/log.h"
#include "proxy/server.h"
#include "version.h"

namespace {

constexpr int kExitUsage = 64;
constexpr int kExitConfig = 78;

void print_usage() {
  std::fprintf(stderr,
               "usage: cmsfront --config FILE     run the frontend\n"
               "       cmsfront --check-config FILE  validate a configuration and exit\n"
               "       cmsfront --version\n");
}

// Loads and validates everything a start would: the TOML and the TLS material.
std::variant<std::unique_ptr<proxy::Server>, int> prepare(const std::string& path) {
  proxy::ConfigLoadResult loaded = proxy::load_config(path);
  if (!loaded.errors.empty()) {
    for (const proxy::ConfigError& error : loaded.errors) {
      std::fprintf(stderr, "%s\n", error.format().c_str());
    }
    return kExitConfig;
  }
  proxy::set_log_output(loaded.config->server.log_format == proxy::LogFormat::json
                            ? proxy::LogOutput::json
                            : proxy::LogOutput::text);
  auto created = proxy::Server::create(loaded.config);
  if (auto* errors = std::get_if<std::vector<std::string>>(&created)) {
    for (const std::string& error : *errors) std::fprintf(stderr, "%s\n", error.c_str());
    return kExitConfig;
  }
  return std::move(std::get<std::unique_ptr<proxy::Server>>(created));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 2 && std::strcmp(argv[1], "--version") == 0) {
    std::printf("cmsfront %s (built %s, %s, libevent %s)\n", CMSFRONT_VERSION, CMSFRONT_BUILD_DATE,
                OpenSSL_version(OPENSSL_VERSION), event_get_version());
    return 0;
  }
  if (argc != 3 ||
      (std::strcmp(argv[1], "--config") != 0 && std::strcmp(argv[1], "--check-config") != 0)) {
    print_usage();
    return kExitUsage;
  }
  // Workers share nothing on the request path, but libevent needs locking for the few
  // cross-thread wake-ups (event_active from another worker or from main).
  if (const char* level = std::getenv("CMSFRONT_DEBUG"); level != nullptr && *level == '1') {
    proxy::set_log_level(proxy::LogLevel::debug);
  }
  evthread_use_pthreads();
  std::signal(SIGPIPE, SIG_IGN);

  auto prepared = prepare(argv[2]);
  if (auto* code = std::get_if<int>(&prepared)) return *code;
  if (std::strcmp(argv[1], "--check-config") == 0) {
    std::printf("%s: configuration is valid\n", argv[2]);
    return 0;
  }
  return std::get<std::unique_ptr<proxy::Server>>(prepared)->run();
}
