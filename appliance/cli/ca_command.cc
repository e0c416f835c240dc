// `egressguard ca ...`: create, inspect, rotate and export the cluster CA, and mint a leaf
// for debugging. The key never leaves DIR/ca.key: no subcommand prints it.
#include <openssl/x509v3.h>

#include <iostream>
#include <memory>
#include <string>

#include "appliance/cli/command.h"
#include "ca/certificate_authority.h"
#include "ca/key_file.h"
#include "ca/openssl_leaf_minter.h"
#include "ca/x509_util.h"

namespace egressguard::cli {

namespace {

constexpr char kDirHelp[] =
    "CA directory: ca.crt, ca.key (0600) and previous/ (certificates of rotated-out CAs)";

struct CaArgs {
  std::string dir;
  std::string key_type = "ecdsa-p256";
  int days = ca::kDefaultCaDays;
  int rotate_days = 0;
  std::string subject = ca::kDefaultCaSubject;
  std::string issuer_cert;
  std::string issuer_key;
  std::string format = "pem";
  std::string k8s_namespace;
  std::string k8s_name = "egressguard-ca";
  std::string host;
  std::string upstream_cert;
  std::string upstream_ca;
  int leaf_days = 30;
};

int Fail(const std::string& what, const absl::Status& st) {
  std::cerr << "egressguard ca " << what << ": " << st.message() << "\n";
  return kExitError;
}

void PrintSummaries(const std::vector<ca::CaCertSummary>& summaries) {
  for (const auto& s : summaries) {
    std::cout << s.role << (s.expired ? " (EXPIRED)" : "") << ":\n"
              << "  subject:     " << s.subject << "\n"
              << "  issuer:      " << s.issuer << (s.self_signed ? " (self-signed)" : "") << "\n"
              << "  key:         " << s.key_type << "\n"
              << "  sha256:      " << s.sha256_fingerprint << "\n"
              << "  not before:  " << s.not_before << "\n"
              << "  not after:   " << s.not_after << "\n";
  }
}

void AddIssuerOptions(CLI::App* cmd, CaArgs& args, const char* purpose) {
  auto* cert = cmd->add_option("--issuer-cert", args.issuer_cert,
                               std::string("PEM certificate of the offline root (then its chain) that ") + purpose)
                   ->check(CLI::ExistingFile);
  auto* key = cmd->add_option("--issuer-key", args.issuer_key, "PEM private key of that root (must be mode 0600)")
                  ->check(CLI::ExistingFile);
  cert->needs(key);
  key->needs(cert);
}

int RunInit(const CaArgs& args) {
  auto type = ca::ParseKeyType(args.key_type);
  if (!type.ok()) return Fail("init", type.status());
  ca::CaInitOptions opts;
  opts.key_type = *type;
  opts.days = args.days;
  opts.subject = args.subject;
  opts.issuer_cert_file = args.issuer_cert;
  opts.issuer_key_file = args.issuer_key;
  auto authority = ca::CertificateAuthority::Create(args.dir, opts);
  if (!authority.ok()) return Fail("init", authority.status());
  std::cout << "created CA in " << args.dir << " (key: " << args.dir << "/" << ca::CertificateAuthority::kKeyFile
            << ", mode 0600)\n";
  PrintSummaries(authority->certificates().Summaries());
  std::cout << "next: egressguard ca export --dir " << args.dir << " > ca-bundle.pem, and make pods trust it\n";
  return kExitOk;
}

int RunShow(const CaArgs& args) {
  auto certs = ca::CaCertificates::Read(args.dir);
  if (!certs.ok()) return Fail("show", certs.status());
  PrintSummaries(certs->Summaries());
  // Show says what load would refuse, without reading the key.
  auto st = ca::CheckPrivateKeyPermissions(args.dir + "/" + ca::CertificateAuthority::kKeyFile);
  std::cout << "key file:      " << (st.ok() ? "ok (owner-only)" : std::string(st.message())) << "\n";
  return st.ok() ? kExitOk : kExitFindings;
}

int RunExport(const CaArgs& args) {
  auto certs = ca::CaCertificates::Read(args.dir);
  if (!certs.ok()) return Fail("export", certs.status());
  std::string bundle = certs->TrustBundlePem();
  if (bundle.empty()) return Fail("export", absl::FailedPreconditionError("no unexpired CA to export"));
  if (args.format == "pem") {
    std::cout << bundle;
    return kExitOk;
  }
  auto yaml = ca::TrustBundleConfigMap(bundle, args.k8s_name, args.k8s_namespace);
  if (!yaml.ok()) return Fail("export", yaml.status());
  std::cout << *yaml;
  return kExitOk;
}

int RunRotate(const CaArgs& args) {
  ca::CaRotateOptions opts;
  opts.days = args.rotate_days;
  opts.issuer_cert_file = args.issuer_cert;
  opts.issuer_key_file = args.issuer_key;
  auto authority = ca::CertificateAuthority::Rotate(args.dir, opts);
  if (!authority.ok()) return Fail("rotate", authority.status());
  std::cout << "rotated CA in " << args.dir << "; the previous CA stays in the trust bundle until it expires\n";
  PrintSummaries(authority->certificates().Summaries());
  std::cout << "next: re-export the bundle (egressguard ca export) and restart or reload the proxy\n";
  return kExitOk;
}

// Checks the upstream chain against `ca_file` (when given) and the host name, as the proxy
// does before it mints; the leaf is only printed when both hold.
absl::Status VerifyUpstream(const std::vector<ca::X509Ptr>& upstream, const std::string& host,
                            const std::string& ca_file) {
  X509* leaf = upstream.front().get();
  int host_ok = X509_check_ip_asc(leaf, host.c_str(), 0);
  if (host_ok == -2) host_ok = X509_check_host(leaf, host.c_str(), host.size(), 0, nullptr);
  if (host_ok != 1) {
    return absl::InvalidArgumentError("the upstream certificate is not valid for host " + host);
  }
  if (ca_file.empty()) return absl::OkStatus();
  auto anchors = ca::ReadCertificatesPem(ca_file);
  if (!anchors.ok()) return anchors.status();
  ca::X509StorePtr store(X509_STORE_new());
  for (const auto& a : *anchors) X509_STORE_add_cert(store.get(), a.get());
  STACK_OF(X509)* untrusted = sk_X509_new_null();
  for (std::size_t i = 1; i < upstream.size(); ++i) sk_X509_push(untrusted, upstream[i].get());
  ca::X509StoreCtxPtr ctx(X509_STORE_CTX_new());
  X509_STORE_CTX_init(ctx.get(), store.get(), leaf, untrusted);
  X509_STORE_CTX_set_purpose(ctx.get(), X509_PURPOSE_SSL_SERVER);
  X509_VERIFY_PARAM_set1_host(X509_STORE_CTX_get0_param(ctx.get()), host.c_str(), 0);
  int rc = X509_verify_cert(ctx.get());
  int err = X509_STORE_CTX_get_error(ctx.get());
  sk_X509_free(untrusted);
  ca::DrainOpenSslErrors();
  if (rc != 1) {
    return absl::InvalidArgumentError(std::string("the upstream certificate does not verify: ") +
                                      X509_verify_cert_error_string(err));
  }
  return absl::OkStatus();
}

int RunMint(const CaArgs& args) {
  auto authority = ca::CertificateAuthority::Load(args.dir);
  if (!authority.ok()) return Fail("mint", authority.status());
  auto upstream = ca::ReadCertificatesPem(args.upstream_cert);
  if (!upstream.ok()) return Fail("mint", upstream.status());
  if (auto st = VerifyUpstream(*upstream, args.host, args.upstream_ca); !st.ok()) return Fail("mint", st);
  if (args.upstream_ca.empty()) {
    std::cerr << "egressguard ca mint: note: upstream chain not verified (no --upstream-ca); the proxy always "
                 "verifies it\n";
  }
  ca::LeafMinterOptions opts;
  opts.leaf_days = args.leaf_days;
  opts.key_pool_size = 1;
  opts.cache_capacity = 1;
  auto minter = ca::OpenSslLeafMinter::Create(std::make_shared<ca::CertificateAuthority>(std::move(*authority)),
                                              opts);
  if (!minter.ok()) return Fail("mint", minter.status());
  auto leaf = (*minter)->MintFor(upstream->front().get(), args.host);
  if (!leaf.ok()) return Fail("mint", leaf.status());
  std::cout << ca::CertificateToPem((*leaf)->cert);
  return kExitOk;
}

}  // namespace

void RegisterCa(CLI::App& app, Context& ctx) {
  auto args = std::make_shared<CaArgs>();
  auto* ca_cmd = app.add_subcommand("ca", "Create, show, rotate and export the cluster CA; mint leaves");
  ca_cmd->require_subcommand(1);
  ca_cmd->footer(
      "The CA key stays in DIR/ca.key (mode 0600, refused if group/other can read it) and is never\n"
      "printed or exported. Pods trust the bundle from 'ca export'.");

  auto* init = ca_cmd->add_subcommand("init", "Create a new CA (self-signed, or an intermediate of an offline root)");
  init->add_option("--dir", args->dir, kDirHelp)->required();
  init->add_option("--key", args->key_type, "CA key type")
      ->check(CLI::IsMember({"ecdsa-p256", "rsa-3072"}))
      ->capture_default_str();
  init->add_option("--days", args->days, "CA validity in days")
      ->check(CLI::Range(1, ca::kMaxCaDays))
      ->capture_default_str();
  init->add_option("--subject", args->subject, "CA subject, 'CN=...,O=...' or '/CN=.../O=...'")
      ->capture_default_str();
  AddIssuerOptions(init, *args, "signs this CA as an intermediate");
  init->callback([&ctx, args] { ctx.exit_code = RunInit(*args); });

  auto* show = ca_cmd->add_subcommand(
      "show", "Print subject, SHA-256 fingerprint, validity and key type of the current and previous CAs "
              "(exit 1 when the key file's permissions would be refused)");
  show->add_option("--dir", args->dir, kDirHelp)->required();
  show->callback([&ctx, args] { ctx.exit_code = RunShow(*args); });

  auto* exp = ca_cmd->add_subcommand(
      "export", "Print the trust bundle pods must trust: current + unexpired previous CAs (never a key)");
  exp->add_option("--dir", args->dir, kDirHelp)->required();
  exp->add_option("--format", args->format, "pem, or a Kubernetes ConfigMap holding it under data.ca.crt")
      ->check(CLI::IsMember({"pem", "k8s-configmap"}))
      ->capture_default_str();
  exp->add_option("--namespace", args->k8s_namespace, "ConfigMap namespace (k8s-configmap)");
  exp->add_option("--name", args->k8s_name, "ConfigMap name (k8s-configmap)")->capture_default_str();
  exp->callback([&ctx, args] { ctx.exit_code = RunExport(*args); });

  auto* rotate = ca_cmd->add_subcommand(
      "rotate", "Replace the CA with a new one (same subject and key type); the old certificate stays in "
                "the bundle so leaves it signed keep verifying, its key is deleted");
  rotate->add_option("--dir", args->dir, kDirHelp)->required();
  rotate->add_option("--days", args->rotate_days, "validity of the new CA in days (default: same as the old)")
      ->check(CLI::Range(1, ca::kMaxCaDays));
  AddIssuerOptions(rotate, *args, "signs the new CA (required when the current CA is an intermediate)");
  rotate->callback([&ctx, args] { ctx.exit_code = RunRotate(*args); });

  auto* mint = ca_cmd->add_subcommand(
      "mint", "Debugging: mint the leaf the proxy would serve for HOST, from the upstream's certificate; "
              "prints the leaf certificate (PEM)");
  mint->add_option("--dir", args->dir, kDirHelp)->required();
  mint->add_option("--host", args->host, "host name (SNI) the client asked for; must match the upstream cert")
      ->required();
  mint->add_option("--upstream-cert", args->upstream_cert, "the upstream's certificate, PEM (then its chain)")
      ->required()
      ->check(CLI::ExistingFile);
  mint->add_option("--upstream-ca", args->upstream_ca, "verify the upstream chain against these roots (PEM)")
      ->check(CLI::ExistingFile);
  mint->add_option("--leaf-days", args->leaf_days, "maximum leaf validity in days")
      ->check(CLI::Range(1, 397))
      ->capture_default_str();
  mint->callback([&ctx, args] { ctx.exit_code = RunMint(*args); });
}

}  // namespace egressguard::cli
