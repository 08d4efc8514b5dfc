// The keep-alive connections of one worker to the servers of one backend group, and the
// requests of that worker waiting for one.
//
// The total per server across all workers is bounded by a shared ConnectionQuota, so a
// backend with N threads sees at most max_connections connections whatever the client count.
// Requests beyond wait in a FIFO (bounded process-wide by max_queue, each for at most
// queue_timeout). Servers are chosen round-robin (or least-connections / random); a server
// that refuses a connection in a group of several is skipped for a short while.
//
// Owner: one Worker; only that worker's thread touches it, except the wake-up event that
// other workers activate through the quota when they free a slot.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <vector>

#include "proxy/backend_connection.h"
#include "proxy/config.h"
#include "proxy/connection_quota.h"
#include "proxy/failure.h"
#include "proxy/libevent_ptr.h"
#include "proxy/pool_waiter.h"

namespace proxy {

class Worker;

class BackendPool {
 public:
  BackendPool(Worker& worker, const BackendSettings& settings, std::vector<ConnectionQuota*> quotas,
              std::atomic<unsigned>& queued);
  ~BackendPool();
  BackendPool(const BackendPool&) = delete;
  BackendPool& operator=(const BackendPool&) = delete;

  struct Acquired {
    BackendConnection* connection = nullptr;  // ready now: the caller drives it
    Failure failure = Failure::none;          // refused now
    // neither: the waiter is called back later
  };
  // fresh_only: never hand out a pooled connection (the retry after a stale one).
  [[nodiscard]] Acquired acquire(PoolWaiter& waiter, bool fresh_only);
  // The waiter no longer wants a connection (its client went away).
  void cancel(PoolWaiter& waiter);
  // The exchange is done with the connection; reusable when a complete response was read
  // after a complete request and the backend did not ask to close.
  void release(BackendConnection& connection, bool reusable);

  // Shutdown: close idle connections now, and busy ones as they are released.
  void drain();

  const BackendSettings& settings() const { return settings_; }
  std::size_t idle_count() const;
  std::size_t queued_count() const { return queue_length_; }

 private:
  static void on_connect_event(bufferevent* bev, short events, void* arg) noexcept;
  static void on_idle_read(bufferevent* bev, void* arg) noexcept;
  static void on_idle_event(bufferevent* bev, short events, void* arg) noexcept;
  static void on_closing_read(bufferevent* bev, void* arg) noexcept;
  static void on_closing_event(bufferevent* bev, short events, void* arg) noexcept;
  static void on_wakeup(evutil_socket_t, short, void* arg) noexcept;
  static void on_queue_timer(evutil_socket_t, short, void* arg) noexcept;

  void connect_finished(BackendConnection& connection, short events);
  void set_state(BackendConnection& connection, BackendConnection::State to);
  void dispatch();
  void expire_waiters();
  void schedule_dispatch();
  // Finds the waiter a connection: true with `ready` set (use it now), true with `ready` null
  // (a connection is being opened for it), false (no capacity: it must wait).
  bool serve(PoolWaiter& waiter, BackendConnection*& ready);
  std::size_t first_server();
  bool start_connect(PoolWaiter& waiter, std::size_t server);
  BackendConnection* take_idle(std::size_t server);
  void make_idle(BackendConnection& connection);
  void destroy(BackendConnection& connection);   // closes gracefully unless never opened
  void finalize(BackendConnection& connection);  // frees the slot and the object
  void enqueue(PoolWaiter& waiter);
  void unlink(PoolWaiter& waiter);
  void update_starving();
  bool must_yield(std::size_t server) const;
  void yield_idle();
  bool server_usable(std::size_t server, std::chrono::steady_clock::time_point now) const;
  bool all_servers_down() const;

  Worker& worker_;
  const BackendSettings& settings_;
  std::vector<ConnectionQuota*> quotas_;  // one per server, shared with other workers
  std::atomic<unsigned>& queued_;         // process-wide queue length for max_queue
  std::list<std::unique_ptr<BackendConnection>> connections_;
  std::vector<std::vector<BackendConnection*>> idle_;  // per server, most recent last
  std::vector<std::size_t> busy_;                      // per server, for least-connections
  std::vector<unsigned> closing_;                      // per server, half-closed, slot held
  std::vector<std::chrono::steady_clock::time_point> down_until_;
  std::size_t round_robin_ = 0;
  std::uint64_t random_state_ = 0x9e3779b97f4a7c15ULL;  // balance = random
  PoolWaiter* queue_head_ = nullptr;
  PoolWaiter* queue_tail_ = nullptr;
  std::size_t queue_length_ = 0;
  bool draining_ = false;
  bool starving_ = false;
  EventPtr wakeup_;
  EventPtr queue_timer_;
  std::size_t backend_index_;  // in the configuration's backend list (for metrics)
};

}  // namespace proxy
