#pragma once
// The keys leaf certificates carry: a small pool of ECDSA P-256 keys, replaced wholesale
// on a schedule. Never the CA key, so a leaked leaf key (they sit in every worker's
// memory and SSL objects) can impersonate only what leaves it signed could, and only
// until the pool rotates and the cache ages those leaves out.

#include <atomic>
#include <chrono>
#include <cstddef>
#include <ctime>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "ca/openssl_types.h"

namespace egressguard::ca {

struct PooledLeafKey {
  EvpPkeyPtr key;
  X509ExtensionPtr subject_key_id;  // precomputed: it depends only on the key
  Asn1OctetStringPtr subject_key_id_value;  // the same, as the key identifier itself
  std::string spki_der;             // the key's SubjectPublicKeyInfo, as the leaf TBS carries it
  std::string subject_key_id_der;   // the SKI extension, DER
};

struct LeafKeyGeneration {
  std::vector<PooledLeafKey> keys;
  std::time_t created = 0;
  std::time_t retire_at = 0;  // replaced by a new generation from this time on
};

class LeafKeyPool {
 public:
  // `size` keys per generation (>= 1); a generation lives `rotate_every` (>= 1 s).
  static absl::StatusOr<std::unique_ptr<LeafKeyPool>> Create(std::size_t size, std::chrono::seconds rotate_every,
                                                             std::time_t now);

  // The generation in force at `now`; the first caller past retire_at generates the next.
  absl::StatusOr<std::shared_ptr<const LeafKeyGeneration>> Current(std::time_t now);
  // Spreads leaves over the generation's keys (round robin).
  const PooledLeafKey& Pick(const LeafKeyGeneration& generation);

  std::chrono::seconds rotate_every() const { return rotate_every_; }
  std::uint64_t rotations() const { return rotations_.load(std::memory_order_relaxed); }

 private:
  LeafKeyPool(std::size_t size, std::chrono::seconds rotate_every) : size_(size), rotate_every_(rotate_every) {}
  absl::StatusOr<std::shared_ptr<const LeafKeyGeneration>> Generate(std::time_t now) const;

  std::size_t size_;
  std::chrono::seconds rotate_every_;
  std::mutex mu_;
  std::shared_ptr<const LeafKeyGeneration> current_;  // guarded by mu_
  std::atomic<std::uint64_t> next_{0};
  std::atomic<std::uint64_t> rotations_{0};  // generations replaced so far
};

}  // namespace egressguard::ca
