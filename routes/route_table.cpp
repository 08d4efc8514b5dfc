// Route table: rule validation and compilation at configuration time, matching per request.
//
// Ownership: a RouteTable owns its rules and their compiled PCRE2 patterns (immutable after
// construction, safe to share between threads). Each worker thread owns one MatchScratch, which
// owns the PCRE2 match data, match context and JIT stack that matching writes to.
#include "routes/route_table.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <cstdint>
#include <new>
#include <string>
#include <utility>

namespace routes {
namespace {

// PCRE2 handle deleters. routes/ is the only PCRE2 user, so they live with it.
struct Pcre2Deleter {
  void operator()(pcre2_code* p) const noexcept { pcre2_code_free(p); }
  void operator()(pcre2_match_data* p) const noexcept { pcre2_match_data_free(p); }
  void operator()(pcre2_match_context* p) const noexcept { pcre2_match_context_free(p); }
  void operator()(pcre2_jit_stack* p) const noexcept { pcre2_jit_stack_free(p); }
};
using CodePtr = std::unique_ptr<pcre2_code, Pcre2Deleter>;
using MatchDataPtr = std::unique_ptr<pcre2_match_data, Pcre2Deleter>;
using MatchContextPtr = std::unique_ptr<pcre2_match_context, Pcre2Deleter>;
using JitStackPtr = std::unique_ptr<pcre2_jit_stack, Pcre2Deleter>;

// Bounds on one match. Paths are short; these only stop a pathological pattern from burning a
// worker (the interpreter honours the match limit; JIT honours it and the stack size).
constexpr std::uint32_t kMatchLimit = 1'000'000;
constexpr std::uint32_t kDepthLimit = 10'000;
constexpr std::size_t kJitStackStart = 32 * 1024;
constexpr std::size_t kJitStackMax = 1024 * 1024;
constexpr std::uint32_t kInitialPairs = 16;

// Paths are bytes: forbid (*UTF)/(*UCP) in patterns (a UTF pattern fails on non-UTF-8 input).
constexpr std::uint32_t kCompileOptions =
    PCRE2_NEVER_UTF | PCRE2_NEVER_UCP | PCRE2_NEVER_BACKSLASH_C;

std::string pcre2_message(int code) {
  PCRE2_UCHAR buffer[256];
  int n = pcre2_get_error_message(code, buffer, sizeof buffer);
  if (n < 0) return "error " + std::to_string(code);
  return std::string(reinterpret_cast<const char*>(buffer), static_cast<std::size_t>(n));
}

void ensure_leading_slash(std::string& out) {
  // Both rewrite kinds: an empty result is "/", and the result always starts with '/'.
  if (out.empty() || out.front() != '/') out.insert(out.begin(), '/');
}

}  // namespace

// One piece of a compiled rewrite template: literal text, or a capture group.
struct RewritePiece {
  std::string literal;
  int group = -1;  // >= 0: insert this capture group (nothing when unset)
};

struct RouteTable::Compiled {
  CodePtr code;
  bool jit = false;
  std::uint32_t capture_count = 0;
  bool has_rewrite = false;
  std::vector<RewritePiece> rewrite;
};

struct MatchScratch::Impl {
  MatchDataPtr data;
  std::uint32_t pairs = 0;
  MatchContextPtr context;
  JitStackPtr jit_stack;
  std::string subject;  // "path?query" for query-matching rules; capacity reused

  // Grows the match data once to the largest capture count seen; false when out of memory.
  [[nodiscard]] bool ensure_pairs(std::uint32_t needed) {
    if (pairs >= needed && data) return true;
    std::uint32_t n = std::max(needed, kInitialPairs);
    data.reset(pcre2_match_data_create(n, nullptr));
    pairs = data ? n : 0;
    return data != nullptr;
  }
};

MatchScratch::MatchScratch() : impl_(std::make_unique<Impl>()) {
  impl_->context.reset(pcre2_match_context_create(nullptr));
  if (!impl_->context) throw std::bad_alloc();
  pcre2_set_match_limit(impl_->context.get(), kMatchLimit);
  pcre2_set_depth_limit(impl_->context.get(), kDepthLimit);
  // Without its own stack, JIT code gets 32 KiB of machine stack; this one grows to 1 MiB.
  impl_->jit_stack.reset(pcre2_jit_stack_create(kJitStackStart, kJitStackMax, nullptr));
  if (impl_->jit_stack)
    pcre2_jit_stack_assign(impl_->context.get(), nullptr, impl_->jit_stack.get());
  if (!impl_->ensure_pairs(kInitialPairs)) throw std::bad_alloc();
}

MatchScratch::~MatchScratch() = default;

namespace {

// Parses a regex rule's rewrite template: $0-$9, ${N}, $$. Throws RouteError.
std::vector<RewritePiece> parse_template(std::size_t index, std::string_view tmpl,
                                         std::uint32_t capture_count) {
  std::vector<RewritePiece> pieces;
  std::string literal;
  auto add_group = [&](unsigned long group) {
    if (group > capture_count)
      throw RouteError(index, "rewrite '" + std::string(tmpl) + "' refers to group $" +
                                  std::to_string(group) + " but the regex has " +
                                  std::to_string(capture_count) + " capture group(s)");
    if (!literal.empty()) pieces.push_back({std::move(literal), -1});
    literal.clear();
    pieces.push_back({{}, static_cast<int>(group)});
  };
  for (std::size_t i = 0; i < tmpl.size(); ++i) {
    char c = tmpl[i];
    if (c != '$') {
      literal.push_back(c);
      continue;
    }
    if (i + 1 >= tmpl.size())
      throw RouteError(index, "rewrite '" + std::string(tmpl) + "' ends with a lone '$'");
    char next = tmpl[i + 1];
    if (next == '$') {
      literal.push_back('$');
      ++i;
    } else if (next >= '0' && next <= '9') {
      add_group(static_cast<unsigned long>(next - '0'));
      ++i;
    } else if (next == '{') {
      std::size_t close = tmpl.find('}', i + 2);
      std::string_view digits =
          close == std::string_view::npos ? std::string_view{} : tmpl.substr(i + 2, close - i - 2);
      bool ok =
          !digits.empty() && digits.size() <= 5 &&
          std::all_of(digits.begin(), digits.end(), [](char d) { return d >= '0' && d <= '9'; });
      if (!ok)
        throw RouteError(index, "rewrite '" + std::string(tmpl) +
                                    "' has a bad '${...}' at offset " + std::to_string(i));
      add_group(std::stoul(std::string(digits)));
      i = close;
    } else {
      throw RouteError(index, "rewrite '" + std::string(tmpl) + "' has a lone '$' at offset " +
                                  std::to_string(i) + " (write '$$' for a dollar)");
    }
  }
  if (!literal.empty()) pieces.push_back({std::move(literal), -1});
  return pieces;
}

// Appends a template's expansion; `rc` is pcre2_match's result (groups >= rc are unset).
void expand_template(const std::vector<RewritePiece>& pieces, std::string_view subject,
                     const PCRE2_SIZE* ovector, int rc, std::string& out) {
  for (const RewritePiece& piece : pieces) {
    if (piece.group < 0) {
      out.append(piece.literal);
      continue;
    }
    if (piece.group >= rc) continue;
    PCRE2_SIZE start = ovector[2 * piece.group];
    PCRE2_SIZE end = ovector[2 * piece.group + 1];
    // \K can leave start > end; treat that like an unset group.
    if (start == PCRE2_UNSET || end == PCRE2_UNSET || start > end) continue;
    out.append(subject.substr(start, end - start));
  }
}

// True when `prefix` matches `path` on a segment boundary (see route_table.h).
bool prefix_matches(std::string_view prefix, std::string_view path) {
  if (path.size() < prefix.size() || path.compare(0, prefix.size(), prefix) != 0) return false;
  if (path.size() == prefix.size() || prefix.back() == '/') return true;
  return path[prefix.size()] == '/';
}

struct CompiledPattern {
  CodePtr code;
  bool jit = false;
  std::uint32_t capture_count = 0;
};

CompiledPattern compile_pattern(std::size_t index, const std::string& regex) {
  CompiledPattern out;
  int error_code = 0;
  PCRE2_SIZE error_offset = 0;
  out.code.reset(pcre2_compile(reinterpret_cast<PCRE2_SPTR>(regex.data()), regex.size(),
                               kCompileOptions, &error_code, &error_offset, nullptr));
  if (!out.code)
    throw RouteError(index, "invalid regex '" + regex + "': " + pcre2_message(error_code) +
                                " at offset " + std::to_string(error_offset));
  // JIT failure (not built in, or an unsupported pattern) is not an error: interpret instead.
  out.jit = pcre2_jit_compile(out.code.get(), PCRE2_JIT_COMPLETE) == 0;
  if (pcre2_pattern_info(out.code.get(), PCRE2_INFO_CAPTURECOUNT, &out.capture_count) != 0)
    throw RouteError(index, "invalid regex '" + regex + "': cannot read its capture count");
  return out;
}

}  // namespace

RouteTable::RouteTable() = default;

RouteTable::RouteTable(std::vector<RouteRule> rules) : rules_(std::move(rules)) {
  compiled_.reserve(rules_.size());
  for (std::size_t i = 0; i < rules_.size(); ++i) {
    RouteRule& rule = rules_[i];
    if (rule.name.empty()) rule.name = "route" + std::to_string(i);
    bool has_prefix = !rule.path_prefix.empty();
    bool has_regex = !rule.match_regex.empty();
    if (has_prefix == has_regex)
      throw RouteError(
          i, "route '" + rule.name + "' needs exactly one of a path prefix and a match regex");
    if (has_prefix) {
      if (rule.path_prefix.front() != '/')
        throw RouteError(i, "path prefix '" + rule.path_prefix + "' must start with '/'");
      if (rule.match_query)
        throw RouteError(i, "matching on the query needs a match regex, not a path prefix");
      if (rule.rewrite && rule.rewrite->find('$') != std::string::npos)
        throw RouteError(
            i, "rewrite of a path rule is a plain prefix (no '$' groups): '" + *rule.rewrite + "'");
      compiled_.push_back(nullptr);
    } else {
      CompiledPattern pattern = compile_pattern(i, rule.match_regex);
      auto compiled = std::make_unique<Compiled>();
      compiled->capture_count = pattern.capture_count;
      compiled->jit = pattern.jit;
      compiled->code = std::move(pattern.code);
      if (rule.rewrite) {
        compiled->has_rewrite = true;
        compiled->rewrite = parse_template(i, *rule.rewrite, compiled->capture_count);
      }
      compiled_.push_back(std::move(compiled));
    }
  }
}

RouteTable::~RouteTable() = default;
RouteTable::RouteTable(RouteTable&&) noexcept = default;
RouteTable& RouteTable::operator=(RouteTable&&) noexcept = default;

std::size_t RouteTable::size() const { return rules_.size(); }

const RouteRule& RouteTable::rule(std::size_t index) const { return rules_.at(index); }

const RouteRule* RouteTable::match(std::string_view path, std::string_view query, bool has_query,
                                   MatchScratch& scratch, std::string& forwarded_target) const {
  forwarded_target.clear();
  MatchScratch::Impl& s = *scratch.impl_;
  for (std::size_t i = 0; i < rules_.size(); ++i) {
    const RouteRule& rule = rules_[i];
    const Compiled* compiled = compiled_[i].get();

    if (!compiled) {
      if (!prefix_matches(rule.path_prefix, path)) continue;
      if (rule.rewrite) {
        forwarded_target.append(*rule.rewrite);
        forwarded_target.append(path.substr(rule.path_prefix.size()));
        ensure_leading_slash(forwarded_target);
      } else {
        forwarded_target.append(path);
      }
      if (has_query) forwarded_target.append("?").append(query);
      return &rule;
    }

    std::string_view subject = path;
    if (rule.match_query && has_query) {
      s.subject.assign(path).append("?").append(query);
      subject = s.subject;
    }
    if (!s.ensure_pairs(compiled->capture_count + 1)) return nullptr;
    // PCRE2 10.42 rejects a null subject even with length 0.
    auto* sptr = reinterpret_cast<PCRE2_SPTR>(subject.empty() ? "" : subject.data());
    int rc = compiled->jit ? pcre2_jit_match(compiled->code.get(), sptr, subject.size(), 0, 0,
                                             s.data.get(), s.context.get())
                           : pcre2_match(compiled->code.get(), sptr, subject.size(), 0, 0,
                                         s.data.get(), s.context.get());
    if (rc == PCRE2_ERROR_NOMATCH) continue;
    // Any other failure (a match or depth limit hit) must not fall through to a later, possibly
    // less protected rule: the request gets no route at all.
    if (rc <= 0) return nullptr;

    if (!compiled->has_rewrite) {
      forwarded_target.append(path);
      if (has_query) forwarded_target.append("?").append(query);
      return &rule;
    }
    expand_template(compiled->rewrite, subject, pcre2_get_ovector_pointer(s.data.get()), rc,
                    forwarded_target);
    ensure_leading_slash(forwarded_target);
    // A query-matching rule's result replaces path?query; otherwise the query passes through.
    if (has_query && !rule.match_query) forwarded_target.append("?").append(query);
    return &rule;
  }
  return nullptr;
}

}  // namespace routes
