#include "proxy/server.h"

#include <arpa/inet.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <grp.h>
#include <netinet/in.h>
#include <pwd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstring>
#include <mutex>
#include <thread>

#include "metrics/exporter.h"
#include "proxy/libevent_ptr.h"
#include "proxy/log.h"
#include "proxy/timeval.h"
#include "proxy/worker.h"

namespace proxy {
namespace {

int open_listening_socket(const SocketAddress& address, std::string& error) {
  const int family = address.storage.ss_family;
  const int fd = ::socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    error = std::strerror(errno);
    return -1;
  }
  const int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  if (family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&address.storage), address.length) != 0 ||
      ::listen(fd, 4096) != 0) {
    error = std::strerror(errno);
    ::close(fd);
    return -1;
  }
  return fd;
}

unsigned port_of(const SocketAddress& address) {
  const auto& storage = address.storage;
  const in_port_t port = storage.ss_family == AF_INET6
                             ? reinterpret_cast<const sockaddr_in6&>(storage).sin6_port
                             : reinterpret_cast<const sockaddr_in&>(storage).sin_port;
  return ntohs(port);
}

// The signal handling of the main thread: set by libevent's signal events.
struct Shutdown {
  std::mutex mutex;
  std::condition_variable workers_done;
  std::size_t running = 0;
};

}  // namespace

std::variant<std::unique_ptr<Server>, std::vector<std::string>> Server::create(
    std::shared_ptr<const Config> config) {
  std::unique_ptr<Server> server(new Server());
  Runtime& runtime = server->runtime_;
  runtime.config = config;
  runtime.workers = config->server.workers == 0 ? 1 : config->server.workers;

  std::vector<std::string> errors;
  std::map<std::string, std::size_t> contexts;  // profile name -> index in tls_profiles
  for (const auto& [name, profile] : config->tls) {
    auto created = TlsProfileRuntime::create(profile);
    if (auto* messages = std::get_if<std::vector<std::string>>(&created)) {
      errors.insert(errors.end(), messages->begin(), messages->end());
      continue;
    }
    contexts[name] = runtime.tls_profiles.size();
    runtime.tls_profiles.push_back(
        std::move(std::get<std::unique_ptr<TlsProfileRuntime>>(created)));
  }
  const AuthSettings& auth = config->auth;
  if (!auth.hmac_key.empty() || !auth.user_map.empty() || !auth.user_map_url.empty()) {
    auto created = CmsIdentity::create(auth, config->server.file_check_interval);
    if (auto* messages = std::get_if<std::vector<std::string>>(&created)) {
      errors.insert(errors.end(), messages->begin(), messages->end());
    } else {
      runtime.cms_identity = std::move(std::get<std::unique_ptr<CmsIdentity>>(created));
    }
  }
  if (!errors.empty()) return errors;

  unsigned https_port = 0;
  for (const ListenerSettings& listener : config->listeners) {
    if (!listener.tls.empty()) {
      const unsigned port = port_of(listener.address);
      https_port = port == 443 ? 0 : port;
      break;
    }
  }
  for (const ListenerSettings& listener : config->listeners) {
    ListenerRuntime entry;
    entry.https_port = https_port;
    entry.settings = &listener;
    if (!listener.tls.empty()) {
      entry.tls_index = contexts.at(listener.tls);
      entry.tls = runtime.tls_profiles[entry.tls_index].get();
    }
    entry.port = port_of(listener.address);
    runtime.listeners.push_back(entry);
  }
  std::unique_ptr<AccessLog> access_log;
  if (config->access_log.enabled) {
    std::vector<std::string> route_names;
    for (std::size_t i = 0; i < config->routes.size(); ++i) {
      route_names.push_back(config->routes.rule(i).name);
    }
    std::vector<std::string> backend_names;
    for (const BackendSettings& backend : config->backends) backend_names.push_back(backend.name);
    auto opened = AccessLog::open(config->access_log.path, config->access_log.format,
                                  runtime.workers, config->access_log.queue_lines,
                                  std::move(route_names), std::move(backend_names));
    if (auto* message = std::get_if<std::string>(&opened))
      return std::vector<std::string>{*message};
    access_log = std::move(std::get<std::unique_ptr<AccessLog>>(opened));
    access_log->set_error_handler(
        [](const std::string& message) { LOG_ERROR("%s", message.c_str()); });
  }
  runtime.observability =
      std::make_unique<Observability>(*config, runtime.workers, std::move(access_log));
  for (const BackendSettings& backend : config->backends) {
    auto entry = std::make_unique<BackendRuntime>();
    for (std::size_t server_index = 0; server_index < backend.servers.size(); ++server_index) {
      entry->quotas.push_back(
          std::make_unique<ConnectionQuota>(backend.max_connections, runtime.workers));
    }
    runtime.backends.push_back(std::move(entry));
  }
  return server;
}

Server::~Server() = default;

bool Server::bind_listeners(std::vector<std::vector<int>>& fds) {
  fds.assign(runtime_.workers, {});
  for (std::size_t worker = 0; worker < runtime_.workers; ++worker) {
    for (const ListenerRuntime& listener : runtime_.listeners) {
      std::string error;
      const int fd = open_listening_socket(listener.settings->address, error);
      if (fd < 0) {
        LOG_ERROR("cannot listen on %s: %s", listener.settings->address.text.c_str(),
                  error.c_str());
        for (auto& list : fds) {
          for (int open_fd : list) ::close(open_fd);
        }
        return false;
      }
      fds[worker].push_back(fd);
    }
  }
  return true;
}

bool Server::drop_privileges() {
  const std::string& user = runtime_.config->server.user;
  if (user.empty() || geteuid() != 0) return true;
  const passwd* entry = getpwnam(user.c_str());
  if (entry == nullptr) {
    LOG_ERROR("server.user '%s' does not exist", user.c_str());
    return false;
  }
  if (initgroups(entry->pw_name, entry->pw_gid) != 0 || setgid(entry->pw_gid) != 0 ||
      setuid(entry->pw_uid) != 0) {
    LOG_ERROR("cannot switch to user '%s': %s", user.c_str(), std::strerror(errno));
    return false;
  }
  return true;
}

int Server::run() {
  std::vector<std::vector<int>> fds;
  if (!bind_listeners(fds)) return 71;  // EX_OSERR
  // The metrics endpoint: its own threads (prometheus-cpp's civetweb), its own address, never
  // a public listener's.
  std::unique_ptr<metrics::Exporter> exporter;
  if (runtime_.config->metrics.enabled) {
    const Runtime& runtime = runtime_;
    auto started = metrics::Exporter::start(
        runtime_.config->metrics.address.text, runtime_.config->metrics.path,
        [&runtime] { return runtime.observability->collect(runtime); });
    if (auto* message = std::get_if<std::string>(&started)) {
      LOG_ERROR("cannot serve metrics on %s: %s", runtime_.config->metrics.address.text.c_str(),
                message->c_str());
      for (auto& list : fds) {
        for (int fd : list) ::close(fd);
      }
      return 71;
    }
    exporter = std::move(std::get<std::unique_ptr<metrics::Exporter>>(started));
  }
  if (!drop_privileges()) return 71;
  if (runtime_.cms_identity) runtime_.cms_identity->start();

  std::vector<std::unique_ptr<Worker>> workers;
  for (std::size_t index = 0; index < runtime_.workers; ++index) {
    workers.push_back(std::make_unique<Worker>(runtime_, index, std::move(fds[index])));
  }

  Shutdown shutdown;
  shutdown.running = workers.size();
  std::vector<std::thread> threads;
  for (auto& worker : workers) {
    threads.emplace_back([&shutdown, raw = worker.get()] {
      raw->run();
      std::lock_guard lock(shutdown.mutex);
      --shutdown.running;
      shutdown.workers_done.notify_all();
    });
  }
  LOG_INFO("started: %zu workers, %zu listeners", workers.size(), runtime_.listeners.size());

  // The main thread only waits for a termination signal.
  EventBasePtr base(event_base_new());
  auto on_signal = [](evutil_socket_t signal, short, void* arg) noexcept {
    LOG_INFO("received %s: draining", signal == SIGTERM ? "SIGTERM" : "SIGINT");
    event_base_loopexit(static_cast<event_base*>(arg), nullptr);
  };
  // SIGHUP (systemctl reload) reloads every certificate, key, CA and CRL file at once; the
  // timer picks up changed files by itself (fetch-crl, certificate renewal, key rotation).
  auto check_files = [](evutil_socket_t, short, void* arg) noexcept {
    static_cast<Server*>(arg)->check_tls_files(false);
  };
  auto on_hangup = [](evutil_socket_t, short, void* arg) noexcept {
    LOG_INFO(
        "received SIGHUP: reloading certificates, CAs, CRLs, ticket keys, the user map "
        "and the HMAC key");
    auto* server = static_cast<Server*>(arg);
    server->check_tls_files(true);
    if (server->runtime_.cms_identity) server->runtime_.cms_identity->reload();
  };
  EventPtr sigterm(evsignal_new(base.get(), SIGTERM, on_signal, base.get()));
  EventPtr sigint(evsignal_new(base.get(), SIGINT, on_signal, base.get()));
  EventPtr sighup(evsignal_new(base.get(), SIGHUP, on_hangup, this));
  // SIGUSR1: reopen the access log (logrotate moved it away).
  auto on_usr1 = [](evutil_socket_t, short, void* arg) noexcept {
    if (AccessLog* log = static_cast<Runtime*>(arg)->observability->access_log()) {
      LOG_INFO("received SIGUSR1: reopening the access log");
      log->reopen();
    }
  };
  EventPtr sigusr1(evsignal_new(base.get(), SIGUSR1, on_usr1, &runtime_));
  EventPtr file_timer(event_new(base.get(), -1, EV_PERSIST, check_files, this));
  evsignal_add(sigterm.get(), nullptr);
  evsignal_add(sigint.get(), nullptr);
  evsignal_add(sighup.get(), nullptr);
  evsignal_add(sigusr1.get(), nullptr);
  if (!runtime_.tls_profiles.empty()) {
    const timeval interval = to_timeval(runtime_.config->server.file_check_interval);
    event_add(file_timer.get(), &interval);
  }
  event_base_dispatch(base.get());

  for (auto& worker : workers) worker->request_shutdown();
  {
    std::unique_lock lock(shutdown.mutex);
    const auto deadline =
        std::chrono::steady_clock::now() + runtime_.config->server.shutdown_timeout;
    if (!shutdown.workers_done.wait_until(lock, deadline, [&] { return shutdown.running == 0; })) {
      LOG_WARN("shutdown_timeout reached with requests in flight: closing them");
      for (auto& worker : workers) worker->force_stop();
    }
  }
  for (auto& thread : threads) thread.join();
  workers.clear();
  LOG_INFO("stopped");
  return 0;
}

void Server::check_tls_files(bool force) {
  for (std::size_t index = 0; index < runtime_.tls_profiles.size(); ++index) {
    runtime_.tls_profiles[index]->check_files(force, *runtime_.observability, index);
  }
}

}  // namespace proxy
