// Proves the sharded LRU leaf cache counts hits, misses, evictions and expirations exactly, evicts least-recently-used first, and stays consistent under concurrent threads.
#include "ca/leaf_cache.h"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

namespace egressguard::ca {
namespace {

LeafCacheKey Key(unsigned n, std::string sni = "") {
  LeafCacheKey k;
  // Spread n over the bytes that pick the bucket and the shard, like a real digest would.
  for (std::size_t i = 0; i < k.upstream_sha256.size(); ++i) {
    k.upstream_sha256[i] = static_cast<unsigned char>((n * 2654435761u) >> ((i % 4) * 8));
  }
  k.upstream_sha256[31] = static_cast<unsigned char>(n);
  k.upstream_sha256[30] = static_cast<unsigned char>(n >> 8);
  k.sni = std::move(sni);
  return k;
}

LeafPtr NewLeaf() { return std::make_shared<const Leaf>(); }

constexpr std::time_t kNow = 1'000'000;
constexpr std::time_t kLater = kNow + 3600;

TEST(LeafCacheTest, CountsHitsAndMissesAndKeysIncludeSni) {
  LeafCache cache(100, 4);
  EXPECT_EQ(cache.Lookup(Key(1, "a.example"), kNow), nullptr);
  LeafPtr leaf = NewLeaf();
  EXPECT_EQ(cache.Insert(Key(1, "a.example"), leaf, kLater), leaf);
  EXPECT_EQ(cache.Lookup(Key(1, "a.example"), kNow), leaf);
  EXPECT_EQ(cache.Lookup(Key(1, "a.example"), kNow), leaf);
  EXPECT_EQ(cache.Lookup(Key(1, "b.example"), kNow), nullptr);
  EXPECT_EQ(cache.Lookup(Key(2, "a.example"), kNow), nullptr);
  LeafCacheStats s = cache.Stats();
  EXPECT_EQ(s.hits, 2u);
  EXPECT_EQ(s.misses, 3u);
  EXPECT_EQ(s.evictions, 0u);
  EXPECT_EQ(s.size, 1u);
  EXPECT_EQ(s.capacity, 100u);
}

TEST(LeafCacheTest, EvictsLeastRecentlyUsed) {
  LeafCache cache(3, 1);  // one shard, so the LRU order is global
  std::vector<LeafPtr> leaves;
  for (unsigned i = 0; i < 3; ++i) {
    leaves.push_back(NewLeaf());
    cache.Insert(Key(i), leaves.back(), kLater);
  }
  ASSERT_EQ(cache.Lookup(Key(0), kNow), leaves[0]);  // 0 is now most recent; 1 is the LRU
  cache.Insert(Key(3), NewLeaf(), kLater);
  EXPECT_EQ(cache.Lookup(Key(1), kNow), nullptr);
  EXPECT_EQ(cache.Lookup(Key(0), kNow), leaves[0]);
  EXPECT_EQ(cache.Lookup(Key(2), kNow), leaves[2]);
  LeafCacheStats s = cache.Stats();
  EXPECT_EQ(s.evictions, 1u);
  EXPECT_EQ(s.size, 3u);
  // The evicted key left the index: its lookup was a miss, not a hit on a stale entry.
  EXPECT_EQ(s.hits, 3u);
  EXPECT_EQ(s.misses, 1u);
  // An evicted leaf still held by a connection stays alive.
  EXPECT_EQ(leaves[1].use_count(), 1);
  // The evicted key left the index with its entry: inserting it again makes a new entry
  // (which evicts the LRU, key 3), found by the next lookup.
  auto again = NewLeaf();
  EXPECT_EQ(cache.Insert(Key(1), again, kLater), again);
  EXPECT_EQ(cache.Lookup(Key(1), kNow), again);
  EXPECT_EQ(cache.Lookup(Key(3), kNow), nullptr);
  EXPECT_EQ(cache.Stats().evictions, 2u);
}

TEST(LeafCacheTest, EvictedLeavesAreFreedInBatchesAndByClear) {
  LeafCache cache(1024, 1);  // 1024 per shard: batches of 8 (capacity / 64, at most 8)
  ASSERT_EQ(cache.release_batch(), 8u);
  std::vector<std::weak_ptr<const Leaf>> leaves;
  for (unsigned i = 0; i < 1024 + 7; ++i) {
    LeafPtr leaf = NewLeaf();
    leaves.push_back(leaf);
    cache.Insert(Key(i), std::move(leaf), kLater);
  }
  // Seven evicted, out of the cache, not freed yet.
  EXPECT_EQ(cache.Stats().evictions, 7u);
  EXPECT_EQ(cache.Lookup(Key(0), kNow), nullptr);
  for (unsigned i = 0; i < 7; ++i) EXPECT_FALSE(leaves[i].expired()) << i;
  // A connection still holds the next victim: the batch frees the others, not that one.
  LeafPtr held = leaves[7].lock();
  cache.Insert(Key(5000), NewLeaf(), kLater);
  for (unsigned i = 0; i < 7; ++i) EXPECT_TRUE(leaves[i].expired()) << i;
  EXPECT_EQ(held.use_count(), 1);
  EXPECT_FALSE(leaves[8].expired());
  // Expired entries join the batch too; Clear frees what is waiting.
  LeafCache small(1024, 1);
  LeafPtr stale = NewLeaf();
  std::weak_ptr<const Leaf> stale_ref = stale;
  small.Insert(Key(1), std::move(stale), kNow + 10);
  EXPECT_EQ(small.Lookup(Key(1), kNow + 10), nullptr);
  EXPECT_FALSE(stale_ref.expired());
  small.Clear();
  EXPECT_TRUE(stale_ref.expired());
  EXPECT_EQ(small.Stats().expirations, 1u);
}

TEST(LeafCacheTest, StaleEntriesAreDroppedAsMisses) {
  LeafCache cache(10, 2);
  cache.Insert(Key(7), NewLeaf(), kNow + 10);
  EXPECT_NE(cache.Lookup(Key(7), kNow + 9), nullptr);
  EXPECT_EQ(cache.Lookup(Key(7), kNow + 10), nullptr);
  LeafCacheStats s = cache.Stats();
  EXPECT_EQ(s.expirations, 1u);
  EXPECT_EQ(s.misses, 1u);
  EXPECT_EQ(s.size, 0u);
}

TEST(LeafCacheTest, ConcurrentInsertKeepsTheFresherLeaf) {
  LeafCache cache(10, 2);
  LeafPtr first = NewLeaf(), second = NewLeaf();
  EXPECT_EQ(cache.Insert(Key(5), first, kLater), first);
  EXPECT_EQ(cache.Insert(Key(5), second, kLater), first);       // same freshness: first wins
  EXPECT_EQ(cache.Insert(Key(5), second, kLater + 1), second);  // fresher replaces
  EXPECT_EQ(cache.Stats().size, 1u);
}

TEST(LeafCacheTest, ClearEmptiesButKeepsCounters) {
  LeafCache cache(10, 2);
  cache.Insert(Key(1), NewLeaf(), kLater);
  cache.Lookup(Key(1), kNow);
  cache.Clear();
  EXPECT_EQ(cache.Lookup(Key(1), kNow), nullptr);
  LeafCacheStats s = cache.Stats();
  EXPECT_EQ(s.size, 0u);
  EXPECT_EQ(s.hits, 1u);
}

TEST(LeafCacheTest, ConsistentUnderConcurrentThreads) {
  constexpr std::size_t kCapacity = 64;
  constexpr unsigned kThreads = 8;
  constexpr unsigned kOps = 20000;
  constexpr unsigned kKeys = 256;  // 4x capacity: forces evictions while others read
  LeafCache cache(kCapacity, 8);
  std::vector<std::thread> threads;
  std::vector<std::uint64_t> lookups(kThreads, 0);
  for (unsigned t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (unsigned i = 0; i < kOps; ++i) {
        unsigned k = (i * 7919u + t * 104729u) % kKeys;
        std::string sni = (k % 3 == 0) ? "" : "host" + std::to_string(k % 5);
        LeafPtr hit = cache.Lookup(Key(k, sni), kNow);
        ++lookups[t];
        if (!hit) {
          LeafPtr resident = cache.Insert(Key(k, sni), NewLeaf(), kLater);
          ASSERT_NE(resident, nullptr);
        }
        if (i % 5000 == 0) (void)cache.Stats();
      }
    });
  }
  for (auto& th : threads) th.join();
  LeafCacheStats s = cache.Stats();
  std::uint64_t total = 0;
  for (auto n : lookups) total += n;
  EXPECT_EQ(s.hits + s.misses, total);
  EXPECT_LE(s.size, s.capacity);
  EXPECT_GE(s.size, 1u);
  EXPECT_GT(s.evictions, 0u);
  EXPECT_GT(s.hits, 0u);
  // Every miss inserted; entries either remain, were evicted, or were a racing duplicate.
  EXPECT_LE(s.size + s.evictions, s.misses);
}

TEST(LeafCacheTest, CapacityIsAtLeastOne) {
  LeafCache cache(0, 16);
  EXPECT_EQ(cache.Stats().capacity, 1u);
  cache.Insert(Key(1), NewLeaf(), kLater);
  cache.Insert(Key(2), NewLeaf(), kLater);
  EXPECT_EQ(cache.Stats().size, 1u);
  EXPECT_EQ(cache.Stats().evictions, 1u);
}

}  // namespace
}  // namespace egressguard::ca
