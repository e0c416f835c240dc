#pragma once
// The compliance store's data: verdicts, rule packs, the audit trail, in one sqlite
// file (WAL). Every write runs on the store's own writer thread, in a transaction,
// and the caller waits for its commit; reads use a pool of reader connections that
// run beside the writer. Verdict and audit rows are hash-chained (see chain.h).

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "egressguard/rules/v1/rules.pb.h"
#include "egressguard/v1/audit.pb.h"
#include "egressguard/v1/rule_admin.pb.h"
#include "egressguard/v1/store.pb.h"
#include "egressguard/v1/verdict.pb.h"

namespace egressguard::store {

struct AuditEntry {
  std::string actor;
  std::string role;
  std::string method;
  std::string detail;  // never raw PII: ids, versions, counts
  bool allowed = true;
};

struct IngestResult {
  std::vector<std::string> acked;                // stored now or already before
  std::vector<v1::RejectedVerdict> rejected;
  uint64_t inserted = 0;                         // new rows
};

class Store {
 public:
  struct Options {
    std::string path;
    int readers = 4;
    // Microseconds since the epoch; tests pin it to exercise retention.
    std::function<int64_t()> now_us;
  };
  static absl::StatusOr<std::unique_ptr<Store>> Open(const Options& options);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // Writes: queued to the writer thread; return once committed.
  absl::StatusOr<IngestResult> Ingest(std::vector<v1::Verdict> verdicts);
  absl::Status Audit(AuditEntry entry);
  absl::StatusOr<v1::PackInfo> PushPack(const rules::v1::RulePack& pack, const std::string& author,
                                        const std::string& reason);
  absl::StatusOr<v1::PackInfo> ActivatePack(const std::string& version, v1::PackMode mode, const AuditEntry& who,
                                            const std::string& reason);
  // Empty `to_version`: undo the last activation (back to the version before it).
  absl::StatusOr<v1::PackInfo> RollbackPack(const std::string& to_version, const AuditEntry& who,
                                            const std::string& reason);
  // Deletes the verdicts received more than `days` days ago (a prefix of the chain,
  // whose anchor moves past it) and audits it. Returns the number deleted.
  absl::StatusOr<uint64_t> ApplyRetention(int days, const std::string& actor);

  // Reads.
  absl::StatusOr<v1::QueryResponse> Query(const v1::QueryRequest& request);
  absl::StatusOr<v1::StatsResponse> Stats(const v1::StatsRequest& request);
  absl::StatusOr<v1::ListPacksResponse> ListPacks();
  // Empty version: the active pack (NOT_FOUND when none is active).
  absl::StatusOr<v1::GetPackResponse> GetPack(const std::string& version);
  absl::StatusOr<v1::DiffResponse> DiffPacks(const std::string& from, const std::string& to);
  absl::StatusOr<v1::ActivePack> Active();
  absl::StatusOr<v1::AuditListResponse> ListAudit(const v1::AuditListRequest& request);
  absl::StatusOr<v1::VerifyResponse> Verify();

  // Active-pack changes for WatchActive. The generation is the activation count.
  uint64_t active_generation() const;
  // Returns when the generation differs from `seen`, on Shutdown, or after `timeout`.
  void WaitActiveChange(uint64_t seen, std::chrono::milliseconds timeout);
  // Wakes every waiter for good (server shutdown).
  void Shutdown();
  bool shutting_down() const;

 private:
  struct Impl;
  explicit Store(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};
using StorePtr = std::unique_ptr<Store>;

// Checks a pack's shape (version, rule ids, patterns, actions) without compiling
// it. Returns one message per problem; empty means it passed.
std::vector<std::string> CheckPackShape(const rules::v1::RulePack& pack);

}  // namespace egressguard::store
