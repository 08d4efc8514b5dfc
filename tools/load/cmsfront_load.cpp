// cmsfront-load: an HTTP/1.1 and HTTP/2 load generator over TLS (with a client certificate),
// HTTP/1.1 over plain TCP too.
//
// The benchmarks' one client: h2load and wrk cannot present client certificates, and cmsfront
// is a front end that authenticates by them (grid proxies included). Usage: see usage() below.
//
// Each connection slot loops: connect (non-blocking) -> TLS handshake -> send the request ->
// read the response (status line, headers, body by Content-Length, chunked, or until close)
// -> record latency and status -> next request on the same connection (keep-alive) or a new
// one (--new-connection, Connection: close, or after an error). With -n every attempt, failed
// or not, takes one unit of the budget, so a dead server ends the run instead of looping.
//
// --h2: a slot is one HTTP/2 connection (ALPN h2 only) carrying up to --streams requests at
// once, each stream a "unit" that loops like an HTTP/1.1 slot does (claim a unit of the budget,
// submit, wait for END_STREAM, next). libnghttp2 does the framing, HPACK and flow control; it
// never touches the socket: its output (nghttp2_session_mem_send) goes into the TLS
// bufferevent's output buffer and what the bufferevent reads is fed to nghttp2_session_mem_recv
// (Slot::pump). nghttp2's callbacks only record (a stream ended, a GOAWAY came); what follows
// from that (the next request, dropping the connection) runs after nghttp2 has returned, so no
// session is freed inside its own callback.
//
// --hold S: a connection's first complete response is its last; the connection then stays
// open and idle for S seconds (a server's memory per idle connection is read meanwhile) before
// it is closed and the slot goes on with a new one.
//
// --rate makes it an open loop: each Worker's pacer timer starts its share of the requests on
// schedule, taking the budget unit itself; a unit with nothing to do parks (its keep-alive
// connection kept), and a request due while every unit is busy waits in a backlog (counted
// late) for the next unit that frees up. --urls: every request picks a prebuilt request (one
// per target) with its Worker's xorshift generator.
//
// Threads: main builds the Plan (URL, address, request bytes, SSL_CTX) before any worker
// starts; it is read-only afterwards (SSL_CTX is safe to share for SSL_new). Each Worker owns
// one event loop, its Slots and its Stats, all touched only by its thread; main reads the
// Stats after joining the threads. RunControl is the only state written by several threads.

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "proxy/libevent_ptr.h"
#include "tls/openssl_ptr.h"

namespace {

using Clock = std::chrono::steady_clock;
using proxy::BufferEventPtr;
using proxy::EventBasePtr;
using proxy::EventPtr;
using tls::SslCtxPtr;
using tls::SslPtr;
using tls::SslSessionPtr;

struct AddrinfoDeleter {
  void operator()(addrinfo* info) const noexcept { freeaddrinfo(info); }
};
struct Nghttp2SessionDeleter {
  void operator()(nghttp2_session* session) const noexcept { nghttp2_session_del(session); }
};
struct Nghttp2CallbacksDeleter {
  void operator()(nghttp2_session_callbacks* callbacks) const noexcept {
    nghttp2_session_callbacks_del(callbacks);
  }
};
using Nghttp2SessionPtr = std::unique_ptr<nghttp2_session, Nghttp2SessionDeleter>;
using Nghttp2CallbacksPtr = std::unique_ptr<nghttp2_session_callbacks, Nghttp2CallbacksDeleter>;

constexpr int kExitUsage = 64;  // EX_USAGE
constexpr int kExitCannotStart = 1;
// All threads together keep at most this many latency samples (see LatencySampler).
constexpr std::size_t kMaxLatencySamples = 10'000'000;
// A status line, header line or chunk-size line longer than this is a malformed response.
constexpr std::size_t kMaxLineLength = 64 * 1024;
constexpr int kMaxHeaderLines = 1000;
// How often workers look at RunControl::stop (set by SIGINT/SIGTERM).
constexpr std::chrono::milliseconds kStopPoll{100};
// --h2 receive windows, announced in our SETTINGS: large enough that flow control never paces
// a benchmark's responses (nghttp2's defaults are 64 KiB, RFC 9113's initial values).
constexpr std::uint32_t kH2StreamWindow = 1 << 20;
constexpr std::int32_t kH2ConnectionWindow = 16 << 20;
// --h2: stop serialising frames once this much output waits for the socket; the bufferevent's
// write callback resumes (request bodies are bounded by flow control, this bounds the rest).
constexpr std::size_t kH2OutputHighWater = 256 * 1024;
// Descriptors beyond one per connection: stdio, each thread's event loop, a retiring one.
constexpr rlim_t kSpareDescriptors = 64;

// Why an attempt failed. Every value is one key of the summary's "errors" object.
enum class ErrorKind : std::uint8_t {
  connect,        // socket() or TCP connect failed (refused, unreachable, out of descriptors)
  tls_handshake,  // the TLS handshake failed or the peer closed during it
  timeout,        // no complete response within --timeout (connect and handshake included)
  malformed,      // the response is not HTTP/1.x as we parse it, or breaks HTTP/2 (--h2)
  closed,         // the peer closed the connection before the response was complete
  io,             // a read/write/TLS error after the connection was established
  alpn,           // --h2: the server did not select h2 in the TLS handshake
  reset,          // --h2: the server reset the stream (RST_STREAM) before the response ended
  goaway,         // --h2: the server's GOAWAY refused the stream (not processed, safe to retry)
};
constexpr std::array<std::string_view, 9> kErrorNames = {
    "connect", "tls_handshake", "timeout", "malformed", "closed", "io", "alpn", "reset", "goaway"};

struct Options {
  std::uint64_t requests = 10000;
  unsigned connections = 10;
  unsigned threads = 1;
  std::optional<double> duration_s;
  bool new_connection = false;
  bool resume = false;
  std::string cert_file;
  std::string key_file;
  std::string ca_file;
  std::vector<std::string> headers;
  std::string method = "GET";
  std::optional<std::uint64_t> data_size;
  int tls_version = 0;  // 0: OpenSSL's range; else TLS1_2_VERSION or TLS1_3_VERSION
  double timeout_s = 30;
  bool json = false;
  std::string urls_file;         // --urls: request-targets, one picked at random per request
  std::optional<double> rate;    // --rate: requests per second, all threads (open loop)
  bool h2 = false;               // --h2: HTTP/2 over TLS
  unsigned streams = 1;          // --streams: concurrent requests per HTTP/2 connection
  std::optional<double> hold_s;  // --hold: idle seconds after a connection's one response
  std::optional<double> ramp_s;  // --ramp: start the connections evenly over this many seconds
  std::string url;
};

struct Url {
  bool tls = false;
  std::string host;       // without IPv6 brackets, as getaddrinfo and SNI want it
  std::string authority;  // host[:port] as written, for the Host header
  std::uint16_t port = 0;
  std::string target;  // origin-form: /path?query
};

// --h2: one request's header block in nghttp2's form. nv points into fields (NGHTTP2_NV_FLAG_
// NO_COPY_*: nghttp2 reads the bytes where they are, every request of the run), so an H2Request
// is never copied; moving it keeps the strings where they are (the vector's buffer moves).
struct H2Request {
  H2Request() = default;
  H2Request(const H2Request&) = delete;
  H2Request& operator=(const H2Request&) = delete;
  H2Request(H2Request&&) noexcept = default;
  H2Request& operator=(H2Request&&) noexcept = default;

  std::vector<std::pair<std::string, std::string>> fields;  // names lowercase
  std::vector<nghttp2_nv> nv;
};

// Everything the workers read. Built by main before the threads start; immutable after.
struct Plan {
  Options options;
  Url url;
  sockaddr_storage address{};
  socklen_t address_length = 0;
  // Head and body, one per request-target (--urls) or just the URL's; every write references
  // one, none copies it.
  std::vector<std::string> requests;
  std::vector<H2Request> h2_requests;  // --h2: the same, as HTTP/2 header blocks
  SSL_CTX* ssl_ctx = nullptr;          // owned by main; null for http://
  bool head_request = false;           // HEAD responses have no body whatever their headers say
};

// The only state several threads write.
struct RunControl {
  bool unlimited = false;               // --duration: no request budget
  std::atomic<std::int64_t> budget{0};  // attempts left to start (-n)
  std::atomic<bool> stop{false};        // a signal asked every worker to stop now
  std::atomic<unsigned> finished_workers{0};
  // The first failure of each kind is explained on stderr (a wrong certificate shows at once).
  std::array<std::atomic<bool>, kErrorNames.size()> explained{};

  // make_why() -> std::string runs only for the first failure of its kind.
  template <typename MakeWhy>
  void explain_once(ErrorKind kind, MakeWhy make_why) {
    std::atomic<bool>& done = explained[static_cast<std::size_t>(kind)];
    if (done.load(std::memory_order_relaxed) || done.exchange(true)) return;
    std::fprintf(stderr, "cmsfront-load: first %s error: %s\n",
                 kErrorNames[static_cast<std::size_t>(kind)].data(),
                 std::string(make_why()).c_str());
  }

  // Takes one unit of the budget; false once the run should start nothing more.
  [[nodiscard]] bool try_claim() {
    if (stop.load(std::memory_order_relaxed)) return false;
    return unlimited || budget.fetch_sub(1, std::memory_order_relaxed) > 0;
  }
};

// Latencies in microseconds, bounded in memory: once `cap` samples are held it drops every
// other one and from then on keeps only every stride-th latency (stride doubling each time),
// so the kept samples stay an even sample of the whole run. Min and max are exact.
class LatencySampler {
 public:
  explicit LatencySampler(std::size_t cap) : cap_(std::max<std::size_t>(cap, 2)) {}

  void record(std::uint32_t micros) {
    min_ = std::min(min_, micros);
    max_ = std::max(max_, micros);
    ++count_;
    if (++skipped_ < stride_) return;
    skipped_ = 0;
    samples_.push_back(micros);
    if (samples_.size() < cap_) return;
    for (std::size_t i = 0; i < samples_.size() / 2; ++i) samples_[i] = samples_[2 * i + 1];
    samples_.resize(samples_.size() / 2);
    stride_ *= 2;
  }

  // All samplers' samples at the coarsest stride among them, so that every kept sample stands
  // for the same number of requests whichever thread it came from.
  static std::vector<std::uint32_t> merge(const std::vector<const LatencySampler*>& samplers) {
    std::uint64_t stride = 1;
    for (const auto* sampler : samplers) stride = std::max(stride, sampler->stride_);
    std::vector<std::uint32_t> merged;
    for (const auto* sampler : samplers) {
      std::uint64_t step = stride / sampler->stride_;
      for (std::size_t i = step - 1; i < sampler->samples_.size(); i += step) {
        merged.push_back(sampler->samples_[i]);
      }
    }
    return merged;
  }

  std::uint64_t count() const { return count_; }
  std::uint32_t min() const { return min_; }
  std::uint32_t max() const { return max_; }

 private:
  std::size_t cap_;
  std::vector<std::uint32_t> samples_;
  std::uint64_t stride_ = 1;
  std::uint64_t skipped_ = 0;
  std::uint64_t count_ = 0;
  std::uint32_t min_ = UINT32_MAX;
  std::uint32_t max_ = 0;
};

// One worker's counters; merged by main after the threads are joined.
struct Stats {
  explicit Stats(std::size_t latency_cap) : latency(latency_cap) {}

  std::uint64_t requests = 0;
  std::array<std::uint64_t, kErrorNames.size()> errors{};
  std::map<int, std::uint64_t> status;
  std::uint64_t handshakes = 0;
  std::uint64_t resumed = 0;
  std::uint64_t bytes_in = 0;
  std::uint64_t late = 0;     // --rate: requests due while every connection was busy
  std::uint64_t held = 0;     // --hold: connections held open idle after their response
  std::uint64_t held_ok = 0;  // ... and still open (no close, no GOAWAY) when the hold ended
  LatencySampler latency;
};

bool equals_ignore_case(std::string_view a, std::string_view b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(), [](char x, char y) {
    return (x >= 'A' && x <= 'Z' ? x + 32 : x) == (y >= 'A' && y <= 'Z' ? y + 32 : y);
  });
}

// xorshift64 (Marsaglia): fast, and plenty for spreading requests over --urls targets.
class Xorshift {
 public:
  explicit Xorshift(std::uint64_t seed) : state_(seed != 0 ? seed : 0x9e3779b97f4a7c15) {}
  std::uint64_t next() {
    state_ ^= state_ << 13;
    state_ ^= state_ >> 7;
    state_ ^= state_ << 17;
    return state_;
  }
  // Uniform enough in [0, n) for n far below 2^64.
  std::size_t below(std::size_t n) { return n <= 1 ? 0 : next() % n; }

 private:
  std::uint64_t state_;
};

std::string_view trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

template <typename T>
bool parse_number(std::string_view text, T& value, int base = 10) {
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value, base);
  return !text.empty() && error == std::errc() && end == text.data() + text.size();
}

bool parse_seconds(std::string_view text, double& value) {
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  return !text.empty() && error == std::errc() && end == text.data() + text.size() && value > 0 &&
         value < 1e6;
}

bool is_token(std::string_view text) {
  constexpr std::string_view kSpecials = "!#$%&'*+-.^_`|~";
  return !text.empty() && std::all_of(text.begin(), text.end(), [&](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           kSpecials.find(c) != std::string_view::npos;
  });
}

// ---- ResponseParser --------------------------------------------------------------------------

// An incremental HTTP/1.x response parser that reads an evbuffer and drains what it has
// consumed. Strict where a mistake would desynchronise the connection (status line, framing
// headers, chunk sizes), lenient elsewhere (bare LF line ends, unknown headers). Owner: its
// Slot; reset() before each request.
class ResponseParser {
 public:
  enum class Result : std::uint8_t { need_more, complete, malformed };

  void reset(bool head_request) {
    *this = ResponseParser();
    head_request_ = head_request;
  }
  [[nodiscard]] Result feed(evbuffer* input);
  // The peer closed the connection: does that end this response (a body read until close)?
  bool complete_at_eof() const { return state_ == State::body_until_close; }
  int status() const { return status_; }
  bool keep_alive() const { return keep_alive_; }
  // After Result::malformed: where, and the line at fault (control bytes shown as '?').
  std::string describe_error() const;

 private:
  enum class State : std::uint8_t {
    status_line,
    headers,
    body_length,
    chunk_size,
    chunk_data,
    chunk_end,  // the CRLF after a chunk's data
    trailers,
    body_until_close,
    done,
  };
  enum class Line : std::uint8_t { ready, need_more, too_long };

  Line take_line(evbuffer* input);
  bool parse_status_line();
  bool parse_header();
  bool end_of_headers();
  bool parse_chunk_size();
  void drain_body(evbuffer* input);

  State state_ = State::status_line;
  bool head_request_ = false;
  bool http10_ = false;
  int status_ = 0;
  int header_lines_ = 0;
  int empty_lines_ = 0;
  std::optional<std::uint64_t> content_length_;
  bool transfer_encoding_ = false;
  bool chunked_ = false;
  bool connection_close_ = false;
  bool connection_keep_alive_ = false;
  bool keep_alive_ = false;
  std::uint64_t remaining_ = 0;  // body or chunk bytes still to drain
  bool line_too_long_ = false;
  std::string line_;  // the current line, copied out before the buffer is drained
};

ResponseParser::Result ResponseParser::feed(evbuffer* input) {
  for (;;) {
    Line line = Line::ready;
    switch (state_) {
      case State::status_line:
      case State::headers:
      case State::chunk_size:
      case State::chunk_end:
      case State::trailers:
        line = take_line(input);
        break;
      default:
        break;
    }
    if (line == Line::need_more) return Result::need_more;
    if (line == Line::too_long) return Result::malformed;

    bool ok = true;
    switch (state_) {
      case State::status_line:
        // Tolerate a stray empty line before the status line (a server's extra CRLF).
        if (line_.empty() && ++empty_lines_ <= 4) continue;
        ok = parse_status_line();
        break;
      case State::headers:
        ok = line_.empty() ? end_of_headers() : parse_header();
        break;
      case State::body_length:
      case State::chunk_data:
      case State::body_until_close:
        drain_body(input);
        if (state_ == State::body_until_close || remaining_ > 0) return Result::need_more;
        state_ = state_ == State::chunk_data ? State::chunk_end : State::done;
        break;
      case State::chunk_size:
        ok = parse_chunk_size();
        break;
      case State::chunk_end:
        ok = line_.empty();
        state_ = State::chunk_size;
        break;
      case State::trailers:
        if (line_.empty()) state_ = State::done;
        break;
      case State::done:
        return Result::complete;
    }
    if (!ok) return Result::malformed;
  }
}

std::string ResponseParser::describe_error() const {
  if (line_too_long_) return "a line longer than " + std::to_string(kMaxLineLength) + " bytes";
  std::string line = line_.substr(0, 120);
  for (char& c : line) {
    if (static_cast<unsigned char>(c) < ' ' || c == 0x7f) c = '?';
  }
  switch (state_) {
    case State::status_line:
      return "status line '" + line + "'";
    case State::headers:
      return "header line '" + line + "'";
    default:
      return "chunked framing at '" + line + "'";
  }
}

ResponseParser::Line ResponseParser::take_line(evbuffer* input) {
  std::size_t eol_length = 0;
  evbuffer_ptr eol = evbuffer_search_eol(input, nullptr, &eol_length, EVBUFFER_EOL_CRLF);
  if (eol.pos < 0) {
    line_too_long_ = evbuffer_get_length(input) > kMaxLineLength;
    return line_too_long_ ? Line::too_long : Line::need_more;
  }
  auto length = static_cast<std::size_t>(eol.pos);
  line_too_long_ = length > kMaxLineLength;
  if (line_too_long_) return Line::too_long;
  const auto* data = reinterpret_cast<const char*>(
      evbuffer_pullup(input, static_cast<ev_ssize_t>(length + eol_length)));
  line_.assign(data, length);
  evbuffer_drain(input, length + eol_length);
  return Line::ready;
}

// "HTTP/1.x SSS[ reason]"
bool ResponseParser::parse_status_line() {
  std::string_view line = line_;
  if (line.size() < 12 || line.substr(0, 7) != "HTTP/1." || line[7] < '0' || line[7] > '9' ||
      line[8] != ' ' || (line.size() > 12 && line[12] != ' ')) {
    return false;
  }
  if (!parse_number(line.substr(9, 3), status_) || status_ < 100) return false;
  http10_ = line[7] == '0';
  state_ = State::headers;
  return true;
}

bool ResponseParser::parse_header() {
  if (++header_lines_ > kMaxHeaderLines) return false;
  std::string_view line = line_;
  std::size_t colon = line.find(':');
  // No name, or whitespace in it (also catches obsolete line folding): refuse, as cmsfront's
  // own codec does, rather than guess where the header ends.
  if (colon == 0 || colon == std::string_view::npos) return false;
  std::string_view name = line.substr(0, colon);
  if (name.find_first_of(" \t") != std::string_view::npos) return false;
  std::string_view value = trim(line.substr(colon + 1));

  if (equals_ignore_case(name, "content-length")) {
    std::uint64_t length = 0;
    if (!parse_number(value, length) || length > (std::uint64_t{1} << 62)) return false;
    if (content_length_ && *content_length_ != length) return false;
    content_length_ = length;
  } else if (equals_ignore_case(name, "transfer-encoding")) {
    // Chunked counts only as the final coding; anything else is read until close.
    std::size_t comma = value.rfind(',');
    std::string_view last = trim(comma == std::string_view::npos ? value : value.substr(comma + 1));
    transfer_encoding_ = true;
    chunked_ = equals_ignore_case(last, "chunked");
  } else if (equals_ignore_case(name, "connection")) {
    while (!value.empty()) {
      std::size_t comma = value.find(',');
      std::string_view token = trim(value.substr(0, comma));
      if (equals_ignore_case(token, "close")) connection_close_ = true;
      if (equals_ignore_case(token, "keep-alive")) connection_keep_alive_ = true;
      value = comma == std::string_view::npos ? std::string_view() : value.substr(comma + 1);
    }
  }
  return true;
}

bool ResponseParser::end_of_headers() {
  if (status_ < 200) {
    // 101 would switch protocols, which we never ask for; other 1xx precede the real response.
    if (status_ == 101) return false;
    bool head_request = head_request_;
    reset(head_request);
    return true;
  }
  keep_alive_ = http10_ ? connection_keep_alive_ && !connection_close_ : !connection_close_;
  if (head_request_ || status_ == 204 || status_ == 304) {
    state_ = State::done;
  } else if (transfer_encoding_) {
    state_ = chunked_ ? State::chunk_size : State::body_until_close;
  } else if (content_length_) {
    remaining_ = *content_length_;
    state_ = remaining_ > 0 ? State::body_length : State::done;
  } else {
    state_ = State::body_until_close;
  }
  if (state_ == State::body_until_close) keep_alive_ = false;
  return true;
}

// HEX[ext], where ext starts with ';' or whitespace and is ignored.
bool ResponseParser::parse_chunk_size() {
  std::string_view line = line_;
  std::size_t digits = line.find_first_not_of("0123456789abcdefABCDEF");
  if (digits == std::string_view::npos) digits = line.size();
  if (digits == 0 || digits > 15) return false;  // 15 hex digits: no overflow, and plenty
  std::string_view rest = line.substr(digits);
  if (!rest.empty() && rest.front() != ';' && rest.front() != ' ' && rest.front() != '\t') {
    return false;
  }
  if (!parse_number(line.substr(0, digits), remaining_, 16)) return false;
  state_ = remaining_ > 0 ? State::chunk_data : State::trailers;
  return true;
}

void ResponseParser::drain_body(evbuffer* input) {
  std::size_t available = evbuffer_get_length(input);
  std::size_t take = state_ == State::body_until_close
                         ? available
                         : std::min<std::uint64_t>(available, remaining_);
  evbuffer_drain(input, take);
  if (state_ != State::body_until_close) remaining_ -= take;
}

// ---- Socket ----------------------------------------------------------------------------------

// A socket from socket() until a bufferevent takes it over (or the connect fails).
class Socket {
 public:
  Socket() = default;
  ~Socket() { reset(); }
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;

  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }
  int get() const { return fd_; }
  [[nodiscard]] int release() { return std::exchange(fd_, -1); }

 private:
  int fd_ = -1;
};

timeval to_timeval(double seconds) {
  auto micros = static_cast<std::int64_t>(seconds * 1e6);
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(micros / 1'000'000);
  tv.tv_usec = static_cast<suseconds_t>(micros % 1'000'000);
  return tv;
}

std::string tls_reason(unsigned long code) {
  // libevent's bufferevent_openssl queues SSL_get_error's SSL_ERROR_SYSCALL itself when the
  // transport failed under TLS, which OpenSSL would print as "lib(0)::reason(5)".
  if (code == SSL_ERROR_SYSCALL) {
    return "the connection was reset or closed under TLS (SSL_ERROR_SYSCALL)";
  }
  std::array<char, 256> text{};
  ERR_error_string_n(code, text.data(), text.size());
  return text.data();
}

class Worker;

// One connection slot: requests one at a time (HTTP/1.1) or up to --streams at once (--h2),
// reconnecting when needed. Owner: its Worker. Lifetime: the whole run; its bufferevents come
// and go (a dropped one waits in retired_ until the next attempt starts, so none is freed
// inside its own callback). Thread: the Worker's.
//
// Units: what the Worker schedules (parks, hands a paced request to, finishes) is a unit of a
// slot: the slot itself for HTTP/1.1, one of its --streams concurrent requests with --h2.
class Slot {
 public:
  Slot(Worker& worker, const Plan& plan, RunControl& control, Stats& stats);
  Slot(const Slot&) = delete;
  Slot& operator=(const Slot&) = delete;

  [[nodiscard]] bool ready() const {
    return connect_event_ && timeout_event_ && next_event_ && hold_event_;
  }
  unsigned units() const { return units_; }
  // Starts every unit, now or (--ramp) after `delay_s`.
  void start(double delay_s);
  // --rate: starts a unit's attempt whose unit of the budget the Worker has already claimed.
  void begin();
  // No more attempts for one unit; the last one drops the connection. Tells the Worker.
  void finish();
  // The run is over (deadline or signal): drop the connection, count nothing more.
  void abandon();
  // SSL_CTX new-session callback target (--resume): the newest ticket of this slot's
  // connection, offered by its next one.
  void keep_session(SslSessionPtr session) { session_ = std::move(session); }

 private:
  enum class Phase : std::uint8_t {
    idle,         // between attempts (the next one is scheduled), or no connection yet
    connecting,   // TCP connect in progress
    handshaking,  // TLS handshake in progress
    waiting,      // request sent, response not complete; --h2: the session is open
    holding,      // --hold: the connection's one response is in, the connection idles
    done,         // no more attempts
  };

  // --h2: one request in flight. streams_ has --streams of them, never resized: their
  // addresses are the streams' nghttp2 stream_user_data.
  struct Stream {
    std::int32_t id = 0;
    bool in_use = false;
    bool complete = false;  // the response's END_STREAM came
    bool reset_by_peer = false;
    std::uint32_t reset_code = 0;
    int status = 0;
    std::uint64_t body_sent = 0;
    Clock::time_point start;
    Clock::time_point done;
  };

  static void on_connect_ready(evutil_socket_t, short, void* arg) noexcept;
  static void on_timeout(evutil_socket_t, short, void* arg) noexcept;
  static void on_next(evutil_socket_t, short, void* arg) noexcept;
  static void on_hold_end(evutil_socket_t, short, void* arg) noexcept;
  static void on_read(bufferevent*, void* arg) noexcept;
  static void on_write(bufferevent*, void* arg) noexcept;
  static void on_event(bufferevent*, short events, void* arg) noexcept;

  void next();
  void connect();
  void handle_connect_ready();
  void connected();
  void send_request();
  void handle_read();
  void handle_event(short events);
  void handle_timeout();
  void complete_response();
  void fail(ErrorKind kind);
  // Says once why I/O failed: the TLS error when there is one, else the socket's errno.
  void explain_io_error(unsigned long tls_error);
  void enter_hold();
  void end_hold();
  void drop_connection();

 public:
  // nghttp2 callbacks (Worker::Worker installs them); user_data is the Slot. They record and
  // return 0: whatever follows from them runs in pump(), after nghttp2 has returned.
  static int on_h2_header(nghttp2_session* session, const nghttp2_frame* frame,
                          const std::uint8_t* name, std::size_t name_length,
                          const std::uint8_t* value, std::size_t value_length, std::uint8_t flags,
                          void* user_data) noexcept;
  static int on_h2_frame_recv(nghttp2_session* session, const nghttp2_frame* frame,
                              void* user_data) noexcept;
  static int on_h2_frame_not_send(nghttp2_session* session, const nghttp2_frame* frame, int error,
                                  void* user_data) noexcept;
  static int on_h2_stream_close(nghttp2_session* session, std::int32_t stream_id,
                                std::uint32_t error_code, void* user_data) noexcept;
  static int on_h2_error(nghttp2_session* session, int error, const char* message,
                         std::size_t length, void* user_data) noexcept;
  static ssize_t on_h2_body(nghttp2_session* session, std::int32_t stream_id, std::uint8_t* buf,
                            std::size_t length, std::uint32_t* data_flags,
                            nghttp2_data_source* source, void* user_data) noexcept;

 private:
  // --h2 counterparts of next / begin / handle_read / handle_event / fail.
  void next_unit();
  void begin_unit();
  void h2_connected();
  void handle_read_h2();
  void handle_event_h2(short events);
  void handle_timeout_h2();
  void fail_h2(ErrorKind kind);
  void restart_units();
  bool start_session();
  bool session_open() const { return h2_ && phase_ == Phase::waiting && !goaway_; }
  void submit();
  void stream_closed(Stream& stream, std::uint32_t error_code);
  void pump();
  void settle();
  bool flush();
  void retire_session();
  void release_streams();
  Stream* find_stream(std::int32_t id);

  Worker& worker_;
  const Plan& plan_;
  RunControl& control_;
  Stats& stats_;
  const bool h2_mode_;
  const unsigned units_;  // --streams with --h2, else 1
  unsigned finished_units_ = 0;
  Phase phase_ = Phase::idle;
  Socket socket_;           // while connecting
  BufferEventPtr bev_;      // the current connection
  BufferEventPtr retired_;  // the dropped one, freed on the next loop turn
  bool tls_open_ = false;   // handshake done on bev_: close with close_notify
  // TLS 1.3 clients finish their handshake before the server has checked their certificate;
  // until the first response byte, a TLS alert still means the handshake failed.
  bool handshake_unconfirmed_ = false;
  std::size_t unparsed_ = 0;  // input bytes already counted in bytes_in but not consumed
  Clock::time_point connect_start_;
  Clock::time_point request_start_;
  ResponseParser parser_;
  SslSessionPtr session_;
  EventPtr connect_event_;
  EventPtr timeout_event_;
  EventPtr next_event_;
  EventPtr hold_event_;

  // --h2 state. A unit that holds a claimed request is queued (waiting for a session to send
  // it on) or in flight (a stream); freed_ units' streams ended inside nghttp2 callbacks and
  // wait for settle(); restart_ units start over on the next loop turn (on_next).
  Nghttp2SessionPtr h2_;
  std::vector<Stream> streams_;
  std::vector<Stream*> free_streams_;
  unsigned queued_ = 0;
  unsigned in_flight_ = 0;
  unsigned freed_ = 0;
  unsigned succeeded_ = 0;  // of freed_, those with a complete response
  unsigned restart_ = 0;
  bool goaway_ = false;  // the server's GOAWAY came: no new streams on this session
  std::int32_t goaway_last_stream_ = 0;
  std::uint32_t goaway_code_ = 0;
  bool pumping_ = false;
  std::string h2_error_;  // nghttp2's last error message, for the first-error explanations
};

// One thread's event loop and its slots. Owner: main; run() on its own thread.
class Worker {
 public:
  Worker(const Plan& plan, RunControl& control, unsigned slots, std::size_t latency_cap);
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  [[nodiscard]] bool ready() const {
    return base_ && tick_event_ && deadline_event_ && (!plan_.options.rate || pace_event_) &&
           (!plan_.options.h2 || h2_callbacks_) &&
           std::all_of(slots_.begin(), slots_.end(),
                       [](const auto& slot) { return slot->ready(); });
  }
  void run();
  event_base* base() const { return base_.get(); }
  const nghttp2_session_callbacks* h2_callbacks() const { return h2_callbacks_.get(); }
  bool stopping() const { return stopping_; }
  bool paced() const { return pace_event_ != nullptr; }
  // The request to send next: one of --urls at random, or the only one.
  std::size_t pick_target() { return random_.below(plan_.requests.size()); }
  // --rate: one unit of the slot has no request in hand; give it a late one, park it, or
  // finish it.
  void slot_free(Slot& slot);
  // One unit finished.
  void slot_finished();
  const Stats& stats() const { return stats_; }
  Clock::time_point finished_at() const { return finished_at_; }

 private:
  static void on_tick(evutil_socket_t, short, void* arg) noexcept;
  static void on_deadline(evutil_socket_t, short, void* arg) noexcept;
  static void on_pace(evutil_socket_t, short, void* arg) noexcept;
  void stop_all();
  void pace();

  const Plan& plan_;
  RunControl& control_;
  Stats stats_;
  EventBasePtr base_;
  EventPtr tick_event_;
  EventPtr deadline_event_;
  // --h2: the callbacks every session of this worker gets (nghttp2_session_client_new copies
  // them, so they could be freed earlier; kept for symmetry with the other handles).
  Nghttp2CallbacksPtr h2_callbacks_;
  std::vector<std::unique_ptr<Slot>> slots_;  // after base_: freed before it
  std::size_t active_units_ = 0;
  bool stopping_ = false;
  Clock::time_point finished_at_;
  Xorshift random_;
  // --rate (open loop): this worker's share of the rate, paced by pace_event_ (null without
  // --rate). Request k of the worker is due pace_start_ + k / rate_; due requests go to a
  // free unit, or wait in backlog_ (counted late) until one frees up.
  EventPtr pace_event_;
  double rate_ = 0;
  Clock::time_point pace_start_;
  std::uint64_t issued_ = 0;
  std::uint64_t backlog_ = 0;
  bool budget_spent_ = false;
  std::vector<Slot*> free_slots_;  // one entry per parked unit (an h2 slot may appear M times)
};

// ---- Slot ------------------------------------------------------------------------------------

Slot::Slot(Worker& worker, const Plan& plan, RunControl& control, Stats& stats)
    : worker_(worker),
      plan_(plan),
      control_(control),
      stats_(stats),
      h2_mode_(plan.options.h2),
      units_(plan.options.h2 ? plan.options.streams : 1),
      connect_event_(event_new(worker.base(), -1, 0, on_connect_ready, this)),
      timeout_event_(evtimer_new(worker.base(), on_timeout, this)),
      next_event_(event_new(worker.base(), -1, 0, on_next, this)),
      hold_event_(evtimer_new(worker.base(), on_hold_end, this)) {
  if (h2_mode_) {
    streams_.resize(units_);
    for (Stream& stream : streams_) free_streams_.push_back(&stream);
  }
}

void Slot::on_connect_ready(evutil_socket_t, short, void* arg) noexcept {
  static_cast<Slot*>(arg)->handle_connect_ready();
}
void Slot::on_timeout(evutil_socket_t, short, void* arg) noexcept {
  static_cast<Slot*>(arg)->handle_timeout();
}
void Slot::on_next(evutil_socket_t, short, void* arg) noexcept {
  auto* slot = static_cast<Slot*>(arg);
  slot->retired_.reset();
  if (slot->h2_mode_) {
    slot->restart_units();
  } else {
    slot->next();
  }
}
void Slot::on_hold_end(evutil_socket_t, short, void* arg) noexcept {
  static_cast<Slot*>(arg)->end_hold();
}
void Slot::on_read(bufferevent*, void* arg) noexcept {
  auto* slot = static_cast<Slot*>(arg);
  if (slot->h2_mode_) {
    slot->handle_read_h2();
  } else {
    slot->handle_read();
  }
}
void Slot::on_write(bufferevent*, void* arg) noexcept {
  // --h2 only: the output drained below the high-water mark; serialise more.
  static_cast<Slot*>(arg)->pump();
}
void Slot::on_event(bufferevent*, short events, void* arg) noexcept {
  auto* slot = static_cast<Slot*>(arg);
  if (slot->h2_mode_) {
    slot->handle_event_h2(events);
  } else {
    slot->handle_event(events);
  }
}

void Slot::start(double delay_s) {
  if (delay_s > 0) {
    // on_next starts the slot (HTTP/1.1) or its restart_ units (HTTP/2) when the delay is up.
    if (h2_mode_) restart_ += units_;
    timeval delay = to_timeval(delay_s);
    event_add(next_event_.get(), &delay);
    return;
  }
  if (!h2_mode_) {
    next();
    return;
  }
  for (unsigned i = 0; i < units_ && phase_ != Phase::done; ++i) next_unit();
  pump();
}

void Slot::handle_timeout() {
  if (h2_mode_) {
    handle_timeout_h2();
    return;
  }
  control_.explain_once(ErrorKind::timeout, [this] {
    constexpr std::array<const char*, 6> kWhile = {
        "between requests",         "connecting",    "in the TLS handshake",
        "waiting for the response", "while holding", "after the end"};
    return std::string("no complete response within --timeout, stuck ") +
           kWhile[static_cast<std::size_t>(phase_)];
  });
  fail(ErrorKind::timeout);
}

// Starts the next attempt: on the open connection if there is one, else on a new one.
void Slot::next() {
  if (phase_ == Phase::done) return;
  if (worker_.paced()) {
    worker_.slot_free(*this);
    return;
  }
  if (worker_.stopping() || !control_.try_claim()) {
    finish();
    return;
  }
  begin();
}

void Slot::begin() {
  if (h2_mode_) {
    begin_unit();
    pump();  // a no-op when pump() is what called us (through Worker::slot_free)
    return;
  }
  if (!bev_) {
    connect();
    return;
  }
  timeval timeout = to_timeval(plan_.options.timeout_s);
  event_add(timeout_event_.get(), &timeout);
  send_request();
}

void Slot::connect() {
  phase_ = Phase::connecting;
  connect_start_ = Clock::now();
  timeval timeout = to_timeval(plan_.options.timeout_s);
  event_add(timeout_event_.get(), &timeout);
  socket_.reset(::socket(plan_.address.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (socket_.get() < 0) {
    control_.explain_once(ErrorKind::connect, [] { return std::strerror(errno); });
    fail(ErrorKind::connect);
    return;
  }
  int one = 1;
  setsockopt(socket_.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (::connect(socket_.get(), reinterpret_cast<const sockaddr*>(&plan_.address),
                plan_.address_length) == 0) {
    connected();
    return;
  }
  if (errno != EINPROGRESS) {
    control_.explain_once(ErrorKind::connect, [] { return std::strerror(errno); });
    fail(ErrorKind::connect);
    return;
  }
  event_assign(connect_event_.get(), worker_.base(), socket_.get(), EV_WRITE, on_connect_ready,
               this);
  event_add(connect_event_.get(), nullptr);
}

void Slot::handle_connect_ready() {
  int error = 0;
  socklen_t length = sizeof error;
  if (getsockopt(socket_.get(), SOL_SOCKET, SO_ERROR, &error, &length) != 0 || error != 0) {
    control_.explain_once(ErrorKind::connect,
                          [error] { return std::strerror(error != 0 ? error : errno); });
    fail(ErrorKind::connect);
    return;
  }
  connected();
}

// TCP is up: wrap the socket in a bufferevent (TLS or plain) and go on.
void Slot::connected() {
  if (!plan_.url.tls) {
    bev_.reset(bufferevent_socket_new(worker_.base(), socket_.get(), BEV_OPT_CLOSE_ON_FREE));
    if (!bev_) {
      fail(ErrorKind::io);
      return;
    }
    (void)socket_.release();
  } else {
    SslPtr ssl(SSL_new(plan_.ssl_ctx));
    if (!ssl) {
      fail(ErrorKind::tls_handshake);
      return;
    }
    in_addr v4{};
    in6_addr v6{};
    const char* host = plan_.url.host.c_str();
    // SNI carries names only, never address literals (RFC 6066 section 3).
    if (inet_pton(AF_INET, host, &v4) != 1 && inet_pton(AF_INET6, host, &v6) != 1) {
      SSL_set_tlsext_host_name(ssl.get(), host);
    }
    SSL_set_app_data(ssl.get(), this);
    if (session_) SSL_set_session(ssl.get(), session_.get());
    // With BEV_OPT_CLOSE_ON_FREE the bufferevent owns the SSL and the socket from here, on
    // its own failure paths too (they free both).
    bev_.reset(bufferevent_openssl_socket_new(worker_.base(), socket_.release(), ssl.release(),
                                              BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE));
    if (!bev_) {
      fail(ErrorKind::tls_handshake);
      return;
    }
    // A peer that closes without close_notify ends a body read until close; truncation
    // elsewhere is caught by the framing, and this is a load tool, not a browser.
    bufferevent_openssl_set_allow_dirty_shutdown(bev_.get(), 1);
  }
  unparsed_ = 0;
  // The write callback (output drained) matters only to HTTP/2, which serialises its output
  // a bounded amount at a time; HTTP/1.1 hands over whole prebuilt requests.
  bufferevent_setcb(bev_.get(), on_read, h2_mode_ ? on_write : nullptr, on_event, this);
  bufferevent_enable(bev_.get(), EV_READ | EV_WRITE);
  if (plan_.url.tls) {
    phase_ = Phase::handshaking;  // BEV_EVENT_CONNECTED comes when the handshake is done
  } else {
    send_request();
  }
}

void Slot::send_request() {
  phase_ = Phase::waiting;
  parser_.reset(plan_.head_request);
  // --new-connection measures what a client without keep-alive waits: connect to last byte.
  request_start_ = plan_.options.new_connection ? connect_start_ : Clock::now();
  const std::string& request = plan_.requests[worker_.pick_target()];
  evbuffer_add_reference(bufferevent_get_output(bev_.get()), request.data(), request.size(),
                         nullptr, nullptr);
}

void Slot::handle_read() {
  handshake_unconfirmed_ = false;
  evbuffer* input = bufferevent_get_input(bev_.get());
  stats_.bytes_in += evbuffer_get_length(input) - unparsed_;
  if (phase_ != Phase::waiting) {
    // Bytes nobody asked for (during the handshake nothing reaches the input buffer).
    evbuffer_drain(input, evbuffer_get_length(input));
    unparsed_ = 0;
    return;
  }
  ResponseParser::Result result = parser_.feed(input);
  unparsed_ = evbuffer_get_length(input);
  if (result == ResponseParser::Result::malformed) {
    control_.explain_once(ErrorKind::malformed, [this] { return parser_.describe_error(); });
    fail(ErrorKind::malformed);
  } else if (result == ResponseParser::Result::complete) {
    complete_response();
  }
}

void Slot::handle_event(short events) {
  SSL* ssl = plan_.url.tls ? bufferevent_openssl_get_ssl(bev_.get()) : nullptr;
  if (events & BEV_EVENT_CONNECTED) {
    tls_open_ = true;
    handshake_unconfirmed_ = true;
    ++stats_.handshakes;
    if (SSL_session_reused(ssl)) ++stats_.resumed;
    send_request();
    return;
  }
  if (phase_ == Phase::idle || phase_ == Phase::holding) {
    // --rate: the server closed a parked keep-alive connection; the next request reconnects.
    // --hold: it closed a held one (not held_ok); the hold's timer goes on regardless.
    drop_connection();
    return;
  }
  unsigned long tls_error = ssl != nullptr ? bufferevent_get_openssl_error(bev_.get()) : 0;
  if (phase_ == Phase::handshaking || (handshake_unconfirmed_ && tls_error != 0)) {
    if (phase_ != Phase::handshaking) {
      // Counted at BEV_EVENT_CONNECTED, but the server refused it: not a handshake done.
      --stats_.handshakes;
      if (SSL_session_reused(ssl)) --stats_.resumed;
    }
    control_.explain_once(ErrorKind::tls_handshake, [tls_error] {
      return tls_error != 0 ? tls_reason(tls_error) : "connection closed by the peer";
    });
    fail(ErrorKind::tls_handshake);
  } else if (phase_ == Phase::waiting && (events & BEV_EVENT_EOF) && parser_.complete_at_eof()) {
    complete_response();
  } else if (events & BEV_EVENT_EOF) {
    control_.explain_once(ErrorKind::closed, [] {
      return "the server closed the connection before the response was complete";
    });
    fail(ErrorKind::closed);
  } else {
    explain_io_error(tls_error);
    fail(ErrorKind::io);
  }
}

void Slot::explain_io_error(unsigned long tls_error) {
  const int socket_error = EVUTIL_SOCKET_ERROR();
  control_.explain_once(ErrorKind::io, [tls_error, socket_error] {
    return tls_error != 0 ? tls_reason(tls_error) : std::string(std::strerror(socket_error));
  });
}

void Slot::complete_response() {
  event_del(timeout_event_.get());
  auto micros =
      std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - request_start_).count();
  stats_.latency.record(static_cast<std::uint32_t>(std::min<std::int64_t>(micros, UINT32_MAX)));
  ++stats_.requests;
  ++stats_.status[parser_.status()];
  phase_ = Phase::idle;
  if (plan_.options.new_connection || !parser_.keep_alive()) {
    // (--hold: a connection the server is closing is not held.)
    drop_connection();
    event_active(next_event_.get(), EV_TIMEOUT, 1);
  } else if (plan_.options.hold_s) {
    enter_hold();
  } else {
    next();
  }
}

void Slot::fail(ErrorKind kind) {
  if (h2_mode_) {
    fail_h2(kind);
    return;
  }
  if (phase_ == Phase::done) return;
  ++stats_.errors[static_cast<std::size_t>(kind)];
  event_del(timeout_event_.get());
  drop_connection();
  phase_ = Phase::idle;
  // The retry waits for the next loop turn: no recursion when connects fail synchronously.
  event_active(next_event_.get(), EV_TIMEOUT, 1);
}

// --hold: no more requests on this connection; end_hold() closes it S seconds from now.
void Slot::enter_hold() {
  phase_ = Phase::holding;
  ++stats_.held;
  event_del(timeout_event_.get());
  timeval hold = to_timeval(*plan_.options.hold_s);
  event_add(hold_event_.get(), &hold);
}

void Slot::end_hold() {
  if (phase_ != Phase::holding) return;
  // Still open: the server neither closed it nor (HTTP/2) announced it would with GOAWAY.
  if (bev_ && !goaway_) ++stats_.held_ok;
  drop_connection();
  phase_ = Phase::idle;
  if (h2_mode_) ++restart_;  // the held unit goes on with a new connection
  event_active(next_event_.get(), EV_TIMEOUT, 1);
}

void Slot::finish() {
  if (phase_ == Phase::done) return;
  if (++finished_units_ >= units_) {
    phase_ = Phase::done;
    event_del(timeout_event_.get());
    event_del(hold_event_.get());
    drop_connection();
  }
  worker_.slot_finished();
}

void Slot::abandon() {
  if (phase_ == Phase::done) return;
  phase_ = Phase::done;
  event_del(timeout_event_.get());
  event_del(next_event_.get());
  event_del(hold_event_.get());
  drop_connection();
}

void Slot::drop_connection() {
  event_del(connect_event_.get());
  socket_.reset();
  // Before the bufferevent: nothing of the session may outlive the connection. Its callbacks
  // see h2_ null while it is freed (unique_ptr clears the pointer first) and record nothing.
  h2_.reset();
  release_streams();
  if (bev_) {
    bufferevent_disable(bev_.get(), EV_READ | EV_WRITE);
    bufferevent_setcb(bev_.get(), nullptr, nullptr, nullptr, nullptr);
    // OpenSSL marks a session not resumable when its SSL is freed without a close_notify
    // sent; send one (best effort, the socket may be gone) so --resume can use the session.
    if (tls_open_) {
      SSL_shutdown(bufferevent_openssl_get_ssl(bev_.get()));
      // Whatever that queued must not be read by the next SSL_get_error on this thread.
      ERR_clear_error();
    }
    retired_ = std::move(bev_);
  }
  tls_open_ = false;
  handshake_unconfirmed_ = false;
  unparsed_ = 0;
  goaway_ = false;
}

// ---- Slot, HTTP/2 ----------------------------------------------------------------------------

// A unit has nothing to do: start its next request, or park or finish it.
void Slot::next_unit() {
  if (phase_ == Phase::done) return;
  if (worker_.paced()) {
    worker_.slot_free(*this);
    return;
  }
  if (worker_.stopping() || !control_.try_claim()) {
    finish();
    return;
  }
  begin_unit();
}

// The unit's request is claimed: send it now if a session is open, else when one is.
void Slot::begin_unit() {
  if (session_open()) {
    submit();
    return;
  }
  ++queued_;
  if (phase_ == Phase::idle) connect();
  // Otherwise a connection is on its way, or a GOAWAY'd one is draining (pump() then
  // reconnects for the queued requests).
}

// on_next: units whose request failed with their connection, or whose connection ended
// (--new-connection, --hold), start over; requests left queued get a new connection.
void Slot::restart_units() {
  unsigned restart = std::exchange(restart_, 0);
  for (unsigned i = 0; i < restart && phase_ != Phase::done; ++i) next_unit();
  if (phase_ == Phase::idle && queued_ > 0) connect();
  pump();
}

bool Slot::start_session() {
  nghttp2_session* session = nullptr;
  if (nghttp2_session_client_new(&session, worker_.h2_callbacks(), this) != 0) return false;
  h2_.reset(session);
  // No server push (we would only refuse it); a stream window that never paces a response.
  const std::array<nghttp2_settings_entry, 2> settings{{
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, kH2StreamWindow},
  }};
  if (nghttp2_submit_settings(h2_.get(), NGHTTP2_FLAG_NONE, settings.data(), settings.size()) !=
      0) {
    return false;
  }
  // The connection window is not a setting: it grows from 64 KiB with a WINDOW_UPDATE.
  return nghttp2_session_set_local_window_size(h2_.get(), NGHTTP2_FLAG_NONE, 0,
                                               kH2ConnectionWindow) == 0;
}

// BEV_EVENT_CONNECTED: the server must have selected h2; then the session starts and the
// queued requests go out with its preface.
void Slot::h2_connected() {
  tls_open_ = true;
  SSL* ssl = bufferevent_openssl_get_ssl(bev_.get());
  const unsigned char* protocol = nullptr;
  unsigned int length = 0;
  SSL_get0_alpn_selected(ssl, &protocol, &length);
  if (length != 2 || std::memcmp(protocol, "h2", 2) != 0) {
    std::string selected(reinterpret_cast<const char*>(protocol), length);
    control_.explain_once(ErrorKind::alpn, [&selected] {
      return selected.empty() ? std::string("the server selected no ALPN protocol (no h2)")
                              : "the server selected ALPN '" + selected + "', not h2";
    });
    fail_h2(ErrorKind::alpn);
    return;
  }
  handshake_unconfirmed_ = true;
  ++stats_.handshakes;
  if (SSL_session_reused(ssl)) ++stats_.resumed;
  if (!start_session()) {
    control_.explain_once(ErrorKind::io, [] { return "cannot start an HTTP/2 session"; });
    fail_h2(ErrorKind::io);
    return;
  }
  phase_ = Phase::waiting;
  for (unsigned queued = std::exchange(queued_, 0); queued > 0; --queued) submit();
  pump();
}

void Slot::submit() {
  Stream* stream = free_streams_.back();
  free_streams_.pop_back();
  *stream = Stream();
  stream->in_use = true;
  // --new-connection measures what a client without keep-alive waits: connect to last byte.
  stream->start = plan_.options.new_connection ? connect_start_ : Clock::now();
  const H2Request& request = plan_.h2_requests[worker_.pick_target()];
  nghttp2_data_provider body{};
  body.read_callback = on_h2_body;
  bool has_body = plan_.options.data_size.value_or(0) > 0;
  std::int32_t id = nghttp2_submit_request(h2_.get(), nullptr, request.nv.data(), request.nv.size(),
                                           has_body ? &body : nullptr, stream);
  ++in_flight_;
  if (id < 0) {
    // Stream IDs used up (2^30 requests on one connection) or out of memory: this request
    // fails, and the session takes no more (pump() retires it once its streams are done).
    control_.explain_once(ErrorKind::io, [id] {
      return std::string("nghttp2_submit_request: ") + nghttp2_strerror(id);
    });
    ++stats_.errors[static_cast<std::size_t>(ErrorKind::io)];
    stream->in_use = false;
    free_streams_.push_back(stream);
    --in_flight_;
    ++freed_;
    goaway_ = true;
    return;
  }
  stream->id = id;
  // One timer for all streams: it fires at the oldest one's deadline at the earliest.
  if (event_pending(timeout_event_.get(), EV_TIMEOUT, nullptr) == 0) {
    timeval timeout = to_timeval(plan_.options.timeout_s);
    event_add(timeout_event_.get(), &timeout);
  }
}

Slot::Stream* Slot::find_stream(std::int32_t id) {
  for (Stream& stream : streams_) {
    if (stream.in_use && stream.id == id) return &stream;
  }
  return nullptr;
}

void Slot::release_streams() {
  if (!h2_mode_) return;
  free_streams_.clear();
  for (Stream& stream : streams_) {
    stream.in_use = false;
    free_streams_.push_back(&stream);
  }
  in_flight_ = 0;
}

// A stream ended (inside an nghttp2 callback): count it; settle() restarts its unit.
void Slot::stream_closed(Stream& stream, std::uint32_t error_code) {
  stream.in_use = false;
  free_streams_.push_back(&stream);
  --in_flight_;
  ++freed_;
  if (stream.complete && stream.status != 0) {
    // A response complete before our request body was (the server answered early and reset
    // the rest with NO_ERROR, RFC 9113 section 8.1) counts as complete too.
    auto micros =
        std::chrono::duration_cast<std::chrono::microseconds>(stream.done - stream.start).count();
    stats_.latency.record(
        static_cast<std::uint32_t>(std::clamp<std::int64_t>(micros, 0, UINT32_MAX)));
    ++stats_.requests;
    ++stats_.status[stream.status];
    ++succeeded_;
    return;
  }
  ErrorKind kind = ErrorKind::malformed;
  if (stream.reset_by_peer) {
    kind = ErrorKind::reset;
    control_.explain_once(kind, [&stream] {
      return std::string("the server reset a stream: RST_STREAM ") +
             nghttp2_http2_strerror(stream.reset_code);
    });
  } else if (goaway_ && error_code == NGHTTP2_REFUSED_STREAM) {
    kind = ErrorKind::goaway;
    control_.explain_once(kind, [this] {
      return "the server's GOAWAY (" + std::string(nghttp2_http2_strerror(goaway_code_)) +
             ", last stream " + std::to_string(goaway_last_stream_) + ") refused a request";
    });
  } else {
    // nghttp2 closed the stream itself: the response broke HTTP/2's rules.
    control_.explain_once(kind, [this, error_code] {
      return std::string("HTTP/2 stream closed with ") + nghttp2_http2_strerror(error_code) +
             (h2_error_.empty() ? std::string() : ": " + h2_error_);
    });
  }
  ++stats_.errors[static_cast<std::size_t>(kind)];
}

int Slot::on_h2_header(nghttp2_session* session, const nghttp2_frame* frame,
                       const std::uint8_t* name, std::size_t name_length, const std::uint8_t* value,
                       std::size_t value_length, std::uint8_t, void* user_data) noexcept {
  auto* slot = static_cast<Slot*>(user_data);
  if (!slot->h2_ || frame->hd.type != NGHTTP2_HEADERS ||
      frame->headers.cat != NGHTTP2_HCAT_RESPONSE || name_length != 7 ||
      std::memcmp(name, ":status", 7) != 0) {
    return 0;
  }
  auto* stream =
      static_cast<Stream*>(nghttp2_session_get_stream_user_data(session, frame->hd.stream_id));
  // A 1xx response comes first with its own :status; the final one overwrites it.
  int status = 0;
  if (stream != nullptr &&
      parse_number(std::string_view(reinterpret_cast<const char*>(value), value_length), status)) {
    stream->status = status;
  }
  return 0;
}

int Slot::on_h2_frame_recv(nghttp2_session* session, const nghttp2_frame* frame,
                           void* user_data) noexcept {
  auto* slot = static_cast<Slot*>(user_data);
  if (!slot->h2_) return 0;
  switch (frame->hd.type) {
    case NGHTTP2_HEADERS:
    case NGHTTP2_DATA:
      if ((frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0) {
        auto* stream = static_cast<Stream*>(
            nghttp2_session_get_stream_user_data(session, frame->hd.stream_id));
        if (stream != nullptr && stream->status >= 200) {
          stream->complete = true;
          stream->done = Clock::now();
        }
      }
      break;
    case NGHTTP2_RST_STREAM:
      if (auto* stream = static_cast<Stream*>(
              nghttp2_session_get_stream_user_data(session, frame->hd.stream_id))) {
        stream->reset_by_peer = true;
        stream->reset_code = frame->rst_stream.error_code;
      }
      break;
    case NGHTTP2_GOAWAY:
      slot->goaway_ = true;
      slot->goaway_last_stream_ = frame->goaway.last_stream_id;
      slot->goaway_code_ = frame->goaway.error_code;
      break;
    default:
      break;
  }
  return 0;
}

// A request's HEADERS were never sent (after a GOAWAY, or the session was ending): nghttp2
// may close a stream it never opened without on_stream_close, so the unit is freed here.
int Slot::on_h2_frame_not_send(nghttp2_session*, const nghttp2_frame* frame, int error,
                               void* user_data) noexcept {
  auto* slot = static_cast<Slot*>(user_data);
  if (!slot->h2_ || frame->hd.type != NGHTTP2_HEADERS ||
      frame->headers.cat != NGHTTP2_HCAT_REQUEST) {
    return 0;
  }
  if (Stream* stream = slot->find_stream(frame->hd.stream_id)) {
    if (error == NGHTTP2_ERR_START_STREAM_NOT_ALLOWED) slot->goaway_ = true;
    slot->h2_error_ = nghttp2_strerror(error);
    slot->stream_closed(*stream, NGHTTP2_REFUSED_STREAM);
  }
  return 0;
}

int Slot::on_h2_stream_close(nghttp2_session*, std::int32_t stream_id, std::uint32_t error_code,
                             void* user_data) noexcept {
  auto* slot = static_cast<Slot*>(user_data);
  if (!slot->h2_) return 0;
  // By id, not stream_user_data: a stream already settled by on_h2_frame_not_send may be
  // closed again, and its Stream may be serving a newer request by then.
  if (Stream* stream = slot->find_stream(stream_id)) slot->stream_closed(*stream, error_code);
  return 0;
}

int Slot::on_h2_error(nghttp2_session*, int, const char* message, std::size_t length,
                      void* user_data) noexcept {
  static_cast<Slot*>(user_data)->h2_error_.assign(message, length);
  return 0;
}

// DATA for a request body (--data-size): 'x' bytes, as the HTTP/1.1 requests send.
ssize_t Slot::on_h2_body(nghttp2_session* session, std::int32_t stream_id, std::uint8_t* buf,
                         std::size_t length, std::uint32_t* data_flags, nghttp2_data_source*,
                         void* user_data) noexcept {
  auto* slot = static_cast<Slot*>(user_data);
  auto* stream = static_cast<Stream*>(nghttp2_session_get_stream_user_data(session, stream_id));
  if (stream == nullptr) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;  // resets the stream
  std::uint64_t size = slot->plan_.options.data_size.value_or(0);
  std::size_t take =
      static_cast<std::size_t>(std::min<std::uint64_t>(length, size - stream->body_sent));
  std::memset(buf, 'x', take);
  stream->body_sent += take;
  if (stream->body_sent == size) *data_flags |= NGHTTP2_DATA_FLAG_EOF;
  return static_cast<ssize_t>(take);
}

void Slot::handle_read_h2() {
  handshake_unconfirmed_ = false;
  evbuffer* input = bufferevent_get_input(bev_.get());
  std::size_t length = evbuffer_get_length(input);
  stats_.bytes_in += length;
  if (!h2_) {
    evbuffer_drain(input, length);
    return;
  }
  // Feed nghttp2 the buffer's chunks where they lie (no pullup copy).
  while (evbuffer_get_length(input) > 0) {
    std::array<evbuffer_iovec, 16> chunks{};
    int count = evbuffer_peek(input, -1, nullptr, chunks.data(), static_cast<int>(chunks.size()));
    std::size_t consumed = 0;
    for (int i = 0; i < std::min<int>(count, static_cast<int>(chunks.size())); ++i) {
      const evbuffer_iovec& chunk = chunks[static_cast<std::size_t>(i)];
      ssize_t result = nghttp2_session_mem_recv(
          h2_.get(), static_cast<const std::uint8_t*>(chunk.iov_base), chunk.iov_len);
      if (result < 0) {
        control_.explain_once(ErrorKind::malformed, [result] {
          return std::string("nghttp2_session_mem_recv: ") +
                 nghttp2_strerror(static_cast<int>(result));
        });
        fail_h2(ErrorKind::malformed);
        return;
      }
      consumed += chunk.iov_len;
    }
    evbuffer_drain(input, consumed);
  }
  pump();
}

void Slot::handle_event_h2(short events) {
  if (events & BEV_EVENT_CONNECTED) {
    h2_connected();
    return;
  }
  if (phase_ == Phase::holding) {
    // The server closed a held connection (not held_ok); the hold's timer goes on.
    drop_connection();
    return;
  }
  SSL* ssl = bufferevent_openssl_get_ssl(bev_.get());
  unsigned long tls_error = bufferevent_get_openssl_error(bev_.get());
  if (phase_ == Phase::handshaking &&
      ERR_GET_REASON(tls_error) == SSL_R_TLSV1_ALERT_NO_APPLICATION_PROTOCOL) {
    // A server that speaks no protocol we offered may refuse the handshake (RFC 7301 section
    // 3.2) instead of going on without ALPN: the same failure as a server choosing none.
    control_.explain_once(ErrorKind::alpn, [tls_error] {
      return "the server refused the handshake: " + tls_reason(tls_error) + " (no h2)";
    });
    fail_h2(ErrorKind::alpn);
  } else if (phase_ == Phase::handshaking || (handshake_unconfirmed_ && tls_error != 0)) {
    if (phase_ != Phase::handshaking) {
      // Counted at BEV_EVENT_CONNECTED, but the server refused it: not a handshake done.
      --stats_.handshakes;
      if (SSL_session_reused(ssl)) --stats_.resumed;
    }
    control_.explain_once(ErrorKind::tls_handshake, [tls_error] {
      return tls_error != 0 ? tls_reason(tls_error) : "connection closed by the peer";
    });
    fail_h2(ErrorKind::tls_handshake);
  } else if (in_flight_ == 0) {
    // An idle session closed (a server's idle timeout, or after its GOAWAY): nothing lost;
    // requests queued meanwhile get a new connection.
    fail_h2(ErrorKind::closed);
  } else if (events & BEV_EVENT_EOF) {
    control_.explain_once(ErrorKind::closed, [] {
      return "the server closed the connection with HTTP/2 streams in flight";
    });
    fail_h2(ErrorKind::closed);
  } else {
    explain_io_error(tls_error);
    fail_h2(ErrorKind::io);
  }
}

// One timer per slot: while connecting it is the connect deadline; with the session open it
// fires at (or after) the oldest stream's deadline. A stream past it means the connection is
// stuck: it is dropped, every stream in flight counted as a timeout.
void Slot::handle_timeout_h2() {
  if (phase_ == Phase::waiting) {
    std::optional<Clock::time_point> oldest;
    for (const Stream& stream : streams_) {
      if (stream.in_use && (!oldest || stream.start < *oldest)) oldest = stream.start;
    }
    if (!oldest) return;  // nothing in flight; the next submit() arms the timer
    auto deadline = *oldest + std::chrono::duration_cast<Clock::duration>(
                                  std::chrono::duration<double>(plan_.options.timeout_s));
    Clock::time_point now = Clock::now();
    if (deadline > now) {
      timeval wait = to_timeval(std::chrono::duration<double>(deadline - now).count());
      event_add(timeout_event_.get(), &wait);
      return;
    }
  } else if (phase_ != Phase::connecting && phase_ != Phase::handshaking) {
    return;
  }
  control_.explain_once(ErrorKind::timeout, [this] {
    return std::string("no complete response within --timeout, stuck ") +
           (phase_ == Phase::connecting    ? "connecting"
            : phase_ == Phase::handshaking ? "in the TLS handshake"
                                           : "waiting for HTTP/2 responses");
  });
  fail_h2(ErrorKind::timeout);
}

// The connection failed (or ended): every request it held fails with `kind`, except requests
// still queued on an open session (after a GOAWAY), which go to the next connection. The
// failed units start over on the next loop turn, as do HTTP/1.1's.
void Slot::fail_h2(ErrorKind kind) {
  if (phase_ == Phase::done) return;
  if (phase_ == Phase::holding) {
    drop_connection();  // the hold's timer goes on
    return;
  }
  bool had_session = phase_ == Phase::waiting;
  unsigned failed = in_flight_ + (had_session ? 0 : std::exchange(queued_, 0));
  stats_.errors[static_cast<std::size_t>(kind)] += failed;
  restart_ += failed + std::exchange(freed_, 0);
  succeeded_ = 0;
  event_del(timeout_event_.get());
  drop_connection();
  phase_ = Phase::idle;
  event_active(next_event_.get(), EV_TIMEOUT, 1);
}

// Runs the session after anything that may have advanced it (bytes read, a request submitted,
// the output drained): restarts units whose streams ended, retires a finished session, sends.
// Never re-entered: a unit started from within (Worker::slot_free -> begin) only submits.
void Slot::pump() {
  if (pumping_) return;
  pumping_ = true;
  while (h2_ && phase_ != Phase::done) {
    if (freed_ > 0) {
      settle();
      continue;
    }
    bool over =
        nghttp2_session_want_read(h2_.get()) == 0 && nghttp2_session_want_write(h2_.get()) == 0;
    if (phase_ == Phase::holding) {
      if (over) {
        drop_connection();
      } else {
        flush();
      }
      break;
    }
    if (over || (goaway_ && in_flight_ == 0)) {
      retire_session();
      break;
    }
    if (!flush() || freed_ == 0) break;
  }
  pumping_ = false;
}

// Units whose streams ended: --new-connection closes the connection, --hold holds it, else
// each unit goes on to its next request (submitted on this session when it can take it).
void Slot::settle() {
  unsigned done = std::exchange(freed_, 0);
  bool succeeded = std::exchange(succeeded_, 0) > 0;
  if (plan_.options.new_connection) {
    drop_connection();
    phase_ = Phase::idle;
    restart_ += done;
    event_active(next_event_.get(), EV_TIMEOUT, 1);
    return;
  }
  if (plan_.options.hold_s && succeeded) {
    enter_hold();  // --streams is 1 with --hold: `done` is this one unit
    return;
  }
  for (unsigned i = 0; i < done && phase_ != Phase::done; ++i) next_unit();
}

// Moves what nghttp2 has to send into the bufferevent's output; false when the session
// failed (the connection is dropped then).
bool Slot::flush() {
  evbuffer* output = bufferevent_get_output(bev_.get());
  while (evbuffer_get_length(output) < kH2OutputHighWater) {
    const std::uint8_t* data = nullptr;
    ssize_t length = nghttp2_session_mem_send(h2_.get(), &data);
    if (length < 0) {
      control_.explain_once(ErrorKind::io, [length] {
        return std::string("nghttp2_session_mem_send: ") +
               nghttp2_strerror(static_cast<int>(length));
      });
      fail_h2(ErrorKind::io);
      return false;
    }
    if (length == 0) break;
    evbuffer_add(output, data, static_cast<std::size_t>(length));
  }
  return true;
}

// The session is over (nghttp2 ended it after a protocol error of the server's) or drained
// after a GOAWAY: streams still in flight on it are lost (malformed); queued requests and
// those units start over on a new connection.
void Slot::retire_session() {
  if (in_flight_ > 0) {
    control_.explain_once(ErrorKind::malformed, [this] {
      return "the HTTP/2 session ended with streams in flight" +
             (h2_error_.empty() ? std::string() : ": " + h2_error_);
    });
  }
  stats_.errors[static_cast<std::size_t>(ErrorKind::malformed)] += in_flight_;
  restart_ += in_flight_;
  event_del(timeout_event_.get());
  drop_connection();
  phase_ = Phase::idle;
  if (restart_ > 0 || queued_ > 0) event_active(next_event_.get(), EV_TIMEOUT, 1);
}

// ---- Worker ----------------------------------------------------------------------------------

// precise: timers to the microsecond (timerfd) rather than epoll's millisecond, so that --rate
// spaces requests out instead of sending a millisecond's worth at once.
EventBasePtr make_event_base(bool precise) {
  if (!precise) return EventBasePtr(event_base_new());
  const proxy::EventConfigPtr config(event_config_new());
  if (!config) return nullptr;
  event_config_set_flag(config.get(), EVENT_BASE_FLAG_PRECISE_TIMER);
  return EventBasePtr(event_base_new_with_config(config.get()));
}

Worker::Worker(const Plan& plan, RunControl& control, unsigned slots, std::size_t latency_cap)
    : plan_(plan),
      control_(control),
      stats_(latency_cap),
      base_(make_event_base(plan.options.rate.has_value())),
      random_((std::uint64_t{std::random_device()()} << 32) ^ std::random_device()()) {
  if (!base_) return;
  tick_event_.reset(event_new(base_.get(), -1, EV_PERSIST, on_tick, this));
  deadline_event_.reset(evtimer_new(base_.get(), on_deadline, this));
  if (plan_.options.rate) {
    pace_event_.reset(evtimer_new(base_.get(), on_pace, this));
    rate_ = *plan_.options.rate * slots / plan_.options.connections;
  }
  if (plan_.options.h2) {
    nghttp2_session_callbacks* callbacks = nullptr;
    if (nghttp2_session_callbacks_new(&callbacks) != 0) return;
    h2_callbacks_.reset(callbacks);
    nghttp2_session_callbacks_set_on_header_callback(callbacks, Slot::on_h2_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, Slot::on_h2_frame_recv);
    nghttp2_session_callbacks_set_on_frame_not_send_callback(callbacks, Slot::on_h2_frame_not_send);
    nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, Slot::on_h2_stream_close);
    nghttp2_session_callbacks_set_error_callback2(callbacks, Slot::on_h2_error);
    // No on_data_chunk_recv: bodies are only counted (bytes_in); nghttp2 still sends the
    // WINDOW_UPDATEs for what it has read.
  }
  for (unsigned i = 0; i < slots; ++i) {
    slots_.push_back(std::make_unique<Slot>(*this, plan_, control_, stats_));
  }
}

void Worker::run() {
  timeval tick = to_timeval(std::chrono::duration<double>(kStopPoll).count());
  event_add(tick_event_.get(), &tick);
  if (plan_.options.duration_s) {
    timeval deadline = to_timeval(*plan_.options.duration_s);
    event_add(deadline_event_.get(), &deadline);
  }
  active_units_ = 0;
  for (const auto& slot : slots_) active_units_ += slot->units();
  // --ramp: slot i of n starts at i/n of the ramp, so that a server is not handed thousands
  // of handshakes at once (a one-worker server then times some of them out). Each worker
  // ramps its own slots over the whole time. --rate: each unit parks itself in free_slots_.
  double ramp = plan_.options.ramp_s.value_or(0);
  for (std::size_t i = 0; i < slots_.size(); ++i) {
    slots_[i]->start(ramp * static_cast<double>(i) / static_cast<double>(slots_.size()));
  }
  if (paced()) {
    pace_start_ = Clock::now();
    pace();
  }
  if (active_units_ > 0) event_base_dispatch(base_.get());
  finished_at_ = Clock::now();
  control_.finished_workers.fetch_add(1, std::memory_order_release);
}

void Worker::slot_free(Slot& slot) {
  if (backlog_ > 0 && !stopping_) {
    --backlog_;
    slot.begin();
  } else if (budget_spent_ || stopping_) {
    slot.finish();
  } else {
    free_slots_.push_back(&slot);
  }
}

// Starts every request due by now, then sleeps until the next one is.
void Worker::pace() {
  if (stopping_ || budget_spent_) return;
  double elapsed = std::chrono::duration<double>(Clock::now() - pace_start_).count();
  // Request k (from 0) is due at k / rate_: at t = 0 the first one is.
  auto due = static_cast<std::uint64_t>(elapsed * rate_) + 1;
  while (issued_ < due) {
    if (!control_.try_claim()) {
      budget_spent_ = true;
      break;
    }
    ++issued_;
    if (free_slots_.empty()) {
      ++backlog_;
      ++stats_.late;
      continue;
    }
    Slot* slot = free_slots_.back();
    free_slots_.pop_back();
    slot->begin();
  }
  if (budget_spent_) {
    // Busy units finish when they free up and the backlog is empty (slot_free).
    std::vector<Slot*> parked = std::move(free_slots_);
    free_slots_.clear();
    for (Slot* slot : parked) slot->finish();
    return;
  }
  double now = std::chrono::duration<double>(Clock::now() - pace_start_).count();
  timeval delay = to_timeval(std::max(0.0, static_cast<double>(issued_) / rate_ - now));
  event_add(pace_event_.get(), &delay);
}

void Worker::on_pace(evutil_socket_t, short, void* arg) noexcept {
  static_cast<Worker*>(arg)->pace();
}

void Worker::slot_finished() {
  if (--active_units_ == 0) event_base_loopbreak(base_.get());
}

void Worker::stop_all() {
  stopping_ = true;
  if (pace_event_) event_del(pace_event_.get());
  for (auto& slot : slots_) slot->abandon();
  event_base_loopbreak(base_.get());
}

void Worker::on_tick(evutil_socket_t, short, void* arg) noexcept {
  auto* worker = static_cast<Worker*>(arg);
  if (worker->control_.stop.load(std::memory_order_relaxed)) worker->stop_all();
}

void Worker::on_deadline(evutil_socket_t, short, void* arg) noexcept {
  static_cast<Worker*>(arg)->stop_all();
}

int on_new_session(SSL* ssl, SSL_SESSION* session) noexcept {
  auto* slot = static_cast<Slot*>(SSL_get_app_data(ssl));
  if (slot == nullptr) return 0;
  slot->keep_session(SslSessionPtr(session));
  return 1;  // we keep the reference OpenSSL handed us
}

// ---- Setup -----------------------------------------------------------------------------------

void usage(std::FILE* out) {
  std::fprintf(
      out,
      "usage: cmsfront-load [options] URL        (URL: https://host:port/path?query or http://)\n"
      "  -n N              total requests (default 10000); failed attempts count too\n"
      "  -c C              concurrent connections (default 10); the descriptor limit is\n"
      "                    raised to its hard limit, and a C beyond that exits 1\n"
      "  --h2              HTTP/2 over TLS (ALPN h2 only; a server that does not select it\n"
      "                    fails each attempt with the error kind alpn)\n"
      "  --streams M       --h2: concurrent requests per connection (default 1); in flight: C*M\n"
      "  --hold S          after a connection's first response, keep it open and idle for S\n"
      "                    seconds, then close it (the slot goes on with a new connection);\n"
      "                    the summary counts held and held_ok (still open when the hold ended)\n"
      "  --ramp S          start the C connections evenly over S seconds, not all at once\n"
      "  -t THREADS        worker threads, connections split evenly (default 1)\n"
      "  --duration S      run for S seconds instead of -n (requests in flight then are dropped)\n"
      "  --new-connection  one request per connection (a handshake each; latency from connect)\n"
      "  --resume          resume the TLS session (ticket) of the slot's previous connection\n"
      "  --cert FILE       client certificate PEM: leaf first, then the chain to send\n"
      "  --key FILE        private key PEM (default: the --cert file)\n"
      "  --cacert FILE     verify the server against this CA file (default: no verification)\n"
      "  --header 'Name: value'  extra request header (repeatable)\n"
      "  --method M        request method (default GET)\n"
      "  --data-size BYTES send a body of BYTES 'x' with Content-Length\n"
      "  --tls12 | --tls13 pin the protocol version\n"
      "  --timeout S       per-request timeout in seconds, connect included (default 30)\n"
      "  --urls FILE       request-targets (/path?query), one a line ('#' comments); each\n"
      "                    request picks one at random, the URL gives only scheme/host/port\n"
      "  --rate R          open loop: R requests/s in all (a request due while every\n"
      "                    connection is busy is counted late and sent when one frees up)\n"
      "  --json            print the summary as one JSON object\n"
      "Exit status: 0 when it ran (errors included), 1 when it could not start, 64 usage.\n");
}

enum class OptionValue : std::uint8_t { ok, bad, unknown_option };

// One option that takes a value.
OptionValue apply_option(std::string_view arg, std::string_view value, Options& options) {
  bool ok = true;
  double seconds = 0;
  if (arg == "-n") {
    ok = parse_number(value, options.requests) && options.requests > 0;
  } else if (arg == "-c") {
    ok = parse_number(value, options.connections) && options.connections > 0 &&
         options.connections <= 1'000'000;
  } else if (arg == "-t") {
    ok = parse_number(value, options.threads) && options.threads > 0 && options.threads <= 1024;
  } else if (arg == "--duration") {
    ok = parse_seconds(value, seconds);
    options.duration_s = seconds;
  } else if (arg == "--timeout") {
    ok = parse_seconds(value, seconds);
    options.timeout_s = seconds;
  } else if (arg == "--urls") {
    ok = !value.empty();
    options.urls_file = value;
  } else if (arg == "--rate") {
    ok = parse_seconds(value, seconds);  // the same range: (0, 1e6)
    options.rate = seconds;
  } else if (arg == "--cert") {
    options.cert_file = value;
  } else if (arg == "--key") {
    options.key_file = value;
  } else if (arg == "--cacert") {
    options.ca_file = value;
  } else if (arg == "--header") {
    std::size_t colon = value.find(':');
    ok = colon != std::string_view::npos && is_token(value.substr(0, colon)) &&
         value.find_first_of(std::string_view("\r\n\0", 3)) == std::string_view::npos;
    options.headers.emplace_back(value);
  } else if (arg == "--method") {
    ok = is_token(value);
    options.method = value;
  } else if (arg == "--streams") {
    ok = parse_number(value, options.streams) && options.streams > 0 && options.streams <= 100'000;
  } else if (arg == "--hold") {
    ok = parse_seconds(value, seconds);
    options.hold_s = seconds;
  } else if (arg == "--ramp") {
    ok = parse_seconds(value, seconds);
    options.ramp_s = seconds;
  } else if (arg == "--data-size") {
    std::uint64_t size = 0;
    ok = parse_number(value, size) && size <= (std::uint64_t{1} << 32);
    options.data_size = size;
  } else {
    return OptionValue::unknown_option;
  }
  return ok ? OptionValue::ok : OptionValue::bad;
}

// Parses argv strictly; nullopt (after a message for bad values) means exit 64.
std::optional<Options> parse_options(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--new-connection") {
      options.new_connection = true;
    } else if (arg == "--resume") {
      options.resume = true;
    } else if (arg == "--json") {
      options.json = true;
    } else if (arg == "--h2") {
      options.h2 = true;
    } else if (arg == "--tls12" || arg == "--tls13") {
      options.tls_version = arg == "--tls12" ? TLS1_2_VERSION : TLS1_3_VERSION;
    } else if (arg.empty() || arg[0] != '-') {
      if (!options.url.empty()) return std::nullopt;
      options.url = arg;
    } else {
      if (i + 1 >= argc) return std::nullopt;
      OptionValue result = apply_option(arg, argv[++i], options);
      if (result == OptionValue::unknown_option) return std::nullopt;
      if (result == OptionValue::bad) {
        std::fprintf(stderr, "cmsfront-load: bad value for %s: %s\n", argv[i - 1], argv[i]);
        return std::nullopt;
      }
    }
  }
  if (options.url.empty()) return std::nullopt;
  // --streams: only HTTP/2 multiplexes; one request per connection leaves nothing to
  // multiplex, and a held connection makes one request.
  const char* conflict = nullptr;
  if (options.streams > 1 && !options.h2) conflict = "--streams needs --h2";
  if (options.streams > 1 && options.new_connection) conflict = "--streams with --new-connection";
  if (options.streams > 1 && options.hold_s) conflict = "--streams with --hold";
  if (options.hold_s && options.new_connection) conflict = "--hold with --new-connection";
  if (conflict != nullptr) {
    std::fprintf(stderr, "cmsfront-load: %s: no such combination\n", conflict);
    return std::nullopt;
  }
  return options;
}

bool valid_target(std::string_view target) {
  return target.starts_with('/') && std::none_of(target.begin(), target.end(), [](char c) {
           return static_cast<unsigned char>(c) <= ' ' || c == 0x7f;
         });
}

// The --urls file's request-targets; nullopt after printing why.
std::optional<std::vector<std::string>> load_targets(const std::string& file) {
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> in(std::fopen(file.c_str(), "re"), std::fclose);
  if (!in) {
    std::fprintf(stderr, "cmsfront-load: cannot read --urls %s: %s\n", file.c_str(),
                 std::strerror(errno));
    return std::nullopt;
  }
  std::vector<std::string> targets;
  std::string line;
  int number = 0;
  for (int c = 0; c != EOF;) {
    line.clear();
    while ((c = std::fgetc(in.get())) != EOF && c != '\n') line.push_back(static_cast<char>(c));
    if (c == EOF && line.empty()) break;
    ++number;
    std::string_view target = trim(line);
    if (target.ends_with('\r')) target = trim(target.substr(0, target.size() - 1));
    if (target.empty() || target.starts_with('#')) continue;
    if (!valid_target(target)) {
      std::fprintf(stderr,
                   "cmsfront-load: %s:%d: not a request-target (/path?query, no spaces or "
                   "control bytes)\n",
                   file.c_str(), number);
      return std::nullopt;
    }
    targets.emplace_back(target);
  }
  if (std::ferror(in.get())) {
    std::fprintf(stderr, "cmsfront-load: cannot read --urls %s: %s\n", file.c_str(),
                 std::strerror(errno));
    return std::nullopt;
  }
  if (targets.empty()) {
    std::fprintf(stderr, "cmsfront-load: %s: no request-targets\n", file.c_str());
    return std::nullopt;
  }
  return targets;
}

std::optional<Url> parse_url(std::string_view text) {
  Url url;
  if (text.starts_with("https://")) {
    url.tls = true;
    url.port = 443;
    text.remove_prefix(8);
  } else if (text.starts_with("http://")) {
    url.port = 80;
    text.remove_prefix(7);
  } else {
    return std::nullopt;
  }
  std::size_t end = text.find_first_of("/?#");
  std::string_view authority = text.substr(0, end);
  std::string_view target = end == std::string_view::npos ? "" : text.substr(end);
  target = target.substr(0, target.find('#'));
  if (authority.empty() || authority.find('@') != std::string_view::npos) return std::nullopt;
  url.authority = authority;
  url.target =
      target.empty() || target.front() == '?' ? "/" + std::string(target) : std::string(target);
  if (std::any_of(url.target.begin(), url.target.end(),
                  [](char c) { return static_cast<unsigned char>(c) <= ' ' || c == 0x7f; })) {
    return std::nullopt;
  }
  std::string_view port;
  if (authority.front() == '[') {
    std::size_t close = authority.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    url.host = authority.substr(1, close - 1);
    std::string_view after = authority.substr(close + 1);
    if (!after.empty() && after.front() != ':') return std::nullopt;
    if (!after.empty()) port = after.substr(1);
    if (after.empty()) return url.host.empty() ? std::nullopt : std::optional(url);
  } else {
    std::size_t colon = authority.rfind(':');
    url.host = authority.substr(0, colon);
    if (colon == std::string_view::npos)
      return url.host.empty() ? std::nullopt : std::optional(url);
    port = authority.substr(colon + 1);
  }
  if (url.host.empty() || !parse_number(port, url.port) || url.port == 0) return std::nullopt;
  return url;
}

// Every queued OpenSSL error, oldest first (the oldest is often the useful one: "No such
// file or directory" under "system lib").
std::string openssl_error() {
  std::string text;
  while (unsigned long code = ERR_get_error()) {
    text += (text.empty() ? "" : "; ") + tls_reason(code);
  }
  return text.empty() ? std::string("unknown error") : text;
}

// The one SSL_CTX of the run: certificate, chain and key loaded once, shared by every thread.
// Returns null after printing why.
SslCtxPtr make_ssl_ctx(const Options& options, const Url& url) {
  SslCtxPtr ctx(SSL_CTX_new(TLS_client_method()));
  if (!ctx) {
    std::fprintf(stderr, "cmsfront-load: SSL_CTX_new: %s\n", openssl_error().c_str());
    return nullptr;
  }
  if (options.tls_version != 0) {
    SSL_CTX_set_min_proto_version(ctx.get(), options.tls_version);
    SSL_CTX_set_max_proto_version(ctx.get(), options.tls_version);
  }
  // See Slot::connected: a close without close_notify is an EOF, not a fatal error (which
  // would also make the session non-resumable).
  SSL_CTX_set_options(ctx.get(), SSL_OP_IGNORE_UNEXPECTED_EOF);
  // Send exactly the certificates in the --cert file: no chain built per handshake from the
  // --cacert store (which would also cost a chain verification on every connection).
  SSL_CTX_set_mode(ctx.get(), SSL_MODE_NO_AUTO_CHAIN);
  // --hold keeps thousands of connections idle: give their TLS record buffers (about 34 KiB
  // each) back while idle, so that the load generator's memory does not limit the count.
  // Busy connections keep theirs (no allocation per record).
  if (options.hold_s) SSL_CTX_set_mode(ctx.get(), SSL_MODE_RELEASE_BUFFERS);
  // One protocol offered, so that a server's choice can never be the other one.
  static constexpr unsigned char kAlpnHttp1[] = "\x08http/1.1";
  static constexpr unsigned char kAlpnH2[] = "\x02h2";
  if (options.h2) {
    SSL_CTX_set_alpn_protos(ctx.get(), kAlpnH2, sizeof kAlpnH2 - 1);
  } else {
    SSL_CTX_set_alpn_protos(ctx.get(), kAlpnHttp1, sizeof kAlpnHttp1 - 1);
  }
  if (!options.cert_file.empty()) {
    // The file's first certificate is the leaf; the rest go out as its chain, in file order
    // (a grid proxy file: proxy, its key, then the user certificate).
    const std::string& key = options.key_file.empty() ? options.cert_file : options.key_file;
    if (SSL_CTX_use_certificate_chain_file(ctx.get(), options.cert_file.c_str()) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx.get(), key.c_str(), SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx.get()) != 1) {
      std::fprintf(stderr, "cmsfront-load: cannot load client certificate %s / key %s: %s\n",
                   options.cert_file.c_str(), key.c_str(), openssl_error().c_str());
      return nullptr;
    }
  }
  if (!options.ca_file.empty()) {
    if (SSL_CTX_load_verify_locations(ctx.get(), options.ca_file.c_str(), nullptr) != 1) {
      std::fprintf(stderr, "cmsfront-load: cannot load CA file %s: %s\n", options.ca_file.c_str(),
                   openssl_error().c_str());
      return nullptr;
    }
    X509_VERIFY_PARAM* param = SSL_CTX_get0_param(ctx.get());
    if (X509_VERIFY_PARAM_set1_ip_asc(param, url.host.c_str()) != 1) {
      X509_VERIFY_PARAM_set1_host(param, url.host.c_str(), url.host.size());
    }
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  } else {
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_NONE, nullptr);
  }
  if (options.resume) {
    // Sessions live in their slots (Slot::keep_session), not in OpenSSL's client cache.
    SSL_CTX_set_session_cache_mode(ctx.get(),
                                   SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx.get(), on_new_session);
  }
  return ctx;
}

bool has_header(const Options& options, std::string_view name) {
  return std::any_of(options.headers.begin(), options.headers.end(), [&](const std::string& h) {
    return equals_ignore_case(std::string_view(h).substr(0, h.find(':')), name);
  });
}

std::string build_request(const Options& options, const Url& url, std::string_view target) {
  std::string request = options.method + " " + std::string(target) + " HTTP/1.1\r\n";
  if (!has_header(options, "host")) request += "Host: " + url.authority + "\r\n";
  if (!has_header(options, "user-agent")) request += "User-Agent: cmsfront-load\r\n";
  for (const std::string& header : options.headers) request += header + "\r\n";
  if (options.new_connection && !has_header(options, "connection")) {
    request += "Connection: close\r\n";
  }
  if (options.data_size) {
    request += "Content-Length: " + std::to_string(*options.data_size) + "\r\n";
  }
  request += "\r\n";
  if (options.data_size) request.append(*options.data_size, 'x');
  return request;
}

std::string lowercase(std::string_view text) {
  std::string lower(text);
  for (char& c : lower) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + ('a' - 'A'));
  }
  return lower;
}

// The HTTP/2 form of build_request: pseudo-headers first, names lowercase, no connection-
// specific fields (RFC 9113 section 8.2.2: a server must treat them as malformed); a --header
// Host becomes :authority.
H2Request build_h2_request(const Options& options, const Url& url, std::string_view target) {
  H2Request request;
  std::string authority = url.authority;
  std::vector<std::pair<std::string, std::string>> headers;
  for (const std::string& header : options.headers) {
    std::size_t colon = header.find(':');
    std::string name = lowercase(std::string_view(header).substr(0, colon));
    std::string value(trim(std::string_view(header).substr(colon + 1)));
    if (name == "host") {
      authority = value;
    } else if (name != "connection" && name != "keep-alive" && name != "proxy-connection" &&
               name != "transfer-encoding" && name != "upgrade" &&
               (name != "te" || value == "trailers")) {
      headers.emplace_back(std::move(name), std::move(value));
    }
  }
  request.fields = {{":method", options.method},
                    {":scheme", url.tls ? "https" : "http"},
                    {":authority", authority},
                    {":path", std::string(target)}};
  if (!has_header(options, "user-agent"))
    request.fields.emplace_back("user-agent", "cmsfront-load");
  for (auto& header : headers) request.fields.push_back(std::move(header));
  if (options.data_size) {
    request.fields.emplace_back("content-length", std::to_string(*options.data_size));
  }
  // Built last: fields no longer moves.
  for (auto& [name, value] : request.fields) {
    request.nv.push_back({reinterpret_cast<std::uint8_t*>(name.data()),
                          reinterpret_cast<std::uint8_t*>(value.data()), name.size(), value.size(),
                          NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE});
  }
  return request;
}

// ---- Summary ---------------------------------------------------------------------------------

struct Summary {
  std::uint64_t requests = 0;
  std::array<std::uint64_t, kErrorNames.size()> errors{};
  std::map<int, std::uint64_t> status;
  std::uint64_t handshakes = 0;
  std::uint64_t resumed = 0;
  std::uint64_t bytes_in = 0;
  std::uint64_t late = 0;
  std::uint64_t held = 0;
  std::uint64_t held_ok = 0;
  std::optional<double> hold_s;  // --hold, as asked
  const char* protocol = "http/1.1";
  std::size_t urls = 0;
  std::optional<double> rate;  // --rate, as asked
  double elapsed_s = 0;
  std::array<double, 5> latency_ms{};  // min, p50, p90, p99, max
};

Summary summarize(const std::vector<std::unique_ptr<Worker>>& workers, double elapsed_s) {
  Summary summary;
  summary.elapsed_s = elapsed_s;
  std::vector<const LatencySampler*> samplers;
  std::uint32_t min = UINT32_MAX;
  std::uint32_t max = 0;
  for (const auto& worker : workers) {
    const Stats& stats = worker->stats();
    summary.requests += stats.requests;
    for (std::size_t i = 0; i < stats.errors.size(); ++i) summary.errors[i] += stats.errors[i];
    for (const auto& [code, count] : stats.status) summary.status[code] += count;
    summary.handshakes += stats.handshakes;
    summary.resumed += stats.resumed;
    summary.bytes_in += stats.bytes_in;
    summary.late += stats.late;
    summary.held += stats.held;
    summary.held_ok += stats.held_ok;
    samplers.push_back(&stats.latency);
    if (stats.latency.count() > 0) {
      min = std::min(min, stats.latency.min());
      max = std::max(max, stats.latency.max());
    }
  }
  std::vector<std::uint32_t> samples = LatencySampler::merge(samplers);
  if (samples.empty()) return summary;
  std::sort(samples.begin(), samples.end());
  // Nearest rank: the smallest sample with at least p of all samples at or below it.
  auto percentile = [&](double p) {
    auto rank = static_cast<std::size_t>(std::ceil(p * static_cast<double>(samples.size())));
    return samples[std::clamp<std::size_t>(rank, 1, samples.size()) - 1] / 1000.0;
  };
  summary.latency_ms = {min / 1000.0, percentile(0.5), percentile(0.9), percentile(0.99),
                        max / 1000.0};
  return summary;
}

double rate(std::uint64_t count, double seconds) {
  return seconds > 0 ? static_cast<double>(count) / seconds : 0.0;
}

std::uint64_t failures_total(const Summary& s) {
  std::uint64_t failed = 0;
  for (std::uint64_t count : s.errors) failed += count;
  return failed;
}

void print_json(const Summary& s) {
  std::printf("{\"requests\":%llu,\"errors\":{", static_cast<unsigned long long>(s.requests));
  for (std::size_t i = 0; i < kErrorNames.size(); ++i) {
    std::printf("%s\"%s\":%llu", i == 0 ? "" : ",", kErrorNames[i].data(),
                static_cast<unsigned long long>(s.errors[i]));
  }
  std::printf("},\"status\":{");
  bool first = true;
  for (const auto& [code, count] : s.status) {
    std::printf("%s\"%d\":%llu", first ? "" : ",", code, static_cast<unsigned long long>(count));
    first = false;
  }
  const auto& l = s.latency_ms;
  std::printf(
      "},\"elapsed_s\":%.3f,\"rps\":%.1f,\"handshakes\":%llu,\"resumed\":%llu,"
      "\"latency_ms\":{\"min\":%.3f,\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,\"max\":%.3f},"
      "\"bytes_in\":%llu,\"failures_total\":%llu,\"urls\":%zu,\"late\":%llu,"
      "\"protocol\":\"%s\",\"held\":%llu,\"held_ok\":%llu}\n",
      s.elapsed_s, rate(s.requests, s.elapsed_s), static_cast<unsigned long long>(s.handshakes),
      static_cast<unsigned long long>(s.resumed), l[0], l[1], l[2], l[3], l[4],
      static_cast<unsigned long long>(s.bytes_in),
      static_cast<unsigned long long>(failures_total(s)), s.urls,
      static_cast<unsigned long long>(s.late), s.protocol, static_cast<unsigned long long>(s.held),
      static_cast<unsigned long long>(s.held_ok));
}

void print_text(const Summary& s) {
  std::uint64_t failed = failures_total(s);
  std::printf("requests:   %llu completed, %llu failed\n",
              static_cast<unsigned long long>(s.requests), static_cast<unsigned long long>(failed));
  std::printf("errors:    ");
  for (std::size_t i = 0; i < kErrorNames.size(); ++i) {
    if (s.errors[i] > 0) {
      std::printf(" %s %llu", kErrorNames[i].data(), static_cast<unsigned long long>(s.errors[i]));
    }
  }
  std::printf("%s\nstatus:    ", failed == 0 ? " none" : "");
  for (const auto& [code, count] : s.status) {
    std::printf(" %d: %llu", code, static_cast<unsigned long long>(count));
  }
  const auto& l = s.latency_ms;
  std::printf(
      "\nprotocol:   %s\n"
      "elapsed:    %.3f s\n"
      "rps:        %.1f\n"
      "tls:        %llu handshakes (%.1f/s), %llu resumed\n"
      "latency ms: min %.3f  p50 %.3f  p90 %.3f  p99 %.3f  max %.3f\n"
      "bytes in:   %llu\n"
      "urls:       %zu\n",
      s.protocol, s.elapsed_s, rate(s.requests, s.elapsed_s),
      static_cast<unsigned long long>(s.handshakes), rate(s.handshakes, s.elapsed_s),
      static_cast<unsigned long long>(s.resumed), l[0], l[1], l[2], l[3], l[4],
      static_cast<unsigned long long>(s.bytes_in), s.urls);
  if (s.rate) {
    std::printf("late:       %llu (due while every connection was busy; asked %.1f/s)\n",
                static_cast<unsigned long long>(s.late), *s.rate);
  }
  if (s.hold_s) {
    std::printf("held:       %llu connections for %.3f s, %llu still open when the hold ended\n",
                static_cast<unsigned long long>(s.held), *s.hold_s,
                static_cast<unsigned long long>(s.held_ok));
  }
}

// Resolves the URL's host to its first address; false after printing why.
bool resolve(const Url& url, Plan& plan) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  int error = getaddrinfo(url.host.c_str(), std::to_string(url.port).c_str(), &hints, &found);
  std::unique_ptr<addrinfo, AddrinfoDeleter> result(found);
  if (error != 0 || !result) {
    std::fprintf(stderr, "cmsfront-load: cannot resolve %s: %s\n", url.host.c_str(),
                 gai_strerror(error));
    return false;
  }
  std::memcpy(&plan.address, result->ai_addr, result->ai_addrlen);
  plan.address_length = result->ai_addrlen;
  return true;
}

// A descriptor per connection (two for a moment while one is retired): lift the soft limit to
// the hard one, and refuse to start when even that cannot hold every connection (thousands of
// connects failing with EMFILE would read as the server's failures). False after saying why.
bool raise_file_limit(unsigned connections) {
  rlimit files{};
  if (getrlimit(RLIMIT_NOFILE, &files) != 0) return true;  // unknown: let connects tell
  if (files.rlim_cur < files.rlim_max) {
    rlimit raised = files;
    raised.rlim_cur = files.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0) files = raised;
  }
  rlim_t needed = static_cast<rlim_t>(connections) + kSpareDescriptors;
  if (files.rlim_cur != RLIM_INFINITY && files.rlim_cur < needed) {
    std::fprintf(stderr,
                 "cmsfront-load: -c %u needs about %llu file descriptors, but RLIMIT_NOFILE "
                 "allows %llu (hard limit %llu); raise it (ulimit -Hn, LimitNOFILE=) or use "
                 "fewer connections\n",
                 connections, static_cast<unsigned long long>(needed),
                 static_cast<unsigned long long>(files.rlim_cur),
                 static_cast<unsigned long long>(files.rlim_max));
    return false;
  }
  return true;
}

// Runs the workers to the end of the run and prints the summary; the exit status.
int run(const Plan& plan) {
  RunControl control;
  control.unlimited = plan.options.duration_s.has_value();
  control.budget = static_cast<std::int64_t>(
      std::min<std::uint64_t>(plan.options.requests, std::uint64_t{1} << 62));

  // SIGINT/SIGTERM end the run early with a summary: blocked here (and so in every worker
  // thread), taken by the sigtimedwait below. SIGPIPE: a dead peer is an error, not a kill.
  std::signal(SIGPIPE, SIG_IGN);
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  if (!raise_file_limit(plan.options.connections)) return kExitCannotStart;

  unsigned threads = std::min(plan.options.threads, plan.options.connections);
  std::vector<std::unique_ptr<Worker>> workers;
  for (unsigned i = 0; i < threads; ++i) {
    unsigned slots = plan.options.connections / threads + (i < plan.options.connections % threads);
    workers.push_back(std::make_unique<Worker>(plan, control, slots, kMaxLatencySamples / threads));
    if (!workers.back()->ready()) {
      std::fprintf(stderr, "cmsfront-load: cannot create an event loop\n");
      return kExitCannotStart;
    }
  }

  Clock::time_point start = Clock::now();
  {
    std::vector<std::jthread> running;
    for (auto& worker : workers) running.emplace_back([w = worker.get()] { w->run(); });
    timespec poll{0, std::chrono::nanoseconds(kStopPoll).count()};
    while (control.finished_workers.load(std::memory_order_acquire) < workers.size()) {
      if (sigtimedwait(&stop_signals, nullptr, &poll) > 0) control.stop = true;
    }
  }  // joins the threads
  Clock::time_point end = start;
  for (const auto& worker : workers) end = std::max(end, worker->finished_at());

  Summary summary = summarize(workers, std::chrono::duration<double>(end - start).count());
  summary.urls = plan.requests.size();
  summary.rate = plan.options.rate;
  summary.hold_s = plan.options.hold_s;
  summary.protocol = plan.options.h2 ? "h2" : "http/1.1";
  if (plan.options.json) {
    print_json(summary);
  } else {
    print_text(summary);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::string_view(argv[i]) == "-h" || std::string_view(argv[i]) == "--help") {
      usage(stdout);
      return 0;
    }
  }
  std::optional<Options> options = parse_options(argc, argv);
  std::optional<Url> url = options ? parse_url(options->url) : std::nullopt;
  if (options && !url) std::fprintf(stderr, "cmsfront-load: bad URL: %s\n", options->url.c_str());
  if (url && !url->tls &&
      (!options->cert_file.empty() || !options->ca_file.empty() || options->resume ||
       options->tls_version != 0)) {
    std::fprintf(stderr, "cmsfront-load: TLS options need an https:// URL\n");
    url.reset();
  }
  if (url && !url->tls && options->h2) {
    std::fprintf(stderr, "cmsfront-load: --h2 needs an https:// URL (h2 over TLS only)\n");
    url.reset();
  }
  if (!options || !url) {
    usage(stderr);
    return kExitUsage;
  }
  std::vector<std::string> targets{url->target};
  if (!options->urls_file.empty()) {
    std::optional<std::vector<std::string>> loaded = load_targets(options->urls_file);
    if (!loaded) return kExitUsage;
    targets = std::move(*loaded);
  }
  Plan plan;
  plan.options = std::move(*options);
  plan.url = std::move(*url);
  if (!resolve(plan.url, plan)) return kExitCannotStart;
  SslCtxPtr ssl_ctx;  // outlives the workers, which run inside run()
  if (plan.url.tls) {
    ssl_ctx = make_ssl_ctx(plan.options, plan.url);
    if (!ssl_ctx) return kExitCannotStart;
    plan.ssl_ctx = ssl_ctx.get();
  }
  for (const std::string& target : targets) {
    plan.requests.push_back(build_request(plan.options, plan.url, target));
    if (plan.options.h2)
      plan.h2_requests.push_back(build_h2_request(plan.options, plan.url, target));
  }
  plan.head_request = plan.options.method == "HEAD";
  return run(plan);
}
