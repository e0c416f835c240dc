#include "mitm/upstream_verify.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>

#include <ctime>
#include <string>
#include <utility>
#include <vector>

namespace egressguard::mitm {
namespace {

// A self-signed certificate carrying exactly `extensions` (NID, openssl config value):
// ServerLeafProblem judges the leaf's own extensions only, so its issuer does not matter.
ca::X509Ptr CertWith(const std::vector<std::pair<int, std::string>>& extensions) {
  static EVP_PKEY* const key = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
  ca::X509Ptr cert(X509_new());
  X509_set_version(cert.get(), X509_VERSION_3);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), 7);
  X509_NAME_add_entry_by_NID(X509_get_subject_name(cert.get()), NID_commonName, MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("origin.test"), -1, -1, 0);
  X509_set_issuer_name(cert.get(), X509_get_subject_name(cert.get()));
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 86400);
  X509_set_pubkey(cert.get(), key);
  for (const auto& [nid, value] : extensions) {
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, nullptr, nid, value.c_str());
    EXPECT_NE(ext, nullptr) << value;
    X509_add_ext(cert.get(), ext, -1);
    X509_EXTENSION_free(ext);
  }
  EXPECT_GT(X509_sign(cert.get(), key, EVP_sha256()), 0);
  return cert;
}

constexpr int kSan = NID_subject_alt_name;
constexpr int kBc = NID_basic_constraints;
constexpr int kKu = NID_key_usage;
constexpr int kEku = NID_ext_key_usage;

TEST(ServerLeafProblem, AcceptsATypicalServerLeaf) {
  auto cert = CertWith({{kSan, "DNS:origin.test"},
                        {kBc, "critical,CA:FALSE"},
                        {kKu, "critical,digitalSignature,keyEncipherment"},
                        {kEku, "serverAuth,clientAuth"}});
  EXPECT_EQ(ServerLeafProblem(cert.get(), ServerKeyUse::kSignature), "");
  EXPECT_EQ(ServerLeafProblem(cert.get(), ServerKeyUse::kKeyTransport), "");
}

TEST(ServerLeafProblem, AbsentUsageExtensionsRestrictNothing) {
  auto cert = CertWith({{kSan, "DNS:origin.test"}});
  EXPECT_EQ(ServerLeafProblem(cert.get(), ServerKeyUse::kSignature), "");
}

TEST(ServerLeafProblem, RefusesACaLeaf) {
  auto cert = CertWith({{kSan, "DNS:origin.test"}, {kBc, "critical,CA:TRUE"}});
  EXPECT_EQ(ServerLeafProblem(cert.get(), ServerKeyUse::kSignature), "leaf is a CA certificate");
  auto lax = CertWith({{kSan, "DNS:origin.test"}, {kBc, "CA:TRUE"}});  // not critical: still a CA
  EXPECT_EQ(ServerLeafProblem(lax.get(), ServerKeyUse::kSignature), "leaf is a CA certificate");
}

TEST(ServerLeafProblem, KeyUsageMustMatchTheHandshake) {
  const std::string refused = "leaf key usage does not allow TLS server authentication";
  auto sign_only = CertWith({{kSan, "DNS:origin.test"}, {kKu, "critical,keyCertSign"}});
  EXPECT_EQ(ServerLeafProblem(sign_only.get(), ServerKeyUse::kSignature), refused);
  EXPECT_EQ(ServerLeafProblem(sign_only.get(), ServerKeyUse::kKeyTransport), refused);
  auto encipher = CertWith({{kSan, "DNS:origin.test"}, {kKu, "critical,keyEncipherment"}});
  EXPECT_EQ(ServerLeafProblem(encipher.get(), ServerKeyUse::kSignature), refused);
  EXPECT_EQ(ServerLeafProblem(encipher.get(), ServerKeyUse::kKeyTransport), "");
  auto signature = CertWith({{kSan, "DNS:origin.test"}, {kKu, "critical,digitalSignature"}});
  EXPECT_EQ(ServerLeafProblem(signature.get(), ServerKeyUse::kSignature), "");
  EXPECT_EQ(ServerLeafProblem(signature.get(), ServerKeyUse::kKeyTransport), refused);
}

TEST(ServerLeafProblem, ExtendedKeyUsageMustIncludeServerAuth) {
  auto client = CertWith({{kSan, "DNS:origin.test"}, {kEku, "clientAuth"}});
  EXPECT_EQ(ServerLeafProblem(client.get(), ServerKeyUse::kSignature),
            "leaf extended key usage does not include serverAuth");
  auto any = CertWith({{kSan, "DNS:origin.test"}, {kEku, "anyExtendedKeyUsage"}});
  EXPECT_EQ(ServerLeafProblem(any.get(), ServerKeyUse::kSignature), "");
}

TEST(ServerLeafProblem, NoCertificate) {
  EXPECT_NE(ServerLeafProblem(nullptr, ServerKeyUse::kSignature), "");
}

// The surrogate's SANs as "DNS:name" / "IP:<byte count>" strings, and whether they are critical.
std::vector<std::string> Sans(X509* cert, int* critical) {
  auto* names = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, critical, nullptr));
  std::vector<std::string> out;
  for (int i = 0; names != nullptr && i < sk_GENERAL_NAME_num(names); ++i) {
    GENERAL_NAME* gn = sk_GENERAL_NAME_value(names, i);
    if (gn->type == GEN_DNS) {
      out.push_back("DNS:" + std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(gn->d.dNSName)),
                                         static_cast<size_t>(ASN1_STRING_length(gn->d.dNSName))));
    } else if (gn->type == GEN_IPADD) {
      out.push_back("IP:" + std::to_string(ASN1_STRING_length(gn->d.iPAddress)));
    } else {
      out.push_back("other");
    }
  }
  GENERAL_NAMES_free(names);
  return out;
}

std::string Der(X509* cert) {
  unsigned char* der = nullptr;
  int len = i2d_X509(cert, &der);
  std::string out(reinterpret_cast<char*>(der), static_cast<size_t>(len > 0 ? len : 0));
  OPENSSL_free(der);
  return out;
}

TEST(RefusalSurrogate, NamesExactlyTheRequestedHost) {
  const std::time_t now = 1'750'000'000 + 1234;  // mid-hour
  auto cert = RefusalSurrogate("origin.test", now);
  ASSERT_TRUE(cert);
  int critical = -1;
  EXPECT_EQ(Sans(cert.get(), &critical), std::vector<std::string>{"DNS:origin.test"});
  EXPECT_EQ(critical, 1);  // the subject is empty (RFC 5280 4.2.1.6)
  EXPECT_EQ(X509_NAME_entry_count(X509_get_subject_name(cert.get())), 0);
  // Valid from before now until at least a day ahead.
  EXPECT_LT(X509_cmp_time(X509_get0_notBefore(cert.get()), const_cast<std::time_t*>(&now)), 0);
  std::time_t day_ahead = now + 86400;
  EXPECT_GT(X509_cmp_time(X509_get0_notAfter(cert.get()), &day_ahead), 0);
}

TEST(RefusalSurrogate, IpLiteralsGetIpSans) {
  int critical = 0;
  auto v4 = RefusalSurrogate("127.0.0.1", std::time(nullptr));
  ASSERT_TRUE(v4);
  EXPECT_EQ(Sans(v4.get(), &critical), std::vector<std::string>{"IP:4"});
  auto v6 = RefusalSurrogate("::1", std::time(nullptr));
  ASSERT_TRUE(v6);
  EXPECT_EQ(Sans(v6.get(), &critical), std::vector<std::string>{"IP:16"});
}

TEST(RefusalSurrogate, OneNameInOneHourIsOneCertificate) {
  // The leaf cache keys on the upstream DER: repeated refusals must share one entry.
  const std::time_t hour = 1'750'000'000 - 1'750'000'000 % 3600;
  auto a = RefusalSurrogate("origin.test", hour + 10);
  auto b = RefusalSurrogate("origin.test", hour + 3000);
  auto next_hour = RefusalSurrogate("origin.test", hour + 3600 + 10);
  auto other = RefusalSurrogate("other.test", hour + 10);
  ASSERT_TRUE(a && b && next_hour && other);
  EXPECT_EQ(Der(a.get()), Der(b.get()));
  EXPECT_NE(Der(a.get()), Der(next_hour.get()));
  EXPECT_NE(Der(a.get()), Der(other.get()));
}

TEST(RefusalSurrogate, RefusesWhatIsNotAPlainHostName) {
  EXPECT_FALSE(RefusalSurrogate("", std::time(nullptr)));
  EXPECT_FALSE(RefusalSurrogate("*.origin.test", std::time(nullptr)));
  EXPECT_FALSE(RefusalSurrogate("origin test", std::time(nullptr)));
  EXPECT_FALSE(RefusalSurrogate(std::string("origin\0.test", 12), std::time(nullptr)));
  EXPECT_FALSE(RefusalSurrogate(std::string(254, 'a'), std::time(nullptr)));
}

}  // namespace
}  // namespace egressguard::mitm
