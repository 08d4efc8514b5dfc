#include "proxy/exchange.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>

#include "auth/header_rules.h"
#include "proxy/backend_pool.h"
#include "proxy/log.h"
#include "proxy/observability.h"
#include "proxy/response_writer.h"
#include "proxy/timeval.h"
#include "proxy/worker.h"

namespace proxy {
namespace {

using http1::BodyFraming;
using http1::HeaderField;
using http1::iequals;

// The first contiguous piece of an evbuffer, without copying.
std::string_view first_segment(evbuffer* buffer) {
  evbuffer_iovec vec{};
  if (evbuffer_peek(buffer, -1, nullptr, &vec, 1) < 1) return {};
  return {static_cast<const char*>(vec.iov_base), vec.iov_len};
}

bool idempotent(http1::Method method) {
  switch (method) {
    case http1::Method::get:
    case http1::Method::head:
    case http1::Method::put:
    case http1::Method::del:
    case http1::Method::options:
      return true;
    default:
      return false;
  }
}

}  // namespace

Exchange::Exchange(Downstream& client)
    : client_(client),
      timer_(evtimer_new(client.worker().base(), on_timer, this)),
      chunk_(evbuffer_new()),
      response_parser_(http1::HeadLimits{client.config().limits.header_size, 256}) {}

Exchange::~Exchange() { abort(); }

void Exchange::start(std::size_t backend, const std::string& forwarded_target) {
  pool_ = &client_.worker().pool(backend);
  backend_index_ = backend;
  stats_ = ExchangeStats{};
  waiting_since_ = std::chrono::steady_clock::now();
  connected_ = false;
  recorded_ = false;
  backend_ = &pool_->settings();
  forwarded_target_.assign(forwarded_target);
  const http1::RequestHead& request = client_.request();
  request_chunked_ = client_.request_has_body() && !client_.request_body_length();
  request_body_bytes_ = 0;
  response_chunks_.reset();
  response_parser_.reset();
  response_parser_.expect_response_to(request.method);
  request_done_ = false;
  response_started_ = false;
  response_head_sent_ = false;
  retried_ = false;
  backend_eof_ = false;
  backend_timed_out_ = false;

  state_ = State::waiting_backend;
  const BackendPool::Acquired acquired = pool_->acquire(*this, false);
  if (acquired.connection != nullptr) {
    on_backend_ready(*acquired.connection);
  } else if (acquired.failure != Failure::none) {
    on_backend_failed(acquired.failure);
  }
  // else: the pool calls back.
}

void Exchange::on_backend_ready(BackendConnection& connection) {
  const auto now = std::chrono::steady_clock::now();
  stats_.queue_us += static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(now - waiting_since_).count());
  if (!connected_) {
    connected_ = true;
    connected_at_ = now;
  }
  connection_ = &connection;
  state_ = State::forwarding;
  bufferevent* bev = connection.bev();
  bufferevent_setcb(bev, on_backend_read, on_backend_write, on_backend_event, this);
  bufferevent_setwatermark(bev, EV_READ, 0, kHighWater);
  bufferevent_setwatermark(bev, EV_WRITE, kLowWater, 0);
  bufferevent_enable(bev, EV_READ | EV_WRITE);

  write_request_head();
  if (!client_.request_has_body()) {
    request_complete();
  } else {
    client_.request_body_wanted();
    arm_timer(client_.config().limits.body_timeout);
    pump_request_body();
  }
}

void Exchange::on_backend_failed(Failure failure) {
  state_ = State::forwarding;  // so fail() treats it as an active exchange
  fail(failure);
}

void Exchange::write_request_head() {
  const http1::RequestHead& request = client_.request();
  std::string& head = client_.scratch();
  head.clear();
  head.append(request.method_text);
  head.push_back(' ');
  head.append(forwarded_target_);
  head.append(" HTTP/1.1\r\n");
  append_header_line(head, "Host", request.host);
  for (const HeaderField& field : request.headers) {
    // Never forwarded: what we set ourselves, what the client may not claim (cms-*,
    // x-forwarded-*, ssl-client-*...), hop-by-hop fields and the options Connection names,
    // the client's framing (we re-frame), and Expect (the client side answered it).
    if (iequals(field.name, "host") || iequals(field.name, "content-length") ||
        iequals(field.name, "expect") || auth::is_reserved_request_header(field.name) ||
        auth::is_hop_by_hop_header(field.name) ||
        http1::listed_in(request.connection_tokens, field.name)) {
      continue;
    }
    append_header_line(head, field.name, field.value);
  }
  append_header_line(head, "x-forwarded-for", client_.client_ip());
  append_header_line(head, "x-forwarded-proto", client_.is_tls() ? "https" : "http");
  append_header_line(head, "x-forwarded-host", request.host);
  // The identity block was built (and signed) once for the connection; only the URI is ours.
  if (const std::string_view identity = client_.identity_headers(); !identity.empty()) {
    head.append(identity);
    append_header_line(head, "cms-request-uri", request.path);
  }
  if (client_.request_has_body()) {
    if (const auto length = client_.request_body_length()) {
      char text[32];
      const int n = std::snprintf(text, sizeof text, "%" PRIu64, *length);
      append_header_line(head, "Content-Length",
                         std::string_view(text, static_cast<std::size_t>(n)));
    } else {
      append_header_line(head, "Transfer-Encoding", "chunked");
    }
  }
  head.append("\r\n");
  evbuffer_add(bufferevent_get_output(connection_->bev()), head.data(), head.size());
}

void Exchange::pump_request_body() {
  if (state_ != State::forwarding || connection_ == nullptr || request_done_) return;
  evbuffer* out = bufferevent_get_output(connection_->bev());
  const std::uint64_t before = request_body_bytes_;

  while (!request_done_ && evbuffer_get_length(out) < kHighWater) {
    std::size_t moved = 0;
    const std::size_t room = kHighWater - evbuffer_get_length(out);
    Downstream::BodyStatus status;
    if (request_chunked_) {
      // Each slice becomes one chunk: its size goes first, then the bytes (moved, not copied).
      status = client_.read_request_body(chunk_.get(), room, moved);
      if (moved > 0) {
        evbuffer_add_printf(out, "%zx\r\n", moved);
        evbuffer_add_buffer(out, chunk_.get());
        evbuffer_add(out, "\r\n", 2);
      }
    } else {
      status = client_.read_request_body(out, room, moved);
    }
    request_body_bytes_ += moved;
    switch (status) {
      case Downstream::BodyStatus::more:
        if (moved == 0) goto progress;
        continue;
      case Downstream::BodyStatus::done:
        if (request_chunked_) evbuffer_add(out, "0\r\n\r\n", 5);
        request_complete();
        return;
      case Downstream::BodyStatus::error:
        fail(Failure::bad_request);
        return;
      case Downstream::BodyStatus::too_large:
        fail(Failure::body_too_large);
        return;
    }
  }
progress:
  if (request_body_bytes_ != before) arm_timer(client_.config().limits.body_timeout);
}

void Exchange::request_complete() {
  request_done_ = true;
  if (!response_head_sent_) arm_timer(backend_->response_timeout);
}

void Exchange::on_client_readable() { pump_request_body(); }

void Exchange::on_client_writable() {
  if (state_ == State::forwarding && response_head_sent_) pump_response_body();
}

void Exchange::on_backend_write(bufferevent*, void* arg) noexcept {
  static_cast<Exchange*>(arg)->pump_request_body();
}

void Exchange::on_backend_read(bufferevent*, void* arg) noexcept {
  static_cast<Exchange*>(arg)->read_response();
}

void Exchange::read_response() {
  if (state_ != State::forwarding || connection_ == nullptr) return;
  evbuffer* in = bufferevent_get_input(connection_->bev());
  while (!response_head_sent_) {
    const std::string_view bytes = first_segment(in);
    if (bytes.empty()) return;
    response_started_ = true;
    const std::size_t consumed = response_parser_.feed(bytes);
    evbuffer_drain(in, consumed);
    switch (response_parser_.status()) {
      case http1::ParseStatus::need_more:
        continue;
      case http1::ParseStatus::error:
        LOG_WARN("conn %" PRIu64 ": backend %s sent an invalid response: %.*s", client_.id(),
                 backend_->name.c_str(), static_cast<int>(response_parser_.error().reason.size()),
                 response_parser_.error().reason.data());
        fail(Failure::backend_protocol);
        return;
      case http1::ParseStatus::complete:
        break;
    }
    if (response_parser_.head().informational()) {
      // 100 answers an Expect the backend never saw (the client side handled it).
      if (response_parser_.head().status != 100) client_.send_interim(response_parser_.head());
      response_parser_.reset();
      continue;
    }
    start_response();
    if (state_ != State::forwarding) return;
  }
  pump_response_body();
}

void Exchange::start_response() {
  const http1::ResponseHead& response = response_parser_.head();
  response_remaining_ =
      response.framing == BodyFraming::content_length ? response.content_length : 0;
  std::optional<std::uint64_t> length;
  if (response.framing == BodyFraming::content_length) length = response.content_length;
  const bool has_body = response.framing != BodyFraming::none;
  client_.send_response_head(response, has_body, length);
  response_head_sent_ = true;
  arm_timer(client_.config().limits.body_timeout);
  if (!has_body) finish();
}

void Exchange::pump_response_body() {
  if (state_ != State::forwarding || connection_ == nullptr || !response_head_sent_) return;
  const http1::ResponseHead& response = response_parser_.head();
  evbuffer* in = bufferevent_get_input(connection_->bev());
  bool progressed = false;

  while (client_.response_backlog() < kHighWater) {
    const std::size_t available = evbuffer_get_length(in);
    if (response.framing == BodyFraming::content_length) {
      const auto n =
          static_cast<std::size_t>(std::min<std::uint64_t>(response_remaining_, available));
      if (n > 0) {
        client_.send_response_body(in, n);
        response_remaining_ -= n;
        progressed = true;
      }
      if (response_remaining_ == 0) {
        finish();
        return;
      }
      break;
    }
    if (response.framing == BodyFraming::until_close) {
      if (available == 0) break;
      client_.send_response_body(in, available);
      progressed = true;
      continue;
    }
    // chunked from the backend: decode; the client side frames the bytes its own way
    if (response_chunks_.state() == http1::ChunkedDecoder::State::data) {
      const auto n = static_cast<std::size_t>(
          std::min<std::uint64_t>(response_chunks_.data_remaining(), available));
      if (n == 0) break;
      client_.send_response_body(in, n);
      response_chunks_.consume_data(n);
      progressed = true;
      continue;
    }
    const std::string_view framing = first_segment(in);
    if (framing.empty()) break;
    const std::size_t consumed = response_chunks_.feed_framing(framing);
    evbuffer_drain(in, consumed);
    if (response_chunks_.state() == http1::ChunkedDecoder::State::error) {
      LOG_WARN("conn %" PRIu64 ": backend %s sent invalid chunked framing", client_.id(),
               backend_->name.c_str());
      fail(Failure::backend_protocol);
      return;
    }
    if (response_chunks_.state() == http1::ChunkedDecoder::State::done) {
      finish();
      return;
    }
  }
  if (progressed) arm_timer(client_.config().limits.body_timeout);
  if (backend_eof_ && evbuffer_get_length(in) == 0) backend_input_ended();
}

void Exchange::on_backend_event(bufferevent*, short events, void* arg) noexcept {
  static_cast<Exchange*>(arg)->backend_closed(events);
}

void Exchange::backend_closed(short events) {
  if (state_ != State::forwarding || connection_ == nullptr) return;
  backend_eof_ = true;
  backend_timed_out_ = (events & BEV_EVENT_TIMEOUT) != 0;
  // Bytes that arrived with the close are still to be relayed; pump_response_body() ends the
  // response (complete or truncated) once they are gone.
  read_response();
  if (state_ != State::forwarding || response_head_sent_) return;
  if (may_retry()) {
    // The classic keep-alive race: the backend closed a pooled connection just as we sent on
    // it. Nothing of the request body was consumed, so send it again on a fresh connection.
    LOG_DEBUG("conn %" PRIu64 ": pooled connection to %s was closed, retrying", client_.id(),
              backend_->name.c_str());
    retried_ = true;
    stats_.retried = true;
    waiting_since_ = std::chrono::steady_clock::now();
    backend_eof_ = false;
    release_backend(false);
    state_ = State::waiting_backend;
    const BackendPool::Acquired acquired = pool_->acquire(*this, true);
    if (acquired.connection != nullptr) {
      on_backend_ready(*acquired.connection);
    } else if (acquired.failure != Failure::none) {
      on_backend_failed(acquired.failure);
    }
    return;
  }
  fail(backend_timed_out_ ? Failure::backend_timeout : Failure::backend_reset);
}

void Exchange::backend_input_ended() {
  // Called with the backend's input drained after it closed.
  if (response_parser_.head().framing == BodyFraming::until_close && !backend_timed_out_) {
    release_backend(false);
    finish();
    return;
  }
  LOG_WARN("conn %" PRIu64 ": backend %s closed in the middle of a response", client_.id(),
           backend_->name.c_str());
  fail(Failure::backend_reset);
}

bool Exchange::may_retry() const {
  const http1::RequestHead& request = client_.request();
  return !retried_ && !response_started_ && connection_ != nullptr && connection_->reused() &&
         request_body_bytes_ == 0 && (idempotent(request.method) || !client_.request_has_body());
}

void Exchange::on_timer(evutil_socket_t, short, void* arg) noexcept {
  auto& self = *static_cast<Exchange*>(arg);
  if (self.state_ != State::forwarding) return;
  if (self.request_done_ && !self.response_head_sent_) {
    LOG_WARN("conn %" PRIu64 ": backend %s did not answer within response_timeout",
             self.client_.id(), self.backend_->name.c_str());
    self.fail(Failure::backend_timeout);
  } else {
    self.fail(Failure::body_timeout);  // no body byte moved in either direction
  }
}

void Exchange::arm_timer(Duration duration) {
  const timeval timeout = to_timeval(duration);
  evtimer_add(timer_.get(), &timeout);
}

void Exchange::release_backend(bool reusable) {
  if (connection_ == nullptr) return;
  BackendConnection& connection = *connection_;
  connection_ = nullptr;
  bufferevent_setcb(connection.bev(), nullptr, nullptr, nullptr, nullptr);
  bufferevent_setwatermark(connection.bev(), EV_READ | EV_WRITE, 0, 0);
  pool_->release(connection, reusable);
}

void Exchange::finish() {
  const bool backend_reusable = request_done_ && response_parser_.head().keep_alive &&
                                connection_ != nullptr &&
                                evbuffer_get_length(bufferevent_get_input(connection_->bev())) == 0;
  release_backend(backend_reusable);
  evtimer_del(timer_.get());
  state_ = State::idle;
  record_backend(true, Failure::none);
  client_.end_response();
}

void Exchange::fail(Failure failure) {
  if (state_ == State::idle) return;
  evtimer_del(timer_.get());
  if (state_ == State::waiting_backend && pool_ != nullptr) pool_->cancel(*this);
  release_backend(false);
  state_ = State::idle;
  record_backend(false, failure);
  if (response_head_sent_) {
    // Part of the response is out: the only honest signal left is to cut it short.
    client_.abort_response();
  } else {
    client_.send_failure(failure);
  }
}

void Exchange::abort() {
  if (state_ == State::idle) return;
  evtimer_del(timer_.get());
  if (state_ == State::waiting_backend && pool_ != nullptr) pool_->cancel(*this);
  release_backend(false);
  state_ = State::idle;
  record_backend(false, Failure::none);
}

void Exchange::record_backend(bool answered, Failure failure) {
  if (recorded_) return;
  recorded_ = true;
  const auto now = std::chrono::steady_clock::now();
  if (!connected_) {  // never got a connection: all of it was waiting
    stats_.queue_us += static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(now - waiting_since_).count());
  }
  const auto response = connected_ ? now - connected_at_ : std::chrono::steady_clock::duration{};
  stats_.backend_us = static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(response).count());
  stats_.failure = failure;
  client_.worker().runtime().observability->backend_exchange(
      client_.worker().index(), backend_index_, std::chrono::microseconds(stats_.queue_us),
      response, answered, failure, stats_.retried);
}

}  // namespace proxy
