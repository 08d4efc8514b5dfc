#include "routes/route_table.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace routes {
namespace {

RouteRule prefix_rule(std::string prefix, std::optional<std::string> rewrite = std::nullopt,
                      std::size_t backend = 0) {
  RouteRule rule;
  rule.path_prefix = std::move(prefix);
  rule.rewrite = std::move(rewrite);
  rule.backend_index = backend;
  return rule;
}

RouteRule regex_rule(std::string regex, std::optional<std::string> rewrite = std::nullopt,
                     std::size_t backend = 0, bool match_query = false) {
  RouteRule rule;
  rule.match_regex = std::move(regex);
  rule.rewrite = std::move(rewrite);
  rule.backend_index = backend;
  rule.match_query = match_query;
  return rule;
}

// Matches a target "path[?query]" and returns the forwarded target, or "<none>".
struct Matcher {
  const RouteTable& table;
  MatchScratch scratch;
  std::string target;
  const RouteRule* last = nullptr;

  explicit Matcher(const RouteTable& t) : table(t) {}

  std::string operator()(std::string_view request_target) {
    std::size_t q = request_target.find('?');
    bool has_query = q != std::string_view::npos;
    std::string_view path = request_target.substr(0, q);
    std::string_view query = has_query ? request_target.substr(q + 1) : std::string_view{};
    last = table.match(path, query, has_query, scratch, target);
    return last ? target : "<none>";
  }
};

std::size_t error_index(std::vector<RouteRule> rules, std::string* message = nullptr) {
  try {
    RouteTable table(std::move(rules));
  } catch (const RouteError& e) {
    if (message) *message = e.what();
    return e.rule_index();
  }
  ADD_FAILURE() << "no RouteError";
  return static_cast<std::size_t>(-1);
}

TEST(RouteTable, PrefixMatchesOnSegmentBoundary) {
  RouteTable table({prefix_rule("/a")});
  Matcher m(table);
  EXPECT_EQ(m("/a"), "/a");
  EXPECT_EQ(m("/a/"), "/a/");
  EXPECT_EQ(m("/a/b/c"), "/a/b/c");
  EXPECT_EQ(m("/a?x=1"), "/a?x=1");
  EXPECT_EQ(m("/ab"), "<none>");
  EXPECT_EQ(m("/"), "<none>");
  EXPECT_EQ(m("/b/a"), "<none>");
}

TEST(RouteTable, PrefixEndingInSlashRequiresTheSlash) {
  RouteTable table({prefix_rule("/a/")});
  Matcher m(table);
  EXPECT_EQ(m("/a/"), "/a/");
  EXPECT_EQ(m("/a/x"), "/a/x");
  EXPECT_EQ(m("/a"), "<none>");
  EXPECT_EQ(m("/ab"), "<none>");
}

TEST(RouteTable, RootPrefixMatchesEverything) {
  RouteTable table({prefix_rule("/")});
  Matcher m(table);
  EXPECT_EQ(m("/"), "/");
  EXPECT_EQ(m("/anything/at/all?q"), "/anything/at/all?q");
}

TEST(RouteTable, FirstMatchWins) {
  RouteTable table(
      {prefix_rule("/reqmgr2/data", std::nullopt, 1), prefix_rule("/reqmgr2", std::nullopt, 2),
       regex_rule("^/reqmgr2/data/x", std::nullopt, 3), prefix_rule("/", std::nullopt, 4)});
  Matcher m(table);
  m("/reqmgr2/data/x");
  ASSERT_NE(m.last, nullptr);
  EXPECT_EQ(m.last->backend_index, 1u);
  m("/reqmgr2/other");
  ASSERT_NE(m.last, nullptr);
  EXPECT_EQ(m.last->backend_index, 2u);
  m("/das");
  ASSERT_NE(m.last, nullptr);
  EXPECT_EQ(m.last->backend_index, 4u);
  EXPECT_EQ(m.last, &table.rule(3));
}

TEST(RouteTable, NoMatchReturnsNull) {
  RouteTable table({prefix_rule("/a"), regex_rule("^/b$")});
  Matcher m(table);
  EXPECT_EQ(m("/c"), "<none>");
  EXPECT_EQ(m("/b/"), "<none>");
  RouteTable empty(std::vector<RouteRule>{});
  Matcher e(empty);
  EXPECT_EQ(e("/"), "<none>");
  EXPECT_EQ(empty.size(), 0u);
}

TEST(RouteTable, MissingNamesDefaultToRouteIndex) {
  RouteRule named = prefix_rule("/a");
  named.name = "reqmgr2";
  RouteTable table({named, prefix_rule("/b")});
  EXPECT_EQ(table.size(), 2u);
  EXPECT_EQ(table.rule(0).name, "reqmgr2");
  EXPECT_EQ(table.rule(1).name, "route1");
}

TEST(RouteTable, PrefixRewriteReplacesTheMatchedPrefix) {
  RouteTable table({prefix_rule("/couchdb", ""),
                    prefix_rule("/wmstats", "/wmstats/_design/WMStats/_rewrite"),
                    prefix_rule("/scheddmon/0106", "/mon"), prefix_rule("/rel/", "rel/")});
  Matcher m(table);
  EXPECT_EQ(m("/couchdb/db/x"), "/db/x");
  EXPECT_EQ(m("/couchdb"), "/");
  EXPECT_EQ(m("/couchdb/"), "/");
  EXPECT_EQ(m("/couchdb/_all_dbs?limit=2"), "/_all_dbs?limit=2");
  EXPECT_EQ(m("/wmstats/index.html"), "/wmstats/_design/WMStats/_rewrite/index.html");
  EXPECT_EQ(m("/scheddmon/0106/X"), "/mon/X");
  EXPECT_EQ(m("/rel/x"), "/rel/x");  // a leading '/' is added to a relative result
}

TEST(RouteTable, ContractRegexRewritesWork) {
  RouteTable table({regex_rule("^/couchdb(/.*)?$", "$1"),
                    regex_rule("^/wmstats(/.*)?$", "/wmstats/_design/WMStats/_rewrite$1"),
                    regex_rule("^/scheddmon/0106(/.*)?$", "/mon${1}")});
  Matcher m(table);
  EXPECT_EQ(m("/couchdb/X"), "/X");
  EXPECT_EQ(m("/couchdb"), "/");  // group 1 unset: empty result becomes "/"
  EXPECT_EQ(m("/couchdb/X?a=b"), "/X?a=b");
  EXPECT_EQ(m("/couchdbX"), "<none>");
  EXPECT_EQ(m("/wmstats/X"), "/wmstats/_design/WMStats/_rewrite/X");
  EXPECT_EQ(m("/scheddmon/0106/X"), "/mon/X");
  EXPECT_EQ(m("/scheddmon/0106"), "/mon");
}

TEST(RouteTable, RewriteTemplateHandlesDollarAndGroupZero) {
  RouteTable table(
      {regex_rule("^/p/(a)(b)?(c)", "/q/$$$1-${2}-$3/$0"), regex_rule("^/r/(x)?", "x$1y")});
  Matcher m(table);
  EXPECT_EQ(m("/p/abc/rest"), "/q/$a-b-c//p/abc");
  EXPECT_EQ(m("/p/ac"), "/q/$a--c//p/ac");
  EXPECT_EQ(m("/r/"), "/xy");
}

TEST(RouteTable, RegexWithoutRewriteForwardsThePathUnchanged) {
  RouteTable table({regex_rule("^/dbs/(prod|int)/")});
  Matcher m(table);
  EXPECT_EQ(m("/dbs/prod/global/DBSReader/datasets?dataset=/a/b/c"),
            "/dbs/prod/global/DBSReader/datasets?dataset=/a/b/c");
  EXPECT_EQ(m("/dbs/dev/x"), "<none>");
}

TEST(RouteTable, QueryMatchingRuleRoutesOnTheQueryString) {
  // The Apache FE backends-file example: the regex sees "path?query".
  RouteTable table(
      {regex_rule("^/auth/complete/ms-unmerged/(?:.*rse_type=t1)(?:/|$)", std::nullopt, 1, true),
       prefix_rule("/auth/complete/ms-unmerged", std::nullopt, 2)});
  Matcher m(table);
  EXPECT_EQ(m("/auth/complete/ms-unmerged/?rse_type=t1"),
            "/auth/complete/ms-unmerged/?rse_type=t1");
  EXPECT_EQ(m.last->backend_index, 1u);
  EXPECT_EQ(m("/auth/complete/ms-unmerged/x?rse_type=t1/"),
            "/auth/complete/ms-unmerged/x?rse_type=t1/");
  EXPECT_EQ(m.last->backend_index, 1u);
  EXPECT_EQ(m("/auth/complete/ms-unmerged/x?rse_type=t2"),
            "/auth/complete/ms-unmerged/x?rse_type=t2");
  EXPECT_EQ(m.last->backend_index, 2u);
  EXPECT_EQ(m("/auth/complete/ms-unmerged/x"), "/auth/complete/ms-unmerged/x");
  EXPECT_EQ(m.last->backend_index, 2u);
}

TEST(RouteTable, PathOnlyRegexDoesNotSeeTheQuery) {
  RouteTable table({regex_rule("rse_type=t1", std::nullopt, 1), prefix_rule("/", std::nullopt, 2)});
  Matcher m(table);
  m("/ms-unmerged/data?rse_type=t1");
  ASSERT_NE(m.last, nullptr);
  EXPECT_EQ(m.last->backend_index, 2u);
}

TEST(RouteTable, MatchLimitFailureDoesNotFallThroughToLaterRules) {
  // Catastrophic backtracking hits the match limit; the catch-all after it must not win.
  RouteTable table({regex_rule("^/(a+)+$"), prefix_rule("/")});
  Matcher m(table);
  std::string evil = "/" + std::string(40, 'a') + "b";
  EXPECT_EQ(m(evil), "<none>");
  EXPECT_EQ(m("/aaa"), "/aaa");
  EXPECT_EQ(m("/b"), "/b");
}

TEST(RouteTable, QueryMatchingRewriteReplacesPathAndQuery) {
  RouteTable table({regex_rule("^/old\\?id=([0-9]+)$", "/new/$1", 0, true),
                    regex_rule("^/keep(/.*)?$", "/kept$1", 0, true)});
  Matcher m(table);
  EXPECT_EQ(m("/old?id=42"), "/new/42");
  EXPECT_EQ(m("/old?id=x"), "<none>");
  EXPECT_EQ(m("/keep/a"), "/kept/a");
  EXPECT_EQ(m("/keep/a?b=c"), "/kept/a?b=c");  // the query was part of the match
}

TEST(RouteTable, ForwardedTargetKeepsAnEmptyQuery) {
  RouteTable table({prefix_rule("/a", "/b"), regex_rule("^/c(.*)$", "/d$1")});
  Matcher m(table);
  EXPECT_EQ(m("/a/x?"), "/b/x?");
  EXPECT_EQ(m("/c/x?"), "/d/x?");
  EXPECT_EQ(m("/c/x?k=v&l"), "/d/x?k=v&l");
}

TEST(RouteTable, ForwardedTargetIsReplacedNotAppended) {
  RouteTable table({prefix_rule("/a")});
  MatchScratch scratch;
  std::string target = "stale contents";
  ASSERT_NE(table.match("/a/1", "", false, scratch, target), nullptr);
  EXPECT_EQ(target, "/a/1");
  ASSERT_NE(table.match("/a/2", "q", true, scratch, target), nullptr);
  EXPECT_EQ(target, "/a/2?q");
}

TEST(RouteTable, ManyCaptureGroupsGrowTheScratch) {
  std::string regex = "^/";
  for (int i = 0; i < 40; ++i) regex += "(.)";
  RouteTable table({regex_rule(regex, "/${40}${1}")});
  Matcher m(table);
  std::string path = "/";
  for (int i = 0; i < 40; ++i) path += static_cast<char>('A' + i % 26);
  EXPECT_EQ(m(path), "/NA");
}

TEST(RouteTable, PathsAreMatchedAsBytes) {
  RouteTable table({regex_rule("^/x/(.)$", "/y/$1")});
  Matcher m(table);
  EXPECT_EQ(m("/x/\xff"), "/y/\xff");
}

TEST(RouteTable, TableIsMovable) {
  RouteTable a({prefix_rule("/a", "/b")});
  RouteTable b = std::move(a);
  RouteTable c({prefix_rule("/z")});
  c = std::move(b);
  Matcher m(c);
  EXPECT_EQ(m("/a/z"), "/b/z");
}

TEST(RouteTable, InvalidRegexReportsRuleIndexAndOffset) {
  std::string message;
  EXPECT_EQ(error_index({prefix_rule("/a"), regex_rule("^/b"), regex_rule("^/c(")}, &message), 2u);
  EXPECT_NE(message.find("invalid regex '^/c('"), std::string::npos) << message;
  EXPECT_NE(message.find("at offset 4"), std::string::npos) << message;
}

TEST(RouteTable, RuleNeedsExactlyOneMatcher) {
  EXPECT_EQ(error_index({prefix_rule("/a"), RouteRule{}}), 1u);
  RouteRule both = prefix_rule("/a");
  both.match_regex = "^/a";
  EXPECT_EQ(error_index({both}), 0u);
}

TEST(RouteTable, PrefixMustStartWithSlash) {
  std::string message;
  EXPECT_EQ(error_index({prefix_rule("a")}, &message), 0u);
  EXPECT_NE(message.find("must start with '/'"), std::string::npos) << message;
}

TEST(RouteTable, QueryMatchingNeedsARegex) {
  RouteRule rule = prefix_rule("/a");
  rule.match_query = true;
  EXPECT_EQ(error_index({rule}), 0u);
}

TEST(RouteTable, PrefixRewriteWithDollarIsRejected) {
  std::string message;
  EXPECT_EQ(error_index({prefix_rule("/a"), prefix_rule("/b", "/c$1")}, &message), 1u);
  EXPECT_NE(message.find("rewrite of a path rule is a plain prefix"), std::string::npos) << message;
}

TEST(RouteTable, RewriteTemplateErrorsAreRejected) {
  std::string message;
  EXPECT_EQ(error_index({regex_rule("^/a(.*)$", "/b$2")}, &message), 0u);
  EXPECT_NE(message.find("$2"), std::string::npos) << message;
  EXPECT_EQ(error_index({regex_rule("^/a(.*)$", "/b${2}")}), 0u);
  EXPECT_EQ(error_index({regex_rule("^/a$", "/b$1")}), 0u);
  EXPECT_EQ(error_index({regex_rule("^/a(.*)$", "/b$")}, &message), 0u);
  EXPECT_NE(message.find("lone '$'"), std::string::npos) << message;
  EXPECT_EQ(error_index({regex_rule("^/a(.*)$", "/b$x")}), 0u);
  EXPECT_EQ(error_index({regex_rule("^/a(.*)$", "/b${}")}), 0u);
  EXPECT_EQ(error_index({regex_rule("^/a(.*)$", "/b${1")}), 0u);
  EXPECT_EQ(error_index({regex_rule("^/a(.*)$", "/b${x}")}), 0u);
  EXPECT_EQ(error_index({regex_rule("^/a(.*)$", "/b${99999999999999999999}")}), 0u);
}

TEST(RouteTable, UtfPatternStartIsRejected) {
  EXPECT_EQ(error_index({regex_rule("(*UTF)^/a")}), 0u);
}

}  // namespace
}  // namespace routes
