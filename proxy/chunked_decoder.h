// Incremental decoder of the chunked transfer coding (RFC 9112 §7.1), without I/O.
//
// The decoder never copies data bytes: it tells the caller how many data bytes come next
// (data_remaining()) and the caller moves them between evbuffers itself, then reports them
// with consume_data(). Framing bytes (size lines, extensions, CRLFs, trailers) are consumed
// one by one through feed_framing(), so a size line split across reads needs no buffering.
// Strict: 1-16 hex digits, no sign or 0x, extensions syntactically checked, CRLF only,
// trailer section bounded; anything else is an error and the connection must be closed.
//
// Owner: the exchange relaying one body; single thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace proxy::http1 {

class ChunkedDecoder {
 public:
  enum class State : std::uint8_t {
    framing,  // expecting framing bytes: call feed_framing()
    data,     // data_remaining() > 0 data bytes come next
    done,     // last chunk and trailers consumed
    error,
  };

  explicit ChunkedDecoder(std::size_t max_trailer_bytes = 16 * 1024);

  State state() const { return state_; }
  std::uint64_t data_remaining() const { return data_remaining_; }
  std::string_view error_reason() const { return error_reason_; }

  // Consumes framing bytes from the front of `bytes` (only valid in State::framing); stops at
  // the first data byte, at done, or at an error. Returns the number consumed.
  std::size_t feed_framing(std::string_view bytes);

  // The caller moved n <= data_remaining() data bytes.
  void consume_data(std::uint64_t n);

  void reset();

 private:
  // internal states of the framing machine are private to the .cpp
  bool step(unsigned char c);
  bool end_size_line(unsigned char c);
  bool trailer_byte(unsigned char c);
  bool fail(std::string_view reason);

  std::size_t max_trailer_bytes_;
  State state_ = State::framing;
  std::uint8_t phase_ = 0;
  std::uint8_t size_digits_ = 0;
  std::uint64_t size_ = 0;
  std::uint64_t data_remaining_ = 0;
  std::size_t trailer_bytes_ = 0;
  std::size_t line_bytes_ = 0;  // bytes of the current size line (extensions are bounded)
  std::string_view error_reason_;
};

}  // namespace proxy::http1
