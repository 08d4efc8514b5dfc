// Strict, incremental HTTP/1.1 message-head parser (RFC 9112), without I/O.
//
// Bytes in, one parsed head out. The parser copies the head (request line + header section)
// into a buffer it owns and reuses across messages, so the views in RequestHead/ResponseHead
// stay valid until reset(); it never consumes a byte past the empty line that ends the head,
// so body bytes stay in the caller's buffer. One rule for line endings: CRLF, everywhere;
// a bare LF or bare CR is an error. Every ambiguity that could let two parsers disagree on
// message boundaries is rejected (see docs/security.md in the shared material).
//
// Owner: one ClientConnection (requests) or BackendConnection (responses); single thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace proxy::http1 {

struct HeaderField {
  std::string_view name;   // as received (case preserved), a valid token
  std::string_view value;  // leading/trailing whitespace removed; never contains CR, LF, NUL
};

enum class BodyFraming : std::uint8_t {
  none,            // no body (requests without CL/TE; 1xx/204/304 or HEAD responses)
  content_length,  // exactly content_length bytes follow
  chunked,         // chunked transfer coding, decode with ChunkedDecoder
  until_close,     // responses only: body ends when the backend closes
};

enum class Method : std::uint8_t { get, head, post, put, del, options, patch, other };

// Why a head was refused: the HTTP status to answer with and a short phrase for logs and the
// error page. After an error the connection must be closed.
struct ParseError {
  int status = 0;           // 400, 414, 431, 501, 505 (requests); 502 for responses
  std::string_view reason;  // static string, e.g. "conflicting Content-Length"
};

struct HeadLimits {
  std::size_t header_size = 64 * 1024;  // request/status line + all header lines + CRLFs
  std::size_t header_count = 100;
};

struct RequestHead {
  std::string_view method_text;  // as sent; always [A-Z]+ (a lower-case method is a 400)
  Method method = Method::other;
  std::string_view target;  // the request-target as sent
  std::string_view path;    // path part (origin-form, or the path of an absolute-form)
  std::string_view query;   // after '?', without it
  bool has_query = false;
  bool absolute_form = false;  // target was http(s)://authority/path; authority == Host checked
  int version_minor = 1;       // HTTP/1.0 or HTTP/1.1 only
  std::string_view host;       // the single Host header value (required)
  std::vector<HeaderField> headers;                 // every field, in order, Host included
  std::vector<std::string_view> connection_tokens;  // options listed in Connection headers
  BodyFraming framing = BodyFraming::none;
  std::uint64_t content_length = 0;
  bool keep_alive = true;        // 1.1 unless "Connection: close"; 1.0 only with "keep-alive"
  bool expect_continue = false;  // "Expect: 100-continue"
};

struct ResponseHead {
  int status = 0;
  std::string_view reason;
  int version_minor = 1;
  std::vector<HeaderField> headers;
  std::vector<std::string_view> connection_tokens;
  BodyFraming framing = BodyFraming::none;
  std::uint64_t content_length = 0;
  bool keep_alive = true;  // the backend connection may be reused after this response
  bool informational() const { return status >= 100 && status < 200; }
};

enum class ParseStatus : std::uint8_t { need_more, complete, error };

// Parses request heads. Usage: feed() until status() != need_more; on complete, head() is
// valid (views into this parser) until reset(); consumed bytes may be dropped by the caller.
class RequestParser {
 public:
  explicit RequestParser(HeadLimits limits = {});

  // Consumes bytes of the head, never past its end; returns how many were consumed.
  // Returns 0 once the status is complete or error.
  std::size_t feed(std::string_view data);

  ParseStatus status() const { return status_; }
  const RequestHead& head() const { return head_; }
  const ParseError& error() const { return error_; }
  bool started() const { return !buffer_.empty(); }  // a byte of a new head has arrived

  void reset();  // ready for the next message; keeps the buffers' capacity

 private:
  bool parse_complete_head();
  bool parse_request_line(std::string_view line);
  bool parse_target(std::string_view target);
  bool note_header(const HeaderField& field);
  bool note_transfer_encoding(std::string_view value);
  bool apply_framing_rules();
  bool fail(int status, std::string_view reason);

  HeadLimits limits_;
  std::string buffer_;
  std::size_t scan_from_ = 0;   // where the search for CRLFCRLF resumes
  std::size_t line_start_ = 0;  // offset of the line the scan is inside
  std::size_t line_count_ = 0;  // complete lines so far (request line included)
  ParseStatus status_ = ParseStatus::need_more;
  RequestHead head_;
  ParseError error_;
};

// Parses backend response heads. Any violation is a 502 for the client.
class ResponseParser {
 public:
  explicit ResponseParser(HeadLimits limits = {});

  // Must be called before each response: a HEAD request's response has no body.
  void expect_response_to(Method request_method);

  std::size_t feed(std::string_view data);
  ParseStatus status() const { return status_; }
  const ResponseHead& head() const { return head_; }
  const ParseError& error() const { return error_; }
  bool started() const { return !buffer_.empty(); }

  void reset();  // after a 1xx head or a complete response; keeps the request method

 private:
  bool parse_complete_head();
  bool parse_status_line(std::string_view line);
  bool fail(std::string_view reason);

  HeadLimits limits_;
  Method request_method_ = Method::get;
  std::string buffer_;
  std::size_t scan_from_ = 0;
  std::size_t line_start_ = 0;
  std::size_t line_count_ = 0;
  ParseStatus status_ = ParseStatus::need_more;
  ResponseHead head_;
  ParseError error_;
};

// Case-insensitive ASCII comparison for header names and tokens.
bool iequals(std::string_view a, std::string_view b);

// True when `name` is one of `tokens` (case-insensitive): a field a Connection header lists.
bool listed_in(const std::vector<std::string_view>& tokens, std::string_view name);

// Method names as sent on the wire (the canonical upper-case text).
std::string_view method_name(Method method);

// RFC 9110 tchar: the characters of a token (header names, codings, Connection options).
bool is_token_char(unsigned char c);

}  // namespace proxy::http1
