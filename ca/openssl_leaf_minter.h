#pragma once
// OpenSslLeafMinter: the LeafMinter the proxy uses. Mints a leaf from a verified
// upstream certificate, signed by the cluster CA, carrying a pooled leaf key; caches it.
//
// Everything that does not depend on the upstream certificate (issuer name, AKI, the
// fixed extensions, the chain, the pooled keys and their SKIs) is built once, so a cache
// miss is one signature plus X.509 assembly.

#include <chrono>
#include <cstddef>
#include <ctime>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "ca/certificate_authority.h"
#include "ca/leaf_cache.h"
#include "ca/leaf_key_pool.h"
#include "ca/leaf_minter.h"
#include "ca/openssl_types.h"

namespace egressguard::ca {

struct LeafMinterOptions {
  int leaf_days = 30;                 // upper bound; the upstream's notAfter may cut it shorter
  std::size_t cache_capacity = 10000;
  std::size_t cache_shards = 16;
  std::size_t key_pool_size = 4;
  std::chrono::seconds key_rotation = std::chrono::hours(24);
  std::function<std::time_t()> clock{};  // empty: std::time
};

class OpenSslLeafMinter final : public LeafMinter {
 public:
  // The minter keeps `ca` alive; after `ca rotate` build a new minter for the new CA.
  static absl::StatusOr<std::unique_ptr<OpenSslLeafMinter>> Create(std::shared_ptr<const CertificateAuthority> ca,
                                                                   LeafMinterOptions options = {});

  // LeafMinter
  absl::StatusOr<LeafPtr> MintFor(X509* verified_upstream, std::string_view sni) override;

  // Mints a fresh leaf, bypassing the cache (debugging, benchmarks).
  absl::StatusOr<LeafPtr> MintUncached(X509* verified_upstream);
  // The cache key MintFor uses: SHA-256 of the upstream DER, plus the SNI.
  absl::StatusOr<LeafCacheKey> CacheKeyFor(X509* upstream, std::string_view sni) const;
  LeafCache& cache() { return cache_; }
  LeafCacheStats cache_stats() const { return cache_.Stats(); }
  const LeafKeyPool& key_pool() const { return *key_pool_; }

 private:
  OpenSslLeafMinter(std::shared_ptr<const CertificateAuthority> ca, LeafMinterOptions options);
  std::time_t Now() const;
  absl::StatusOr<LeafPtr> Mint(X509* upstream, std::time_t now, std::time_t* fresh_until);

  std::shared_ptr<const CertificateAuthority> ca_;
  LeafMinterOptions options_;
  LeafCache cache_;
  std::unique_ptr<LeafKeyPool> key_pool_;
  EvpMdPtr sha256_;
  std::time_t ca_not_after_ = 0;
  struct IssuerRdn {
    std::unique_ptr<ASN1_OBJECT, OpenSslDeleter<ASN1_OBJECT_free>> object;
    int type = 0;  // the ASN.1 string type, kept so the issuer matches the CA subject byte for byte
    std::string value;
    int new_set = 0;
  };
  std::vector<IssuerRdn> issuer_rdns_;  // the CA subject, entry by entry
  X509ExtensionPtr basic_constraints_;
  X509ExtensionPtr key_usage_;
  X509ExtensionPtr extended_key_usage_;
  X509ExtensionPtr authority_key_id_;
  std::vector<X509*> chain_;  // borrowed from ca_: the issuing CA, then its issuers
};

}  // namespace egressguard::ca
