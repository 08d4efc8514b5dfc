// libFuzzer entry for the HTTP/1.1 codec. The input is the wire (so corpus files are plain
// HTTP messages); a hash of it seeds the piece sizes it is split into. Besides "no crash, no UB" it
// checks that the verdict does not depend on how the bytes were split, since a split-dependent
// verdict is exactly what smuggling exploits.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "proxy/chunked_decoder.h"
#include "proxy/http1_parser.h"

namespace {

using proxy::http1::BodyFraming;
using proxy::http1::ChunkedDecoder;
using proxy::http1::HeadLimits;
using proxy::http1::Method;
using proxy::http1::ParseStatus;
using proxy::http1::RequestParser;
using proxy::http1::ResponseParser;

void check(bool ok) {
  if (!ok) std::abort();
}

// Deterministic piece sizes from the seed byte: mostly small, sometimes large.
class Pieces {
 public:
  explicit Pieces(std::uint32_t seed) : state_(seed | 1u) {}
  std::size_t next() {
    state_ = state_ * 1103515245u + 12345u;
    std::uint32_t r = state_ >> 16;
    return (r & 7u) == 0 ? 1 + (r % 4096u) : 1 + (r % 17u);
  }

 private:
  std::uint32_t state_;
};

struct Verdict {
  ParseStatus status;
  int error_status;
  std::size_t consumed;
};

template <typename Parser>
Verdict feed_pieces(Parser& parser, std::string_view wire, Pieces* pieces) {
  std::size_t offset = 0;
  while (offset < wire.size() && parser.status() == ParseStatus::need_more) {
    std::size_t n = wire.size() - offset;
    if (pieces != nullptr) n = std::min(n, pieces->next());
    std::size_t used = parser.feed(wire.substr(offset, n));
    check(used <= n);
    offset += used;
    if (used < n) break;
  }
  check(offset <= wire.size());
  if (parser.status() != ParseStatus::need_more) check(parser.feed("x") == 0);
  return {parser.status(), parser.error().status, offset};
}

bool clean_value(std::string_view v) {
  for (char c : v) {
    if (c == '\r' || c == '\n' || c == '\0') return false;
  }
  return true;
}

void check_request_head(const RequestParser& parser, std::string_view wire, std::size_t used) {
  const auto& head = parser.head();
  check(used >= 4 && wire.substr(used - 4, 4) == "\r\n\r\n");
  check(!head.host.empty() && !head.method_text.empty() && !head.path.empty());
  check(head.version_minor == 0 || head.version_minor == 1);
  check(head.framing != BodyFraming::until_close);
  check(head.headers.size() <= HeadLimits{}.header_count);
  for (const auto& field : head.headers) check(!field.name.empty() && clean_value(field.value));
  for (char c : head.method_text) check(c >= 'A' && c <= 'Z');
}

// Decodes the body whole and in pieces; both must end the same way at the same byte.
void decode_chunked(std::string_view body, Pieces& pieces) {
  std::size_t results[2] = {0, 0};
  ChunkedDecoder::State states[2] = {ChunkedDecoder::State::framing,
                                     ChunkedDecoder::State::framing};
  for (int pass = 0; pass < 2; ++pass) {
    ChunkedDecoder decoder(1024);
    std::size_t offset = 0;
    while (offset < body.size()) {
      std::size_t n = pass == 0 ? body.size() - offset : pieces.next();
      std::string_view piece = body.substr(offset, n);
      if (decoder.state() == ChunkedDecoder::State::framing) {
        std::size_t used = decoder.feed_framing(piece);
        check(used <= piece.size());
        offset += used;
      } else if (decoder.state() == ChunkedDecoder::State::data) {
        std::uint64_t take = decoder.data_remaining();
        if (take > piece.size()) take = piece.size();
        decoder.consume_data(take);
        offset += static_cast<std::size_t>(take);
      } else {
        break;
      }
    }
    check(offset <= body.size());
    results[pass] = offset;
    states[pass] = decoder.state();
  }
  check(results[0] == results[1] && states[0] == states[1]);
}

void fuzz_request(std::string_view wire, std::uint32_t seed) {
  RequestParser whole;
  Verdict a = feed_pieces(whole, wire, nullptr);
  RequestParser split;
  Pieces pieces(seed);
  Verdict b = feed_pieces(split, wire, &pieces);
  check(a.status == b.status && a.error_status == b.error_status);
  if (a.status == ParseStatus::error) check(a.error_status >= 400 && a.error_status < 600);
  if (a.status != ParseStatus::complete) return;
  check(a.consumed == b.consumed);
  check_request_head(whole, wire, a.consumed);
  split.reset();  // reuse must give the same result
  Verdict again = feed_pieces(split, wire, nullptr);
  check(again.status == a.status && again.consumed == a.consumed);
  if (whole.head().framing == BodyFraming::chunked) decode_chunked(wire.substr(a.consumed), pieces);
}

void fuzz_response(std::string_view wire, std::uint32_t seed) {
  Method method = (seed & 0x80u) != 0 ? Method::head : Method::get;
  ResponseParser whole;
  whole.expect_response_to(method);
  Verdict a = feed_pieces(whole, wire, nullptr);
  ResponseParser split;
  split.expect_response_to(method);
  Pieces pieces(seed);
  Verdict b = feed_pieces(split, wire, &pieces);
  check(a.status == b.status);
  if (a.status == ParseStatus::error) check(a.error_status == 502);
  if (a.status != ParseStatus::complete) return;
  check(a.consumed == b.consumed);
  for (const auto& field : whole.head().headers) check(clean_value(field.value));
  check(whole.head().status >= 100 && whole.head().status <= 599);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view wire(reinterpret_cast<const char*>(data), size);
  std::uint32_t seed = 2166136261u;  // FNV-1a
  for (std::size_t i = 0; i < size; ++i) seed = (seed ^ data[i]) * 16777619u;
  fuzz_request(wire, seed);
  fuzz_response(wire, seed);
  return 0;
}
