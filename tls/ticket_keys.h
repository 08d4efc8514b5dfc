// Session ticket keys: what lets a client resume its TLS session (skipping the certificate
// exchange and verification) on any frontend node, since all nodes read the same key file.
//
// File format (as nginx's ssl_session_ticket_key): one or more 80-byte keys, concatenated,
// each 16 bytes of key name, 32 of HMAC-SHA256 key, 32 of AES-256 key (`openssl rand 80`).
// The first key encrypts new tickets; every key decrypts, so rotation is: prepend a new key,
// keep the previous one behind it for a ticket lifetime, then drop it.
//
// Immutable; published through tls::Published and replaced when the file changes. Key bytes
// are wiped when the object is freed.
#pragma once

#include <array>
#include <memory>
#include <string>
#include <variant>
#include <vector>

namespace tls {

struct TicketKey {
  static constexpr std::size_t kFileSize = 80;
  std::array<unsigned char, 16> name{};
  std::array<unsigned char, 32> hmac_key{};
  std::array<unsigned char, 32> aes_key{};
};

class TicketKeys {
 public:
  // Reads the key file; on failure a message for the operator.
  static std::variant<std::shared_ptr<const TicketKeys>, std::string> load(const std::string& path);
  // One random key, for a frontend without a key file (tickets then work on this node, for
  // this process only).
  static std::shared_ptr<const TicketKeys> random();

  explicit TicketKeys(std::vector<TicketKey> keys) : keys_(std::move(keys)) {}
  ~TicketKeys();
  TicketKeys(const TicketKeys&) = delete;
  TicketKeys& operator=(const TicketKeys&) = delete;

  const TicketKey& encryption_key() const { return keys_.front(); }
  // The key with this name, or null; `is_current` tells whether it is the encryption key
  // (a ticket under an older key is accepted and replaced by a new one).
  const TicketKey* find(const unsigned char* name, bool& is_current) const;
  std::size_t size() const { return keys_.size(); }

 private:
  std::vector<TicketKey> keys_;  // never empty
};

}  // namespace tls
