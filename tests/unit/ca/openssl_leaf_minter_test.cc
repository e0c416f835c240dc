// Proves minted leaves verify under the CA (X509_verify_cert), mirror the upstream's CN and DNS/IP SANs, never outlive the upstream, carry pooled non-CA keys, and are cached and rotated.
#include "ca/openssl_leaf_minter.h"

#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <set>
#include <thread>

#include "ca/x509_util.h"
#include "tests/unit/ca/test_pki.h"

namespace egressguard::ca {
namespace {

using testing::KeyAndCert;
using testing::TempDir;

class LeafMinterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto ca = CertificateAuthority::Create(tmp_ / "ca", CaInitOptions{});
    ASSERT_TRUE(ca.ok()) << ca.status();
    ca_ = std::make_shared<CertificateAuthority>(std::move(*ca));
    public_root_ = testing::MakeRoot("Public Root", -60, 3 * 365 * 86400);
  }

  std::unique_ptr<OpenSslLeafMinter> NewMinter(LeafMinterOptions opts = {}) {
    auto m = OpenSslLeafMinter::Create(ca_, std::move(opts));
    EXPECT_TRUE(m.ok()) << m.status();
    return m.ok() ? std::move(*m) : nullptr;
  }

  TempDir tmp_;
  std::shared_ptr<CertificateAuthority> ca_;
  KeyAndCert public_root_;
};

TEST_F(LeafMinterTest, LeafVerifiesUnderCaAndMirrorsUpstreamNames) {
  KeyAndCert upstream = testing::MakeServerCert(
      public_root_, {.cn = "www.example.com",
                     .dns = {"www.example.com", "*.cdn.example.com"},
                     .ips = {"192.0.2.7", "2001:db8::1"},
                     .emails = {"hostmaster@example.com"}});
  auto minter = NewMinter();
  auto leaf = minter->MintFor(upstream.cert.get(), "www.example.com");
  ASSERT_TRUE(leaf.ok()) << leaf.status();
  X509* cert = (*leaf)->cert;

  EXPECT_EQ(testing::Verify(cert, {ca_->cert()}, nullptr, "www.example.com"), X509_V_OK);
  EXPECT_EQ(testing::Verify(cert, {ca_->cert()}, nullptr, "img.cdn.example.com"), X509_V_OK);
  EXPECT_NE(testing::Verify(cert, {ca_->cert()}, nullptr, "evil.example.net"), X509_V_OK);
  // Not trusted under the upstream's real root: it is our CA that signed it.
  EXPECT_NE(testing::Verify(cert, {public_root_.cert.get()}, nullptr, ""), X509_V_OK);

  EXPECT_EQ(testing::SanStrings(cert),
            (std::vector<std::string>{"DNS:www.example.com", "DNS:*.cdn.example.com", "IP:192.0.2.7",
                                      "IP:2001:db8::1"}));
  EXPECT_EQ(NameToString(X509_get_subject_name(cert)), "CN=www.example.com");
  EXPECT_EQ(NameToString(X509_get_issuer_name(cert)), NameToString(X509_get_subject_name(ca_->cert())));
  // Chain carries the issuing CA.
  ASSERT_EQ(sk_X509_num((*leaf)->chain), 1);
  EXPECT_EQ(X509_cmp(sk_X509_value((*leaf)->chain, 0), ca_->cert()), 0);
}

TEST_F(LeafMinterTest, LeafHasServerOnlyExtensionsAndRandomPositiveSerial) {
  KeyAndCert upstream = testing::MakeServerCert(public_root_, {.cn = "a.example", .dns = {"a.example"}});
  auto minter = NewMinter();
  auto leaf = minter->MintUncached(upstream.cert.get());
  ASSERT_TRUE(leaf.ok()) << leaf.status();
  X509* cert = (*leaf)->cert;
  EXPECT_EQ(X509_check_ca(cert), 0);
  EXPECT_EQ(X509_get_key_usage(cert), static_cast<uint32_t>(KU_DIGITAL_SIGNATURE));
  EXPECT_EQ(X509_get_extended_key_usage(cert), static_cast<uint32_t>(XKU_SSL_SERVER));
  int crit = 0;
  auto* bc = static_cast<BASIC_CONSTRAINTS*>(X509_get_ext_d2i(cert, NID_basic_constraints, &crit, nullptr));
  ASSERT_NE(bc, nullptr);
  EXPECT_FALSE(bc->ca);
  EXPECT_EQ(crit, 1);
  BASIC_CONSTRAINTS_free(bc);
  ASSERT_NE(X509_get0_subject_key_id(cert), nullptr);
  ASSERT_NE(X509_get0_authority_key_id(cert), nullptr);
  EXPECT_EQ(ASN1_OCTET_STRING_cmp(X509_get0_authority_key_id(cert), X509_get0_subject_key_id(ca_->cert())), 0);
  // SKI matches the leaf's own key.
  auto ski = MakeSubjectKeyIdentifier((*leaf)->key);
  ASSERT_TRUE(ski.ok());
  EXPECT_EQ(ASN1_STRING_cmp(X509_EXTENSION_get_data(ski->get()),
                            X509_EXTENSION_get_data(X509_get_ext(cert, X509_get_ext_by_NID(cert, NID_subject_key_identifier, -1)))),
            0);
  EXPECT_EQ(X509_get_signature_nid(cert), NID_ecdsa_with_SHA256);
  // The key pairs with the cert and is never the CA key.
  EXPECT_EQ(X509_check_private_key(cert, (*leaf)->key), 1);
  EXPECT_NE(EVP_PKEY_eq((*leaf)->key, ca_->key()), 1);
  // Serial: positive, about 128 bits, different each time.
  const ASN1_INTEGER* serial = X509_get0_serialNumber(cert);
  EXPECT_NE(serial->type & V_ASN1_NEG, V_ASN1_NEG);
  EXPECT_GE(serial->length, 15);
  EXPECT_LE(serial->length, 16);
  auto again = minter->MintUncached(upstream.cert.get());
  ASSERT_TRUE(again.ok());
  EXPECT_NE(ASN1_INTEGER_cmp(serial, X509_get0_serialNumber((*again)->cert)), 0);
  // notBefore is backdated by an hour for skewed clients.
  auto nb = TimeToUnix(X509_get0_notBefore(cert));
  EXPECT_NEAR(static_cast<double>(std::time(nullptr) - *nb), 3600, 60);
}

TEST_F(LeafMinterTest, LeafNeverOutlivesUpstreamOrConfiguredDays) {
  auto minter = NewMinter(LeafMinterOptions{.leaf_days = 30});
  KeyAndCert short_lived = testing::MakeServerCert(
      public_root_, {.cn = "s.example", .dns = {"s.example"}, .not_after_offset_s = 2 * 86400});
  auto leaf = minter->MintFor(short_lived.cert.get(), "s.example");
  ASSERT_TRUE(leaf.ok());
  EXPECT_LE(testing::NotAfter((*leaf)->cert), testing::NotAfter(short_lived.cert.get()));
  EXPECT_EQ(testing::NotAfter((*leaf)->cert), testing::NotAfter(short_lived.cert.get()));

  KeyAndCert long_lived = testing::MakeServerCert(
      public_root_, {.cn = "l.example", .dns = {"l.example"}, .not_after_offset_s = 365 * 86400});
  auto leaf2 = minter->MintFor(long_lived.cert.get(), "l.example");
  ASSERT_TRUE(leaf2.ok());
  EXPECT_NEAR(static_cast<double>(testing::NotAfter((*leaf2)->cert) - std::time(nullptr)), 30.0 * 86400, 60);

  KeyAndCert expired = testing::MakeServerCert(
      public_root_, {.cn = "e.example", .dns = {"e.example"}, .not_after_offset_s = -60});
  EXPECT_EQ(minter->MintFor(expired.cert.get(), "e.example").status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(LeafMinterTest, CnOnlyUpstreamGetsTheCnAsSanAndNamelessIsRefused) {
  auto minter = NewMinter();
  KeyAndCert legacy = testing::MakeServerCert(public_root_, {.cn = "legacy.example"});
  auto leaf = minter->MintFor(legacy.cert.get(), "legacy.example");
  ASSERT_TRUE(leaf.ok()) << leaf.status();
  EXPECT_EQ(testing::SanStrings((*leaf)->cert), std::vector<std::string>{"DNS:legacy.example"});

  KeyAndCert nameless = testing::MakeServerCert(public_root_, {.emails = {"a@b.example"}});
  EXPECT_EQ(minter->MintFor(nameless.cert.get(), "").status().code(), absl::StatusCode::kInvalidArgument);

  // SAN-only upstream (empty subject): the leaf's SAN is critical, per RFC 5280.
  KeyAndCert san_only = testing::MakeServerCert(public_root_, {.dns = {"san.example"}});
  auto leaf2 = minter->MintFor(san_only.cert.get(), "san.example");
  ASSERT_TRUE(leaf2.ok()) << leaf2.status();
  X509* c = (*leaf2)->cert;
  EXPECT_EQ(X509_EXTENSION_get_critical(X509_get_ext(c, X509_get_ext_by_NID(c, NID_subject_alt_name, -1))), 1);
  EXPECT_EQ(testing::Verify(c, {ca_->cert()}, nullptr, "san.example"), X509_V_OK);
}

TEST_F(LeafMinterTest, CacheHitsOnSameUpstreamAndSniOnly) {
  auto minter = NewMinter();
  KeyAndCert up1 = testing::MakeServerCert(public_root_, {.cn = "c.example", .dns = {"c.example", "d.example"}});
  KeyAndCert up2 = testing::MakeServerCert(public_root_, {.cn = "c.example", .dns = {"c.example", "d.example"}});
  auto a = minter->MintFor(up1.cert.get(), "c.example");
  auto b = minter->MintFor(up1.cert.get(), "c.example");
  auto c = minter->MintFor(up1.cert.get(), "d.example");   // other SNI: new key
  auto d = minter->MintFor(up2.cert.get(), "c.example");   // re-issued upstream: new key
  ASSERT_TRUE(a.ok() && b.ok() && c.ok() && d.ok());
  EXPECT_EQ(a->get(), b->get());
  EXPECT_NE(a->get(), c->get());
  EXPECT_NE(a->get(), d->get());
  LeafCacheStats s = minter->cache_stats();
  EXPECT_EQ(s.hits, 1u);
  EXPECT_EQ(s.misses, 3u);
  EXPECT_EQ(s.size, 3u);
}

TEST_F(LeafMinterTest, LeafKeysComeFromARotatingPool) {
  std::atomic<std::time_t> now{std::time(nullptr)};
  LeafMinterOptions opts;
  opts.key_pool_size = 2;
  opts.key_rotation = std::chrono::hours(1);
  opts.clock = [&now] { return now.load(); };
  auto minter = NewMinter(opts);
  std::vector<KeyAndCert> ups;
  for (int i = 0; i < 4; ++i) {
    ups.push_back(testing::MakeServerCert(public_root_, {.cn = "k.example", .dns = {"k.example"}}));
  }
  std::set<const EVP_PKEY*> first_keys;
  LeafPtr first_leaf;
  for (auto& u : ups) {
    auto leaf = minter->MintFor(u.cert.get(), "k.example");
    ASSERT_TRUE(leaf.ok());
    if (!first_leaf) first_leaf = *leaf;
    first_keys.insert((*leaf)->key);
  }
  EXPECT_EQ(first_keys.size(), 2u);  // 4 leaves spread over a pool of 2 keys
  EXPECT_EQ(minter->key_pool().rotations(), 0u);

  // An hour later the pool is replaced, and cached leaves on the old keys are re-minted.
  now += 3601;
  auto leaf = minter->MintFor(ups[0].cert.get(), "k.example");
  ASSERT_TRUE(leaf.ok());
  EXPECT_NE(leaf->get(), first_leaf.get());
  EXPECT_EQ(minter->key_pool().rotations(), 1u);
  for (const EVP_PKEY* old_key : first_keys) EXPECT_NE(EVP_PKEY_eq((*leaf)->key, old_key), 1);
  EXPECT_EQ(minter->cache_stats().expirations, 1u);
}

TEST_F(LeafMinterTest, MintForIsSafeUnderConcurrentThreads) {
  // A cache far smaller than the working set, so threads mint, insert, evict and hit at once.
  auto minter = NewMinter(LeafMinterOptions{.cache_capacity = 4, .cache_shards = 2, .key_pool_size = 2});
  std::vector<KeyAndCert> ups;
  for (int i = 0; i < 6; ++i) {
    std::string host = "t" + std::to_string(i) + ".example";
    ups.push_back(testing::MakeServerCert(public_root_, {.cn = host, .dns = {host}}));
  }
  constexpr int kThreads = 4;
  constexpr int kPerThread = 60;
  std::vector<std::vector<LeafPtr>> got(kThreads);
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        std::size_t u = static_cast<std::size_t>(i * 5 + t) % ups.size();
        auto leaf = minter->MintFor(ups[u].cert.get(), "t" + std::to_string(u) + ".example");
        if (!leaf.ok()) {
          ++failures;
          continue;
        }
        got[t].push_back(*leaf);
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  LeafCacheStats s = minter->cache_stats();
  EXPECT_EQ(s.hits + s.misses, static_cast<std::uint64_t>(kThreads * kPerThread));
  EXPECT_LE(s.size, s.capacity);
  // Every leaf handed out (including evicted ones still held) is intact and verifies.
  for (const auto& leaves : got) {
    for (const auto& leaf : leaves) {
      ASSERT_EQ(testing::Verify(leaf->cert, {ca_->cert()}, nullptr, ""), X509_V_OK);
      ASSERT_EQ(X509_check_private_key(leaf->cert, leaf->key), 1);
    }
  }
}

TEST_F(LeafMinterTest, CacheKeyIsTheSha256OfTheUpstreamDerAndTheSni) {
  auto minter = NewMinter();
  for (const char* host : {"k1.example", "k2.example"}) {
    KeyAndCert up = testing::MakeServerCert(public_root_, {.cn = host, .dns = {host}});
    // Parsed off the wire, as the proxy's upstream certificates are (cached encoding).
    unsigned char* der = nullptr;
    int len = i2d_X509(up.cert.get(), &der);
    ASSERT_GT(len, 0);
    const unsigned char* p = der;
    X509Ptr parsed(d2i_X509(nullptr, &p, len));
    OPENSSL_free(der);
    ASSERT_TRUE(parsed);
    for (X509* cert : {up.cert.get(), parsed.get()}) {
      std::array<unsigned char, 32> want{};
      unsigned int want_len = 0;
      ASSERT_EQ(X509_digest(cert, EVP_sha256(), want.data(), &want_len), 1);
      auto key = minter->CacheKeyFor(cert, host);
      ASSERT_TRUE(key.ok()) << key.status();
      EXPECT_EQ(key->upstream_sha256, want);
      EXPECT_EQ(key->sni, host);
    }
  }
  EXPECT_FALSE(minter->CacheKeyFor(nullptr, "x").ok());
}

TEST_F(LeafMinterTest, EvictedLeavesAreReleasedAndTheRestStayCached) {
  // Leaves a handshake has used (encoded, extensions decoded) are evicted and freed by the
  // cache itself, two at a time (128 entries in one shard), once nothing else holds them.
  constexpr int kCapacity = 128;
  auto minter = NewMinter(LeafMinterOptions{.cache_capacity = kCapacity, .cache_shards = 1});
  ASSERT_EQ(minter->cache().release_batch(), 2u);
  KeyAndCert up = testing::MakeServerCert(public_root_, {.cn = "e.example", .dns = {"e.example", "f.example"}});
  auto sni = [](int i) { return "e" + std::to_string(i) + ".example.com"; };
  std::weak_ptr<const Leaf> first;
  LeafPtr held;  // evicted while a connection still uses it
  for (int i = 0; i < kCapacity + 4; ++i) {
    auto leaf = minter->MintFor(up.cert.get(), sni(i));
    ASSERT_TRUE(leaf.ok()) << leaf.status();
    if (i == 0) first = *leaf;
    if (i == 1) held = *leaf;
    unsigned char* der = nullptr;
    ASSERT_GT(i2d_X509((*leaf)->cert, &der), 0);
    OPENSSL_free(der);
    ASSERT_EQ(X509_check_purpose((*leaf)->cert, X509_PURPOSE_SSL_SERVER, 0), 1);
  }
  EXPECT_TRUE(first.expired());
  EXPECT_EQ(held.use_count(), 1);
  EXPECT_EQ(testing::Verify(held->cert, {ca_->cert()}, nullptr, "e.example"), X509_V_OK);
  LeafCacheStats s = minter->cache_stats();
  EXPECT_EQ(s.evictions, 4u);
  EXPECT_EQ(s.size, static_cast<std::size_t>(kCapacity));
  for (int i = kCapacity + 2; i < kCapacity + 4; ++i) {
    auto leaf = minter->MintFor(up.cert.get(), sni(i));
    ASSERT_TRUE(leaf.ok());
    EXPECT_EQ(testing::Verify((*leaf)->cert, {ca_->cert()}, nullptr, ""), X509_V_OK);
  }
  EXPECT_EQ(minter->cache_stats().hits, 2u);
}

TEST_F(LeafMinterTest, RejectsBadOptionsAndNullUpstream) {
  EXPECT_FALSE(OpenSslLeafMinter::Create(ca_, LeafMinterOptions{.leaf_days = 0}).ok());
  EXPECT_FALSE(OpenSslLeafMinter::Create(ca_, LeafMinterOptions{.leaf_days = 1000}).ok());
  EXPECT_FALSE(OpenSslLeafMinter::Create(nullptr).ok());
  auto minter = NewMinter();
  EXPECT_FALSE(minter->MintFor(nullptr, "x").ok());
}

}  // namespace
}  // namespace egressguard::ca
