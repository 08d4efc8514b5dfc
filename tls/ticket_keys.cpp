#include "tls/ticket_keys.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <cstring>
#include <fstream>
#include <iterator>

namespace tls {

std::variant<std::shared_ptr<const TicketKeys>, std::string> TicketKeys::load(
    const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) return path + ": cannot read session ticket keys: " + std::strerror(errno);
  std::string bytes((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  const std::size_t size = bytes.size();
  if (size == 0 || size % TicketKey::kFileSize != 0) {
    OPENSSL_cleanse(bytes.data(), bytes.size());
    return path + ": session ticket keys must be one or more 80-byte keys (" +
           std::to_string(size) + " bytes found; make one with: openssl rand 80 > " + path + ")";
  }
  std::vector<TicketKey> keys(size / TicketKey::kFileSize);
  for (std::size_t i = 0; i < keys.size(); ++i) {
    const auto* source = reinterpret_cast<const unsigned char*>(bytes.data()) + i * 80;
    std::memcpy(keys[i].name.data(), source, 16);
    std::memcpy(keys[i].hmac_key.data(), source + 16, 32);
    std::memcpy(keys[i].aes_key.data(), source + 48, 32);
  }
  OPENSSL_cleanse(bytes.data(), bytes.size());
  return std::make_shared<const TicketKeys>(std::move(keys));
}

std::shared_ptr<const TicketKeys> TicketKeys::random() {
  std::vector<TicketKey> keys(1);
  if (RAND_bytes(keys[0].name.data(), 16) != 1 || RAND_bytes(keys[0].hmac_key.data(), 32) != 1 ||
      RAND_bytes(keys[0].aes_key.data(), 32) != 1) {
    return nullptr;
  }
  return std::make_shared<const TicketKeys>(std::move(keys));
}

TicketKeys::~TicketKeys() { OPENSSL_cleanse(keys_.data(), keys_.size() * sizeof(TicketKey)); }

const TicketKey* TicketKeys::find(const unsigned char* name, bool& is_current) const {
  for (std::size_t i = 0; i < keys_.size(); ++i) {
    if (CRYPTO_memcmp(keys_[i].name.data(), name, 16) == 0) {
      is_current = i == 0;
      return &keys_[i];
    }
  }
  return nullptr;
}

}  // namespace tls
