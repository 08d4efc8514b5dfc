// The codec seam: what an Exchange needs from the protocol that carries its client side.
//
// The exchange speaks to backends (HTTP/1.1) and never to the client protocol directly: it
// reads the request head and the *decoded* request body through this interface and hands back
// a parsed response head and raw response body bytes, which the implementation frames for its
// protocol. ClientConnection implements it for HTTP/1.1 (Content-Length or chunked framing,
// keep-alive, 100-continue); an HTTP/2 stream implements the same calls on nghttp2 frames.
//
// Owner: the protocol object owns both itself and the Exchange it serves; single thread.
#pragma once

#include <event2/buffer.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "proxy/failure.h"
#include "proxy/http1_parser.h"
#include "tls/client_identity.h"

namespace proxy {

class Worker;
struct Config;

class Downstream {
 public:
  enum class BodyStatus : std::uint8_t {
    more,       // more body may come; `moved` bytes were moved now
    done,       // the body is complete (after the `moved` bytes)
    error,      // invalid framing: the request cannot continue
    too_large,  // over limits.body_size
  };

  // --- the request ---
  virtual const http1::RequestHead& request() const = 0;
  // The request body's length when the client announced it; nullopt when it streams without
  // one (chunked; an HTTP/2 stream without content-length). Not called without a body.
  virtual std::optional<std::uint64_t> request_body_length() const = 0;
  virtual bool request_has_body() const = 0;
  // The exchange has somewhere to put the body now (100-continue, where the protocol has it).
  virtual void request_body_wanted() = 0;
  // Moves up to `limit` decoded body bytes into `to` without copying them.
  virtual BodyStatus read_request_body(evbuffer* to, std::size_t limit, std::size_t& moved) = 0;

  // --- the response ---
  // A 1xx response other than 100 (the implementation may drop it for old clients).
  virtual void send_interim(const http1::ResponseHead& head) = 0;
  // The final head; body_length: the exact length, nullopt when unknown (sent as it arrives).
  // `has_body` false for HEAD/204/304 responses.
  virtual void send_response_head(const http1::ResponseHead& head, bool has_body,
                                  std::optional<std::uint64_t> body_length) = 0;
  virtual void send_response_body(evbuffer* from, std::size_t n) = 0;
  // Bytes accepted by send_response_body() not yet written to the client (backpressure).
  virtual std::size_t response_backlog() const = 0;
  // The response is complete: the exchange is over (it may be reused from the next loop turn).
  virtual void end_response() = 0;
  // The exchange ended without a response head: answer locally.
  virtual void send_failure(Failure failure) = 0;
  // Part of the response is out and it cannot be completed: make the truncation visible.
  virtual void abort_response() = 0;

  // --- context ---
  virtual Worker& worker() const = 0;
  virtual const Config& config() const = 0;
  virtual std::string_view client_ip() const = 0;
  virtual bool is_tls() const = 0;
  virtual std::uint64_t id() const = 0;
  // Storage reused for building heads, so a request allocates nothing once warm.
  virtual std::string& scratch() = 0;
  // The client's certificate identity, fixed for the connection at its TLS handshake (the
  // "no certificate" identity on plain HTTP).
  virtual const tls::ClientIdentity& identity() const = 0;
  // The current request's CMS identity header lines ("name: value\r\n"...), signed; empty on
  // routes with auth = none.
  virtual std::string_view identity_headers() const = 0;

 protected:
  Downstream() = default;
  virtual ~Downstream() = default;
  Downstream(const Downstream&) = delete;
  Downstream& operator=(const Downstream&) = delete;
};

}  // namespace proxy
