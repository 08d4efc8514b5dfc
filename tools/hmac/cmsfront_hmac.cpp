// cmsfront-hmac: recomputes the cms-authn-hmac of a set of CMS identity headers, with the same
// code cmsfront signs with (auth/cms_headers.h), and shows the signed message. What an operator
// runs when a backend answers 403 "hmac mismatch": paste the cms-* headers from the backend's
// log, point --key at the key file the backend uses, and see which side differs.
//
// Exit status: 0 done (or --verify matched), 1 --verify did not match, 2 usage, key or input
// error.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "auth/cms_headers.h"

namespace {

constexpr int kExitOk = 0;
constexpr int kExitMismatch = 1;
constexpr int kExitUsage = 2;

constexpr std::string_view kUsage =
    "usage: cmsfront-hmac --key FILE [--encoding python3|raw] [--verify HEX] [HEADER...]\n";

constexpr std::string_view kHelp =
    "Recomputes the cms-authn-hmac of CMS identity headers and shows the signed message.\n"
    "\n"
    "  --key FILE         the HMAC key file, used byte for byte (as cmsfront and the backends\n"
    "                     do: a trailing newline is part of the key)\n"
    "  --encoding ENC     python3 (default): what Python 3 CherryPy backends (WMCore) compute;\n"
    "                     raw: the bytes as sent (Go backends; what the Apache and Go\n"
    "                     frontends signed). Both agree when every header is ASCII.\n"
    "  --verify HEX       compare this HMAC with the computed one (under both encodings)\n"
    "  HEADER             \"name: value\"; without any, headers are read from standard input,\n"
    "                     one per line (blank lines ignored, \"name:value\" accepted).\n"
    "\n"
    "Only headers whose lowercased name starts with cms-authn or cms-authz (except\n"
    "cms-authn-hmac) are signed; others are listed and ignored. A cms-authn-hmac header in the\n"
    "input is verified as if given with --verify (which wins when both are present).\n"
    "In the message, bytes outside printable ASCII, and the backslash, are shown as \\xNN.\n"
    "\n"
    "Exit status: 0 done or verified, 1 the HMAC does not match under the chosen encoding,\n"
    "2 usage, key or input error.\n";

struct Header {
  std::string name;
  std::string value;
};

struct Options {
  std::string key_path;
  auth::HmacEncoding encoding = auth::HmacEncoding::python3;
  std::optional<std::string> verify;
  std::vector<std::string> headers;
  bool help = false;
};

std::string_view backends_of(auth::HmacEncoding encoding) {
  return encoding == auth::HmacEncoding::python3
             ? "what Python 3 CherryPy backends (WMCore) compute"
             : "what Go backends compute (and what the Apache and Go frontends signed)";
}

auth::HmacEncoding other(auth::HmacEncoding encoding) {
  return encoding == auth::HmacEncoding::python3 ? auth::HmacEncoding::raw
                                                 : auth::HmacEncoding::python3;
}

char ascii_lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

std::string lowered(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(), ascii_lower);
  return out;
}

std::string_view trim(std::string_view text) {
  constexpr std::string_view kSpace = " \t";
  const auto first = text.find_first_not_of(kSpace);
  if (first == std::string_view::npos) return {};
  return text.substr(first, text.find_last_not_of(kSpace) - first + 1);
}

// Printable ASCII as is; anything else (and '\', so the output stays unambiguous) as \xNN.
std::string escaped(std::string_view bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (char c : bytes) {
    const auto b = static_cast<unsigned char>(c);
    if (b >= 0x20 && b < 0x7F && c != '\\') {
      out.push_back(c);
    } else {
      out += "\\x";
      out.push_back(kHex[b >> 4]);
      out.push_back(kHex[b & 0x0F]);
    }
  }
  return out;
}

bool has_non_ascii(std::string_view bytes) {
  return std::any_of(bytes.begin(), bytes.end(),
                     [](char c) { return static_cast<unsigned char>(c) >= 0x80; });
}

bool is_hex_digest(std::string_view text) {
  return text.size() == 40 && std::all_of(text.begin(), text.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

// The same test as the contract's step 1 (first 9 characters). Used for the listing only: the
// HMAC itself comes from auth::signed_message, which applies the rule on its own.
bool is_signed(std::string_view lower_name) {
  const std::string_view family = lower_name.substr(0, 9);
  return (family == "cms-authn" || family == "cms-authz") && lower_name != "cms-authn-hmac";
}

// ---- input -------------------------------------------------------------------------------------

// "name: value" or "name:value"; spaces around the value are dropped, as the backends' HTTP
// parsers drop them.
bool parse_header(std::string_view text, Header& header, std::string& error) {
  const auto colon = text.find(':');
  const std::string_view name = trim(text.substr(0, colon == std::string_view::npos ? 0 : colon));
  if (colon == std::string_view::npos || name.empty() ||
      name.find_first_of(" \t") != std::string_view::npos) {
    error = "expected \"name: value\", got \"" + escaped(text) + "\"";
    return false;
  }
  header.name = std::string(name);
  header.value = std::string(trim(text.substr(colon + 1)));
  return true;
}

bool read_headers(const Options& options, std::vector<Header>& headers) {
  std::string error;
  if (!options.headers.empty()) {
    for (std::size_t i = 0; i < options.headers.size(); ++i) {
      Header header;
      if (!parse_header(options.headers[i], header, error)) {
        std::cerr << "cmsfront-hmac: argument " << i + 1 << ": " << error << "\n";
        return false;
      }
      headers.push_back(std::move(header));
    }
    return true;
  }
  if (isatty(STDIN_FILENO) == 1) {
    std::cerr << "cmsfront-hmac: reading headers from standard input, one \"name: value\" per "
                 "line; end with Ctrl-D\n";
  }
  std::string line;
  for (std::size_t number = 1; std::getline(std::cin, line); ++number) {
    if (!line.empty() && line.back() == '\r') line.pop_back();  // pasted from a CRLF source
    if (trim(line).empty()) continue;
    Header header;
    if (!parse_header(line, header, error)) {
      std::cerr << "cmsfront-hmac: line " << number << ": " << error << "\n";
      return false;
    }
    headers.push_back(std::move(header));
  }
  return true;
}

// The value following an option: "--key FILE" or "--key=FILE".
bool option_value(std::string_view argument, std::string_view option, int& index, int argc,
                  char** argv, std::string& value, bool& matched, std::string& error) {
  matched = false;
  if (argument == option) {
    matched = true;
    if (index + 1 >= argc) {
      error = std::string(option) + " needs a value";
      return false;
    }
    value = argv[++index];
    return true;
  }
  if (argument.size() > option.size() && argument.substr(0, option.size()) == option &&
      argument[option.size()] == '=') {
    matched = true;
    value = std::string(argument.substr(option.size() + 1));
  }
  return true;
}

bool parse_arguments(int argc, char** argv, Options& options, std::string& error) {
  bool only_headers = false;
  for (int i = 1; i < argc; ++i) {
    const std::string_view argument = argv[i];
    if (only_headers || argument.empty() || argument[0] != '-') {
      options.headers.emplace_back(argument);
      continue;
    }
    if (argument == "--") {
      only_headers = true;
      continue;
    }
    if (argument == "--help" || argument == "-h") {
      options.help = true;
      return true;
    }
    std::string value;
    bool matched = false;
    if (!option_value(argument, "--key", i, argc, argv, value, matched, error)) return false;
    if (matched) {
      options.key_path = value;
      continue;
    }
    if (!option_value(argument, "--encoding", i, argc, argv, value, matched, error)) return false;
    if (matched) {
      if (value == "python3") {
        options.encoding = auth::HmacEncoding::python3;
      } else if (value == "raw") {
        options.encoding = auth::HmacEncoding::raw;
      } else {
        error = "--encoding must be python3 or raw, not \"" + value + "\"";
        return false;
      }
      continue;
    }
    if (!option_value(argument, "--verify", i, argc, argv, value, matched, error)) return false;
    if (matched) {
      value = lowered(trim(value));
      if (!is_hex_digest(value)) {
        error = "--verify expects 40 hex digits (an HMAC-SHA1), not \"" + escaped(value) + "\"";
        return false;
      }
      options.verify = value;
      continue;
    }
    error = "unknown option " + std::string(argument);
    return false;
  }
  if (options.key_path.empty()) {
    error = "--key FILE is required";
    return false;
  }
  return true;
}

// ---- output ------------------------------------------------------------------------------------

// Lists what is signed (sorted as in the message) and what is not; warns about names given
// twice, which a backend would merge or reject.
void print_headers(const std::vector<Header>& headers) {
  std::vector<std::pair<std::string, const Header*>> taken;
  std::vector<std::string> ignored;
  for (const Header& header : headers) {
    std::string name = lowered(header.name);
    if (is_signed(name)) {
      taken.emplace_back(std::move(name), &header);
    } else {
      ignored.push_back(std::move(name));
    }
  }
  std::stable_sort(taken.begin(), taken.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  std::cout << "signed headers (sorted by lowercased name):\n";
  for (std::size_t i = 0; i < taken.size(); ++i) {
    std::cout << "  " << taken[i].first << ": " << escaped(taken[i].second->value) << "\n";
    if (i > 0 && taken[i].first == taken[i - 1].first) {
      std::cerr << "cmsfront-hmac: warning: " << taken[i].first
                << " given more than once; a backend sees a single header\n";
    }
  }
  if (!ignored.empty()) {
    std::cout << "not signed:";
    for (const std::string& name : ignored) std::cout << " " << name;
    std::cout << "\n";
  }
}

struct Signature {
  auth::HmacEncoding encoding;
  std::string message;
  std::string hmac;
};

Signature sign(std::span<const auth::HeaderView> views, std::string_view key,
               auth::HmacEncoding encoding) {
  Signature signature{encoding, auth::signed_message(views, encoding), {}};
  signature.hmac = auth::hmac_sha1_hex(key, signature.message);
  return signature;
}

void print_signature(const Signature& signature, bool name_backends) {
  const std::string_view name = auth::hmac_encoding_name(signature.encoding);
  std::cout << "message (" << name << "): " << escaped(signature.message) << "\n";
  std::cout << "hmac (" << name << "): " << signature.hmac;
  if (name_backends) std::cout << "  <- " << backends_of(signature.encoding);
  std::cout << "\n";
}

int verify(std::string_view expected, std::string_view source, const Signature& chosen,
           const std::optional<Signature>& alternative) {
  const std::string_view chosen_name = auth::hmac_encoding_name(chosen.encoding);
  std::cout << "verify " << expected << " (" << source << "): ";
  if (expected == chosen.hmac) {
    std::cout << "matches the " << chosen_name << " encoding\n";
    return kExitOk;
  }
  if (alternative && expected == alternative->hmac) {
    const std::string_view other_name = auth::hmac_encoding_name(alternative->encoding);
    std::cout << "MISMATCH for the " << chosen_name << " encoding, but matches the " << other_name
              << " encoding, " << backends_of(alternative->encoding)
              << ": the key is right; signer and verifier disagree on the encoding\n";
    return kExitMismatch;
  }
  std::cout << "MISMATCH" << (alternative ? " under both encodings" : "")
            << ": a different key, or headers that differ from what was signed\n";
  return kExitMismatch;
}

int run(const Options& options) {
  std::string error;
  const auto key = auth::HmacKey::load(options.key_path, error);
  if (!key) {
    std::cerr << "cmsfront-hmac: " << error << "\n";
    return kExitUsage;
  }
  if (key->bytes().back() == '\n') {
    std::cerr << "cmsfront-hmac: warning: key file ends with a newline; backends use it as-is "
                 "(production keys have none)\n";
  }

  std::vector<Header> headers;
  if (!read_headers(options, headers)) return kExitUsage;
  std::vector<auth::HeaderView> views;
  std::optional<std::string> pasted_hmac;
  bool non_ascii = false;
  for (const Header& header : headers) {
    const std::string name = lowered(header.name);
    if (name == "cms-authn-hmac") pasted_hmac = lowered(header.value);
    if (!is_signed(name)) continue;
    views.emplace_back(header.name, header.value);
    non_ascii = non_ascii || has_non_ascii(header.name) || has_non_ascii(header.value);
  }
  if (views.empty()) {
    std::cerr << "cmsfront-hmac: no cms-authn-* or cms-authz-* header in the input (nothing to "
                 "sign)\n";
    return kExitUsage;
  }

  print_headers(headers);
  const Signature chosen = sign(views, key->bytes(), options.encoding);
  print_signature(chosen, non_ascii);
  std::optional<Signature> alternative;
  if (non_ascii) {
    alternative = sign(views, key->bytes(), other(options.encoding));
    print_signature(*alternative, true);
  }

  if (options.verify) return verify(*options.verify, "--verify", chosen, alternative);
  if (pasted_hmac) return verify(*pasted_hmac, "cms-authn-hmac of the input", chosen, alternative);
  return kExitOk;
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  std::string error;
  if (!parse_arguments(argc, argv, options, error)) {
    std::cerr << "cmsfront-hmac: " << error << "\n" << kUsage << "(try --help)\n";
    return kExitUsage;
  }
  if (options.help) {
    std::cout << kUsage << "\n" << kHelp;
    return kExitOk;
  }
  return run(options);
}
