#pragma once
// Freeing evicted leaves in batches.
//
// A leaf is ~50 heap blocks of an OpenSSL X509 tree. Once the cache has churned for a
// while, the blocks of one leaf lie scattered over the heap, and the one a cache evicts
// is by definition the coldest: X509_free then walks the tree one cache miss after
// another (~4 us per leaf in ca_bench's steady state, against ~1 us warm). Released
// together, a batch's trees are first brought in level by level across all its leaves,
// so the misses of one level overlap instead of queueing behind each other.

#include <vector>

#include "ca/leaf_minter.h"

namespace egressguard::ca {

// Drops `leaves` (and clears it). Leaves that something else still holds stay alive and
// are only dereferenced; the rest are freed.
void ReleaseLeaves(std::vector<LeafPtr>& leaves);

}  // namespace egressguard::ca
