// Proves the cluster CA is created with the right extensions and a 0600 key, and that loading refuses exposed keys, mismatched pairs and expired CAs; rotation keeps the old CA in the bundle.
#include "ca/certificate_authority.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "ca/openssl_leaf_minter.h"
#include "ca/x509_util.h"
#include "tests/unit/ca/test_pki.h"

namespace egressguard::ca {
namespace {

using testing::KeyAndCert;
using testing::TempDir;

unsigned ModeOf(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return st.st_mode & 07777;
}

int CountPemCerts(const std::string& pem) {
  int n = 0;
  for (std::size_t pos = 0; (pos = pem.find("BEGIN CERTIFICATE", pos)) != std::string::npos; ++pos) ++n;
  return n;
}

std::vector<X509Ptr> BundleCerts(const std::string& pem) { return *ParseCertificatesPem(pem, "bundle"); }

std::vector<X509*> Raw(const std::vector<X509Ptr>& v) {
  std::vector<X509*> out;
  for (const auto& c : v) out.push_back(c.get());
  return out;
}

TEST(CertificateAuthorityTest, InitCreatesSelfSignedCaWithConstrainedExtensions) {
  TempDir tmp;
  std::string dir = tmp / "ca";
  CaInitOptions opts;
  opts.subject = "/CN=Test Cluster CA/O=Example Bank";
  opts.days = 90;
  auto ca = CertificateAuthority::Create(dir, opts);
  ASSERT_TRUE(ca.ok()) << ca.status();
  X509* cert = ca->cert();
  EXPECT_EQ(NameToString(X509_get_subject_name(cert)), "CN=Test Cluster CA,O=Example Bank");
  EXPECT_EQ(X509_check_issued(cert, cert), X509_V_OK);
  EXPECT_EQ(DescribeKey(ca->key()), "ecdsa-p256");
  // basicConstraints critical CA:TRUE pathlen:0
  int crit = 0;
  auto* bc = static_cast<BASIC_CONSTRAINTS*>(X509_get_ext_d2i(cert, NID_basic_constraints, &crit, nullptr));
  ASSERT_NE(bc, nullptr);
  EXPECT_TRUE(bc->ca);
  EXPECT_EQ(crit, 1);
  EXPECT_EQ(ASN1_INTEGER_get(bc->pathlen), 0);
  BASIC_CONSTRAINTS_free(bc);
  // keyUsage critical keyCertSign + cRLSign, nothing else
  EXPECT_EQ(X509_get_key_usage(cert), static_cast<uint32_t>(KU_KEY_CERT_SIGN | KU_CRL_SIGN));
  ASSERT_GE(X509_get_ext_by_NID(cert, NID_key_usage, -1), 0);
  EXPECT_EQ(X509_EXTENSION_get_critical(X509_get_ext(cert, X509_get_ext_by_NID(cert, NID_key_usage, -1))), 1);
  EXPECT_NE(X509_get0_subject_key_id(cert), nullptr);
  // --days honoured (90 days from now, within a minute)
  EXPECT_NEAR(static_cast<double>(testing::NotAfter(cert) - std::time(nullptr)), 90.0 * 86400, 60);
  // Files: key 0600, cert readable.
  EXPECT_EQ(ModeOf(dir + "/ca.key"), 0600u);
  EXPECT_EQ(ModeOf(dir), 0700u);
  EXPECT_EQ(ModeOf(dir + "/ca.crt"), 0644u);
  // Nothing else (no temp files) left behind.
  int files = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir)) ++files;
  EXPECT_EQ(files, 2);
}

TEST(CertificateAuthorityTest, KeyIsWritten0600EvenWithPermissiveOrStrictUmask) {
  for (mode_t mask : {mode_t{0}, mode_t{0777}}) {
    TempDir tmp;
    mode_t old = ::umask(mask);
    auto ca = CertificateAuthority::Create(tmp / "ca", CaInitOptions{});
    ::umask(old);
    ASSERT_TRUE(ca.ok()) << ca.status();
    EXPECT_EQ(ModeOf(tmp / "ca/ca.key"), 0600u) << "umask " << mask;
  }
}

TEST(CertificateAuthorityTest, Rsa3072Option) {
  TempDir tmp;
  CaInitOptions opts;
  opts.key_type = KeyType::kRsa3072;
  auto ca = CertificateAuthority::Create(tmp.path(), opts);
  ASSERT_TRUE(ca.ok()) << ca.status();
  EXPECT_EQ(DescribeKey(ca->key()), "rsa-3072");
  auto loaded = CertificateAuthority::Load(tmp.path());
  ASSERT_TRUE(loaded.ok()) << loaded.status();
}

TEST(CertificateAuthorityTest, InitRefusesToOverwriteAndBadOptions) {
  TempDir tmp;
  ASSERT_TRUE(CertificateAuthority::Create(tmp.path(), CaInitOptions{}).ok());
  auto again = CertificateAuthority::Create(tmp.path(), CaInitOptions{});
  EXPECT_EQ(again.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_NE(again.status().message().find("ca rotate"), std::string::npos);

  TempDir other;
  CaInitOptions bad_days;
  bad_days.days = 0;
  EXPECT_EQ(CertificateAuthority::Create(other.path(), bad_days).status().code(),
            absl::StatusCode::kInvalidArgument);
  CaInitOptions bad_subject;
  bad_subject.subject = "CN";
  EXPECT_EQ(CertificateAuthority::Create(other.path(), bad_subject).status().code(),
            absl::StatusCode::kInvalidArgument);
  bad_subject.subject = "XYZZY=1";
  EXPECT_EQ(CertificateAuthority::Create(other.path(), bad_subject).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(ParseKeyType("dsa-1024").ok());
  EXPECT_EQ(*ParseKeyType("rsa-3072"), KeyType::kRsa3072);
}

TEST(CertificateAuthorityTest, LoadRefusesGroupOrWorldReadableKey) {
  TempDir tmp;
  ASSERT_TRUE(CertificateAuthority::Create(tmp.path(), CaInitOptions{}).ok());
  ASSERT_EQ(::chmod((tmp / "ca.key").c_str(), 0644), 0);
  auto ca = CertificateAuthority::Load(tmp.path());
  EXPECT_EQ(ca.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_NE(ca.status().message().find("chmod 600"), std::string::npos) << ca.status();
  EXPECT_EQ(CertificateAuthority::LoadFromFiles(tmp / "ca.crt", tmp / "ca.key").status().code(),
            absl::StatusCode::kPermissionDenied);
  ASSERT_EQ(::chmod((tmp / "ca.key").c_str(), 0600), 0);
  EXPECT_TRUE(CertificateAuthority::Load(tmp.path()).ok());
}

TEST(CertificateAuthorityTest, LoadRefusesMismatchedCertAndKey) {
  TempDir a, b;
  ASSERT_TRUE(CertificateAuthority::Create(a.path(), CaInitOptions{}).ok());
  ASSERT_TRUE(CertificateAuthority::Create(b.path(), CaInitOptions{}).ok());
  auto ca = CertificateAuthority::LoadFromFiles(a / "ca.crt", b / "ca.key");
  EXPECT_EQ(ca.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(ca.status().message().find("does not match"), std::string::npos) << ca.status();
}

TEST(CertificateAuthorityTest, LoadRefusesExpiredCaButRotateReplacesIt) {
  TempDir tmp;
  KeyAndCert old = testing::MakeRoot("Expired CA", -10 * 86400, -86400, 0);
  testing::WritePem(tmp / "ca.crt", old.cert.get());
  testing::WriteKey(tmp / "ca.key", old.key.get(), 0600);
  auto ca = CertificateAuthority::Load(tmp.path());
  EXPECT_EQ(ca.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(ca.status().message().find("expired"), std::string::npos) << ca.status();

  auto rotated = CertificateAuthority::Rotate(tmp.path(), CaRotateOptions{.days = 30});
  ASSERT_TRUE(rotated.ok()) << rotated.status();
  // The expired predecessor is archived but no longer exported.
  EXPECT_EQ(rotated->certificates().previous.size(), 1u);
  EXPECT_EQ(CountPemCerts(rotated->TrustBundlePem()), 1);
}

TEST(CertificateAuthorityTest, LoadRefusesNonCaCertificate) {
  TempDir tmp;
  KeyAndCert root = testing::MakeRoot("Root", -60, 86400);
  KeyAndCert server = testing::MakeServerCert(root, {.cn = "x.example", .dns = {"x.example"}});
  testing::WritePem(tmp / "ca.crt", server.cert.get());
  testing::WriteKey(tmp / "ca.key", server.key.get(), 0600);
  auto ca = CertificateAuthority::Load(tmp.path());
  EXPECT_EQ(ca.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(ca.status().message().find("not a CA"), std::string::npos) << ca.status();
}

TEST(CertificateAuthorityTest, RotationKeepsOldLeavesValidUnderTheBundle) {
  TempDir tmp;
  auto first = CertificateAuthority::Create(tmp.path(), CaInitOptions{});
  ASSERT_TRUE(first.ok()) << first.status();
  std::string first_fp = Sha256Fingerprint(first->cert());
  KeyAndCert root = testing::MakeRoot("Public Root", -60, 400 * 86400);
  KeyAndCert upstream = testing::MakeServerCert(root, {.cn = "api.example.com", .dns = {"api.example.com"}});

  auto old_minter = OpenSslLeafMinter::Create(std::make_shared<CertificateAuthority>(std::move(*first)));
  ASSERT_TRUE(old_minter.ok()) << old_minter.status();
  auto old_leaf = (*old_minter)->MintFor(upstream.cert.get(), "api.example.com");
  ASSERT_TRUE(old_leaf.ok()) << old_leaf.status();

  auto second = CertificateAuthority::Rotate(tmp.path(), CaRotateOptions{});
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_NE(Sha256Fingerprint(second->cert()), first_fp);
  ASSERT_EQ(second->certificates().previous.size(), 1u);
  EXPECT_EQ(Sha256Fingerprint(second->certificates().previous[0][0].get()), first_fp);
  EXPECT_EQ(ModeOf(tmp / "ca.key"), 0600u);
  // Same subject, lifetime kept (default 3650 days).
  EXPECT_EQ(NameToString(X509_get_subject_name(second->cert())), kDefaultCaSubject);
  EXPECT_NEAR(static_cast<double>(testing::NotAfter(second->cert()) - std::time(nullptr)), 3650.0 * 86400, 7200);

  // Reloading from disk sees the same thing.
  auto reloaded = CertificateAuthority::Load(tmp.path());
  ASSERT_TRUE(reloaded.ok()) << reloaded.status();
  std::string bundle = reloaded->TrustBundlePem();
  EXPECT_EQ(CountPemCerts(bundle), 2);
  EXPECT_EQ(bundle.find("PRIVATE KEY"), std::string::npos);
  auto anchors = BundleCerts(bundle);

  auto new_minter = OpenSslLeafMinter::Create(std::make_shared<CertificateAuthority>(std::move(*reloaded)));
  ASSERT_TRUE(new_minter.ok());
  auto new_leaf = (*new_minter)->MintFor(upstream.cert.get(), "api.example.com");
  ASSERT_TRUE(new_leaf.ok());
  // Minting moved to the new CA: the new leaf's issuer key is the new CA's.
  EXPECT_EQ(X509_check_issued(second->cert(), (*new_leaf)->cert), X509_V_OK);
  EXPECT_NE(X509_check_issued(second->cert(), (*old_leaf)->cert), X509_V_OK);

  // Both generations verify against the exported bundle; the old one only because of the bundle.
  EXPECT_EQ(testing::Verify((*old_leaf)->cert, Raw(anchors), nullptr, "api.example.com"), X509_V_OK);
  EXPECT_EQ(testing::Verify((*new_leaf)->cert, Raw(anchors), nullptr, "api.example.com"), X509_V_OK);
  EXPECT_NE(testing::Verify((*old_leaf)->cert, {second->cert()}, nullptr, "api.example.com"), X509_V_OK);

  // Export without the key file works too (ca export reads certificates only).
  auto certs = CaCertificates::Read(tmp.path());
  ASSERT_TRUE(certs.ok());
  EXPECT_EQ(certs->TrustBundlePem(), bundle);
  auto summaries = certs->Summaries();
  ASSERT_EQ(summaries.size(), 2u);
  EXPECT_EQ(summaries[0].role, "current");
  EXPECT_EQ(summaries[1].role, "previous");
  EXPECT_EQ(summaries[1].sha256_fingerprint, first_fp);
  EXPECT_EQ(summaries[0].key_type, "ecdsa-p256");
}

TEST(CertificateAuthorityTest, IntermediateSignedByOfflineRoot) {
  TempDir tmp;
  KeyAndCert root = testing::MakeRoot("Offline Root", -60, 3 * 365 * 86400, 1);
  testing::WritePem(tmp / "root.crt", root.cert.get());
  testing::WriteKey(tmp / "root.key", root.key.get(), 0600);
  CaInitOptions opts;
  opts.issuer_cert_file = tmp / "root.crt";
  opts.issuer_key_file = tmp / "root.key";
  opts.days = 10 * 365;  // longer than the root: clamped to the root's notAfter
  auto ca = CertificateAuthority::Create(tmp / "ca", opts);
  ASSERT_TRUE(ca.ok()) << ca.status();
  EXPECT_EQ(X509_check_issued(root.cert.get(), ca->cert()), X509_V_OK);
  EXPECT_LE(testing::NotAfter(ca->cert()), testing::NotAfter(root.cert.get()));
  ASSERT_EQ(ca->issuers().size(), 1u);
  // The bundle is the root; leaves carry the intermediate in their chain.
  auto anchors = BundleCerts(ca->TrustBundlePem());
  ASSERT_EQ(anchors.size(), 1u);
  EXPECT_EQ(Sha256Fingerprint(anchors[0].get()), Sha256Fingerprint(root.cert.get()));

  auto minter = OpenSslLeafMinter::Create(std::make_shared<CertificateAuthority>(std::move(*ca)));
  ASSERT_TRUE(minter.ok());
  KeyAndCert upstream = testing::MakeServerCert(root, {.cn = "db.example.org", .dns = {"db.example.org"}});
  auto leaf = (*minter)->MintFor(upstream.cert.get(), "db.example.org");
  ASSERT_TRUE(leaf.ok()) << leaf.status();
  ASSERT_EQ(sk_X509_num((*leaf)->chain), 1);
  EXPECT_EQ(testing::Verify((*leaf)->cert, Raw(anchors), (*leaf)->chain, "db.example.org"), X509_V_OK);

  // Rotating an intermediate needs the root again.
  auto no_root = CertificateAuthority::Rotate(tmp / "ca", CaRotateOptions{});
  EXPECT_EQ(no_root.status().code(), absl::StatusCode::kInvalidArgument);
  CaRotateOptions with_root;
  with_root.issuer_cert_file = tmp / "root.crt";
  with_root.issuer_key_file = tmp / "root.key";
  auto rotated = CertificateAuthority::Rotate(tmp / "ca", with_root);
  ASSERT_TRUE(rotated.ok()) << rotated.status();
  EXPECT_EQ(CountPemCerts(rotated->TrustBundlePem()), 1);  // same root, deduplicated
}

TEST(CertificateAuthorityTest, IssuerWithPathlenZeroOrWrongKeyIsRefused) {
  TempDir tmp;
  KeyAndCert root = testing::MakeRoot("Leaf-only Root", -60, 365 * 86400, 0);
  KeyAndCert other = testing::MakeRoot("Other", -60, 365 * 86400);
  testing::WritePem(tmp / "root.crt", root.cert.get());
  testing::WriteKey(tmp / "root.key", root.key.get(), 0600);
  testing::WriteKey(tmp / "other.key", other.key.get(), 0600);
  CaInitOptions opts;
  opts.issuer_cert_file = tmp / "root.crt";
  opts.issuer_key_file = tmp / "root.key";
  auto ca = CertificateAuthority::Create(tmp / "ca", opts);
  EXPECT_NE(ca.status().message().find("pathlen:0"), std::string::npos) << ca.status();
  opts.issuer_key_file = tmp / "other.key";
  EXPECT_NE(CertificateAuthority::Create(tmp / "ca2", opts).status().message().find("not a pair"),
            std::string::npos);
  opts.issuer_key_file.clear();
  EXPECT_EQ(CertificateAuthority::Create(tmp / "ca3", opts).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(CertificateAuthorityTest, EnsureDevCaCreatesOnceThenLoads) {
  TempDir tmp;
  auto first = EnsureDevCa(tmp / "dev-ca");
  ASSERT_TRUE(first.ok()) << first.status();
  auto second = EnsureDevCa(tmp / "dev-ca");
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(Sha256Fingerprint(first->cert()), Sha256Fingerprint(second->cert()));
  // A damaged directory is an error, not silently replaced.
  std::filesystem::remove(tmp / "dev-ca/ca.crt");
  EXPECT_FALSE(EnsureDevCa(tmp / "dev-ca").ok());
}

TEST(CertificateAuthorityTest, ConfigMapCarriesTheBundleAndValidatesNames) {
  std::string pem = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
  auto yaml = TrustBundleConfigMap(pem, "egressguard-ca", "payments");
  ASSERT_TRUE(yaml.ok()) << yaml.status();
  EXPECT_NE(yaml->find("kind: ConfigMap\n"), std::string::npos);
  EXPECT_NE(yaml->find("  name: egressguard-ca\n  namespace: payments\n"), std::string::npos);
  EXPECT_NE(yaml->find("  ca.crt: |\n    -----BEGIN CERTIFICATE-----\n    AAAA\n    -----END CERTIFICATE-----\n"),
            std::string::npos);
  EXPECT_FALSE(TrustBundleConfigMap(pem, "Bad_Name", "").ok());
  EXPECT_FALSE(TrustBundleConfigMap(pem, "ok", "ns/evil").ok());
  EXPECT_FALSE(TrustBundleConfigMap(pem, "ok", std::string(64, 'a')).ok());
}

}  // namespace
}  // namespace egressguard::ca
