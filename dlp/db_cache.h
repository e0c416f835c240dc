#pragma once
// Compiled Hyperscan databases kept on disk, so a process that loads a pack it (or an
// earlier process) compiled before skips the compile (~0.3 s for the default pack).
//
// One file per pack in the cache directory, named by a key: SHA-256 over the pack
// (deterministically serialized), the Hyperscan version and the platform Hyperscan
// compiles for (CPU features and tuning, hs_populate_platform). The file holds the
// databases in the order the engine builds them, each with a fingerprint of what it was
// compiled from (mode, expressions, flags, ids), and a SHA-256 over the whole file. A
// database whose fingerprint differs from what the engine is about to compile is
// compiled afresh (and so is every one after it); a file that is truncated, fails its
// checksum, names another key or holds a database Hyperscan will not deserialize is
// refused with one warning and rewritten. No EngineOption changes what a database holds
// (the options only change how matches are judged), so none is part of the key; the
// fingerprints would catch it if one ever did.
//
// Files are written whole under a temporary name and renamed (mode 0600) in a directory
// created 0700; the newest kMaxDbCacheFiles stay.

#include <hs/hs.h>

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "egressguard/rules/v1/rules.pb.h"

namespace egressguard::dlp {

inline constexpr size_t kMaxDbCacheFiles = 16;

// Hex SHA-256 of the pack, hs_version() and the host platform.
std::string DbCacheKey(const rules::v1::RulePack& pack);

// Fingerprint of one database's source: mode and (text, flags, id) of each expression.
std::string DbFingerprint(unsigned mode, const std::vector<const char*>& texts, const std::vector<unsigned>& flags,
                          const std::vector<unsigned>& ids);

struct CachedDb {
  std::string fingerprint;
  std::string bytes;  // hs_serialize_database output
};

// A cache file read whole, and its databases as views into it.
struct DbCacheFile {
  std::unique_ptr<char[]> data;
  size_t size = 0;
  struct Entry {
    std::string_view fingerprint, bytes;
  };
  std::vector<Entry> dbs;
};

// The file's databases; NotFound when there is none, another error (with the reason)
// when it is refused.
absl::StatusOr<DbCacheFile> ReadDbCacheFile(const std::string& path, std::string_view key);
// Writes atomically (temporary file, rename) with mode 0600.
absl::Status WriteDbCacheFile(const std::string& path, std::string_view key, const std::vector<CachedDb>& dbs);

// One engine build's use of the cache: hands out the cached databases in build order and
// records every database the build ends up with; Save writes the file when something
// had to be compiled. Without a directory it does nothing (every Take misses).
class DbCacheSession {
 public:
  DbCacheSession(std::string dir, const rules::v1::RulePack& pack);
  // The next database if the cache holds it for this fingerprint, else nullptr (the
  // caller compiles it and calls Record).
  hs_database_t* Take(const std::string& fingerprint);
  void Record(const std::string& fingerprint, const hs_database_t* db);
  // Writes the file if any database was compiled; failures are logged, not fatal.
  void Save();
  bool enabled() const { return !dir_.empty(); }
  size_t hits() const { return hits_; }
  size_t misses() const { return misses_; }
  const std::string& path() const { return path_; }

 private:
  std::string dir_, key_, path_;
  DbCacheFile cached_;
  // What the build ended up with: a cached entry (by index) or one compiled now.
  struct Built {
    std::string fingerprint;
    std::string bytes;
    size_t cached = SIZE_MAX;
  };
  std::vector<Built> built_;
  size_t next_ = 0;
  bool valid_ = true;  // the cached list still matches the build order
  bool unsaveable_ = false;
  size_t hits_ = 0, misses_ = 0;
};

}  // namespace egressguard::dlp
