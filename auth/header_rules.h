// Which request headers a client may never set: the ones cmsfront itself sets or that a
// backend would trust as coming from the frontend. CGI/WSGI backends turn '-' into '_' and
// fold case, so the match ignores case and treats '_' and '-' alike.
#pragma once

#include <string_view>

namespace auth {

// true for cms-*, ssl-client*/ssl_client*, https, x-forwarded-*, forwarded, via
// (any case, '_' or '-').
bool is_reserved_request_header(std::string_view name);

// true for the hop-by-hop headers of RFC 9110 §7.6.1 plus the legacy ones proxies drop:
// connection, keep-alive, proxy-connection, te, trailer, transfer-encoding, upgrade,
// proxy-authenticate, proxy-authorization (any case).
bool is_hop_by_hop_header(std::string_view name);

}  // namespace auth
