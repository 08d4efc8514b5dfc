// What a BackendPool calls back when a request that asked for a connection gets one or
// cannot. Implemented by Exchange. The pool calls these only from its own event callbacks,
// never from inside acquire(), so a caller never re-enters itself.
#pragma once

#include <chrono>
#include <cstddef>

#include "proxy/failure.h"

namespace proxy {

class BackendConnection;

class PoolWaiter {
 public:
  virtual void on_backend_ready(BackendConnection& connection) = 0;
  virtual void on_backend_failed(Failure failure) = 0;

 protected:
  PoolWaiter() = default;
  virtual ~PoolWaiter() = default;
  PoolWaiter(const PoolWaiter&) = delete;
  PoolWaiter& operator=(const PoolWaiter&) = delete;

 private:
  friend class BackendPool;
  enum class WaitState : unsigned char { none, queued, connecting };
  WaitState wait_state_ = WaitState::none;
  PoolWaiter* previous_ = nullptr;  // intrusive FIFO links while queued
  PoolWaiter* next_ = nullptr;
  std::chrono::steady_clock::time_point deadline_{};
  BackendConnection* connecting_ = nullptr;
  bool fresh_only_ = false;
  std::size_t attempts_ = 0;  // servers that failed to connect for this request
};

}  // namespace proxy
