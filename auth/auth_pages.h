// The pages cmsfront answers itself about authentication: the 403 page of a protected route
// and the trouble page (`[auth] trouble_page`, default /auth/trouble). Both come as HTML, or
// as JSON when the client asks for JSON. Pure functions: values in, body out; every value
// taken from a certificate is escaped (HTML or JSON) — DNs are attacker-chosen text.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "auth/policy.h"
#include "auth/user_map.h"
#include "tls/client_identity.h"

namespace auth {

// True when the Accept header prefers JSON: it lists application/json (or a +json type) with
// a q greater than that of text/html (absent q = 1; text/html absent = 0).
bool wants_json(std::string_view accept_header);

struct Page {
  std::string content_type;  // "text/html; charset=utf-8" or "application/json"
  std::string body;
};

// 403 for a protected route: states the reason and links the trouble page.
Page render_denied(const Decision& decision, const tls::ClientIdentity& identity,
                   std::string_view trouble_page, bool json);

// What the trouble page shows about the connection. `tls` false: the request came over plain
// HTTP, so no certificate could be offered.
struct TroubleFacts {
  bool tls = true;
  std::string_view protocol;  // "TLSv1.3", ... ("-" on plain HTTP)
  std::int64_t now = 0;       // unix seconds, for "days left"
  // The CMS account: whether a user map is loaded (and its size), and the identity's record
  // in it (nullptr: not mapped, or not looked up because the certificate did not verify).
  bool user_map_loaded = false;
  std::size_t user_map_users = 0;
  const UserRecord* user = nullptr;
};
Page render_trouble(const tls::ClientIdentity& identity, const TroubleFacts& facts, bool json);

}  // namespace auth
