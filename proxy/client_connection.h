// One client connection (TLS or plain TCP) and its HTTP/1.1 side: reads request heads with
// the strict parser, runs one Exchange at a time (pipelined requests wait in the input buffer,
// so answers go out in order), decodes request bodies and frames responses for the Exchange
// (the Downstream seam), answers locally what never needs a backend (errors, redirects), and
// enforces the handshake, header and idle deadlines.
//
// Owner: the Worker that accepted it. It keeps the configuration snapshot it started with.
// Closing is two-step: close() detaches it from libevent and hands it to Worker::retire, so
// it is destroyed on the next loop turn, never inside its own callback.
#pragma once

#include <netinet/in.h>

#include <chrono>
#include <cstdint>
#include <list>
#include <memory>
#include <string>
#include <string_view>

#include "auth/auth_pages.h"
#include "auth/policy.h"
#include "proxy/chunked_decoder.h"
#include "proxy/downstream.h"
#include "proxy/exchange.h"
#include "proxy/failure.h"
#include "proxy/http1_parser.h"
#include "proxy/identity_headers.h"
#include "proxy/libevent_ptr.h"
#include "proxy/observability.h"
#include "proxy/request_record.h"
#include "proxy/retirable.h"
#include "proxy/runtime.h"
#include "tls/client_identity.h"

namespace proxy {

class Worker;

class ClientConnection final : public Retirable, public Downstream {
 public:
  ClientConnection(Worker& worker, const ListenerRuntime& listener, BufferEventPtr bev,
                   const sockaddr* peer, std::uint64_t id);
  ~ClientConnection() override;

  // Starts reading (or the TLS handshake). Returns false when the connection had to close.
  void start();

  // Drain: close now if between requests, else after the current response.
  void begin_drain();

  // --- Downstream: what the Exchange uses ---
  const http1::RequestHead& request() const override { return parser_.head(); }
  std::optional<std::uint64_t> request_body_length() const override;
  bool request_has_body() const override;
  void request_body_wanted() override;
  BodyStatus read_request_body(evbuffer* to, std::size_t limit, std::size_t& moved) override;
  void send_interim(const http1::ResponseHead& head) override;
  void send_response_head(const http1::ResponseHead& head, bool has_body,
                          std::optional<std::uint64_t> body_length) override;
  void send_response_body(evbuffer* from, std::size_t n) override;
  std::size_t response_backlog() const override;
  void end_response() override;
  void send_failure(Failure failure) override;
  void abort_response() override;
  Worker& worker() const override { return worker_; }
  const Config& config() const override { return *config_; }
  std::string_view client_ip() const override { return client_ip_; }
  bool is_tls() const override { return listener_.tls != nullptr; }
  std::uint64_t id() const override { return id_; }
  std::string& scratch() override { return scratch_; }
  const tls::ClientIdentity& identity() const override { return *identity_; }
  std::string_view identity_headers() const override { return request_identity_block_; }

 private:
  // closing: the last answer is being written; lingering: it is out and our side is shut,
  // what the client still sends is discarded until it closes or kLingerTime passes.
  enum class State : std::uint8_t {
    handshake,
    reading_head,
    exchanging,
    closing,
    lingering,
    closed
  };

  static void on_read(bufferevent* bev, void* arg) noexcept;
  static void on_write(bufferevent* bev, void* arg) noexcept;
  static void on_event(bufferevent* bev, short events, void* arg) noexcept;
  static void on_timer(evutil_socket_t, short, void* arg) noexcept;
  static void on_resume(evutil_socket_t, short, void* arg) noexcept;

  void enter_reading_head();
  void read_head();
  void handle_request();
  void answer_locally(Failure failure, bool keep_alive);
  void send_local(int status, std::string_view extra_headers, std::string_view body,
                  bool keep_alive);
  void send_redirect();
  auth::Decision attach_identity(auth::Policy policy, auth::Decision decision,
                                 const routes::RouteRule& rule);
  void finish_handshake();
  void observe_handshake(HandshakeResult result);
  // A request starts being recorded (head complete, or a parse error / timeout answered).
  void open_request(bool head_complete);
  // ... and ends: one RequestRecord for the metrics and the access log.
  void finish_request(bool aborted);
  void send_trouble_page();
  void send_denied(const auth::Decision& decision);
  void send_page(int status, const auth::Page& page, bool keep_alive);
  bool request_wants_json() const;
  void close_after_flush();
  void linger();
  void send_close_notify();
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
  // Where the TLS handshake leaves a verified client identity (see tls::attach_identity_slot);
  // then the connection's identity for all its requests.
  tls::IdentityPtr handshake_identity_;
  tls::IdentityPtr identity_;
  std::chrono::steady_clock::time_point accepted_at_;
  State state_ = State::handshake;
  bool drain_requested_ = false;
  bool peer_gone_ = false;  // EOF or error from the client: no TLS close_notify to send
  bool close_notify_sent_ = false;
  bool head_timer_armed_ = false;  // the timer counts header_timeout (not idle_timeout)
  http1::RequestParser parser_;
  // The current request's body, as read for the exchange.
  http1::ChunkedDecoder request_chunks_;
  std::uint64_t request_remaining_ = 0;   // Content-Length bytes still to come
  std::uint64_t request_body_bytes_ = 0;  // decoded so far
  bool request_body_done_ = true;
  bool continue_sent_ = false;
  // The current request's record (see open_request / finish_request).
  bool request_open_ = false;
  bool head_complete_ = false;
  std::uint64_t request_number_ = 0;
  std::chrono::steady_clock::time_point request_started_;
  std::int64_t request_started_unix_us_ = 0;
  std::uint64_t head_bytes_ = 0;
  int response_status_ = 0;
  std::uint64_t response_bytes_ = 0;
  std::uint64_t response_body_bytes_ = 0;
  std::size_t route_index_ = kNoIndex;
  std::size_t backend_index_ = kNoIndex;
  std::string_view auth_result_;  // a static label
  IdentityHeaders identity_headers_;
  // The current request's CMS identity headers (in identity_headers_); empty on public routes.
  std::string_view request_identity_block_;
  // The current response's framing towards the client.
  bool response_chunked_ = false;
  bool response_close_ = false;  // the connection ends after this response
  Exchange exchange_;
  std::string scratch_;

 public:
  std::list<std::unique_ptr<ClientConnection>>::iterator position_;  // in Worker's list
};

}  // namespace proxy
