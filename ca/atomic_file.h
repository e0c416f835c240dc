#pragma once
// Writes a file so that readers see either the old content or the whole new content,
// and a private key is never readable by anyone but its owner, not even for a moment.

#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace egressguard::ca {

// Creates a temp file beside `path` with open(O_CREAT|O_EXCL|O_NOFOLLOW, mode), forces
// `mode` with fchmod (so the umask cannot widen or narrow it), writes, fsyncs, renames it
// over `path` and fsyncs the directory. On failure the temp file is removed.
absl::Status WriteFileAtomically(const std::string& path, std::string_view contents, unsigned mode);

// Creates `dir` (and parents) when missing; a created leaf directory gets mode 0700.
absl::Status EnsurePrivateDirectory(const std::string& dir);

}  // namespace egressguard::ca
