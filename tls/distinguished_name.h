// X.509 names in the form CMS services expect: OpenSSL's legacy "slash" form
// ("/DC=ch/DC=cern/OU=Users/CN=jdoe"), but with every value as raw UTF-8 (X509_NAME_oneline
// escapes non-ASCII bytes as \xNN, which no CMS user map contains).
#pragma once

#include <openssl/x509.h>

#include <string>

namespace tls {

// "/<short name>=<value>" per entry, in certificate order. Attribute types without a short
// name are printed as dotted OIDs; a value that cannot be converted to UTF-8 is printed as its
// raw bytes' hex ("#<hex>", as RFC 4514 does for binary values).
std::string slash_form(const X509_NAME* name);

}  // namespace tls
