#include "appliance/reporter/spool.h"

#include <fmt/format.h>

#include <algorithm>

namespace egressguard::reporter {

namespace {

// Runs "DELETE FROM spool WHERE seq = ? RETURNING LENGTH(body)" for one seq, adding the
// rows and body bytes it removed.
absl::Status DeleteRow(store::Statement& del, int64_t seq, uint64_t* rows, uint64_t* bytes) {
  del.Bind(1, seq);
  for (;;) {
    auto r = del.Step();
    if (!r.ok()) {
      del.Reset();
      return r.status();
    }
    if (!*r) break;
    ++*rows;
    *bytes += static_cast<uint64_t>(del.Int(0));
  }
  del.Reset();
  return absl::OkStatus();
}

void Subtract(std::atomic<uint64_t>& counter, uint64_t n) {
  const uint64_t now = counter.load(std::memory_order_relaxed);
  counter.store(now - std::min(now, n), std::memory_order_relaxed);
}

}  // namespace

absl::StatusOr<std::unique_ptr<Spool>> Spool::Open(const SpoolOptions& options) {
  if (options.path.empty()) return absl::InvalidArgumentError("no spool file given");
  if (options.max_rows == 0 || options.max_bytes == 0) {
    return absl::InvalidArgumentError("the spool's limits (verdicts, bytes) must be positive");
  }
  store::Database::Options o;
  o.synchronous = options.fsync_each ? "FULL" : "NORMAL";
  auto db = store::Database::Open(options.path, o);
  if (!db.ok()) return db.status();
  if (auto s = (*db)->Exec("CREATE TABLE IF NOT EXISTS spool (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
                           "id TEXT NOT NULL, body BLOB NOT NULL)");
      !s.ok())
    return s;
  auto count = (*db)->Prepare("SELECT COUNT(*), COALESCE(SUM(LENGTH(body)), 0) FROM spool");
  if (!count.ok()) return count.status();
  if (auto r = count->Step(); !r.ok()) return r.status();
  auto rows = static_cast<uint64_t>(count->Int(0));
  auto bytes = static_cast<uint64_t>(count->Int(1));
  return std::unique_ptr<Spool>(new Spool(options, std::move(*db), rows, bytes));
}

Spool::Spool(SpoolOptions options, store::DatabasePtr db, uint64_t rows, uint64_t bytes)
    : options_(std::move(options)), db_(std::move(db)), rows_(rows), bytes_(bytes) {}

double Spool::Fill() const {
  const double by_rows = static_cast<double>(size()) / static_cast<double>(options_.max_rows);
  const double by_bytes = static_cast<double>(bytes()) / static_cast<double>(options_.max_bytes);
  return std::max(by_rows, by_bytes);
}

absl::Status Spool::Append(const v1::Verdict& verdict) {
  std::string body;
  if (!verdict.SerializeToString(&body)) return absl::InvalidArgumentError("verdict does not serialize");
  std::lock_guard lock(mu_);
  const uint64_t rows = rows_.load(std::memory_order_relaxed);
  const uint64_t bytes = bytes_.load(std::memory_order_relaxed);
  if (rows >= options_.max_rows) {
    return absl::ResourceExhaustedError(fmt::format("verdict spool full ({} verdicts)", rows));
  }
  if (body.size() > options_.max_bytes - std::min(bytes, options_.max_bytes)) {
    return absl::ResourceExhaustedError(
        fmt::format("verdict spool full ({} of {} bytes; this verdict needs {})", bytes, options_.max_bytes, body.size()));
  }
  auto st = db_->Cached("INSERT INTO spool (id, body) VALUES (?, ?)");
  if (!st.ok()) return st.status();
  (*st)->Bind(1, verdict.id()).BindBlob(2, body);
  if (auto s = (*st)->Run(); !s.ok()) return s;
  rows_.store(rows + 1, std::memory_order_relaxed);
  bytes_.store(bytes + body.size(), std::memory_order_relaxed);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<SpooledVerdict>> Spool::Peek(int64_t after_seq, size_t limit) {
  std::lock_guard lock(mu_);
  auto st = db_->Cached("SELECT seq, body FROM spool WHERE seq > ? ORDER BY seq LIMIT ?");
  if (!st.ok()) return st.status();
  (*st)->Bind(1, after_seq).Bind(2, static_cast<int64_t>(limit));
  std::vector<SpooledVerdict> out;
  std::vector<int64_t> corrupt;
  for (;;) {
    auto r = (*st)->Step();
    if (!r.ok()) {
      (*st)->Reset();
      return r.status();
    }
    if (!*r) break;
    SpooledVerdict sv;
    sv.seq = (*st)->Int(0);
    if (!sv.verdict.ParseFromString((*st)->Blob(1))) {
      corrupt.push_back(sv.seq);  // cannot be sent, ever: drop it rather than wedge the spool
      continue;
    }
    out.push_back(std::move(sv));
  }
  (*st)->Reset();
  if (!corrupt.empty()) {
    auto del = db_->Cached("DELETE FROM spool WHERE seq = ? RETURNING LENGTH(body)");
    if (!del.ok()) return del.status();
    for (int64_t seq : corrupt) {
      uint64_t removed = 0, removed_bytes = 0;
      if (auto d = DeleteRow(**del, seq, &removed, &removed_bytes); !d.ok()) return d;
      Subtract(rows_, removed);
      Subtract(bytes_, removed_bytes);
      ++corrupt_dropped_;
    }
  }
  return out;
}

absl::Status Spool::Remove(const std::vector<int64_t>& seqs) {
  if (seqs.empty()) return absl::OkStatus();
  std::lock_guard lock(mu_);
  store::Transaction tx(*db_);
  if (!tx.begin_status().ok()) return tx.begin_status();
  auto st = db_->Cached("DELETE FROM spool WHERE seq = ? RETURNING LENGTH(body)");
  if (!st.ok()) return st.status();
  uint64_t removed = 0, removed_bytes = 0;
  for (int64_t seq : seqs) {
    if (auto d = DeleteRow(**st, seq, &removed, &removed_bytes); !d.ok()) return d;
  }
  if (auto s = tx.Commit(); !s.ok()) return s;
  Subtract(rows_, removed);
  Subtract(bytes_, removed_bytes);
  return absl::OkStatus();
}

uint64_t Spool::corrupt_dropped() const {
  std::lock_guard lock(mu_);
  return corrupt_dropped_;
}

}  // namespace egressguard::reporter
