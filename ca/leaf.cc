#include "ca/leaf_minter.h"

namespace egressguard::ca {

Leaf::~Leaf() {
  X509_free(cert);
  EVP_PKEY_free(key);
  if (!chain_owner) sk_X509_pop_free(chain, X509_free);
}

}  // namespace egressguard::ca
