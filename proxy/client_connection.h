// One client connection (TLS or plain TCP) and its HTTP/1.1 side: reads request heads with
// the strict parser, runs one Exchange at a time (pipelined requests wait in the input buffer,
// so answers go out in order), answers locally what never needs a backend (errors, redirects),
// and enforces the handshake, header and idle deadlines.
//
// Owner: the Worker that accepted it. It keeps the configuration snapshot it started with.
// Closing is two-step: close() detaches it from libevent and hands it to Worker::retire, so
// it is destroyed on the next loop turn, never inside its own callback.
#pragma once

#include <netinet/in.h>

#include <cstdint>
#include <list>
#include <memory>
#include <string>
#include <string_view>

#include "proxy/exchange.h"
#include "proxy/failure.h"
#include "proxy/http1_parser.h"
#include "proxy/libevent_ptr.h"
#include "proxy/retirable.h"
#include "proxy/runtime.h"

namespace proxy {

class Worker;

class ClientConnection final : public Retirable {
 public:
  ClientConnection(Worker& worker, const ListenerRuntime& listener, BufferEventPtr bev,
                   const sockaddr* peer, std::uint64_t id);
  ~ClientConnection() override;

  // Starts reading (or the TLS handshake). Returns false when the connection had to close.
  void start();

  // Drain: close now if between requests, else after the current response.
  void begin_drain();

  // --- used by Exchange ---
  bufferevent* bev() const { return bev_.get(); }
  Worker& worker() const { return worker_; }
  const Config& config() const { return *config_; }
  const http1::RequestHead& request() const { return parser_.head(); }
  std::string_view client_ip() const { return client_ip_; }
  bool is_tls() const { return listener_.tls != nullptr; }
  std::uint64_t id() const { return id_; }
  // The exchange finished its response; keep_alive says whether the connection can carry
  // another request.
  void exchange_finished(bool keep_alive);
  // Answers locally (error page); keep_alive as above. Only before any response byte.
  void send_failure(Failure failure, bool keep_alive);
  // The response cannot be completed (backend died mid-body): close without finishing it.
  void abort_connection();
  // Scratch string reused for building heads, so a request allocates nothing once warm.
  std::string& scratch() { return scratch_; }

 private:
  enum class State : std::uint8_t { handshake, reading_head, exchanging, closing, closed };

  static void on_read(bufferevent* bev, void* arg) noexcept;
  static void on_write(bufferevent* bev, void* arg) noexcept;
  static void on_event(bufferevent* bev, short events, void* arg) noexcept;
  static void on_timer(evutil_socket_t, short, void* arg) noexcept;
  static void on_resume(evutil_socket_t, short, void* arg) noexcept;

  void enter_reading_head();
  void read_head();
  void handle_request();
  void send_local(int status, std::string_view extra_headers, std::string_view body,
                  bool keep_alive);
  void send_redirect();
  void close_after_flush();
  void close();
  void arm_timer(Duration duration);

  Worker& worker_;
  const ListenerRuntime& listener_;
  std::shared_ptr<const Config> config_;
  BufferEventPtr bev_;
  EventPtr timer_;
  EventPtr resume_;
  std::uint64_t id_;
  std::string client_ip_;
  State state_ = State::handshake;
  bool drain_requested_ = false;
  bool head_timer_armed_ = false;  // the timer counts header_timeout (not idle_timeout)
  http1::RequestParser parser_;
  Exchange exchange_;
  std::string scratch_;

 public:
  std::list<std::unique_ptr<ClientConnection>>::iterator position_;  // in Worker's list
};

}  // namespace proxy
