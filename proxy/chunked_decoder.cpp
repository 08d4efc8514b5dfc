#include "proxy/chunked_decoder.h"

#include "proxy/http1_parser.h"

namespace proxy::http1 {

namespace {

// Phases of the framing machine; the names give the byte expected next.
enum Phase : std::uint8_t {
  size_first,       // first hex digit of a chunk-size
  size_digits,      // more hex digits, or what may follow the size
  ext_pre_semi,     // BWS before ";"
  ext_pre_name,     // BWS after ";", then the extension name
  ext_name,         // name characters
  ext_after_name,   // BWS after the name: "=" or ";" must follow
  ext_pre_value,    // BWS after "="
  ext_token,        // token value characters
  ext_quoted,       // inside a quoted-string
  ext_quoted_pair,  // the byte after a backslash
  ext_after_quote,  // after the closing quote
  size_lf,          // LF ending the size line
  data_cr,          // CR after the chunk data
  data_lf,          // LF after the chunk data
  trailer_start,    // start of a trailer line, or CR of the final empty line
  trailer_name,     // trailer field name
  trailer_value,    // trailer field value up to CR
  trailer_lf,       // LF ending a trailer line
  final_lf,         // LF ending the chunked body
  invalid = 0xff,   // a syntax error
};

// Long enough for any sane extension list; bounds the work an endless size line can cause.
constexpr std::size_t max_size_line_bytes = 4096;

bool is_ows(unsigned char c) { return c == ' ' || c == '\t'; }

int hex_value(unsigned char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// qdtext and the obs-text range (RFC 9110 §5.6.4).
bool is_qdtext(unsigned char c) {
  return c == '\t' || c == ' ' || c == 0x21 || (c >= 0x23 && c <= 0x5b) ||
         (c >= 0x5d && c <= 0x7e) || c >= 0x80;
}

bool is_quoted_pair_char(unsigned char c) { return c == '\t' || (c >= 0x20 && c != 0x7f); }

bool is_field_value_char(unsigned char c) { return c == '\t' || (c >= 0x20 && c != 0x7f); }

// Where the extension grammar goes after a complete name, value or quoted value.
Phase after_extension_item(unsigned char c) {
  if (c == ';') return ext_pre_name;
  if (is_ows(c)) return ext_pre_semi;
  if (c == '\r') return size_lf;
  return invalid;
}

// One step of the chunk-ext grammar; returns the next phase, or invalid.
Phase extension_step(std::uint8_t phase, unsigned char c) {
  switch (phase) {
    case ext_pre_semi:
      return is_ows(c) ? ext_pre_semi : c == ';' ? ext_pre_name : invalid;
    case ext_pre_name:
      return is_ows(c) ? ext_pre_name : is_token_char(c) ? ext_name : invalid;
    case ext_name:
      if (is_token_char(c)) return ext_name;
      if (c == '=') return ext_pre_value;
      return is_ows(c) ? ext_after_name : after_extension_item(c);
    case ext_after_name:
      return is_ows(c)  ? ext_after_name
             : c == '=' ? ext_pre_value
             : c == ';' ? ext_pre_name
                        : invalid;
    case ext_pre_value:
      if (is_ows(c)) return ext_pre_value;
      return c == '"' ? ext_quoted : is_token_char(c) ? ext_token : invalid;
    case ext_token:
      return is_token_char(c) ? ext_token : after_extension_item(c);
    case ext_quoted:
      if (c == '"') return ext_after_quote;
      if (c == '\\') return ext_quoted_pair;
      return is_qdtext(c) ? ext_quoted : invalid;
    case ext_quoted_pair:
      return is_quoted_pair_char(c) ? ext_quoted : invalid;
    case ext_after_quote:
      return after_extension_item(c);
    default:
      return invalid;
  }
}

// One step of the trailer section; returns the next phase, or invalid.
Phase trailer_step(std::uint8_t phase, unsigned char c) {
  switch (phase) {
    case trailer_start:
      if (c == '\r') return final_lf;
      return is_token_char(c) ? trailer_name : invalid;  // also refuses obs-fold
    case trailer_name:
      return is_token_char(c) ? trailer_name : c == ':' ? trailer_value : invalid;
    case trailer_value:
      return c == '\r' ? trailer_lf : is_field_value_char(c) ? trailer_value : invalid;
    case trailer_lf:
      return c == '\n' ? trailer_start : invalid;
    default:
      return invalid;
  }
}

}  // namespace

ChunkedDecoder::ChunkedDecoder(std::size_t max_trailer_bytes)
    : max_trailer_bytes_(max_trailer_bytes) {}

void ChunkedDecoder::reset() {
  state_ = State::framing;
  phase_ = size_first;
  size_digits_ = 0;
  size_ = 0;
  data_remaining_ = 0;
  trailer_bytes_ = 0;
  line_bytes_ = 0;
  error_reason_ = {};
}

bool ChunkedDecoder::fail(std::string_view reason) {
  state_ = State::error;
  error_reason_ = reason;
  return false;
}

std::size_t ChunkedDecoder::feed_framing(std::string_view bytes) {
  std::size_t used = 0;
  while (state_ == State::framing && used < bytes.size()) {
    step(static_cast<unsigned char>(bytes[used]));
    ++used;
  }
  return used;
}

void ChunkedDecoder::consume_data(std::uint64_t n) {
  if (state_ != State::data || n > data_remaining_) {
    fail("data consumed beyond the chunk");
    return;
  }
  data_remaining_ -= n;
  if (data_remaining_ == 0) {
    state_ = State::framing;
    phase_ = data_cr;
  }
}

// Consumes one framing byte. Data bytes never pass through here: the size line's LF switches
// to State::data and the caller moves the data itself.
bool ChunkedDecoder::step(unsigned char c) {
  switch (phase_) {
    case size_first: {
      int digit = hex_value(c);
      if (digit < 0) return fail("invalid chunk size");
      size_ = static_cast<std::uint64_t>(digit);
      size_digits_ = 1;
      line_bytes_ = 1;
      phase_ = size_digits;
      return true;
    }
    case size_digits: {
      int digit = hex_value(c);
      if (digit < 0) break;  // the size ended: an extension or the CR follows
      // 16 hex digits fill 64 bits exactly, so this bound is also the overflow check.
      if (++size_digits_ > 16) return fail("chunk size too long");
      size_ = (size_ << 4) | static_cast<std::uint64_t>(digit);
      ++line_bytes_;
      return true;
    }
    case size_lf:
      return end_size_line(c);
    case data_cr:
      if (c != '\r') return fail("missing CRLF after chunk data");
      phase_ = data_lf;
      return true;
    case data_lf:
      if (c != '\n') return fail("missing CRLF after chunk data");
      phase_ = size_first;
      return true;
    default:
      break;
  }
  if (phase_ >= trailer_start) return trailer_byte(c);
  if (++line_bytes_ > max_size_line_bytes) return fail("chunk size line too long");
  Phase next = phase_ == size_digits ? after_extension_item(c) : extension_step(phase_, c);
  if (next == invalid) return fail("malformed chunk size line");
  phase_ = next;
  return true;
}

bool ChunkedDecoder::end_size_line(unsigned char c) {
  if (c != '\n') return fail("bare CR in chunk size line");
  if (size_ == 0) {
    phase_ = trailer_start;
    return true;
  }
  state_ = State::data;
  data_remaining_ = size_;
  phase_ = data_cr;
  return true;
}

bool ChunkedDecoder::trailer_byte(unsigned char c) {
  if (++trailer_bytes_ > max_trailer_bytes_) return fail("trailer section too large");
  if (phase_ == final_lf) {
    if (c != '\n') return fail("malformed end of chunked body");
    state_ = State::done;
    return true;
  }
  Phase next = trailer_step(phase_, c);
  if (next == invalid) return fail("malformed trailer field");
  phase_ = next;
  return true;
}

}  // namespace proxy::http1
