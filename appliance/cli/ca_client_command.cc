// `egressguard ca issue-client|issue-server`: certificates for the store's gRPC API,
// from an API CA kept apart from the cluster CA that signs intercepted leaves.
// A client certificate carries its role as the SAN URI spiffe://egressguard/role/<role>.
#include <fmt/format.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>

#include "appliance/cli/command.h"
#include "appliance/cli/store_client.h"
#include "appliance/store/api_tls.h"
#include "ca/key_file.h"

namespace egressguard::cli {

namespace {

using KeyPtr = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;
using CertPtr = std::unique_ptr<X509, decltype(&X509_free)>;

constexpr const char* kCaCert = "api-ca.crt";
constexpr const char* kCaKey = "api-ca.key";

KeyPtr NewKey() { return KeyPtr(EVP_EC_gen("P-256"), EVP_PKEY_free); }

absl::Status WriteFile(const std::string& path, mode_t mode, const std::function<int(FILE*)>& write) {
  std::string tmp = path + ".tmp";
  ::unlink(tmp.c_str());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL, mode);
  if (fd < 0) return absl::UnavailableError(fmt::format("cannot create {}", tmp));
  FILE* f = ::fdopen(fd, "w");
  int ok = write(f);
  bool flushed = std::fflush(f) == 0 && ::fsync(fd) == 0;
  std::fclose(f);
  if (ok != 1 || !flushed || std::rename(tmp.c_str(), path.c_str()) != 0) {
    ::unlink(tmp.c_str());
    return absl::UnavailableError(fmt::format("cannot write {}", path));
  }
  return absl::OkStatus();
}

absl::Status WriteKey(const std::string& path, EVP_PKEY* key) {
  return WriteFile(path, 0600, [key](FILE* f) {
    return PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr);
  });
}

absl::Status WriteCert(const std::string& path, X509* cert) {
  return WriteFile(path, 0644, [cert](FILE* f) { return PEM_write_X509(f, cert); });
}

bool AddExt(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX v3;
  X509V3_set_ctx_nodb(&v3);
  X509V3_set_ctx(&v3, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &v3, nid, value.c_str());
  if (!ext) return false;
  bool ok = X509_add_ext(cert, ext, -1) == 1;
  X509_EXTENSION_free(ext);
  return ok;
}

// Signs a certificate for `key` with `ca_key`; `issuer` null means self-signed.
absl::StatusOr<CertPtr> Sign(const std::string& cn, EVP_PKEY* key, X509* issuer, EVP_PKEY* ca_key, int days,
                             const std::vector<std::pair<int, std::string>>& exts) {
  CertPtr cert(X509_new(), X509_free);
  X509_set_version(cert.get(), 2);
  unsigned char serial[16];
  RAND_bytes(serial, sizeof serial);
  serial[0] &= 0x7f;
  BIGNUM* bn = BN_bin2bn(serial, sizeof serial, nullptr);
  BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert.get()));
  BN_free(bn);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -300);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), int64_t{days} * 86400);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>("egressguard"), -1, -1, 0);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509_set_issuer_name(cert.get(), issuer ? X509_get_subject_name(issuer) : name);
  X509_set_pubkey(cert.get(), key);
  X509* iss = issuer ? issuer : cert.get();
  for (const auto& [nid, value] : exts) {
    if (!AddExt(cert.get(), iss, nid, value)) {
      return absl::InvalidArgumentError(fmt::format("bad certificate extension value '{}'", value));
    }
  }
  if (X509_sign(cert.get(), ca_key, EVP_sha256()) <= 0) return absl::InternalError("signing failed");
  return cert;
}

struct ApiCa {
  CertPtr cert{nullptr, X509_free};
  KeyPtr key{nullptr, EVP_PKEY_free};
};

// Loads DIR/api-ca.{crt,key}, creating them when DIR holds neither.
absl::StatusOr<ApiCa> LoadOrCreateCa(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(dir, ec);
  ::chmod(dir.c_str(), 0700);
  std::string cert_path = (fs::path(dir) / kCaCert).string(), key_path = (fs::path(dir) / kCaKey).string();
  ApiCa ca;
  if (!fs::exists(cert_path) && !fs::exists(key_path)) {
    ca.key = NewKey();
    auto cert = Sign("egressguard API CA", ca.key.get(), nullptr, ca.key.get(), 3650,
                     {{NID_basic_constraints, "critical,CA:TRUE,pathlen:0"},
                      {NID_key_usage, "critical,keyCertSign,cRLSign"},
                      {NID_subject_key_identifier, "hash"}});
    if (!cert.ok()) return cert.status();
    ca.cert = std::move(*cert);
    if (auto s = WriteKey(key_path, ca.key.get()); !s.ok()) return s;
    if (auto s = WriteCert(cert_path, ca.cert.get()); !s.ok()) return s;
    std::cerr << "egressguard ca: created API CA " << cert_path << "\n";
    return ca;
  }
  if (auto s = ca::CheckPrivateKeyPermissions(key_path); !s.ok()) return s;
  FILE* f = std::fopen(key_path.c_str(), "r");
  if (!f) return absl::NotFoundError(fmt::format("cannot read {}", key_path));
  ca.key.reset(PEM_read_PrivateKey(f, nullptr, nullptr, nullptr));
  std::fclose(f);
  f = std::fopen(cert_path.c_str(), "r");
  if (!f) return absl::NotFoundError(fmt::format("cannot read {}", cert_path));
  ca.cert.reset(PEM_read_X509(f, nullptr, nullptr, nullptr));
  std::fclose(f);
  if (!ca.key || !ca.cert) return absl::InvalidArgumentError(fmt::format("{} does not hold a valid API CA", dir));
  if (X509_check_private_key(ca.cert.get(), ca.key.get()) != 1) {
    return absl::InvalidArgumentError(fmt::format("{}: the API CA key does not match its certificate", dir));
  }
  return ca;
}

struct IssueFlags {
  std::string dir, role, name, out;
  std::vector<std::string> dns, ips;
  int days = 365;
};

int Issue(const IssueFlags& f, bool server) {
  const char* what = server ? "ca issue-server" : "ca issue-client";
  std::vector<std::pair<int, std::string>> exts = {{NID_basic_constraints, "critical,CA:FALSE"},
                                                   {NID_key_usage, "critical,digitalSignature"},
                                                   {NID_authority_key_identifier, "keyid"}};
  std::string san;
  if (server) {
    for (const auto& d : f.dns) san += (san.empty() ? "" : ",") + std::string("DNS:") + d;
    for (const auto& i : f.ips) san += (san.empty() ? "" : ",") + std::string("IP:") + i;
    if (san.empty()) san = "DNS:localhost,IP:127.0.0.1";
    exts.emplace_back(NID_ext_key_usage, "serverAuth");
  } else {
    auto role = store::ParseRole(f.role);
    if (!role.ok()) {
      std::cerr << "egressguard " << what << ": " << role.status().message() << "\n";
      return kExitError;
    }
    san = "URI:" + store::RoleUri(*role);
    exts.emplace_back(NID_ext_key_usage, "clientAuth");
  }
  exts.emplace_back(NID_subject_alt_name, san);
  auto ca = LoadOrCreateCa(f.dir);
  if (!ca.ok()) {
    std::cerr << "egressguard " << what << ": " << ca.status().message() << "\n";
    return kExitError;
  }
  KeyPtr key = NewKey();
  auto cert = Sign(f.name, key.get(), ca->cert.get(), ca->key.get(), f.days, exts);
  if (!cert.ok()) {
    std::cerr << "egressguard " << what << ": " << cert.status().message() << "\n";
    return kExitError;
  }
  if (auto s = WriteKey(f.out + ".key", key.get()); !s.ok()) {
    std::cerr << "egressguard " << what << ": " << s.message() << "\n";
    return kExitError;
  }
  if (auto s = WriteCert(f.out + ".crt", cert->get()); !s.ok()) {
    std::cerr << "egressguard " << what << ": " << s.message() << "\n";
    return kExitError;
  }
  std::cout << fmt::format("{}.crt {}.key ({}), CA {}/{}\n", f.out, f.out, san, f.dir, kCaCert);
  return kExitOk;
}

}  // namespace

void RegisterCaClient(CLI::App& app, Context& ctx) {
  auto* ca_cmd = FindOrAddSubcommand(app, "ca", "Create, show, rotate and export the cluster CA; mint leaves");

  auto client = std::make_shared<IssueFlags>();
  auto* c = ca_cmd->add_subcommand(
      "issue-client", "Issue a store API client certificate for a role (SAN URI spiffe://egressguard/role/<role>)");
  c->add_option("--dir", client->dir, "API CA directory (api-ca.crt/.key; created when missing)")->required();
  c->add_option("--role", client->role, "appliance, officer or auditor")
      ->required()
      ->check(CLI::IsMember({"appliance", "officer", "auditor"}));
  c->add_option("--name", client->name, "Subject CN: who holds it (recorded in the audit trail)")->required();
  c->add_option("--out", client->out, "Writes OUT.crt and OUT.key (0600)")->required();
  c->add_option("--days", client->days, "Validity")->capture_default_str()->check(CLI::Range(1, 3650));
  c->callback([&ctx, client] { ctx.exit_code = Issue(*client, false); });

  auto server = std::make_shared<IssueFlags>();
  auto* s = ca_cmd->add_subcommand("issue-server", "Issue the store's server certificate from the API CA");
  s->add_option("--dir", server->dir, "API CA directory (created when missing)")->required();
  s->add_option("--name", server->name, "Subject CN")->required();
  s->add_option("--dns", server->dns, "DNS name (repeatable; default localhost + 127.0.0.1)");
  s->add_option("--ip", server->ips, "IP address (repeatable)");
  s->add_option("--out", server->out, "Writes OUT.crt and OUT.key (0600)")->required();
  s->add_option("--days", server->days, "Validity")->capture_default_str()->check(CLI::Range(1, 3650));
  s->callback([&ctx, server] { ctx.exit_code = Issue(*server, true); });
}

}  // namespace egressguard::cli
