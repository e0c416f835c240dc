#pragma once
// The interface the proxy uses to get a leaf certificate for a client handshake.
// Owned by ca/; consumed by mitm/. Names are a contract: add, don't rename.
//
// A leaf is minted only from an upstream certificate that has already been verified
// (chain + hostname), never from a bare SNI; it copies the upstream's subject CN and
// SANs and is never valid longer than the upstream certificate. The one exception is the
// leaf a refusal page (502, bad origin) is served with: mitm/ mints it from a stand-in
// naming what the client asked for (mitm/upstream_verify.h), and relays nothing on it.

#include <openssl/evp.h>
#include <openssl/x509.h>

#include <memory>
#include <string_view>

#include "absl/status/statusor.h"

namespace egressguard::ca {

// A minted leaf, ready for SSL_use_certificate / SSL_use_PrivateKey / SSL_add1_chain_cert.
// Immutable once built; shared by every connection that hits it in the cache.
struct Leaf {
  X509* cert = nullptr;          // owned
  EVP_PKEY* key = nullptr;       // owned (a pooled leaf key, never the CA key)
  // The issuing CA (and intermediates), leaf excluded. Owned by the leaf, unless
  // `chain_owner` is set: then it is one stack every leaf of a minter shares.
  STACK_OF(X509)* chain = nullptr;
  std::shared_ptr<const void> chain_owner;
  Leaf() = default;
  Leaf(const Leaf&) = delete;
  Leaf& operator=(const Leaf&) = delete;
  ~Leaf();
};
using LeafPtr = std::shared_ptr<const Leaf>;

class LeafMinter {
 public:
  virtual ~LeafMinter() = default;
  // Thread-safe. `verified_upstream` must have passed chain and hostname checks.
  // `sni` is what the client asked for (part of the cache key; may be empty).
  virtual absl::StatusOr<LeafPtr> MintFor(X509* verified_upstream, std::string_view sni) = 0;
};

}  // namespace egressguard::ca
