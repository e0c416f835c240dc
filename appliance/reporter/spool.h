#pragma once
// The appliance's durable verdict spool: its own sqlite file (WAL). A verdict is
// spooled before it is sent anywhere and leaves only when the store has acked it,
// so a crash or SIGKILL of the appliance loses nothing that was spooled.

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "appliance/store/sqlite.h"
#include "egressguard/v1/verdict.pb.h"

namespace egressguard::reporter {

struct SpoolOptions {
  std::string path;
  uint64_t max_rows = 1'000'000;  // the bound; Append refuses beyond it
  // NORMAL (default): in WAL mode a commit is in the WAL file before Append
  // returns, which survives a crash or SIGKILL of the appliance (the failure the
  // proxy must tolerate) without an fsync on a proxy worker per verdict; only a
  // power loss can lose the last commits. FULL adds that fsync.
  bool fsync_each = false;
};

struct SpooledVerdict {
  int64_t seq = 0;
  v1::Verdict verdict;
};

class Spool {
 public:
  static absl::StatusOr<std::unique_ptr<Spool>> Open(const SpoolOptions& options);

  // Thread-safe. RESOURCE_EXHAUSTED when the spool holds max_rows.
  absl::Status Append(const v1::Verdict& verdict);
  // Up to `limit` oldest verdicts with seq > after_seq (rows that no longer parse are dropped).
  absl::StatusOr<std::vector<SpooledVerdict>> Peek(int64_t after_seq, size_t limit);
  // Drops the given rows (acked by the store).
  absl::Status Remove(const std::vector<int64_t>& seqs);
  uint64_t size() const;
  // Rows that no longer parsed (a damaged file) and were dropped by Peek.
  uint64_t corrupt_dropped() const;

 private:
  explicit Spool(SpoolOptions options, store::DatabasePtr db, uint64_t rows);
  SpoolOptions options_;
  mutable std::mutex mu_;
  store::DatabasePtr db_;
  uint64_t rows_;
  uint64_t corrupt_dropped_ = 0;
};
using SpoolPtr = std::unique_ptr<Spool>;

}  // namespace egressguard::reporter
