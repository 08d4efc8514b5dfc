// The CRIC user map: JSON parsing, canonical roles and the DN indexes. Every value kept here ends
// up in an HTTP header (cms-authn-*, cms-authz-*), so a record with a control character or an
// oversized field is refused here, once, rather than checked per request.
//
// Parsing uses nlohmann/json's SAX interface, not its DOM: a CRIC download is ~15 MB, and the
// DOM (a std::map per record, then freeing it all) costs several times the parse itself. The SAX
// events fill one RawRecord at a time (the values as found, typed but unchecked); at the end of
// each record the take_* functions check it in a fixed order (so the problem reported does not
// depend on the order of the members) and turn it into a UserRecord.
#include "auth/user_map.h"

#include <algorithm>
#include <exception>
#include <iterator>
#include <limits>
#include <nlohmann/json.hpp>
#include <unordered_set>

namespace auth {
namespace {

using Json = nlohmann::json;

// ---- canonical forms ---------------------------------------------------------------------------

constexpr char canonical_byte(char c) {
  if (c >= 'A' && c <= 'Z') return static_cast<char>(c - 'A' + 'a');
  if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-') return c;
  return '-';  // bytewise: a multibyte UTF-8 character becomes one '-' per byte
}

void append_canonical(std::string_view text, std::string& out) {
  for (const char c : text) out.push_back(canonical_byte(c));
}

// ---- error messages ----------------------------------------------------------------------------

// Messages end up in logs: bytes that are not printable ASCII (nlohmann quotes the input it
// choked on, which may be invalid UTF-8 or control characters) become '?'.
std::string printable(std::string_view text) {
  std::string out(text);
  for (char& c : out)
    if (c < 0x20 || c > 0x7e) c = '?';  // char may be signed: bytes >= 0x80 are then negative
  return out;
}

// nlohmann's what() is "[json.exception.parse_error.101] parse error at line 1, column 2: <why>";
// we print our own position, so keep only <why>.
std::string_view exception_detail(std::string_view what) {
  if (const std::size_t tag_end = what.find("] "); tag_end != std::string_view::npos)
    what.remove_prefix(tag_end + 2);
  if (const std::size_t colon = what.find(": "); colon != std::string_view::npos)
    what.remove_prefix(colon + 2);
  return what;
}

// "line L, column C" (1-based, the column in bytes) of the byte at `offset`.
std::string position_of(std::string_view text, std::size_t offset) {
  const std::string_view before = text.substr(0, std::min(offset, text.size()));
  const auto newlines = static_cast<std::size_t>(std::count(before.begin(), before.end(), '\n'));
  const std::size_t last_newline = before.rfind('\n');
  const std::size_t line_start = last_newline == std::string_view::npos ? 0 : last_newline + 1;
  return "line " + std::to_string(newlines + 1) + ", column " +
         std::to_string(before.size() - line_start + 1);
}

// ---- raw records -------------------------------------------------------------------------------

// The JSON type of a value as the SAX events gave it; `absent` for a member not present.
enum class Kind : std::uint8_t {
  absent,
  null,
  boolean,
  integer,           // negative
  unsigned_integer,  // nlohmann reports every non-negative integer as unsigned
  floating,
  string,
  array,
  object,
  binary,  // never produced by JSON text; part of nlohmann's SAX interface
};

std::string_view kind_name(Kind kind) {
  switch (kind) {
    case Kind::null:
      return "null";
    case Kind::boolean:
      return "a boolean";
    case Kind::integer:
    case Kind::unsigned_integer:
    case Kind::floating:
      return "a number";
    case Kind::string:
      return "a string";
    case Kind::object:
      return "an object";
    case Kind::binary:
      return "binary data";
    case Kind::array:
    case Kind::absent:
      break;
  }
  return "an array";
}

struct RawText {
  Kind kind = Kind::absent;
  std::string text;  // when kind == string
};

struct RawRole {
  std::string name;
  Kind kind = Kind::absent;    // of the value; only an array is usable
  std::vector<RawText> items;  // when kind == array
};

// One record's members as found (a repeated member: the last one counts, as in a JSON DOM).
struct RawRecord {
  RawText dn, login, name;
  Kind id_kind = Kind::absent;
  std::int64_t id_signed = 0;
  std::uint64_t id_unsigned = 0;
  Kind dns_kind = Kind::absent;
  std::vector<RawText> dns;  // when dns_kind == array
  Kind roles_kind = Kind::absent;
  std::vector<RawRole> roles;  // when roles_kind == object, in document order
};

// ---- checking a raw record ---------------------------------------------------------------------

// Why `text` cannot be kept (it would go into an HTTP header), or empty when it can.
std::string text_problem(std::string_view field, std::string_view text, std::size_t max_bytes) {
  if (text.size() > max_bytes)
    return std::string(field) + " longer than " + std::to_string(max_bytes) + " bytes";
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte < 0x20 || byte == 0x7f) return std::string(field) + " has a control character";
  }
  return {};
}

// Removes later duplicates, keeping the first occurrence's order. Lists are short (a user's DNs,
// a role's items): a linear scan in place, and a hash set only against a pathological record.
void dedupe_in_order(std::vector<std::string>& values) {
  constexpr std::size_t kLinearLimit = 16;
  if (values.size() <= kLinearLimit) {
    std::size_t kept = 0;
    for (std::size_t i = 0; i < values.size(); ++i) {
      const auto end = values.begin() + static_cast<std::ptrdiff_t>(kept);
      if (std::find(values.begin(), end, values[i]) != end) continue;
      if (i != kept) values[kept] = std::move(values[i]);  // never self-move: it may empty it
      ++kept;
    }
    values.resize(kept);
    return;
  }
  // The set views strings in `unique`, which never reallocates (reserved), so the views stay
  // valid (a moved std::string's inline buffer would not be).
  std::vector<std::string> unique;
  unique.reserve(values.size());
  std::unordered_set<std::string_view> seen;
  seen.reserve(values.size());
  for (std::string& value : values) {
    if (seen.contains(value)) continue;
    unique.push_back(std::move(value));
    seen.insert(unique.back());
  }
  values = std::move(unique);
}

// A DN (the main one or a "DNs" entry): a non-empty header-safe string starting with '/'.
std::string take_dn(std::string_view field, RawText& value, std::size_t max_bytes,
                    std::vector<std::string>& dns) {
  if (value.kind != Kind::string) return std::string(field) + " not a string";
  if (value.text.empty()) return std::string(field) + " empty";
  if (value.text.front() != '/') return std::string(field) + " does not start with '/'";
  if (std::string problem = text_problem(field, value.text, max_bytes); !problem.empty())
    return problem;
  dns.push_back(std::move(value.text));
  return {};
}

std::string take_main_dn(RawRecord& raw, std::size_t max_bytes, UserRecord& record) {
  if (raw.dn.kind == Kind::absent) return "DN missing";
  return take_dn("DN", raw.dn, max_bytes, record.dns);
}

std::string take_login(RawRecord& raw, std::size_t max_bytes, UserRecord& record) {
  if (raw.login.kind == Kind::absent) return "LOGIN missing";
  if (raw.login.kind != Kind::string) return "LOGIN not a string";
  if (raw.login.text.empty()) return "LOGIN empty";
  if (std::string problem = text_problem("LOGIN", raw.login.text, max_bytes); !problem.empty())
    return problem;
  record.login = std::move(raw.login.text);
  return {};
}

// Absent or null: empty.
std::string take_name(RawRecord& raw, std::size_t max_bytes, UserRecord& record) {
  if (raw.name.kind == Kind::absent || raw.name.kind == Kind::null) return {};
  if (raw.name.kind != Kind::string) return "NAME not a string";
  if (std::string problem = text_problem("NAME", raw.name.text, max_bytes); !problem.empty())
    return problem;
  record.name = std::move(raw.name.text);
  return {};
}

// Absent or null: 0.
std::string take_id(RawRecord& raw, std::size_t /*max_bytes*/, UserRecord& record) {
  switch (raw.id_kind) {
    case Kind::absent:
    case Kind::null:
      return {};
    case Kind::integer:
      record.id = raw.id_signed;
      return {};
    case Kind::unsigned_integer:
      if (raw.id_unsigned > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
        return "ID out of range";
      record.id = static_cast<std::int64_t>(raw.id_unsigned);
      return {};
    default:
      return "ID not an integer";
  }
}

// Absent or null: no aliases. Entries are checked like the main DN: one without a leading '/'
// would still match through the sorted index.
std::string take_dn_aliases(RawRecord& raw, std::size_t max_bytes, UserRecord& record) {
  if (raw.dns_kind == Kind::absent || raw.dns_kind == Kind::null) return {};
  if (raw.dns_kind != Kind::array) return "DNs not an array";
  record.dns.reserve(record.dns.size() + raw.dns.size());
  for (RawText& alias : raw.dns)
    if (std::string problem = take_dn("DNs entry", alias, max_bytes, record.dns); !problem.empty())
      return problem;
  dedupe_in_order(record.dns);  // the main DN is usually listed again
  return {};
}

using CanonicalRoles = std::vector<std::pair<std::string, std::vector<std::string>>>;

// Appends the role's canonical name and items; items that canonicalise to "" are dropped here,
// the rest in finish_roles(). Raw text is checked before canonicalisation: a control character
// condemns the record even in an item that would be dropped.
std::string canonicalise_role(const RawRole& role, std::size_t max_bytes, CanonicalRoles& out) {
  if (std::string problem = text_problem("ROLES name", role.name, max_bytes); !problem.empty())
    return problem;
  if (role.kind != Kind::array) return "ROLES value not an array";
  std::vector<std::string> items;
  items.reserve(role.items.size());
  for (const RawText& item : role.items) {
    if (item.kind != Kind::string) return "ROLES item not a string";
    if (std::string problem = text_problem("ROLES item", item.text, max_bytes); !problem.empty())
      return problem;
    if (std::string canonical = canonical_role_item(item.text); !canonical.empty())
      items.push_back(std::move(canonical));
  }
  out.emplace_back(canonical_role_name(role.name), std::move(items));
  return {};
}

std::string join_items(const std::vector<std::string>& items) {
  std::size_t size = items.size();
  for (const std::string& item : items) size += item.size();
  std::string joined;
  joined.reserve(size);
  for (const std::string& item : items) {
    if (!joined.empty()) joined.push_back(' ');
    joined += item;
  }
  return joined;
}

// Sorted by name; roles whose names canonicalise alike are merged (in document order); duplicate
// items, roles with an empty name and roles left without items are dropped.
std::vector<std::pair<std::string, std::string>> finish_roles(CanonicalRoles roles) {
  std::stable_sort(roles.begin(), roles.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<std::pair<std::string, std::string>> out;
  out.reserve(roles.size());
  for (auto it = roles.begin(); it != roles.end();) {
    auto& [name, items] = *it;
    for (++it; it != roles.end() && it->first == name; ++it)
      std::move(it->second.begin(), it->second.end(), std::back_inserter(items));
    dedupe_in_order(items);
    if (!name.empty() && !items.empty()) out.emplace_back(std::move(name), join_items(items));
  }
  return out;
}

// Absent or null: no roles.
std::string take_roles(RawRecord& raw, std::size_t max_bytes, UserRecord& record) {
  if (raw.roles_kind == Kind::absent || raw.roles_kind == Kind::null) return {};
  if (raw.roles_kind != Kind::object) return "ROLES not an object";
  CanonicalRoles roles;
  roles.reserve(raw.roles.size());
  for (const RawRole& role : raw.roles)
    if (std::string problem = canonicalise_role(role, max_bytes, roles); !problem.empty())
      return problem;
  record.roles = finish_roles(std::move(roles));
  return {};
}

// In the order problems are reported: the identity first.
using FieldTaker = std::string (*)(RawRecord& raw, std::size_t max_bytes, UserRecord& record);
constexpr FieldTaker kFieldTakers[] = {take_main_dn, take_login,      take_name,
                                       take_id,      take_dn_aliases, take_roles};

// Fills `record` from `raw` (consuming it), or says why the record is unusable.
std::string take_record(RawRecord& raw, std::size_t max_bytes, UserRecord& record) {
  for (const FieldTaker take : kFieldTakers)
    if (std::string problem = take(raw, max_bytes, record); !problem.empty()) return problem;
  return {};
}

// ---- the SAX reader ----------------------------------------------------------------------------

enum class Member : std::uint8_t { dn, login, name, id, dns, roles, ignored };

Member member_of(std::string_view key) {
  if (key == "DN") return Member::dn;
  if (key == "LOGIN") return Member::login;
  if (key == "NAME") return Member::name;
  if (key == "ID") return Member::id;
  if (key == "DNs") return Member::dns;
  if (key == "ROLES") return Member::roles;
  return Member::ignored;
}

// Receives nlohmann's SAX events for a whole CRIC document (the member functions below are the
// interface json::sax_parse() expects) and collects the usable records and the stats.
class CricReader {
 public:
  using Binary = Json::binary_t;

  CricReader(std::string_view json, std::size_t max_field_bytes)
      : json_(json), max_field_bytes_(max_field_bytes) {
    // SAX does not tell how many records come; CRIC's run ~300 bytes. Growing the vector would
    // touch (page-fault) twice the memory and move every record.
    records_.reserve(json.size() / 256);
  }

  std::vector<UserRecord>& records() { return records_; }
  UserMap::Stats& stats() { return stats_; }
  // Set when the parse stopped early (a syntax error or a top level that is not an array).
  const std::string& error() const { return error_; }

  bool null() { return scalar(Kind::null); }
  bool boolean(bool /*value*/) { return scalar(Kind::boolean); }
  bool number_integer(std::int64_t value) {
    integer_ = value;
    return scalar(Kind::integer);
  }
  bool number_unsigned(std::uint64_t value) {
    unsigned_ = value;
    return scalar(Kind::unsigned_integer);
  }
  bool number_float(double /*value*/, const std::string& /*text*/) {
    return scalar(Kind::floating);
  }
  bool string(std::string& text) { return scalar(Kind::string, &text); }
  bool binary(Binary& /*value*/) { return scalar(Kind::binary); }
  bool start_object(std::size_t /*elements*/) { return open(Kind::object); }
  bool start_array(std::size_t /*elements*/) { return open(Kind::array); }
  bool key(std::string& text);
  bool end_object();
  bool end_array();
  bool parse_error(std::size_t byte, const std::string& /*last_token*/,
                   const Json::exception& failure) {
    // `byte` counts the characters read, the offending one included.
    error_ = position_of(json_, byte == 0 ? 0 : byte - 1) + ": " +
             printable(exception_detail(failure.what()));
    return false;
  }

 private:
  // Where the next event belongs.
  enum class Where : std::uint8_t {
    top,      // the document's value
    records,  // an element of the top-level array
    record,   // a record's member name (or its end)
    member,   // the value of the record member `member_`
    dns,      // an entry of "DNs"
    roles,    // a role name in "ROLES" (or its end)
    role,     // the value of the last role
    items,    // an item of the last role
    done,     // nothing: the top-level array is closed
  };

  bool scalar(Kind kind, std::string* text = nullptr);
  bool open(Kind kind);
  void set_member(Kind kind, const std::string* text);
  void finish_record();
  void skip_record(std::string_view problem);
  bool refuse_top_level(Kind kind) {
    error_ = "the top level is " + std::string(kind_name(kind)) + ", not an array";
    return false;
  }
  // A container whose content does not matter: its events are only counted until it closes.
  void skip_container() { skip_depth_ = 1; }

  std::string_view json_;
  std::size_t max_field_bytes_;
  Where where_ = Where::top;
  Member member_ = Member::ignored;
  std::size_t skip_depth_ = 0;
  std::int64_t integer_ = 0;
  std::uint64_t unsigned_ = 0;
  RawRecord raw_;
  std::vector<UserRecord> records_;
  UserMap::Stats stats_;
  std::string error_;
};

bool CricReader::scalar(Kind kind, std::string* text) {
  if (skip_depth_ > 0) return true;
  switch (where_) {
    case Where::top:
      return refuse_top_level(kind);
    case Where::records:
      ++stats_.records;
      skip_record("not an object");
      return true;
    case Where::member:
      set_member(kind, text);
      where_ = Where::record;
      return true;
    case Where::dns:
      raw_.dns.push_back(RawText{kind, text != nullptr ? *text : std::string()});
      return true;
    case Where::role:
      raw_.roles.back().kind = kind;  // not an array: the record will be refused
      where_ = Where::roles;
      return true;
    case Where::items:
      raw_.roles.back().items.push_back(RawText{kind, text != nullptr ? *text : std::string()});
      return true;
    case Where::record:
    case Where::roles:
    case Where::done:
      break;  // nlohmann sends a key or an end here, never a value
  }
  return true;
}

bool CricReader::open(Kind kind) {
  if (skip_depth_ > 0) {
    ++skip_depth_;
    return true;
  }
  switch (where_) {
    case Where::top:
      if (kind != Kind::array) return refuse_top_level(kind);
      where_ = Where::records;
      return true;
    case Where::records:
      ++stats_.records;
      if (kind == Kind::object) {
        raw_ = RawRecord{};
        where_ = Where::record;
      } else {
        skip_record("not an object");
        skip_container();
      }
      return true;
    case Where::member:
      set_member(kind, nullptr);  // records the kind; lists start empty
      if (member_ == Member::dns && kind == Kind::array) {
        where_ = Where::dns;
      } else if (member_ == Member::roles && kind == Kind::object) {
        where_ = Where::roles;
      } else {
        where_ = Where::record;
        skip_container();
      }
      return true;
    case Where::dns:
      raw_.dns.push_back(RawText{kind, {}});  // not a string: the record will be refused
      skip_container();
      return true;
    case Where::role:
      raw_.roles.back().kind = kind;
      if (kind == Kind::array) {
        where_ = Where::items;
      } else {
        where_ = Where::roles;
        skip_container();
      }
      return true;
    case Where::items:
      raw_.roles.back().items.push_back(RawText{kind, {}});
      skip_container();
      return true;
    case Where::record:
    case Where::roles:
    case Where::done:
      break;
  }
  return true;
}

bool CricReader::key(std::string& text) {
  if (skip_depth_ > 0) return true;
  if (where_ == Where::record) {
    member_ = member_of(text);
    where_ = Where::member;
  } else if (where_ == Where::roles) {
    raw_.roles.push_back(RawRole{text, Kind::absent, {}});
    where_ = Where::role;
  }
  return true;
}

bool CricReader::end_object() {
  if (skip_depth_ > 0) {
    --skip_depth_;
    return true;
  }
  if (where_ == Where::record) {
    finish_record();
    where_ = Where::records;
  } else if (where_ == Where::roles) {
    where_ = Where::record;
  }
  return true;
}

bool CricReader::end_array() {
  if (skip_depth_ > 0) {
    --skip_depth_;
    return true;
  }
  if (where_ == Where::records) where_ = Where::done;
  if (where_ == Where::dns) where_ = Where::record;
  if (where_ == Where::items) where_ = Where::roles;
  return true;
}

// A repeated member replaces the earlier one.
void CricReader::set_member(Kind kind, const std::string* text) {
  switch (member_) {
    case Member::dn:
    case Member::login:
    case Member::name: {
      RawText& field = member_ == Member::dn      ? raw_.dn
                       : member_ == Member::login ? raw_.login
                                                  : raw_.name;
      field.kind = kind;
      if (text != nullptr) field.text.assign(*text);  // copied: the lexer reuses its buffer
      return;
    }
    case Member::id:
      raw_.id_kind = kind;
      raw_.id_signed = integer_;
      raw_.id_unsigned = unsigned_;
      return;
    case Member::dns:
      raw_.dns_kind = kind;
      raw_.dns.clear();
      return;
    case Member::roles:
      raw_.roles_kind = kind;
      raw_.roles.clear();
      return;
    case Member::ignored:
      return;
  }
}

void CricReader::finish_record() {
  UserRecord record;
  if (std::string problem = take_record(raw_, max_field_bytes_, record); !problem.empty()) {
    skip_record(problem);
    return;
  }
  records_.push_back(std::move(record));
}

// The record is the stats_.records-th element: numbered from 0 like jq '.[N]'.
void CricReader::skip_record(std::string_view problem) {
  if (++stats_.skipped == 1)
    stats_.first_problem =
        "record " + std::to_string(stats_.records - 1) + ": " + std::string(problem);
}

}  // namespace

std::string canonical_role_name(std::string_view role) {
  std::string out;
  out.reserve(role.size());
  append_canonical(role, out);
  return out;
}

std::string canonical_role_item(std::string_view item) {
  const std::size_t colon = item.find(':');
  if (colon == std::string_view::npos || colon == 0 || colon + 1 == item.size()) return {};
  std::string out;
  out.reserve(item.size());
  append_canonical(item.substr(0, colon), out);
  out.push_back(':');
  append_canonical(item.substr(colon + 1), out);  // a later ':' is canonicalised to '-'
  return out;
}

std::string sorted_dn(std::string_view dn) {
  const std::size_t size = dn.size();  // enough: the parts and at most as many separators
  std::vector<std::string_view> parts;
  parts.reserve(8);  // a grid DN has 4 to 8 attributes
  while (!dn.empty()) {
    const std::size_t slash = std::min(dn.find('/'), dn.size());
    if (slash > 0) parts.push_back(dn.substr(0, slash));
    dn.remove_prefix(std::min(slash + 1, dn.size()));
  }
  std::sort(parts.begin(), parts.end());
  std::string out;
  out.reserve(size);
  for (const std::string_view part : parts) {
    if (!out.empty()) out.push_back('/');
    out += part;
  }
  return out;
}

std::shared_ptr<const UserMap> UserMap::parse(std::string_view json, std::string& error,
                                              const UserMapLimits& limits) {
  error.clear();
  if (json.size() > limits.max_bytes) {
    error = "input is " + std::to_string(json.size()) + " bytes, over the limit of " +
            std::to_string(limits.max_bytes);
    return nullptr;
  }
  try {
    CricReader reader(json, limits.max_field_bytes);
    // Strict (nothing may follow the array), no comments; the lexer rejects invalid UTF-8.
    if (!Json::sax_parse(json.data(), json.data() + json.size(), &reader)) {
      error = reader.error().empty() ? "invalid JSON" : reader.error();
      return nullptr;
    }
    auto map = std::make_shared<UserMap>();
    map->records_ = std::move(reader.records());
    map->stats_ = std::move(reader.stats());
    map->index_records();
    return map;
  } catch (const std::exception& failure) {  // bad_alloc: nlohmann itself reports via the SAX
    error = printable(failure.what());
  }
  return nullptr;
}

void UserMap::index_records() {
  std::size_t dns = 0;
  for (const UserRecord& record : records_) dns += record.dns.size();
  by_dn_.reserve(dns);
  by_sorted_dn_.reserve(dns);
  for (std::size_t i = 0; i < records_.size(); ++i)
    for (const std::string& dn : records_[i].dns) index(i, dn);
  stats_.users = records_.size();
  stats_.dns = by_dn_.size();
}

void UserMap::index(std::size_t record, std::string_view dn) {
  if (!by_dn_.try_emplace(std::string(dn), record).second) {
    ++stats_.duplicate_dns;  // an earlier record has it: first wins
    return;
  }
  // The exact DN is new; its sorted form may still be an earlier record's (first wins, and it
  // is not a duplicate: the exact lookup still finds this record).
  if (std::string key = sorted_dn(dn); !key.empty())
    by_sorted_dn_.try_emplace(std::move(key), record);
}

bool UserMap::has_dn(std::string_view dn) const {
  if (by_dn_.find(dn) != by_dn_.end()) return true;
  const std::string key = sorted_dn(dn);
  return !key.empty() && by_sorted_dn_.find(key) != by_sorted_dn_.end();
}

std::shared_ptr<const UserMap> UserMap::merge(const UserMap& first, const UserMap& second) {
  auto map = std::make_shared<UserMap>();
  map->records_.reserve(first.records_.size() + second.records_.size());
  // Re-indexing first's records reproduces its indexes (and its duplicate count) exactly.
  map->records_.insert(map->records_.end(), first.records_.begin(), first.records_.end());
  std::size_t taken = 0;
  for (const UserRecord& record : second.records_) {
    UserRecord kept = record;
    taken += std::erase_if(kept.dns, [&first](const std::string& dn) { return first.has_dn(dn); });
    if (!kept.dns.empty()) map->records_.push_back(std::move(kept));
  }
  map->index_records();
  Stats& stats = map->stats_;
  stats.duplicate_dns += taken;
  stats.records = first.stats_.records + second.stats_.records;
  stats.skipped = first.stats_.skipped + second.stats_.skipped;
  stats.first_problem =
      first.stats_.first_problem.empty() ? second.stats_.first_problem : first.stats_.first_problem;
  return map;
}

const UserRecord* UserMap::find(std::string_view dn) const {
  if (const auto exact = by_dn_.find(dn); exact != by_dn_.end()) return &records_[exact->second];
  const std::string key = sorted_dn(dn);
  if (key.empty()) return nullptr;
  const auto sorted = by_sorted_dn_.find(key);
  return sorted == by_sorted_dn_.end() ? nullptr : &records_[sorted->second];
}

}  // namespace auth
