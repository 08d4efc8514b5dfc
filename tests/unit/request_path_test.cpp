#include "routes/request_path.h"

#include <gtest/gtest.h>

#include <string>

namespace routes {
namespace {

std::string path_verdict(std::string_view path) {
  auto reason = check_request_path(path);
  return reason ? std::string(*reason) : "ok";
}

std::string query_verdict(std::string_view query) {
  auto reason = check_request_query(query);
  return reason ? std::string(*reason) : "ok";
}

TEST(RequestPath, OrdinaryPathsAreAccepted) {
  for (std::string_view path :
       {"/", "/reqmgr2", "/reqmgr2/data/request", "/a/", "//", "/a//b",
        "/dbs/prod/global/DBSReader/", "/a.b/c..d/.e/f.", "/...", "/a/.../b", "/x/%41%2d%7E",
        "/x/%2a", "/x/%c3%a9", "/-._~!$&'()*+,;=:@", "/wmstats/_design/WMStats/_rewrite/index.html",
        "/a%20b"}) {
    EXPECT_EQ(path_verdict(path), "ok") << path;
  }
}

TEST(RequestPath, DotSegmentsAreRejected) {
  for (std::string_view path : {"/.", "/..", "/./", "/../", "/a/.", "/a/..", "/a/./b", "/a/../b",
                                "/public/../admin", "//..", "/a//./b"}) {
    EXPECT_EQ(path_verdict(path), "dot segment in path") << path;
  }
}

TEST(RequestPath, EncodedSeparatorsAndDotsAreRejected) {
  EXPECT_EQ(path_verdict("/a%2fb"), "encoded slash in path");
  EXPECT_EQ(path_verdict("/a%2Fb"), "encoded slash in path");
  EXPECT_EQ(path_verdict("/%2e%2e/admin"), "encoded dot in path");
  EXPECT_EQ(path_verdict("/a/%2E"), "encoded dot in path");
  EXPECT_EQ(path_verdict("/a.%2e"), "encoded dot in path");
  EXPECT_EQ(path_verdict("/a%5cb"), "encoded backslash in path");
  EXPECT_EQ(path_verdict("/a%5Cb"), "encoded backslash in path");
  EXPECT_EQ(path_verdict("/a\\b"), "backslash in path");
  EXPECT_EQ(path_verdict("/..\\x"), "backslash in path");
}

TEST(RequestPath, MalformedEscapesAreRejected) {
  for (std::string_view path : {"/%", "/a%", "/a%2", "/a%g0", "/a%0g", "/%%41", "/a%2/"}) {
    EXPECT_EQ(path_verdict(path), "bad percent-escape in path") << path;
  }
}

TEST(RequestPath, PathMustStartWithSlash) {
  EXPECT_EQ(path_verdict(""), "path does not start with '/'");
  EXPECT_EQ(path_verdict("a/b"), "path does not start with '/'");
  EXPECT_EQ(path_verdict("*"), "path does not start with '/'");
  EXPECT_EQ(path_verdict("http://host/"), "path does not start with '/'");
}

TEST(RequestPath, BytesOutsideThePathCharactersAreRejected) {
  for (std::string_view path : {"/a b",   "/a#b",  "/a?b", "/a\tb", "/a\x7f", "/a\x01", "/a\x80",
                                "/a\xff", "/a\"b", "/a<b", "/a>b",  "/a[b",   "/a]b",   "/a{b",
                                "/a}b",   "/a|b",  "/a^b", "/a`b",  "/a\rb",  "/a\nb"}) {
    EXPECT_EQ(path_verdict(path), "invalid character in path") << path;
  }
  EXPECT_EQ(path_verdict(std::string_view("/a\0b", 4)), "invalid character in path");
}

TEST(RequestQuery, OrdinaryQueriesAreAccepted) {
  for (std::string_view query : {"", "a=b", "a=b&c=d", "dataset=/a/b/c", "x=?y", "q=%2F%2e%5c..",
                                 "rse_type=t1", "a=%C3%A9;b=:@!$'()*+,~-._"}) {
    EXPECT_EQ(query_verdict(query), "ok") << query;
  }
}

TEST(RequestQuery, BadQueriesAreRejected) {
  EXPECT_EQ(query_verdict("a=%"), "bad percent-escape in query");
  EXPECT_EQ(query_verdict("a=%zz"), "bad percent-escape in query");
  EXPECT_EQ(query_verdict("a=%4"), "bad percent-escape in query");
  for (std::string_view query : {"a b", "a#b", "a\\b", "a[0]=1", "a|b", "a{b}", "a^b", "a`b",
                                 "a\"b", "a<b", "a>b", "a\x80", "a\x1f"}) {
    EXPECT_EQ(query_verdict(query), "invalid character in query") << query;
  }
}

}  // namespace
}  // namespace routes
