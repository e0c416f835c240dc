#pragma once
// The cluster CA: create, load, rotate and export it.
//
// Directory layout (one directory per CA, e.g. /var/lib/egressguard/ca):
//   DIR/ca.crt              current CA certificate (PEM), followed by its issuer chain when the
//                           CA is an intermediate of an offline root (`ca init --issuer-cert`)
//   DIR/ca.key              current CA private key (PKCS#8 PEM), mode 0600, written atomically
//   DIR/previous/<UTC stamp>-<fingerprint prefix>.crt
//                           certificates (+ chain) of CAs replaced by `ca rotate`. They stay in the
//                           exported trust bundle until they expire, so leaves they signed keep
//                           verifying; their keys are deleted on rotation (nothing signs with them).
//
// A CA can also be loaded from explicit files (`proxy --ca-cert FILE --ca-key FILE`).

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "ca/openssl_types.h"

namespace egressguard::ca {

enum class KeyType { kEcdsaP256, kRsa3072 };

// "ecdsa-p256" | "rsa-3072".
absl::StatusOr<KeyType> ParseKeyType(std::string_view name);
std::string_view KeyTypeName(KeyType type);

inline constexpr char kDefaultCaSubject[] = "CN=egressguard cluster CA,O=egressguard";
inline constexpr int kDefaultCaDays = 3650;
inline constexpr int kMaxCaDays = 36500;

struct CaInitOptions {
  KeyType key_type = KeyType::kEcdsaP256;
  int days = kDefaultCaDays;
  std::string subject = kDefaultCaSubject;
  // Both set: the new CA is an intermediate signed by this (offline) issuer instead of self-signed.
  std::string issuer_cert_file;  // issuer certificate first, then its own chain, PEM
  std::string issuer_key_file{};
};

struct CaRotateOptions {
  int days = 0;  // 0: the lifetime of the CA being replaced
  // Required when the current CA is an intermediate: the root that signs its successor.
  std::string issuer_cert_file{};
  std::string issuer_key_file{};
};

// What `ca show` prints for one CA certificate (never anything about the key but its type).
struct CaCertSummary {
  std::string role;  // "current" or "previous"
  std::string subject;
  std::string issuer;
  std::string sha256_fingerprint;
  std::string not_before;
  std::string not_after;
  std::string key_type;
  bool self_signed = false;
  bool expired = false;
};

// The public half of a CA directory: enough for `ca show` and `ca export`, which never
// need to read the key.
struct CaCertificates {
  std::vector<X509Ptr> current;                // [CA cert, its issuers up to the root]
  std::vector<std::vector<X509Ptr>> previous;  // earlier generations, same shape, oldest first

  // Reads DIR/ca.crt and DIR/previous/*.crt.
  static absl::StatusOr<CaCertificates> Read(const std::string& dir);
  // The PEM trust anchors clients must trust: the root of the current CA and of every
  // unexpired previous CA, deduplicated. Never contains a key.
  std::string TrustBundlePem() const;
  // Current first, then previous generations newest first.
  std::vector<CaCertSummary> Summaries() const;
};

class CertificateAuthority {
 public:
  static constexpr char kCertFile[] = "ca.crt";
  static constexpr char kKeyFile[] = "ca.key";
  static constexpr char kPreviousDir[] = "previous";

  // Creates a new CA in `dir` (created 0700 if missing); refuses to overwrite an existing one.
  static absl::StatusOr<CertificateAuthority> Create(const std::string& dir, const CaInitOptions& options);
  // Loads DIR/ca.crt + DIR/ca.key (+ previous/). Refuses a key readable by group/others, a
  // certificate that does not match the key, a certificate that is not a CA, and an expired CA.
  static absl::StatusOr<CertificateAuthority> Load(const std::string& dir);
  // The same checks for explicit files; `cert_file` may carry the issuer chain after the CA.
  static absl::StatusOr<CertificateAuthority> LoadFromFiles(const std::string& cert_file,
                                                             const std::string& key_file);
  // Creates a successor (same subject and key type), moves the current certificate to
  // previous/, and returns the CA as reloaded from `dir`. Works on an expired CA too.
  static absl::StatusOr<CertificateAuthority> Rotate(const std::string& dir, const CaRotateOptions& options);

  CertificateAuthority(CertificateAuthority&&) = default;
  CertificateAuthority& operator=(CertificateAuthority&&) = default;

  X509* cert() const { return certs_.current.front().get(); }
  EVP_PKEY* key() const { return key_.get(); }
  // Certificates above cert() up to (and including) the root, when cert() is an intermediate.
  std::span<const X509Ptr> issuers() const { return std::span(certs_.current).subspan(1); }
  const CaCertificates& certificates() const { return certs_; }
  std::string TrustBundlePem() const { return certs_.TrustBundlePem(); }

 private:
  CertificateAuthority() = default;
  static absl::StatusOr<CertificateAuthority> LoadChecked(const std::string& cert_file,
                                                           const std::string& key_file, bool allow_expired);

  CaCertificates certs_;  // current is never empty
  EvpPkeyPtr key_;
};

// What `egressguard run` uses on first start: load DIR's CA when present, else create one
// with the defaults.
absl::StatusOr<CertificateAuthority> EnsureDevCa(const std::string& dir);

// A Kubernetes ConfigMap (YAML) carrying `bundle_pem` under the key "ca.crt".
// `name` must be a DNS-1123 subdomain, `k8s_namespace` (may be empty) a DNS-1123 label.
absl::StatusOr<std::string> TrustBundleConfigMap(const std::string& bundle_pem, const std::string& name,
                                                 const std::string& k8s_namespace);

}  // namespace egressguard::ca
