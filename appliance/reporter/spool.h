#pragma once
// The appliance's durable verdict spool: its own sqlite file (WAL). A verdict is
// spooled before it is sent anywhere and leaves only when the store has acked it,
// so a crash or SIGKILL of the appliance loses nothing that was spooled.
//
// Two bounds keep a long store outage from filling the disk: a number of verdicts
// (max_rows) and the serialized bytes of those verdicts (max_bytes; the sqlite file
// itself is somewhat larger: page overhead, the WAL). Append refuses a verdict that
// would pass either; both counts are rebuilt from the file on open.

#include <atomic>
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
  uint64_t max_rows = 1'000'000;    // Append refuses beyond this many verdicts
  uint64_t max_bytes = 1ull << 30;  // ... or this many serialized verdict bytes
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

  // Thread-safe. RESOURCE_EXHAUSTED when the spool holds max_rows verdicts, or when
  // this verdict would take it past max_bytes.
  absl::Status Append(const v1::Verdict& verdict);
  // Up to `limit` oldest verdicts with seq > after_seq (rows that no longer parse are dropped).
  absl::StatusOr<std::vector<SpooledVerdict>> Peek(int64_t after_seq, size_t limit);
  // Drops the given rows (acked by the store).
  absl::Status Remove(const std::vector<int64_t>& seqs);

  // Lock-free reads (never wait on an Append or a Remove in progress).
  uint64_t size() const { return rows_.load(std::memory_order_relaxed); }
  uint64_t bytes() const { return bytes_.load(std::memory_order_relaxed); }
  // Below both bounds. A verdict may still be refused when it alone would pass
  // max_bytes, or when other threads fill the last room first.
  bool HasRoom() const { return size() < options_.max_rows && bytes() < options_.max_bytes; }
  // How full, 0..1: the larger of rows/max_rows and bytes/max_bytes.
  double Fill() const;
  const SpoolOptions& options() const { return options_; }
  // Rows that no longer parsed (a damaged file) and were dropped by Peek.
  uint64_t corrupt_dropped() const;

 private:
  explicit Spool(SpoolOptions options, store::DatabasePtr db, uint64_t rows, uint64_t bytes);
  SpoolOptions options_;
  mutable std::mutex mu_;  // the connection and its cached statements
  store::DatabasePtr db_;
  // Written under mu_, read anywhere.
  std::atomic<uint64_t> rows_;
  std::atomic<uint64_t> bytes_;
  uint64_t corrupt_dropped_ = 0;
};
using SpoolPtr = std::unique_ptr<Spool>;

}  // namespace egressguard::reporter
