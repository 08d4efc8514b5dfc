// Ordered routing rules: the first rule that matches a request path wins.
//
// A rule matches either by path prefix on segment boundaries ("/reqmgr2" matches "/reqmgr2",
// "/reqmgr2/x", "/reqmgr2?q", not "/reqmgr2x"; a prefix ending in '/' requires that slash)
// or by a PCRE2 regular expression (JIT-compiled once at build time) applied to the path, or to
// "path?query" when the rule says so. `rewrite` produces the path sent to the backend:
//  - prefix rules: the matched prefix is replaced by `rewrite` ("/couchdb" -> "" turns
//    "/couchdb/db/x" into "/db/x"; an empty result becomes "/");
//  - regex rules: `rewrite` is a template; $0-$9 and ${N} insert capture groups (an unset group
//    inserts nothing), $$ a dollar. For a query-matching rule the result replaces path?query.
//
// The table is immutable after construction and shared by all workers; the per-thread state
// PCRE2 needs lives in a MatchScratch each worker owns.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace routes {

struct RouteRule {
  std::string name;         // for logs and (later) metric labels; defaults to "route<N>"
  std::string path_prefix;  // exactly one of path_prefix / match_regex is set
  std::string match_regex;
  bool match_query = false;  // regex sees "path?query" (only with match_regex)
  std::optional<std::string> rewrite;
  std::size_t backend_index = 0;  // index into the configuration's backend list
  std::size_t auth_policy = 0;    // opaque to this library: the caller's enum value
};

// Thrown by RouteTable's constructor for an invalid rule (only ever at configuration time).
class RouteError : public std::runtime_error {
 public:
  RouteError(std::size_t rule_index, const std::string& message)
      : std::runtime_error(message), rule_index_(rule_index) {}
  std::size_t rule_index() const { return rule_index_; }

 private:
  std::size_t rule_index_;
};

// Per-thread PCRE2 match data, sized for the table's largest capture count.
class MatchScratch {
 public:
  MatchScratch();
  ~MatchScratch();
  MatchScratch(const MatchScratch&) = delete;
  MatchScratch& operator=(const MatchScratch&) = delete;

 private:
  friend class RouteTable;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

class RouteTable {
 public:
  RouteTable();
  explicit RouteTable(std::vector<RouteRule> rules);  // throws RouteError
  ~RouteTable();
  RouteTable(RouteTable&&) noexcept;
  RouteTable& operator=(RouteTable&&) noexcept;

  // Returns the first matching rule or nullptr. On a match, `forwarded_target` receives the
  // origin-form target for the backend: the (rewritten) path, plus "?query" when has_query.
  // No allocation once `forwarded_target` and `scratch` have grown to their working size.
  const RouteRule* match(std::string_view path, std::string_view query, bool has_query,
                         MatchScratch& scratch, std::string& forwarded_target) const;

  std::size_t size() const;
  const RouteRule& rule(std::size_t index) const;

 private:
  struct Compiled;
  std::vector<RouteRule> rules_;
  std::vector<std::unique_ptr<Compiled>> compiled_;  // one per rule, null for prefix rules
};

}  // namespace routes
