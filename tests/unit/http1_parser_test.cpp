#include "proxy/http1_parser.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

namespace proxy::http1 {
namespace {

using namespace std::string_literals;

// Piece sizes every example is fed in: whole, byte by byte, and a few awkward splits.
const std::vector<std::size_t> piece_sizes = {0, 1, 2, 3, 7, 13};

// Feeds raw in pieces of `step` bytes (0: all at once) until the parser stops; returns the
// number of bytes consumed in total.
template <typename Parser>
std::size_t feed_in_pieces(Parser& parser, std::string_view raw, std::size_t step) {
  std::size_t total = 0;
  std::size_t offset = 0;
  while (offset < raw.size() && parser.status() == ParseStatus::need_more) {
    std::size_t n = step == 0 ? raw.size() - offset : std::min(step, raw.size() - offset);
    std::size_t used = parser.feed(raw.substr(offset, n));
    EXPECT_LE(used, n);
    total += used;
    if (used < n) break;  // the parser stopped inside this piece
    offset += n;
  }
  return total;
}

// Checks that raw is refused with `status` however it is split.
void expect_request_error(std::string_view raw, int status, HeadLimits limits = {}) {
  for (std::size_t step : piece_sizes) {
    SCOPED_TRACE("piece size " + std::to_string(step));
    RequestParser parser(limits);
    feed_in_pieces(parser, raw, step);
    ASSERT_EQ(parser.status(), ParseStatus::error);
    EXPECT_EQ(parser.error().status, status) << parser.error().reason;
    EXPECT_FALSE(parser.error().reason.empty());
    EXPECT_EQ(parser.feed("more"), 0u);
  }
}

// Parses raw (split in every piece size, which must agree) into `parser` in one piece.
void expect_request_ok(RequestParser& parser, std::string_view raw) {
  for (std::size_t step : piece_sizes) {
    SCOPED_TRACE("piece size " + std::to_string(step));
    RequestParser split;
    std::size_t used = feed_in_pieces(split, raw, step);
    ASSERT_EQ(split.status(), ParseStatus::complete) << split.error().reason;
    EXPECT_EQ(used, raw.size());
  }
  EXPECT_EQ(parser.feed(raw), raw.size());
  ASSERT_EQ(parser.status(), ParseStatus::complete) << parser.error().reason;
}

std::string get_with(std::string_view extra_headers, std::string_view version = "HTTP/1.1") {
  return "GET / " + std::string(version) + "\r\nHost: example.org\r\n" +
         std::string(extra_headers) + "\r\n";
}

// --- request line ------------------------------------------------------------------------------

TEST(RequestParser, ParsesASimpleGet) {
  RequestParser p;
  expect_request_ok(p, "GET /index.html HTTP/1.1\r\nHost: example.org\r\nAccept: */*\r\n\r\n");
  const RequestHead& h = p.head();
  EXPECT_EQ(h.method, Method::get);
  EXPECT_EQ(h.method_text, "GET");
  EXPECT_EQ(h.target, "/index.html");
  EXPECT_EQ(h.path, "/index.html");
  EXPECT_FALSE(h.has_query);
  EXPECT_FALSE(h.absolute_form);
  EXPECT_EQ(h.version_minor, 1);
  EXPECT_EQ(h.host, "example.org");
  ASSERT_EQ(h.headers.size(), 2u);
  EXPECT_EQ(h.headers[1].name, "Accept");
  EXPECT_EQ(h.headers[1].value, "*/*");
  EXPECT_EQ(h.framing, BodyFraming::none);
  EXPECT_TRUE(h.keep_alive);
  EXPECT_FALSE(h.expect_continue);
}

TEST(RequestParser, SplitsPathAndQuery) {
  RequestParser p;
  expect_request_ok(p, "GET /a/b?x=1&y=2?z HTTP/1.1\r\nHost: h\r\n\r\n");
  EXPECT_EQ(p.head().path, "/a/b");
  EXPECT_TRUE(p.head().has_query);
  EXPECT_EQ(p.head().query, "x=1&y=2?z");
}

TEST(RequestParser, KeepsAnEmptyQueryDistinctFromNone) {
  RequestParser p;
  expect_request_ok(p, "GET /a? HTTP/1.1\r\nHost: h\r\n\r\n");
  EXPECT_EQ(p.head().path, "/a");
  EXPECT_TRUE(p.head().has_query);
  EXPECT_EQ(p.head().query, "");
}

TEST(RequestParser, MapsEveryKnownMethod) {
  const std::pair<std::string_view, Method> cases[] = {
      {"GET", Method::get},    {"HEAD", Method::head},  {"POST", Method::post},
      {"PUT", Method::put},    {"DELETE", Method::del}, {"OPTIONS", Method::options},
      {"PATCH", Method::patch}};
  for (const auto& [text, method] : cases) {
    RequestParser p;
    expect_request_ok(p, std::string(text) + " / HTTP/1.1\r\nHost: h\r\n\r\n");
    EXPECT_EQ(p.head().method, method);
    EXPECT_EQ(method_name(method), text);
  }
}

TEST(RequestParser, MapsOtherUpperCaseMethodsToOther) {
  RequestParser p;
  expect_request_ok(p, "PROPFIND / HTTP/1.1\r\nHost: h\r\n\r\n");
  EXPECT_EQ(p.head().method, Method::other);
  EXPECT_EQ(p.head().method_text, "PROPFIND");
}

TEST(RequestParser, RejectsLowerCaseMethod) {
  expect_request_error("get / HTTP/1.1\r\nHost: h\r\n\r\n", 400);
  expect_request_error("Get / HTTP/1.1\r\nHost: h\r\n\r\n", 400);
}

TEST(RequestParser, RejectsMethodWithOtherCharacters) {
  expect_request_error("GE1 / HTTP/1.1\r\nHost: h\r\n\r\n", 400);
  expect_request_error("M-SEARCH / HTTP/1.1\r\nHost: h\r\n\r\n", 400);
  expect_request_error(" GET / HTTP/1.1\r\nHost: h\r\n\r\n", 400);
}

TEST(RequestParser, RejectsRequestLinesWithoutSingleSpaces) {
  expect_request_error("GET  / HTTP/1.1\r\nHost: h\r\n\r\n", 400);
  expect_request_error("GET / HTTP/1.1 \r\nHost: h\r\n\r\n", 400);
  expect_request_error("GET /  HTTP/1.1\r\nHost: h\r\n\r\n", 400);
  expect_request_error("GET\t/ HTTP/1.1\r\nHost: h\r\n\r\n", 400);
  expect_request_error("GET /\r\nHost: h\r\n\r\n", 400);
  expect_request_error("GET\r\nHost: h\r\n\r\n", 400);
}

TEST(RequestParser, AcceptsHttp10) {
  RequestParser p;
  expect_request_ok(p, "GET / HTTP/1.0\r\nHost: h\r\n\r\n");
  EXPECT_EQ(p.head().version_minor, 0);
  EXPECT_FALSE(p.head().keep_alive);
}

TEST(RequestParser, AnswersOtherWellFormedVersionsWith505) {
  expect_request_error("GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505);
  expect_request_error("GET / HTTP/1.2\r\nHost: h\r\n\r\n", 505);
  expect_request_error("GET / HTTP/3.0\r\nHost: h\r\n\r\n", 505);
  expect_request_error("GET / HTTP/0.9\r\nHost: h\r\n\r\n", 505);
}

TEST(RequestParser, RejectsMalformedVersions) {
  for (std::string_view v : {"HTTP/1", "http/1.1", "HTTP/1.1x", "HTTP/11.1", "HTTP/1.a", "HTTP 1.1",
                             "HTTPS/1.1", "HTTP/1,1"}) {
    SCOPED_TRACE(v);
    expect_request_error("GET / " + std::string(v) + "\r\nHost: h\r\n\r\n", 400);
  }
}

TEST(RequestParser, ParsesAbsoluteFormMatchingHost) {
  RequestParser p;
  expect_request_ok(
      p, "GET http://Example.org:8443/a/b?q=1 HTTP/1.1\r\nHost: example.ORG:8443\r\n\r\n");
  EXPECT_TRUE(p.head().absolute_form);
  EXPECT_EQ(p.head().path, "/a/b");
  EXPECT_EQ(p.head().query, "q=1");
  EXPECT_EQ(p.head().target, "http://Example.org:8443/a/b?q=1");
}

TEST(RequestParser, TreatsAbsoluteFormSchemeCaseInsensitively) {
  RequestParser p;
  expect_request_ok(p, "GET HTTPS://h/x HTTP/1.1\r\nHost: h\r\n\r\n");
  EXPECT_TRUE(p.head().absolute_form);
  EXPECT_EQ(p.head().path, "/x");
}

TEST(RequestParser, GivesAbsoluteFormWithoutPathTheRootPath) {
  RequestParser p;
  expect_request_ok(p, "GET http://h HTTP/1.1\r\nHost: h\r\n\r\n");
  EXPECT_EQ(p.head().path, "/");
  EXPECT_FALSE(p.head().has_query);
  RequestParser q;
  expect_request_ok(q, "GET http://h?a=b HTTP/1.1\r\nHost: h\r\n\r\n");
  EXPECT_EQ(q.head().path, "/");
  EXPECT_EQ(q.head().query, "a=b");
}

TEST(RequestParser, RejectsAbsoluteFormWithADifferentHost) {
  expect_request_error("GET http://a.example/ HTTP/1.1\r\nHost: b.example\r\n\r\n", 400);
  expect_request_error("GET http://a.example:81/ HTTP/1.1\r\nHost: a.example\r\n\r\n", 400);
}

TEST(RequestParser, RejectsAbsoluteFormWithUserinfoOrEmptyAuthority) {
  expect_request_error("GET http://u@h/ HTTP/1.1\r\nHost: h\r\n\r\n", 400);
  expect_request_error("GET http:///x HTTP/1.1\r\nHost: h\r\n\r\n", 400);
}

TEST(RequestParser, RejectsOtherTargetForms) {
  expect_request_error("GET ftp://h/ HTTP/1.1\r\nHost: h\r\n\r\n", 400);
  expect_request_error("CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n", 400);
  expect_request_error("GET index.html HTTP/1.1\r\nHost: h\r\n\r\n", 400);
  expect_request_error("GET http:/h/ HTTP/1.1\r\nHost: h\r\n\r\n", 400);
}

TEST(RequestParser, AcceptsAsteriskOnlyWithOptions) {
  RequestParser p;
  expect_request_ok(p, "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n");
  EXPECT_EQ(p.head().path, "*");
  expect_request_error("GET * HTTP/1.1\r\nHost: h\r\n\r\n", 400);
  expect_request_error("OPTIONS *x HTTP/1.1\r\nHost: h\r\n\r\n", 400);
}

TEST(RequestParser, RejectsFragmentAndControlsInTarget) {
  expect_request_error("GET /a#b HTTP/1.1\r\nHost: h\r\n\r\n", 400);
  expect_request_error("GET /a\x7f HTTP/1.1\r\nHost: h\r\n\r\n", 400);
  expect_request_error("GET /a\0b HTTP/1.1\r\nHost: h\r\n\r\n"s, 400);
  expect_request_error("GET /a\tb HTTP/1.1\r\nHost: h\r\n\r\n", 400);
}

TEST(RequestParser, LeavesOtherPathCharactersToThePathRules) {
  RequestParser p;
  expect_request_ok(p, "GET /a/../%2e/\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n");
  EXPECT_EQ(p.head().path, "/a/../%2e/\xc3\xa9");
}

// --- head structure ------------------------------------------------------------------------------

TEST(RequestParser, RejectsBareLfLineEndings) {
  expect_request_error("GET / HTTP/1.1\nHost: h\n\n", 400);
  expect_request_error("GET / HTTP/1.1\r\nHost: h\n\r\n", 400);
  expect_request_error("GET / HTTP/1.1\r\nHost: h\r\n\n", 400);
}

TEST(RequestParser, RejectsBareCrAnywhereInTheHead) {
  expect_request_error("GET / HTTP/1.1\rHost: h\r\n\r\n", 400);
  expect_request_error("GET / HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n", 400);
  expect_request_error("GET / HTTP/1.1\r\nHost: h\r\n\r\r\n", 400);
}

TEST(RequestParser, RejectsBareLfWithoutWaitingForTheTerminator) {
  RequestParser p;
  p.feed("GET / HTTP/1.1\n");
  EXPECT_EQ(p.status(), ParseStatus::error);
  EXPECT_EQ(p.error().status, 400);
}

TEST(RequestParser, RejectsEmptyLinesBeforeTheRequestLine) {
  expect_request_error("\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", 400);
}

TEST(RequestParser, WaitsForACrSplitFromItsLf) {
  RequestParser p;
  EXPECT_EQ(p.feed("GET / HTTP/1.1\r"), 15u);
  EXPECT_EQ(p.status(), ParseStatus::need_more);
  EXPECT_TRUE(p.started());
  EXPECT_EQ(p.feed("\nHost: h\r\n\r"), 11u);
  EXPECT_EQ(p.status(), ParseStatus::need_more);
  EXPECT_EQ(p.feed("\nbody"), 1u);
  EXPECT_EQ(p.status(), ParseStatus::complete);
}

TEST(RequestParser, NeverConsumesPastTheHead) {
  std::string head = "POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n";
  std::string raw = head + "hello" + "GET / HTTP/1.1\r\n";
  for (std::size_t step : piece_sizes) {
    RequestParser p;
    EXPECT_EQ(feed_in_pieces(p, raw, step), head.size());
    EXPECT_EQ(p.status(), ParseStatus::complete);
    EXPECT_EQ(p.feed("x"), 0u);
  }
}

TEST(RequestParser, ReturnsZeroForEmptyInput) {
  RequestParser p;
  EXPECT_EQ(p.feed(""), 0u);
  EXPECT_EQ(p.status(), ParseStatus::need_more);
  EXPECT_FALSE(p.started());
}

// --- limits
// ----------------------------------------------------------------------------------------

TEST(RequestParser, AnswersALongRequestLineWith414) {
  HeadLimits limits{.header_size = 64, .header_count = 100};
  expect_request_error("GET /" + std::string(100, 'a') + " HTTP/1.1\r\nHost: h\r\n\r\n", 414,
                       limits);
  // Still 414 when the limit falls exactly on the request line's CR.
  std::string line = "GET /" + std::string(52, 'a') + " HTTP/1.1";
  ASSERT_EQ(line.size(), 66u);
  expect_request_error(line + "\r\nHost: h\r\n\r\n", 414, HeadLimits{.header_size = 67});
}

TEST(RequestParser, AnswersALargeHeaderSectionWith431) {
  HeadLimits limits{.header_size = 64, .header_count = 100};
  expect_request_error("GET / HTTP/1.1\r\nHost: h\r\nX: " + std::string(100, 'a') + "\r\n\r\n", 431,
                       limits);
}

TEST(RequestParser, AcceptsAHeadOfExactlyTheSizeLimit) {
  std::string raw = "GET / HTTP/1.1\r\nHost: h\r\n\r\n";
  RequestParser exact(HeadLimits{.header_size = raw.size()});
  EXPECT_EQ(exact.feed(raw), raw.size());
  EXPECT_EQ(exact.status(), ParseStatus::complete);
  expect_request_error(raw, 431, HeadLimits{.header_size = raw.size() - 1});
}

TEST(RequestParser, AnswersTooManyHeaderFieldsWith431) {
  std::string fields;
  for (int i = 0; i < 3; ++i) fields += "X-" + std::to_string(i) + ": v\r\n";
  HeadLimits limits{.header_size = 4096, .header_count = 4};
  RequestParser p(limits);
  expect_request_ok(p, "GET / HTTP/1.1\r\nHost: h\r\n" + fields + "\r\n");
  EXPECT_EQ(p.head().headers.size(), 4u);
  expect_request_error("GET / HTTP/1.1\r\nHost: h\r\n" + fields + "X-9: v\r\n\r\n", 431, limits);
}

TEST(RequestParser, StopsBufferingAtTheSizeLimit) {
  RequestParser p(HeadLimits{.header_size = 100});
  std::string flood(1000, 'a');
  EXPECT_EQ(p.feed("GET /" + flood), 100u);
  EXPECT_EQ(p.status(), ParseStatus::error);
  EXPECT_EQ(p.error().status, 414);
}

// --- header lines
// ----------------------------------------------------------------------------------

TEST(RequestParser, RejectsWhitespaceBeforeTheColon) {
  expect_request_error(get_with("Transfer-Encoding : chunked\r\n"), 400);
  expect_request_error(get_with("X-A\t: b\r\n"), 400);
  expect_request_error("GET / HTTP/1.1\r\nHost : h\r\n\r\n", 400);
}

TEST(RequestParser, RejectsObsFold) {
  expect_request_error(get_with("X-A: b\r\n c\r\n"), 400);
  expect_request_error(get_with("X-A: b\r\n\tc\r\n"), 400);
  expect_request_error("GET / HTTP/1.1\r\n Host: h\r\n\r\n", 400);
}

TEST(RequestParser, RejectsMalformedHeaderNames) {
  expect_request_error(get_with("NoColon\r\n"), 400);
  expect_request_error(get_with(": empty-name\r\n"), 400);
  expect_request_error(get_with("X(A): b\r\n"), 400);
  expect_request_error(get_with("X\xc3\xa9: b\r\n"), 400);
  expect_request_error(get_with("X/Y: b\r\n"), 400);
}

TEST(RequestParser, TrimsOptionalWhitespaceAroundValues) {
  RequestParser p;
  expect_request_ok(p, get_with("X-A: \t one  two \t\r\nX-Empty:\r\nX-Blank:   \r\n"));
  ASSERT_EQ(p.head().headers.size(), 4u);
  EXPECT_EQ(p.head().headers[1].value, "one  two");
  EXPECT_EQ(p.head().headers[2].value, "");
  EXPECT_EQ(p.head().headers[3].value, "");
}

TEST(RequestParser, RejectsControlCharactersInValues) {
  expect_request_error(get_with("X-A: a\0b\r\n"s), 400);
  expect_request_error(get_with("X-A: a\x7f\r\n"), 400);
  expect_request_error(get_with("X-A: a\x01\r\n"), 400);
  expect_request_error(get_with("X-A: a\x1b[0m\r\n"), 400);
}

TEST(RequestParser, AllowsTabsAndHighBytesInValues) {
  RequestParser p;
  expect_request_ok(p, get_with("X-A: a\tb\xff\x80\r\n"));
  EXPECT_EQ(p.head().headers[1].value, "a\tb\xff\x80");
}

// --- Host
// --------------------------------------------------------------------------------------------

TEST(RequestParser, RequiresExactlyOneHost) {
  expect_request_error("GET / HTTP/1.1\r\n\r\n", 400);
  expect_request_error("GET / HTTP/1.0\r\n\r\n", 400);
  expect_request_error("GET / HTTP/1.1\r\nHost: h\r\nHost: h\r\n\r\n", 400);
  expect_request_error("GET / HTTP/1.1\r\nHost: a\r\nhOsT: b\r\n\r\n", 400);
  expect_request_error("GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n", 400);
}

TEST(RequestParser, AcceptsHostForms) {
  for (std::string_view host : {"example.org", "example.org:8443", "[::1]", "[2001:db8::1]:443",
                                "10.0.0.1:80", "a%41b", "under_score", "xn--bcher-kva.example"}) {
    SCOPED_TRACE(host);
    RequestParser p;
    expect_request_ok(p, "GET / HTTP/1.1\r\nHost: " + std::string(host) + "\r\n\r\n");
    EXPECT_EQ(p.head().host, host);
  }
}

TEST(RequestParser, RejectsInvalidHostValues) {
  for (std::string_view host : {"", "a b", "h:", "h:abc", "h:1234567", "[::1", "[]", "[zz]", "u@h",
                                "h/x", ":80", "h:80:81", "a%4", "a%zz", "\xc3\xa9"}) {
    SCOPED_TRACE(host);
    expect_request_error("GET / HTTP/1.1\r\nHost: " + std::string(host) + "\r\n\r\n", 400);
  }
}

// --- framing (docs/security.md, HTTP/1.1 framing table) ----------------------------------------

TEST(RequestParser, ReadsContentLength) {
  RequestParser p;
  expect_request_ok(p, get_with("Content-Length: 42\r\n"));
  EXPECT_EQ(p.head().framing, BodyFraming::content_length);
  EXPECT_EQ(p.head().content_length, 42u);
}

TEST(RequestParser, TreatsContentLengthZeroAsALengthFramedBody) {
  RequestParser p;
  expect_request_ok(p, get_with("Content-Length: 0\r\n"));
  EXPECT_EQ(p.head().framing, BodyFraming::content_length);
  EXPECT_EQ(p.head().content_length, 0u);
}

TEST(RequestParser, RejectsContentLengthWithTransferEncoding) {
  expect_request_error(get_with("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n"), 400);
  expect_request_error(get_with("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n"), 400);
}

TEST(RequestParser, RejectsTwoContentLengthsEvenWhenEqual) {
  expect_request_error(get_with("Content-Length: 5\r\nContent-Length: 6\r\n"), 400);
  expect_request_error(get_with("Content-Length: 5\r\ncontent-length: 5\r\n"), 400);
  expect_request_error(get_with("Content-Length: 5, 5\r\n"), 400);
  expect_request_error(get_with("Content-Length: 5,5\r\n"), 400);
}

TEST(RequestParser, RejectsContentLengthThatIsNotPlainDigits) {
  for (std::string_view v : {"+5", "-5", "5 5", "0x5", "5a", "", " ", "5.0", "\xd9\xa5"}) {
    SCOPED_TRACE(v);
    expect_request_error(get_with("Content-Length: " + std::string(v) + "\r\n"), 400);
  }
}

TEST(RequestParser, RejectsContentLengthOverflow) {
  expect_request_error(get_with("Content-Length: 18446744073709551616\r\n"), 400);
  expect_request_error(get_with("Content-Length: 99999999999999999999999\r\n"), 400);
  expect_request_error(get_with("Content-Length: 4611686018427387905\r\n"), 400);
}

TEST(RequestParser, AcceptsContentLengthUpToTheBound) {
  RequestParser p;
  expect_request_ok(p, get_with("Content-Length: 0004611686018427387904\r\n"));
  EXPECT_EQ(p.head().content_length, std::uint64_t{1} << 62);
}

TEST(RequestParser, AcceptsALoneChunkedCoding) {
  for (std::string_view v : {"chunked", "Chunked", "CHUNKED", "  chunked\t"}) {
    SCOPED_TRACE(v);
    RequestParser p;
    expect_request_ok(p, get_with("Transfer-Encoding: " + std::string(v) + "\r\n"));
    EXPECT_EQ(p.head().framing, BodyFraming::chunked);
  }
}

TEST(RequestParser, RejectsCodingListsOfKnownCodingsWith400) {
  for (std::string_view v : {"gzip, chunked", "chunked, gzip", "chunked, chunked", "identity",
                             "gzip", "x-gzip,chunked", "deflate, compress, chunked"}) {
    SCOPED_TRACE(v);
    expect_request_error(get_with("Transfer-Encoding: " + std::string(v) + "\r\n"), 400);
  }
}

TEST(RequestParser, AnswersUnknownCodingsWith501) {
  for (std::string_view v : {"foo", "gzip, foo", "foo, chunked", "x-custom"}) {
    SCOPED_TRACE(v);
    expect_request_error(get_with("Transfer-Encoding: " + std::string(v) + "\r\n"), 501);
  }
}

TEST(RequestParser, RejectsMalformedCodingLists) {
  for (std::string_view v :
       {"", ",chunked", "chunked,", "chunked,,gzip", "chunked;q=1", "chun ked", "\"chunked\""}) {
    SCOPED_TRACE(v);
    expect_request_error(get_with("Transfer-Encoding: " + std::string(v) + "\r\n"), 400);
  }
}

TEST(RequestParser, RejectsTransferEncodingTwice) {
  expect_request_error(get_with("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"),
                       400);
}

TEST(RequestParser, RejectsTransferEncodingOnHttp10) {
  expect_request_error(get_with("Transfer-Encoding: chunked\r\n", "HTTP/1.0"), 400);
}

// --- Connection and Expect
// -------------------------------------------------------------------------

TEST(RequestParser, CollectsConnectionOptionsFromEveryConnectionHeader) {
  RequestParser p;
  expect_request_ok(p, get_with("Connection: Keep-Alive, X-Foo\r\nconnection: , te ,\r\n"));
  ASSERT_EQ(p.head().connection_tokens.size(), 3u);
  EXPECT_EQ(p.head().connection_tokens[0], "Keep-Alive");
  EXPECT_EQ(p.head().connection_tokens[1], "X-Foo");
  EXPECT_EQ(p.head().connection_tokens[2], "te");
  EXPECT_TRUE(p.head().keep_alive);
}

TEST(RequestParser, ClosesHttp11OnConnectionClose) {
  RequestParser p;
  expect_request_ok(p, get_with("Connection: CLOSE\r\n"));
  EXPECT_FALSE(p.head().keep_alive);
}

TEST(RequestParser, KeepsHttp10AliveOnlyWhenAsked) {
  RequestParser plain;
  expect_request_ok(plain, get_with("", "HTTP/1.0"));
  EXPECT_FALSE(plain.head().keep_alive);
  RequestParser asked;
  expect_request_ok(asked, get_with("Connection: keep-alive\r\n", "HTTP/1.0"));
  EXPECT_TRUE(asked.head().keep_alive);
  RequestParser both;
  expect_request_ok(both, get_with("Connection: keep-alive, close\r\n", "HTTP/1.0"));
  EXPECT_FALSE(both.head().keep_alive);
}

TEST(RequestParser, RejectsInvalidConnectionOptions) {
  expect_request_error(get_with("Connection: close/now\r\n"), 400);
  expect_request_error(get_with("Connection: a b\r\n"), 400);
  expect_request_error(get_with("Connection: \"close\"\r\n"), 400);
}

TEST(RequestParser, RecognisesExpect100Continue) {
  RequestParser p;
  expect_request_ok(p, get_with("Expect: 100-Continue\r\nContent-Length: 3\r\n"));
  EXPECT_TRUE(p.head().expect_continue);
}

TEST(RequestParser, AnswersOtherExpectationsWith417) {
  expect_request_error(get_with("Expect: 200-ok\r\n"), 417);
  expect_request_error(get_with("Expect: 100-continue, foo\r\n"), 417);
}

TEST(RequestParser, IgnoresExpectOnHttp10) {
  RequestParser p;
  expect_request_ok(p, get_with("Expect: 100-continue\r\n", "HTTP/1.0"));
  EXPECT_FALSE(p.head().expect_continue);
  RequestParser q;
  expect_request_ok(q, get_with("Expect: whatever\r\n", "HTTP/1.0"));
}

// --- reuse
// -------------------------------------------------------------------------------------------

TEST(RequestParser, ParsesPipelinedRequestsAfterReset) {
  std::string first =
      "POST /a HTTP/1.1\r\nHost: one\r\nContent-Length: 0\r\nX-Only-First: 1\r\n\r\n";
  std::string second = "GET /b?q HTTP/1.0\r\nHost: two\r\nConnection: keep-alive\r\n\r\n";
  std::string wire = first + second;
  RequestParser p;
  std::size_t used = p.feed(wire);
  ASSERT_EQ(used, first.size());
  EXPECT_EQ(p.head().host, "one");
  p.reset();
  EXPECT_FALSE(p.started());
  EXPECT_EQ(p.status(), ParseStatus::need_more);
  EXPECT_EQ(p.feed(std::string_view(wire).substr(used)), second.size());
  ASSERT_EQ(p.status(), ParseStatus::complete);
  const RequestHead& h = p.head();
  EXPECT_EQ(h.method, Method::get);
  EXPECT_EQ(h.host, "two");
  EXPECT_EQ(h.path, "/b");
  EXPECT_EQ(h.headers.size(), 2u);
  EXPECT_EQ(h.framing, BodyFraming::none);
  EXPECT_EQ(h.content_length, 0u);
  EXPECT_EQ(h.version_minor, 0);
  EXPECT_TRUE(h.keep_alive);
  EXPECT_EQ(h.connection_tokens.size(), 1u);
}

TEST(RequestParser, RecoversFromAnErrorAfterReset) {
  RequestParser p;
  p.feed("get / HTTP/1.1\r\nHost: h\r\n\r\n");
  ASSERT_EQ(p.status(), ParseStatus::error);
  p.reset();
  EXPECT_EQ(p.error().status, 0);
  std::string raw = "GET / HTTP/1.1\r\nHost: h\r\n\r\n";
  EXPECT_EQ(p.feed(raw), raw.size());
  EXPECT_EQ(p.status(), ParseStatus::complete);
}

TEST(RequestParser, KeepsItsCapacityAcrossResets) {
  std::string raw = get_with("A: 1\r\nB: 2\r\nConnection: x, y\r\n");
  RequestParser p;
  p.feed(raw);
  std::size_t header_capacity = p.head().headers.capacity();
  std::size_t token_capacity = p.head().connection_tokens.capacity();
  for (int i = 0; i < 3; ++i) {
    p.reset();
    EXPECT_EQ(p.feed(raw), raw.size());
    EXPECT_EQ(p.head().headers.capacity(), header_capacity);
    EXPECT_EQ(p.head().connection_tokens.capacity(), token_capacity);
  }
}

TEST(RequestParser, GivesTheSameVerdictAtEverySplitPoint) {
  const std::string examples[] = {
      "GET / HTTP/1.1\r\nHost: h\r\n\r\n",
      "POST /x?y HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: foo\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: h\rX\r\n\r\n",
      "GET / HTTP/1.1\nHost: h\r\n\r\n",
      "GET / HTTP/2.0\r\nHost: h\r\n\r\n",
      "\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: h\r\nExpect: nope\r\n\r\n",
  };
  for (const std::string& raw : examples) {
    SCOPED_TRACE(raw);
    RequestParser whole;
    std::size_t whole_used = whole.feed(raw);
    for (std::size_t cut = 0; cut <= raw.size(); ++cut) {
      RequestParser split;
      std::size_t used = split.feed(std::string_view(raw).substr(0, cut));
      if (split.status() == ParseStatus::need_more) {
        used += split.feed(std::string_view(raw).substr(cut));
      }
      EXPECT_EQ(split.status(), whole.status()) << "cut at " << cut;
      EXPECT_EQ(split.error().status, whole.error().status) << "cut at " << cut;
      if (whole.status() == ParseStatus::complete) {
        EXPECT_EQ(used, whole_used) << "cut at " << cut;
      }
    }
  }
}

// --- responses
// -------------------------------------------------------------------------------------

void expect_response_error(std::string_view raw, Method method = Method::get,
                           HeadLimits limits = {}) {
  for (std::size_t step : piece_sizes) {
    SCOPED_TRACE("piece size " + std::to_string(step));
    ResponseParser parser(limits);
    parser.expect_response_to(method);
    feed_in_pieces(parser, raw, step);
    ASSERT_EQ(parser.status(), ParseStatus::error);
    EXPECT_EQ(parser.error().status, 502);
    EXPECT_FALSE(parser.error().reason.empty());
  }
}

void expect_response_ok(ResponseParser& parser, std::string_view raw) {
  for (std::size_t step : piece_sizes) {
    SCOPED_TRACE("piece size " + std::to_string(step));
    ResponseParser split;
    feed_in_pieces(split, raw, step);
    EXPECT_EQ(split.status(), ParseStatus::complete) << split.error().reason;
  }
  EXPECT_EQ(parser.feed(raw), raw.size());
  ASSERT_EQ(parser.status(), ParseStatus::complete) << parser.error().reason;
}

TEST(ResponseParser, ParsesAContentLengthResponse) {
  ResponseParser p;
  expect_response_ok(p, "HTTP/1.1 200 OK\r\nContent-Length: 12\r\nServer: x\r\n\r\n");
  EXPECT_EQ(p.head().status, 200);
  EXPECT_EQ(p.head().reason, "OK");
  EXPECT_EQ(p.head().version_minor, 1);
  EXPECT_EQ(p.head().framing, BodyFraming::content_length);
  EXPECT_EQ(p.head().content_length, 12u);
  EXPECT_EQ(p.head().headers.size(), 2u);
  EXPECT_TRUE(p.head().keep_alive);
}

TEST(ResponseParser, AcceptsAnEmptyReasonWithOrWithoutTheSpace) {
  ResponseParser a;
  expect_response_ok(a, "HTTP/1.1 204 \r\n\r\n");
  EXPECT_EQ(a.head().status, 204);
  EXPECT_EQ(a.head().reason, "");
  ResponseParser b;
  expect_response_ok(b, "HTTP/1.1 204\r\n\r\n");
  EXPECT_EQ(b.head().reason, "");
  ResponseParser c;
  expect_response_ok(c, "HTTP/1.1 404 Not  Found \xe9\r\nContent-Length: 0\r\n\r\n");
  EXPECT_EQ(c.head().reason, "Not  Found \xe9");
}

TEST(ResponseParser, RejectsMalformedStatusLines) {
  for (std::string_view line :
       {"HTTP/1.1 99 X", "HTTP/1.1 600 X", "HTTP/1.1 099 X", "HTTP/1.1 20 OK", "HTTP/1.1 2000 OK",
        "HTTP/1.1 abc OK", "HTTP/2.0 200 OK", "HTTP/1.2 200 OK", "http/1.1 200 OK",
        "HTTP/1.1  200 OK", "HTTP/1.1 200\tOK", "ICY 200 OK", "HTTP/1.1 200 O\x01K"}) {
    SCOPED_TRACE(line);
    expect_response_error(std::string(line) + "\r\nContent-Length: 0\r\n\r\n");
  }
}

TEST(ResponseParser, RefusesSwitchingProtocols) {
  expect_response_error("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n");
}

TEST(ResponseParser, ReadsAChunkedResponse) {
  ResponseParser p;
  expect_response_ok(p, "HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n");
  EXPECT_EQ(p.head().framing, BodyFraming::chunked);
  EXPECT_TRUE(p.head().keep_alive);
}

TEST(ResponseParser, ReadsUntilCloseWithoutFramingHeaders) {
  ResponseParser p;
  expect_response_ok(p, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n");
  EXPECT_EQ(p.head().framing, BodyFraming::until_close);
  EXPECT_FALSE(p.head().keep_alive);
}

TEST(ResponseParser, GivesBodylessStatusesNoBodyWhateverTheHeaders) {
  for (std::string_view line : {"HTTP/1.1 100 Continue", "HTTP/1.1 103 Early Hints",
                                "HTTP/1.1 204 No Content", "HTTP/1.1 304 Not Modified"}) {
    SCOPED_TRACE(line);
    ResponseParser p;
    expect_response_ok(p, std::string(line) + "\r\nTransfer-Encoding: gzip\r\n\r\n");
    EXPECT_EQ(p.head().framing, BodyFraming::none);
  }
  ResponseParser info;
  expect_response_ok(info, "HTTP/1.1 100 Continue\r\n\r\n");
  EXPECT_TRUE(info.head().informational());
}

TEST(ResponseParser, GivesAResponseToHeadNoBody) {
  ResponseParser p;
  p.expect_response_to(Method::head);
  expect_response_ok(p, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n");
  EXPECT_EQ(p.head().framing, BodyFraming::none);
  EXPECT_TRUE(p.head().keep_alive);
  p.reset();
  EXPECT_EQ(p.feed("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"), 47u);
  EXPECT_EQ(p.head().framing, BodyFraming::none);  // reset kept the HEAD method
}

TEST(ResponseParser, AcceptsIdenticalDuplicateContentLengths) {
  ResponseParser p;
  expect_response_ok(p, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n");
  EXPECT_EQ(p.head().content_length, 5u);
}

TEST(ResponseParser, RejectsAmbiguousFraming) {
  expect_response_error("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n");
  expect_response_error("HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n");
  expect_response_error("HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n");
  expect_response_error(
      "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n");
  expect_response_error("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
  expect_response_error("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n");
  expect_response_error(
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n");
  expect_response_error("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
}

TEST(ResponseParser, RejectsMalformedHeaderLines) {
  expect_response_error("HTTP/1.1 200 OK\r\nX: a\rb\r\nContent-Length: 0\r\n\r\n");
  expect_response_error("HTTP/1.1 200 OK\nContent-Length: 0\n\n");
  expect_response_error("HTTP/1.1 200 OK\r\nX: a\0b\r\n\r\n"s);
  expect_response_error("HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n");
  expect_response_error("HTTP/1.1 200 OK\r\nContent-Length : 0\r\n\r\n");
  expect_response_error("HTTP/1.1 200 OK\r\nConnection: a/b\r\n\r\n");
  expect_response_error("\r\nHTTP/1.1 200 OK\r\n\r\n");
}

TEST(ResponseParser, EnforcesTheHeadLimits) {
  expect_response_error("HTTP/1.1 200 OK\r\nX: " + std::string(100, 'a') + "\r\n\r\n", Method::get,
                        HeadLimits{.header_size = 64});
  expect_response_error("HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", Method::get,
                        HeadLimits{.header_size = 4096, .header_count = 2});
}

TEST(ResponseParser, DecidesConnectionReuse) {
  struct Case {
    std::string_view raw;
    bool keep_alive;
  };
  const Case cases[] = {
      {"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", true},
      {"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", false},
      {"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", false},
      {"HTTP/1.0 200 OK\r\nContent-Length: 0\r\nConnection: Keep-Alive\r\n\r\n", true},
      {"HTTP/1.1 200 OK\r\n\r\n", false},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.raw);
    ResponseParser p;
    expect_response_ok(p, c.raw);
    EXPECT_EQ(p.head().keep_alive, c.keep_alive);
  }
}

TEST(ResponseParser, ParsesAFinalResponseAfterAnInterimOne) {
  std::string interim = "HTTP/1.1 100 Continue\r\n\r\n";
  std::string final_head = "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n";
  std::string wire = interim + final_head + "ok";
  ResponseParser p;
  p.expect_response_to(Method::post);
  std::size_t used = p.feed(wire);
  ASSERT_EQ(used, interim.size());
  EXPECT_TRUE(p.head().informational());
  p.reset();
  EXPECT_EQ(p.feed(std::string_view(wire).substr(used)), final_head.size());
  EXPECT_EQ(p.head().status, 201);
  EXPECT_EQ(p.head().headers.size(), 1u);
  EXPECT_EQ(p.head().framing, BodyFraming::content_length);
}

// --- helpers -------------------------------------------------------------------------------------

TEST(Iequals, ComparesAsciiCaseInsensitively) {
  EXPECT_TRUE(iequals("Content-Length", "content-LENGTH"));
  EXPECT_TRUE(iequals("", ""));
  EXPECT_FALSE(iequals("chunked", "chunke"));
  EXPECT_FALSE(iequals("a", "b"));
  EXPECT_FALSE(iequals("[", "{"));  // differ by 0x20 but are not letters
  EXPECT_FALSE(iequals("\xc9", "\xe9"));
}

TEST(MethodName, NamesOtherMethodsGenerically) {
  EXPECT_EQ(method_name(Method::del), "DELETE");
  EXPECT_EQ(method_name(Method::other), "OTHER");
}

}  // namespace
}  // namespace proxy::http1
