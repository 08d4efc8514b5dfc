#include "proxy/client_connection.h"

#include <arpa/inet.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <ctime>

#include "auth/auth_pages.h"
#include "auth/header_rules.h"
#include "proxy/backend_pool.h"
#include "proxy/log.h"
#include "proxy/observability.h"
#include "proxy/response_writer.h"
#include "proxy/timeval.h"
#include "proxy/worker.h"
#include "routes/request_path.h"

namespace proxy {
namespace {

std::string format_ip(const sockaddr* peer) {
  char text[INET6_ADDRSTRLEN] = "-";
  if (peer->sa_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(peer)->sin_addr, text, sizeof text);
  } else if (peer->sa_family == AF_INET6) {
    const auto* v6 = reinterpret_cast<const sockaddr_in6*>(peer);
    if (IN6_IS_ADDR_V4MAPPED(&v6->sin6_addr)) {
      inet_ntop(AF_INET, &v6->sin6_addr.s6_addr[12], text, sizeof text);
    } else {
      inet_ntop(AF_INET6, &v6->sin6_addr, text, sizeof text);
    }
  }
  return text;
}

// How long a connection we are closing keeps reading (and discarding) what the client still
// sends, after our answer and our FIN (see linger()).
constexpr Duration kLingerTime = std::chrono::seconds(2);

// Bodies up to this size are copied next to their head (see send_response_body).
constexpr std::size_t kCoalesceBytes = 4096;

Failure failure_for_status(int status) {
  switch (status) {
    case 414:
      return Failure::uri_too_long;
    case 431:
      return Failure::headers_too_large;
    case 417:
      return Failure::expectation_failed;
    case 501:
      return Failure::unsupported_coding;
    case 505:
      return Failure::unsupported_version;
    default:
      return Failure::bad_request;
  }
}

}  // namespace

ClientConnection::ClientConnection(Worker& worker, const ListenerRuntime& listener,
                                   BufferEventPtr bev, const sockaddr* peer, std::uint64_t id)
    : worker_(worker),
      listener_(listener),
      config_(worker.runtime().config),
      bev_(std::move(bev)),
      timer_(evtimer_new(worker.base(), on_timer, this)),
      resume_(event_new(worker.base(), -1, 0, on_resume, this)),
      id_(id),
      client_ip_(format_ip(peer)),
      identity_(tls::no_certificate_identity()),
      accepted_at_(std::chrono::steady_clock::now()),
      parser_(http1::HeadLimits{config_->limits.header_size, config_->limits.header_count}),
      exchange_(*this) {}

ClientConnection::~ClientConnection() { exchange_.abort(); }

void ClientConnection::start() {
  bufferevent_setcb(bev_.get(), on_read, on_write, on_event, this);
  bufferevent_setwatermark(bev_.get(), EV_READ, 0, Exchange::kHighWater);
  // Refill the output before it runs dry, so a large response streams without bubbles.
  bufferevent_setwatermark(bev_.get(), EV_WRITE, Exchange::kLowWater, 0);
  bufferevent_enable(bev_.get(), EV_READ | EV_WRITE);
  if (is_tls()) {
    tls::attach_identity_slot(bufferevent_openssl_get_ssl(bev_.get()), &handshake_identity_);
    state_ = State::handshake;
    arm_timer(config_->limits.handshake_timeout);
  } else {
    enter_reading_head();
  }
}

void ClientConnection::begin_drain() {
  drain_requested_ = true;
  if (state_ == State::handshake || (state_ == State::reading_head && !parser_.started())) {
    close();
  }
}

void ClientConnection::arm_timer(Duration duration) {
  const timeval timeout = to_timeval(duration);
  evtimer_add(timer_.get(), &timeout);
}

void ClientConnection::enter_reading_head() {
  state_ = State::reading_head;
  parser_.reset();
  head_bytes_ = 0;
  request_body_bytes_ = 0;
  head_timer_armed_ = false;
  arm_timer(config_->limits.idle_timeout);
  read_head();
}

void ClientConnection::on_read(bufferevent*, void* arg) noexcept {
  auto& self = *static_cast<ClientConnection*>(arg);
  switch (self.state_) {
    case State::reading_head:
      self.read_head();
      break;
    case State::exchanging:
      self.exchange_.on_client_readable();
      break;
    case State::closing:
    case State::lingering: {
      evbuffer* in = bufferevent_get_input(self.bev_.get());
      evbuffer_drain(in, evbuffer_get_length(in));
      break;
    }
    default:
      break;
  }
}

void ClientConnection::on_write(bufferevent* bev, void* arg) noexcept {
  auto& self = *static_cast<ClientConnection*>(arg);
  if (self.state_ == State::exchanging) {
    self.exchange_.on_client_writable();
  } else if (self.state_ == State::closing &&
             evbuffer_get_length(bufferevent_get_output(bev)) == 0) {
    self.linger();
  }
}

void ClientConnection::on_event(bufferevent*, short events, void* arg) noexcept {
  auto& self = *static_cast<ClientConnection*>(arg);
  if ((events & BEV_EVENT_CONNECTED) != 0) {
    if (self.state_ == State::handshake) {
      if (self.drain_requested_) {
        self.close();
        return;
      }
      self.finish_handshake();
      self.observe_handshake(HandshakeResult::ok);
      self.enter_reading_head();
    }
    return;
  }
  // EOF, error or timeout: the client is gone; whatever is in flight is abandoned.
  if (self.state_ == State::handshake) {
    LOG_DEBUG("conn %" PRIu64 ": TLS handshake with %s failed", self.id_, self.client_ip_.c_str());
    self.observe_handshake(HandshakeResult::failed);
  }
  self.peer_gone_ = true;
  self.close();
}

void ClientConnection::finish_handshake() {
  SSL* ssl = bufferevent_openssl_get_ssl(bev_.get());
  identity_ = tls::connection_identity(ssl, handshake_identity_);
  handshake_identity_.reset();
  tls::attach_identity_slot(ssl, nullptr);
  if (identity_->offered()) {
    LOG_DEBUG("conn %" PRIu64 ": client certificate %s%s: %s", id_,
              std::string(tls::outcome_label(identity_->outcome)).c_str(),
              identity_->resumed ? " (resumed)" : "",
              identity_->verified() ? identity_->user_dn.c_str() : identity_->reason.c_str());
  }
}

void ClientConnection::on_timer(evutil_socket_t, short, void* arg) noexcept {
  auto& self = *static_cast<ClientConnection*>(arg);
  switch (self.state_) {
    case State::handshake:
      self.observe_handshake(HandshakeResult::timeout);
      self.close();
      break;
    case State::reading_head:
      if (self.parser_.started()) {
        self.open_request(false);
        self.answer_locally(Failure::header_timeout, false);
      } else {
        self.close();  // idle keep-alive connection
      }
      break;
    case State::closing:    // the client does not read its answer
    case State::lingering:  // nor close its side
      self.close();
      break;
    default:
      break;
  }
}

void ClientConnection::read_head() {
  evbuffer* in = bufferevent_get_input(bev_.get());
  while (parser_.status() == http1::ParseStatus::need_more && evbuffer_get_length(in) > 0) {
    evbuffer_iovec vec{};
    if (evbuffer_peek(in, -1, nullptr, &vec, 1) < 1) break;
    const std::size_t consumed =
        parser_.feed(std::string_view(static_cast<const char*>(vec.iov_base), vec.iov_len));
    evbuffer_drain(in, consumed);
    head_bytes_ += consumed;
    if (consumed == 0) break;
  }
  switch (parser_.status()) {
    case http1::ParseStatus::need_more:
      if (parser_.started() && !head_timer_armed_) {
        // The whole head must arrive within header_timeout of its first byte (slowloris).
        head_timer_armed_ = true;
        arm_timer(config_->limits.header_timeout);
      }
      return;
    case http1::ParseStatus::error: {
      const http1::ParseError& error = parser_.error();
      LOG_DEBUG("conn %" PRIu64 ": %d %.*s", id_, error.status,
                static_cast<int>(error.reason.size()), error.reason.data());
      open_request(false);
      answer_locally(failure_for_status(error.status), false);
      return;
    }
    case http1::ParseStatus::complete:
      handle_request();
      return;
  }
}

void ClientConnection::handle_request() {
  evtimer_del(timer_.get());
  open_request(true);
  const http1::RequestHead& request = parser_.head();
  const bool body_follows = request.framing != http1::BodyFraming::none;
  const bool keep_alive = request.keep_alive && !body_follows && !drain_requested_;

  if (request.method == http1::Method::other) {
    send_local(405, "Allow: GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH\r\n",
               failure_info(Failure::method_not_allowed).phrase, keep_alive);
    return;
  }
  if (request.path == "*") {  // OPTIONS * : about the server itself, nothing to forward
    send_local(200, "Allow: GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH\r\n", {}, keep_alive);
    return;
  }
  if (routes::check_request_path(request.path) ||
      (request.has_query && routes::check_request_query(request.query))) {
    answer_locally(Failure::bad_path, false);
    return;
  }
  if (listener_.settings->redirect_to_https) {
    send_redirect();
    return;
  }
  if (request.path == config_->auth.trouble_page) {
    send_trouble_page();
    return;
  }
  const std::uint64_t body_limit = config_->limits.body_size;
  if (body_limit != 0 && request.framing == http1::BodyFraming::content_length &&
      request.content_length > body_limit) {
    answer_locally(Failure::body_too_large, false);
    return;
  }
  std::string& target = scratch();
  const routes::RouteRule* rule = config_->routes.match(
      request.path, request.query, request.has_query, worker_.match_scratch(), target);
  if (rule == nullptr) {
    answer_locally(Failure::no_route, keep_alive);
    return;
  }
  route_index_ = static_cast<std::size_t>(rule - &config_->routes.rule(0));
  const auto policy = static_cast<auth::Policy>(rule->auth_policy);
  auth::Decision decision = auth::decide(policy, *identity_, std::time(nullptr));
  request_identity_block_ = {};
  if (policy != auth::Policy::none) {
    if (decision.allowed()) decision = attach_identity(policy, decision, *rule);
    auth_result_ = !decision.allowed()      ? auth::denial_label(decision.denial, *identity_)
                   : decision.authenticated ? std::string_view("ok")
                                            : std::string_view("anonymous");
    worker_.runtime().observability->auth_decided(worker_.index(), route_index_, identity_->kind,
                                                  auth_result_);
  }
  if (!decision.allowed()) {
    send_denied(decision);
    return;
  }
  request_chunks_.reset();
  request_remaining_ =
      request.framing == http1::BodyFraming::content_length ? request.content_length : 0;
  request_body_bytes_ = 0;
  request_body_done_ = !body_follows || (request.framing == http1::BodyFraming::content_length &&
                                         request.content_length == 0);
  continue_sent_ = false;
  response_chunked_ = false;
  response_close_ = !request.keep_alive;
  state_ = State::exchanging;
  backend_index_ = rule->backend_index;
  exchange_.start(rule->backend_index, target);
}

// Maps the identity to a CMS user and picks the signed header block for this request. The
// user lookup and the signature are per connection (IdentityHeaders caches them); a request
// only compares the map generation. Unknown users: refused on `cert` routes or, on `optional`
// routes, forwarded as anonymous -- unless unknown_users = forward (method and DN only).
auth::Decision ClientConnection::attach_identity(auth::Policy policy, auth::Decision decision,
                                                 const routes::RouteRule& rule) {
  const auto& snapshot = worker_.cms_identity();
  if (snapshot == nullptr) {
    // The configuration requires [auth] maps for protected routes; never forward unsigned.
    return auth::Decision{auth::Denial::unusable_identity, false};
  }
  const auth::UserRecord* user = nullptr;
  if (decision.authenticated) {
    user = identity_headers_.user(snapshot, *identity_);
    if (user == nullptr && config_->auth.unknown_users == UnknownUsers::reject) {
      if (policy != auth::Policy::optional)
        return auth::Decision{auth::Denial::unknown_user, false};
      decision.authenticated = false;
    }
  }
  const BackendSettings& backend = config_->backends[rule.backend_index];
  const auto block = identity_headers_.block(
      snapshot, *identity_, decision.authenticated, decision.authenticated ? user : nullptr,
      backend.hmac_encoding.value_or(config_->auth.hmac_encoding));
  if (!block) return auth::Decision{auth::Denial::unusable_identity, false};
  request_identity_block_ = *block;
  return decision;
}

void ClientConnection::send_redirect() {
  const http1::RequestHead& request = parser_.head();
  std::string_view host = request.host;
  // Replace the plain listener's port by the HTTPS one.
  if (!host.empty() && host.front() != '[') {
    if (const auto colon = host.rfind(':'); colon != std::string_view::npos)
      host = host.substr(0, colon);
  } else if (const auto bracket = host.find(']'); bracket != std::string_view::npos) {
    host = host.substr(0, bracket + 1);
  }
  std::string headers = "Location: https://";
  headers.append(host);
  if (listener_.https_port != 0) {
    headers.push_back(':');
    headers.append(std::to_string(listener_.https_port));
  }
  headers.append(request.path);
  if (request.has_query) {
    headers.push_back('?');
    headers.append(request.query);
  }
  headers.append("\r\n");
  const bool keep_alive =
      request.keep_alive && request.framing == http1::BodyFraming::none && !drain_requested_;
  send_local(301, headers, "moved to https", keep_alive);
}

bool ClientConnection::request_wants_json() const {
  for (const http1::HeaderField& field : parser_.head().headers) {
    if (http1::iequals(field.name, "accept")) return auth::wants_json(field.value);
  }
  return false;
}

void ClientConnection::send_trouble_page() {
  const http1::RequestHead& request = parser_.head();
  auth::TroubleFacts facts;
  facts.tls = is_tls();
  facts.protocol = is_tls() ? tls::negotiated_protocol(bufferevent_openssl_get_ssl(bev_.get()))
                            : std::string_view("-");
  facts.now = std::time(nullptr);
  if (const auto& snapshot = worker_.cms_identity()) {
    facts.user_map_loaded = true;
    facts.user_map_users = snapshot->map->users();
    if (is_tls()) facts.user = identity_headers_.user(snapshot, *identity_);
  }
  const auth::Page page = auth::render_trouble(*identity_, facts, request_wants_json());
  const bool keep_alive =
      request.keep_alive && request.framing == http1::BodyFraming::none && !drain_requested_;
  send_page(200, page, keep_alive);
}

void ClientConnection::send_denied(const auth::Decision& decision) {
  const http1::RequestHead& request = parser_.head();
  LOG_DEBUG("conn %" PRIu64 ": 403 %.*s", id_,
            static_cast<int>(auth::denial_label(decision.denial, *identity_).size()),
            auth::denial_label(decision.denial, *identity_).data());
  const auth::Page page =
      auth::render_denied(decision, *identity_, config_->auth.trouble_page, request_wants_json());
  const bool keep_alive =
      request.keep_alive && request.framing == http1::BodyFraming::none && !drain_requested_;
  send_page(403, page, keep_alive);
}

void ClientConnection::send_page(int status, const auth::Page& page, bool keep_alive) {
  if (state_ == State::closing || state_ == State::lingering || state_ == State::closed) return;
  keep_alive = keep_alive && !drain_requested_ && !worker_.draining();
  const bool head_only = parser_.head().method == http1::Method::head;
  evbuffer* out = bufferevent_get_output(bev_.get());
  const std::size_t before = evbuffer_get_length(out);
  const std::size_t body = write_local_body(out, scratch_, status, {}, page.content_type, page.body,
                                            keep_alive, head_only);
  response_status_ = status;
  response_bytes_ += evbuffer_get_length(out) - before;
  response_body_bytes_ += body;
  finish_request(false);
  if (keep_alive) {
    state_ = State::exchanging;  // so a pipelined request waits for the resume turn
    event_active(resume_.get(), EV_READ, 0);
  } else {
    close_after_flush();
  }
}

// --- observability --------------------------------------------------------------------------

void ClientConnection::observe_handshake(HandshakeResult result) {
  SSL* ssl = bufferevent_openssl_get_ssl(bev_.get());
  const bool resumed = result == HandshakeResult::ok && ssl != nullptr && SSL_session_reused(ssl);
  worker_.runtime().observability->handshake_finished(
      worker_.index(), listener_.tls_index, result, std::chrono::steady_clock::now() - accepted_at_,
      resumed, identity_->outcome);
}

void ClientConnection::open_request(bool head_complete) {
  if (request_open_) return;
  request_open_ = true;
  head_complete_ = head_complete;
  ++request_number_;
  request_started_ = std::chrono::steady_clock::now();
  timeval now{};
  event_base_gettimeofday_cached(worker_.base(), &now);
  request_started_unix_us_ = std::int64_t{now.tv_sec} * 1000000 + now.tv_usec;
  response_status_ = 0;
  response_bytes_ = 0;
  response_body_bytes_ = 0;
  route_index_ = kNoIndex;
  backend_index_ = kNoIndex;
  auth_result_ = {};
}

void ClientConnection::finish_request(bool aborted) {
  if (!request_open_) return;
  request_open_ = false;
  Observability& observability = *worker_.runtime().observability;
  const http1::RequestHead& request = parser_.head();
  RequestRecord record;
  record.connection_id = id_;
  record.request_number = request_number_;
  record.start_unix_us = request_started_unix_us_;
  record.duration_us =
      static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                     std::chrono::steady_clock::now() - request_started_)
                                     .count());
  if (head_complete_) {
    record.method = request.method_text;
    record.target = request.target;
    record.path = request.path;
    record.http_version = request.version_minor == 0 ? "HTTP/1.0" : "HTTP/1.1";
    record.host = request.host;
    if (observability.access_log() != nullptr) {
      for (const http1::HeaderField& field : request.headers) {
        if (http1::iequals(field.name, "referer")) record.referer = field.value;
        if (http1::iequals(field.name, "user-agent")) record.user_agent = field.value;
      }
    }
  }
  record.client_ip = client_ip_;
  record.local_port = listener_.port;
  record.status = response_status_;
  record.bytes_in = head_bytes_ + request_body_bytes_;
  record.bytes_out = response_bytes_;
  record.body_bytes_out = response_body_bytes_;
  record.route = route_index_;
  record.backend = backend_index_;
  const ExchangeStats& stats = exchange_.stats();
  if (backend_index_ != kNoIndex) {
    record.backend_us = stats.backend_us;
    record.queue_us = stats.queue_us;
    if (stats.failure != Failure::none) record.failure = failure_info(stats.failure).label;
  }
  record.client_aborted = aborted;
  if (SSL* ssl = is_tls() ? bufferevent_openssl_get_ssl(bev_.get()) : nullptr) {
    record.tls_protocol = SSL_get_version(ssl);
    if (const char* cipher = SSL_get_cipher_name(ssl)) record.tls_cipher = cipher;
  }
  if (identity_->offered()) record.client_dn = identity_->leaf_dn;
  if (identity_->verified()) record.user_dn = identity_->user_dn;
  record.auth_method = auth::authn_method_name(identity_->kind);
  record.auth_result = auth_result_.empty() ? std::string_view("none") : auth_result_;
  observability.request_finished(worker_.index(), record,
                                 head_complete_ ? request.method : http1::Method::other);
}

void ClientConnection::answer_locally(Failure failure, bool keep_alive) {
  const FailureInfo& info = failure_info(failure);
  if (info.status >= 500) {
    LOG_INFO("conn %" PRIu64 ": %d %.*s", id_, info.status, static_cast<int>(info.label.size()),
             info.label.data());
  }
  send_local(info.status, {}, info.phrase, keep_alive);
}

void ClientConnection::send_local(int status, std::string_view extra_headers,
                                  std::string_view message, bool keep_alive) {
  if (state_ == State::closing || state_ == State::lingering || state_ == State::closed) return;
  keep_alive = keep_alive && !drain_requested_ && !worker_.draining();
  const bool head_only = parser_.status() == http1::ParseStatus::complete &&
                         parser_.head().method == http1::Method::head;
  evbuffer* out = bufferevent_get_output(bev_.get());
  const std::size_t before = evbuffer_get_length(out);
  const std::size_t body =
      write_local_response(out, scratch_, status, extra_headers, message, keep_alive, head_only);
  response_status_ = status;
  response_bytes_ += evbuffer_get_length(out) - before;
  response_body_bytes_ += body;
  finish_request(false);
  if (keep_alive) {
    state_ = State::exchanging;  // so a pipelined request waits for the resume turn
    event_active(resume_.get(), EV_READ, 0);
  } else {
    close_after_flush();
  }
}

// --- Downstream ---------------------------------------------------------------------------

std::optional<std::uint64_t> ClientConnection::request_body_length() const {
  const http1::RequestHead& request = parser_.head();
  if (request.framing == http1::BodyFraming::content_length) return request.content_length;
  return std::nullopt;
}

bool ClientConnection::request_has_body() const {
  return parser_.head().framing != http1::BodyFraming::none;
}

void ClientConnection::request_body_wanted() {
  const http1::RequestHead& request = parser_.head();
  // We stripped Expect: the backend will not send 100, so the body is invited now that it has
  // somewhere to go (unless the client already started sending it).
  if (request.expect_continue && request.version_minor == 1 && !continue_sent_ &&
      request_body_bytes_ == 0 && !request_body_done_ &&
      evbuffer_get_length(bufferevent_get_input(bev_.get())) == 0) {
    evbuffer_add(bufferevent_get_output(bev_.get()), "HTTP/1.1 100 Continue\r\n\r\n", 25);
    continue_sent_ = true;
  }
}

Downstream::BodyStatus ClientConnection::read_request_body(evbuffer* to, std::size_t limit,
                                                           std::size_t& moved) {
  moved = 0;
  if (request_body_done_) return BodyStatus::done;
  evbuffer* in = bufferevent_get_input(bev_.get());
  if (parser_.head().framing == http1::BodyFraming::content_length) {
    const std::size_t n = static_cast<std::size_t>(
        std::min<std::uint64_t>({request_remaining_, evbuffer_get_length(in), limit}));
    if (n > 0) evbuffer_remove_buffer(in, to, n);
    moved = n;
    request_remaining_ -= n;
    request_body_bytes_ += n;
    if (request_remaining_ > 0) return BodyStatus::more;
    request_body_done_ = true;
    return BodyStatus::done;
  }
  const std::uint64_t body_limit = config_->limits.body_size;
  while (moved < limit) {
    if (request_chunks_.state() == http1::ChunkedDecoder::State::data) {
      const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(
          {request_chunks_.data_remaining(), evbuffer_get_length(in), limit - moved}));
      if (n == 0) break;
      request_body_bytes_ += n;
      if (body_limit != 0 && request_body_bytes_ > body_limit) return BodyStatus::too_large;
      evbuffer_remove_buffer(in, to, n);
      request_chunks_.consume_data(n);
      moved += n;
      continue;
    }
    evbuffer_iovec vec{};
    if (evbuffer_peek(in, -1, nullptr, &vec, 1) < 1 || vec.iov_len == 0) break;
    const std::size_t consumed = request_chunks_.feed_framing(
        std::string_view(static_cast<const char*>(vec.iov_base), vec.iov_len));
    evbuffer_drain(in, consumed);
    if (request_chunks_.state() == http1::ChunkedDecoder::State::error) {
      LOG_DEBUG("conn %" PRIu64 ": invalid chunked request body: %.*s", id_,
                static_cast<int>(request_chunks_.error_reason().size()),
                request_chunks_.error_reason().data());
      return BodyStatus::error;
    }
    if (request_chunks_.state() == http1::ChunkedDecoder::State::done) {
      request_body_done_ = true;
      return BodyStatus::done;
    }
  }
  return BodyStatus::more;
}

void ClientConnection::send_interim(const http1::ResponseHead& head) {
  if (parser_.head().version_minor == 0) return;  // HTTP/1.0 has no interim responses
  std::string& out = scratch_;
  out.clear();
  append_status_line(out, head.status, head.reason);
  for (const http1::HeaderField& field : head.headers) {
    if (auth::is_hop_by_hop_header(field.name)) continue;
    append_header_line(out, field.name, field.value);
  }
  out.append("\r\n");
  evbuffer_add(bufferevent_get_output(bev_.get()), out.data(), out.size());
}

void ClientConnection::send_response_head(const http1::ResponseHead& head, bool has_body,
                                          std::optional<std::uint64_t> body_length) {
  const http1::RequestHead& request = parser_.head();
  const bool client_http10 = request.version_minor == 0;
  if (has_body && !body_length) {
    // Unknown length: chunked for 1.1 clients; a 1.0 client can only be told by closing.
    response_chunked_ = !client_http10;
    if (client_http10) response_close_ = true;
  }
  if (!request_body_done_) response_close_ = true;  // the rest of the request body is never read
  if (drain_requested_ || worker_.draining()) response_close_ = true;

  std::string& out = scratch_;
  out.clear();
  append_status_line(out, head.status, head.reason);
  // A HEAD or 304 response's Content-Length describes the body it stands for: keep it.
  const bool keeps_length =
      !has_body && (request.method == http1::Method::head || head.status == 304);
  for (const http1::HeaderField& field : head.headers) {
    if (auth::is_hop_by_hop_header(field.name) ||
        http1::listed_in(head.connection_tokens, field.name)) {
      continue;
    }
    if (!keeps_length && http1::iequals(field.name, "content-length")) continue;
    append_header_line(out, field.name, field.value);
  }
  if (body_length) {
    append_header_line(out, "Content-Length", std::to_string(*body_length));
  } else if (response_chunked_) {
    append_header_line(out, "Transfer-Encoding", "chunked");
  }
  if (response_close_) {
    append_header_line(out, "Connection", "close");
  } else if (client_http10) {
    append_header_line(out, "Connection", "keep-alive");
  }
  out.append("\r\n");
  evbuffer_add(bufferevent_get_output(bev_.get()), out.data(), out.size());
  response_status_ = head.status;
  response_bytes_ += out.size();
}

void ClientConnection::send_response_body(evbuffer* from, std::size_t n) {
  if (n == 0) return;
  response_body_bytes_ += n;
  response_bytes_ += n;
  evbuffer* out = bufferevent_get_output(bev_.get());
  if (response_chunked_) evbuffer_add_printf(out, "%zx\r\n", n);
  if (n <= kCoalesceBytes) {
    // A small body is copied behind the head instead of moved as a chain of its own: the TLS
    // layer writes one record per chain, and one record (one write) per small response halves
    // the work of the most common answer.
    char small[kCoalesceBytes];
    const int copied = evbuffer_remove(from, small, n);
    if (copied > 0) evbuffer_add(out, small, static_cast<std::size_t>(copied));
  } else {
    evbuffer_remove_buffer(from, out, n);
  }
  if (response_chunked_) evbuffer_add(out, "\r\n", 2);
}

std::size_t ClientConnection::response_backlog() const {
  return evbuffer_get_length(bufferevent_get_output(bev_.get()));
}

void ClientConnection::end_response() {
  if (state_ == State::closing || state_ == State::lingering || state_ == State::closed) return;
  if (response_chunked_) {
    evbuffer_add(bufferevent_get_output(bev_.get()), "0\r\n\r\n", 5);
    response_bytes_ += 5;
  }
  finish_request(false);
  if (response_close_ || !request_body_done_ || drain_requested_ || worker_.draining()) {
    close_after_flush();
    return;
  }
  // Start on the next request from the loop, not from inside the exchange's callback.
  event_active(resume_.get(), EV_READ, 0);
}

void ClientConnection::send_failure(Failure failure) {
  const http1::RequestHead& request = parser_.head();
  answer_locally(failure, request.keep_alive && request_body_done_);
}

void ClientConnection::abort_response() {
  finish_request(true);
  close();
}

void ClientConnection::on_resume(evutil_socket_t, short, void* arg) noexcept {
  auto& self = *static_cast<ClientConnection*>(arg);
  if (self.state_ == State::exchanging && !self.exchange_.active()) self.enter_reading_head();
}

void ClientConnection::close_after_flush() {
  state_ = State::closing;
  exchange_.abort();
  // Stop reading new requests; give the client a bounded time to take its answer.
  arm_timer(std::chrono::seconds(5));
  if (evbuffer_get_length(bufferevent_get_output(bev_.get())) == 0) {
    linger();
  } else {
    bufferevent_setwatermark(bev_.get(), EV_WRITE, 0, 0);
  }
}

void ClientConnection::linger() {
  if (peer_gone_) {
    close();
    return;
  }
  // The answer is out. Closing the socket now would make the kernel answer whatever the client
  // still sends (the rest of a body, a pipelined request, a dripping header) with a reset, and
  // a reset can destroy our answer before the client has read it. So end our side first
  // (close_notify, FIN), then read and discard for a short while until the client closes too.
  state_ = State::lingering;
  send_close_notify();
  bufferevent_disable(bev_.get(), EV_WRITE);
  ::shutdown(bufferevent_getfd(bev_.get()), SHUT_WR);
  arm_timer(kLingerTime);
}

void ClientConnection::send_close_notify() {
  // Without close_notify a client cannot tell a response delimited by the close from a
  // cut-off one, and libevent frees the SSL without sending it. One attempt, no waiting for
  // the client's own.
  SSL* ssl = is_tls() ? bufferevent_openssl_get_ssl(bev_.get()) : nullptr;
  if (ssl == nullptr || close_notify_sent_ || peer_gone_ || !SSL_is_init_finished(ssl)) return;
  close_notify_sent_ = true;
  SSL_shutdown(ssl);
  ERR_clear_error();
}

void ClientConnection::close() {
  if (state_ == State::closed) return;
  finish_request(true);  // a request still open here was abandoned by the client
  state_ = State::closed;
  exchange_.abort();
  evtimer_del(timer_.get());
  event_del(resume_.get());
  bufferevent_setcb(bev_.get(), nullptr, nullptr, nullptr, nullptr);
  bufferevent_disable(bev_.get(), EV_READ | EV_WRITE);
  send_close_notify();
  worker_.connection_closed(*this);
}

}  // namespace proxy
