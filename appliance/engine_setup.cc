#include "appliance/engine_setup.h"

#include <fmt/format.h>
#include <openssl/rand.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "appliance/build_info.h"
#include "ca/atomic_file.h"
#include "ca/key_file.h"
#include "dlp/validators.h"
#include "rules/pattern_check.h"

namespace egressguard::appliance {

namespace {
constexpr size_t kFingerprintKeyBytes = 32;
constexpr size_t kMaxKeyFileBytes = 4096;
}  // namespace

rules::LoadOptions PackLoadOptions() {
  rules::LoadOptions o;
  o.known_validator = [](std::string_view name) { return dlp::FindValidator(name) != nullptr; };
  o.check_pattern = rules::CheckHyperscanPattern;
  return o;
}

std::string DefaultPackPath() {
  // A build tree uses its checkout's pack; an installed appliance the packaged copy.
  static constexpr const char* kInstalled[] = {"/usr/share/egressguard/rules/default", "/etc/egressguard/rules"};
  std::error_code ec;
  if (std::filesystem::is_directory(EGRESSGUARD_DEFAULT_PACK_DIR, ec)) return EGRESSGUARD_DEFAULT_PACK_DIR;
  for (const char* dir : kInstalled) {
    if (std::filesystem::exists(dir, ec)) return dir;
  }
  return EGRESSGUARD_DEFAULT_PACK_DIR;
}

absl::StatusOr<rules::v1::RulePack> LoadPack(const std::string& path) {
  const std::string where = path.empty() ? DefaultPackPath() : path;
  auto pack = rules::LoadPackAny(where, PackLoadOptions());
  if (!pack.ok()) {
    return absl::InvalidArgumentError(fmt::format("rule pack {}: {}", where, std::string(pack.status().message())));
  }
  return pack;
}

std::string DefaultDbCacheDir() {
  if (const char* cache = std::getenv("XDG_CACHE_HOME"); cache != nullptr && *cache == '/') {
    return std::string(cache) + "/egressguard/db";
  }
  if (const char* home = std::getenv("HOME"); home != nullptr && *home == '/') {
    return std::string(home) + "/.cache/egressguard/db";
  }
  return "";
}

absl::StatusOr<dlp::EnginePtr> LoadAndCompile(const std::string& path, const dlp::EngineOptions& options) {
  const std::string where = path.empty() ? DefaultPackPath() : path;
  rules::LoadOptions quick = PackLoadOptions();
  // What the per-pattern check refuses that a whole-pack compile would take: a NUL
  // (Hyperscan reads patterns as C strings and would stop there).
  quick.check_pattern = [](std::string_view pattern, bool) {
    if (pattern.find('\0') != std::string_view::npos) return absl::InvalidArgumentError("pattern contains a NUL byte");
    return absl::OkStatus();
  };
  auto pack = rules::LoadPackAny(where, quick);
  if (!pack.ok()) {
    return absl::InvalidArgumentError(fmt::format("rule pack {}: {}", where, std::string(pack.status().message())));
  }
  auto engine = dlp::Engine::Compile(*pack, options);
  if (engine.ok()) return engine;
  // Refused: the checked load names the file and line of a bad pattern.
  if (auto checked = LoadPack(path); !checked.ok()) return checked.status();
  return absl::InvalidArgumentError(
      fmt::format("cannot compile rule pack {}: {}", where, std::string(engine.status().message())));
}

absl::StatusOr<std::string> ReadFingerprintKey(const std::string& path) {
  if (auto st = ca::CheckPrivateKeyPermissions(path); !st.ok()) return st;
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(fmt::format("cannot read fingerprint key {}", path));
  std::string key;
  key.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  if (key.empty()) return absl::InvalidArgumentError(fmt::format("fingerprint key {} is empty", path));
  if (key.size() > kMaxKeyFileBytes) {
    return absl::InvalidArgumentError(fmt::format("fingerprint key {} is larger than {} bytes", path, kMaxKeyFileBytes));
  }
  return key;
}

std::string EphemeralFingerprintKey() {
  std::string key(kFingerprintKeyBytes, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(key.data()), static_cast<int>(key.size())) != 1) {
    // Without randomness a fingerprint key would be guessable: refuse to go on.
    std::abort();
  }
  return key;
}

absl::StatusOr<std::string> LoadOrCreateFingerprintKey(const std::string& path) {
  if (std::filesystem::exists(path)) return ReadFingerprintKey(path);
  std::string key = EphemeralFingerprintKey();
  if (auto st = ca::WriteFileAtomically(path, key, 0600); !st.ok()) return st;
  return key;
}

}  // namespace egressguard::appliance
