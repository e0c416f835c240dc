#pragma once
// A bounded, thread-safe LRU cache of minted leaves, sharded so that worker threads
// rarely meet on a lock. Keyed by the SHA-256 of the upstream certificate's DER plus the
// SNI the client sent: a changed upstream certificate is a new key, never a stale leaf.

#include <array>
#include <cstddef>
#include <cstdint>
#include <ctime>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "ca/leaf_minter.h"

namespace egressguard::ca {

struct LeafCacheKey {
  std::array<unsigned char, 32> upstream_sha256{};
  std::string sni;
  bool operator==(const LeafCacheKey&) const = default;
};

struct LeafCacheStats {
  std::uint64_t hits = 0;
  std::uint64_t misses = 0;       // includes lookups that found only a stale entry
  std::uint64_t evictions = 0;    // entries pushed out by capacity
  std::uint64_t expirations = 0;  // entries dropped because they were past their fresh-until time
  std::size_t size = 0;
  std::size_t capacity = 0;
};

class LeafCache {
 public:
  // `capacity` >= 1 entries in total, spread over `shards` shards (fewer when capacity is small).
  explicit LeafCache(std::size_t capacity, std::size_t shards = 16);
  LeafCache(const LeafCache&) = delete;
  LeafCache& operator=(const LeafCache&) = delete;

  // The cached leaf, or nullptr (a miss). An entry whose fresh-until time is <= `now` is
  // removed and reported as a miss.
  LeafPtr Lookup(const LeafCacheKey& key, std::time_t now);
  // Caches `leaf` until `fresh_until`, evicting the shard's least recently used entry when
  // full. When another thread cached the same key first, that leaf is kept and returned.
  LeafPtr Insert(LeafCacheKey key, LeafPtr leaf, std::time_t fresh_until);
  void Clear();
  LeafCacheStats Stats() const;

 private:
  struct Entry {
    LeafCacheKey key;
    LeafPtr leaf;
    std::time_t fresh_until;
  };
  // The index points at the key its LRU entry holds (list nodes never move), so a key is
  // stored once: a miss in a full cache allocates and frees no key copies, only the entry.
  struct KeyHash {
    using is_transparent = void;
    std::size_t operator()(const LeafCacheKey& k) const;
    std::size_t operator()(const LeafCacheKey* k) const { return (*this)(*k); }
  };
  struct KeyEqual {
    using is_transparent = void;
    static const LeafCacheKey& Deref(const LeafCacheKey& k) { return k; }
    static const LeafCacheKey& Deref(const LeafCacheKey* k) { return *k; }
    template <typename A, typename B>
    bool operator()(const A& a, const B& b) const {
      return Deref(a) == Deref(b);
    }
  };
  // Padded to a cache line so shards' locks and counters do not share one.
  struct alignas(64) Shard {
    mutable std::mutex mu;
    std::list<Entry> lru;  // front = most recently used
    std::unordered_map<const LeafCacheKey*, std::list<Entry>::iterator, KeyHash, KeyEqual> index;
    std::uint64_t hits = 0, misses = 0, evictions = 0, expirations = 0;
  };

  Shard& ShardFor(const LeafCacheKey& key);

  std::size_t per_shard_capacity_;
  std::size_t capacity_;
  std::vector<std::unique_ptr<Shard>> shards_;
};

}  // namespace egressguard::ca
