// Small conversions every tls/ file needs: OpenSSL's error queue as text, ASN.1 times as
// unix seconds.
#pragma once

#include <openssl/asn1.h>

#include <cstdint>
#include <string>

namespace tls {

// Drains the calling thread's OpenSSL error queue into "reason; reason" (never empty).
std::string openssl_errors();

// Unix seconds of an ASN.1 time; 0 for null or unparsable input.
std::int64_t unix_time(const ASN1_TIME* time);

}  // namespace tls
