#include "mitm/upstream_verify.h"

#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <cstdint>

#include "mitm/policy.h"

namespace egressguard::mitm {

ServerKeyUse KeyUseOf(const SSL* ssl) {
  // Only TLS 1.2's RSA key transport has the client encrypt to the leaf's key; TLS 1.3 and
  // every (EC)DHE suite have the origin sign with it.
  if (SSL_version(ssl) < TLS1_3_VERSION) {
    const SSL_CIPHER* cipher = SSL_get_current_cipher(ssl);
    if (cipher != nullptr && SSL_CIPHER_get_kx_nid(cipher) == NID_kx_rsa) return ServerKeyUse::kKeyTransport;
  }
  return ServerKeyUse::kSignature;
}

std::string ServerLeafProblem(X509* leaf, ServerKeyUse use) {
  if (leaf == nullptr) return "no certificate presented";
  // Decodes and caches the extensions; an extension OpenSSL cannot parse taints them all.
  uint32_t flags = X509_get_extension_flags(leaf);
  if ((flags & EXFLAG_INVALID) != 0) return "leaf has an extension that cannot be parsed";
  // A CA certificate is for issuing, not for serving: a browser refuses it as a TLS leaf.
  if ((flags & EXFLAG_CA) != 0) return "leaf is a CA certificate";
  // Key usage, when present, must allow what the handshake actually did with the key.
  if ((flags & EXFLAG_KUSAGE) != 0) {
    uint32_t ku = X509_get_key_usage(leaf);
    uint32_t needed = use == ServerKeyUse::kSignature ? KU_DIGITAL_SIGNATURE : KU_KEY_ENCIPHERMENT;
    if ((ku & needed) == 0) return "leaf key usage does not allow TLS server authentication";
  }
  // Extended key usage, when present, must name serverAuth (or anyExtendedKeyUsage).
  if ((flags & EXFLAG_XKUSAGE) != 0) {
    uint32_t xku = X509_get_extended_key_usage(leaf);
    if ((xku & (XKU_SSL_SERVER | XKU_ANYEKU)) == 0) {
      return "leaf extended key usage does not include serverAuth";
    }
  }
  return "";
}

namespace {

// Names a refusal page may be minted for: letters, digits, '-', '_' and dots; no
// wildcard, nothing a SAN dNSName (IA5String) could not carry as the client sent it.
bool IsPlainHostName(std::string_view name) {
  return !name.empty() && name.size() <= 253 && std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
           c == '_';
  });
}

// The key every surrogate is self-signed with: made once per process, in no trust store.
// Ed25519 signatures are deterministic, so one name in one hour gives the same DER.
EVP_PKEY* SurrogateKey() {
  static EVP_PKEY* const key = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
  return key;
}

}  // namespace

ca::X509Ptr RefusalSurrogate(std::string_view name, std::time_t now) {
  EVP_PKEY* key = SurrogateKey();
  if (key == nullptr) return nullptr;
  std::string text(name);
  ca::GeneralNamesPtr names(GENERAL_NAMES_new());
  ca::X509Ptr cert(X509_new());
  if (!names || !cert) return nullptr;
  GENERAL_NAME* gn = GENERAL_NAME_new();
  if (gn == nullptr || sk_GENERAL_NAME_push(names.get(), gn) <= 0) {
    GENERAL_NAME_free(gn);
    return nullptr;
  }
  if (ParseIp(text).has_value()) {
    ASN1_OCTET_STRING* ip = a2i_IPADDRESS(text.c_str());
    if (ip == nullptr) return nullptr;
    GENERAL_NAME_set0_value(gn, GEN_IPADD, ip);
  } else {
    if (!IsPlainHostName(text)) return nullptr;
    ASN1_IA5STRING* dns = ASN1_IA5STRING_new();
    if (dns == nullptr || ASN1_STRING_set(dns, text.data(), static_cast<int>(text.size())) != 1) {
      ASN1_IA5STRING_free(dns);
      return nullptr;
    }
    GENERAL_NAME_set0_value(gn, GEN_DNS, dns);
  }
  // Hour-aligned, an hour back and at least a day ahead: the minted leaf's lifetime is
  // capped by these dates, and a new hour is a new cache key.
  std::time_t start = now - now % 3600 - 3600;
  std::time_t end = start + 26 * 3600;
  X509_NAME* issuer = X509_get_issuer_name(cert.get());
  if (X509_set_version(cert.get(), X509_VERSION_3) != 1 || ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), 1) != 1 ||
      X509_NAME_add_entry_by_NID(issuer, NID_commonName, MBSTRING_ASC,
                                 reinterpret_cast<const unsigned char*>("egressguard refusal page"), -1, -1, 0) != 1 ||
      ASN1_TIME_set(X509_getm_notBefore(cert.get()), start) == nullptr ||
      ASN1_TIME_set(X509_getm_notAfter(cert.get()), end) == nullptr || X509_set_pubkey(cert.get(), key) != 1 ||
      X509_add1_ext_i2d(cert.get(), NID_subject_alt_name, names.get(), /*crit=*/1, X509V3_ADD_DEFAULT) != 1 ||
      X509_sign(cert.get(), key, nullptr) <= 0) {
    return nullptr;
  }
  return cert;
}

}  // namespace egressguard::mitm
