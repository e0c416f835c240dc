#pragma once
// Test-only PKI: throwaway roots and "upstream" server certificates built with OpenSSL
// APIs, temp directories, and a verifier wrapping X509_verify_cert.

#include <ctime>
#include <string>
#include <vector>

#include "ca/openssl_types.h"

namespace egressguard::ca::testing {

struct KeyAndCert {
  EvpPkeyPtr key;
  X509Ptr cert;
};

// A self-signed CA. `pathlen` < 0 means no path length limit.
KeyAndCert MakeRoot(const std::string& cn, long not_before_offset_s, long not_after_offset_s, int pathlen = -1);

struct ServerCertSpec {
  std::string cn{};                   // empty: no CN in the subject
  std::vector<std::string> dns{};
  std::vector<std::string> ips{};     // textual, v4 or v6
  std::vector<std::string> emails{};  // SAN rfc822Name entries (must not be copied)
  long not_after_offset_s = 365L * 86400;
};
KeyAndCert MakeServerCert(const KeyAndCert& issuer, const ServerCertSpec& spec);

// Returns X509_V_OK or the verification error for `leaf` against `anchors`, with
// `untrusted` as intermediates, for TLS server use and (when non-empty) hostname `host`.
int Verify(X509* leaf, const std::vector<X509*>& anchors, STACK_OF(X509)* untrusted, const std::string& host);

// The DNS and IP SANs of `cert`, as "DNS:name" / "IP:addr" strings, in order.
std::vector<std::string> SanStrings(X509* cert);
std::time_t NotAfter(X509* cert);

std::string WritePem(const std::string& path, X509* cert);
void WriteKey(const std::string& path, EVP_PKEY* key, unsigned mode);

class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

}  // namespace egressguard::ca::testing
