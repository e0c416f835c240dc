// Fuzzes the leaf minter's strict SAN reader (ca/leaf_der.h) against OpenSSL's own DER
// decoder: whatever the reader accepts is copied verbatim into minted leaves, so OpenSSL
// must parse it to exactly those bytes, holding only DNS names and 4- or 16-byte IPs.
#include <openssl/x509v3.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "ca/leaf_der.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  if (!egressguard::ca::der::IsHostOnlyGeneralNames(input)) return 0;
  const unsigned char* p = data;
  GENERAL_NAMES* names = d2i_GENERAL_NAMES(nullptr, &p, static_cast<long>(size));
  if (names == nullptr || p != data + size) std::abort();  // accepted, yet not DER OpenSSL reads whole
  if (sk_GENERAL_NAME_num(names) < 1) std::abort();
  for (int i = 0; i < sk_GENERAL_NAME_num(names); ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names, i);
    if (name->type == GEN_DNS) continue;
    if (name->type == GEN_IPADD && (name->d.iPAddress->length == 4 || name->d.iPAddress->length == 16)) continue;
    std::abort();  // a name a leaf must not carry
  }
  unsigned char* der = nullptr;
  const int len = i2d_GENERAL_NAMES(names, &der);
  if (len != static_cast<int>(size) || std::string_view(reinterpret_cast<const char*>(der), size) != input) {
    std::abort();  // OpenSSL would re-encode it differently: not canonical DER
  }
  OPENSSL_free(der);
  GENERAL_NAMES_free(names);
  return 0;
}
