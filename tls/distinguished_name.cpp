#include "tls/distinguished_name.h"

#include <openssl/asn1.h>
#include <openssl/crypto.h>
#include <openssl/objects.h>

#include "tls/openssl_ptr.h"

namespace tls {
namespace {

void append_type(std::string& out, const ASN1_OBJECT* type) {
  const int nid = OBJ_obj2nid(type);
  const char* short_name = nid == NID_undef ? nullptr : OBJ_nid2sn(nid);
  if (short_name != nullptr) {
    out += short_name;
    return;
  }
  char oid[128];
  const int length = OBJ_obj2txt(oid, sizeof oid, type, 1);
  if (length > 0 && static_cast<std::size_t>(length) < sizeof oid) {
    out.append(oid, static_cast<std::size_t>(length));
  } else {
    out += "UNKNOWN";
  }
}

void append_hex(std::string& out, const ASN1_STRING* value) {
  static constexpr char kDigits[] = "0123456789abcdef";
  out.push_back('#');
  const unsigned char* data = ASN1_STRING_get0_data(value);
  for (int i = 0; i < ASN1_STRING_length(value); ++i) {
    out.push_back(kDigits[data[i] >> 4]);
    out.push_back(kDigits[data[i] & 15]);
  }
}

}  // namespace

std::string slash_form(const X509_NAME* name) {
  std::string out;
  if (name == nullptr) return out;
  const int count = X509_NAME_entry_count(name);
  for (int i = 0; i < count; ++i) {
    const X509_NAME_ENTRY* entry = X509_NAME_get_entry(name, i);
    out.push_back('/');
    append_type(out, X509_NAME_ENTRY_get_object(entry));
    out.push_back('=');
    const ASN1_STRING* value = X509_NAME_ENTRY_get_data(entry);
    unsigned char* converted = nullptr;
    const int length = ASN1_STRING_to_UTF8(&converted, value);
    const OpensslMemoryPtr<unsigned char> utf8(converted);
    if (length < 0) {
      append_hex(out, value);
      continue;
    }
    out.append(reinterpret_cast<const char*>(utf8.get()), static_cast<std::size_t>(length));
  }
  return out;
}

}  // namespace tls
