#include "ca/leaf_release.h"

#include <openssl/x509v3.h>

#include <cstddef>

namespace egressguard::ca {

namespace {

// Room for the X509 structure itself (~400 bytes in OpenSSL 3.0; prefetching past its end
// only touches a neighbouring heap block).
constexpr std::size_t kX509Bytes = 512;
constexpr std::size_t kLine = 64;

void Prefetch(const void* p) {
  if (p != nullptr) __builtin_prefetch(p);
}

void PrefetchData(const ASN1_STRING* s) {
  if (s != nullptr) Prefetch(ASN1_STRING_get0_data(s));
}

// Each level reads, through OpenSSL's read-only getters, what the levels before it reached
// (mostly prefetched by then) and prefetches the next one down. Nothing here computes or
// caches anything, and only leaves the batch alone holds are walked.
void PrefetchNames(X509* x, bool values) {
  for (X509_NAME* name : {X509_get_subject_name(x), X509_get_issuer_name(x)}) {
    for (int i = 0; i < X509_NAME_entry_count(name); ++i) {
      const X509_NAME_ENTRY* entry = X509_NAME_get_entry(name, i);
      if (values) {
        PrefetchData(X509_NAME_ENTRY_get_data(entry));
      } else {
        Prefetch(X509_NAME_ENTRY_get_data(entry));
      }
    }
  }
}

void PrefetchExtensionValues(X509* x) {
  const STACK_OF(X509_EXTENSION)* extensions = X509_get0_extensions(x);
  for (int i = 0; i < sk_X509_EXTENSION_num(extensions); ++i) {
    PrefetchData(X509_EXTENSION_get_data(sk_X509_EXTENSION_value(extensions, i)));
  }
}

}  // namespace

void ReleaseLeaves(std::vector<LeafPtr>& leaves) {
  // Only trees about to be freed are worth bringing in.
  std::vector<X509*> dying;
  dying.reserve(leaves.size());
  for (const LeafPtr& leaf : leaves) Prefetch(leaf.get());
  for (const LeafPtr& leaf : leaves) {
    if (leaf.use_count() == 1 && leaf->cert != nullptr) dying.push_back(leaf->cert);
  }
  for (X509* x : dying) {
    const auto* bytes = reinterpret_cast<const unsigned char*>(x);
    for (std::size_t off = 0; off < kX509Bytes; off += kLine) Prefetch(bytes + off);
  }
  for (X509* x : dying) {
    Prefetch(X509_get_subject_name(x));
    Prefetch(X509_get_issuer_name(x));
    Prefetch(X509_get0_extensions(x));
    Prefetch(X509_get_X509_PUBKEY(x));
    Prefetch(X509_get0_notBefore(x));
    Prefetch(X509_get0_notAfter(x));
    PrefetchData(X509_get0_serialNumber(x));
    const ASN1_BIT_STRING* signature = nullptr;
    X509_get0_signature(&signature, nullptr, x);
    PrefetchData(signature);
  }
  for (X509* x : dying) {
    PrefetchData(X509_get0_notBefore(x));
    PrefetchData(X509_get0_notAfter(x));
    PrefetchNames(x, false);
    const STACK_OF(X509_EXTENSION)* extensions = X509_get0_extensions(x);
    for (int i = 0; i < sk_X509_EXTENSION_num(extensions); ++i) Prefetch(sk_X509_EXTENSION_value(extensions, i));
    const unsigned char* key_bits = nullptr;
    int key_len = 0;
    X509_ALGOR* key_algorithm = nullptr;
    if (X509_PUBKEY_get0_param(nullptr, &key_bits, &key_len, &key_algorithm, X509_get_X509_PUBKEY(x)) == 1) {
      Prefetch(key_bits);
      Prefetch(key_algorithm);
    }
  }
  for (X509* x : dying) {
    PrefetchNames(x, true);
    PrefetchExtensionValues(x);
  }
  leaves.clear();
}

}  // namespace egressguard::ca
