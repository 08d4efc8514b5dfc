#include "proxy/identity_headers.h"

namespace proxy {

void IdentityHeaders::adopt(const std::shared_ptr<const CmsIdentitySnapshot>& snapshot,
                            const tls::ClientIdentity& identity) {
  if (snapshot_ == snapshot && identity_ == &identity) return;
  snapshot_ = snapshot;
  identity_ = &identity;
  // Only a verified identity has a user; an unverified DN must never pick up someone's roles.
  user_ = identity.verified() ? snapshot->map->find(identity.user_dn) : nullptr;
  for (Block& block : blocks_) block.generation = 0;
}

const auth::UserRecord* IdentityHeaders::user(
    const std::shared_ptr<const CmsIdentitySnapshot>& snapshot,
    const tls::ClientIdentity& identity) {
  adopt(snapshot, identity);
  return user_;
}

std::optional<std::string_view> IdentityHeaders::block(
    const std::shared_ptr<const CmsIdentitySnapshot>& snapshot, const tls::ClientIdentity& identity,
    bool authenticated, const auth::UserRecord* user, auth::HmacEncoding encoding) {
  adopt(snapshot, identity);
  Block& block = blocks_[static_cast<std::size_t>(encoding) % blocks_.size()];
  if (block.generation != snapshot->generation || block.authenticated != authenticated ||
      block.user != user) {
    block.generation = snapshot->generation;
    block.authenticated = authenticated;
    block.user = user;
    block.text.clear();
    auth::IdentityHeadersInput input;
    input.identity = &identity;
    input.authenticated = authenticated;
    input.user = user;
    block.usable =
        auth::append_identity_headers(input, snapshot->key->bytes(), encoding, block.text);
  }
  if (!block.usable) return std::nullopt;
  return std::string_view(block.text);
}

}  // namespace proxy
