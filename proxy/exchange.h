// One request on its way through cmsfront: backend connection -> relay both bodies -> finish.
// It speaks HTTP/1.1 to the backend and re-frames everything it forwards: the backend gets a
// request head built from the parsed one (scrubbed, with forwarding headers) and the decoded
// body re-encoded (Content-Length or chunked); the response head and body go back through the
// Downstream, which frames them for the client's protocol. Bodies move between evbuffers
// without copies, with backpressure on both sides (a side stops being read while the other's
// output holds more than kHighWater bytes).
//
// Owner: the Downstream (today a ClientConnection), which reuses one Exchange for all its
// requests (no allocation per request). Single thread. The backend connection it drives
// belongs to the worker's pool; the exchange gives it back (reusable or not) before it ends.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

#include "proxy/backend_connection.h"
#include "proxy/chunked_decoder.h"
#include "proxy/config.h"
#include "proxy/downstream.h"
#include "proxy/failure.h"
#include "proxy/http1_parser.h"
#include "proxy/libevent_ptr.h"
#include "proxy/pool_waiter.h"

namespace proxy {

class BackendPool;

// What the last request's trip to its backend cost, for the request record.
struct ExchangeStats {
  std::uint64_t queue_us = 0;    // waiting for a backend connection (all attempts)
  std::uint64_t backend_us = 0;  // from the connection to the end of the response
  Failure failure = Failure::none;
  bool retried = false;
};

class Exchange final : public PoolWaiter {
 public:
  static constexpr std::size_t kHighWater = 256 * 1024;
  static constexpr std::size_t kLowWater = 64 * 1024;

  explicit Exchange(Downstream& client);
  ~Exchange() override;

  // Starts forwarding the client's current request to the backend group `backend`, with
  // `forwarded_target` (the rewritten path?query) as its request-target.
  void start(std::size_t backend, const std::string& forwarded_target);
  bool active() const { return state_ != State::idle; }
  const ExchangeStats& stats() const { return stats_; }

  void on_client_readable();  // request body bytes arrived
  void on_client_writable();  // the client side drained below kLowWater
  // The client side is going away: release everything, say nothing more to it.
  void abort();

 private:
  enum class State : std::uint8_t { idle, waiting_backend, forwarding };

  void on_backend_ready(BackendConnection& connection) override;
  void on_backend_failed(Failure failure) override;

  static void on_backend_read(bufferevent* bev, void* arg) noexcept;
  static void on_backend_write(bufferevent* bev, void* arg) noexcept;
  static void on_backend_event(bufferevent* bev, short events, void* arg) noexcept;
  static void on_timer(evutil_socket_t, short, void* arg) noexcept;

  void write_request_head();
  void pump_request_body();
  void read_response();
  void start_response();
  void pump_response_body();
  void backend_closed(short events);
  void backend_input_ended();
  void request_complete();
  void finish();
  void fail(Failure failure);
  void release_backend(bool reusable);
  void arm_timer(Duration duration);
  bool may_retry() const;
  // The exchange with the backend is over (answered, failed, or abandoned): count it once.
  void record_backend(bool answered, Failure failure);

  Downstream& client_;
  State state_ = State::idle;
  BackendPool* pool_ = nullptr;
  const BackendSettings* backend_ = nullptr;
  BackendConnection* connection_ = nullptr;
  std::string forwarded_target_;
  EventPtr timer_;
  EvBufferPtr chunk_;  // one request-body slice on its way to become a chunk

  http1::ResponseParser response_parser_;
  http1::ChunkedDecoder response_chunks_;
  bool request_chunked_ = false;          // the backend gets the request body chunked
  std::uint64_t request_body_bytes_ = 0;  // decoded body bytes taken from the client
  std::uint64_t response_remaining_ = 0;  // Content-Length bytes still to relay
  bool request_done_ = false;             // the whole request was handed to the backend
  bool response_started_ = false;         // a byte of the response arrived from the backend
  bool response_head_sent_ = false;       // the client has our response head
  bool retried_ = false;
  bool backend_eof_ = false;  // the backend closed; its input may still hold bytes
  bool backend_timed_out_ = false;

  std::size_t backend_index_ = 0;
  ExchangeStats stats_;
  std::chrono::steady_clock::time_point waiting_since_;
  std::chrono::steady_clock::time_point connected_at_;
  bool connected_ = false;
  bool recorded_ = true;
};

}  // namespace proxy
