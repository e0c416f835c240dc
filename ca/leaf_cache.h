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
#include <vector>

#include "absl/container/flat_hash_set.h"

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
  // Drops every entry (and frees every leaf evicted but not yet released).
  void Clear();
  LeafCacheStats Stats() const;
  // Evicted leaves are freed this many at a time (see leaf_release.h); between batches a
  // shard holds fewer than this many of them, never more than 1/64 of its capacity.
  std::size_t release_batch() const { return release_batch_; }

 private:
  struct Entry {
    LeafCacheKey key;
    std::size_t hash;  // SlotHash of `key`
    LeafPtr leaf;
    std::time_t fresh_until;
  };
  using EntryIt = std::list<Entry>::iterator;
  // The index holds each entry's hash beside its list position (list nodes never move), so
  // a key is stored once, and neither probing nor evicting reads a cold entry to rehash it:
  // a miss in a full cache touches the victim's node and a few index lines, not a chain.
  struct Slot {
    std::size_t hash;
    EntryIt entry;
  };
  struct SlotHash {
    using is_transparent = void;
    std::size_t operator()(const Slot& s) const { return s.hash; }
    std::size_t operator()(const LeafCacheKey& k) const;
  };
  struct SlotEqual {
    using is_transparent = void;
    bool operator()(const Slot& a, const Slot& b) const { return a.entry == b.entry; }
    bool operator()(const Slot& a, const LeafCacheKey& k) const { return a.entry->key == k; }
    bool operator()(const LeafCacheKey& k, const Slot& a) const { return a.entry->key == k; }
  };
  // Padded to a cache line so shards' locks and counters do not share one.
  struct alignas(64) Shard {
    mutable std::mutex mu;
    std::list<Entry> lru;  // front = most recently used
    absl::flat_hash_set<Slot, SlotHash, SlotEqual> index;
    std::vector<LeafPtr> evicted;  // out of the cache, waiting for a full batch to free
    std::uint64_t hits = 0, misses = 0, evictions = 0, expirations = 0;
  };

  Shard& ShardFor(std::size_t hash);
  // Moves an entry's leaf out to be freed; returns the shard's batch when it is full
  // (the caller releases it after the lock), else an empty vector.
  std::vector<LeafPtr> Retire(Shard& s, LeafPtr leaf);

  std::size_t per_shard_capacity_;
  std::size_t capacity_;
  std::size_t release_batch_;
  std::vector<std::unique_ptr<Shard>> shards_;
};

}  // namespace egressguard::ca
