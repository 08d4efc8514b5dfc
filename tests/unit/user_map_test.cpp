#include "auth/user_map.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <string>
#include <vector>

namespace auth {
namespace {

using Roles = std::vector<std::pair<std::string, std::string>>;

constexpr std::string_view kDn =
    "/DC=ch/DC=cern/OU=Organic Units/OU=Users/CN=jdoe/CN=123456/CN=John Doe";
// A record that is always valid: tests of skipped records put it next to the bad one, to show
// the bad one costs only itself.
constexpr std::string_view kGoodRecord = R"({"DN": "/DC=ch/CN=good", "LOGIN": "good"})";

// Parses input expected to be accepted.
std::shared_ptr<const UserMap> parse_ok(std::string_view json, const UserMapLimits& limits = {}) {
  std::string error = "stale";
  auto map = UserMap::parse(json, error, limits);
  EXPECT_NE(map, nullptr) << error;
  EXPECT_EQ(error, "");  // cleared on success
  return map;
}

// Parses input expected to be refused as a whole; returns the error.
std::string parse_error(std::string_view json, const UserMapLimits& limits = {}) {
  std::string error;
  EXPECT_EQ(UserMap::parse(json, error, limits), nullptr) << json;
  EXPECT_FALSE(error.empty()) << json;
  return error;
}

// ---- canonical forms ---------------------------------------------------------------------------

TEST(CanonicalRoleName, LowercasesAndTurnsEveryOtherByteIntoADash) {
  EXPECT_EQ(canonical_role_name("data-manager"), "data-manager");
  EXPECT_EQ(canonical_role_name("Data Manager"), "data-manager");
  EXPECT_EQ(canonical_role_name("data_manager"), "data-manager");
  EXPECT_EQ(canonical_role_name("ADMIN"), "admin");
  EXPECT_EQ(canonical_role_name("T1 ok.9"), "t1-ok-9");
  EXPECT_EQ(canonical_role_name("a:b/c"), "a-b-c");
  EXPECT_EQ(canonical_role_name(""), "");
}

TEST(CanonicalRoleName, Utf8BecomesOneDashPerByte) {
  EXPECT_EQ(canonical_role_name("Z\xc3\xbcrich"), "z--rich");   // ü: 2 bytes
  EXPECT_EQ(canonical_role_name("\xe2\x82\xacuro"), "---uro");  // €: 3 bytes
  EXPECT_EQ(canonical_role_name("\xf0\x9f\x98\x80"), "----");   // emoji: 4 bytes
}

TEST(CanonicalRoleItem, CanonicalisesBothPartsAndKeepsTheFirstColon) {
  EXPECT_EQ(canonical_role_item("group:ReqMgr"), "group:reqmgr");
  EXPECT_EQ(canonical_role_item("site:T1_CH_CERN"), "site:t1-ch-cern");
  EXPECT_EQ(canonical_role_item("Group Name:My Site"), "group-name:my-site");
  EXPECT_EQ(canonical_role_item("site:Z\xc3\xbcrich"), "site:z--rich");
  EXPECT_EQ(canonical_role_item("a:b:c"), "a:b-c");  // only the first ':' separates
  EXPECT_EQ(canonical_role_item(" : "), "-:-");      // non-empty parts, however odd
}

TEST(CanonicalRoleItem, EmptyPartOrNoColonIsInvalid) {
  EXPECT_EQ(canonical_role_item("group:"), "");
  EXPECT_EQ(canonical_role_item(":x"), "");
  EXPECT_EQ(canonical_role_item(":"), "");
  EXPECT_EQ(canonical_role_item("no colon"), "");
  EXPECT_EQ(canonical_role_item(""), "");
}

TEST(CanonicalSortedDn, SortsTheNonEmptyPartsBytewise) {
  EXPECT_EQ(sorted_dn("/DC=ch/DC=cern/CN=a"), "CN=a/DC=cern/DC=ch");
  EXPECT_EQ(sorted_dn("/CN=a/DC=ch/DC=cern"), sorted_dn("/DC=ch/DC=cern/CN=a"));
  EXPECT_EQ(sorted_dn("//DC=ch///CN=a/"), "CN=a/DC=ch");
  EXPECT_EQ(sorted_dn("DC=ch/CN=a"), "CN=a/DC=ch");
  EXPECT_EQ(sorted_dn("/"), "");
  EXPECT_EQ(sorted_dn(""), "");
}

// ---- records -----------------------------------------------------------------------------------

TEST(UserMap, ParsesARecord) {
  const auto map = parse_ok(R"([{
    "DN": "/DC=ch/DC=cern/OU=Organic Units/OU=Users/CN=jdoe/CN=123456/CN=John Doe",
    "ID": 123456, "LOGIN": "jdoe", "NAME": "John Doe",
    "ROLES": {"admin": ["group:reqmgr"], "data-manager": ["site:T1_CH_CERN", "site:T2_CH_CERN"]}
  }])");
  ASSERT_NE(map, nullptr);
  const UserRecord* user = map->find(kDn);
  ASSERT_NE(user, nullptr);
  EXPECT_EQ(user->login, "jdoe");
  EXPECT_EQ(user->name, "John Doe");
  EXPECT_EQ(user->id, 123456);
  EXPECT_EQ(user->dns, std::vector<std::string>{std::string(kDn)});
  EXPECT_EQ(user->roles, (Roles{{"admin", "group:reqmgr"},
                                {"data-manager", "site:t1-ch-cern site:t2-ch-cern"}}));
  const UserMap::Stats& stats = map->stats();
  EXPECT_EQ(stats.records, 1u);
  EXPECT_EQ(stats.users, 1u);
  EXPECT_EQ(stats.dns, 1u);
  EXPECT_EQ(stats.skipped, 0u);
  EXPECT_EQ(stats.duplicate_dns, 0u);
  EXPECT_EQ(stats.first_problem, "");
  EXPECT_EQ(map->users(), 1u);
}

TEST(UserMap, EmptyArrayIsAnEmptyMap) {
  const auto map = parse_ok(" [ ] \n");
  ASSERT_NE(map, nullptr);
  EXPECT_EQ(map->users(), 0u);
  EXPECT_EQ(map->stats().records, 0u);
  EXPECT_EQ(map->find(kDn), nullptr);
}

TEST(UserMap, NullOrAbsentOptionalFieldsAreEmpty) {
  const auto map = parse_ok(R"([
    {"DN": "/CN=a", "LOGIN": "a", "NAME": null, "ID": null, "ROLES": null, "DNs": null},
    {"DN": "/CN=b", "LOGIN": "b"},
    {"DN": "/CN=c", "LOGIN": "c", "ID": -5, "ROLES": {}, "DNs": []}
  ])");
  ASSERT_NE(map, nullptr);
  ASSERT_EQ(map->users(), 3u);
  for (std::string_view dn : {"/CN=a", "/CN=b"}) {
    const UserRecord* user = map->find(dn);
    ASSERT_NE(user, nullptr) << dn;
    EXPECT_EQ(user->name, "") << dn;
    EXPECT_EQ(user->id, 0) << dn;
    EXPECT_TRUE(user->roles.empty()) << dn;
    EXPECT_EQ(user->dns.size(), 1u) << dn;
  }
  EXPECT_EQ(map->find("/CN=c")->id, -5);
}

TEST(UserMap, UnknownKeysAreIgnored) {
  const auto map = parse_ok(R"([{"DN": "/CN=a", "LOGIN": "a", "EMAIL": "a@cern.ch",
    "dn": 5, "Roles": [1], "nested": {"deep": [{"x": null}]}, "TYPE": "\u0001"}])");
  ASSERT_NE(map, nullptr);
  EXPECT_EQ(map->stats().skipped, 0u);
  ASSERT_NE(map->find("/CN=a"), nullptr);
  EXPECT_TRUE(map->find("/CN=a")->roles.empty());
}

TEST(UserMap, IgnoredMembersAreSkippedWhole) {
  const auto map = parse_ok(R"([{"EXTRA": {"DN": "/CN=evil", "LOGIN": "evil",
    "ROLES": {"admin": ["group:evil"]}, "list": [{"DN": "/CN=evil2"}, [[]]]},
    "DN": "/CN=a", "LOGIN": "a", "MORE": [{"LOGIN": "evil"}], "ROLES": {"r": ["k:v"]}}])");
  ASSERT_NE(map, nullptr);
  EXPECT_EQ(map->stats().skipped, 0u) << map->stats().first_problem;
  const UserRecord* user = map->find("/CN=a");
  ASSERT_NE(user, nullptr);
  EXPECT_EQ(user->login, "a");
  EXPECT_EQ(user->roles, (Roles{{"r", "k:v"}}));
  EXPECT_EQ(map->find("/CN=evil"), nullptr);
  EXPECT_EQ(map->find("/CN=evil2"), nullptr);
  EXPECT_EQ(map->stats().dns, 1u);
}

// As in a JSON DOM, a repeated member replaces the earlier one.
TEST(UserMap, RepeatedMemberLastOneCounts) {
  const auto map = parse_ok(R"([{"DN": "/CN=old", "LOGIN": 5, "DNs": [1], "ROLES": [],
    "DN": "/CN=a", "LOGIN": "a", "DNs": ["/CN=b"], "ROLES": {"r": ["k:v"]}}])");
  ASSERT_NE(map, nullptr);
  EXPECT_EQ(map->stats().skipped, 0u) << map->stats().first_problem;
  const UserRecord* user = map->find("/CN=b");
  ASSERT_NE(user, nullptr);
  EXPECT_EQ(user->login, "a");
  EXPECT_EQ(user->dns, (std::vector<std::string>{"/CN=a", "/CN=b"}));
  EXPECT_EQ(user->roles, (Roles{{"r", "k:v"}}));
  EXPECT_EQ(map->find("/CN=old"), nullptr);
}

TEST(UserMap, Utf8AndEscapesAreKeptDecoded) {
  const auto map = parse_ok(R"([{"DN": "/CN=Jos\u00e9 \"J\" Mu\u00f1oz", "LOGIN": "jose",
    "NAME": "José Muñoz"}])");
  ASSERT_NE(map, nullptr);
  const UserRecord* user = map->find("/CN=Jos\xc3\xa9 \"J\" Mu\xc3\xb1oz");
  ASSERT_NE(user, nullptr);
  EXPECT_EQ(user->name, "Jos\xc3\xa9 Mu\xc3\xb1oz");
}

TEST(UserMap, RolesAreCanonicalMergedDedupedAndSorted) {
  const auto map = parse_ok(R"([{"DN": "/CN=a", "LOGIN": "a", "ROLES": {
    "Web Admin": ["group:Facops", "site:T1_CH_CERN", "group:facops"],
    "web_admin": ["site:t1-ch-cern", "Group:DAS"],
    "admin": ["nocolon", "group:", ":x"],
    "": ["group:x"],
    "Data-Manager": [],
    "Ab": ["site:X"]
  }}])");
  ASSERT_NE(map, nullptr);
  const UserRecord* user = map->find("/CN=a");
  ASSERT_NE(user, nullptr);
  // "Web Admin" and "web_admin" merge, in document order; "admin" and "data-manager" end up
  // without items and "" has no canonical name: all dropped.
  EXPECT_EQ(user->roles,
            (Roles{{"ab", "site:x"}, {"web-admin", "group:facops site:t1-ch-cern group:das"}}));
}

// ---- lookups -----------------------------------------------------------------------------------

TEST(UserMap, FindsByExactAndBySortedDn) {
  const auto map = parse_ok(R"([
    {"DN": "/DC=ch/DC=cern/OU=Organic Units/OU=Users/CN=jdoe/CN=123456/CN=John Doe", "LOGIN": "jdoe"},
    {"DN": "/DC=org/CN=other", "LOGIN": "other"}
  ])");
  ASSERT_NE(map, nullptr);
  ASSERT_NE(map->find(kDn), nullptr);
  EXPECT_EQ(map->find(kDn)->login, "jdoe");
  // A CA printing the attributes in another order (and a stray empty part) still matches.
  const UserRecord* reordered =
      map->find("/CN=John Doe/CN=123456/CN=jdoe/OU=Users/OU=Organic Units/DC=cern//DC=ch");
  ASSERT_NE(reordered, nullptr);
  EXPECT_EQ(reordered->login, "jdoe");
  EXPECT_EQ(map->find("/CN=other/DC=org")->login, "other");
}

TEST(UserMap, UnknownDnsAreNotFound) {
  const auto map = parse_ok(R"([{"DN": "/DC=org/CN=other", "LOGIN": "other"}])");
  ASSERT_NE(map, nullptr);
  EXPECT_EQ(map->find("/DC=org/CN=another"), nullptr);
  EXPECT_EQ(map->find("/DC=org/CN=other/CN=proxy"), nullptr);  // no prefix matching
  EXPECT_EQ(map->find("/dc=org/cn=other"), nullptr);           // case matters
  EXPECT_EQ(map->find("/DC=org"), nullptr);
  EXPECT_EQ(map->find(""), nullptr);
  EXPECT_EQ(map->find("/"), nullptr);
  EXPECT_EQ(map->find("//"), nullptr);
}

TEST(UserMap, DnAliasesFindTheSameUser) {
  const auto map = parse_ok(R"([{"DN": "/CN=main", "LOGIN": "a",
    "DNs": ["/CN=alias1", "/CN=main", "/DC=org/CN=alias2", "/CN=alias1"]}])");
  ASSERT_NE(map, nullptr);
  const UserRecord* user = map->find("/CN=main");
  ASSERT_NE(user, nullptr);
  // The main DN first, then the aliases as written, each once.
  EXPECT_EQ(user->dns, (std::vector<std::string>{"/CN=main", "/CN=alias1", "/DC=org/CN=alias2"}));
  EXPECT_EQ(map->find("/CN=alias1"), user);
  EXPECT_EQ(map->find("/DC=org/CN=alias2"), user);
  EXPECT_EQ(map->find("/CN=alias2/DC=org"), user);  // aliases are in the sorted index too
  EXPECT_EQ(map->stats().dns, 3u);
  EXPECT_EQ(map->stats().duplicate_dns, 0u);  // repeats within one record are not duplicates
}

TEST(UserMap, FirstRecordWinsADuplicateDn) {
  const auto map = parse_ok(R"([
    {"DN": "/CN=shared", "LOGIN": "first"},
    {"DN": "/CN=own", "LOGIN": "second", "DNs": ["/CN=shared"]},
    {"DN": "/CN=shared", "LOGIN": "third"}
  ])");
  ASSERT_NE(map, nullptr);
  EXPECT_EQ(map->find("/CN=shared")->login, "first");
  EXPECT_EQ(map->find("/CN=own")->login, "second");
  EXPECT_EQ(map->stats().users, 3u);  // the third is kept, just unreachable
  EXPECT_EQ(map->stats().dns, 2u);
  EXPECT_EQ(map->stats().duplicate_dns, 2u);
  EXPECT_EQ(map->stats().skipped, 0u);
}

TEST(UserMap, FirstRecordWinsTheSortedIndex) {
  const auto map = parse_ok(R"([
    {"DN": "/DC=ch/CN=a", "LOGIN": "first"},
    {"DN": "/CN=a/DC=ch", "LOGIN": "second"}
  ])");
  ASSERT_NE(map, nullptr);
  // Distinct exact DNs: each finds its own record; any other order finds the first.
  EXPECT_EQ(map->find("/DC=ch/CN=a")->login, "first");
  EXPECT_EQ(map->find("/CN=a/DC=ch")->login, "second");
  EXPECT_EQ(map->find("/CN=a//DC=ch")->login, "first");
  EXPECT_EQ(map->stats().dns, 2u);
  EXPECT_EQ(map->stats().duplicate_dns, 0u);
}

// ---- skipped records ---------------------------------------------------------------------------

struct BadRecord {
  std::string_view json;
  std::string_view problem;
};

TEST(UserMap, SkipsUnusableRecords) {
  const BadRecord cases[] = {
      {R"(42)", "not an object"},
      {R"(["/CN=x", "x"])", "not an object"},
      {R"(null)", "not an object"},
      {R"({"LOGIN": "x"})", "DN missing"},
      {R"({"DN": 5, "LOGIN": "x"})", "DN not a string"},
      {R"({"DN": null, "LOGIN": "x"})", "DN not a string"},
      {R"({"DN": ["/CN=x"], "LOGIN": "x"})", "DN not a string"},
      {R"({"DN": "", "LOGIN": "x"})", "DN empty"},
      {R"({"DN": "CN=x/DC=ch", "LOGIN": "x"})", "DN does not start with '/'"},
      {R"({"DN": "/CN=x"})", "LOGIN missing"},
      {R"({"DN": "/CN=x", "LOGIN": 7})", "LOGIN not a string"},
      {R"({"DN": "/CN=x", "LOGIN": null})", "LOGIN not a string"},
      {R"({"DN": "/CN=x", "LOGIN": ""})", "LOGIN empty"},
      {R"({"DN": "/CN=x", "LOGIN": "x", "NAME": 3})", "NAME not a string"},
      {R"({"DN": "/CN=x", "LOGIN": "x", "ID": "12"})", "ID not an integer"},
      {R"({"DN": "/CN=x", "LOGIN": "x", "ID": 1.5})", "ID not an integer"},
      {R"({"DN": "/CN=x", "LOGIN": "x", "ID": 12.0})", "ID not an integer"},
      {R"({"DN": "/CN=x", "LOGIN": "x", "ID": true})", "ID not an integer"},
      {R"({"DN": "/CN=x", "LOGIN": "x", "ID": 18446744073709551615})", "ID out of range"},
      {R"({"DN": "/CN=x", "LOGIN": "x", "DNs": "/CN=y"})", "DNs not an array"},
      {R"({"DN": "/CN=x", "LOGIN": "x", "DNs": [1]})", "DNs entry not a string"},
      {R"({"DN": "/CN=x", "LOGIN": "x", "DNs": [""]})", "DNs entry empty"},
      {R"({"DN": "/CN=x", "LOGIN": "x", "DNs": ["CN=y"]})", "DNs entry does not start with '/'"},
      {R"({"DN": "/CN=x", "LOGIN": "x", "ROLES": []})", "ROLES not an object"},
      {R"({"DN": "/CN=x", "LOGIN": "x", "ROLES": "admin"})", "ROLES not an object"},
      {R"({"DN": "/CN=x", "LOGIN": "x", "ROLES": {"admin": "group:x"}})",
       "ROLES value not an array"},
      {R"({"DN": "/CN=x", "LOGIN": "x", "ROLES": {"admin": null}})", "ROLES value not an array"},
      {R"({"DN": "/CN=x", "LOGIN": "x", "ROLES": {"admin": [1]}})", "ROLES item not a string"},
      {R"({"DN": "/CN=x", "LOGIN": "x", "ROLES": {"admin": [["group:x"]]}})",
       "ROLES item not a string"},
      {R"({"DN": "/CN=x", "LOGIN": "x", "ROLES": {"admin": {"group:x": "group:y"}}})",
       "ROLES value not an array"},
      // Wrong-typed containers are skipped whole: what they hold is not mistaken for members.
      {R"({"DN": {"DN": "/CN=x"}, "LOGIN": "x"})", "DN not a string"},
      {R"({"DN": "/CN=x", "LOGIN": ["x"]})", "LOGIN not a string"},
      {R"({"DN": "/CN=x", "LOGIN": "x", "NAME": {"first": "x"}})", "NAME not a string"},
      {R"({"DN": "/CN=x", "LOGIN": "x", "ID": [1]})", "ID not an integer"},
      {R"({"DN": "/CN=x", "LOGIN": "x", "DNs": {"DN": "/CN=y"}})", "DNs not an array"},
      {R"({"DN": "/CN=x", "LOGIN": "x", "DNs": [["/CN=y"]]})", "DNs entry not a string"},
      {R"({"DN": "/CN=x", "LOGIN": "x", "ROLES": [{"admin": ["group:x"]}]})",
       "ROLES not an object"},
      {R"([{"DN": "/CN=x", "LOGIN": "x"}])", "not an object"},
      // Control characters (header injection): escaped ones, and a raw DEL (valid in JSON).
      {R"({"DN": "/CN=x\r\nX-Evil: 1", "LOGIN": "x"})", "DN has a control character"},
      {R"({"DN": "/CN=x", "LOGIN": "x\n"})", "LOGIN has a control character"},
      {R"({"DN": "/CN=x", "LOGIN": "x", "NAME": "a\u0000b"})", "NAME has a control character"},
      {"{\"DN\": \"/CN=x\", \"LOGIN\": \"x\", \"NAME\": \"a\x7f\"}",
       "NAME has a control character"},
      {R"({"DN": "/CN=x", "LOGIN": "x", "NAME": "a\u007f"})", "NAME has a control character"},
      {R"({"DN": "/CN=x", "LOGIN": "x", "DNs": ["/CN=y\u001f"]})",
       "DNs entry has a control character"},
      {R"({"DN": "/CN=x", "LOGIN": "x", "ROLES": {"ad\tmin": ["group:x"]}})",
       "ROLES name has a control character"},
      {R"({"DN": "/CN=x", "LOGIN": "x", "ROLES": {"admin": ["group:x\u001b[0m"]}})",
       "ROLES item has a control character"},
      // Checked before canonicalisation: an item that would be dropped still condemns the record.
      {R"({"DN": "/CN=x", "LOGIN": "x", "ROLES": {"admin": ["\n"]}})",
       "ROLES item has a control character"},
  };
  for (const BadRecord& bad : cases) {
    const std::string json = "[" + std::string(bad.json) + ", " + std::string(kGoodRecord) + "]";
    const auto map = parse_ok(json);
    ASSERT_NE(map, nullptr) << bad.json;
    const UserMap::Stats& stats = map->stats();
    EXPECT_EQ(stats.records, 2u) << bad.json;
    EXPECT_EQ(stats.skipped, 1u) << bad.json;
    EXPECT_EQ(stats.users, 1u) << bad.json;
    EXPECT_EQ(stats.dns, 1u) << bad.json;
    EXPECT_EQ(stats.first_problem, "record 0: " + std::string(bad.problem)) << bad.json;
    EXPECT_EQ(map->find("/CN=x"), nullptr) << bad.json;
    EXPECT_NE(map->find("/DC=ch/CN=good"), nullptr) << bad.json;
  }
}

TEST(UserMap, SkipsFieldsOverTheSizeLimit) {
  UserMapLimits limits;
  limits.max_field_bytes = 16;
  const BadRecord cases[] = {
      {R"({"DN": "/CN=xxxxxxxxxxxxx", "LOGIN": "x"})", "DN longer than 16 bytes"},
      {R"({"DN": "/CN=x", "LOGIN": "aaaaaaaaaaaaaaaaa"})", "LOGIN longer than 16 bytes"},
      {R"({"DN": "/CN=x", "LOGIN": "x", "NAME": "aaaaaaaaaaaaaaaaa"})",
       "NAME longer than 16 bytes"},
      {R"({"DN": "/CN=x", "LOGIN": "x", "DNs": ["/aaaaaaaaaaaaaaaa"]})",
       "DNs entry longer than 16 bytes"},
      {R"({"DN": "/CN=x", "LOGIN": "x", "ROLES": {"aaaaaaaaaaaaaaaaa": ["a:b"]}})",
       "ROLES name longer than 16 bytes"},
      {R"({"DN": "/CN=x", "LOGIN": "x", "ROLES": {"a": ["group:aaaaaaaaaaa"]}})",
       "ROLES item longer than 16 bytes"},
  };
  for (const BadRecord& bad : cases) {
    const std::string json = "[" + std::string(bad.json) + "," + std::string(kGoodRecord) + "]";
    const auto map = parse_ok(json, limits);
    ASSERT_NE(map, nullptr) << bad.json;
    EXPECT_EQ(map->stats().skipped, 1u) << bad.json;
    EXPECT_EQ(map->stats().first_problem, "record 0: " + std::string(bad.problem)) << bad.json;
  }
  // Exactly at the limit is accepted.
  const std::string at_limit(16, 'a');
  const std::string at_limit_json = R"([{"DN": "/CN=xxxxxxxxxxxx", "LOGIN": ")" + at_limit +
                                    R"(", "NAME": ")" + at_limit + R"(", "ROLES": {")" + at_limit +
                                    R"(": ["group:aaaaaaaaaa"]}}])";
  const auto map = parse_ok(at_limit_json, limits);
  ASSERT_NE(map, nullptr);
  EXPECT_EQ(map->stats().skipped, 0u) << map->stats().first_problem;
  EXPECT_EQ(map->users(), 1u);
}

TEST(UserMap, FirstProblemNamesTheFirstSkippedRecord) {
  const auto map = parse_ok(R"([
    {"DN": "/CN=a", "LOGIN": "a"},
    {"DN": "/CN=b"},
    "junk",
    {"DN": "/CN=c", "LOGIN": "c"}
  ])");
  ASSERT_NE(map, nullptr);
  EXPECT_EQ(map->stats().records, 4u);
  EXPECT_EQ(map->stats().skipped, 2u);
  EXPECT_EQ(map->stats().users, 2u);
  EXPECT_EQ(map->stats().first_problem, "record 1: LOGIN missing");
}

// ---- whole-input failures ----------------------------------------------------------------------

TEST(UserMap, RefusesMalformedJsonWithItsPosition) {
  EXPECT_EQ(
      parse_error("[\n  {\"DN\": \"/CN=a\",\n   \"LOGIN\": x}\n]").rfind("line 3, column 13: ", 0),
      0u);
  EXPECT_EQ(parse_error("[1,]").rfind("line 1, column 4: ", 0), 0u);
  EXPECT_EQ(parse_error("[{\"DN\": \"/CN=a\"").rfind("line 1, column ", 0), 0u);  // truncated
  EXPECT_EQ(parse_error("[] []").rfind("line 1, column 4: ", 0), 0u);  // trailing garbage
  // A raw control character inside a string is not JSON either.
  EXPECT_EQ(parse_error("[{\"DN\": \"/CN=a\nb\", \"LOGIN\": \"a\"}]").rfind("line 1, column ", 0),
            0u);
  parse_error("");
  parse_error("   ");
  parse_error("[{\"DN\": \"/CN=a\", \"LOGIN\": \"a\"} // comment\n]");
  parse_error("[{\"DN\": \"/CN=a\", \"LOGIN\": \"a\", \"X\": 1e999}]");  // number overflow
}

TEST(UserMap, RefusesATopLevelThatIsNotAnArray) {
  EXPECT_NE(parse_error(R"({"DN": "/CN=a", "LOGIN": "a"})").find("object"), std::string::npos);
  EXPECT_NE(parse_error(R"("text")").find("string"), std::string::npos);
  parse_error("null");
  parse_error("42");
}

TEST(UserMap, RefusesInvalidUtf8AndKeepsTheErrorPrintable) {
  for (std::string_view json : {
           std::string_view("[{\"DN\": \"/CN=\xff\", \"LOGIN\": \"a\"}]"),
           std::string_view("[{\"DN\": \"/CN=a\", \"LOGIN\": \"\xc3\"}]"),  // truncated sequence
           std::string_view("[{\"DN\": \"/CN=\xc0\xaf\", \"LOGIN\": \"a\"}]"),      // overlong '/'
           std::string_view("[{\"DN\": \"/CN=\xed\xa0\x80\", \"LOGIN\": \"a\"}]"),  // surrogate
           std::string_view("[{\"DN\": \"/CN=\\ud800\", \"LOGIN\": \"a\"}]"),       // lone escape
           std::string_view("[\xff]"),
       }) {
    const std::string error = parse_error(json);
    EXPECT_EQ(error.rfind("line 1, column ", 0), 0u) << error;
    for (const char c : error)
      EXPECT_TRUE(c >= 0x20 && c < 0x7f) << "byte " << static_cast<int>(c) << " in " << error;
  }
}

TEST(UserMap, RefusesInputOverTheSizeLimitUnread) {
  UserMapLimits limits;
  limits.max_bytes = 32;
  const std::string fits = R"([{"DN":"/CN=a","LOGIN":"a"}])";
  ASSERT_LE(fits.size(), 32u);
  const std::string padded = fits + std::string(32 - fits.size(), ' ');
  ASSERT_NE(parse_ok(padded, limits), nullptr);
  const std::string error = parse_error(padded + " ", limits);
  EXPECT_NE(error.find("33 bytes"), std::string::npos) << error;
  // Refused before parsing: even garbage gets the size error, not a syntax error.
  EXPECT_NE(parse_error(std::string(64, '{'), limits).find("limit"), std::string::npos);
}

TEST(UserMap, DeepNestingIsHarmless) {
  const std::size_t depth = 100000;
  const std::string json = "[" + std::string(depth, '[') + std::string(depth, ']') + "]";
  const auto map = parse_ok(json);
  ASSERT_NE(map, nullptr);
  EXPECT_EQ(map->stats().skipped, 1u);
  EXPECT_EQ(map->stats().first_problem, "record 0: not an object");
}

// ---- merge -------------------------------------------------------------------------------------

TEST(UserMap, MergeKeepsFirstAndAddsSecondsUntakenDns) {
  const auto file = parse_ok(R"([
    {"DN": "/CN=a", "LOGIN": "file-a", "ROLES": {"admin": ["group:x"]}},
    {"DN": "/DC=ch/CN=b", "LOGIN": "file-b"},
    42
  ])");
  const auto cric = parse_ok(R"([
    {"DN": "/CN=a", "LOGIN": "cric-a"},
    {"DN": "/CN=c", "LOGIN": "cric-c", "DNs": ["/CN=b/DC=ch", "/CN=c2"]},
    {"DN": "/CN=d", "LOGIN": "cric-d"},
    {"DN": "/CN=d", "LOGIN": "cric-d-again"},
    {"LOGIN": "broken"}
  ])");
  ASSERT_NE(file, nullptr);
  ASSERT_NE(cric, nullptr);
  const auto merged = UserMap::merge(*file, *cric);
  ASSERT_NE(merged, nullptr);

  EXPECT_EQ(merged->find("/CN=a")->login, "file-a");  // the file wins
  EXPECT_EQ(merged->find("/CN=a")->roles, (Roles{{"admin", "group:x"}}));
  // cric-c's alias is file-b's DN in another order: taken, by the sorted index.
  EXPECT_EQ(merged->find("/CN=b/DC=ch")->login, "file-b");
  const UserRecord* c = merged->find("/CN=c2");
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->login, "cric-c");
  EXPECT_EQ(c->dns, (std::vector<std::string>{"/CN=c", "/CN=c2"}));
  EXPECT_EQ(merged->find("/CN=d")->login, "cric-d");

  const UserMap::Stats& stats = merged->stats();
  EXPECT_EQ(stats.records, 3u + 5u);
  EXPECT_EQ(stats.skipped, 1u + 1u);
  EXPECT_EQ(stats.first_problem, "record 2: not an object");  // the first map's
  // file-a, file-b, cric-c, cric-d, cric-d-again (cric-a lost its only DN).
  EXPECT_EQ(stats.users, 5u);
  EXPECT_EQ(merged->users(), 5u);
  EXPECT_EQ(stats.dns, 5u);  // /CN=a /DC=ch/CN=b /CN=c /CN=c2 /CN=d
  // /CN=a and /CN=b/DC=ch taken from cric, /CN=d repeated within cric.
  EXPECT_EQ(stats.duplicate_dns, 3u);

  // The inputs are untouched.
  EXPECT_EQ(cric->find("/CN=a")->login, "cric-a");
  EXPECT_EQ(cric->find("/CN=c")->dns.size(), 3u);
}

TEST(UserMap, MergeWithAnEmptyMap) {
  const auto some = parse_ok(R"([{"DN": "/CN=a", "LOGIN": "a"}, {"LOGIN": "b"}])");
  const auto none = parse_ok("[]");
  ASSERT_NE(some, nullptr);
  ASSERT_NE(none, nullptr);
  for (const auto& merged : {UserMap::merge(*some, *none), UserMap::merge(*none, *some)}) {
    ASSERT_NE(merged, nullptr);
    EXPECT_EQ(merged->users(), 1u);
    EXPECT_EQ(merged->find("/CN=a")->login, "a");
    EXPECT_EQ(merged->stats().records, 2u);
    EXPECT_EQ(merged->stats().skipped, 1u);
    EXPECT_EQ(merged->stats().first_problem, "record 1: DN missing");
  }
}

// ---- size --------------------------------------------------------------------------------------

// CRIC-sized: 50,000 users with 3 roles each, every fourth with an alias DN (~15 MB).
std::string generate_cric_json(std::size_t users) {
  std::string json = "[";
  json.reserve(users * 320);
  for (std::size_t i = 0; i < users; ++i) {
    const std::string n = std::to_string(i);
    const std::string id = std::to_string(700000 + i);
    const std::string dn =
        "/DC=ch/DC=cern/OU=Organic Units/OU=Users/CN=user" + n + "/CN=" + id + "/CN=Test User " + n;
    if (i > 0) json += ",\n";
    json += R"({"DN": ")" + dn + R"(", "ID": )" + id + R"(, "LOGIN": "user)" + n +
            R"(", "NAME": "Test User )" + n + '"';
    if (i % 4 == 0)
      json += R"(, "DNs": [")" + dn + R"(", "/DC=org/C=IT/O=INFN/CN=User )" + n + "\"]";
    json += R"(, "ROLES": {"data-manager": ["site:T2_IT_Pisa", "site:T1_IT_CNAF"], )"
            R"("Admin": ["group:ReqMgr"], "web operator": ["group:Facops"]}})";
  }
  json += "]";
  return json;
}

TEST(UserMapSize, ParsesFiftyThousandUsersQuickly) {
  constexpr std::size_t kUsers = 50000;
  const std::string json = generate_cric_json(kUsers);
  std::string error;
  // Wall and CPU time: on a busy machine (parallel builds) only the second means much.
  const std::clock_t cpu_start = std::clock();
  const auto start = std::chrono::steady_clock::now();
  const auto map = UserMap::parse(json, error);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  const std::clock_t cpu_end = std::clock();
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count();
  const auto cpu_ms =
      static_cast<long long>(1000.0 * static_cast<double>(cpu_end - cpu_start) / CLOCKS_PER_SEC);
  std::printf("[   INFO   ] %zu users, %.1f MB parsed in %lld ms (%lld ms CPU)\n", kUsers,
              static_cast<double>(json.size()) / 1e6, static_cast<long long>(ms), cpu_ms);
  RecordProperty("parse_ms", std::to_string(ms));
  RecordProperty("parse_cpu_ms", std::to_string(cpu_ms));
  RecordProperty("bytes", std::to_string(json.size()));

  ASSERT_NE(map, nullptr) << error;
  EXPECT_EQ(map->stats().records, kUsers);
  EXPECT_EQ(map->stats().users, kUsers);
  EXPECT_EQ(map->stats().skipped, 0u) << map->stats().first_problem;
  EXPECT_EQ(map->stats().dns, kUsers + kUsers / 4);
  EXPECT_EQ(map->stats().duplicate_dns, 0u);
  const UserRecord* user = map->find(
      "/CN=712345/CN=Test User 12345/CN=user12345/DC=cern/DC=ch/OU=Organic Units/OU=Users");
  ASSERT_NE(user, nullptr);
  EXPECT_EQ(user->login, "user12345");
  EXPECT_EQ(user->id, 712345);
  EXPECT_EQ(user->roles, (Roles{{"admin", "group:reqmgr"},
                                {"data-manager", "site:t2-it-pisa site:t1-it-cnaf"},
                                {"web-operator", "group:facops"}}));
  const UserRecord* aliased = map->find("/DC=org/C=IT/O=INFN/CN=User 12344");
  ASSERT_NE(aliased, nullptr);
  EXPECT_EQ(aliased->login, "user12344");
  EXPECT_EQ(aliased->dns.size(), 2u);
  EXPECT_EQ(map->find("/DC=org/C=IT/O=INFN/CN=User 12345"), nullptr);
}

}  // namespace
}  // namespace auth
