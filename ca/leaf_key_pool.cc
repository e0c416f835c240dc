// OpenSSL 3.0 encodes a provider-native key into a certificate through OSSL_ENCODER, which
// costs ~400 us per X509_set_pubkey: eight ECDSA signatures. A key backed by a legacy
// EC_KEY takes the direct encoding path (~1 us). That conversion needs the deprecated
// EC_KEY API; it is confined to this file.
#define OPENSSL_SUPPRESS_DEPRECATED 1

#include "ca/leaf_key_pool.h"

#include <openssl/ec.h>

#include "ca/x509_util.h"

namespace egressguard::ca {

namespace {

// A fresh P-256 key whose EVP_PKEY wraps a legacy EC_KEY (see above).
absl::StatusOr<EvpPkeyPtr> GenerateFastEncodingP256Key() {
  EvpPkeyPtr provider_key(EVP_EC_gen("P-256"));
  if (!provider_key) return OpenSslError(absl::StatusCode::kInternal, "generating a leaf key");
  EC_KEY* ec = EVP_PKEY_get1_EC_KEY(provider_key.get());
  EvpPkeyPtr key(EVP_PKEY_new());
  if (ec == nullptr || !key || EVP_PKEY_assign_EC_KEY(key.get(), ec) != 1) {
    EC_KEY_free(ec);
    return OpenSslError(absl::StatusCode::kInternal, "converting a leaf key");
  }
  return key;
}

}  // namespace

absl::StatusOr<std::unique_ptr<LeafKeyPool>> LeafKeyPool::Create(std::size_t size,
                                                                 std::chrono::seconds rotate_every,
                                                                 std::time_t now) {
  if (size < 1 || size > 1024) return absl::InvalidArgumentError("leaf key pool size must be 1..1024");
  if (rotate_every.count() < 1) return absl::InvalidArgumentError("leaf key rotation interval must be >= 1 s");
  std::unique_ptr<LeafKeyPool> pool(new LeafKeyPool(size, rotate_every));
  auto first = pool->Generate(now);
  if (!first.ok()) return first.status();
  pool->current_ = std::move(*first);
  return pool;
}

absl::StatusOr<std::shared_ptr<const LeafKeyGeneration>> LeafKeyPool::Generate(std::time_t now) const {
  auto gen = std::make_shared<LeafKeyGeneration>();
  gen->created = now;
  gen->retire_at = now + static_cast<std::time_t>(rotate_every_.count());
  gen->keys.reserve(size_);
  for (std::size_t i = 0; i < size_; ++i) {
    auto key = GenerateFastEncodingP256Key();
    if (!key.ok()) return key.status();
    auto ski = MakeSubjectKeyIdentifier(key->get());
    if (!ski.ok()) return ski.status();
    gen->keys.push_back(PooledLeafKey{std::move(*key), std::move(*ski)});
  }
  return std::shared_ptr<const LeafKeyGeneration>(std::move(gen));
}

absl::StatusOr<std::shared_ptr<const LeafKeyGeneration>> LeafKeyPool::Current(std::time_t now) {
  std::lock_guard lock(mu_);
  if (now < current_->retire_at) return current_;
  // Key generation under the lock: it is rare (once per interval) and ~0.1 ms for a small pool,
  // and it keeps concurrent callers from generating several replacements.
  auto next = Generate(now);
  if (!next.ok()) return next.status();
  current_ = std::move(*next);
  rotations_.fetch_add(1, std::memory_order_relaxed);
  return current_;
}

const PooledLeafKey& LeafKeyPool::Pick(const LeafKeyGeneration& generation) {
  return generation.keys[next_.fetch_add(1, std::memory_order_relaxed) % generation.keys.size()];
}

}  // namespace egressguard::ca
