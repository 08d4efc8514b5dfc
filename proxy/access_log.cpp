#include "proxy/access_log.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>

#include <sys/eventfd.h>
#include <unistd.h>
#include <chrono>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <ctime>
#include <string_view>
#include <system_error>

namespace proxy {
namespace {

// ---- formatting helpers ---------------------------------------------------------------------

void append_uint(std::string& out, std::uint64_t value) {
  char digits[20];
  auto [end, ec] = std::to_chars(digits, digits + sizeof digits, value);
  out.append(digits, end);
}

// Zero-padded to `width` digits (more if the value needs them); the value is a calendar field
// or a microsecond count, never negative.
void append_padded(std::string& out, std::int64_t value, int width) {
  char digits[20];
  auto [end, ec] = std::to_chars(digits, digits + sizeof digits, value);
  for (auto n = end - digits; n < width; ++n) out.push_back('0');
  out.append(digits, end);
}

constexpr char kHex[] = "0123456789abcdef";

struct WallTime {
  std::tm tm{};
  std::int64_t micros = 0;  // 0..999999
};

WallTime to_utc(std::int64_t unix_us) {
  // Floor division: a (never expected) negative time still yields a valid date.
  std::int64_t seconds = unix_us / 1000000;
  std::int64_t micros = unix_us % 1000000;
  if (micros < 0) {
    micros += 1000000;
    --seconds;
  }
  WallTime t;
  const std::time_t as_time = static_cast<std::time_t>(seconds);
  gmtime_r(&as_time, &t.tm);
  t.micros = micros;
  return t;
}

// Apache's %t, always in UTC: "[29/Nov/2026:01:02:03 +0000]". Month names are fixed English,
// independent of the locale, as log parsers expect.
void append_apache_time(std::string& out, std::int64_t unix_us) {
  static constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  const WallTime t = to_utc(unix_us);
  out.push_back('[');
  append_padded(out, t.tm.tm_mday, 2);
  out.push_back('/');
  out.append(kMonths[t.tm.tm_mon]);
  out.push_back('/');
  append_padded(out, t.tm.tm_year + 1900, 4);
  out.push_back(':');
  append_padded(out, t.tm.tm_hour, 2);
  out.push_back(':');
  append_padded(out, t.tm.tm_min, 2);
  out.push_back(':');
  append_padded(out, t.tm.tm_sec, 2);
  out.append(" +0000]");
}

// RFC 3339 in UTC with microseconds: "2026-11-29T01:02:03.123456Z".
void append_rfc3339(std::string& out, std::int64_t unix_us) {
  const WallTime t = to_utc(unix_us);
  append_padded(out, t.tm.tm_year + 1900, 4);
  out.push_back('-');
  append_padded(out, t.tm.tm_mon + 1, 2);
  out.push_back('-');
  append_padded(out, t.tm.tm_mday, 2);
  out.push_back('T');
  append_padded(out, t.tm.tm_hour, 2);
  out.push_back(':');
  append_padded(out, t.tm.tm_min, 2);
  out.push_back(':');
  append_padded(out, t.tm.tm_sec, 2);
  out.push_back('.');
  append_padded(out, t.micros, 6);
  out.push_back('Z');
}

// Apache's ap_escape_logitem(): '"' and '\' get a backslash; \b \n \r \t \v their C escapes;
// every other control byte, DEL and every byte >= 0x80 becomes \xhh (lowercase, as Apache's
// c2x()). UTF-8 in a DN or a URL is therefore logged escaped, byte by byte, exactly as the
// Apache front-ends did, which keeps the line one line of printable ASCII whatever the client
// sent. An empty value is logged as "-", Apache's mark for "absent".
//
// An item outside quotes (%v, %a, SSL protocol and cipher) must not contain a space either, or
// it would split into two fields: there `bare` also turns ' ' into \x20. Apache never needed
// this because its %v was the configured ServerName, not the client's Host header.
enum class Quoting : bool { quoted, bare };
void append_log_item(std::string& out, std::string_view value, Quoting quoting = Quoting::quoted) {
  if (value.empty()) {
    out.push_back('-');
    return;
  }
  for (const char ch : value) {
    const auto byte = static_cast<unsigned char>(ch);
    const bool plain = byte > 0x20 && byte < 0x7f && byte != '"' && byte != '\\';
    if (plain || (byte == ' ' && quoting == Quoting::quoted)) {
      out.push_back(ch);
      continue;
    }
    out.push_back('\\');
    switch (byte) {
      case '\b':
        out.push_back('b');
        break;
      case '\n':
        out.push_back('n');
        break;
      case '\r':
        out.push_back('r');
        break;
      case '\t':
        out.push_back('t');
        break;
      case '\v':
        out.push_back('v');
        break;
      case '"':
      case '\\':
        out.push_back(ch);
        break;
      default:
        out.push_back('x');
        out.push_back(kHex[byte >> 4]);
        out.push_back(kHex[byte & 0xf]);
    }
  }
}

// The Host header without its port: "example.org:8443" -> "example.org", "[::1]:8443" ->
// "[::1]". Anything else (no port, or not a host:port shape) is returned unchanged.
std::string_view host_without_port(std::string_view host) {
  if (!host.empty() && host.front() == '[') {
    const auto close = host.find(']');
    return close == std::string_view::npos ? host : host.substr(0, close + 1);
  }
  const auto colon = host.find(':');
  if (colon == std::string_view::npos || host.find(':', colon + 1) != std::string_view::npos) {
    return host;
  }
  return host.substr(0, colon);
}

// Length of the valid UTF-8 sequence at the start of `s`, or 0 with `*bad` set to how many
// bytes form the maximal invalid subpart to replace by one U+FFFD (Unicode's recommended
// practice, also what WHATWG decoders do). Overlongs, surrogates and > U+10FFFF are invalid.
std::size_t utf8_sequence(std::string_view s, std::size_t* bad) {
  const auto b0 = static_cast<unsigned char>(s[0]);
  std::size_t length = 0;
  unsigned char low = 0x80, high = 0xbf;  // allowed range of the second byte
  if (b0 >= 0xc2 && b0 <= 0xdf) {
    length = 2;
  } else if (b0 >= 0xe0 && b0 <= 0xef) {
    length = 3;
    if (b0 == 0xe0) low = 0xa0;
    if (b0 == 0xed) high = 0x9f;
  } else if (b0 >= 0xf0 && b0 <= 0xf4) {
    length = 4;
    if (b0 == 0xf0) low = 0x90;
    if (b0 == 0xf4) high = 0x8f;
  } else {
    *bad = 1;
    return 0;
  }
  for (std::size_t i = 1; i < length; ++i) {
    if (i >= s.size()) {
      *bad = i;
      return 0;
    }
    const auto b = static_cast<unsigned char>(s[i]);
    const bool ok = i == 1 ? (b >= low && b <= high) : (b >= 0x80 && b <= 0xbf);
    if (!ok) {
      *bad = i;
      return 0;
    }
  }
  return length;
}

// A JSON string: '"' and '\' escaped, control characters and DEL as \u00XX, valid UTF-8 kept,
// each maximal invalid subpart replaced by \ufffd, so the output is always valid UTF-8 JSON.
void append_json_string(std::string& out, std::string_view value) {
  out.push_back('"');
  std::size_t i = 0;
  while (i < value.size()) {
    const auto byte = static_cast<unsigned char>(value[i]);
    if (byte < 0x80) {
      if (byte == '"' || byte == '\\') {
        out.push_back('\\');
        out.push_back(value[i]);
      } else if (byte < 0x20 || byte == 0x7f) {
        out.append("\\u00");
        out.push_back(kHex[byte >> 4]);
        out.push_back(kHex[byte & 0xf]);
      } else {
        out.push_back(value[i]);
      }
      ++i;
      continue;
    }
    std::size_t bad = 0;
    const std::size_t length = utf8_sequence(value.substr(i), &bad);
    if (length > 0) {
      out.append(value.substr(i, length));
      i += length;
    } else {
      out.append("\\ufffd");
      i += bad;
    }
  }
  out.push_back('"');
}

// A string, or null when empty ("absent" in the record).
void append_json_optional(std::string& out, std::string_view value) {
  if (value.empty()) {
    out.append("null");
  } else {
    append_json_string(out, value);
  }
}

// A route or backend: its name when a table is given and knows the index, else the index;
// null for kNoIndex.
void append_json_index(std::string& out, std::size_t index, const std::vector<std::string>* names) {
  if (index == kNoIndex) {
    out.append("null");
  } else if (names != nullptr && index < names->size()) {
    append_json_string(out, (*names)[index]);
  } else {
    append_uint(out, index);
  }
}

void append_json_key(std::string& out, std::string_view key) {
  out.push_back(',');
  out.push_back('"');
  out.append(key);
  out.append("\":");
}

}  // namespace

void format_cmsweb(const RequestRecord& r, std::string& out, const std::vector<std::string>*,
                   const std::vector<std::string>*) {
  append_apache_time(out, r.start_unix_us);
  out.push_back(' ');
  append_log_item(out, host_without_port(r.host), Quoting::bare);
  out.push_back(' ');
  append_log_item(out, r.client_ip, Quoting::bare);
  // %r: the request line as sent, escaped as one item (Apache escapes r->the_request whole).
  out.append(" \"");
  if (r.method.empty() && r.target.empty()) {
    out.push_back('-');
  } else {
    append_log_item(out, r.method);
    out.push_back(' ');
    append_log_item(out, r.target);
    if (!r.http_version.empty()) {
      out.push_back(' ');
      append_log_item(out, r.http_version);
    }
  }
  out.append("\" ");
  // Status 0 means no response was started (the client left first): "-", not a fake number.
  if (r.status > 0) {
    append_uint(out, static_cast<std::uint64_t>(r.status));
  } else {
    out.push_back('-');
  }
  out.append(" [data: ");
  append_uint(out, r.bytes_in);
  out.append(" in ");
  append_uint(out, r.bytes_out);
  out.append(" out ");
  // %b is Apache's CLF byte count: "-" for an empty body.
  if (r.body_bytes_out > 0) {
    append_uint(out, r.body_bytes_out);
  } else {
    out.push_back('-');
  }
  out.append(" body ");
  append_uint(out, r.duration_us);
  out.append(" us ] [auth: ");
  append_log_item(out, r.tls_protocol, Quoting::bare);
  out.push_back(' ');
  append_log_item(out, r.tls_cipher, Quoting::bare);
  out.append(" \"");
  append_log_item(out, r.client_dn);
  out.append("\" \"");
  // %{cms-auth}C was the cms-auth cookie set by the Apache front-ends' auth module; cmsfront
  // sets no such cookie, so the slot carries the authentication method ("X509Cert", ...)
  // instead: the same kind of information, and parsers still find a quoted item there.
  append_log_item(out, r.auth_method);
  out.append("\" ] [ref: \"");
  append_log_item(out, r.referer);
  out.append("\" \"");
  append_log_item(out, r.user_agent);
  out.append("\" ] ");
  append_uint(out, r.local_port);
  out.push_back('\n');
}

// Keys, in this order: time, connection, request, client_ip, local_port, method, target, path,
// version, host, status (null when no response was started), bytes_in, bytes_out,
// body_bytes_out, duration_us, backend_us, queue_us, route, backend (name, index, or null),
// failure, client_aborted, tls_protocol, tls_cipher, client_dn, user_dn, auth_method,
// auth_result, referer, user_agent (these optional strings are null when empty).
void format_json(const RequestRecord& r, std::string& out,
                 const std::vector<std::string>* route_names,
                 const std::vector<std::string>* backend_names) {
  out.append("{\"time\":\"");
  append_rfc3339(out, r.start_unix_us);
  out.push_back('"');
  append_json_key(out, "connection");
  append_uint(out, r.connection_id);
  append_json_key(out, "request");
  append_uint(out, r.request_number);
  append_json_key(out, "client_ip");
  append_json_string(out, r.client_ip);
  append_json_key(out, "local_port");
  append_uint(out, r.local_port);
  append_json_key(out, "method");
  append_json_string(out, r.method);
  append_json_key(out, "target");
  append_json_string(out, r.target);
  append_json_key(out, "path");
  append_json_string(out, r.path);
  append_json_key(out, "version");
  append_json_string(out, r.http_version);
  append_json_key(out, "host");
  append_json_string(out, r.host);
  append_json_key(out, "status");
  if (r.status > 0) {
    append_uint(out, static_cast<std::uint64_t>(r.status));
  } else {
    out.append("null");
  }
  append_json_key(out, "bytes_in");
  append_uint(out, r.bytes_in);
  append_json_key(out, "bytes_out");
  append_uint(out, r.bytes_out);
  append_json_key(out, "body_bytes_out");
  append_uint(out, r.body_bytes_out);
  append_json_key(out, "duration_us");
  append_uint(out, r.duration_us);
  append_json_key(out, "backend_us");
  append_uint(out, r.backend_us);
  append_json_key(out, "queue_us");
  append_uint(out, r.queue_us);
  append_json_key(out, "route");
  append_json_index(out, r.route, route_names);
  append_json_key(out, "backend");
  append_json_index(out, r.backend, backend_names);
  append_json_key(out, "failure");
  append_json_optional(out, r.failure);
  append_json_key(out, "client_aborted");
  out.append(r.client_aborted ? "true" : "false");
  append_json_key(out, "tls_protocol");
  append_json_optional(out, r.tls_protocol);
  append_json_key(out, "tls_cipher");
  append_json_optional(out, r.tls_cipher);
  append_json_key(out, "client_dn");
  append_json_optional(out, r.client_dn);
  append_json_key(out, "user_dn");
  append_json_optional(out, r.user_dn);
  append_json_key(out, "auth_method");
  append_json_optional(out, r.auth_method);
  append_json_key(out, "auth_result");
  append_json_optional(out, r.auth_result);
  append_json_key(out, "referer");
  append_json_optional(out, r.referer);
  append_json_key(out, "user_agent");
  append_json_optional(out, r.user_agent);
  out.append("}\n");
}

// ---- AccessLog ------------------------------------------------------------------------------

namespace {

// How long the final flush may wait for a stalled output when the process stops.
constexpr std::chrono::seconds kStopGrace{2};

// How long a busy writer lets lines gather before the next batch (the longest a line waits
// in a ring while the log is busy; an idle writer is woken by the first line).
constexpr std::chrono::milliseconds kBatchInterval{20};

// The writer hands a batch to write(2) once it holds this much (or the rings are empty).
constexpr std::size_t kBatchBytes = std::size_t{256} * 1024;
// A slot that once held a line longer than this gives its memory back when drained, so a few
// huge request targets do not pin their capacity in every slot forever.
constexpr std::size_t kSlotKeepBytes = 4096;

std::string errno_text(int error) { return std::generic_category().message(error); }

int open_log_file(const std::string& path) {
  int fd;
  do {
    fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  } while (fd < 0 && errno == EINTR);
  // A FIFO or socket that nobody reads would block write() for ever, and with it the stop of
  // the process (the writer is joined at exit): make it non-blocking, so the writer waits in
  // poll() and can give up. (A regular file never blocks that way.)
  struct stat info {};
  if (fd >= 0 && ::fstat(fd, &info) == 0 && !S_ISREG(info.st_mode)) {
    const int flags = ::fcntl(fd, F_GETFL);
    if (flags >= 0) ::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
  }
  return fd;
}

}  // namespace

AccessLog::Fd& AccessLog::Fd::operator=(Fd&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(other.fd_, -1);
  }
  return *this;
}

AccessLog::Fd::~Fd() {
  if (fd_ >= 0) ::close(fd_);
}

std::variant<std::unique_ptr<AccessLog>, std::string> AccessLog::open(
    const std::string& path, AccessLogFormat format, std::size_t workers, std::size_t queue_lines,
    std::vector<std::string> route_names, std::vector<std::string> backend_names) {
  if (workers == 0) return std::string("access log: no worker threads");
  if (queue_lines == 0) return std::string("access log: queue_lines must be at least 1");
  Fd file;
  if (path != "-") {
    const int fd = open_log_file(path);
    if (fd < 0) return "access log: cannot open " + path + ": " + errno_text(errno);
    file = Fd(fd);
  }
  Fd wake(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (wake.get() < 0) return "access log: eventfd: " + errno_text(errno);
  try {
    return std::make_unique<AccessLog>(Key(), path, std::move(file), std::move(wake), format,
                                       workers, queue_lines, std::move(route_names),
                                       std::move(backend_names));
  } catch (const std::exception& e) {  // bad_alloc for the rings, system_error for the thread
    return "access log: " + std::string(e.what());
  }
}

AccessLog::AccessLog(Key, std::string path, Fd file, Fd wake, AccessLogFormat format,
                     std::size_t workers, std::size_t queue_lines,
                     std::vector<std::string> route_names, std::vector<std::string> backend_names)
    : path_(std::move(path)),
      format_(format),
      route_names_(std::move(route_names)),
      backend_names_(std::move(backend_names)),
      file_(std::move(file)),
      out_fd_(file_.get() >= 0 ? file_.get() : STDOUT_FILENO),
      wake_(std::move(wake)) {
  rings_.reserve(workers);
  for (std::size_t i = 0; i < workers; ++i) rings_.push_back(std::make_unique<Ring>(queue_lines));
  batch_.reserve(kBatchBytes + kSlotKeepBytes);
  writer_ = std::thread([this] { run(); });
}

AccessLog::~AccessLog() {
  // Every worker has stopped calling log(): the writer drains what is queued, then returns.
  // A stalled output (a FIFO nobody reads) gets kStopGrace to take it; then the rest is
  // dropped, so the process still stops.
  give_up_at_ = std::chrono::steady_clock::now() + kStopGrace;
  stopping_.store(true, std::memory_order_seq_cst);
  wake();
  if (writer_.joinable()) writer_.join();
}

void AccessLog::log(std::size_t worker, const RequestRecord& record) noexcept {
  Ring& ring = *rings_[worker];
  const std::size_t head = ring.head.load(std::memory_order_relaxed);
  // Acquire: the writer's release of tail_ hands the slot (and its string) back to us.
  if (head - ring.tail.load(std::memory_order_acquire) >= ring.lines.size()) {
    ring.dropped.store(ring.dropped.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    return;
  }
  std::string& line = ring.lines[head % ring.lines.size()];
  line.clear();
  try {
    const auto* routes = route_names_.empty() ? nullptr : &route_names_;
    const auto* backends = backend_names_.empty() ? nullptr : &backend_names_;
    if (format_ == AccessLogFormat::json) {
      format_json(record, line, routes, backends);
    } else {
      format_cmsweb(record, line, routes, backends);
    }
  } catch (...) {  // std::bad_alloc while a slot grows: lose the line, not the process
    line.clear();
    ring.dropped.store(ring.dropped.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    return;
  }
  // Wake-up protocol (the producer's half; the writer's half is in run()). Publishing head and
  // then reading writer_sleeping_ are both seq_cst, as are the writer's store of
  // writer_sleeping_ and its re-check of the heads: in the single total order, either the
  // writer's re-check sees this line, or this load sees the writer asleep. Only the producer
  // that flips the flag back pays for the eventfd write, so a busy writer (which never sleeps)
  // costs producers no system call and no lock at all.
  ring.head.store(head + 1, std::memory_order_seq_cst);
  if (writer_sleeping_.load(std::memory_order_seq_cst) &&
      writer_sleeping_.exchange(false, std::memory_order_seq_cst)) {
    wake();
  } else if (head + 1 - ring.tail.load(std::memory_order_relaxed) == ring.lines.size() / 2) {
    // A busy writer naps between batches (see run()); a ring half full cuts the nap short.
    // Only the line that crosses the mark pays for the system call.
    wake();
  }
}

void AccessLog::reopen() noexcept {
  reopen_requested_.store(true, std::memory_order_seq_cst);
  wake();
}

void AccessLog::set_error_handler(ErrorHandler handler) {
  std::lock_guard lock(handler_mutex_);
  error_handler_ = std::move(handler);
}

std::uint64_t AccessLog::written() const { return written_.load(std::memory_order_relaxed); }

std::uint64_t AccessLog::dropped() const {
  std::uint64_t total = write_dropped_.load(std::memory_order_relaxed);
  for (const auto& ring : rings_) total += ring->dropped.load(std::memory_order_relaxed);
  return total;
}

void AccessLog::wake() noexcept {
  const std::uint64_t one = 1;
  // Cannot block (EFD_NONBLOCK); EAGAIN would mean 2^64-1 unread wakes, i.e. one is pending.
  [[maybe_unused]] const auto ignored = ::write(wake_.get(), &one, sizeof one);
}

void AccessLog::run() {
  for (;;) {
    // Read before draining: once stop is seen, a drain that finds nothing means nothing is left.
    const bool stop = stopping_.load(std::memory_order_seq_cst);
    if (reopen_requested_.exchange(false, std::memory_order_seq_cst)) reopen_now();
    const std::size_t drained = drain();
    if (!batch_.empty()) write_batch();
    if (drained > 0) {
      if (stop) continue;
      // Busy: let lines gather for a moment, so that one write() carries many of them and the
      // workers need not wake us for each (a wake-up per line costs them a system call and
      // the machine a context switch per request). A half-full ring, a reopen or the stop
      // ends the nap early.
      sleep_until_woken(kBatchInterval);
      continue;
    }
    if (stop) return;
    // The writer's half of the wake-up protocol (see log()): announce the sleep, then re-check.
    writer_sleeping_.store(true, std::memory_order_seq_cst);
    if (anything_pending()) {
      writer_sleeping_.store(false, std::memory_order_seq_cst);
      continue;
    }
    sleep_until_woken(std::chrono::milliseconds(-1));
    writer_sleeping_.store(false, std::memory_order_seq_cst);
  }
}

bool AccessLog::anything_pending() const {
  if (reopen_requested_.load(std::memory_order_seq_cst) ||
      stopping_.load(std::memory_order_seq_cst)) {
    return true;
  }
  for (const auto& ring : rings_) {
    if (ring->head.load(std::memory_order_seq_cst) != ring->tail.load(std::memory_order_relaxed)) {
      return true;
    }
  }
  return false;
}

void AccessLog::sleep_until_woken(std::chrono::milliseconds timeout) {
  pollfd p{wake_.get(), POLLIN, 0};
  int ready = 0;
  while ((ready = ::poll(&p, 1, static_cast<int>(timeout.count()))) < 0 && errno == EINTR) {
  }
  if (ready > 0) {
    std::uint64_t count;
    [[maybe_unused]] const auto ignored = ::read(wake_.get(), &count, sizeof count);
  }
}

std::size_t AccessLog::drain() {
  // Start with a different ring each time so one busy worker cannot starve the others' rings
  // when a batch fills up.
  std::size_t taken = 0;
  const std::size_t count = rings_.size();
  const std::size_t first = drain_start_++ % count;
  for (std::size_t k = 0; k < count && batch_.size() < kBatchBytes; ++k) {
    Ring& ring = *rings_[(first + k) % count];
    std::size_t tail = ring.tail.load(std::memory_order_relaxed);
    // Acquire: pairs with the worker's publication of head, making the slot's text visible.
    const std::size_t head = ring.head.load(std::memory_order_acquire);
    while (tail != head && batch_.size() < kBatchBytes) {
      std::string& line = ring.lines[tail % ring.lines.size()];
      batch_.append(line);
      if (line.capacity() > kSlotKeepBytes) std::string().swap(line);
      ++tail;
      ++taken;
    }
    // Release: the slots are the worker's again (copied out before the disk is touched, so
    // the rings keep accepting lines while write() blocks).
    ring.tail.store(tail, std::memory_order_release);
  }
  batch_lines_ += taken;
  return taken;
}

void AccessLog::write_batch() {
  std::size_t done = 0;
  while (done < batch_.size()) {
    const ssize_t n = ::write(out_fd_, batch_.data() + done, batch_.size() - done);
    if (n > 0) {
      done += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      // The reader is slow (or gone quiet): wait for room, but when the process is stopping,
      // only up to kStopGrace; then what is left is dropped, so the stop never hangs here.
      if (stopping_.load(std::memory_order_seq_cst) &&
          std::chrono::steady_clock::now() >= give_up_at_) {
        errno = ETIMEDOUT;
      } else {
        pollfd p{out_fd_, POLLOUT, 0};
        ::poll(&p, 1, 100);
        continue;
      }
    }
    // ENOSPC, EIO, EPIPE, ...: the rest of the batch is lost (counted); the next batch tries
    // again. A line cut by the failure may be left without its newline.
    const int error = n < 0 ? errno : EIO;
    const auto lines_done = static_cast<std::size_t>(
        std::count(batch_.begin(), batch_.begin() + static_cast<std::ptrdiff_t>(done), '\n'));
    written_.fetch_add(lines_done, std::memory_order_relaxed);
    write_dropped_.fetch_add(batch_lines_ - lines_done, std::memory_order_relaxed);
    if (!write_failing_) {
      write_failing_ = true;
      report("access log: write to " + path_ + " failed: " + errno_text(error) +
             "; lines are dropped until a write succeeds");
    }
    batch_.clear();
    batch_lines_ = 0;
    return;
  }
  written_.fetch_add(batch_lines_, std::memory_order_relaxed);
  if (write_failing_) {
    write_failing_ = false;
    report("access log: writing to " + path_ + " again");
  }
  batch_.clear();
  batch_lines_ = 0;
}

void AccessLog::reopen_now() {
  if (file_.get() < 0) return;  // standard output: nothing to reopen
  const int fd = open_log_file(path_);
  if (fd < 0) {
    report("access log: cannot reopen " + path_ + ": " + errno_text(errno) +
           "; still writing to the previous file");
    return;
  }
  file_ = Fd(fd);  // closes the old descriptor: the new file is open before the old one goes
  out_fd_ = file_.get();
}

void AccessLog::report(const std::string& message) {
  std::lock_guard lock(handler_mutex_);
  if (error_handler_) error_handler_(message);
}

}  // namespace proxy
