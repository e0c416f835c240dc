#pragma once
// `egressguard run`'s console certificate: minted at each start by the dev cluster CA
// (the same minter that signs intercepted leaves), for localhost, 127.0.0.1 and ::1,
// so a browser that trusts HOME/ca-bundle.pem trusts the console too.

#include <string>

#include "absl/status/statusor.h"

namespace egressguard::ca {
class OpenSslLeafMinter;
}

namespace egressguard::console {

struct PemPair {
  std::string chain;  // leaf first, then its issuers
  std::string key;
};

absl::StatusOr<PemPair> MintLoopbackCertificate(ca::OpenSslLeafMinter& minter);

}  // namespace egressguard::console
