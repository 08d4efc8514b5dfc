// A blocking HTTPS GET (see https_fetch.h).
//
// One call, one connection: parse the URL, resolve, connect a non-blocking socket, run the TLS
// handshake verifying the server, send one GET with "Connection: close", read the head with the
// proxy's strict parser and the body by its framing. Every wait goes through Exchange::wait_until,
// which polls against one deadline, so settings.timeout bounds the exchange from the first
// connect to the last byte. Name resolution is the exception: getaddrinfo has no timeout of its
// own (resolv.conf's timeout and attempts apply); the deadline is checked when it returns.
#include "proxy/https_fetch.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <memory>
#include <optional>
#include <string_view>
#include <utility>

#include "proxy/chunked_decoder.h"
#include "proxy/http1_parser.h"
#include "tls/openssl_ptr.h"
#include "tls/openssl_util.h"

namespace proxy {
namespace {

using Clock = std::chrono::steady_clock;
// What went wrong in one step, ready for the log; nullopt: the step succeeded.
using Error = std::optional<std::string>;

// How much of a non-200 response's body goes into the error, to show the operator what the
// server said ("maintenance until 14:00", an HTML error page's first words).
constexpr std::size_t kExcerptBytes = 200;

std::string errno_text(int code) {
  char buffer[256];
  // The GNU strerror_r (g++ always defines _GNU_SOURCE): returns the text, maybe not in buffer.
  return strerror_r(code, buffer, sizeof buffer);
}

std::string seconds_text(std::chrono::milliseconds duration) {
  char text[32];
  std::snprintf(text, sizeof text, "%gs", static_cast<double>(duration.count()) / 1000.0);
  return text;
}

// ---- The URL ----------------------------------------------------------------------------------

struct Url {
  std::string host;  // name or address, without the brackets of an IPv6 literal
  bool ip_literal = false;
  std::uint16_t port = 443;
  std::string target;     // path and query, as sent on the request line
  std::string authority;  // the Host header: host (bracketed if IPv6), ":port" unless 443
};

bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_hex(char c) { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

// RFC 3986 path and query characters: pchar, "/" and "?", with %XX checked.
Error check_target(std::string_view target) {
  constexpr std::string_view kAllowed = "-._~!$&'()*+,;=:@/?";
  for (std::size_t i = 0; i < target.size(); ++i) {
    const char c = target[i];
    if (c == '%') {
      if (i + 2 >= target.size() || !is_hex(target[i + 1]) || !is_hex(target[i + 2])) {
        return "bad percent-encoding in the URL's path or query";
      }
      i += 2;
    } else if (!is_alpha(c) && !is_digit(c) && kAllowed.find(c) == std::string_view::npos) {
      return std::string("character '") + c + "' is not allowed in a URL's path or query";
    }
  }
  return std::nullopt;
}

// A DNS name of letters, digits and hyphens (RFC 1123); an all-numeric one must be an IPv4
// address in dotted-quad form, so that "10.1" or "1.2.3.0400" is not read the inet_aton way.
Error check_host(std::string_view host, bool& ip_literal) {
  if (host.empty()) return "empty host in URL";
  if (std::all_of(host.begin(), host.end(), [](char c) { return is_digit(c) || c == '.'; })) {
    in_addr address{};
    if (inet_pton(AF_INET, std::string(host).c_str(), &address) != 1) {
      return "bad IPv4 address '" + std::string(host) + "' in URL";
    }
    ip_literal = true;
    return std::nullopt;
  }
  const std::string bad = "bad host name '" + std::string(host) + "' in URL";
  if (host.size() > 253) return bad;
  std::size_t label_start = 0;
  while (label_start <= host.size()) {
    std::size_t end = host.find('.', label_start);
    if (end == std::string_view::npos) end = host.size();
    const std::string_view label = host.substr(label_start, end - label_start);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') {
      return bad;
    }
    for (const char c : label) {
      if (!is_alpha(c) && !is_digit(c) && c != '-') return bad;
    }
    label_start = end + 1;
  }
  return std::nullopt;
}

Error parse_port(std::string_view text, std::uint16_t& port) {
  const std::string bad = "bad port '" + std::string(text) + "' in URL (1-65535)";
  if (text.empty() || text.size() > 5 || !std::all_of(text.begin(), text.end(), is_digit)) {
    return bad;
  }
  unsigned long value = 0;
  for (const char c : text) value = value * 10 + static_cast<unsigned long>(c - '0');
  if (value == 0 || value > 65535) return bad;
  port = static_cast<std::uint16_t>(value);
  return std::nullopt;
}

// Splits the authority into host and port; `authority` has no userinfo.
Error parse_authority(std::string_view authority, Url& url) {
  std::string_view host = authority;
  std::optional<std::string_view> port;
  if (!authority.empty() && authority.front() == '[') {
    const std::size_t close = authority.find(']');
    if (close == std::string_view::npos) return "unterminated [IPv6 address] in URL";
    host = authority.substr(1, close - 1);
    const std::string_view after = authority.substr(close + 1);
    if (!after.empty() && after.front() != ':') return "unexpected characters after ] in URL";
    if (!after.empty()) port = after.substr(1);
    in6_addr address{};
    if (inet_pton(AF_INET6, std::string(host).c_str(), &address) != 1) {
      return "bad IPv6 address '" + std::string(host) + "' in URL";
    }
    url.ip_literal = true;
  } else {
    const std::size_t colon = authority.find(':');
    if (colon != std::string_view::npos) {
      if (authority.find(':', colon + 1) != std::string_view::npos) {
        return "IPv6 addresses must be written in brackets in a URL: https://[::1]/";
      }
      host = authority.substr(0, colon);
      port = authority.substr(colon + 1);
    }
    if (Error error = check_host(host, url.ip_literal)) return error;
  }
  if (port) {
    if (Error error = parse_port(*port, url.port)) return error;
  }
  url.host = std::string(host);
  url.authority = url.host.find(':') != std::string::npos ? "[" + url.host + "]" : url.host;
  if (url.port != 443) url.authority += ":" + std::to_string(url.port);
  return std::nullopt;
}

// https://host[:port][/path][?query], nothing else: the URL comes from the configuration, and a
// typo should be an error at the first refresh rather than a request somewhere unexpected.
Error parse_url(std::string_view text, Url& url) {
  for (std::size_t i = 0; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c <= 0x20 || c >= 0x7f) {
      return "URL contains a space, control or non-ASCII character at offset " + std::to_string(i) +
             " (percent-encode it)";
    }
  }
  constexpr std::string_view kScheme = "https://";
  if (text.size() < kScheme.size() || !http1::iequals(text.substr(0, kScheme.size()), kScheme)) {
    return "URL '" + std::string(text) + "' does not start with https:// (only HTTPS is supported)";
  }
  if (text.find('#') != std::string_view::npos)
    return "a fragment (#...) is not allowed in the URL";
  const std::string_view rest = text.substr(kScheme.size());
  const std::size_t authority_end = std::min(rest.find_first_of("/?"), rest.size());
  const std::string_view authority = rest.substr(0, authority_end);
  if (authority.find('@') != std::string_view::npos) {
    return "user information (user@host) is not allowed in the URL";
  }
  if (authority.empty()) return "empty host in URL";
  if (Error error = parse_authority(authority, url)) return error;
  url.target = std::string(rest.substr(authority_end));
  if (url.target.empty() || url.target.front() == '?') url.target.insert(0, "/");
  return check_target(url.target);
}

// ---- Small RAII pieces ------------------------------------------------------------------------

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) {
      reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  ~UniqueFd() { reset(); }

  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

struct AddrinfoDeleter {
  void operator()(addrinfo* list) const noexcept { freeaddrinfo(list); }
};
using AddrinfoPtr = std::unique_ptr<addrinfo, AddrinfoDeleter>;

// OpenSSL writes to the socket with write(2), so a peer that has gone raises SIGPIPE, which kills
// a process that does not ignore it. cmsfront ignores it in main(), but a library function should
// not depend on that: SIGPIPE is blocked in this thread during the exchange (a write's SIGPIPE
// goes to the writing thread), and one our writes raised is taken off before the mask returns.
class SigpipeBlock {
 public:
  SigpipeBlock() {
    sigemptyset(&pipe_);
    sigaddset(&pipe_, SIGPIPE);
    sigset_t pending;
    sigpending(&pending);
    was_pending_ = sigismember(&pending, SIGPIPE) == 1;
    pthread_sigmask(SIG_BLOCK, &pipe_, &previous_);
  }
  ~SigpipeBlock() {
    const int saved_errno = errno;
    sigset_t pending;
    sigpending(&pending);
    if (!was_pending_ && sigismember(&pending, SIGPIPE) == 1) {
      const timespec no_wait{};
      while (sigtimedwait(&pipe_, nullptr, &no_wait) == -1 && errno == EINTR) {
      }
    }
    pthread_sigmask(SIG_SETMASK, &previous_, nullptr);
    errno = saved_errno;
  }
  SigpipeBlock(const SigpipeBlock&) = delete;
  SigpipeBlock& operator=(const SigpipeBlock&) = delete;

 private:
  sigset_t pipe_;
  sigset_t previous_;
  bool was_pending_ = false;
};

// "192.0.2.1:443" or "[2001:db8::1]:443".
std::string address_text(const sockaddr* address, socklen_t length) {
  char host[NI_MAXHOST];
  char service[NI_MAXSERV];
  if (getnameinfo(address, length, host, sizeof host, service, sizeof service,
                  NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
    return "?";
  }
  const std::string text(host);
  return (address->sa_family == AF_INET6 ? "[" + text + "]" : text) + ":" + service;
}

// An encrypted key must fail to load with an error, not prompt for a pass phrase on a terminal.
int refuse_passphrase(char* /*buffer*/, int /*size*/, int /*rwflag*/, void* /*data*/) { return -1; }

// ---- The exchange -----------------------------------------------------------------------------

// How one SSL operation ended.
struct Io {
  enum Kind : std::uint8_t { done, closed_cleanly, closed_abruptly, failed };
  Kind kind = done;
  std::string error;   // failed: the whole message (the step, then why)
  std::string detail;  // failed: OpenSSL's or the system's reason alone; empty for a timeout
};

// Where a body goes and how much of it: `refuse` for the real body (a longer one is an error),
// not for the excerpt of an error response (reading stops at `bytes`).
struct BodyLimit {
  std::size_t bytes;
  bool refuse;
};

// Appends what fits under the limit; false when `bytes` did not all fit.
bool append_within(std::string& body, std::string_view bytes, std::size_t limit) {
  const std::size_t room = limit - body.size();
  body.append(bytes.substr(0, room));
  return bytes.size() <= room;
}

class Exchange {
 public:
  Exchange(const FetchSettings& settings, Url url)
      : settings_(settings), url_(std::move(url)), deadline_(Clock::now() + settings.timeout) {}

  FetchResult run();

 private:
  Error prepare_context();
  Error load_trust();
  Error load_client_certificate();
  Error connect_socket();
  Error connect_to(const addrinfo& address, Clock::duration share);
  Error handshake();
  Error expect_server_name();
  Error send_request();
  Error read_head();
  Error read_body(BodyLimit limit, std::string& body);
  Error read_counted(std::uint64_t length, BodyLimit limit, std::string& body);
  Error read_chunked(BodyLimit limit, std::string& body);
  Error read_until_close(BodyLimit limit, std::string& body);
  std::string status_error();

  template <typename Operation>
  Io drive(Operation operation, const std::string& doing);
  Io read_more();
  Error wait_for(int fd, short events, const std::string& doing) const;
  Error wait_until(int fd, short events, Clock::time_point until, const std::string& expired,
                   const std::string& doing) const;
  std::string timed_out(const std::string& doing) const;
  std::string too_large() const;

  const FetchSettings& settings_;
  const Url url_;
  const Clock::time_point deadline_;
  // Declared in the order they are needed: the SSL goes before the socket it uses.
  tls::SslCtxPtr ctx_;
  UniqueFd fd_;
  tls::SslPtr ssl_;
  std::string server_;   // "host (address:port)", or "address:port" for an IP literal
  std::string pending_;  // bytes read from the TLS connection, not parsed yet
  http1::ResponseParser parser_;
};

FetchResult Exchange::run() {
  FetchResult result;
  Error error = prepare_context();
  if (!error) error = connect_socket();
  if (!error) error = handshake();
  if (!error) error = send_request();
  if (!error) error = read_head();
  if (error) {
    result.error = std::move(*error);
    return result;
  }
  result.status = parser_.head().status;
  if (result.status != 200) {
    result.error = status_error();
    return result;
  }
  if (Error body_error = read_body({settings_.max_bytes, true}, result.body)) {
    result.body.clear();
    result.error = std::move(*body_error);
    return result;
  }
  result.ok = true;
  return result;
}

// ---- TLS context ----

Error Exchange::prepare_context() {
  ctx_.reset(SSL_CTX_new(TLS_client_method()));
  if (!ctx_) return "creating the TLS context: " + tls::openssl_errors();
  if (SSL_CTX_set_min_proto_version(ctx_.get(), TLS1_2_VERSION) != 1) {
    return "setting TLS 1.2 as the minimum: " + tls::openssl_errors();
  }
  SSL_CTX_set_verify(ctx_.get(), SSL_VERIFY_PEER, nullptr);
  SSL_CTX_set_default_passwd_cb(ctx_.get(), refuse_passphrase);
  if (Error error = load_trust()) return error;
  return load_client_certificate();
}

Error Exchange::load_trust() {
  const std::string& file = settings_.ca_file;
  const std::string& dir = settings_.ca_dir;
  if (file.empty() && dir.empty()) {
    if (SSL_CTX_set_default_verify_paths(ctx_.get()) != 1) {
      return "loading the system's default CAs: " + tls::openssl_errors();
    }
    return std::nullopt;
  }
  // OpenSSL only looks into a hashed directory during verification, so a missing one would
  // otherwise surface as "unable to get local issuer certificate".
  if (!dir.empty() && ::access(dir.c_str(), R_OK | X_OK) != 0) {
    return "CA directory " + dir + ": " + errno_text(errno);
  }
  if (SSL_CTX_load_verify_locations(ctx_.get(), file.empty() ? nullptr : file.c_str(),
                                    dir.empty() ? nullptr : dir.c_str()) != 1) {
    return "loading CAs from " + (file.empty() ? dir : file) + ": " + tls::openssl_errors();
  }
  return std::nullopt;
}

// A grid proxy works as is: its file holds the proxy certificate, its key and the chain up to
// the user certificate. The chain reader takes the certificates and skips the key block, the key
// reader skips the certificates, and OpenSSL sends the extra certificates as the chain.
Error Exchange::load_client_certificate() {
  const std::string& certificate = settings_.certificate;
  if (certificate.empty()) {
    if (!settings_.key.empty()) return "a client key " + settings_.key + " without a certificate";
    return std::nullopt;
  }
  if (SSL_CTX_use_certificate_chain_file(ctx_.get(), certificate.c_str()) != 1) {
    return "loading the client certificate " + certificate + ": " + tls::openssl_errors();
  }
  const std::string& key = settings_.key.empty() ? certificate : settings_.key;
  if (SSL_CTX_use_PrivateKey_file(ctx_.get(), key.c_str(), SSL_FILETYPE_PEM) != 1) {
    return "loading the client key " + key + ": " + tls::openssl_errors();
  }
  if (SSL_CTX_check_private_key(ctx_.get()) != 1) {
    return "the client key " + key + " does not match the certificate " + certificate + ": " +
           tls::openssl_errors();
  }
  return std::nullopt;
}

// ---- TCP ----

Error Exchange::connect_socket() {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_protocol = IPPROTO_TCP;
  hints.ai_flags = AI_NUMERICSERV | (url_.ip_literal ? AI_NUMERICHOST : 0);
  addrinfo* found = nullptr;
  const int rc = getaddrinfo(url_.host.c_str(), std::to_string(url_.port).c_str(), &hints, &found);
  const AddrinfoPtr addresses(found);
  if (rc != 0) {
    return "resolving " + url_.host + ": " +
           (rc == EAI_SYSTEM ? errno_text(errno) : gai_strerror(rc));
  }
  Clock::rep left = 0;
  for (const addrinfo* address = addresses.get(); address != nullptr; address = address->ai_next) {
    ++left;
  }
  std::string failures;
  for (const addrinfo* address = addresses.get(); address != nullptr; address = address->ai_next) {
    if (Clock::now() >= deadline_) {
      return timed_out("connecting to " + url_.host) + (failures.empty() ? "" : "; " + failures);
    }
    // An address that does not answer at all (a black-holed IPv6 route) gets only its share of
    // the time left, so that the next one is still tried; the last one gets all that is left.
    const Clock::duration share = (deadline_ - Clock::now()) / left--;
    Error error = connect_to(*address, share);
    if (!error) return std::nullopt;
    if (Clock::now() >= deadline_) return *error + (failures.empty() ? "" : "; " + failures);
    failures += (failures.empty() ? "" : "; ") + *error;
  }
  return failures.empty() ? "no address for " + url_.host : failures;
}

Error Exchange::connect_to(const addrinfo& address, Clock::duration share) {
  const std::string name = address_text(address.ai_addr, address.ai_addrlen);
  UniqueFd fd(::socket(address.ai_family, address.ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                       address.ai_protocol));
  if (!fd) return "socket for " + name + ": " + errno_text(errno);
  if (::connect(fd.get(), address.ai_addr, address.ai_addrlen) != 0) {
    // EINTR: the connection goes on being established asynchronously, like EINPROGRESS.
    if (errno != EINPROGRESS && errno != EINTR) return "connect " + name + ": " + errno_text(errno);
    const Clock::time_point until = std::min(Clock::now() + share, deadline_);
    const std::string expired =
        until < deadline_ ? "connect " + name + ": no answer within " +
                                seconds_text(std::chrono::ceil<std::chrono::milliseconds>(share))
                          : timed_out("connecting to " + name);
    if (Error error = wait_until(fd.get(), POLLOUT, until, expired, "connecting to " + name)) {
      return error;
    }
    int status = 0;
    socklen_t length = sizeof status;
    if (getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &status, &length) != 0) status = errno;
    if (status != 0) return "connect " + name + ": " + errno_text(status);
  }
  fd_ = std::move(fd);
  server_ = url_.ip_literal ? name : url_.host + " (" + name + ")";
  return std::nullopt;
}

// ---- TLS ----

Error Exchange::handshake() {
  ssl_.reset(SSL_new(ctx_.get()));
  if (!ssl_) return "creating the TLS connection: " + tls::openssl_errors();
  if (SSL_set_fd(ssl_.get(), fd_.get()) != 1) {
    return "attaching the socket to TLS: " + tls::openssl_errors();
  }
  if (Error error = expect_server_name()) return error;
  const std::string doing = "TLS handshake with " + server_;
  const Io io = drive([this] { return SSL_connect(ssl_.get()); }, doing);
  switch (io.kind) {
    case Io::done:
      return std::nullopt;
    case Io::closed_cleanly:
    case Io::closed_abruptly:
      return doing + ": the server closed the connection";
    case Io::failed:
      break;
  }
  const long verify = SSL_get_verify_result(ssl_.get());
  if (verify != X509_V_OK) {
    return doing + ": certificate verify failed: " + X509_verify_cert_error_string(verify) + " (" +
           io.detail + ")";
  }
  return io.error;
}

// SNI and the identity the certificate must show. An IP literal gets no SNI (RFC 6066 §3) and
// must be listed as an iPAddress subjectAltName; a name is matched against the DNS names.
Error Exchange::expect_server_name() {
  SSL* ssl = ssl_.get();
  if (url_.ip_literal) {
    if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), url_.host.c_str()) != 1) {
      return "setting the expected server address: " + tls::openssl_errors();
    }
    return std::nullopt;
  }
  if (SSL_set_tlsext_host_name(ssl, url_.host.c_str()) != 1) {
    return "setting SNI: " + tls::openssl_errors();
  }
  SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
  if (SSL_set1_host(ssl, url_.host.c_str()) != 1) {
    return "setting the expected server name: " + tls::openssl_errors();
  }
  return std::nullopt;
}

// Runs an SSL call that returns 1 on success until it is done, polling the socket whenever
// OpenSSL wants to read or write (a TLS 1.3 write may need a read and the other way round).
template <typename Operation>
Io Exchange::drive(Operation operation, const std::string& doing) {
  for (;;) {
    ERR_clear_error();
    errno = 0;
    const int rc = operation();
    const int saved_errno = errno;
    if (rc == 1) return {};
    const int reason = SSL_get_error(ssl_.get(), rc);
    if (reason == SSL_ERROR_WANT_READ || reason == SSL_ERROR_WANT_WRITE) {
      const short events = reason == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
      if (Error error = wait_for(fd_.get(), events, doing)) return {Io::failed, *error, ""};
      continue;
    }
    if (reason == SSL_ERROR_ZERO_RETURN) return {Io::closed_cleanly, "", ""};
    // OpenSSL 3 reports a TCP EOF without close_notify as this error; older releases as a
    // SYSCALL error with nothing queued and errno 0.
    const unsigned long queued = ERR_peek_error();
    if ((reason == SSL_ERROR_SSL && ERR_GET_REASON(queued) == SSL_R_UNEXPECTED_EOF_WHILE_READING) ||
        (reason == SSL_ERROR_SYSCALL && queued == 0 && saved_errno == 0)) {
      ERR_clear_error();
      return {Io::closed_abruptly, "", ""};
    }
    std::string detail = reason == SSL_ERROR_SYSCALL && queued == 0 ? errno_text(saved_errno)
                                                                    : tls::openssl_errors();
    return {Io::failed, doing + ": " + detail, detail};
  }
}

Io Exchange::read_more() {
  char buffer[16 * 1024];
  std::size_t got = 0;
  Io io = drive([&] { return SSL_read_ex(ssl_.get(), buffer, sizeof buffer, &got); },
                "reading the response from " + server_);
  if (io.kind == Io::done) pending_.append(buffer, got);
  return io;
}

Error Exchange::wait_for(int fd, short events, const std::string& doing) const {
  return wait_until(fd, events, deadline_, timed_out(doing), doing);
}

// Polls until `fd` is ready for `events`; `expired` is the error once `until` has passed.
Error Exchange::wait_until(int fd, short events, Clock::time_point until,
                           const std::string& expired, const std::string& doing) const {
  for (;;) {
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(until - Clock::now());
    if (left.count() <= 0) return expired;
    pollfd watched{fd, events, 0};
    const int ready =
        ::poll(&watched, 1, static_cast<int>(std::min<long long>(left.count(), INT_MAX)));
    // Ready, or an error or hang-up, which the next call on the socket reports.
    if (ready > 0) return std::nullopt;
    if (ready < 0 && errno != EINTR) return doing + ": poll: " + errno_text(errno);
  }
}

std::string Exchange::timed_out(const std::string& doing) const {
  return "timed out after " + seconds_text(settings_.timeout) + " (" + doing + ")";
}

// ---- HTTP ----

Error Exchange::send_request() {
  const std::string request = "GET " + url_.target + " HTTP/1.1\r\nHost: " + url_.authority +
                              "\r\nUser-Agent: cmsfront\r\nAccept: application/json\r\n"
                              "Connection: close\r\n\r\n";
  std::size_t written = 0;
  const std::string doing = "sending the request to " + server_;
  // Without SSL_MODE_ENABLE_PARTIAL_WRITE, success means the whole request was written.
  const Io io = drive(
      [&] { return SSL_write_ex(ssl_.get(), request.data(), request.size(), &written); }, doing);
  if (io.kind == Io::done) return std::nullopt;
  if (io.kind == Io::failed) return io.error;
  return doing + ": the server closed the connection";
}

// Reads up to the end of the final head, skipping 1xx heads (100 Continue, 103 Early Hints).
Error Exchange::read_head() {
  parser_.expect_response_to(http1::Method::get);
  for (;;) {
    if (!pending_.empty()) {
      pending_.erase(0, parser_.feed(pending_));
      if (parser_.status() == http1::ParseStatus::error) {
        return "bad response head from " + server_ + ": " + std::string(parser_.error().reason);
      }
      if (parser_.status() == http1::ParseStatus::complete) {
        if (!parser_.head().informational()) return std::nullopt;
        parser_.reset();
        continue;
      }
    }
    const Io io = read_more();
    if (io.kind == Io::failed) return io.error;
    if (io.kind != Io::done) {
      return server_ + " closed the connection before sending a complete response head";
    }
  }
}

Error Exchange::read_body(BodyLimit limit, std::string& body) {
  const http1::ResponseHead& head = parser_.head();
  switch (head.framing) {
    case http1::BodyFraming::none:
      return std::nullopt;
    case http1::BodyFraming::content_length:
      return read_counted(head.content_length, limit, body);
    case http1::BodyFraming::chunked:
      return read_chunked(limit, body);
    case http1::BodyFraming::until_close:
      break;
  }
  return read_until_close(limit, body);
}

// Content-Length: exactly that many bytes. Once they are in, the rest of the connection does
// not matter, so a server that then closes without close_notify is fine.
Error Exchange::read_counted(std::uint64_t length, BodyLimit limit, std::string& body) {
  if (length > limit.bytes) {
    if (limit.refuse) return too_large();
    length = limit.bytes;  // an excerpt needs only the start
  }
  const auto wanted = static_cast<std::size_t>(length);
  for (;;) {
    const std::size_t take = std::min(wanted - body.size(), pending_.size());
    body.append(pending_, 0, take);
    pending_.erase(0, take);
    if (body.size() == wanted) return std::nullopt;
    const Io io = read_more();
    if (io.kind == Io::failed) return io.error;
    if (io.kind != Io::done) {
      return "response body truncated: the connection closed after " + std::to_string(body.size()) +
             " of " + std::to_string(wanted) + " bytes";
    }
  }
}

// Chunked: the decoder consumes the framing, the data bytes are appended here. Complete at the
// last chunk and trailers, whatever the connection does afterwards.
Error Exchange::read_chunked(BodyLimit limit, std::string& body) {
  http1::ChunkedDecoder decoder;
  for (;;) {
    const std::string_view bytes(pending_);
    std::size_t used = 0;
    while (used < bytes.size()) {
      if (decoder.state() == http1::ChunkedDecoder::State::framing) {
        const std::size_t framing = decoder.feed_framing(bytes.substr(used));
        used += framing;
        if (framing == 0) break;
      } else if (decoder.state() == http1::ChunkedDecoder::State::data) {
        const auto take = static_cast<std::size_t>(
            std::min<std::uint64_t>(decoder.data_remaining(), bytes.size() - used));
        if (!append_within(body, bytes.substr(used, take), limit.bytes)) {
          return limit.refuse ? Error(too_large()) : std::nullopt;
        }
        decoder.consume_data(take);
        used += take;
      } else {
        break;
      }
    }
    pending_.erase(0, used);
    if (decoder.state() == http1::ChunkedDecoder::State::done) return std::nullopt;
    if (decoder.state() == http1::ChunkedDecoder::State::error) {
      return "bad chunked body from " + server_ + ": " + std::string(decoder.error_reason());
    }
    const Io io = read_more();
    if (io.kind == Io::failed) return io.error;
    if (io.kind != Io::done) {
      return "response body truncated: the connection closed inside the chunked body";
    }
  }
}

// No length: the body ends with the connection, and only a close_notify proves that it ended
// there rather than being cut by an attacker or a broken middlebox.
Error Exchange::read_until_close(BodyLimit limit, std::string& body) {
  for (;;) {
    const bool fits = append_within(body, pending_, limit.bytes);
    pending_.clear();
    if (!fits) return limit.refuse ? Error(too_large()) : std::nullopt;
    const Io io = read_more();
    switch (io.kind) {
      case Io::done:
        continue;
      case Io::closed_cleanly:
        return std::nullopt;
      case Io::closed_abruptly:
        return "connection closed without close_notify (truncated?)";
      case Io::failed:
        return io.error;
    }
  }
}

std::string Exchange::too_large() const {
  return "response larger than " + std::to_string(settings_.max_bytes) + " bytes";
}

// The start of the body as one line of printable ASCII, for the log.
std::string sanitized_excerpt(std::string_view body) {
  std::string text;
  for (const char c : body.substr(0, kExcerptBytes)) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte == ' ' || byte == '\t' || byte == '\r' || byte == '\n') {
      if (!text.empty() && text.back() != ' ') text += ' ';
    } else {
      text += byte > 0x20 && byte < 0x7f ? c : '?';
    }
  }
  while (!text.empty() && text.back() == ' ') text.pop_back();
  if (body.size() > kExcerptBytes) text += "...";
  return text;
}

// "HTTP 503 Service Unavailable: <the body's start>". The excerpt is best effort: a failure
// while reading it is not the news, the status is.
std::string Exchange::status_error() {
  const http1::ResponseHead& head = parser_.head();
  std::string text = "HTTP " + std::to_string(head.status);
  if (!head.reason.empty()) text += " " + sanitized_excerpt(head.reason);
  std::string body;
  (void)read_body({kExcerptBytes + 1, false}, body);
  const std::string excerpt = sanitized_excerpt(body);
  if (!excerpt.empty()) text += ": " + excerpt;
  return text;
}

}  // namespace

FetchResult https_get(const FetchSettings& settings) {
  Url url;
  if (Error error = parse_url(settings.url, url)) {
    FetchResult result;
    result.error = std::move(*error);
    return result;
  }
  const SigpipeBlock no_sigpipe;
  Exchange exchange(settings, std::move(url));
  FetchResult result = exchange.run();
  ERR_clear_error();  // leave nothing queued for the thread's next OpenSSL user
  return result;
}

}  // namespace proxy
