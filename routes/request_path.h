// The one decision about request paths (see docs/security.md "Paths"): cmsfront does not
// normalise; it rejects every path whose meaning could differ between cmsfront and a backend,
// then routes, authorises and forwards exactly the bytes it checked.
#pragma once

#include <optional>
#include <string_view>

namespace routes {

// Returns nothing for an acceptable origin-form path, else a short reason (answer 400).
// Rejected: not starting with '/', dot segments ("." or ".."), percent-encoded '.', '/', '\'
// (any case), a backslash, malformed %-escapes, control bytes, spaces, '#', and bytes outside
// the RFC 3986 path characters except obs-text (0x80-0xFF is rejected too: clients encode it).
std::optional<std::string_view> check_request_path(std::string_view path);

// Same for the query string (without '?'): RFC 3986 query characters, valid %-escapes.
std::optional<std::string_view> check_request_query(std::string_view query);

}  // namespace routes
