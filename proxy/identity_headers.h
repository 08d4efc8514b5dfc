// Per connection: the CMS identity header block for the connection's certificate identity,
// and the user-map record it maps to. Both depend only on the identity (fixed at the
// handshake), the user map and the HMAC key (one snapshot generation), the status (OK or
// NONE) and the backend's HMAC encoding -- so they are computed on the first request that
// needs them and reused by every later one, until the map or key is replaced.
//
// Owner: the ClientConnection (an HTTP/2 session would hold one for all its streams).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "auth/cms_headers.h"
#include "auth/user_map.h"
#include "proxy/cms_identity.h"
#include "tls/client_identity.h"

namespace proxy {

class IdentityHeaders {
 public:
  // The identity's user-map record under `snapshot` (its user DN looked up once per map
  // generation); nullptr when not mapped. Valid until the next call with another snapshot.
  const auth::UserRecord* user(const std::shared_ptr<const CmsIdentitySnapshot>& snapshot,
                               const tls::ClientIdentity& identity);

  // The header lines for this request (see auth::append_identity_headers); nullopt when a
  // value cannot be sent in a header (the request must be refused). `user` comes from user().
  std::optional<std::string_view> block(const std::shared_ptr<const CmsIdentitySnapshot>& snapshot,
                                        const tls::ClientIdentity& identity, bool authenticated,
                                        const auth::UserRecord* user, auth::HmacEncoding encoding);

 private:
  struct Block {
    std::uint64_t generation = 0;  // 0: empty
    bool authenticated = false;
    bool usable = false;
    const auth::UserRecord* user = nullptr;
    std::string text;
  };

  void adopt(const std::shared_ptr<const CmsIdentitySnapshot>& snapshot,
             const tls::ClientIdentity& identity);

  // Held so that `user_` and the blocks stay valid while a newer map is being published.
  std::shared_ptr<const CmsIdentitySnapshot> snapshot_;
  const tls::ClientIdentity* identity_ = nullptr;
  const auth::UserRecord* user_ = nullptr;
  std::array<Block, 2> blocks_;  // by auth::HmacEncoding
};

}  // namespace proxy
