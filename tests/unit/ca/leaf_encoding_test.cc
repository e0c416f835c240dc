// Proves the minter's hand-written TBS DER is what the certificate object encodes to, for
// every shape of upstream the encoder handles (each leaf must verify after a wire round
// trip), that the strict SAN reader only passes host-only DER, and that a minted leaf and
// its pooled key complete real TLS 1.2 and 1.3 handshakes that verify under the CA.
#include <gtest/gtest.h>
#include <openssl/ssl.h>

#include <cstring>
#include <string>
#include <vector>

#include "ca/leaf_der.h"
#include "ca/openssl_leaf_minter.h"
#include "ca/x509_util.h"
#include "tests/unit/ca/test_pki.h"

namespace egressguard::ca {
namespace {

using testing::KeyAndCert;
using testing::ServerCertSpec;
using testing::TempDir;

std::string Bytes(std::initializer_list<int> bytes) {
  std::string out;
  for (int b : bytes) out.push_back(static_cast<char>(b));
  return out;
}

TEST(LeafDer, LengthsAreMinimal) {
  struct Case {
    std::size_t length;
    std::string header;
  };
  for (const Case& c : {Case{0, Bytes({0x30, 0x00})}, Case{127, Bytes({0x30, 0x7f})},
                        Case{128, Bytes({0x30, 0x81, 0x80})}, Case{255, Bytes({0x30, 0x81, 0xff})},
                        Case{256, Bytes({0x30, 0x82, 0x01, 0x00})}, Case{65535, Bytes({0x30, 0x82, 0xff, 0xff})},
                        Case{65536, Bytes({0x30, 0x83, 0x01, 0x00, 0x00})}}) {
    std::string out;
    der::AppendHeader(out, der::kSequence, c.length);
    EXPECT_EQ(out, c.header) << c.length;
    std::string tlv;
    der::AppendTlv(tlv, der::kSequence, std::string(c.length, 'x'));
    EXPECT_EQ(tlv.size(), c.header.size() + c.length);
  }
}

// The one-buffer writer must produce exactly what nesting AppendTlv calls would, at every
// length-form boundary and inside an outer TLV whose own length form changes with it.
TEST(LeafDer, WriterMatchesNestedTlvs) {
  for (std::size_t length : {0, 1, 127, 128, 255, 256, 65535, 65536, 70000}) {
    std::string inner(length, 'x');
    std::string expected_inner;
    der::AppendTlv(expected_inner, der::kOctetString, inner);
    std::string expected_outer;
    der::AppendTlv(expected_outer, der::kSet, "ab");
    expected_outer += expected_inner;
    std::string expected;
    der::AppendTlv(expected, der::kSequence, expected_outer);

    std::string out("prefix");
    der::Writer w(out);
    std::size_t outer = w.Open(der::kSequence);
    w.Tlv(der::kSet, "ab");
    std::size_t middle = w.Open(der::kOctetString);
    w.Append(inner);
    w.Close(middle);
    w.Close(outer);
    EXPECT_TRUE(w.ok());
    EXPECT_EQ(out, "prefix" + expected) << length;
  }
}

TEST(LeafDer, WriterRefusesContentOf16MiB) {
  std::string out;
  der::Writer w(out);
  std::size_t mark = w.Open(der::kOctetString);
  w.Append(std::string(std::size_t{1} << 24, 'x'));
  w.Close(mark);
  EXPECT_FALSE(w.ok());
}

TEST(LeafDer, OnlyHostOnlyGeneralNamesPass) {
  const std::string dns = Bytes({0x82, 0x03}) + "a.b";
  const std::string ip4 = Bytes({0x87, 0x04, 192, 0, 2, 1});
  const std::string ip6 = Bytes({0x87, 0x10}) + std::string(16, '\x01');
  auto seq = [](const std::string& content) {
    std::string out;
    der::AppendTlv(out, der::kSequence, content);
    return out;
  };
  EXPECT_TRUE(der::IsHostOnlyGeneralNames(seq(dns)));
  EXPECT_TRUE(der::IsHostOnlyGeneralNames(seq(dns + ip4 + ip6)));
  std::string many;
  for (int i = 0; i < 100; ++i) many += dns;  // 500 bytes: a two-byte length
  EXPECT_TRUE(der::IsHostOnlyGeneralNames(seq(many)));

  EXPECT_FALSE(der::IsHostOnlyGeneralNames(""));
  EXPECT_FALSE(der::IsHostOnlyGeneralNames(seq("")));                                   // no names
  EXPECT_FALSE(der::IsHostOnlyGeneralNames(seq(Bytes({0x81, 0x03}) + "a@b")));          // rfc822Name
  EXPECT_FALSE(der::IsHostOnlyGeneralNames(seq(Bytes({0x86, 0x03}) + "u:x")));          // URI
  EXPECT_FALSE(der::IsHostOnlyGeneralNames(seq(dns + Bytes({0x87, 0x05, 1, 2, 3, 4, 5}))));  // bad IP size
  EXPECT_FALSE(der::IsHostOnlyGeneralNames(seq(Bytes({0x82, 0x00}))));                   // empty name
  EXPECT_FALSE(der::IsHostOnlyGeneralNames(seq(Bytes({0x82, 0x03}) + "a\nb")));          // control byte
  EXPECT_FALSE(der::IsHostOnlyGeneralNames(seq(Bytes({0x82, 0x03}) + "a\xc3\xa9")));     // not ASCII
  EXPECT_FALSE(der::IsHostOnlyGeneralNames(seq(dns) + "x"));                             // trailing byte
  EXPECT_FALSE(der::IsHostOnlyGeneralNames(Bytes({0x30, 0x81, 0x05}) + dns));             // non-minimal length
  EXPECT_FALSE(der::IsHostOnlyGeneralNames(Bytes({0x30, 0x80}) + dns + Bytes({0, 0})));   // indefinite length
  EXPECT_FALSE(der::IsHostOnlyGeneralNames(seq(Bytes({0x82, 0x09}) + "a.b")));           // name overruns
  EXPECT_FALSE(der::IsHostOnlyGeneralNames(Bytes({0x31, 0x05}) + dns));                   // not a SEQUENCE
}

class LeafEncodingTest : public ::testing::Test {
 protected:
  void SetUp() override { public_root_ = testing::MakeRoot("Public Root", -60, 30L * 365 * 86400); }

  std::shared_ptr<CertificateAuthority> NewCa(CaInitOptions options, const std::string& name) {
    auto ca = CertificateAuthority::Create(tmp_ / name, std::move(options));
    EXPECT_TRUE(ca.ok()) << ca.status();
    return ca.ok() ? std::make_shared<CertificateAuthority>(std::move(*ca)) : nullptr;
  }

  // The leaf verifies as an object (X509_verify re-encodes it) and after the trip a
  // handshake gives it (i2d, then d2i as a client does), with the same names.
  void ExpectSelfConsistent(const CertificateAuthority& ca, X509* leaf, const std::string& what) {
    SCOPED_TRACE(what);
    EVP_PKEY* ca_key = X509_get0_pubkey(ca.cert());
    EXPECT_EQ(X509_verify(leaf, ca_key), 1) << DrainOpenSslErrors();
    unsigned char* der = nullptr;
    int len = i2d_X509(leaf, &der);
    ASSERT_GT(len, 0);
    const unsigned char* p = der;
    X509Ptr parsed(d2i_X509(nullptr, &p, len));
    OPENSSL_free(der);
    ASSERT_TRUE(parsed);
    EXPECT_EQ(X509_verify(parsed.get(), ca_key), 1) << DrainOpenSslErrors();
    EXPECT_EQ(testing::SanStrings(parsed.get()), testing::SanStrings(leaf));
    EXPECT_EQ(X509_NAME_cmp(X509_get_subject_name(parsed.get()), X509_get_subject_name(leaf)), 0);
    EXPECT_EQ(testing::Verify(parsed.get(), {ca.cert()}, nullptr, ""), X509_V_OK);
  }

  TempDir tmp_;
  KeyAndCert public_root_;
};

TEST_F(LeafEncodingTest, ObjectReencodesToTheSignedBytesForEveryUpstreamShape) {
  auto ca = NewCa(CaInitOptions{}, "ca");
  ASSERT_TRUE(ca);
  auto minter = OpenSslLeafMinter::Create(ca);
  ASSERT_TRUE(minter.ok()) << minter.status();

  std::vector<std::string> many_names;
  for (int i = 0; i < 60; ++i) many_names.push_back("host-" + std::to_string(i) + ".a-rather-long-zone.example");
  std::vector<std::pair<std::string, ServerCertSpec>> shapes = {
      {"cn + dns", {.cn = "www.example.com", .dns = {"www.example.com"}}},
      {"cn + dns + ip", {.cn = "a.example", .dns = {"a.example", "*.a.example"}, .ips = {"192.0.2.1", "2001:db8::7"}}},
      {"email in SAN (filtered)", {.cn = "m.example", .dns = {"m.example"}, .emails = {"x@m.example"}}},
      {"no CN (critical SAN)", {.dns = {"nocn.example"}, .ips = {"198.51.100.9"}}},
      {"CN only", {.cn = "legacy.example"}},
      {"long SAN list", {.cn = "many.example", .dns = many_names}},
      {"64-byte CN", {.cn = std::string(52, 'c') + ".example.com", .dns = {"c.example.com"}}},
  };
  for (const auto& [what, spec] : shapes) {
    KeyAndCert upstream = testing::MakeServerCert(public_root_, spec);
    auto leaf = (*minter)->MintUncached(upstream.cert.get());
    ASSERT_TRUE(leaf.ok()) << what << ": " << leaf.status();
    ExpectSelfConsistent(*ca, (*leaf)->cert, what);
  }

  // Several CNs of other string types (UTF8String, BMPString), each copied type and all.
  KeyAndCert upstream = testing::MakeServerCert(public_root_, {.cn = "first.example", .dns = {"t.example"}});
  X509_NAME* subject = X509_get_subject_name(upstream.cert.get());
  const char* utf8 = "b\xc3\xbc" "cher.example";
  ASSERT_EQ(X509_NAME_add_entry_by_NID(subject, NID_commonName, V_ASN1_UTF8STRING,
                                       reinterpret_cast<const unsigned char*>(utf8), -1, -1, 0), 1);
  const unsigned char bmp[] = {0x00, 'b', 0x00, 'm', 0x00, 'p'};
  ASSERT_EQ(X509_NAME_add_entry_by_NID(subject, NID_commonName, V_ASN1_BMPSTRING, bmp, sizeof(bmp), -1, 0), 1);
  auto leaf = (*minter)->MintUncached(upstream.cert.get());
  ASSERT_TRUE(leaf.ok()) << leaf.status();
  EXPECT_EQ(X509_NAME_entry_count(X509_get_subject_name((*leaf)->cert)), 3);
  const ASN1_STRING* third = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(X509_get_subject_name((*leaf)->cert), 2));
  EXPECT_EQ(ASN1_STRING_type(third), V_ASN1_BMPSTRING);
  ExpectSelfConsistent(*ca, (*leaf)->cert, "UTF8String and BMPString CNs");

  // A CN that is no character string (OpenSSL admits a SEQUENCE there) is not copied.
  KeyAndCert odd = testing::MakeServerCert(public_root_, {.cn = "odd.example", .dns = {"odd.example"}});
  const unsigned char empty_sequence[] = {0x30, 0x00};
  ASSERT_EQ(X509_NAME_add_entry_by_NID(X509_get_subject_name(odd.cert.get()), NID_commonName, V_ASN1_SEQUENCE,
                                       empty_sequence, sizeof(empty_sequence), -1, 0), 1);
  auto odd_leaf = (*minter)->MintUncached(odd.cert.get());
  ASSERT_TRUE(odd_leaf.ok()) << odd_leaf.status();
  EXPECT_EQ(NameToString(X509_get_subject_name((*odd_leaf)->cert)), "CN=odd.example");
  ExpectSelfConsistent(*ca, (*odd_leaf)->cert, "SEQUENCE-typed CN");
}

TEST_F(LeafEncodingTest, LeafsEndingFrom2050CarryGeneralizedTime) {
  // RFC 5280: UTCTime through 2049, GeneralizedTime after. Clock set to late 2049.
  CaInitOptions options;
  options.days = 12000;
  auto ca = NewCa(std::move(options), "ca-long");
  ASSERT_TRUE(ca);
  const std::time_t late_2049 = 2524608000 - 10 * 86400;  // 2049-12-22T00:00:00Z
  auto minter = OpenSslLeafMinter::Create(ca, {.clock = [&] { return late_2049; }});
  ASSERT_TRUE(minter.ok()) << minter.status();
  KeyAndCert upstream = testing::MakeServerCert(
      public_root_, {.cn = "y2050.example", .dns = {"y2050.example"}, .not_after_offset_s = 28L * 365 * 86400});
  auto leaf = (*minter)->MintUncached(upstream.cert.get());
  ASSERT_TRUE(leaf.ok()) << leaf.status();
  EXPECT_EQ(ASN1_STRING_type(X509_get0_notBefore((*leaf)->cert)), V_ASN1_UTCTIME);
  EXPECT_EQ(ASN1_STRING_type(X509_get0_notAfter((*leaf)->cert)), V_ASN1_GENERALIZEDTIME);
  EXPECT_EQ(TimeToString(X509_get0_notAfter((*leaf)->cert)), "2050-01-21T00:00:00Z");
  EXPECT_EQ(X509_verify((*leaf)->cert, X509_get0_pubkey(ca->cert())), 1);
}

TEST_F(LeafEncodingTest, RsaCaSignsWithItsOwnAlgorithm) {
  CaInitOptions options;
  options.key_type = KeyType::kRsa3072;
  auto ca = NewCa(std::move(options), "ca-rsa");
  ASSERT_TRUE(ca);
  auto minter = OpenSslLeafMinter::Create(ca);
  ASSERT_TRUE(minter.ok()) << minter.status();
  KeyAndCert upstream = testing::MakeServerCert(public_root_, {.cn = "rsa.example", .dns = {"rsa.example"}});
  auto leaf = (*minter)->MintUncached(upstream.cert.get());
  ASSERT_TRUE(leaf.ok()) << leaf.status();
  EXPECT_EQ(X509_get_signature_nid((*leaf)->cert), NID_sha256WithRSAEncryption);
  ExpectSelfConsistent(*ca, (*leaf)->cert, "RSA CA");
}

// Runs a handshake between two in-memory endpoints joined by a BIO pair.
bool Handshake(SSL* client, SSL* server) {
  for (int round = 0; round < 20; ++round) {
    int c = SSL_do_handshake(client);
    int s = SSL_do_handshake(server);
    if (c == 1 && s == 1) return true;
    auto stuck = [](SSL* ssl, int rc) {
      int err = SSL_get_error(ssl, rc);
      return rc != 1 && err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE;
    };
    if (stuck(client, c) || stuck(server, s)) return false;
  }
  return false;
}

TEST_F(LeafEncodingTest, LeafAndPooledKeyServeVerifiedTlsHandshakes) {
  auto ca = NewCa(CaInitOptions{}, "ca-tls");
  ASSERT_TRUE(ca);
  auto minter = OpenSslLeafMinter::Create(ca);
  ASSERT_TRUE(minter.ok()) << minter.status();
  KeyAndCert upstream = testing::MakeServerCert(public_root_, {.cn = "tls.example", .dns = {"tls.example"}});
  auto leaf = (*minter)->MintFor(upstream.cert.get(), "tls.example");
  ASSERT_TRUE(leaf.ok()) << leaf.status();

  for (int version : {TLS1_2_VERSION, TLS1_3_VERSION}) {
    SCOPED_TRACE(version);
    std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> server_ctx(SSL_CTX_new(TLS_server_method()), SSL_CTX_free);
    std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> client_ctx(SSL_CTX_new(TLS_client_method()), SSL_CTX_free);
    ASSERT_TRUE(server_ctx && client_ctx);
    SSL_CTX_set_max_proto_version(server_ctx.get(), version);
    SSL_CTX_set_min_proto_version(server_ctx.get(), version);
    X509_STORE_add_cert(SSL_CTX_get_cert_store(client_ctx.get()), ca->cert());
    SSL_CTX_set_verify(client_ctx.get(), SSL_VERIFY_PEER, nullptr);

    std::unique_ptr<SSL, decltype(&SSL_free)> server(SSL_new(server_ctx.get()), SSL_free);
    std::unique_ptr<SSL, decltype(&SSL_free)> client(SSL_new(client_ctx.get()), SSL_free);
    ASSERT_TRUE(server && client);
    // What mitm/ does with a leaf.
    ASSERT_EQ(SSL_use_certificate(server.get(), (*leaf)->cert), 1) << DrainOpenSslErrors();
    ASSERT_EQ(SSL_use_PrivateKey(server.get(), (*leaf)->key), 1) << DrainOpenSslErrors();
    ASSERT_EQ(SSL_check_private_key(server.get()), 1);
    ASSERT_EQ(SSL_set1_host(client.get(), "tls.example"), 1);
    BIO* client_bio = nullptr;
    BIO* server_bio = nullptr;
    ASSERT_EQ(BIO_new_bio_pair(&client_bio, 0, &server_bio, 0), 1);
    SSL_set_bio(client.get(), client_bio, client_bio);
    SSL_set_bio(server.get(), server_bio, server_bio);
    SSL_set_connect_state(client.get());
    SSL_set_accept_state(server.get());

    ASSERT_TRUE(Handshake(client.get(), server.get())) << DrainOpenSslErrors();
    EXPECT_EQ(SSL_version(client.get()), version);
    EXPECT_EQ(SSL_get_verify_result(client.get()), X509_V_OK);
    X509* seen = SSL_get0_peer_certificate(client.get());
    ASSERT_NE(seen, nullptr);
    EXPECT_EQ(X509_cmp(seen, (*leaf)->cert), 0);
    const char ping[] = "ping";
    char got[sizeof(ping)] = {};
    ASSERT_EQ(SSL_write(client.get(), ping, sizeof(ping)), static_cast<int>(sizeof(ping)));
    ASSERT_EQ(SSL_read(server.get(), got, sizeof(got)), static_cast<int>(sizeof(ping)));
    EXPECT_EQ(std::memcmp(ping, got, sizeof(ping)), 0);
  }
}

}  // namespace
}  // namespace egressguard::ca
