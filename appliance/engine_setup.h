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

// Reads a fingerprint key file (refused when empty or readable by group/others).
absl::StatusOr<std::string> ReadFingerprintKey(const std::string& path);
// Reads `path`, or creates it with 32 random bytes (0600, atomically) on first use, so
// fingerprints stay comparable across restarts.
absl::StatusOr<std::string> LoadOrCreateFingerprintKey(const std::string& path);
// A random key for this process only (fingerprints link matches within one run).
std::string EphemeralFingerprintKey();

}  // namespace egressguard::appliance
