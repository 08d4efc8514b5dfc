#include "proxy/http1_parser.h"

#include <algorithm>
#include <array>
#include <cstring>

namespace proxy::http1 {

namespace {

constexpr std::uint64_t max_content_length = std::uint64_t{1} << 62;

constexpr std::array<bool, 256> make_token_table() {
  std::array<bool, 256> table{};
  for (int c = '0'; c <= '9'; ++c) table[static_cast<std::size_t>(c)] = true;
  for (int c = 'a'; c <= 'z'; ++c) table[static_cast<std::size_t>(c)] = true;
  for (int c = 'A'; c <= 'Z'; ++c) table[static_cast<std::size_t>(c)] = true;
  for (char c : std::string_view("!#$%&'*+-.^_`|~")) table[static_cast<unsigned char>(c)] = true;
  return table;
}
constexpr std::array<bool, 256> token_table = make_token_table();

unsigned char byte_at(std::string_view s, std::size_t i) {
  return static_cast<unsigned char>(s[i]);
}

bool is_ows(char c) { return c == ' ' || c == '\t'; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_hex(char c) { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }
char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

std::string_view trim_ows(std::string_view s) {
  while (!s.empty() && is_ows(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_ows(s.back())) s.remove_suffix(1);
  return s;
}

bool is_token(std::string_view s) {
  if (s.empty()) return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (!token_table[byte_at(s, i)]) return false;
  }
  return true;
}

bool starts_with_ci(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && iequals(s.substr(0, prefix.size()), prefix);
}

// Calls fn(element) for each comma-separated element, OWS trimmed (empty ones included);
// stops early and returns false when fn does.
template <typename Fn>
bool for_each_element(std::string_view list, Fn&& fn) {
  while (true) {
    std::size_t comma = list.find(',');
    if (!fn(trim_ows(list.substr(0, comma)))) return false;
    if (comma == std::string_view::npos) return true;
    list.remove_prefix(comma + 1);
  }
}

bool has_token(const std::vector<std::string_view>& tokens, std::string_view wanted) {
  return std::any_of(tokens.begin(), tokens.end(),
                     [wanted](std::string_view t) { return iequals(t, wanted); });
}

// 1*DIGIT only: a sign, a list or inner whitespace would let two parsers read different
// lengths. The bound keeps every later sum of lengths far from overflow.
bool parse_content_length(std::string_view s, std::uint64_t& out) {
  if (s.empty()) return false;
  std::uint64_t value = 0;
  for (char c : s) {
    if (!is_digit(c)) return false;
    auto digit = static_cast<std::uint64_t>(c - '0');
    if (value > (max_content_length - digit) / 10) return false;  // checked before it can wrap
    value = value * 10 + digit;
  }
  out = value;
  return true;
}

bool is_reg_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) ||
         std::string_view("-._~!$&'()*+,;=").find(c) != std::string_view::npos;
}

bool valid_reg_name(std::string_view s) {
  if (s.empty()) return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%') {
      if (i + 2 >= s.size() || !is_hex(s[i + 1]) || !is_hex(s[i + 2])) return false;
      i += 2;
    } else if (!is_reg_name_char(s[i])) {
      return false;
    }
  }
  return true;
}

bool valid_ip_literal(std::string_view inner) {
  if (inner.find(':') == std::string_view::npos) return false;
  return std::all_of(inner.begin(), inner.end(),
                     [](char c) { return is_hex(c) || c == ':' || c == '.'; });
}

// host [ ":" port ] as in Host and in the authority of an absolute-form target.
bool valid_host(std::string_view v) {
  if (v.empty()) return false;
  std::size_t host_end = 0;
  if (v.front() == '[') {
    std::size_t close = v.find(']');
    if (close == std::string_view::npos || !valid_ip_literal(v.substr(1, close - 1))) return false;
    host_end = close + 1;
  } else {
    host_end = std::min(v.find(':'), v.size());
    if (!valid_reg_name(v.substr(0, host_end))) return false;
  }
  std::string_view port = v.substr(host_end);
  if (port.empty()) return true;
  if (port.front() != ':' || port.size() < 2 || port.size() > 6) return false;
  return std::all_of(port.begin() + 1, port.end(), is_digit);
}

// Splits "path[?query]"; an empty path (absolute-form "http://h?q") becomes "/".
void split_path(std::string_view s, RequestHead& head) {
  std::size_t q = s.find('?');
  head.path = s.substr(0, q);
  if (head.path.empty()) head.path = "/";
  head.has_query = q != std::string_view::npos;
  head.query = head.has_query ? s.substr(q + 1) : std::string_view();
}

std::size_t scheme_length(std::string_view target) {
  if (starts_with_ci(target, "http://")) return 7;
  if (starts_with_ci(target, "https://")) return 8;
  return 0;
}

std::string_view authority_of(std::string_view target) {
  std::string_view rest = target.substr(scheme_length(target));
  return rest.substr(0, rest.find_first_of("/?"));
}

// Returns the error phrase for a field line, or an empty view when it is valid.
std::string_view parse_field_line(std::string_view line, HeaderField& field) {
  if (is_ows(line.front())) return "obsolete line folding";
  std::size_t colon = line.find(':');
  if (colon == std::string_view::npos) return "header line without colon";
  std::string_view name = line.substr(0, colon);
  if (name.empty()) return "empty header name";
  if (is_ows(name.back())) return "whitespace before colon";
  if (!is_token(name)) return "invalid header name";
  std::string_view value = trim_ows(line.substr(colon + 1));
  for (std::size_t i = 0; i < value.size(); ++i) {
    unsigned char c = byte_at(value, i);
    if ((c < 0x20 && c != '\t') || c == 0x7f) return "control character in header value";
  }
  field = HeaderField{name, value};
  return {};
}

enum class Scan : std::uint8_t {
  need_more,
  complete,
  too_large,
  too_many_fields,
  bare_cr,
  bare_lf,
  leading_empty_line
};

struct ScanCursor {
  std::size_t& scan_from;
  std::size_t& line_start;
  std::size_t& line_count;
};

// Resumes the line scan where the last call stopped, so each byte is looked at once however
// the head is split. Checks line endings as it goes, so a head with a bare CR or LF fails at
// once instead of waiting for a terminator that a lenient peer never sends.
Scan scan_lines(std::string_view buf, ScanCursor cur, std::size_t max_fields) {
  for (std::size_t i = cur.scan_from; i < buf.size(); ++i) {
    char c = buf[i];
    if (c == '\n') return Scan::bare_lf;  // a CRLF's LF is skipped below
    if (c != '\r') continue;
    if (i + 1 == buf.size()) {
      cur.scan_from = i;  // look at this CR again once its successor arrives
      return Scan::need_more;
    }
    if (buf[i + 1] != '\n') return Scan::bare_cr;
    bool empty_line = i == cur.line_start;
    cur.line_start = i + 2;
    cur.scan_from = i + 2;
    ++i;
    if (empty_line) return cur.line_count == 0 ? Scan::leading_empty_line : Scan::complete;
    if (++cur.line_count > max_fields + 1) return Scan::too_many_fields;
  }
  cur.scan_from = buf.size();
  return Scan::need_more;
}

struct FeedResult {
  std::size_t consumed;
  Scan scan;
};

// Buffers at most up to the size limit and never keeps bytes past the head's end.
FeedResult buffer_head(std::string& buffer, std::string_view data, const HeadLimits& limits,
                       ScanCursor cur) {
  std::size_t old_size = buffer.size();
  std::size_t room = limits.header_size > old_size ? limits.header_size - old_size : 0;
  std::size_t take = std::min(data.size(), room);
  buffer.append(data.data(), take);
  Scan scan = scan_lines(buffer, cur, limits.header_count);
  if (scan == Scan::complete) {
    buffer.resize(cur.scan_from);
    return {cur.scan_from - old_size, scan};
  }
  if (scan == Scan::need_more && buffer.size() >= limits.header_size) scan = Scan::too_large;
  return {take, scan};
}

// Splits the validated head (no bare CR/LF) into lines; calls fn on each header line.
template <typename Fn>
bool for_each_header_line(std::string_view head, std::size_t pos, Fn&& fn) {
  while (true) {
    std::size_t eol = head.find('\r', pos);
    if (eol == pos) return true;
    if (!fn(head.substr(pos, eol - pos))) return false;
    pos = eol + 2;
  }
}

Method method_from(std::string_view text) {
  struct Entry {
    std::string_view name;
    Method method;
  };
  static constexpr std::array<Entry, 7> table{{{"GET", Method::get},
                                               {"HEAD", Method::head},
                                               {"POST", Method::post},
                                               {"PUT", Method::put},
                                               {"DELETE", Method::del},
                                               {"OPTIONS", Method::options},
                                               {"PATCH", Method::patch}}};
  for (const Entry& e : table) {
    if (e.name == text) return e.method;
  }
  return Method::other;
}

bool is_known_coding(std::string_view coding) {
  static constexpr std::array<std::string_view, 7> known{
      "chunked", "gzip", "x-gzip", "deflate", "compress", "x-compress", "identity"};
  return std::any_of(known.begin(), known.end(),
                     [coding](std::string_view k) { return iequals(k, coding); });
}

void clear_request_head(RequestHead& head) {
  head.headers.clear();
  head.connection_tokens.clear();
  std::vector<HeaderField> headers = std::move(head.headers);
  std::vector<std::string_view> tokens = std::move(head.connection_tokens);
  head = RequestHead{};
  head.headers = std::move(headers);
  head.connection_tokens = std::move(tokens);
}

}  // namespace

bool listed_in(const std::vector<std::string_view>& tokens, std::string_view name) {
  for (std::string_view token : tokens) {
    if (iequals(token, name)) return true;
  }
  return false;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

std::string_view method_name(Method method) {
  switch (method) {
    case Method::get:
      return "GET";
    case Method::head:
      return "HEAD";
    case Method::post:
      return "POST";
    case Method::put:
      return "PUT";
    case Method::del:
      return "DELETE";
    case Method::options:
      return "OPTIONS";
    case Method::patch:
      return "PATCH";
    case Method::other:
      break;
  }
  return "OTHER";
}

bool is_token_char(unsigned char c) { return token_table[c]; }

// ---------------------------------------------------------------------------------------------
// RequestParser

RequestParser::RequestParser(HeadLimits limits) : limits_(limits) {}

void RequestParser::reset() {
  buffer_.clear();
  scan_from_ = 0;
  line_start_ = 0;
  line_count_ = 0;
  status_ = ParseStatus::need_more;
  clear_request_head(head_);
  error_ = ParseError{};
}

std::size_t RequestParser::feed(std::string_view data) {
  if (status_ != ParseStatus::need_more || data.empty()) return 0;
  FeedResult r = buffer_head(buffer_, data, limits_, {scan_from_, line_start_, line_count_});
  switch (r.scan) {
    case Scan::need_more:
      break;
    case Scan::complete:
      if (parse_complete_head()) status_ = ParseStatus::complete;
      break;
    case Scan::too_large:
      // Until the request line ends, the size is the target's fault.
      if (line_count_ == 0)
        fail(414, "request line too long");
      else
        fail(431, "header section too large");
      break;
    case Scan::too_many_fields:
      fail(431, "too many header fields");
      break;
    case Scan::bare_cr:
      fail(400, "bare CR in head");
      break;
    case Scan::bare_lf:
      fail(400, "bare LF in head");
      break;
    case Scan::leading_empty_line:
      fail(400, "empty line before request line");
      break;
  }
  return r.consumed;
}

bool RequestParser::fail(int status, std::string_view reason) {
  status_ = ParseStatus::error;
  error_ = ParseError{status, reason};
  return false;
}

bool RequestParser::parse_complete_head() {
  std::string_view head(buffer_);
  std::size_t eol = head.find('\r');
  if (!parse_request_line(head.substr(0, eol))) return false;
  bool ok = for_each_header_line(head, eol + 2, [this](std::string_view line) {
    HeaderField field;
    std::string_view problem = parse_field_line(line, field);
    if (!problem.empty()) return fail(400, problem);
    head_.headers.push_back(field);
    return note_header(field);
  });
  return ok && apply_framing_rules();
}

bool RequestParser::parse_request_line(std::string_view line) {
  std::size_t sp1 = line.find(' ');
  if (sp1 == std::string_view::npos) return fail(400, "malformed request line");
  std::string_view method = line.substr(0, sp1);
  bool upper = !method.empty() && std::all_of(method.begin(), method.end(),
                                              [](char c) { return c >= 'A' && c <= 'Z'; });
  if (!upper) return fail(400, "invalid method");
  std::string_view rest = line.substr(sp1 + 1);
  std::size_t sp2 = rest.find(' ');
  if (sp2 == std::string_view::npos) return fail(400, "malformed request line");
  std::string_view version = rest.substr(sp2 + 1);
  bool version_syntax = version.size() == 8 && version.substr(0, 5) == "HTTP/" &&
                        is_digit(version[5]) && version[6] == '.' && is_digit(version[7]);
  if (!version_syntax) return fail(400, "malformed HTTP version");
  if (version[5] != '1' || (version[7] != '0' && version[7] != '1')) {
    return fail(505, "HTTP version not supported");
  }
  head_.method_text = method;
  head_.method = method_from(method);
  head_.version_minor = version[7] - '0';
  return parse_target(rest.substr(0, sp2));
}

bool RequestParser::parse_target(std::string_view target) {
  if (target.empty()) return fail(400, "malformed request line");
  for (std::size_t i = 0; i < target.size(); ++i) {
    unsigned char c = byte_at(target, i);
    if (c <= 0x20 || c == 0x7f || c == '#') return fail(400, "invalid character in target");
  }
  head_.target = target;
  if (target.front() == '/') {
    split_path(target, head_);
    return true;
  }
  if (target == "*") {
    if (head_.method != Method::options) return fail(400, "asterisk target without OPTIONS");
    head_.path = target;
    return true;
  }
  std::size_t scheme = scheme_length(target);
  if (scheme == 0) return fail(400, "invalid request target");
  std::string_view authority = authority_of(target);
  if (!valid_host(authority)) return fail(400, "invalid authority in target");
  head_.absolute_form = true;
  split_path(target.substr(scheme + authority.size()), head_);
  return true;
}

// Records what the framing and routing decisions need from one field. Duplicates are
// detected through head_: framing != none means a CL or TE was already seen.
bool RequestParser::note_header(const HeaderField& field) {
  std::string_view name = field.name;
  if (iequals(name, "host")) {
    if (!head_.host.empty()) return fail(400, "duplicate Host");
    if (!valid_host(field.value)) return fail(400, "invalid Host");
    head_.host = field.value;
  } else if (iequals(name, "content-length")) {
    if (head_.framing == BodyFraming::content_length) return fail(400, "duplicate Content-Length");
    if (head_.framing == BodyFraming::chunked) {
      return fail(400, "Content-Length with Transfer-Encoding");
    }
    if (!parse_content_length(field.value, head_.content_length)) {
      return fail(400, "invalid Content-Length");
    }
    head_.framing = BodyFraming::content_length;
  } else if (iequals(name, "transfer-encoding")) {
    return note_transfer_encoding(field.value);
  } else if (iequals(name, "connection")) {
    return for_each_element(field.value, [this](std::string_view token) {
      if (token.empty()) return true;  // RFC 9110 §5.6.1: empty list elements are ignored
      if (!is_token(token)) return fail(400, "invalid Connection option");
      head_.connection_tokens.push_back(token);
      return true;
    });
  } else if (iequals(name, "expect") && head_.version_minor == 1) {
    if (!iequals(field.value, "100-continue")) return fail(417, "unsupported expectation");
    head_.expect_continue = true;
  }
  return true;
}

// Only a lone "chunked" has one reading everywhere; any other coding list is refused, with
// 501 when a coding is one we have never heard of.
bool RequestParser::note_transfer_encoding(std::string_view value) {
  if (head_.version_minor == 0) return fail(400, "Transfer-Encoding in HTTP/1.0");
  if (head_.framing == BodyFraming::chunked) return fail(400, "duplicate Transfer-Encoding");
  if (head_.framing == BodyFraming::content_length) {
    return fail(400, "Content-Length with Transfer-Encoding");
  }
  if (iequals(value, "chunked")) {
    head_.framing = BodyFraming::chunked;
    return true;
  }
  bool all_known = true;
  bool well_formed = for_each_element(value, [&all_known](std::string_view coding) {
    if (!is_token(coding)) return false;
    all_known = all_known && is_known_coding(coding);
    return true;
  });
  if (well_formed && !all_known) return fail(501, "unknown transfer coding");
  return fail(400, "unsupported Transfer-Encoding");
}

bool RequestParser::apply_framing_rules() {
  if (head_.host.empty()) return fail(400, "missing Host");
  if (head_.absolute_form && !iequals(authority_of(head_.target), head_.host)) {
    return fail(400, "target authority differs from Host");
  }
  bool close = has_token(head_.connection_tokens, "close");
  head_.keep_alive =
      !close && (head_.version_minor == 1 || has_token(head_.connection_tokens, "keep-alive"));
  return true;
}

// ---------------------------------------------------------------------------------------------
// ResponseParser

namespace {

struct ResponseFields {
  bool has_content_length = false;
  std::uint64_t content_length = 0;
  int transfer_encodings = 0;
  std::string_view transfer_encoding;
};

// Returns the error phrase, or an empty view when the field is acceptable.
std::string_view note_response_header(const HeaderField& field, ResponseFields& fields,
                                      std::vector<std::string_view>& tokens) {
  if (iequals(field.name, "content-length")) {
    std::uint64_t value = 0;
    if (!parse_content_length(field.value, value)) return "invalid Content-Length";
    if (fields.has_content_length && value != fields.content_length) {
      return "conflicting Content-Length";
    }
    fields.has_content_length = true;
    fields.content_length = value;
  } else if (iequals(field.name, "transfer-encoding")) {
    ++fields.transfer_encodings;
    fields.transfer_encoding = field.value;
  } else if (iequals(field.name, "connection")) {
    bool ok = for_each_element(field.value, [&tokens](std::string_view token) {
      if (token.empty()) return true;
      if (!is_token(token)) return false;
      tokens.push_back(token);
      return true;
    });
    if (!ok) return "invalid Connection option";
  }
  return {};
}

void clear_response_head(ResponseHead& head) {
  head.headers.clear();
  head.connection_tokens.clear();
  std::vector<HeaderField> headers = std::move(head.headers);
  std::vector<std::string_view> tokens = std::move(head.connection_tokens);
  head = ResponseHead{};
  head.headers = std::move(headers);
  head.connection_tokens = std::move(tokens);
}

}  // namespace

ResponseParser::ResponseParser(HeadLimits limits) : limits_(limits) {}

void ResponseParser::expect_response_to(Method request_method) { request_method_ = request_method; }

void ResponseParser::reset() {
  buffer_.clear();
  scan_from_ = 0;
  line_start_ = 0;
  line_count_ = 0;
  status_ = ParseStatus::need_more;
  clear_response_head(head_);
  error_ = ParseError{};
}

std::size_t ResponseParser::feed(std::string_view data) {
  if (status_ != ParseStatus::need_more || data.empty()) return 0;
  FeedResult r = buffer_head(buffer_, data, limits_, {scan_from_, line_start_, line_count_});
  switch (r.scan) {
    case Scan::need_more:
      break;
    case Scan::complete:
      if (parse_complete_head()) status_ = ParseStatus::complete;
      break;
    case Scan::too_large:
      fail("response head too large");
      break;
    case Scan::too_many_fields:
      fail("too many header fields in response");
      break;
    case Scan::bare_cr:
      fail("bare CR in response head");
      break;
    case Scan::bare_lf:
      fail("bare LF in response head");
      break;
    case Scan::leading_empty_line:
      fail("empty line before status line");
      break;
  }
  return r.consumed;
}

bool ResponseParser::fail(std::string_view reason) {
  status_ = ParseStatus::error;
  error_ = ParseError{502, reason};
  return false;
}

bool ResponseParser::parse_status_line(std::string_view line) {
  if (line.size() < 12 || line[8] != ' ') return fail("malformed status line");
  std::string_view version = line.substr(0, 8);
  if (version != "HTTP/1.1" && version != "HTTP/1.0") return fail("unsupported response version");
  std::string_view code = line.substr(9, 3);
  if (!std::all_of(code.begin(), code.end(), is_digit)) return fail("malformed status code");
  int status = (code[0] - '0') * 100 + (code[1] - '0') * 10 + (code[2] - '0');
  if (status < 100 || status > 599) return fail("status code out of range");
  if (status == 101) return fail("upgrade not supported");
  if (line.size() > 12 && line[12] != ' ') return fail("malformed status line");
  std::string_view reason = line.size() > 12 ? line.substr(13) : std::string_view();
  for (std::size_t i = 0; i < reason.size(); ++i) {
    unsigned char c = byte_at(reason, i);
    if ((c < 0x20 && c != '\t') || c == 0x7f) return fail("control character in reason");
  }
  head_.status = status;
  head_.reason = reason;
  head_.version_minor = version[7] - '0';
  return true;
}

bool ResponseParser::parse_complete_head() {
  std::string_view head(buffer_);
  std::size_t eol = head.find('\r');
  if (!parse_status_line(head.substr(0, eol))) return false;
  ResponseFields fields;
  bool ok = for_each_header_line(head, eol + 2, [this, &fields](std::string_view line) {
    HeaderField field;
    std::string_view problem = parse_field_line(line, field);
    if (problem.empty()) problem = note_response_header(field, fields, head_.connection_tokens);
    if (!problem.empty()) return fail(problem);
    head_.headers.push_back(field);
    return true;
  });
  if (!ok) return false;
  int s = head_.status;
  bool no_body = head_.informational() || s == 204 || s == 304 || request_method_ == Method::head;
  if (no_body) {
    head_.framing = BodyFraming::none;
  } else if (fields.transfer_encodings > 0) {
    if (fields.transfer_encodings > 1 || !iequals(fields.transfer_encoding, "chunked")) {
      return fail("unsupported Transfer-Encoding in response");
    }
    if (fields.has_content_length) return fail("Content-Length with Transfer-Encoding");
    if (head_.version_minor == 0) return fail("Transfer-Encoding in HTTP/1.0 response");
    head_.framing = BodyFraming::chunked;
  } else if (fields.has_content_length) {
    head_.framing = BodyFraming::content_length;
    head_.content_length = fields.content_length;
  } else {
    head_.framing = BodyFraming::until_close;
  }
  const auto& tokens = head_.connection_tokens;
  head_.keep_alive = !has_token(tokens, "close") && head_.framing != BodyFraming::until_close &&
                     (head_.version_minor == 1 || has_token(tokens, "keep-alive"));
  return true;
}

}  // namespace proxy::http1
