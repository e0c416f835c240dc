#include "ca/leaf_cache.h"

#include <algorithm>
#include <cstring>
#include <functional>

namespace egressguard::ca {

namespace {

std::uint64_t Load64(const unsigned char* p) {
  std::uint64_t v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

}  // namespace

std::size_t LeafCache::KeyHash::operator()(const LeafCacheKey& k) const {
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
  shards_.reserve(shards);
  for (std::size_t i = 0; i < shards; ++i) {
    shards_.push_back(std::make_unique<Shard>());
    shards_.back()->index.reserve(per_shard_capacity_);
  }
}

LeafCache::Shard& LeafCache::ShardFor(const LeafCacheKey& key) {
  // Different digest bytes than the map's bucket hash, so shard and bucket stay independent.
  std::uint64_t h = Load64(key.upstream_sha256.data() + 8);
  if (!key.sni.empty()) h += std::hash<std::string>{}(key.sni);
  return *shards_[h % shards_.size()];
}

LeafPtr LeafCache::Lookup(const LeafCacheKey& key, std::time_t now) {
  Shard& s = ShardFor(key);
  std::lock_guard lock(s.mu);
  auto it = s.index.find(key);
  if (it == s.index.end()) {
    ++s.misses;
    return nullptr;
  }
  if (it->second->fresh_until <= now) {
    auto entry = it->second;
    s.index.erase(it);
    s.lru.erase(entry);
    ++s.expirations;
    ++s.misses;
    return nullptr;
  }
  s.lru.splice(s.lru.begin(), s.lru, it->second);
  ++s.hits;
  return it->second->leaf;
}

LeafPtr LeafCache::Insert(LeafCacheKey key, LeafPtr leaf, std::time_t fresh_until) {
  Shard& s = ShardFor(key);
  // The evicted leaf is released after the lock: freeing X509 objects is not free.
  LeafPtr evicted;
  std::lock_guard lock(s.mu);
  if (auto it = s.index.find(key); it != s.index.end()) {
    // Two threads missed on the same key at once: keep whichever leaf stays fresh longer.
    s.lru.splice(s.lru.begin(), s.lru, it->second);
    if (it->second->fresh_until < fresh_until) {
      evicted = std::move(it->second->leaf);
      it->second->leaf = std::move(leaf);
      it->second->fresh_until = fresh_until;
    }
    return it->second->leaf;
  }
  if (s.lru.size() >= per_shard_capacity_) {
    auto& victim = s.lru.back();
    evicted = std::move(victim.leaf);
    s.index.erase(&victim.key);
    s.lru.pop_back();
    ++s.evictions;
  }
  s.lru.push_front(Entry{std::move(key), std::move(leaf), fresh_until});
  s.index.emplace(&s.lru.front().key, s.lru.begin());
  return s.lru.front().leaf;
}

void LeafCache::Clear() {
  for (auto& s : shards_) {
    std::list<Entry> drop;
    {
      std::lock_guard lock(s->mu);
      drop.swap(s->lru);
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
