#include "tls/openssl_util.h"

#include <openssl/err.h>

#include <ctime>

namespace tls {

std::string openssl_errors() {
  std::string text;
  while (const unsigned long code = ERR_get_error()) {
    char buffer[256];
    ERR_error_string_n(code, buffer, sizeof buffer);
    if (!text.empty()) text += "; ";
    text += buffer;
  }
  return text.empty() ? "unknown OpenSSL error" : text;
}

std::int64_t unix_time(const ASN1_TIME* time) {
  if (time == nullptr) return 0;
  std::tm parts{};
  if (ASN1_TIME_to_tm(time, &parts) != 1) return 0;
  return static_cast<std::int64_t>(timegm(&parts));
}

}  // namespace tls
