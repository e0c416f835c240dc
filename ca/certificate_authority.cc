#include "ca/certificate_authority.h"

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/rsa.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <optional>
#include <set>
#include <span>

#include <fmt/format.h>

#include "ca/atomic_file.h"
#include "ca/key_file.h"
#include "ca/x509_util.h"

namespace egressguard::ca {

namespace {

namespace fs = std::filesystem;

// Clients whose clocks run a little behind must still accept a brand-new CA.
constexpr long kBackdateSeconds = 3600;
constexpr long kSecondsPerDay = 86400;

std::string Join(const std::string& dir, std::string_view name) { return (fs::path(dir) / name).string(); }

bool Exists(const std::string& path) {
  std::error_code ec;
  return fs::exists(fs::symlink_status(path, ec));
}

bool IsExpired(X509* cert) { return X509_cmp_current_time(X509_get0_notAfter(cert)) <= 0; }

bool IsSelfSigned(X509* cert) { return X509_check_issued(cert, cert) == X509_V_OK; }

absl::StatusOr<EvpPkeyPtr> GenerateKey(KeyType type) {
  EVP_PKEY* key = type == KeyType::kRsa3072 ? EVP_RSA_gen(3072) : EVP_EC_gen("P-256");
  if (key == nullptr) return OpenSslError(absl::StatusCode::kInternal, "generating the CA key");
  return EvpPkeyPtr(key);
}

// The issuer of an intermediate: its certificate (+ chain) and key, checked for use as a CA.
struct Issuer {
  std::vector<X509Ptr> chain;  // [issuer cert, its issuers...]
  EvpPkeyPtr key;
};

absl::StatusOr<Issuer> LoadIssuer(const std::string& cert_file, const std::string& key_file) {
  if (cert_file.empty() != key_file.empty()) {
    return absl::InvalidArgumentError("--issuer-cert and --issuer-key go together");
  }
  Issuer issuer;
  auto certs = ReadCertificatesPem(cert_file);
  if (!certs.ok()) return certs.status();
  issuer.chain = std::move(*certs);
  auto key = ReadPrivateKeyPem(key_file);
  if (!key.ok()) return key.status();
  issuer.key = std::move(*key);
  X509* cert = issuer.chain.front().get();
  if (X509_check_private_key(cert, issuer.key.get()) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(
        fmt::format("{} does not match {}: the issuer certificate and key are not a pair", cert_file, key_file));
  }
  if (X509_check_ca(cert) < 1) {
    return absl::InvalidArgumentError(fmt::format("{}: the issuer is not a CA certificate", cert_file));
  }
  if (X509_get_pathlen(cert) == 0) {
    return absl::InvalidArgumentError(
        fmt::format("{}: the issuer has pathlen:0 and cannot sign an intermediate CA", cert_file));
  }
  if (IsExpired(cert)) {
    return absl::FailedPreconditionError(
        fmt::format("{}: the issuer expired on {}", cert_file, TimeToString(X509_get0_notAfter(cert))));
  }
  return issuer;
}

// Builds and signs a CA certificate for `key`; self-signed unless `issuer` is given.
absl::StatusOr<X509Ptr> BuildCaCert(EVP_PKEY* key, const X509_NAME* subject, int days, const Issuer* issuer) {
  X509Ptr cert(X509_new());
  if (!cert || X509_set_version(cert.get(), 2) != 1) {
    return OpenSslError(absl::StatusCode::kInternal, "X509_new");
  }
  if (auto st = SetRandomSerial(cert.get()); !st.ok()) return st;
  X509* issuer_cert = issuer != nullptr ? issuer->chain.front().get() : cert.get();
  std::time_t now = std::time(nullptr);
  std::time_t not_after = now + static_cast<std::time_t>(days) * kSecondsPerDay;
  if (issuer != nullptr) {
    // A CA must not outlive the certificate that vouches for it.
    auto issuer_end = TimeToUnix(X509_get0_notAfter(issuer_cert));
    if (!issuer_end.ok()) return issuer_end.status();
    not_after = std::min(not_after, *issuer_end);
  }
  if (X509_set_subject_name(cert.get(), subject) != 1 ||
      X509_set_issuer_name(cert.get(), issuer != nullptr ? X509_get_subject_name(issuer_cert) : subject) != 1 ||
      X509_time_adj_ex(X509_getm_notBefore(cert.get()), 0, -kBackdateSeconds, &now) == nullptr ||
      ASN1_TIME_set(X509_getm_notAfter(cert.get()), not_after) == nullptr ||
      X509_set_pubkey(cert.get(), key) != 1) {
    return OpenSslError(absl::StatusCode::kInternal, "filling the CA certificate");
  }
  auto basic = MakeExtension(NID_basic_constraints, "critical,CA:TRUE,pathlen:0");
  auto usage = MakeExtension(NID_key_usage, "critical,keyCertSign,cRLSign");
  auto ski = MakeSubjectKeyIdentifier(key);
  if (!basic.ok()) return basic.status();
  if (!usage.ok()) return usage.status();
  if (!ski.ok()) return ski.status();
  if (X509_add_ext(cert.get(), basic->get(), -1) != 1 || X509_add_ext(cert.get(), usage->get(), -1) != 1 ||
      X509_add_ext(cert.get(), ski->get(), -1) != 1) {
    return OpenSslError(absl::StatusCode::kInternal, "adding CA extensions");
  }
  // AKI identifies the signing key; a self-signed CA's own SKI is only known once it is added.
  auto aki = MakeAuthorityKeyIdentifier(issuer_cert);
  if (!aki.ok()) return aki.status();
  if (X509_add_ext(cert.get(), aki->get(), -1) != 1) {
    return OpenSslError(absl::StatusCode::kInternal, "adding authorityKeyIdentifier");
  }
  EVP_PKEY* signer = issuer != nullptr ? issuer->key.get() : key;
  if (X509_sign(cert.get(), signer, EVP_sha256()) <= 0) {
    return OpenSslError(absl::StatusCode::kInternal, "signing the CA certificate");
  }
  return cert;
}

std::string ChainPem(X509* cert, std::span<const X509Ptr> issuers) {
  std::string pem = CertificateToPem(cert);
  for (const auto& c : issuers) pem += CertificateToPem(c.get());
  return pem;
}

// Writes key first, then certificate: a crash in between leaves a pair that Load refuses
// as mismatched (loudly) rather than a CA that silently signs with the wrong key.
absl::Status WriteCa(const std::string& dir, EVP_PKEY* key, X509* cert, const std::vector<X509Ptr>& issuers) {
  auto key_pem = PrivateKeyToPem(key);
  if (!key_pem.ok()) return key_pem.status();
  absl::Status st = WriteFileAtomically(Join(dir, CertificateAuthority::kKeyFile), *key_pem, 0600);
  OPENSSL_cleanse(key_pem->data(), key_pem->size());
  if (!st.ok()) return st;
  return WriteFileAtomically(Join(dir, CertificateAuthority::kCertFile), ChainPem(cert, issuers), 0644);
}

absl::Status CheckIsCa(X509* cert, const std::string& origin) {
  if (X509_check_ca(cert) < 1) {
    return absl::InvalidArgumentError(fmt::format(
        "{}: not a CA certificate (needs basicConstraints CA:TRUE and keyUsage keyCertSign)", origin));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::vector<X509Ptr>>> LoadPrevious(const std::string& dir) {
  std::vector<std::vector<X509Ptr>> out;
  std::string prev = Join(dir, CertificateAuthority::kPreviousDir);
  std::error_code ec;
  if (!fs::is_directory(prev, ec)) return out;
  std::vector<std::string> files;
  for (const auto& entry : fs::directory_iterator(prev, ec)) {
    if (entry.is_regular_file() && entry.path().extension() == ".crt") files.push_back(entry.path().string());
  }
  if (ec) return absl::InternalError(fmt::format("{}: {}", prev, ec.message()));
  // File names start with a UTC stamp, so name order is rotation order.
  std::sort(files.begin(), files.end());
  for (const auto& f : files) {
    auto certs = ReadCertificatesPem(f);
    if (!certs.ok()) return certs.status();
    out.push_back(std::move(*certs));
  }
  return out;
}

// The certificate(s) a client must hold as trust anchors for a CA generation.
X509* TrustAnchorOf(const std::vector<X509Ptr>& generation) {
  // The topmost certificate: the CA itself when self-signed, else its root.
  return generation.back().get();
}

absl::Status CheckDays(int days) {
  if (days < 1 || days > kMaxCaDays) {
    return absl::InvalidArgumentError(fmt::format("--days must be between 1 and {}, got {}", kMaxCaDays, days));
  }
  return absl::OkStatus();
}

bool IsDnsLabel(std::string_view s) {
  if (s.empty() || s.size() > 63) return false;
  for (char c : s) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
  }
  return s.front() != '-' && s.back() != '-';
}

bool IsDnsSubdomain(std::string_view s) {
  if (s.empty() || s.size() > 253) return false;
  std::size_t start = 0;
  while (true) {
    std::size_t dot = s.find('.', start);
    if (!IsDnsLabel(s.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start))) {
      return false;
    }
    if (dot == std::string_view::npos) return true;
    start = dot + 1;
  }
}

}  // namespace

absl::StatusOr<KeyType> ParseKeyType(std::string_view name) {
  if (name == "ecdsa-p256") return KeyType::kEcdsaP256;
  if (name == "rsa-3072") return KeyType::kRsa3072;
  return absl::InvalidArgumentError(fmt::format("unknown key type '{}': use ecdsa-p256 or rsa-3072", name));
}

std::string_view KeyTypeName(KeyType type) { return type == KeyType::kRsa3072 ? "rsa-3072" : "ecdsa-p256"; }

absl::StatusOr<CertificateAuthority> CertificateAuthority::Create(const std::string& dir,
                                                                  const CaInitOptions& options) {
  if (auto st = CheckDays(options.days); !st.ok()) return st;
  auto subject = ParseSubject(options.subject);
  if (!subject.ok()) return subject.status();
  std::string cert_file = Join(dir, kCertFile);
  std::string key_file = Join(dir, kKeyFile);
  if (Exists(cert_file) || Exists(key_file)) {
    return absl::AlreadyExistsError(
        fmt::format("{} already holds a CA ({} or {} exists); use 'egressguard ca rotate' to replace it",
                    dir, kCertFile, kKeyFile));
  }
  std::optional<Issuer> issuer;
  if (!options.issuer_cert_file.empty() || !options.issuer_key_file.empty()) {
    auto loaded = LoadIssuer(options.issuer_cert_file, options.issuer_key_file);
    if (!loaded.ok()) return loaded.status();
    issuer = std::move(*loaded);
  }
  if (auto st = EnsurePrivateDirectory(dir); !st.ok()) return st;
  auto key = GenerateKey(options.key_type);
  if (!key.ok()) return key.status();
  auto cert = BuildCaCert(key->get(), subject->get(), options.days, issuer ? &*issuer : nullptr);
  if (!cert.ok()) return cert.status();
  std::vector<X509Ptr> chain;
  if (issuer) chain = std::move(issuer->chain);
  if (auto st = WriteCa(dir, key->get(), cert->get(), chain); !st.ok()) return st;
  return Load(dir);
}

absl::StatusOr<CertificateAuthority> CertificateAuthority::LoadChecked(const std::string& cert_file,
                                                                       const std::string& key_file,
                                                                       bool allow_expired) {
  auto certs = ReadCertificatesPem(cert_file);
  if (!certs.ok()) return certs.status();
  auto key = ReadPrivateKeyPem(key_file);
  if (!key.ok()) return key.status();
  CertificateAuthority ca;
  ca.certs_.current = std::move(*certs);
  ca.key_ = std::move(*key);
  if (X509_check_private_key(ca.cert(), ca.key()) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(fmt::format(
        "{} does not match {}: the CA certificate's public key is not the key's (wrong pair, or an "
        "interrupted write); restore the matching pair or create a new CA",
        cert_file, key_file));
  }
  if (auto st = CheckIsCa(ca.cert(), cert_file); !st.ok()) return st;
  if (!ca.issuers().empty() && X509_check_issued(ca.issuers().front().get(), ca.cert()) != X509_V_OK) {
    return absl::InvalidArgumentError(
        fmt::format("{}: the second certificate did not issue the first; the chain is out of order", cert_file));
  }
  if (!allow_expired && IsExpired(ca.cert())) {
    return absl::FailedPreconditionError(fmt::format(
        "{}: the CA certificate expired on {}; run 'egressguard ca rotate' to replace it", cert_file,
        TimeToString(X509_get0_notAfter(ca.cert()))));
  }
  return ca;
}

absl::StatusOr<CertificateAuthority> CertificateAuthority::Load(const std::string& dir) {
  auto ca = LoadChecked(Join(dir, kCertFile), Join(dir, kKeyFile), /*allow_expired=*/false);
  if (!ca.ok()) return ca.status();
  auto previous = LoadPrevious(dir);
  if (!previous.ok()) return previous.status();
  ca->certs_.previous = std::move(*previous);
  return ca;
}

absl::StatusOr<CertificateAuthority> CertificateAuthority::LoadFromFiles(const std::string& cert_file,
                                                                         const std::string& key_file) {
  return LoadChecked(cert_file, key_file, /*allow_expired=*/false);
}

absl::StatusOr<CertificateAuthority> CertificateAuthority::Rotate(const std::string& dir,
                                                                  const CaRotateOptions& options) {
  auto current = LoadChecked(Join(dir, kCertFile), Join(dir, kKeyFile), /*allow_expired=*/true);
  if (!current.ok()) return current.status();
  std::optional<Issuer> issuer;
  if (!options.issuer_cert_file.empty() || !options.issuer_key_file.empty()) {
    auto loaded = LoadIssuer(options.issuer_cert_file, options.issuer_key_file);
    if (!loaded.ok()) return loaded.status();
    issuer = std::move(*loaded);
  } else if (!current->issuers().empty()) {
    return absl::InvalidArgumentError(
        "the current CA is an intermediate: pass --issuer-cert and --issuer-key of the root that signs "
        "its successor");
  }
  int days = options.days;
  if (days == 0) {
    auto begin = TimeToUnix(X509_get0_notBefore(current->cert()));
    auto end = TimeToUnix(X509_get0_notAfter(current->cert()));
    if (!begin.ok() || !end.ok()) return absl::InvalidArgumentError("current CA has unreadable validity times");
    days = static_cast<int>(std::lround(static_cast<double>(*end - *begin) / kSecondsPerDay));
    days = std::clamp(days, 1, kMaxCaDays);
  }
  if (auto st = CheckDays(days); !st.ok()) return st;
  KeyType type = DescribeKey(current->key()) == "rsa-3072" ? KeyType::kRsa3072 : KeyType::kEcdsaP256;
  auto key = GenerateKey(type);
  if (!key.ok()) return key.status();
  auto cert = BuildCaCert(key->get(), X509_get_subject_name(current->cert()), days, issuer ? &*issuer : nullptr);
  if (!cert.ok()) return cert.status();

  // Archive the outgoing certificate before anything replaces it.
  std::string prev_dir = Join(dir, kPreviousDir);
  if (auto st = EnsurePrivateDirectory(prev_dir); !st.ok()) return st;
  std::time_t now = std::time(nullptr);
  struct tm tm {};
  gmtime_r(&now, &tm);
  std::string fp = Sha256Fingerprint(current->cert());
  fp.erase(std::remove(fp.begin(), fp.end(), ':'), fp.end());
  std::string archive = Join(prev_dir, fmt::format("{:04}{:02}{:02}T{:02}{:02}{:02}Z-{}.crt", tm.tm_year + 1900,
                                                   tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                                                   tm.tm_sec, fp.substr(0, 16)));
  if (auto st = WriteFileAtomically(archive, ChainPem(current->cert(), current->issuers()), 0644); !st.ok()) {
    return st;
  }
  std::vector<X509Ptr> chain;
  if (issuer) chain = std::move(issuer->chain);
  if (auto st = WriteCa(dir, key->get(), cert->get(), chain); !st.ok()) return st;
  return Load(dir);
}

absl::StatusOr<CaCertificates> CaCertificates::Read(const std::string& dir) {
  CaCertificates out;
  auto current = ReadCertificatesPem(Join(dir, CertificateAuthority::kCertFile));
  if (!current.ok()) return current.status();
  out.current = std::move(*current);
  auto previous = LoadPrevious(dir);
  if (!previous.ok()) return previous.status();
  out.previous = std::move(*previous);
  return out;
}

std::string CaCertificates::TrustBundlePem() const {
  std::string pem;
  std::set<std::string> seen;
  auto add = [&](X509* anchor) {
    if (seen.insert(Sha256Fingerprint(anchor)).second) pem += CertificateToPem(anchor);
  };
  if (!current.empty()) add(TrustAnchorOf(current));
  for (const auto& generation : previous) {
    X509* anchor = TrustAnchorOf(generation);
    if (!IsExpired(generation.front().get()) && !IsExpired(anchor)) add(anchor);
  }
  return pem;
}

std::vector<CaCertSummary> CaCertificates::Summaries() const {
  auto summarize = [](X509* cert, std::string role) {
    CaCertSummary s;
    s.role = std::move(role);
    s.subject = NameToString(X509_get_subject_name(cert));
    s.issuer = NameToString(X509_get_issuer_name(cert));
    s.sha256_fingerprint = Sha256Fingerprint(cert);
    s.not_before = TimeToString(X509_get0_notBefore(cert));
    s.not_after = TimeToString(X509_get0_notAfter(cert));
    s.key_type = DescribeKey(X509_get0_pubkey(cert));
    s.self_signed = IsSelfSigned(cert);
    s.expired = IsExpired(cert);
    return s;
  };
  std::vector<CaCertSummary> out;
  if (!current.empty()) out.push_back(summarize(current.front().get(), "current"));
  // Newest previous first: its leaves are the ones still in the field.
  for (auto it = previous.rbegin(); it != previous.rend(); ++it) {
    out.push_back(summarize(it->front().get(), "previous"));
  }
  return out;
}

absl::StatusOr<CertificateAuthority> EnsureDevCa(const std::string& dir) {
  if (Exists(Join(dir, CertificateAuthority::kCertFile)) || Exists(Join(dir, CertificateAuthority::kKeyFile))) {
    return CertificateAuthority::Load(dir);
  }
  return CertificateAuthority::Create(dir, CaInitOptions{});
}

absl::StatusOr<std::string> TrustBundleConfigMap(const std::string& bundle_pem, const std::string& name,
                                                 const std::string& k8s_namespace) {
  if (!IsDnsSubdomain(name)) {
    return absl::InvalidArgumentError(fmt::format(
        "ConfigMap name '{}' is not a DNS-1123 subdomain (lowercase letters, digits, '-', '.')", name));
  }
  if (!k8s_namespace.empty() && !IsDnsLabel(k8s_namespace)) {
    return absl::InvalidArgumentError(fmt::format(
        "namespace '{}' is not a DNS-1123 label (lowercase letters, digits, '-', at most 63)", k8s_namespace));
  }
  std::string yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n";
  yaml += fmt::format("  name: {}\n", name);
  if (!k8s_namespace.empty()) yaml += fmt::format("  namespace: {}\n", k8s_namespace);
  yaml += "  labels:\n    app.kubernetes.io/name: egressguard\n    app.kubernetes.io/component: ca-bundle\n";
  yaml += "data:\n  ca.crt: |\n";
  std::size_t start = 0;
  while (start < bundle_pem.size()) {
    std::size_t nl = bundle_pem.find('\n', start);
    if (nl == std::string::npos) nl = bundle_pem.size();
    if (nl > start) yaml += fmt::format("    {}\n", std::string_view(bundle_pem).substr(start, nl - start));
    start = nl + 1;
  }
  return yaml;
}

}  // namespace egressguard::ca
