// The CMS user map: which CMS account (login, name, roles) a certificate DN belongs to.
//
// Built from CRIC's JSON (an array of records: "DN", "ID", "LOGIN", "NAME", "ROLES", optional
// "DNs"; other keys are ignored) by UserMap::parse(), off the event loops, and then never
// changed: a refresh builds a new map and publishes it. Lookups are by the exact DN first,
// then by the "sorted DN" (the DN's '/'-separated parts in byte order), which is how the Go
// frontend matched DNs whose attributes a CA printed in another order.
//
// Roles are stored canonical, as the cms-authz-* headers carry them: role names and the
// names inside items lowercase, every byte outside [a-z0-9-] turned into '-'.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace auth {

struct UserRecord {
  std::string login;  // CRIC LOGIN (required)
  std::string name;   // CRIC NAME; may be empty
  std::int64_t id = 0;
  std::vector<std::string> dns;  // "DN" first, then the other "DNs" entries, as written
  // Canonical role name -> canonical items joined by one space ("group:das site:t1-ch-cern"),
  // sorted by role name; every role has at least one item.
  std::vector<std::pair<std::string, std::string>> roles;
};

// Lowercase; every byte outside [a-z0-9-] becomes '-' ("Data Manager" -> "data-manager").
std::string canonical_role_name(std::string_view role);
// "<kind>:<name>" with both parts canonical as above and the first ':' kept
// ("group:ReqMgr" -> "group:reqmgr", "site:T1_CH_CERN" -> "site:t1-ch-cern"). Empty when the
// item has no ':' or an empty part (such items are dropped from the map).
std::string canonical_role_item(std::string_view item);
// The DN's '/'-separated parts (empty ones dropped) sorted bytewise and joined with '/':
// the same key for "/DC=ch/CN=a" and "/CN=a/DC=ch".
std::string sorted_dn(std::string_view dn);

struct UserMapLimits {
  std::size_t max_bytes = 256u * 1024 * 1024;  // larger input is refused unread
  std::size_t max_field_bytes = 4096;          // a record with a longer string is skipped
};

class UserMap {
 public:
  struct Stats {
    std::size_t records = 0;        // array elements seen
    std::size_t users = 0;          // records kept
    std::size_t dns = 0;            // DNs indexed (main DN + "DNs" aliases)
    std::size_t skipped = 0;        // records refused (see first_problem)
    std::size_t duplicate_dns = 0;  // a DN already taken by an earlier record (first wins)
    std::string first_problem;      // e.g. "record 17: LOGIN missing"; empty when none
  };

  // Parses CRIC JSON. On malformed JSON or invalid UTF-8, a top level that is not an array, or
  // input over limits.max_bytes: nullptr and `error` says why ("line 3, column 7: ...", the
  // column in bytes); otherwise `error` is cleared. Individual records that are unusable (not
  // an object; DN or a "DNs" entry not a string starting with '/'; LOGIN missing, empty or not
  // a string; a kept string -- DNs, LOGIN, NAME, role names and items -- with a byte < 0x20 or
  // 0x7f, or over max_field_bytes; ID not an integer; ROLES not an object of string arrays)
  // are skipped and counted in stats; first_problem numbers records from 0, like jq '.[N]'.
  // NAME, ID, ROLES and "DNs" may be absent or null. A DN already indexed by an earlier
  // record stays that record's (counted in duplicate_dns).
  static std::shared_ptr<const UserMap> parse(std::string_view json, std::string& error,
                                              const UserMapLimits& limits = {});

  // A map holding `first`'s records plus those of `second` whose DNs `first` does not have
  // (used to lay a local file over the CRIC download: the file wins). A DN of `second` is
  // "taken" when `first` finds it exactly or by its sorted form; a record of `second` keeps
  // only its untaken DNs (the first of those becomes its main DN) and is dropped when none is
  // left. Stats: records and skipped are summed, first_problem is `first`'s (else `second`'s),
  // duplicate_dns counts DNs taken from `second` plus duplicates within either map.
  static std::shared_ptr<const UserMap> merge(const UserMap& first, const UserMap& second);

  // Exact DN, then sorted DN; nullptr when the DN is not mapped.
  const UserRecord* find(std::string_view dn) const;

  const Stats& stats() const { return stats_; }
  std::size_t users() const { return records_.size(); }

 private:
  struct Hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view text) const {
      return std::hash<std::string_view>{}(text);
    }
  };
  using Index = std::unordered_map<std::string, std::size_t, Hash, std::equal_to<>>;

  // Indexes every DN of records_, in order (first wins), and sets stats_.users and dns.
  void index_records();
  void index(std::size_t record, std::string_view dn);
  // Whether find() would return a record for `dn` (exact or sorted).
  bool has_dn(std::string_view dn) const;

  std::vector<UserRecord> records_;
  Index by_dn_;         // exact DN -> record
  Index by_sorted_dn_;  // sorted_dn(DN) -> record
  Stats stats_;
};

}  // namespace auth
