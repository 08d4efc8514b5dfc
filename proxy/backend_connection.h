// One keep-alive HTTP/1.1 connection from a worker to one backend server.
//
// Owner: the BackendPool of the worker that opened it; it never changes thread. While busy,
// one Exchange drives its bufferevent (its callbacks point at the exchange); while connecting
// or idle, the pool's callbacks are installed. Destroyed through Worker::retire.
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>

#include "proxy/libevent_ptr.h"
#include "proxy/retirable.h"

namespace proxy {

class BackendPool;
class PoolWaiter;

class BackendConnection final : public Retirable {
 public:
  // closing: we half-closed it and wait for the backend to close its side; it still counts
  // against the quota, so the backend never sees more than max_connections sockets at once.
  enum class State : std::uint8_t { connecting, idle, busy, closing, closed };

  BackendConnection(std::size_t server, BufferEventPtr bev)
      : server_(server), bev_(std::move(bev)) {}

  bufferevent* bev() const { return bev_.get(); }
  std::size_t server() const { return server_; }
  State state() const { return state_; }
  // True when this connection already carried a response: the backend may have closed it
  // since, so a failure before the first response byte may be retried.
  bool reused() const { return responses_ > 0; }

 private:
  friend class BackendPool;
  BackendPool* pool_ = nullptr;
  std::size_t server_;
  BufferEventPtr bev_;
  State state_ = State::connecting;
  std::uint32_t responses_ = 0;
  PoolWaiter* bound_waiter_ = nullptr;  // the request this connection is being opened for
  std::list<std::unique_ptr<BackendConnection>>::iterator position_;  // in the pool's list
};

}  // namespace proxy
