// cmsfront-test-backend: a fast plain-HTTP/1.1 backend for tests and benchmarks.
//
//   cmsfront-test-backend [--listen 127.0.0.1:PORT] [--threads N] [--body TEXT]
//                         [--hmac-key FILE]
//
// Every path answers 200 with a small body (--body, default "ok\n"), except:
//   /bytes/N   N bytes of body, generated while the socket drains (never held whole in memory);
//              the byte at offset k is 'a' + k % 26
//   /echo      (and /echo/...) JSON: the method, the target, every header received as
//              [name, value] in order, and the request body's length; header bytes outside
//              printable ASCII are written as \u00XX so the JSON stays valid
//   /__stats   JSON: connections_current, connections_max, connections_total, requests
//   /verify    (any path starting with /verify, only with --hmac-key FILE) checks the CMS
//              identity headers a frontend adds (docs: cms-contract.md 1.2, 1.3) the way a Go
//              backend does, over the raw header bytes: cms-auth-status must be OK or NONE,
//              cms-authn-hmac must equal HMAC-SHA1(key, message) in lowercase hex, where the
//              message is, over the headers whose lowercased name starts with cms-authn or
//              cms-authz (cms-authn-hmac excepted), sorted by lowercased name:
//              "h<hex len(name)>v<hex len(value)>"... "#" then name+value..., lengths in
//              bytes. The key is the whole content of FILE (raw bytes, read once at start).
//              This is an independent implementation (OpenSSL's HMAC only, nothing of auth/)
//              so tests can prove that what cmsfront signs verifies in a byte-exact backend.
//              Valid: 200 JSON {"hmac_ok":true,"status","method","dn","login","name",
//              "headers":[[name,value]...]} (absent fields are null). Invalid: 403 JSON
//              {"hmac_ok":false,"reason":...} (reasons: missing status, status not OK, missing
//              hmac, duplicate header, hmac mismatch; a mismatch adds "expected" and
//              "message"). Without --hmac-key, /verify is an ordinary path.
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
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
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
#include <fstream>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
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
  std::string hmac_key_file;            // --hmac-key; empty: /verify is an ordinary path
  std::optional<std::string> hmac_key;  // its content, loaded by main()
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
    case 403:
      return "Forbidden";
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

// A JSON string of `text`. Bytes outside printable ASCII become \u00XX (the byte as a code
// point, like Latin-1), so the JSON stays valid whatever was sent and the bytes can be
// recovered exactly.
void append_json(std::string& body, std::string_view text) {
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
}

// Every header as [name, value] in order.
void append_headers_json(std::string& body, const http1::RequestHead& head) {
  body.push_back('[');
  for (std::size_t i = 0; i < head.headers.size(); ++i) {
    body.append(i == 0 ? "[" : ",[");
    append_json(body, head.headers[i].name);
    body.push_back(',');
    append_json(body, head.headers[i].value);
    body.push_back(']');
  }
  body.push_back(']');
}

// The /echo answer: method, target, every header as [name, value] in order, body length.
std::string echo_body(const http1::RequestHead& head, std::uint64_t body_length) {
  std::string body = "{\"method\":";
  append_json(body, head.method_text);
  body.append(",\"target\":");
  append_json(body, head.target);
  body.append(",\"headers\":");
  append_headers_json(body, head);
  body.append(",\"body_length\":").append(std::to_string(body_length)).append("}\n");
  return body;
}

// ---- /verify: a byte-exact CMS header HMAC check, written from the contract -----------------

std::string ascii_lower(std::string_view text) {
  std::string lower(text);
  for (char& c : lower) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return lower;
}

std::string hex_of(const unsigned char* data, std::size_t size) {
  static constexpr std::string_view kDigits = "0123456789abcdef";
  std::string hex;
  hex.reserve(size * 2);
  for (std::size_t i = 0; i < size; ++i) {
    hex.push_back(kDigits[data[i] >> 4]);
    hex.push_back(kDigits[data[i] & 0x0f]);
  }
  return hex;
}

void append_hex(std::string& out, std::size_t value) {
  std::array<char, 2 * sizeof(std::size_t)> digits{};
  auto [end, error] = std::to_chars(digits.data(), digits.data() + digits.size(), value, 16);
  (void)error;  // cannot fail: the buffer holds any size_t in hex
  out.append(digits.data(), end);
}

// The whole /verify answer (status code and JSON body) for one request head.
std::pair<int, std::string> verify_body(const http1::RequestHead& head, const std::string& key) {
  struct Field {
    std::string lower_name;
    std::string_view value;
  };
  std::vector<Field> signed_fields;
  std::optional<std::string_view> status, received, method, dn, login, name;
  bool duplicate = false;
  std::vector<std::string> cms_names;  // every cms-* name seen, to refuse duplicates
  for (const http1::HeaderField& header : head.headers) {
    std::string lower = ascii_lower(header.name);
    if (!lower.starts_with("cms-")) continue;
    if (std::find(cms_names.begin(), cms_names.end(), lower) != cms_names.end()) duplicate = true;
    cms_names.push_back(lower);
    if (lower == "cms-auth-status") status = header.value;
    if (lower == "cms-authn-hmac") received = header.value;
    if (lower == "cms-authn-method") method = header.value;
    if (lower == "cms-authn-dn") dn = header.value;
    if (lower == "cms-authn-login") login = header.value;
    if (lower == "cms-authn-name") name = header.value;
    // The test is on the first 9 characters: cms-auth-status and cms-auth-cert are not signed.
    std::string_view first9 = std::string_view(lower).substr(0, 9);
    if ((first9 == "cms-authn" || first9 == "cms-authz") && lower != "cms-authn-hmac") {
      signed_fields.push_back({std::move(lower), header.value});
    }
  }

  auto refuse = [](std::string_view reason, std::string_view extra = {}) {
    std::string body = "{\"hmac_ok\":false,\"reason\":";
    append_json(body, reason);
    body.append(extra).append("}\n");
    return std::pair<int, std::string>(403, std::move(body));
  };
  if (duplicate) return refuse("duplicate header");
  if (!status) return refuse("missing status");
  if (*status != "OK" && *status != "NONE") return refuse("status not OK");
  if (!received) return refuse("missing hmac");

  std::sort(signed_fields.begin(), signed_fields.end(),
            [](const Field& a, const Field& b) { return a.lower_name < b.lower_name; });
  std::string message;
  for (const Field& f : signed_fields) {
    message.push_back('h');
    append_hex(message, f.lower_name.size());
    message.push_back('v');
    append_hex(message, f.value.size());
  }
  message.push_back('#');
  for (const Field& f : signed_fields) message.append(f.lower_name).append(f.value);

  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int digest_size = 0;
  if (HMAC(EVP_sha1(), key.data(), static_cast<int>(key.size()),
           reinterpret_cast<const unsigned char*>(message.data()), message.size(), digest.data(),
           &digest_size) == nullptr) {
    return refuse("hmac computation failed");
  }
  std::string expected = hex_of(digest.data(), digest_size);
  if (received->size() != expected.size() ||
      CRYPTO_memcmp(received->data(), expected.data(), expected.size()) != 0) {
    std::string extra = ",\"expected\":";
    append_json(extra, expected);
    extra.append(",\"message\":");
    append_json(extra, message);
    return refuse("hmac mismatch", extra);
  }

  std::string body = "{\"hmac_ok\":true";
  auto field = [&body](std::string_view key_name, const std::optional<std::string_view>& value) {
    body.append(",\"").append(key_name).append("\":");
    if (value) {
      append_json(body, *value);
    } else {
      body.append("null");
    }
  };
  field("status", status);
  field("method", method);
  field("dn", dn);
  field("login", login);
  field("name", name);
  body.append(",\"headers\":");
  append_headers_json(body, head);
  body.append("}\n");
  return {200, std::move(body)};
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
  } else if (worker_.options().hmac_key && path.starts_with("/verify")) {
    auto [status, body] = verify_body(head, *worker_.options().hmac_key);
    write_fixed(status, "application/json", body);
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
               "                             [--hmac-key FILE]\n"
               "  --listen   address to listen on (default 127.0.0.1:0, 0 picks a free port)\n"
               "  --threads  event-loop threads, one SO_REUSEPORT listener each (default 1)\n"
               "  --body     body of the default 200 response (default \"ok\\n\")\n"
               "  --hmac-key CMS header HMAC key (whole file, raw bytes): paths starting with\n"
               "             /verify check the cms-authn/cms-authz headers against it\n");
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
    } else if (arg == "--hmac-key") {
      options.hmac_key_file = value;
      if (options.hmac_key_file.empty()) return std::nullopt;
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
  if (!options->hmac_key_file.empty()) {
    std::ifstream file(options->hmac_key_file, std::ios::binary);
    std::string key;
    if (file) key.assign(std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>());
    if (!file || key.empty()) {
      std::fprintf(stderr, "cmsfront-test-backend: cannot read a key from --hmac-key %s\n",
                   options->hmac_key_file.c_str());
      return 66;
    }
    options->hmac_key = std::move(key);
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
