#pragma once
// The CA key is the crown jewel: a key file that anyone but its owner can read is
// refused before a byte of it is parsed.

#include <string>

#include "absl/status/status.h"

namespace egressguard::ca {

// OK when `path` is a regular file whose mode grants nothing to group or others.
absl::Status CheckPrivateKeyPermissions(const std::string& path);

}  // namespace egressguard::ca
