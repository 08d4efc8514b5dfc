#include "proxy/backend_pool.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "proxy/log.h"
#include "proxy/observability.h"
#include "proxy/timeval.h"
#include "proxy/worker.h"

namespace proxy {
namespace {

using Clock = std::chrono::steady_clock;

// A refused server in a group of several is skipped this long, so requests go to the others
// instead of each paying a failed connect first.
constexpr auto kServerDownPeriod = std::chrono::seconds(2);
// How long a half-closed connection waits for the backend's FIN before it is dropped anyway.
constexpr auto kCloseWait = std::chrono::milliseconds(2000);

}  // namespace

BackendPool::BackendPool(Worker& worker, const BackendSettings& settings,
                         std::vector<ConnectionQuota*> quotas, std::atomic<unsigned>& queued)
    : worker_(worker),
      settings_(settings),
      quotas_(std::move(quotas)),
      queued_(queued),
      idle_(settings.servers.size()),
      busy_(settings.servers.size(), 0),
      closing_(settings.servers.size(), 0),
      down_until_(settings.servers.size()),
      wakeup_(event_new(worker.base(), -1, 0, on_wakeup, this)),
      queue_timer_(evtimer_new(worker.base(), on_queue_timer, this)),
      backend_index_(static_cast<std::size_t>(&settings - worker.config().backends.data())) {
  event* wakeup = wakeup_.get();
  for (ConnectionQuota* quota : quotas_) {
    quota->set_wakeup(worker_.index(), [wakeup] { event_active(wakeup, EV_READ, 0); });
  }
}

BackendPool::~BackendPool() {
  for (ConnectionQuota* quota : quotas_) {
    quota->set_wakeup(worker_.index(), nullptr);
    quota->set_starving(worker_.index(), false);
  }
  while (queue_head_ != nullptr) unlink(*queue_head_);
  // Connections still open give their quota slots back; the objects die with the list.
  for (auto& connection : connections_) {
    if (connection->state_ != BackendConnection::State::closed) {
      bufferevent_setcb(connection->bev(), nullptr, nullptr, nullptr, nullptr);
      quotas_[connection->server_]->release(worker_.index());
    }
  }
}

BackendPool::Acquired BackendPool::acquire(PoolWaiter& waiter, bool fresh_only) {
  waiter.fresh_only_ = fresh_only;
  waiter.attempts_ = 0;
  if (all_servers_down()) return {nullptr, Failure::backends_down};
  if (queue_head_ == nullptr) {
    BackendConnection* ready = nullptr;
    if (serve(waiter, ready)) return {ready, Failure::none};
  }
  if (queued_.load(std::memory_order_relaxed) >= settings_.max_queue) {
    return {nullptr, Failure::queue_full};
  }
  enqueue(waiter);
  schedule_dispatch();  // from the loop: retries, and wakes workers holding idle connections
  return {};
}

void BackendPool::cancel(PoolWaiter& waiter) {
  switch (waiter.wait_state_) {
    case PoolWaiter::WaitState::queued:
      unlink(waiter);
      update_starving();
      break;
    case PoolWaiter::WaitState::connecting:
      // The connection goes on: once open it serves whoever waits next, or idles.
      waiter.connecting_->bound_waiter_ = nullptr;
      waiter.connecting_ = nullptr;
      waiter.wait_state_ = PoolWaiter::WaitState::none;
      break;
    case PoolWaiter::WaitState::none:
      break;
  }
}

void BackendPool::release(BackendConnection& connection, bool reusable) {
  --busy_[connection.server_];
  if (!reusable || draining_ || must_yield(connection.server_)) {
    destroy(connection);
  } else {
    ++connection.responses_;
    make_idle(connection);
  }
  if (queue_head_ != nullptr) schedule_dispatch();
}

void BackendPool::drain() {
  draining_ = true;
  for (auto& idle : idle_) {
    while (!idle.empty()) destroy(*idle.back());
  }
}

std::size_t BackendPool::idle_count() const {
  std::size_t count = 0;
  for (const auto& idle : idle_) count += idle.size();
  return count;
}

bool BackendPool::server_usable(std::size_t server, Clock::time_point now) const {
  // A lone server is always tried: its failure is reported as it is (502), not as "all down".
  return settings_.servers.size() == 1 || down_until_[server] <= now;
}

bool BackendPool::all_servers_down() const {
  if (settings_.servers.size() == 1) return false;
  const auto now = Clock::now();
  for (std::size_t server = 0; server < settings_.servers.size(); ++server) {
    if (down_until_[server] <= now) return false;
  }
  return true;
}

std::size_t BackendPool::first_server() {
  const std::size_t servers = settings_.servers.size();
  switch (settings_.balance) {
    case Balance::random: {
      // xorshift64: per pool, so no lock (std::rand takes one) and no shared state.
      random_state_ ^= random_state_ << 13;
      random_state_ ^= random_state_ >> 7;
      random_state_ ^= random_state_ << 17;
      return static_cast<std::size_t>(random_state_ % servers);
    }
    case Balance::least_connections: {
      std::size_t best = 0;
      for (std::size_t server = 1; server < servers; ++server) {
        if (busy_[server] < busy_[best]) best = server;
      }
      return best;
    }
    case Balance::round_robin:
      break;
  }
  return round_robin_ % servers;
}

bool BackendPool::serve(PoolWaiter& waiter, BackendConnection*& ready) {
  // The balancing policy picks the server; its idle connection is reused, else a new one is
  // opened if the quota allows; only when that server is at its limit (or down) do the
  // following servers get the request.
  ready = nullptr;
  if (draining_) return false;
  const std::size_t servers = settings_.servers.size();
  const std::size_t first = first_server();
  const auto now = Clock::now();
  for (std::size_t offset = 0; offset < servers; ++offset) {
    const std::size_t server = (first + offset) % servers;
    if (!server_usable(server, now)) continue;
    if (!waiter.fresh_only_ && !idle_[server].empty()) {
      round_robin_ = server + 1;
      ready = take_idle(server);
      return true;
    }
    if (quotas_[server]->try_acquire(worker_.index())) {
      round_robin_ = server + 1;
      return start_connect(waiter, server);
    }
  }
  return false;
}

BackendConnection* BackendPool::take_idle(std::size_t server) {
  BackendConnection* connection = idle_[server].back();
  idle_[server].pop_back();
  bufferevent_setcb(connection->bev(), nullptr, nullptr, nullptr, nullptr);
  bufferevent_set_timeouts(connection->bev(), nullptr, nullptr);
  set_state(*connection, BackendConnection::State::busy);
  ++busy_[server];
  return connection;
}

bool BackendPool::start_connect(PoolWaiter& waiter, std::size_t server) {
  BufferEventPtr bev(bufferevent_socket_new(worker_.base(), -1, BEV_OPT_CLOSE_ON_FREE));
  if (!bev) {
    quotas_[server]->release(worker_.index());
    return false;
  }
  auto owned = std::make_unique<BackendConnection>(server, std::move(bev));
  BackendConnection& connection = *owned;
  connections_.push_front(std::move(owned));
  worker_.runtime().observability->backend_connection(
      worker_.index(), backend_index_, BackendState::count_, BackendState::connecting);
  connection.position_ = connections_.begin();
  connection.pool_ = this;
  connection.bound_waiter_ = &waiter;
  waiter.connecting_ = &connection;
  waiter.wait_state_ = PoolWaiter::WaitState::connecting;
  ++busy_[server];

  const timeval timeout = to_timeval(settings_.connect_timeout);
  bufferevent_set_timeouts(connection.bev(), &timeout, &timeout);
  bufferevent_setcb(connection.bev(), nullptr, nullptr, on_connect_event, &connection);
  const SocketAddress& address = settings_.servers[server].address;
  if (bufferevent_socket_connect(connection.bev(),
                                 reinterpret_cast<const sockaddr*>(&address.storage),
                                 static_cast<int>(address.length)) != 0) {
    // Reported through the event callback on the next loop turn, like an asynchronous error.
    bufferevent_trigger_event(connection.bev(), BEV_EVENT_ERROR, BEV_TRIG_DEFER_CALLBACKS);
  }
  return true;
}

void BackendPool::on_connect_event(bufferevent*, short events, void* arg) noexcept {
  auto& connection = *static_cast<BackendConnection*>(arg);
  connection.pool_->connect_finished(connection, events);
}

void BackendPool::connect_finished(BackendConnection& connection, short events) {
  PoolWaiter* waiter = connection.bound_waiter_;
  connection.bound_waiter_ = nullptr;
  if (waiter != nullptr) {
    waiter->connecting_ = nullptr;
    waiter->wait_state_ = PoolWaiter::WaitState::none;
  }
  if ((events & BEV_EVENT_CONNECTED) != 0) {
    const int one = 1;
    setsockopt(bufferevent_getfd(connection.bev()), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    bufferevent_set_timeouts(connection.bev(), nullptr, nullptr);
    bufferevent_setcb(connection.bev(), nullptr, nullptr, nullptr, nullptr);
    if (waiter != nullptr) {
      set_state(connection, BackendConnection::State::busy);
      waiter->on_backend_ready(connection);
    } else {
      --busy_[connection.server_];
      make_idle(connection);
      schedule_dispatch();
    }
    return;
  }

  const bool timed_out = (events & BEV_EVENT_TIMEOUT) != 0;
  const std::size_t server = connection.server_;
  LOG_WARN("backend %s: %s to %s", settings_.name.c_str(),
           timed_out ? "connect timed out" : "connect failed",
           settings_.servers[server].host_port.c_str());
  if (settings_.servers.size() > 1) down_until_[server] = Clock::now() + kServerDownPeriod;
  --busy_[server];
  destroy(connection);
  if (waiter == nullptr) return;
  ++waiter->attempts_;
  if (waiter->attempts_ < settings_.servers.size()) {
    BackendConnection* ready = nullptr;
    if (serve(*waiter, ready)) {
      if (ready != nullptr) waiter->on_backend_ready(*ready);
      return;
    }
  }
  waiter->on_backend_failed(all_servers_down() ? Failure::backends_down
                            : timed_out        ? Failure::backend_connect_timeout
                                               : Failure::backend_connect);
}

void BackendPool::make_idle(BackendConnection& connection) {
  set_state(connection, BackendConnection::State::idle);
  bufferevent_setcb(connection.bev(), on_idle_read, nullptr, on_idle_event, &connection);
  const timeval timeout = to_timeval(settings_.idle_timeout);
  bufferevent_set_timeouts(connection.bev(), &timeout, nullptr);
  bufferevent_enable(connection.bev(), EV_READ);
  idle_[connection.server_].push_back(&connection);
}

void BackendPool::on_idle_read(bufferevent*, void* arg) noexcept {
  // Bytes from an idle backend connection are a protocol error: nothing was asked.
  auto& connection = *static_cast<BackendConnection*>(arg);
  connection.pool_->destroy(connection);
}

void BackendPool::on_idle_event(bufferevent*, short, void* arg) noexcept {
  // EOF, error, or idle_timeout: the connection is of no further use.
  auto& connection = *static_cast<BackendConnection*>(arg);
  connection.pool_->destroy(connection);
}

void BackendPool::destroy(BackendConnection& connection) {
  if (connection.state_ == BackendConnection::State::idle) {
    auto& idle = idle_[connection.server_];
    for (auto it = idle.begin(); it != idle.end(); ++it) {
      if (*it == &connection) {
        idle.erase(it);
        break;
      }
    }
  }
  if (connection.state_ == BackendConnection::State::connecting ||
      connection.state_ == BackendConnection::State::closing) {
    finalize(connection);
    return;
  }
  LOG_DEBUG("backend %s: closing a connection to %s", settings_.name.c_str(),
            settings_.servers[connection.server_].host_port.c_str());
  // Half-close and keep the quota slot until the backend has closed its side: releasing it at
  // once would let a new connection overlap with one the backend still counts.
  set_state(connection, BackendConnection::State::closing);
  ++closing_[connection.server_];
  bufferevent* bev = connection.bev();
  bufferevent_setcb(bev, on_closing_read, nullptr, on_closing_event, &connection);
  bufferevent_setwatermark(bev, EV_READ | EV_WRITE, 0, 0);
  bufferevent_disable(bev, EV_WRITE);
  evbuffer_drain(bufferevent_get_output(bev), evbuffer_get_length(bufferevent_get_output(bev)));
  evbuffer_drain(bufferevent_get_input(bev), evbuffer_get_length(bufferevent_get_input(bev)));
  ::shutdown(bufferevent_getfd(bev), SHUT_WR);
  const timeval timeout = to_timeval(kCloseWait);
  bufferevent_set_timeouts(bev, &timeout, nullptr);
  bufferevent_enable(bev, EV_READ);
}

void BackendPool::on_closing_read(bufferevent* bev, void*) noexcept {
  evbuffer* in = bufferevent_get_input(bev);
  evbuffer_drain(in, evbuffer_get_length(in));
}

void BackendPool::on_closing_event(bufferevent*, short, void* arg) noexcept {
  auto& connection = *static_cast<BackendConnection*>(arg);
  connection.pool_->finalize(connection);
}

bool BackendPool::must_yield(std::size_t server) const {
  const ConnectionQuota& quota = *quotas_[server];
  return quota.should_yield(worker_.index(), quota.held_by(worker_.index()) - closing_[server]);
}

void BackendPool::yield_idle() {
  // Another worker starves while this one may sit on idle connections: give one up per server
  // (its slot comes free once the backend has closed it, and wakes the starving worker).
  for (std::size_t server = 0; server < idle_.size(); ++server) {
    if (!idle_[server].empty() && must_yield(server)) destroy(*idle_[server].front());
  }
}

// Every state change goes through here, so the per-state connection gauges stay exact.
void BackendPool::set_state(BackendConnection& connection, BackendConnection::State to) {
  const auto gauge = [](BackendConnection::State state) {
    switch (state) {
      case BackendConnection::State::connecting:
        return BackendState::connecting;
      case BackendConnection::State::idle:
        return BackendState::idle;
      case BackendConnection::State::busy:
        return BackendState::busy;
      case BackendConnection::State::closing:
        return BackendState::closing;
      case BackendConnection::State::closed:
        break;
    }
    return BackendState::count_;
  };
  if (connection.state_ == to) return;
  worker_.runtime().observability->backend_connection(worker_.index(), backend_index_,
                                                      gauge(connection.state_), gauge(to));
  connection.state_ = to;
}

void BackendPool::finalize(BackendConnection& connection) {
  if (connection.state_ == BackendConnection::State::closing) --closing_[connection.server_];
  LOG_DEBUG("backend %s: connection to %s closed", settings_.name.c_str(),
            settings_.servers[connection.server_].host_port.c_str());
  set_state(connection, BackendConnection::State::closed);
  bufferevent_setcb(connection.bev(), nullptr, nullptr, nullptr, nullptr);
  bufferevent_disable(connection.bev(), EV_READ | EV_WRITE);
  auto owned = std::move(*connection.position_);
  connections_.erase(connection.position_);
  quotas_[connection.server_]->release(worker_.index());
  worker_.retire(std::move(owned));
  if (queue_head_ != nullptr) schedule_dispatch();
}

void BackendPool::enqueue(PoolWaiter& waiter) {
  waiter.wait_state_ = PoolWaiter::WaitState::queued;
  waiter.deadline_ = Clock::now() + settings_.queue_timeout;
  waiter.previous_ = queue_tail_;
  waiter.next_ = nullptr;
  if (queue_tail_ != nullptr) {
    queue_tail_->next_ = &waiter;
  } else {
    queue_head_ = &waiter;
    const timeval timeout = to_timeval(settings_.queue_timeout);
    evtimer_add(queue_timer_.get(), &timeout);
  }
  queue_tail_ = &waiter;
  ++queue_length_;
  queued_.fetch_add(1, std::memory_order_relaxed);
  update_starving();
}

void BackendPool::unlink(PoolWaiter& waiter) {
  if (waiter.previous_ != nullptr) {
    waiter.previous_->next_ = waiter.next_;
  } else {
    queue_head_ = waiter.next_;
  }
  if (waiter.next_ != nullptr) {
    waiter.next_->previous_ = waiter.previous_;
  } else {
    queue_tail_ = waiter.previous_;
  }
  waiter.previous_ = waiter.next_ = nullptr;
  waiter.wait_state_ = PoolWaiter::WaitState::none;
  --queue_length_;
  queued_.fetch_sub(1, std::memory_order_relaxed);
  if (queue_head_ == nullptr) evtimer_del(queue_timer_.get());
}

void BackendPool::update_starving() {
  const bool starving = queue_head_ != nullptr;
  if (starving == starving_) return;
  starving_ = starving;
  for (ConnectionQuota* quota : quotas_) quota->set_starving(worker_.index(), starving);
}

void BackendPool::schedule_dispatch() { event_active(wakeup_.get(), EV_READ, 0); }

void BackendPool::on_wakeup(evutil_socket_t, short, void* arg) noexcept {
  static_cast<BackendPool*>(arg)->dispatch();
}

void BackendPool::dispatch() {
  while (queue_head_ != nullptr) {
    PoolWaiter& waiter = *queue_head_;
    unlink(waiter);
    BackendConnection* ready = nullptr;
    if (serve(waiter, ready)) {
      if (ready != nullptr) waiter.on_backend_ready(*ready);
      continue;
    }
    // No capacity: put it back at the head, keeping its deadline and place.
    waiter.wait_state_ = PoolWaiter::WaitState::queued;
    waiter.next_ = queue_head_;
    waiter.previous_ = nullptr;
    if (queue_head_ != nullptr) {
      queue_head_->previous_ = &waiter;
    } else {
      queue_tail_ = &waiter;
    }
    queue_head_ = &waiter;
    ++queue_length_;
    queued_.fetch_add(1, std::memory_order_relaxed);
    if (!evtimer_pending(queue_timer_.get(), nullptr)) expire_waiters();
    break;
  }
  update_starving();
  if (queue_head_ != nullptr) {
    for (ConnectionQuota* quota : quotas_) quota->wake_holders(worker_.index());
  } else {
    yield_idle();
  }
}

void BackendPool::on_queue_timer(evutil_socket_t, short, void* arg) noexcept {
  static_cast<BackendPool*>(arg)->expire_waiters();
}

void BackendPool::expire_waiters() {
  const auto now = Clock::now();
  while (queue_head_ != nullptr && queue_head_->deadline_ <= now) {
    PoolWaiter& waiter = *queue_head_;
    unlink(waiter);
    waiter.on_backend_failed(Failure::queue_timeout);
  }
  if (queue_head_ != nullptr) {
    const auto left = std::chrono::duration_cast<Duration>(queue_head_->deadline_ - now);
    const timeval timeout = to_timeval(left + Duration(1));
    evtimer_add(queue_timer_.get(), &timeout);
  }
  update_starving();
}

}  // namespace proxy
