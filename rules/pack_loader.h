#pragma once
// Loads rule packs from YAML (files, directories), JSON (the gRPC API) and writes them
// back as YAML. The YAML's structure is the protobuf JSON mapping of RulePack: the
// loader walks it against the message descriptor, so one schema checks files, the CLI
// and the API. Field names may be snake_case or lowerCamel, as protobuf JSON allows.
//
// A bad pack is refused whole: the status lists every problem found (up to a cap), one
// per line, as "file:line:column: reason". Nothing half-loads.
//
// Two deliberate departures from plain proto3 JSON, because packs are written by hand:
//   - a rule without `enabled` is enabled (a listed rule is meant to run);
//   - enum values may be written in lower case (`action: block`).
// See rules/README.md for the directory layout and every check.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "egressguard/rules/v1/rules.pb.h"

namespace egressguard::rules {

struct LoadOptions {
  // True when a validator name exists. Injected because rules/ must not depend on dlp/
  // (dlp::FindValidator is the registry). Unset: any [a-z0-9_]+ name is accepted.
  std::function<bool(std::string_view)> known_validator;
  // Checks one pattern (e.g. Hyperscan's own parser); a non-OK status becomes a load
  // error at the pattern's line. Unset: patterns are only checked for being non-empty.
  std::function<absl::Status(std::string_view pattern, bool case_insensitive)> check_pattern;
};

// Limits that keep a hostile pack from costing more than a real one.
inline constexpr size_t kMaxPackFileBytes = 8u << 20;
inline constexpr uint32_t kMaxContextWindow = 2048;  // the engine keeps this much history
inline constexpr uint32_t kMaxMinCount = 1000000;
inline constexpr uint32_t kMaxBulkPiiThreshold = 1000000;
inline constexpr uint32_t kMaxMinRecords = 1000000;
inline constexpr size_t kMaxPatternBytes = 4096;
// The category whose rule counts other rules' findings instead of matching patterns.
inline constexpr std::string_view kBulkPiiCategory = "bulk_pii";
// Content the decoders could not read (corrupt, truncated, a bomb, past a limit).
inline constexpr std::string_view kUndecodableCategory = "undecodable";
// An encrypted archive member or a password-protected document.
inline constexpr std::string_view kEncryptedContentCategory = "encrypted_content";
// Message-level categories: the engine raises them from the message as a whole, so their
// rules need no patterns (patterns listed anyway are not scanned).
inline bool IsMessageLevelCategory(std::string_view category) {
  return category == kBulkPiiCategory || category == kUndecodableCategory || category == kEncryptedContentCategory;
}
inline constexpr uint32_t kDefaultBulkPiiThreshold = 25;

// One pack from YAML text; `filename` only labels the errors.
absl::StatusOr<v1::RulePack> LoadPackYaml(std::string_view text, const std::string& filename, const LoadOptions& opts);
// One pack from a YAML file.
absl::StatusOr<v1::RulePack> LoadPackFile(const std::string& path, const LoadOptions& opts);
// A pack split over a directory: pack.yaml holds the pack fields (name, version,
// description, bulk_pii_threshold, optionally rules); every other *.yaml / *.yml file
// holds only `rules:`. Files are merged in name order; rule ids are unique across all.
absl::StatusOr<v1::RulePack> LoadPackDir(const std::string& dir, const LoadOptions& opts);
// A file or a directory, whichever `path` is.
absl::StatusOr<v1::RulePack> LoadPackAny(const std::string& path, const LoadOptions& opts = {});
// A pack from JSON (the gRPC API's text form), checked exactly like a file.
absl::StatusOr<v1::RulePack> PackFromJson(std::string_view json, const LoadOptions& opts = {});

// YAML text for `pack` that LoadPackYaml reads back to an equal message. snake_case
// names, every rule's `enabled` written out, enums by name.
std::string PackToYaml(const v1::RulePack& pack);

}  // namespace egressguard::rules
