#pragma once
// The appliance's durable verdict spool: its own sqlite file (WAL). A verdict is
// spooled before it is sent anywhere and leaves only when the store has acked it,
// so a crash or SIGKILL of the appliance loses nothing that was spooled.
//
// Append does not touch sqlite: it writes one record to an append-only intake file
// beside it (`<path>.intake`, one write(2), in the kernel before Append returns, so
// a SIGKILL cannot lose it) and the sender's Peek moves the intake into the table in
// one transaction per batch. That keeps the write-ahead record of a transaction (an
// OPEN verdict, written before its first byte goes upstream) cheap on the proxy's
// workers: an OPEN verdict and its completion that meet in one batch become one row.
//
// OPEN verdicts wait in the spool until their completion (same id) replaces them;
// Peek never hands them out, so the store sees one verdict per id. Open takes an
// exclusive lock on the spool (one process at a time), so every OPEN verdict it
// finds belongs to a process that stopped before completing it: Open closes them as
// INTERRUPTED, and they are sent.
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
#include <unordered_map>
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

  ~Spool();

  // Thread-safe. RESOURCE_EXHAUSTED when the spool holds max_rows verdicts, or when
  // this verdict would take it past max_bytes. A verdict whose phase is OPEN is kept
  // until one with the same id (its completion) is appended.
  absl::Status Append(const v1::Verdict& verdict);
  // Moves the intake into the table, then gives up to `limit` oldest sendable (not
  // OPEN) verdicts with seq > after_seq (rows that no longer parse are dropped).
  absl::StatusOr<std::vector<SpooledVerdict>> Peek(int64_t after_seq, size_t limit);
  // Drops the given rows (acked by the store).
  absl::Status Remove(const std::vector<int64_t>& seqs);

  // Lock-free reads (never wait on an Append or a Remove in progress).
  uint64_t size() const { return rows_.load(std::memory_order_relaxed); }
  uint64_t bytes() const { return bytes_.load(std::memory_order_relaxed); }
  // Whether Peek would give something: completed verdicts in the table or the intake.
  bool HasSendable() const {
    return sendable_.load(std::memory_order_relaxed) + intake_sendable_.load(std::memory_order_relaxed) > 0;
  }
  // OPEN verdicts of an earlier process that Open closed as INTERRUPTED.
  uint64_t interrupted_at_open() const { return interrupted_at_open_; }
  // Below both bounds. A verdict may still be refused when it alone would pass
  // max_bytes, or when other threads fill the last room first.
  bool HasRoom() const { return size() < options_.max_rows && bytes() < options_.max_bytes; }
  // How full, 0..1: the larger of rows/max_rows and bytes/max_bytes.
  double Fill() const;
  const SpoolOptions& options() const { return options_; }
  // Rows that no longer parsed (a damaged file) and were dropped by Peek.
  uint64_t corrupt_dropped() const;

 private:
  explicit Spool(SpoolOptions options, store::DatabasePtr db, int intake_fd);
  absl::Status Recount();
  // Moves the intake's records into the table (caller holds mu_). Without `force` a
  // short tail that appends keep growing may stay for the next call; with it the intake
  // is emptied, appends waiting meanwhile.
  absl::Status DrainIntake(bool force = false);
  absl::Status ApplyIntake(std::string_view records, size_t* used);
  absl::Status CloseInterrupted();

  SpoolOptions options_;
  mutable std::mutex mu_;  // the connection and its cached statements
  store::DatabasePtr db_;
  std::mutex intake_mu_;   // appends to the intake file, intake_size_
  int intake_fd_ = -1;
  uint64_t intake_size_ = 0;     // bytes in the intake file
  uint64_t intake_applied_ = 0;  // of which moved into the table (under mu_ and intake_mu_)
  // The serialized size of each OPEN verdict appended by this process and not completed
  // (under intake_mu_): a completion replaces its record in the counts.
  std::unordered_map<std::string, uint64_t> open_bytes_;
  // Read anywhere; changed with fetch_add/fetch_sub under either mutex.
  std::atomic<uint64_t> rows_{0};             // verdicts held: table rows and intake records
  std::atomic<uint64_t> bytes_{0};            // their serialized bytes
  std::atomic<uint64_t> sendable_{0};         // table rows not OPEN
  std::atomic<uint64_t> intake_sendable_{0};  // intake records not OPEN
  uint64_t corrupt_dropped_ = 0;
  uint64_t interrupted_at_open_ = 0;
};
using SpoolPtr = std::unique_ptr<Spool>;

}  // namespace egressguard::reporter
