#include "proxy/worker.h"

#include <event2/bufferevent_ssl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <atomic>
#include <cinttypes>

#include "proxy/client_connection.h"
#include "proxy/log.h"

namespace proxy {
namespace {
std::atomic<std::uint64_t> g_next_connection_id{1};
}

Worker::Worker(Runtime& runtime, std::size_t index, std::vector<int> listen_fds)
    : runtime_(runtime), index_(index) {
  base_.reset(event_base_new());
  reap_event_.reset(event_new(base_.get(), -1, 0, on_reap, this));
  shutdown_event_.reset(event_new(base_.get(), -1, 0, on_shutdown, this));
  force_stop_event_.reset(event_new(base_.get(), -1, 0, on_force_stop, this));
  const Config& config = *runtime_.config;
  for (std::size_t backend = 0; backend < config.backends.size(); ++backend) {
    std::vector<ConnectionQuota*> quotas;
    for (auto& quota : runtime_.backends[backend]->quotas) quotas.push_back(quota.get());
    pools_.push_back(std::make_unique<BackendPool>(
        *this, config.backends[backend], std::move(quotas), runtime_.backends[backend]->queued));
  }
  for (std::size_t listener = 0; listener < listen_fds.size(); ++listener) {
    auto handle = std::make_unique<ListenerHandle>();
    handle->worker = this;
    handle->index = listener;
    handle->listener.reset(evconnlistener_new(base_.get(), on_accept, handle.get(),
                                              LEV_OPT_CLOSE_ON_FREE, -1, listen_fds[listener]));
    listeners_.push_back(std::move(handle));
  }
}

Worker::~Worker() {
  // Connections first: their exchanges give backend connections back to the pools.
  listeners_.clear();
  connections_.clear();
  graveyard_.clear();
  pools_.clear();
  graveyard_.clear();
}

void Worker::run() { event_base_dispatch(base_.get()); }

void Worker::request_shutdown() { event_active(shutdown_event_.get(), EV_READ, 0); }

void Worker::force_stop() { event_active(force_stop_event_.get(), EV_READ, 0); }

void Worker::on_accept(evconnlistener*, evutil_socket_t fd, sockaddr* address, int length,
                       void* arg) noexcept {
  auto& handle = *static_cast<ListenerHandle*>(arg);
  handle.worker->accept_connection(handle.index, fd, address, length);
}

void Worker::accept_connection(std::size_t listener_index, evutil_socket_t fd,
                               const sockaddr* address, int) {
  const std::size_t limit = runtime_.config->server.max_connections;
  if (draining_ || runtime_.client_connections.fetch_add(1, std::memory_order_relaxed) >= limit) {
    if (!draining_) runtime_.client_connections.fetch_sub(1, std::memory_order_relaxed);
    evutil_closesocket(fd);
    return;
  }
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  const ListenerRuntime& listener = runtime_.listeners[listener_index];
  BufferEventPtr bev;
  if (listener.tls != nullptr) {
    tls::SslPtr ssl = listener.tls->context()->new_session();
    if (ssl) {
      bev.reset(bufferevent_openssl_socket_new(base_.get(), fd, ssl.get(),
                                               BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE));
      if (bev) {
        static_cast<void>(ssl.release());  // the bufferevent frees it (BEV_OPT_CLOSE_ON_FREE)
        bufferevent_openssl_set_allow_dirty_shutdown(bev.get(), 1);
      }
    }
  } else {
    bev.reset(bufferevent_socket_new(base_.get(), fd, BEV_OPT_CLOSE_ON_FREE));
  }
  if (!bev) {
    LOG_ERROR("cannot set up a connection: out of memory");
    evutil_closesocket(fd);
    runtime_.client_connections.fetch_sub(1, std::memory_order_relaxed);
    return;
  }
  auto connection = std::make_unique<ClientConnection>(
      *this, listener, std::move(bev), address,
      g_next_connection_id.fetch_add(1, std::memory_order_relaxed));
  ClientConnection& ref = *connection;
  connections_.push_front(std::move(connection));
  ref.position_ = connections_.begin();
  runtime_.observability->connection_opened(
      index_, ref.is_tls() ? ConnectionProtocol::https : ConnectionProtocol::http);
  ref.start();
}

void Worker::connection_closed(ClientConnection& connection) {
  runtime_.observability->connection_closed(
      index_, connection.is_tls() ? ConnectionProtocol::https : ConnectionProtocol::http);
  auto owned = std::move(*connection.position_);
  connections_.erase(connection.position_);
  runtime_.client_connections.fetch_sub(1, std::memory_order_relaxed);
  retire(std::move(owned));
  if (draining_) exit_if_drained();
}

void Worker::retire(std::unique_ptr<Retirable> object) {
  graveyard_.push_back(std::move(object));
  event_active(reap_event_.get(), EV_READ, 0);
}

void Worker::on_reap(evutil_socket_t, short, void* arg) noexcept {
  auto& self = *static_cast<Worker*>(arg);
  // Destructors may retire more objects: swap first so they land in the next turn's batch.
  std::vector<std::unique_ptr<Retirable>> batch;
  batch.swap(self.graveyard_);
  batch.clear();
}

void Worker::on_shutdown(evutil_socket_t, short, void* arg) noexcept {
  static_cast<Worker*>(arg)->begin_drain();
}

void Worker::on_force_stop(evutil_socket_t, short, void* arg) noexcept {
  event_base_loopbreak(static_cast<Worker*>(arg)->base_.get());
}

void Worker::begin_drain() {
  if (draining_) return;
  draining_ = true;
  listeners_.clear();  // stop accepting; the other workers' sockets stop too
  for (auto& pool : pools_) pool->drain();
  // begin_drain may close (and so unlink) connections: walk a snapshot.
  std::vector<ClientConnection*> open;
  for (auto& connection : connections_) open.push_back(connection.get());
  for (ClientConnection* connection : open) connection->begin_drain();
  exit_if_drained();
}

void Worker::exit_if_drained() {
  if (connections_.empty()) event_base_loopexit(base_.get(), nullptr);
}

const std::shared_ptr<const CmsIdentitySnapshot>& Worker::cms_identity() {
  const CmsIdentity* source = runtime_.cms_identity.get();
  if (source != nullptr &&
      (cms_identity_ == nullptr || cms_identity_->generation != source->generation())) {
    cms_identity_ = source->snapshot();
  }
  return cms_identity_;
}

}  // namespace proxy
