#include "auth/header_rules.h"

#include <gtest/gtest.h>

namespace auth {
namespace {

TEST(HeaderRules, HeadersCmsfrontSetsAreReservedInAnyCaseAndSeparator) {
  for (std::string_view name : {"CMS-AUTHN-LOGIN",
                                "cms-authn-hmac",
                                "cms_authz_x",
                                "Cms-Authz-Superuser",
                                "cms-",
                                "cms_",
                                "SSL_CLIENT_S_DN",
                                "ssl-client-verify",
                                "SSL-CLIENT-VERIFY",
                                "ssl_client",
                                "Ssl-Client-Cert",
                                "HTTPS",
                                "https",
                                "Https",
                                "X-Forwarded-For",
                                "x_forwarded_host",
                                "X-FORWARDED-PROTO",
                                "x-forwarded-",
                                "Forwarded",
                                "FORWARDED",
                                "VIA",
                                "via",
                                "Via"}) {
    EXPECT_TRUE(is_reserved_request_header(name)) << name;
  }
}

TEST(HeaderRules, LookalikeNamesAreNotReserved) {
  for (std::string_view name :
       {"",           "c",       "cms",           "cmsx",        "cms.authn",
        "xcms-authn", "https2",  "http",          "httpsx",      "ssl",
        "ssl-clien",  "ssl-cli", "sslclient",     "x-forwarded", "x-forwardedfor",
        "x-real-ip",  "forward", "forwarded-for", "vias",        "vi",
        "Host",       "Cookie",  "Authorization", "Content-Type"}) {
    EXPECT_FALSE(is_reserved_request_header(name)) << name;
  }
}

TEST(HeaderRules, HopByHopHeadersAreRecognisedInAnyCase) {
  for (std::string_view name :
       {"Connection", "connection", "CONNECTION", "Keep-Alive", "keep-alive", "Proxy-Connection",
        "TE", "te", "Trailer", "Transfer-Encoding", "TRANSFER-ENCODING", "Upgrade",
        "Proxy-Authenticate", "proxy-authorization"}) {
    EXPECT_TRUE(is_hop_by_hop_header(name)) << name;
  }
}

TEST(HeaderRules, EndToEndHeadersAreNotHopByHop) {
  for (std::string_view name :
       {"", "t", "tes", "keep_alive", "transfer_encoding", "proxy_connection", "Trailers",
        "Upgrades", "Connections", "Content-Length", "Host", "Authorization", "Proxy-Authorizatio",
        "Proxy-Authenticated", "Keep-Alivx"}) {
    EXPECT_FALSE(is_hop_by_hop_header(name)) << name;
  }
}

}  // namespace
}  // namespace auth
