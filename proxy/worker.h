// One event-loop thread. It owns a listening socket per listener (SO_REUSEPORT: the kernel
// spreads connections over the workers), the client connections it accepted, and one
// BackendPool per backend group. A connection lives on one worker from accept to close, so
// nothing on the request path is shared with another thread except a few atomics.
//
// Owner: the Server. Methods are for the worker's own thread unless marked "any thread".
#pragma once

#include <atomic>
#include <cstddef>
#include <list>
#include <memory>
#include <vector>

#include "proxy/backend_pool.h"
#include "proxy/libevent_ptr.h"
#include "proxy/retirable.h"
#include "proxy/runtime.h"
#include "routes/route_table.h"

namespace proxy {

class ClientConnection;

class Worker {
 public:
  // listen_fds: one bound, listening socket per runtime listener (ownership passes here).
  Worker(Runtime& runtime, std::size_t index, std::vector<int> listen_fds);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // The thread body: runs the loop until shut down.
  void run();
  // Any thread: stop accepting, finish in-flight requests, then leave the loop.
  void request_shutdown();
  // Any thread: leave the loop now (after shutdown_timeout).
  void force_stop();

  event_base* base() const { return base_.get(); }
  std::size_t index() const { return index_; }
  Runtime& runtime() const { return runtime_; }
  const Config& config() const { return *runtime_.config; }
  BackendPool& pool(std::size_t backend) { return *pools_[backend]; }
  routes::MatchScratch& match_scratch() { return match_scratch_; }
  // The current user map and HMAC key (null without [auth] maps). The worker refreshes its
  // copy only when the published generation moved: one atomic load per call.
  const std::shared_ptr<const CmsIdentitySnapshot>& cms_identity();
  bool draining() const { return draining_; }

  // Destroys `object` on the next loop turn: what a callback uses to get rid of the object it
  // belongs to.
  void retire(std::unique_ptr<Retirable> object);
  // Called by a ClientConnection that has closed: removes and retires it.
  void connection_closed(ClientConnection& connection);

 private:
  static void on_accept(evconnlistener* listener, evutil_socket_t fd, sockaddr* address, int length,
                        void* arg) noexcept;
  static void on_reap(evutil_socket_t, short, void* arg) noexcept;
  static void on_shutdown(evutil_socket_t, short, void* arg) noexcept;
  static void on_force_stop(evutil_socket_t, short, void* arg) noexcept;

  void accept_connection(std::size_t listener, evutil_socket_t fd, const sockaddr* address,
                         int length);
  void begin_drain();
  void exit_if_drained();

  struct ListenerHandle {
    Worker* worker;
    std::size_t index;
    ListenerPtr listener;
  };

  Runtime& runtime_;
  std::size_t index_;
  EventBasePtr base_;
  std::vector<std::unique_ptr<ListenerHandle>> listeners_;
  std::vector<std::unique_ptr<BackendPool>> pools_;
  routes::MatchScratch match_scratch_;
  std::shared_ptr<const CmsIdentitySnapshot> cms_identity_;
  std::list<std::unique_ptr<ClientConnection>> connections_;
  std::vector<std::unique_ptr<Retirable>> graveyard_;
  EventPtr reap_event_;
  EventPtr shutdown_event_;
  EventPtr force_stop_event_;
  bool draining_ = false;
};

}  // namespace proxy
