// cmsfront-test-backend: a fast plain-HTTP/1.1 backend for tests and benchmarks.
//
//   cmsfront-test-backend [--listen 127.0.0.1:PORT] [--threads N] [--body TEXT]
//
// Every path answers 200 with a small body (--body, default "ok\n"), except:
//   /bytes/N   N bytes of body, generated while the socket drains (never held whole in memory);
//              the byte at offset k is 'a' + k % 26
//   /echo      (and /echo/...) JSON: the method, the target, every header received as
//              [name, value] in order, and the request body's length; header bytes outside
//              printable ASCII are written as \u00XX so the JSON stays valid
//   /__stats   JSON: connections_current, connections_max, connections_total, requests
// Request bodies (Content-Length or chunked) are read, counted and discarded as they arrive.
// Keep-alive and pipelining work; responses go out in request order.
//
// The HTTP/1.1 parsing is cmsfront's own strict codec (proxy/http1_parser.h and
// proxy/chunked_decoder.h), so a request it refuses is one cmsfront would refuse too: it gets
// the parser's status and the connection closes.
//
// Port 0 picks a free port; the chosen address is printed on stdout as
// "listening on 127.0.0.1:NNNNN" (flushed) once every listener is bound. --threads N runs N
// event loops, each with its own SO_REUSEPORT listener on that address; the kernel spreads
// connections over them.
//
// Threads: each Worker and its Connections belong to one thread; only Stats is shared.

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "proxy/chunked_decoder.h"
#include "proxy/http1_parser.h"
#include "proxy/libevent_ptr.h"

namespace {

using proxy::BufferEventPtr;
using proxy::EventBasePtr;
using proxy::EventPtr;
using proxy::ListenerPtr;
namespace http1 = proxy::http1;

// Output backpressure: stop generating (or reading further requests) once this much is queued
// for the client, resume when the kernel has taken all but kLowWater of it.
constexpr std::size_t kHighWater = 64 * 1024;
constexpr std::size_t kLowWater = 16 * 1024;
// Pipelined requests waiting unread: stop reading the socket beyond this.
constexpr std::size_t kReadHighWater = 256 * 1024;
constexpr int kListenBacklog = 4096;

// /bytes/N body source: 26 * 630 bytes of the alphabet, so consecutive slices continue the
// pattern. Static storage: evbuffers reference it without copying.
constexpr std::size_t kPatternSize = 26 * 630;
const std::array<char, kPatternSize> kPattern = [] {
  std::array<char, kPatternSize> pattern{};
  for (std::size_t i = 0; i < kPatternSize; ++i) pattern[i] = static_cast<char>('a' + i % 26);
  return pattern;
}();

struct Options {
  std::string listen = "127.0.0.1:0";
  unsigned threads = 1;
  std::string body = "ok\n";
};

// Counters shared by every worker thread. Requests are counted per worker (no shared cache
// line on the hot path) and summed when /__stats is read.
struct Stats {
  std::atomic<std::int64_t> connections_current{0};
  std::atomic<std::int64_t> connections_max{0};
  std::atomic<std::uint64_t> connections_total{0};

  void connection_opened() {
    std::int64_t now = connections_current.fetch_add(1, std::memory_order_relaxed) + 1;
    connections_total.fetch_add(1, std::memory_order_relaxed);
    std::int64_t seen = connections_max.load(std::memory_order_relaxed);
    while (now > seen &&
           !connections_max.compare_exchange_weak(seen, now, std::memory_order_relaxed)) {
    }
  }
  void connection_closed() { connections_current.fetch_sub(1, std::memory_order_relaxed); }
};

std::string_view reason_phrase(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 414:
      return "URI Too Long";
    case 431:
      return "Request Header Fields Too Large";
    case 501:
      return "Not Implemented";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Error";
  }
}

// The /echo answer: method, target, every header as [name, value] in order, body length.
// Bytes outside printable ASCII become \u00XX, so the JSON stays valid whatever was sent.
std::string echo_body(const http1::RequestHead& head, std::uint64_t body_length) {
  std::string body = "{\"method\":";
  auto append_json = [&body](std::string_view text) {
    body.push_back('"');
    for (unsigned char c : text) {
      if (c == '"' || c == '\\') {
        body.push_back('\\');
        body.push_back(static_cast<char>(c));
      } else if (c < 0x20 || c >= 0x7f) {
        std::array<char, 7> escaped{};
        std::snprintf(escaped.data(), escaped.size(), "\\u%04x", c);
        body.append(escaped.data(), 6);
      } else {
        body.push_back(static_cast<char>(c));
      }
    }
    body.push_back('"');
  };
  append_json(head.method_text);
  body.append(",\"target\":");
  append_json(head.target);
  body.append(",\"headers\":[");
  for (std::size_t i = 0; i < head.headers.size(); ++i) {
    body.append(i == 0 ? "[" : ",[");
    append_json(head.headers[i].name);
    body.push_back(',');
    append_json(head.headers[i].value);
    body.push_back(']');
  }
  body.append("],\"body_length\":").append(std::to_string(body_length)).append("}\n");
  return body;
}

class Worker;

// One client connection. Owner: its Worker (the map of live connections, then the graveyard).
// Lifetime: from accept to close(); destroyed on the next loop turn after close().
class Connection {
 public:
  Connection(Worker& worker, BufferEventPtr bev);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  void start();

 private:
  enum class Phase : std::uint8_t {
    head,          // waiting for (the rest of) a request head
    body_length,   // discarding a Content-Length body
    body_chunked,  // discarding a chunked body
    paused,        // a response is queued beyond kHighWater; wait for the write callback
    streaming,     // generating a /bytes/N body as the socket drains
    closing,       // last response queued; close once it is written
    closed,
  };

  static void on_read(bufferevent* bev, void* arg) noexcept;
  static void on_write(bufferevent* bev, void* arg) noexcept;
  static void on_event(bufferevent* bev, short events, void* arg) noexcept;

  void advance();
  bool read_head();
  void begin_request();
  bool discard_length_body();
  bool discard_chunked_body();
  void respond();
  void write_head(int status, std::string_view content_type, std::uint64_t length);
  void write_fixed(int status, std::string_view content_type, std::string_view body);
  void stream_bytes();
  void finish_response();
  void fail(int status, std::string_view reason);
  void handle_read();
  void handle_write();
  void flush();
  bool write_now(evbuffer* out);
  bool refill();
  void handle_event(short events);
  void close();

  evbuffer* input() const { return bufferevent_get_input(bev_.get()); }
  evbuffer* output() const { return bufferevent_get_output(bev_.get()); }

  Worker& worker_;
  BufferEventPtr bev_;
  http1::RequestParser parser_;
  http1::ChunkedDecoder chunked_;
  Phase phase_ = Phase::head;
  bool keep_alive_ = true;
  bool peer_closed_ = false;
  std::uint64_t body_remaining_ = 0;  // Content-Length bytes still to discard
  std::uint64_t body_bytes_ = 0;      // request body bytes seen so far
  std::uint64_t stream_remaining_ = 0;
  std::string scratch_;  // response heads and JSON bodies, reused across requests
};

// One event loop with its own SO_REUSEPORT listener. Owner: main(); runs on one thread.
class Worker {
 public:
  Worker(const Options& options, Stats& stats) : options_(options), stats_(stats) {}

  // Binds the listener; returns the bound address, or nullopt after printing why.
  std::optional<sockaddr_storage> listen(const sockaddr_storage& address, int length);
  void run() { event_base_dispatch(base_.get()); }

  const Options& options() const { return options_; }
  Stats& stats() { return stats_; }
  std::uint64_t requests() const { return requests_.load(std::memory_order_relaxed); }
  void count_request() { requests_.fetch_add(1, std::memory_order_relaxed); }
  std::uint64_t total_requests() const;
  void set_peers(const std::vector<std::unique_ptr<Worker>>* workers) { peers_ = workers; }

  // Takes a closed connection out of the live set; it is destroyed on the next loop turn.
  void retire(Connection* connection);

 private:
  static void on_accept(evconnlistener*, evutil_socket_t fd, sockaddr*, int, void* arg) noexcept;
  static void on_reap(evutil_socket_t, short, void* arg) noexcept;
  void accept_connection(evutil_socket_t fd);

  const Options& options_;
  Stats& stats_;
  const std::vector<std::unique_ptr<Worker>>* peers_ = nullptr;
  EventBasePtr base_{event_base_new()};
  ListenerPtr listener_;
  EventPtr reap_event_;
  std::unordered_map<Connection*, std::unique_ptr<Connection>> live_;
  std::vector<std::unique_ptr<Connection>> graveyard_;
  alignas(64) std::atomic<std::uint64_t> requests_{0};
};

// ---- Connection ------------------------------------------------------------------------------

Connection::Connection(Worker& worker, BufferEventPtr bev) : worker_(worker), bev_(std::move(bev)) {
  worker_.stats().connection_opened();
}

Connection::~Connection() { worker_.stats().connection_closed(); }

void Connection::start() {
  bufferevent_setcb(bev_.get(), on_read, on_write, on_event, this);
  bufferevent_setwatermark(bev_.get(), EV_READ, 0, kReadHighWater);
  bufferevent_setwatermark(bev_.get(), EV_WRITE, kLowWater, 0);
  // EV_WRITE stays off while nothing is pending: flush() writes responses directly and only
  // enables it for what the kernel did not take, so a small response costs no epoll_ctl.
  bufferevent_disable(bev_.get(), EV_WRITE);  // enabled by default in libevent
  bufferevent_enable(bev_.get(), EV_READ);
}

void Connection::on_read(bufferevent*, void* arg) noexcept {
  static_cast<Connection*>(arg)->handle_read();
}

void Connection::on_write(bufferevent*, void* arg) noexcept {
  static_cast<Connection*>(arg)->handle_write();
}

void Connection::on_event(bufferevent*, short events, void* arg) noexcept {
  static_cast<Connection*>(arg)->handle_event(events);
}

// Runs requests from the input buffer until it is empty, a request is incomplete, or output
// backpressure pauses the connection.
void Connection::advance() {
  for (;;) {
    switch (phase_) {
      case Phase::head:
        if (!read_head()) {
          if (peer_closed_ && evbuffer_get_length(output()) == 0) close();
          return;
        }
        begin_request();
        break;
      case Phase::body_length:
        if (!discard_length_body()) return;
        respond();
        break;
      case Phase::body_chunked:
        if (!discard_chunked_body()) return;
        respond();
        break;
      case Phase::paused:
      case Phase::streaming:
      case Phase::closing:
      case Phase::closed:
        return;
    }
  }
}

// Feeds the parser from the input buffer without copying it out; drains what it consumed.
// Returns true once a head is complete (or failed: fail() has moved to closing).
bool Connection::read_head() {
  evbuffer* in = input();
  while (parser_.status() == http1::ParseStatus::need_more) {
    std::array<evbuffer_iovec, 8> vec{};
    int count = evbuffer_peek(in, -1, nullptr, vec.data(), static_cast<int>(vec.size()));
    if (count <= 0) return false;
    std::size_t used = 0;
    for (int i = 0; i < std::min(count, static_cast<int>(vec.size())); ++i) {
      std::string_view segment(static_cast<const char*>(vec[i].iov_base), vec[i].iov_len);
      std::size_t consumed = parser_.feed(segment);
      used += consumed;
      if (consumed < segment.size()) break;
    }
    evbuffer_drain(in, used);
    if (used == 0) break;
  }
  if (parser_.status() == http1::ParseStatus::error) {
    fail(parser_.error().status, parser_.error().reason);
    return false;
  }
  return parser_.status() == http1::ParseStatus::complete;
}

void Connection::begin_request() {
  const http1::RequestHead& head = parser_.head();
  worker_.count_request();
  keep_alive_ = head.keep_alive;
  body_bytes_ = 0;
  if (head.expect_continue && head.framing != http1::BodyFraming::none) {
    constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
    evbuffer_add(output(), kContinue.data(), kContinue.size());
  }
  switch (head.framing) {
    case http1::BodyFraming::content_length:
      body_remaining_ = head.content_length;
      phase_ = Phase::body_length;
      break;
    case http1::BodyFraming::chunked:
      chunked_.reset();
      phase_ = Phase::body_chunked;
      break;
    case http1::BodyFraming::none:
    case http1::BodyFraming::until_close:  // the parser never gives this for requests
      respond();
      break;
  }
}

// Returns true once the whole Content-Length body has been discarded.
bool Connection::discard_length_body() {
  std::uint64_t available = evbuffer_get_length(input());
  std::uint64_t take = std::min(available, body_remaining_);
  evbuffer_drain(input(), static_cast<std::size_t>(take));
  body_remaining_ -= take;
  body_bytes_ += take;
  return body_remaining_ == 0;
}

// Returns true once the last chunk and trailers are consumed; a framing error fails the
// connection (and returns false).
bool Connection::discard_chunked_body() {
  evbuffer* in = input();
  for (;;) {
    switch (chunked_.state()) {
      case http1::ChunkedDecoder::State::done:
        return true;
      case http1::ChunkedDecoder::State::error:
        fail(400, chunked_.error_reason());
        return false;
      case http1::ChunkedDecoder::State::data: {
        std::uint64_t take =
            std::min<std::uint64_t>(evbuffer_get_length(in), chunked_.data_remaining());
        if (take == 0) return false;
        evbuffer_drain(in, static_cast<std::size_t>(take));
        chunked_.consume_data(take);
        body_bytes_ += take;
        break;
      }
      case http1::ChunkedDecoder::State::framing: {
        evbuffer_iovec vec{};
        if (evbuffer_peek(in, -1, nullptr, &vec, 1) <= 0) return false;
        std::size_t used = chunked_.feed_framing(
            std::string_view(static_cast<const char*>(vec.iov_base), vec.iov_len));
        evbuffer_drain(in, used);
        break;
      }
    }
  }
}

// Picks the endpoint from the path and queues the response (or starts streaming it).
void Connection::respond() {
  const http1::RequestHead& head = parser_.head();
  std::string_view path = head.path;
  if (path == "/__stats") {
    Stats& stats = worker_.stats();
    std::string body;
    body.assign("{\"connections_current\":")
        .append(std::to_string(stats.connections_current.load(std::memory_order_relaxed)))
        .append(",\"connections_max\":")
        .append(std::to_string(stats.connections_max.load(std::memory_order_relaxed)))
        .append(",\"connections_total\":")
        .append(std::to_string(stats.connections_total.load(std::memory_order_relaxed)))
        .append(",\"requests\":")
        .append(std::to_string(worker_.total_requests()))
        .append("}\n");
    write_fixed(200, "application/json", body);
  } else if (path == "/echo" || path.starts_with("/echo/")) {
    write_fixed(200, "application/json", echo_body(head, body_bytes_));
  } else if (path.starts_with("/bytes/")) {
    std::string_view digits = path.substr(7);
    std::uint64_t count = 0;
    auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), count);
    if (digits.empty() || error != std::errc() || end != digits.data() + digits.size()) {
      write_fixed(400, "text/plain", "bad byte count\n");
      return;
    }
    write_head(200, "application/octet-stream", count);
    stream_remaining_ = head.method == http1::Method::head ? 0 : count;
    phase_ = Phase::streaming;
    stream_bytes();
  } else {
    write_fixed(200, "text/plain", worker_.options().body);
  }
}

void Connection::write_head(int status, std::string_view content_type, std::uint64_t length) {
  std::string_view reason = reason_phrase(status);
  scratch_.assign("HTTP/1.1 ")
      .append(std::to_string(status))
      .append(" ")
      .append(reason)
      .append("\r\nContent-Type: ")
      .append(content_type)
      .append("\r\nContent-Length: ")
      .append(std::to_string(length))
      .append("\r\n");
  if (!keep_alive_) {
    scratch_.append("Connection: close\r\n");
  } else if (parser_.head().version_minor == 0) {
    scratch_.append("Connection: keep-alive\r\n");
  }
  scratch_.append("\r\n");
  evbuffer_add(output(), scratch_.data(), scratch_.size());
}

void Connection::write_fixed(int status, std::string_view content_type, std::string_view body) {
  write_head(status, content_type, body.size());
  if (parser_.head().method != http1::Method::head) {
    evbuffer_add(output(), body.data(), body.size());
  }
  finish_response();
}

// Adds slices of the static pattern (by reference, no copy) until kHighWater is queued or the
// body is complete; the write callback calls it again as the socket drains.
void Connection::stream_bytes() {
  evbuffer* out = output();
  while (stream_remaining_ > 0 && evbuffer_get_length(out) < kHighWater) {
    std::size_t take =
        static_cast<std::size_t>(std::min<std::uint64_t>(stream_remaining_, kPatternSize));
    evbuffer_add_reference(out, kPattern.data(), take, nullptr, nullptr);
    stream_remaining_ -= take;
  }
  if (stream_remaining_ == 0) finish_response();
}

// The response is fully queued: get ready for the next request, or close after the flush.
void Connection::finish_response() {
  parser_.reset();
  if (!keep_alive_) {
    phase_ = Phase::closing;
    bufferevent_disable(bev_.get(), EV_READ);
    return;
  }
  if (evbuffer_get_length(output()) >= kHighWater) {
    phase_ = Phase::paused;
    bufferevent_disable(bev_.get(), EV_READ);
    return;
  }
  phase_ = Phase::head;
}

// A request the parser refused: answer with its status and close once that is written.
void Connection::fail(int status, std::string_view reason) {
  keep_alive_ = false;
  scratch_.assign("HTTP/1.1 ")
      .append(std::to_string(status))
      .append(" ")
      .append(reason_phrase(status))
      .append("\r\nContent-Type: text/plain\r\nContent-Length: ")
      .append(std::to_string(reason.size() + 1))
      .append("\r\nConnection: close\r\n\r\n")
      .append(reason)
      .append("\n");
  evbuffer_add(output(), scratch_.data(), scratch_.size());
  evbuffer_drain(input(), evbuffer_get_length(input()));
  phase_ = Phase::closing;
  bufferevent_disable(bev_.get(), EV_READ);
}

void Connection::handle_read() {
  advance();
  flush();
}

// Writes what is queued straight to the socket, and keeps producing (stream, resume reading)
// while the kernel takes everything; what it does not take goes out through the write event.
void Connection::flush() {
  while (phase_ != Phase::closed) {
    evbuffer* out = output();
    if (evbuffer_get_length(out) > 0 && !write_now(out)) {
      close();
      return;
    }
    if (evbuffer_get_length(out) > 0) {
      bufferevent_enable(bev_.get(), EV_WRITE);
      return;
    }
    if (!refill()) return;
  }
}

// One writev of the output buffer. A socket bufferevent keeps its output's front frozen so
// that only its own write callback drains it; thaw it for this call. False on a socket error.
bool Connection::write_now(evbuffer* out) {
  evbuffer_unfreeze(out, 1);
  int written = evbuffer_write(out, bufferevent_getfd(bev_.get()));
  int error = errno;
  evbuffer_freeze(out, 1);
  return written >= 0 || error == EAGAIN || error == EWOULDBLOCK || error == EINTR;
}

// The output is drained (empty, or at most kLowWater left): produce more, or close when the
// last response is out. Returns true when it may have queued more output.
bool Connection::refill() {
  bool drained = evbuffer_get_length(output()) == 0;
  switch (phase_) {
    case Phase::streaming:
      stream_bytes();
      if (phase_ == Phase::head) advance();
      return true;
    case Phase::paused:
      phase_ = Phase::head;
      bufferevent_enable(bev_.get(), EV_READ);
      advance();
      return true;
    case Phase::closing:
      if (drained) close();
      return false;
    case Phase::head:
      if (drained && peer_closed_) close();
      return false;
    case Phase::body_length:
    case Phase::body_chunked:
    case Phase::closed:
      return false;
  }
  return false;
}

// libevent wrote and at most kLowWater is left.
void Connection::handle_write() {
  refill();
  if (phase_ != Phase::closed && evbuffer_get_length(output()) == 0) {
    bufferevent_disable(bev_.get(), EV_WRITE);
  }
}

// EOF: finish what was already requested, then close. Errors and timeouts close at once.
void Connection::handle_event(short events) {
  if ((events & BEV_EVENT_EOF) != 0 && (events & BEV_EVENT_ERROR) == 0) {
    peer_closed_ = true;
    bool idle = phase_ == Phase::head && !parser_.started();
    if (phase_ == Phase::body_length || phase_ == Phase::body_chunked ||
        (phase_ == Phase::head && parser_.started()) ||
        (idle && evbuffer_get_length(output()) == 0)) {
      close();
    }
    return;
  }
  close();
}

void Connection::close() {
  if (phase_ == Phase::closed) return;
  phase_ = Phase::closed;
  bufferevent_disable(bev_.get(), EV_READ | EV_WRITE);
  bufferevent_setcb(bev_.get(), nullptr, nullptr, nullptr, nullptr);
  worker_.retire(this);
}

// ---- Worker ----------------------------------------------------------------------------------

std::optional<sockaddr_storage> Worker::listen(const sockaddr_storage& address, int length) {
  if (!base_) {
    std::fprintf(stderr, "cmsfront-test-backend: event_base_new failed\n");
    return std::nullopt;
  }
  reap_event_.reset(event_new(base_.get(), -1, 0, on_reap, this));
  unsigned flags =
      LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_REUSEABLE_PORT | LEV_OPT_CLOSE_ON_EXEC;
  listener_.reset(evconnlistener_new_bind(base_.get(), on_accept, this, flags, kListenBacklog,
                                          reinterpret_cast<const sockaddr*>(&address), length));
  if (!listener_ || !reap_event_) {
    std::fprintf(stderr, "cmsfront-test-backend: cannot listen: %s\n",
                 evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
    return std::nullopt;
  }
  sockaddr_storage bound{};
  socklen_t bound_length = sizeof bound;
  getsockname(evconnlistener_get_fd(listener_.get()), reinterpret_cast<sockaddr*>(&bound),
              &bound_length);
  return bound;
}

std::uint64_t Worker::total_requests() const {
  if (peers_ == nullptr) return requests();
  std::uint64_t total = 0;
  for (const auto& peer : *peers_) total += peer->requests();
  return total;
}

void Worker::on_accept(evconnlistener*, evutil_socket_t fd, sockaddr*, int, void* arg) noexcept {
  static_cast<Worker*>(arg)->accept_connection(fd);
}

void Worker::accept_connection(evutil_socket_t fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  BufferEventPtr bev(bufferevent_socket_new(base_.get(), fd, BEV_OPT_CLOSE_ON_FREE));
  if (!bev) {
    evutil_closesocket(fd);
    return;
  }
  auto connection = std::make_unique<Connection>(*this, std::move(bev));
  Connection* raw = connection.get();
  live_.emplace(raw, std::move(connection));
  raw->start();
}

void Worker::retire(Connection* connection) {
  auto found = live_.find(connection);
  if (found == live_.end()) return;
  graveyard_.push_back(std::move(found->second));
  live_.erase(found);
  event_active(reap_event_.get(), EV_READ, 0);
}

void Worker::on_reap(evutil_socket_t, short, void* arg) noexcept {
  static_cast<Worker*>(arg)->graveyard_.clear();
}

// ---- main ------------------------------------------------------------------------------------

void usage() {
  std::fprintf(stderr,
               "usage: cmsfront-test-backend [--listen ADDR:PORT] [--threads N] [--body TEXT]\n"
               "  --listen   address to listen on (default 127.0.0.1:0, 0 picks a free port)\n"
               "  --threads  event-loop threads, one SO_REUSEPORT listener each (default 1)\n"
               "  --body     body of the default 200 response (default \"ok\\n\")\n");
}

std::optional<Options> parse_options(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "-h" || arg == "--help") return std::nullopt;
    if (i + 1 >= argc) return std::nullopt;
    std::string_view value = argv[++i];
    if (arg == "--listen") {
      options.listen = value;
    } else if (arg == "--threads") {
      auto [end, error] =
          std::from_chars(value.data(), value.data() + value.size(), options.threads);
      if (error != std::errc() || end != value.data() + value.size() || options.threads == 0 ||
          options.threads > 256) {
        return std::nullopt;
      }
    } else if (arg == "--body") {
      options.body = value;
    } else {
      return std::nullopt;
    }
  }
  return options;
}

// "a.b.c.d:PORT" or "[v6]:PORT", numeric only; port 0 is allowed (unlike
// evutil_parse_sockaddr_port, which refuses it).
bool parse_address(std::string_view text, sockaddr_storage& address, int& length) {
  std::size_t colon = text.rfind(':');
  if (colon == std::string_view::npos) return false;
  std::string_view port_text = text.substr(colon + 1);
  std::uint16_t port = 0;
  auto [end, error] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (port_text.empty() || error != std::errc() || end != port_text.data() + port_text.size()) {
    return false;
  }
  std::string host(text.substr(0, colon));
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    auto* v6 = reinterpret_cast<sockaddr_in6*>(&address);
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    length = sizeof *v6;
    return inet_pton(AF_INET6, host.substr(1, host.size() - 2).c_str(), &v6->sin6_addr) == 1;
  }
  auto* v4 = reinterpret_cast<sockaddr_in*>(&address);
  v4->sin_family = AF_INET;
  v4->sin_port = htons(port);
  length = sizeof *v4;
  return inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1;
}

std::string format_address(const sockaddr_storage& address) {
  std::array<char, INET6_ADDRSTRLEN> host{};
  if (address.ss_family == AF_INET6) {
    const auto* v6 = reinterpret_cast<const sockaddr_in6*>(&address);
    inet_ntop(AF_INET6, &v6->sin6_addr, host.data(), host.size());
    return "[" + std::string(host.data()) + "]:" + std::to_string(ntohs(v6->sin6_port));
  }
  const auto* v4 = reinterpret_cast<const sockaddr_in*>(&address);
  inet_ntop(AF_INET, &v4->sin_addr, host.data(), host.size());
  return std::string(host.data()) + ":" + std::to_string(ntohs(v4->sin_port));
}

}  // namespace

int main(int argc, char** argv) {
  std::optional<Options> options = parse_options(argc, argv);
  if (!options) {
    usage();
    return 64;
  }
  sockaddr_storage address{};
  int length = 0;
  if (!parse_address(options->listen, address, length)) {
    std::fprintf(stderr, "cmsfront-test-backend: bad --listen address: %s\n",
                 options->listen.c_str());
    return 64;
  }
  std::signal(SIGPIPE, SIG_IGN);

  // The first listener fixes the port (port 0 picks one); the others share it via
  // SO_REUSEPORT. All are bound before anything is printed, so a caller that reads the
  // "listening on" line can connect at once.
  Stats stats;
  std::vector<std::unique_ptr<Worker>> workers;
  for (unsigned i = 0; i < options->threads; ++i) {
    workers.push_back(std::make_unique<Worker>(*options, stats));
    std::optional<sockaddr_storage> bound = workers.back()->listen(address, length);
    if (!bound) return 1;
    address = *bound;
  }
  for (auto& worker : workers) worker->set_peers(&workers);
  std::printf("listening on %s\n", format_address(address).c_str());
  std::fflush(stdout);

  std::vector<std::jthread> threads;
  for (std::size_t i = 1; i < workers.size(); ++i) {
    threads.emplace_back([worker = workers[i].get()] { worker->run(); });
  }
  workers[0]->run();
  return 0;
}
