#pragma once
// The storage seam under Store: one implementation per database. Store (store.h)
// validates what is common and forwards; a backend owns its connections, its
// transactions and how it keeps the hash chains (chain.h) one sequence.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "appliance/store/store.h"

namespace egressguard::store {

class Backend {
 public:
  virtual ~Backend() = default;

  // Writes: return once committed.
  virtual absl::StatusOr<IngestResult> Ingest(std::vector<v1::Verdict> verdicts) = 0;
  virtual absl::Status Audit(AuditEntry entry) = 0;
  // The pack's shape and the reason were checked by Store.
  virtual absl::StatusOr<v1::PackInfo> PushPack(const rules::v1::RulePack& pack, const std::string& author,
                                                const std::string& reason) = 0;
  virtual absl::StatusOr<v1::PackInfo> ActivatePack(const std::string& version, v1::PackMode mode,
                                                    const AuditEntry& who, const std::string& reason) = 0;
  virtual absl::StatusOr<v1::PackInfo> RollbackPack(const std::string& to_version, const AuditEntry& who,
                                                    const std::string& reason) = 0;
  virtual absl::StatusOr<uint64_t> ApplyRetention(int days, const std::string& actor) = 0;

  // Reads.
  virtual absl::StatusOr<v1::QueryResponse> Query(const v1::QueryRequest& request) = 0;
  virtual absl::StatusOr<v1::StatsResponse> Stats(const v1::StatsRequest& request) = 0;
  virtual absl::StatusOr<v1::ListPacksResponse> ListPacks() = 0;
  virtual absl::StatusOr<v1::GetPackResponse> GetPack(const std::string& version) = 0;
  virtual absl::StatusOr<v1::AuditListResponse> ListAudit(const v1::AuditListRequest& request) = 0;
  virtual absl::StatusOr<v1::VerifyResponse> Verify() = 0;
  virtual StoreHealth Health() = 0;
  virtual std::optional<int64_t> LastIngestedVerdictUnix() const = 0;
  // The activation count as this backend last saw it (see ActiveWatch).
  virtual uint64_t active_generation() const = 0;
  virtual void WaitActiveChange(uint64_t seen, std::chrono::milliseconds timeout) = 0;
  virtual void Shutdown() = 0;
  virtual bool shutting_down() const = 0;
};
using BackendPtr = std::unique_ptr<Backend>;

// The active-pack generation and its waiters; both backends keep one.
class ActiveWatch {
 public:
  uint64_t generation() const {
    std::lock_guard lock(mu_);
    return generation_;
  }
  // Raises the generation (never lowers it: a poll that read an older value than a
  // local activation already set must not move it back) and wakes the waiters.
  void Raise(uint64_t generation) {
    {
      std::lock_guard lock(mu_);
      if (generation <= generation_) return;
      generation_ = generation;
    }
    cv_.notify_all();
  }
  void Wait(uint64_t seen, std::chrono::milliseconds timeout) {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, timeout, [&] { return shutdown_ || generation_ != seen; });
  }
  void Shutdown() {
    {
      std::lock_guard lock(mu_);
      shutdown_ = true;
    }
    cv_.notify_all();
  }
  bool shutting_down() const {
    std::lock_guard lock(mu_);
    return shutdown_;
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  uint64_t generation_ = 0;
  bool shutdown_ = false;
};

// sqlite_backend.cc: one file, WAL, one writer thread (the store as it always was).
absl::StatusOr<BackendPtr> OpenSqliteBackend(const Store::Options& options);
// pg_backend.cc: a PostgreSQL database given as a postgresql:// URI or conninfo.
absl::StatusOr<BackendPtr> OpenPgBackend(const Store::Options& options);

// Store::MigrateSchema, per backend.
absl::StatusOr<std::pair<int, int>> MigrateSqliteSchema(const std::string& path);
absl::StatusOr<std::pair<int, int>> MigratePgSchema(const std::string& uri);

// Store::CopyIntoPostgres: in pg_backend.cc, which reads the sqlite file directly.
absl::StatusOr<CopyReport> CopySqliteIntoPg(const std::string& from, const std::string& to);

// Whether `database` names a PostgreSQL database rather than a sqlite file.
bool IsPostgresUri(const std::string& database);

}  // namespace egressguard::store
