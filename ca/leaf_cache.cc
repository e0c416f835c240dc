#include "ca/leaf_cache.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <functional>

#include "ca/leaf_release.h"

namespace egressguard::ca {

namespace {

constexpr std::size_t kMaxReleaseBatch = 8;  // most of the gain of overlapping misses; see leaf_release.h

std::uint64_t Load64(const unsigned char* p) {
  std::uint64_t v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

}  // namespace

std::size_t LeafCache::SlotHash::operator()(const LeafCacheKey& k) const {
  // The digest is already uniformly random; only the SNI needs hashing.
  std::uint64_t h = Load64(k.upstream_sha256.data());
  if (!k.sni.empty()) h ^= std::hash<std::string>{}(k.sni) * 0x9E3779B97F4A7C15ULL;
  return static_cast<std::size_t>(h);
}

LeafCache::LeafCache(std::size_t capacity, std::size_t shards) {
  capacity = std::max<std::size_t>(capacity, 1);
  shards = std::clamp<std::size_t>(shards, 1, capacity);
  per_shard_capacity_ = (capacity + shards - 1) / shards;
  capacity_ = per_shard_capacity_ * shards;
  release_batch_ = std::clamp<std::size_t>(per_shard_capacity_ / 64, 1, kMaxReleaseBatch);
  shards_.reserve(shards);
  for (std::size_t i = 0; i < shards; ++i) {
    shards_.push_back(std::make_unique<Shard>());
    shards_.back()->index.reserve(per_shard_capacity_);
    shards_.back()->evicted.reserve(release_batch_);
  }
}

LeafCache::Shard& LeafCache::ShardFor(std::size_t hash) {
  // The index takes its in-group tag from the hash's low 7 bits and its position from the
  // bits above; the shard comes from the top bits, so the entries of one shard do not
  // share tag bits (which would make most probes compare a cold key).
  return *shards_[(hash >> 48) % shards_.size()];
}

std::vector<LeafPtr> LeafCache::Retire(Shard& s, LeafPtr leaf) {
  s.evicted.push_back(std::move(leaf));
  if (s.evicted.size() < release_batch_) return {};
  std::vector<LeafPtr> batch;
  batch.reserve(release_batch_);
  batch.swap(s.evicted);
  return batch;
}

LeafPtr LeafCache::Lookup(const LeafCacheKey& key, std::time_t now) {
  std::size_t hash = SlotHash{}(key);
  Shard& s = ShardFor(hash);
  std::vector<LeafPtr> release;
  {
    std::lock_guard lock(s.mu);
    auto it = s.index.find(key, hash);
    if (it == s.index.end()) {
      ++s.misses;
      return nullptr;
    }
    EntryIt entry = it->entry;
    if (entry->fresh_until > now) {
      s.lru.splice(s.lru.begin(), s.lru, entry);
      ++s.hits;
      return entry->leaf;
    }
    release = Retire(s, std::move(entry->leaf));
    s.index.erase(it);
    s.lru.erase(entry);
    ++s.expirations;
    ++s.misses;
  }
  ReleaseLeaves(release);
  return nullptr;
}

LeafPtr LeafCache::Insert(LeafCacheKey key, LeafPtr leaf, std::time_t fresh_until) {
  std::size_t hash = SlotHash{}(key);
  Shard& s = ShardFor(hash);
  // Leaves are freed after the lock: freeing X509 objects is not free.
  LeafPtr replaced;
  std::vector<LeafPtr> release;
  LeafPtr out;
  {
    std::lock_guard lock(s.mu);
    if (auto it = s.index.find(key, hash); it != s.index.end()) {
      // Two threads missed on the same key at once: keep whichever leaf stays fresh longer.
      EntryIt entry = it->entry;
      s.lru.splice(s.lru.begin(), s.lru, entry);
      if (entry->fresh_until < fresh_until) {
        replaced = std::move(entry->leaf);
        entry->leaf = std::move(leaf);
        entry->fresh_until = fresh_until;
      }
      return entry->leaf;
    }
    if (s.lru.size() >= per_shard_capacity_) {
      EntryIt victim = std::prev(s.lru.end());
      release = Retire(s, std::move(victim->leaf));
      // A slot left behind would point at the freed node (a use after free on the next
      // probe that reaches it): an index that lost track of an entry is not served from.
      if (s.index.erase(Slot{victim->hash, victim}) != 1) std::abort();
      s.lru.pop_back();
      ++s.evictions;
    }
    s.lru.push_front(Entry{std::move(key), hash, std::move(leaf), fresh_until});
    s.index.insert(Slot{hash, s.lru.begin()});
    out = s.lru.front().leaf;
  }
  ReleaseLeaves(release);
  return out;
}

void LeafCache::Clear() {
  for (auto& s : shards_) {
    std::list<Entry> drop;
    std::vector<LeafPtr> evicted;
    {
      std::lock_guard lock(s->mu);
      drop.swap(s->lru);
      evicted.swap(s->evicted);
      s->evicted.reserve(release_batch_);
      s->index.clear();
    }
  }
}

LeafCacheStats LeafCache::Stats() const {
  LeafCacheStats out;
  out.capacity = capacity_;
  for (const auto& s : shards_) {
    std::lock_guard lock(s->mu);
    out.hits += s->hits;
    out.misses += s->misses;
    out.evictions += s->evictions;
    out.expirations += s->expirations;
    out.size += s->lru.size();
  }
  return out;
}

}  // namespace egressguard::ca
