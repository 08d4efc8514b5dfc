// Unit tests for https_get against an in-process TLS server on loopback: a blocking OpenSSL
// server in a thread, one connection per test, answering with whatever bytes the test gives it.
// The PKI (a CA, server certificates right and wrong, a rogue CA, a user and an RFC 3820 proxy
// of it) is made once with the OpenSSL API (EC P-256, milliseconds) and written to a temp dir.
#include "proxy/https_fetch.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/conf.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "tls/openssl_ptr.h"
#include "tls/openssl_util.h"

namespace proxy {
namespace {

using namespace std::chrono_literals;

// Handles only these tests need, freed the way tls/openssl_ptr.h frees the others.
template <auto Free>
struct FreeWith {
  template <typename T>
  void operator()(T* object) const noexcept {
    Free(object);
  }
};
using ExtensionPtr = std::unique_ptr<X509_EXTENSION, FreeWith<X509_EXTENSION_free>>;
using ConfPtr = std::unique_ptr<CONF, FreeWith<NCONF_free>>;

::testing::AssertionResult Contains(const std::string& text, const std::string& part) {
  if (text.find(part) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "\"" << text << "\" does not contain \"" << part << "\"";
}

// ---- The test PKI -----------------------------------------------------------------------------

using Extensions = std::vector<std::pair<std::string, std::string>>;

struct Credential {
  tls::PkeyPtr key;
  tls::X509Ptr cert;
};

tls::X509NamePtr name_with_cn(const X509_NAME* base, const std::string& common_name) {
  tls::X509NamePtr name(base != nullptr ? X509_NAME_dup(base) : X509_NAME_new());
  if (base == nullptr) {
    X509_NAME_add_entry_by_txt(name.get(), "O", MBSTRING_UTF8,
                               reinterpret_cast<const unsigned char*>("cmsfront test"), -1, -1, 0);
  }
  X509_NAME_add_entry_by_txt(name.get(), "CN", MBSTRING_UTF8,
                             reinterpret_cast<const unsigned char*>(common_name.c_str()), -1, -1,
                             0);
  return name;
}

// A certificate for `subject`, signed by `issuer` (null: self-signed), valid for a week.
Credential issue(const tls::X509NamePtr& subject, const Credential* issuer, long serial,
                 const Extensions& extensions) {
  Credential out;
  out.key.reset(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  out.cert.reset(X509_new());
  X509* cert = out.cert.get();
  EXPECT_TRUE(out.key && cert);
  if (!out.key || cert == nullptr) return out;
  X509* signer = issuer != nullptr ? issuer->cert.get() : cert;
  X509_set_version(cert, X509_VERSION_3);
  ASN1_INTEGER_set(X509_get_serialNumber(cert), serial);
  X509_set_subject_name(cert, subject.get());
  X509_set_issuer_name(cert, X509_get_subject_name(signer));
  X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert), 7 * 24 * 3600);
  X509_set_pubkey(cert, out.key.get());
  X509V3_CTX context;
  X509V3_set_ctx(&context, signer, cert, nullptr, nullptr, 0);
  // proxyCertInfo is parsed only with a config database to look sections up in.
  const ConfPtr conf(NCONF_new(nullptr));
  X509V3_set_nconf(&context, conf.get());
  for (const auto& [type, value] : extensions) {
    const ExtensionPtr extension(
        X509V3_EXT_nconf(conf.get(), &context, type.c_str(), value.c_str()));
    EXPECT_TRUE(extension) << type << " = " << value;
    if (extension) X509_add_ext(cert, extension.get(), -1);
  }
  EVP_PKEY* signing_key = issuer != nullptr ? issuer->key.get() : out.key.get();
  EXPECT_GT(X509_sign(cert, signing_key, EVP_sha256()), 0);
  return out;
}

const Extensions kCaExtensions = {
    {"basicConstraints", "critical,CA:TRUE"},
    {"keyUsage", "critical,keyCertSign,cRLSign"},
    {"subjectKeyIdentifier", "hash"},
};

Extensions server_extensions(const std::string& alt_names) {
  return {{"basicConstraints", "critical,CA:FALSE"},
          {"keyUsage", "critical,digitalSignature"},
          {"extendedKeyUsage", "serverAuth"},
          {"subjectAltName", alt_names}};
}

const Extensions kUserExtensions = {
    {"basicConstraints", "critical,CA:FALSE"},
    {"keyUsage", "critical,digitalSignature,keyEncipherment"},
    {"extendedKeyUsage", "clientAuth"},
};

std::string cert_pem(const Credential& credential) {
  const tls::BioPtr bio(BIO_new(BIO_s_mem()));
  EXPECT_EQ(PEM_write_bio_X509(bio.get(), credential.cert.get()), 1);
  char* data = nullptr;
  const long length = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(length));
}

std::string key_pem(const Credential& credential) {
  const tls::BioPtr bio(BIO_new(BIO_s_mem()));
  EXPECT_EQ(PEM_write_bio_PrivateKey(bio.get(), credential.key.get(), nullptr, nullptr, 0, nullptr,
                                     nullptr),
            1);
  char* data = nullptr;
  const long length = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(length));
}

void write_file(const std::string& path, const std::string& text) {
  std::ofstream file(path, std::ios::binary | std::ios::trunc);
  file << text;
  EXPECT_TRUE(file.good()) << path;
}

// Paths of the PEM files every test uses.
struct Pki {
  std::string dir;
  std::string ca;           // the CA that signed server, other, user
  std::string ca_dir;       // the same CA as <hash>.0
  std::string server_cert;  // SAN DNS:localhost, IP:127.0.0.1, IP:::1
  std::string server_key;
  std::string other_cert;  // SAN DNS:other.example only
  std::string other_key;
  std::string rogue_cert;  // right names, signed by a CA nobody trusts
  std::string rogue_key;
  std::string user_cert;  // a client certificate
  std::string user_key;
  std::string user_encrypted_key;  // the user key under a pass phrase
  std::string user_combined;       // user certificate and key in one file
  std::string proxy;               // grid proxy file: proxy certificate, its key, user certificate
  std::string proxy_subject;       // one-line DN of the proxy
};

Pki& pki() {
  static Pki instance;
  return instance;
}

void make_pki() {
  Pki& files = pki();
  std::string pattern = (std::filesystem::temp_directory_path() / "https_fetch_test.XXXXXX");
  ASSERT_NE(mkdtemp(pattern.data()), nullptr);
  files.dir = pattern;
  const auto path = [&](const char* name) { return files.dir + "/" + name; };

  const Credential ca = issue(name_with_cn(nullptr, "Test CA"), nullptr, 1, kCaExtensions);
  const Credential rogue_ca = issue(name_with_cn(nullptr, "Rogue CA"), nullptr, 1, kCaExtensions);
  const std::string good_names = "DNS:localhost,IP:127.0.0.1,IP:::1";
  const Credential server =
      issue(name_with_cn(nullptr, "localhost"), &ca, 2, server_extensions(good_names));
  const Credential other =
      issue(name_with_cn(nullptr, "other.example"), &ca, 3, server_extensions("DNS:other.example"));
  const Credential rogue =
      issue(name_with_cn(nullptr, "localhost"), &rogue_ca, 2, server_extensions(good_names));
  const Credential user = issue(name_with_cn(nullptr, "Robot"), &ca, 4, kUserExtensions);
  const Credential proxy =
      issue(name_with_cn(X509_get_subject_name(user.cert.get()), "1234"), &user, 1234,
            {{"keyUsage", "critical,digitalSignature,keyEncipherment"},
             {"proxyCertInfo", "critical,language:id-ppl-inheritAll"}});

  files.ca = path("ca.pem");
  write_file(files.ca, cert_pem(ca));
  files.ca_dir = path("certificates");
  std::filesystem::create_directory(files.ca_dir);
  char hashed[32];
  std::snprintf(hashed, sizeof hashed, "/%08lx.0", X509_subject_name_hash(ca.cert.get()));
  write_file(files.ca_dir + hashed, cert_pem(ca));

  const auto write_pair = [&](const Credential& credential, const char* stem, std::string& cert,
                              std::string& key) {
    cert = path(stem) + ".pem";
    key = path(stem) + ".key";
    write_file(cert, cert_pem(credential));
    write_file(key, key_pem(credential));
  };
  write_pair(server, "server", files.server_cert, files.server_key);
  write_pair(other, "other", files.other_cert, files.other_key);
  write_pair(rogue, "rogue", files.rogue_cert, files.rogue_key);
  write_pair(user, "user", files.user_cert, files.user_key);
  files.user_encrypted_key = path("user_encrypted.key");
  {
    const tls::BioPtr bio(BIO_new_file(files.user_encrypted_key.c_str(), "w"));
    ASSERT_TRUE(bio);
    std::string secret = "secret";
    EXPECT_EQ(PEM_write_bio_PrivateKey(bio.get(), user.key.get(), EVP_aes_128_cbc(),
                                       reinterpret_cast<unsigned char*>(secret.data()),
                                       static_cast<int>(secret.size()), nullptr, nullptr),
              1);
  }
  files.user_combined = path("user_combined.pem");
  write_file(files.user_combined, cert_pem(user) + key_pem(user));
  files.proxy = path("x509up_u1000");
  write_file(files.proxy, cert_pem(proxy) + key_pem(proxy) + cert_pem(user));
  char subject[512];
  X509_NAME_oneline(X509_get_subject_name(proxy.cert.get()), subject, sizeof subject);
  files.proxy_subject = subject;
}

// ---- The server -------------------------------------------------------------------------------

class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Fd& operator=(Fd&& other) noexcept {
    std::swap(fd_, other.fd_);
    return *this;
  }
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

enum class Stall : std::uint8_t { never, before_handshake, after_request };

struct ServerSetup {
  std::string cert = pki().server_cert;
  std::string key = pki().server_key;
  std::string response{};            // bytes sent once the request head is in
  std::size_t filler_bytes = 0;      // then this many 'x'
  bool close_notify = true;          // end with a TLS close_notify, or just the TCP FIN
  Stall stall = Stall::never;        // send nothing from there until the test ends
  bool require_client_cert = false;  // verified against the test CA, proxies allowed
  bool ipv6 = false;                 // listen on [::1] instead of 127.0.0.1
};

// What the server saw, readable once finish() has returned.
struct Seen {
  std::string request;         // the request head, as received
  std::string sni;             // empty: none sent
  std::string client_subject;  // one-line DN of the client certificate; empty: none
  std::string handshake_error;
};

class TlsServer {
 public:
  explicit TlsServer(ServerSetup setup) : setup_(std::move(setup)) {
    listener_ = listen_on_loopback();
    ctx_ = make_context();
    if (listener_ && ctx_) thread_ = std::thread([this] { serve(); });
  }
  ~TlsServer() { finish(); }
  TlsServer(const TlsServer&) = delete;
  TlsServer& operator=(const TlsServer&) = delete;

  bool listening() const { return thread_.joinable(); }
  std::uint16_t port() const { return port_; }
  std::string url_at(const std::string& host, const std::string& target = "/") const {
    return "https://" + host + ":" + std::to_string(port_) + target;
  }
  std::string url(const std::string& target = "/") const { return url_at("127.0.0.1", target); }

  // Ends a stall and waits for the connection to be over.
  const Seen& finish() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    return seen_;
  }

 private:
  Fd listen_on_loopback() {
    Fd fd(::socket(setup_.ipv6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_storage address{};
    socklen_t length = 0;
    if (setup_.ipv6) {
      auto* in6 = reinterpret_cast<sockaddr_in6*>(&address);
      in6->sin6_family = AF_INET6;
      in6->sin6_addr = in6addr_loopback;
      length = sizeof *in6;
    } else {
      auto* in4 = reinterpret_cast<sockaddr_in*>(&address);
      in4->sin_family = AF_INET;
      in4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      length = sizeof *in4;
    }
    const auto* generic = reinterpret_cast<const sockaddr*>(&address);
    if (!fd || ::bind(fd.get(), generic, length) != 0 || ::listen(fd.get(), 8) != 0) return Fd();
    if (::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&address), &length) != 0) return Fd();
    port_ = ntohs(setup_.ipv6 ? reinterpret_cast<sockaddr_in6*>(&address)->sin6_port
                              : reinterpret_cast<sockaddr_in*>(&address)->sin_port);
    return fd;
  }

  tls::SslCtxPtr make_context() const {
    tls::SslCtxPtr ctx(SSL_CTX_new(TLS_server_method()));
    EXPECT_TRUE(ctx);
    if (!ctx) return ctx;
    EXPECT_EQ(SSL_CTX_use_certificate_chain_file(ctx.get(), setup_.cert.c_str()), 1);
    EXPECT_EQ(SSL_CTX_use_PrivateKey_file(ctx.get(), setup_.key.c_str(), SSL_FILETYPE_PEM), 1);
    if (setup_.require_client_cert) {
      EXPECT_EQ(SSL_CTX_load_verify_locations(ctx.get(), pki().ca.c_str(), nullptr), 1);
      SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
      X509_VERIFY_PARAM_set_flags(SSL_CTX_get0_param(ctx.get()), X509_V_FLAG_ALLOW_PROXY_CERTS);
    }
    return ctx;
  }

  void serve() {
    const Fd client = accept_one();
    if (!client) return;
    const timeval limit{5, 0};  // a test going wrong must not hang here
    setsockopt(client.get(), SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
    setsockopt(client.get(), SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof limit);
    if (setup_.stall == Stall::before_handshake) return wait_for_stop();
    const tls::SslPtr ssl(SSL_new(ctx_.get()));
    SSL_set_fd(ssl.get(), client.get());
    if (SSL_accept(ssl.get()) != 1) {
      seen_.handshake_error = tls::openssl_errors();
      return linger(client.get());
    }
    note_peer(ssl.get());
    read_request(ssl.get());
    if (setup_.stall == Stall::after_request) return wait_for_stop();
    respond(ssl.get());
    if (setup_.close_notify) SSL_shutdown(ssl.get());
    linger(client.get());
  }

  Fd accept_one() {
    while (!stop_) {
      pollfd watched{listener_.get(), POLLIN, 0};
      if (::poll(&watched, 1, 20) == 1)
        return Fd(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    }
    return Fd();
  }

  void wait_for_stop() const {
    while (!stop_) std::this_thread::sleep_for(10ms);
  }

  void note_peer(SSL* ssl) {
    if (const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name)) seen_.sni = name;
    if (const X509* cert = SSL_get0_peer_certificate(ssl)) {
      char subject[512];
      X509_NAME_oneline(X509_get_subject_name(cert), subject, sizeof subject);
      seen_.client_subject = subject;
    }
  }

  void read_request(SSL* ssl) {
    char buffer[4096];
    while (seen_.request.find("\r\n\r\n") == std::string::npos) {
      const int got = SSL_read(ssl, buffer, sizeof buffer);
      if (got <= 0) return;
      seen_.request.append(buffer, static_cast<std::size_t>(got));
    }
  }

  void respond(SSL* ssl) const {
    if (!setup_.response.empty() &&
        SSL_write(ssl, setup_.response.data(), static_cast<int>(setup_.response.size())) <= 0) {
      return;
    }
    const std::string filler(16 * 1024, 'x');
    for (std::size_t sent = 0; sent < setup_.filler_bytes;) {
      const std::size_t piece = std::min(filler.size(), setup_.filler_bytes - sent);
      if (SSL_write(ssl, filler.data(), static_cast<int>(piece)) <= 0) return;  // client left
      sent += piece;
    }
  }

  // Half-closes and waits for the client to close: closing with unread bytes would send a RST
  // that could destroy what the client has not read yet.
  void linger(int fd) const {
    ::shutdown(fd, SHUT_WR);
    char buffer[4096];
    while (!stop_) {
      pollfd watched{fd, POLLIN, 0};
      if (::poll(&watched, 1, 20) == 1 && ::recv(fd, buffer, sizeof buffer, 0) <= 0) return;
    }
  }

  ServerSetup setup_;
  Fd listener_;
  std::uint16_t port_ = 0;
  tls::SslCtxPtr ctx_;
  std::atomic<bool> stop_{false};
  Seen seen_;
  std::thread thread_;
};

// ---- The tests --------------------------------------------------------------------------------

class HttpsFetch : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // The test server writes to clients that may have gone; https_get guards itself.
    std::signal(SIGPIPE, SIG_IGN);
    make_pki();
  }
  static void TearDownTestSuite() {
    std::error_code ignored;
    std::filesystem::remove_all(pki().dir, ignored);
  }

  static FetchSettings settings_for(const std::string& url) {
    FetchSettings settings;
    settings.url = url;
    settings.ca_file = pki().ca;
    settings.timeout = 5s;
    return settings;
  }
};

std::string ok_response(const std::string& body) {
  return "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\n\r\n" + body;
}

TEST_F(HttpsFetch, RejectsMalformedUrls) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", "https://"},
      {"http://cms-cric.cern.ch/api", "only HTTPS"},
      {"ftp://host/", "https://"},
      {"https://robot:secret@cms-cric.cern.ch/", "user information"},
      {"https://cms-cric.cern.ch/api#top", "fragment"},
      {"https://cms-cric.cern.ch/a b", "space"},
      {"https://cms-cric.cern.ch/a\tb", "control"},
      {"https://cms-cric.cern.ch/caf\xc3\xa9", "non-ASCII"},
      {"https:///api", "empty host"},
      {"https://", "empty host"},
      {"https://:443/", "empty host"},
      {"https://host:/", "bad port"},
      {"https://host:0/", "bad port"},
      {"https://host:65536/", "bad port"},
      {"https://host:44a/", "bad port"},
      {"https://host:-1/", "bad port"},
      {"https://host:443:1/", "brackets"},
      {"https://::1/", "brackets"},
      {"https://[::1/", "unterminated"},
      {"https://[::1]x/", "after ]"},
      {"https://[not:v6]/", "bad IPv6"},
      {"https://[::1%25lo]/", "bad IPv6"},
      {"https://300.1.1.1/", "bad IPv4"},
      {"https://10.1/", "bad IPv4"},
      {"https://ho_st.example/", "bad host name"},
      {"https://-host.example/", "bad host name"},
      {"https://host..example/", "bad host name"},
      {"https://host.example./", "bad host name"},
      {"https://host/a%zz", "percent-encoding"},
      {"https://host/a%2", "percent-encoding"},
      {"https://host/a\"b", "not allowed"},
      {"https://host/a\\b", "not allowed"},
      {"https://host/{x}", "not allowed"},
  };
  for (const auto& [url, expected] : cases) {
    FetchSettings settings;
    settings.url = url;
    const FetchResult result = https_get(settings);
    EXPECT_FALSE(result.ok) << url;
    EXPECT_EQ(result.status, 0) << url;
    EXPECT_TRUE(Contains(result.error, expected)) << url;
  }
}

TEST_F(HttpsFetch, ContentLengthBodyAndTheRequestSent) {
  const std::string body = R"({"robot": ["/DC=ch/CN=robot"]})";
  TlsServer server({.response = ok_response(body)});
  ASSERT_TRUE(server.listening());
  const FetchResult result = https_get(settings_for(server.url("/api/accounts?json&preset=roles")));
  EXPECT_TRUE(result.ok) << result.error;
  EXPECT_EQ(result.status, 200);
  EXPECT_EQ(result.body, body);
  EXPECT_EQ(result.error, "");
  const Seen& seen = server.finish();
  EXPECT_EQ(seen.request,
            "GET /api/accounts?json&preset=roles HTTP/1.1\r\n"
            "Host: 127.0.0.1:" +
                std::to_string(server.port()) +
                "\r\nUser-Agent: cmsfront\r\nAccept: application/json\r\n"
                "Connection: close\r\n\r\n");
  EXPECT_EQ(seen.sni, "") << "no SNI for an IP address";
}

TEST_F(HttpsFetch, HostNameGetsSniAndDefaultPath) {
  TlsServer server({.response = ok_response("{}")});
  ASSERT_TRUE(server.listening());
  // "localhost" may resolve to ::1 first, where nothing listens: the next address is tried.
  const std::string url = server.url_at("localhost", "?x=1");
  const FetchResult result = https_get(settings_for(url));
  EXPECT_TRUE(result.ok) << result.error;
  EXPECT_EQ(result.body, "{}");
  const Seen& seen = server.finish();
  EXPECT_EQ(seen.sni, "localhost");
  EXPECT_TRUE(Contains(seen.request, "GET /?x=1 HTTP/1.1\r\n"));
  EXPECT_TRUE(Contains(seen.request, "\r\nHost: localhost:"));
}

TEST_F(HttpsFetch, Ipv6Literal) {
  TlsServer server({.response = ok_response("[]"), .ipv6 = true});
  if (!server.listening()) GTEST_SKIP() << "no IPv6 loopback here";
  const FetchResult result = https_get(settings_for(server.url_at("[::1]", "/v6")));
  EXPECT_TRUE(result.ok) << result.error;
  EXPECT_EQ(result.body, "[]");
  EXPECT_TRUE(Contains(server.finish().request, "\r\nHost: [::1]:"));
}

TEST_F(HttpsFetch, SkipsInformationalResponses) {
  TlsServer server({.response = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\n"
                                "Link: </style.css>\r\n\r\n" +
                                ok_response("final")});
  ASSERT_TRUE(server.listening());
  const FetchResult result = https_get(settings_for(server.url()));
  EXPECT_TRUE(result.ok) << result.error;
  EXPECT_EQ(result.status, 200);
  EXPECT_EQ(result.body, "final");
}

TEST_F(HttpsFetch, ChunkedBody) {
  TlsServer server({.response = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                "5\r\nhello\r\n"
                                "1;ext=\"v\"\r\n \r\n"
                                "0005\r\nworld\r\n"
                                "0\r\nX-Trailer: yes\r\n\r\n",
                    .close_notify = false});  // complete at the last chunk: no close_notify needed
  ASSERT_TRUE(server.listening());
  const FetchResult result = https_get(settings_for(server.url()));
  EXPECT_TRUE(result.ok) << result.error;
  EXPECT_EQ(result.body, "hello world");
}

TEST_F(HttpsFetch, BadChunkedBodyIsAnError) {
  TlsServer server(
      {.response =
           "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5x\r\nhello\r\n0\r\n\r\n"});
  ASSERT_TRUE(server.listening());
  const FetchResult result = https_get(settings_for(server.url()));
  EXPECT_FALSE(result.ok);
  EXPECT_TRUE(Contains(result.error, "bad chunked body"));
  EXPECT_EQ(result.body, "");
}

TEST_F(HttpsFetch, BodyUntilCloseWithCloseNotify) {
  TlsServer server({.response = "HTTP/1.1 200 OK\r\n\r\nuntil the end"});
  ASSERT_TRUE(server.listening());
  const FetchResult result = https_get(settings_for(server.url()));
  EXPECT_TRUE(result.ok) << result.error;
  EXPECT_EQ(result.body, "until the end");
}

TEST_F(HttpsFetch, BodyUntilCloseWithoutCloseNotifyIsAnError) {
  TlsServer server({.response = "HTTP/1.1 200 OK\r\n\r\nmaybe cut", .close_notify = false});
  ASSERT_TRUE(server.listening());
  const FetchResult result = https_get(settings_for(server.url()));
  EXPECT_FALSE(result.ok);
  EXPECT_EQ(result.status, 200);
  EXPECT_TRUE(Contains(result.error, "without close_notify"));
  EXPECT_EQ(result.body, "");
}

TEST_F(HttpsFetch, CompleteContentLengthNeedsNoCloseNotify) {
  TlsServer server({.response = ok_response("exact"), .close_notify = false});
  ASSERT_TRUE(server.listening());
  const FetchResult result = https_get(settings_for(server.url()));
  EXPECT_TRUE(result.ok) << result.error;
  EXPECT_EQ(result.body, "exact");
}

TEST_F(HttpsFetch, ShortContentLengthBodyIsTruncated) {
  TlsServer server({.response = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this"});
  ASSERT_TRUE(server.listening());
  const FetchResult result = https_get(settings_for(server.url()));
  EXPECT_FALSE(result.ok);
  EXPECT_TRUE(Contains(result.error, "truncated"));
  EXPECT_TRUE(Contains(result.error, "9 of 100 bytes"));
}

TEST_F(HttpsFetch, LargeBodyArrivesWhole) {
  constexpr std::size_t kSize = 3 * 1024 * 1024 + 17;
  TlsServer server(
      {.response = "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(kSize) + "\r\n\r\n",
       .filler_bytes = kSize});
  ASSERT_TRUE(server.listening());
  const FetchResult result = https_get(settings_for(server.url()));
  EXPECT_TRUE(result.ok) << result.error;
  EXPECT_EQ(result.body.size(), kSize);
  EXPECT_EQ(result.body.find_first_not_of('x'), std::string::npos);
}

TEST_F(HttpsFetch, MalformedResponseHeadIsAnError) {
  TlsServer server({.response = "HTTP/1.1 200 OK\nContent-Length: 2\n\nhi"});
  ASSERT_TRUE(server.listening());
  const FetchResult result = https_get(settings_for(server.url()));
  EXPECT_FALSE(result.ok);
  EXPECT_EQ(result.status, 0);
  EXPECT_TRUE(Contains(result.error, "bad response head"));
}

TEST_F(HttpsFetch, Non200ReportsStatusAndTheStartOfTheBody) {
  const std::string page = "<html>\r\n  <b>Down for maintenance</b>\x01\r\n</html>";
  TlsServer server({.response = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: " +
                                std::to_string(page.size()) + "\r\n\r\n" + page});
  ASSERT_TRUE(server.listening());
  const FetchResult result = https_get(settings_for(server.url()));
  EXPECT_FALSE(result.ok);
  EXPECT_EQ(result.status, 503);
  EXPECT_EQ(result.error,
            "HTTP 503 Service Unavailable: <html> <b>Down for maintenance</b>? </html>");
  EXPECT_EQ(result.body, "");
}

TEST_F(HttpsFetch, Non200WithALongBodyKeepsOnlyAnExcerpt) {
  TlsServer server({.response = "HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n"
                                "3e8\r\n" +
                                std::string(1000, 'e') + "\r\n0\r\n\r\n"});
  ASSERT_TRUE(server.listening());
  const FetchResult result = https_get(settings_for(server.url()));
  EXPECT_EQ(result.status, 404);
  EXPECT_EQ(result.error, "HTTP 404 Not Found: " + std::string(200, 'e') + "...");
}

TEST_F(HttpsFetch, UnknownCaFailsVerification) {
  TlsServer server({.cert = pki().rogue_cert, .key = pki().rogue_key, .response = ok_response("")});
  ASSERT_TRUE(server.listening());
  const FetchResult result = https_get(settings_for(server.url()));
  EXPECT_FALSE(result.ok);
  EXPECT_EQ(result.status, 0);
  EXPECT_TRUE(Contains(result.error, "TLS handshake with 127.0.0.1:"));
  EXPECT_TRUE(Contains(result.error, "certificate verify failed: unable to get local issuer"));
}

TEST_F(HttpsFetch, CaDirectoryIsUsed) {
  TlsServer server({.response = ok_response("dir")});
  ASSERT_TRUE(server.listening());
  FetchSettings settings = settings_for(server.url());
  settings.ca_file.clear();
  settings.ca_dir = pki().ca_dir;
  const FetchResult result = https_get(settings);
  EXPECT_TRUE(result.ok) << result.error;
  EXPECT_EQ(result.body, "dir");
}

TEST_F(HttpsFetch, MissingCaDirectoryIsAnError) {
  FetchSettings settings = settings_for("https://127.0.0.1:1/");
  settings.ca_file.clear();
  settings.ca_dir = pki().dir + "/no-such-dir";
  const FetchResult result = https_get(settings);
  EXPECT_FALSE(result.ok);
  EXPECT_TRUE(Contains(result.error, "CA directory"));
}

TEST_F(HttpsFetch, AddressMismatchFailsVerification) {
  TlsServer server({.cert = pki().other_cert, .key = pki().other_key, .response = ok_response("")});
  ASSERT_TRUE(server.listening());
  const FetchResult result = https_get(settings_for(server.url()));
  EXPECT_FALSE(result.ok);
  EXPECT_TRUE(Contains(result.error, "certificate verify failed: IP address mismatch"));
}

TEST_F(HttpsFetch, NameMismatchFailsVerification) {
  TlsServer server({.cert = pki().other_cert, .key = pki().other_key, .response = ok_response("")});
  ASSERT_TRUE(server.listening());
  const FetchResult result = https_get(settings_for(server.url_at("localhost")));
  EXPECT_FALSE(result.ok);
  EXPECT_TRUE(Contains(result.error, "certificate verify failed: hostname mismatch"));
}

TEST_F(HttpsFetch, ClientCertificateWithSeparateKey) {
  TlsServer server({.response = ok_response("robot"), .require_client_cert = true});
  ASSERT_TRUE(server.listening());
  FetchSettings settings = settings_for(server.url());
  settings.certificate = pki().user_cert;
  settings.key = pki().user_key;
  const FetchResult result = https_get(settings);
  EXPECT_TRUE(result.ok) << result.error;
  EXPECT_EQ(server.finish().client_subject, "/O=cmsfront test/CN=Robot");
}

TEST_F(HttpsFetch, ClientCertificateAndKeyInOneFile) {
  TlsServer server({.response = ok_response("robot"), .require_client_cert = true});
  ASSERT_TRUE(server.listening());
  FetchSettings settings = settings_for(server.url());
  settings.certificate = pki().user_combined;
  const FetchResult result = https_get(settings);
  EXPECT_TRUE(result.ok) << result.error;
  EXPECT_EQ(server.finish().client_subject, "/O=cmsfront test/CN=Robot");
}

TEST_F(HttpsFetch, GridProxyAsClientCertificate) {
  TlsServer server({.response = ok_response("proxy"), .require_client_cert = true});
  ASSERT_TRUE(server.listening());
  FetchSettings settings = settings_for(server.url());
  settings.certificate = pki().proxy;  // proxy certificate, its key, then the user certificate
  const FetchResult result = https_get(settings);
  EXPECT_TRUE(result.ok) << result.error;
  const Seen& seen = server.finish();
  EXPECT_EQ(seen.handshake_error, "");
  EXPECT_EQ(seen.client_subject, pki().proxy_subject);
}

TEST_F(HttpsFetch, MissingClientCertificateIsAnError) {
  TlsServer server({.response = ok_response("robot"), .require_client_cert = true});
  ASSERT_TRUE(server.listening());
  const FetchResult result = https_get(settings_for(server.url()));
  EXPECT_FALSE(result.ok);
  EXPECT_EQ(result.status, 0);
  // TLS 1.3: the client finishes its handshake first and hears the server's alert when reading.
  EXPECT_TRUE(Contains(result.error, "certificate required")) << result.error;
  EXPECT_NE(server.finish().handshake_error, "");
}

TEST_F(HttpsFetch, MismatchedClientKeyIsAnError) {
  FetchSettings settings = settings_for("https://127.0.0.1:1/");
  settings.certificate = pki().user_cert;
  settings.key = pki().other_key;
  const FetchResult result = https_get(settings);
  EXPECT_FALSE(result.ok);
  EXPECT_TRUE(Contains(result.error, "client key")) << result.error;
}

TEST_F(HttpsFetch, EncryptedClientKeyIsAnErrorNotAPrompt) {
  FetchSettings settings = settings_for("https://127.0.0.1:1/");
  settings.certificate = pki().user_cert;
  settings.key = pki().user_encrypted_key;
  const FetchResult result = https_get(settings);
  EXPECT_FALSE(result.ok);
  EXPECT_TRUE(Contains(result.error, "loading the client key " + settings.key));
}

TEST_F(HttpsFetch, KeyWithoutCertificateIsAnError) {
  FetchSettings settings = settings_for("https://127.0.0.1:1/");
  settings.key = pki().user_key;
  const FetchResult result = https_get(settings);
  EXPECT_FALSE(result.ok);
  EXPECT_TRUE(Contains(result.error, "without a certificate"));
}

TEST_F(HttpsFetch, UnreadableClientCertificateIsAnError) {
  FetchSettings settings = settings_for("https://127.0.0.1:1/");
  settings.certificate = pki().dir + "/missing.pem";
  const FetchResult result = https_get(settings);
  EXPECT_FALSE(result.ok);
  EXPECT_TRUE(Contains(result.error, "loading the client certificate " + settings.certificate));
}

TEST_F(HttpsFetch, TimesOutWhenTheServerStallsAfterTheRequest) {
  TlsServer server({.stall = Stall::after_request});
  ASSERT_TRUE(server.listening());
  FetchSettings settings = settings_for(server.url());
  settings.timeout = 300ms;
  const auto start = std::chrono::steady_clock::now();
  const FetchResult result = https_get(settings);
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_FALSE(result.ok);
  EXPECT_EQ(result.error.rfind("timed out after 0.3s (reading the response", 0), 0u)
      << result.error;
  EXPECT_GE(took, 290ms);
  EXPECT_LT(took, 2s);
}

TEST_F(HttpsFetch, TimesOutWhenTheServerStallsTheHandshake) {
  TlsServer server({.stall = Stall::before_handshake});
  ASSERT_TRUE(server.listening());
  FetchSettings settings = settings_for(server.url());
  settings.timeout = 300ms;
  const auto start = std::chrono::steady_clock::now();
  const FetchResult result = https_get(settings);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
  EXPECT_FALSE(result.ok);
  EXPECT_EQ(result.error.rfind("timed out after 0.3s (TLS handshake", 0), 0u) << result.error;
}

TEST_F(HttpsFetch, TimesOutWhenConnectGetsNoAnswer) {
  // A listener whose accept queue is full drops further SYNs: a black hole on loopback.
  const Fd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof address;
  auto* generic = reinterpret_cast<sockaddr*>(&address);
  ASSERT_EQ(::bind(listener.get(), generic, length), 0);
  ASSERT_EQ(::listen(listener.get(), 0), 0);
  ASSERT_EQ(::getsockname(listener.get(), generic, &length), 0);
  std::vector<Fd> queued;
  for (int i = 0; i < 3; ++i) {
    queued.emplace_back(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    ::connect(queued.back().get(), generic, length);
  }
  std::this_thread::sleep_for(50ms);
  const std::string port = std::to_string(ntohs(address.sin_port));
  FetchSettings settings = settings_for("https://127.0.0.1:" + port + "/");
  settings.timeout = 300ms;
  const auto start = std::chrono::steady_clock::now();
  const FetchResult result = https_get(settings);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
  EXPECT_FALSE(result.ok);
  EXPECT_TRUE(Contains(result.error, "timed out after 0.3s (connecting to 127.0.0.1:" + port));
}

TEST_F(HttpsFetch, RefusesADeclaredLengthOverTheLimit) {
  TlsServer server({.response = "HTTP/1.1 200 OK\r\nContent-Length: 10000000\r\n\r\n"});
  ASSERT_TRUE(server.listening());
  FetchSettings settings = settings_for(server.url());
  settings.max_bytes = 1000;
  const FetchResult result = https_get(settings);
  EXPECT_FALSE(result.ok);
  EXPECT_EQ(result.error, "response larger than 1000 bytes");
}

TEST_F(HttpsFetch, RefusesAStreamedBodyOverTheLimit) {
  TlsServer server({.response = "HTTP/1.1 200 OK\r\n\r\n", .filler_bytes = 1024 * 1024});
  ASSERT_TRUE(server.listening());
  FetchSettings settings = settings_for(server.url());
  settings.max_bytes = 64 * 1024;
  const FetchResult result = https_get(settings);
  EXPECT_FALSE(result.ok);
  EXPECT_EQ(result.error, "response larger than 65536 bytes");
  EXPECT_EQ(result.body, "");
}

TEST_F(HttpsFetch, AcceptsABodyOfExactlyTheLimit) {
  TlsServer server({.response = ok_response(std::string(4096, 'j'))});
  ASSERT_TRUE(server.listening());
  FetchSettings settings = settings_for(server.url());
  settings.max_bytes = 4096;
  const FetchResult result = https_get(settings);
  EXPECT_TRUE(result.ok) << result.error;
}

TEST_F(HttpsFetch, ConnectionRefused) {
  // A port that was just free: bound, never listened on, closed.
  std::uint16_t port = 0;
  {
    const Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof address;
    ASSERT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&address), length), 0);
    ASSERT_EQ(::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&address), &length), 0);
    port = ntohs(address.sin_port);
  }
  const FetchResult result =
      https_get(settings_for("https://127.0.0.1:" + std::to_string(port) + "/"));
  EXPECT_FALSE(result.ok);
  EXPECT_EQ(result.error, "connect 127.0.0.1:" + std::to_string(port) + ": Connection refused");
}

}  // namespace
}  // namespace proxy
