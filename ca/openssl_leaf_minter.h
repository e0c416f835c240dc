#pragma once
// OpenSslLeafMinter: the LeafMinter the proxy uses. Mints a leaf from a verified
// upstream certificate, signed by the cluster CA, carrying a pooled leaf key; caches it.
//
// Everything that does not depend on the upstream certificate (issuer name, AKI, the
// fixed extensions, the signature algorithm, the chain, the pooled keys, their SKIs and
// encodings) is built once. A cache miss writes the to-be-signed DER itself (ca/leaf_der.h)
// and signs it once, instead of letting X509_sign re-encode the object through OpenSSL's
// template encoder; Create proves on a probe leaf that the object re-encodes to the bytes
// that were signed.

#include <chrono>
#include <cstddef>
#include <ctime>
#include <functional>
#include <memory>
#include <mutex>
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
  // Mints a leaf for a made-up upstream and verifies its signature over the object's own
  // encoding: the hand-written TBS and OpenSSL's encoder must agree.
  absl::Status SelfCheck();

  std::shared_ptr<const CertificateAuthority> ca_;
  LeafMinterOptions options_;
  LeafCache cache_;
  std::unique_ptr<LeafKeyPool> key_pool_;
  EvpMdPtr sha256_;
  std::time_t ca_not_after_ = 0;
  // A leaf extension other than the SAN: its DER for the TBS, and its parts for the object.
  struct FixedExtension {
    X509ExtensionPtr ext;
    std::string der;
  };
  std::vector<FixedExtension> fixed_extensions_;  // basicConstraints, keyUsage, extKeyUsage
  FixedExtension authority_key_id_;
  struct IssuerRdn {
    std::unique_ptr<X509_NAME_ENTRY, OpenSslDeleter<X509_NAME_ENTRY_free>> entry;
    int set = 0;  // X509_NAME_add_entry's `set`: 0 starts an RDN, -1 joins the previous one
  };
  // The CA subject entry by entry: adding copies of them costs half of
  // X509_set_issuer_name's deep copy (a d2i plus canonical re-encoding).
  std::vector<IssuerRdn> issuer_rdns_;
  std::string issuer_der_;                        // the CA subject, exactly as the CA carries it
  X509AlgorPtr signature_algorithm_;              // what the CA key's signatures are, as X.509 names it
  std::string signature_algorithm_der_;
  // Signing with the CA key: SHA-256 of the TBS, then EVP_PKEY_sign of the digest, with
  // contexts set up once and reused (setting one up, or copying a template, fetches and
  // configures the provider: ~13% of a signature in ca_bench). A mint borrows one; there
  // are as many as mints ever ran at once.
  struct Signer {
    EvpMdCtxPtr digest;
    EvpPkeyCtxPtr sign;
  };
  absl::StatusOr<std::unique_ptr<Signer>> NewSigner() const;
  absl::Status Sign(std::string_view tbs, unsigned char* signature, std::size_t* signature_len);
  std::mutex signers_mu_;
  std::vector<std::unique_ptr<Signer>> idle_signers_;
  // The issuing CA, then its issuers (up-referenced), shared by every leaf minted here.
  std::shared_ptr<STACK_OF(X509)> chain_;
};

}  // namespace egressguard::ca
