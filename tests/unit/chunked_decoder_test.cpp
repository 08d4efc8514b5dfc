#include "proxy/chunked_decoder.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>

namespace proxy::http1 {
namespace {

using namespace std::string_literals;
using State = ChunkedDecoder::State;

struct Decoded {
  State state;
  std::size_t consumed;  // framing and data bytes taken from the input
  std::string body;
};

// Plays the caller: framing bytes go through feed_framing(), data bytes are "moved" into
// body and reported with consume_data(). Input arrives in pieces of `step` bytes (0: whole).
Decoded decode(ChunkedDecoder& decoder, std::string_view wire, std::size_t step = 0) {
  Decoded out{State::framing, 0, {}};
  std::size_t end = 0;  // bytes of the wire delivered so far
  while (decoder.state() == State::framing || decoder.state() == State::data) {
    if (out.consumed == end) {
      if (end == wire.size()) break;
      end = step == 0 ? wire.size() : std::min(wire.size(), end + step);
    }
    std::string_view available = wire.substr(out.consumed, end - out.consumed);
    if (decoder.state() == State::framing) {
      std::size_t used = decoder.feed_framing(available);
      EXPECT_LE(used, available.size());
      out.consumed += used;
    } else {
      std::size_t n = static_cast<std::size_t>(
          std::min<std::uint64_t>(decoder.data_remaining(), available.size()));
      out.body.append(available.substr(0, n));
      decoder.consume_data(n);
      out.consumed += n;
    }
  }
  out.state = decoder.state();
  return out;
}

Decoded decode(std::string_view wire, std::size_t step = 0) {
  ChunkedDecoder decoder;
  return decode(decoder, wire, step);
}

// Checks that wire decodes to body, taking exactly its own bytes, however it is split.
void expect_body(std::string_view wire, std::string_view body, std::string_view after = "") {
  std::string with_next = std::string(wire) + std::string(after);
  for (std::size_t step = 0; step <= wire.size(); ++step) {
    SCOPED_TRACE("piece size " + std::to_string(step));
    Decoded d = decode(with_next, step);
    ASSERT_EQ(d.state, State::done);
    EXPECT_EQ(d.body, body);
    EXPECT_EQ(d.consumed, wire.size());
  }
}

void expect_error(std::string_view wire) {
  for (std::size_t step : {0, 1, 2, 5}) {
    SCOPED_TRACE("piece size " + std::to_string(step));
    ChunkedDecoder decoder;
    Decoded d = decode(decoder, wire, step);
    EXPECT_EQ(d.state, State::error);
    EXPECT_FALSE(decoder.error_reason().empty());
    EXPECT_EQ(decoder.feed_framing("0\r\n\r\n"), 0u);
  }
}

TEST(ChunkedDecoder, DecodesASimpleBody) {
  expect_body("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", "hello world");
}

TEST(ChunkedDecoder, StopsAtTheEndOfTheBody) {
  expect_body("3\r\nabc\r\n0\r\n\r\n", "abc", "GET / HTTP/1.1\r\n\r\n");
}

TEST(ChunkedDecoder, DecodesAnEmptyBody) { expect_body("0\r\n\r\n", ""); }

TEST(ChunkedDecoder, GivesTheSameResultAtEverySplitPoint) {
  std::string wire =
      "4;a=b\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX-T: v\r\n\r\n";
  for (std::size_t cut = 0; cut <= wire.size(); ++cut) {
    SCOPED_TRACE("cut at " + std::to_string(cut));
    ChunkedDecoder decoder;
    Decoded first = decode(decoder, wire.substr(0, cut), 0);
    ASSERT_NE(first.state, State::error);
    Decoded rest = decode(decoder, std::string_view(wire).substr(first.consumed), 0);
    EXPECT_EQ(rest.state, State::done);
    EXPECT_EQ(first.body + rest.body, "Wikipedia in\r\n\r\nchunks.");
    EXPECT_EQ(first.consumed + rest.consumed, wire.size());
  }
}

TEST(ChunkedDecoder, ReadsHexSizesInEitherCase) {
  expect_body("a\r\n0123456789\r\nA\r\n0123456789\r\n0\r\n\r\n", "01234567890123456789");
  expect_body("000001\r\nx\r\n000\r\n\r\n", "x");
}

TEST(ChunkedDecoder, AcceptsSixteenHexDigitsWithoutOverflow) {
  ChunkedDecoder d;
  EXPECT_EQ(d.feed_framing("ffffffffffffffff\r\n"), 18u);
  EXPECT_EQ(d.state(), State::data);
  EXPECT_EQ(d.data_remaining(), UINT64_MAX);
  ChunkedDecoder half;
  EXPECT_EQ(half.feed_framing("8000000000000000\r\nxy"), 18u);
  EXPECT_EQ(half.data_remaining(), std::uint64_t{1} << 63);
  half.consume_data(2);
  EXPECT_EQ(half.data_remaining(), (std::uint64_t{1} << 63) - 2);
  EXPECT_EQ(half.state(), State::data);
}

TEST(ChunkedDecoder, RejectsMoreThanSixteenHexDigits) {
  expect_error("00000000000000001\r\nx\r\n0\r\n\r\n");
  expect_error("10000000000000000\r\n");
}

TEST(ChunkedDecoder, RejectsMalformedChunkSizes) {
  for (std::string_view wire : {"0x5\r\nhello\r\n0\r\n\r\n", "-1\r\n", "\r\n", "+5\r\nhello\r\n",
                                " 5\r\nhello\r\n", "5 \r\nhello\r\n", "g\r\n", "5\r\r\nhello"}) {
    SCOPED_TRACE(wire);
    expect_error(wire);
  }
}

TEST(ChunkedDecoder, RejectsBareLineEndingsInTheSizeLine) {
  expect_error("5\nhello\r\n0\r\n\r\n");
  expect_error("5\rhello\r\n0\r\n\r\n");
  expect_error("5;a=b\nhello\r\n0\r\n\r\n");
  expect_error("5;a\n\r\nhello\r\n0\r\n\r\n");
  expect_error("0\n\r\n");
}

TEST(ChunkedDecoder, RequiresCrlfAfterChunkData) {
  expect_error("5\r\nhello0\r\n\r\n");
  expect_error("5\r\nhello\n0\r\n\r\n");
  expect_error("5\r\nhello\r0\r\n\r\n");
  expect_error("5\r\nhello\r\r\n0\r\n\r\n");
  expect_error("5\r\nhello world\r\n0\r\n\r\n");
}

TEST(ChunkedDecoder, AcceptsExtensionsOfTheRfcGrammar) {
  for (std::string_view ext :
       {";a", ";a=b", " ; a = b", "\t;\ta\t=\tb", ";a;b=c;d", ";a=\"quoted value\"",
        ";a=\"esc \\\" \\\\ x\"", ";a=\"\"", ";name=\"\xe9\"", ";a=b ;c"}) {
    SCOPED_TRACE(ext);
    expect_body("5" + std::string(ext) + "\r\nhello\r\n0" + std::string(ext) + "\r\n\r\n", "hello");
  }
}

TEST(ChunkedDecoder, RejectsMalformedExtensions) {
  for (std::string_view ext :
       {";", ";=b", ";a=", ";a=\"open", ";a b", ";a=b c", ";a=\"x\"y", ";a=\"\x01\"",
        ";a=\"x\\\x7f\"", "; ", ";a ", ";a=b ", ";(a)", ";a=\"x\r\n\"", "!"}) {
    SCOPED_TRACE(ext);
    expect_error("5" + std::string(ext) + "\r\nhello\r\n0\r\n\r\n");
  }
}

TEST(ChunkedDecoder, BoundsTheSizeLine) {
  std::string long_name(5000, 'x');
  expect_error("5;" + long_name + "\r\nhello\r\n0\r\n\r\n");
  std::string fitting(4000, 'x');
  expect_body("5;" + fitting + "\r\nhello\r\n0\r\n\r\n", "hello");
}

TEST(ChunkedDecoder, ConsumesTrailerFields) {
  expect_body("3\r\nabc\r\n0\r\nX-Checksum: 1234\r\nX-Empty:\r\nX-Tab:\ta\tb \xff\r\n\r\n", "abc");
}

TEST(ChunkedDecoder, RejectsMalformedTrailers) {
  for (std::string_view trailer :
       {"X : v\r\n", " X: v\r\n", "X: v\r\n folded\r\n", "X v\r\n", ": v\r\n", "X: v\n",
        "X: v\rx\r\n", "X: a\x7f\r\n", "X(y): v\r\n"}) {
    SCOPED_TRACE(trailer);
    expect_error("0\r\n" + std::string(trailer) + "\r\n");
  }
  expect_error("0\r\nX: a\0b\r\n\r\n"s);
  expect_error("0\r\n\r\r\n");
  expect_error("0\r\n\n");
}

TEST(ChunkedDecoder, BoundsTheTrailerSection) {
  std::string trailer = "X: " + std::string(20, 'v') + "\r\n";  // 25 bytes, plus 2 for the end
  ChunkedDecoder fits(27);
  EXPECT_EQ(decode(fits, "0\r\n" + trailer + "\r\n").state, State::done);
  ChunkedDecoder too_small(26);
  EXPECT_EQ(decode(too_small, "0\r\n" + trailer + "\r\n").state, State::error);
  ChunkedDecoder endless(1024);
  std::string flood = "0\r\n";
  for (int i = 0; i < 100; ++i) flood += trailer;
  EXPECT_EQ(decode(endless, flood).state, State::error);
}

TEST(ChunkedDecoder, MovesToFramingOnlyWhenTheChunkIsConsumed) {
  ChunkedDecoder d;
  EXPECT_EQ(d.feed_framing("a\r\n0123456789\r\n"), 3u);
  ASSERT_EQ(d.state(), State::data);
  EXPECT_EQ(d.feed_framing("0123"), 0u);  // data bytes are never framing
  d.consume_data(4);
  EXPECT_EQ(d.state(), State::data);
  EXPECT_EQ(d.data_remaining(), 6u);
  d.consume_data(0);
  EXPECT_EQ(d.state(), State::data);
  d.consume_data(6);
  EXPECT_EQ(d.state(), State::framing);
  EXPECT_EQ(d.data_remaining(), 0u);
  EXPECT_EQ(d.feed_framing("\r\n0\r\n\r\n"), 7u);
  EXPECT_EQ(d.state(), State::done);
  EXPECT_EQ(d.feed_framing("5\r\n"), 0u);
}

TEST(ChunkedDecoder, TreatsConsumingMoreThanTheChunkAsAnError) {
  ChunkedDecoder d;
  d.feed_framing("2\r\n");
  d.consume_data(3);
  EXPECT_EQ(d.state(), State::error);
  ChunkedDecoder framing;
  framing.consume_data(1);
  EXPECT_EQ(framing.state(), State::error);
}

TEST(ChunkedDecoder, DecodesAgainAfterReset) {
  ChunkedDecoder d;
  EXPECT_EQ(decode(d, "zz\r\n").state, State::error);
  d.reset();
  EXPECT_TRUE(d.error_reason().empty());
  Decoded first = decode(d, "2\r\nab\r\n0\r\nT: x\r\n\r\n");
  EXPECT_EQ(first.state, State::done);
  d.reset();
  Decoded second = decode(d, "1\r\nc\r\n0\r\n\r\n");
  EXPECT_EQ(second.state, State::done);
  EXPECT_EQ(second.body, "c");
}

}  // namespace
}  // namespace proxy::http1
