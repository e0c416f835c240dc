#pragma once
// The last active pack the rule watcher received from the store, kept in a file beside
// the spool so that a proxy restarted while the store is down or slow starts from it
// at once instead of refusing everything until the store answers.
//
// File: one line "egressguard-active-pack-cache 1", one line "sha256 <64 hex>", then
// the serialized egressguard.v1.ActivePack (pack, its version and mode, generation).
// Written 0600 and atomically (temp file, fsync, rename): a reader sees the old pack
// or the new one, never half of one. Read back only when the sha256 matches, the file
// is a regular file and neither group nor others may write it; anything else is
// refused (corrupt, truncated or edited) and the proxy waits for the store as before.
// The sha256 finds damage, not a forger who can write the file: whoever can write the
// proxy's state directory can also replace its binary or its config.

#include <string>

#include "absl/status/statusor.h"
#include "egressguard/v1/rule_admin.pb.h"

namespace egressguard::reporter {

inline constexpr size_t kMaxPackCacheBytes = 64u << 20;

// Beside the spool: "dir/spool.db" -> "dir/spool.pack-cache".
std::string PackCachePath(const std::string& spool_path);

struct CachedPack {
  v1::ActivePack active;
  std::string sha256;  // hex, of the serialized ActivePack
};

// Writes `active` to `path` (0600, atomically). Returns the sha256 (hex) written.
absl::StatusOr<std::string> WritePackCache(const std::string& path, const v1::ActivePack& active);

// NOT_FOUND when there is no cache; DATA_LOSS when it is damaged or its sha256 does not
// match; PERMISSION_DENIED when others may write it; the reason names the file.
absl::StatusOr<CachedPack> ReadPackCache(const std::string& path);

}  // namespace egressguard::reporter
