#pragma once
// How the appliance's commands (proxy, run, scan, rules, store) load rule packs and
// the fingerprint key, in one place so they all check packs the same way.

#include <string>

#include "absl/status/statusor.h"
#include "dlp/engine.h"
#include "rules/pack_loader.h"

namespace egressguard::appliance {

// Loader options wired to dlp's validator registry and Hyperscan's pattern parser.
rules::LoadOptions PackLoadOptions();

// Loads a pack file or directory; an empty path means the shipped default pack.
absl::StatusOr<rules::v1::RulePack> LoadPack(const std::string& path);
// The shipped default pack's directory (installed copy first, else the source tree's).
std::string DefaultPackPath();

// Where compiled rule-pack databases are cached when nothing else is said:
// $XDG_CACHE_HOME/egressguard/db, else ~/.cache/egressguard/db; "" when neither is known
// (then nothing is cached). The proxy and `run` may put theirs in their state directory.
std::string DefaultDbCacheDir();

// Loads the pack at `path` (empty: the shipped default pack) and compiles it with
// `options`; options.db_cache_dir names the compiled-database cache (dlp/db_cache.h,
// "" for none). The pack's patterns are not compiled one by one to check them (the
// engine compiles them all, or takes them from the cache, ~25x faster than checking them
// one by one): only when the engine refuses the pack is it loaded again with that
// check, so that a bad pattern is still reported at its file and line.
absl::StatusOr<dlp::EnginePtr> LoadAndCompile(const std::string& path, const dlp::EngineOptions& options);

// Reads a fingerprint key file (refused when empty or readable by group/others).
absl::StatusOr<std::string> ReadFingerprintKey(const std::string& path);
// Reads `path`, or creates it with 32 random bytes (0600, atomically) on first use, so
// fingerprints stay comparable across restarts.
absl::StatusOr<std::string> LoadOrCreateFingerprintKey(const std::string& path);
// A random key for this process only (fingerprints link matches within one run).
std::string EphemeralFingerprintKey();

}  // namespace egressguard::appliance
