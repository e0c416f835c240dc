#pragma once
// Small X.509 helpers shared by the CA, the leaf minter and the CLI: PEM in/out,
// names, times, fingerprints and the key-identifier extensions.

#include <openssl/crypto.h>

#include <cstddef>
#include <ctime>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "ca/openssl_types.h"

namespace egressguard::ca {

// Drains the thread's OpenSSL error queue into one line ("" when empty).
std::string DrainOpenSslErrors();
// An absl::Status carrying `what` plus the drained OpenSSL error queue.
absl::Status OpenSslError(absl::StatusCode code, std::string_view what);

absl::StatusOr<std::string> ReadSmallFile(const std::string& path);

// `object` DER-encoded by its i2d function (e.g. ToDer<X509_NAME>(name, i2d_X509_NAME, "...")).
template <typename T>
absl::StatusOr<std::string> ToDer(const T* object, int (*i2d)(const T*, unsigned char**), const char* what) {
  unsigned char* der = nullptr;
  const int len = i2d(object, &der);
  if (len <= 0) return OpenSslError(absl::StatusCode::kInternal, what);
  std::string out(reinterpret_cast<const char*>(der), static_cast<std::size_t>(len));
  OPENSSL_free(der);
  return out;
}

// Every certificate in a PEM text / file, in order. Empty input is an error.
absl::StatusOr<std::vector<X509Ptr>> ParseCertificatesPem(std::string_view pem, std::string_view origin);
absl::StatusOr<std::vector<X509Ptr>> ReadCertificatesPem(const std::string& path);
// Reads an unencrypted PEM private key, refusing a file group or others can read.
absl::StatusOr<EvpPkeyPtr> ReadPrivateKeyPem(const std::string& path);

std::string CertificateToPem(X509* cert);
// PKCS#8 PEM; the caller should OPENSSL_cleanse the result once written.
absl::StatusOr<std::string> PrivateKeyToPem(EVP_PKEY* key);

// "AB:CD:..." SHA-256 over the DER encoding.
std::string Sha256Fingerprint(X509* cert);
// RFC 2253 escaping in written order, e.g. "CN=egressguard cluster CA,O=egressguard".
std::string NameToString(const X509_NAME* name);
// "2026-11-26T09:31:22Z".
std::string TimeToString(const ASN1_TIME* t);
absl::StatusOr<std::time_t> TimeToUnix(const ASN1_TIME* t);
// "ecdsa-p256", "rsa-3072", or the OpenSSL type name and bit size.
std::string DescribeKey(const EVP_PKEY* key);

// Accepts "/CN=x/O=y" (openssl style) or "CN=x,O=y".
absl::StatusOr<X509NamePtr> ParseSubject(std::string_view subject);

// A positive, non-zero 128-bit random serial number set on `cert`.
absl::Status SetRandomSerial(X509* cert);

// subjectKeyIdentifier = SHA-1 of the subjectPublicKey bits (RFC 5280 4.2.1.2 method 1).
absl::StatusOr<X509ExtensionPtr> MakeSubjectKeyIdentifier(EVP_PKEY* key);
// authorityKeyIdentifier with the issuer's key identifier (its SKI, or computed from its key).
absl::StatusOr<X509ExtensionPtr> MakeAuthorityKeyIdentifier(X509* issuer);
// A v3 extension from its OpenSSL config text, e.g. (NID_basic_constraints, "critical,CA:FALSE").
absl::StatusOr<X509ExtensionPtr> MakeExtension(int nid, const char* value);

}  // namespace egressguard::ca
