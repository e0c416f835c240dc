#include "appliance/console/dev_certificate.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <ctime>
#include <memory>

#include "ca/openssl_leaf_minter.h"

namespace egressguard::console {

namespace {

std::string Drain(BIO* bio) {
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  return n > 0 ? std::string(data, static_cast<size_t>(n)) : std::string();
}

}  // namespace

absl::StatusOr<PemPair> MintLoopbackCertificate(ca::OpenSslLeafMinter& minter) {
  // The minter copies names and lifetime from a verified upstream; here the
  // "upstream" is a template naming the loopback console, never sent anywhere.
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(EVP_EC_gen("P-256"), EVP_PKEY_free);
  std::unique_ptr<X509, decltype(&X509_free)> probe(X509_new(), X509_free);
  if (!key || !probe) return absl::InternalError("cannot make the console certificate template");
  X509V3_CTX v3;
  X509V3_set_ctx_nodb(&v3);
  X509V3_set_ctx(&v3, probe.get(), probe.get(), nullptr, nullptr, 0);
  X509_EXTENSION* san = X509V3_EXT_conf_nid(nullptr, &v3, NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1,IP:::1");
  const std::time_t now = std::time(nullptr);
  X509_NAME* name = X509_get_subject_name(probe.get());
  const bool ok = san != nullptr &&
                  X509_NAME_add_entry_by_NID(name, NID_commonName, MBSTRING_ASC,
                                             reinterpret_cast<const unsigned char*>("egressguard console"), -1, -1,
                                             0) == 1 &&
                  ASN1_TIME_set(X509_getm_notBefore(probe.get()), now - 3600) != nullptr &&
                  ASN1_TIME_set(X509_getm_notAfter(probe.get()), now + 365 * 86400) != nullptr &&
                  X509_set_pubkey(probe.get(), key.get()) == 1 && X509_add_ext(probe.get(), san, -1) == 1;
  X509_EXTENSION_free(san);
  if (!ok) return absl::InternalError("cannot make the console certificate template");
  auto leaf = minter.MintUncached(probe.get());
  if (!leaf.ok()) return leaf.status();

  std::unique_ptr<BIO, decltype(&BIO_free)> chain(BIO_new(BIO_s_mem()), BIO_free);
  std::unique_ptr<BIO, decltype(&BIO_free)> key_pem(BIO_new(BIO_s_mem()), BIO_free);
  bool written = chain && key_pem && PEM_write_bio_X509(chain.get(), (*leaf)->cert) == 1 &&
                 PEM_write_bio_PrivateKey(key_pem.get(), (*leaf)->key, nullptr, nullptr, 0, nullptr, nullptr) == 1;
  for (int i = 0; written && (*leaf)->chain != nullptr && i < sk_X509_num((*leaf)->chain); ++i) {
    written = PEM_write_bio_X509(chain.get(), sk_X509_value((*leaf)->chain, i)) == 1;
  }
  if (!written) return absl::InternalError("cannot encode the console certificate");
  return PemPair{Drain(chain.get()), Drain(key_pem.get())};
}

}  // namespace egressguard::console
