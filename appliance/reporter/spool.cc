#include "appliance/reporter/spool.h"

#include <fmt/format.h>

namespace egressguard::reporter {

absl::StatusOr<std::unique_ptr<Spool>> Spool::Open(const SpoolOptions& options) {
  if (options.path.empty()) return absl::InvalidArgumentError("no spool file given");
  store::Database::Options o;
  o.synchronous = options.fsync_each ? "FULL" : "NORMAL";
  auto db = store::Database::Open(options.path, o);
  if (!db.ok()) return db.status();
  if (auto s = (*db)->Exec("CREATE TABLE IF NOT EXISTS spool (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
                           "id TEXT NOT NULL, body BLOB NOT NULL)");
      !s.ok())
    return s;
  auto count = (*db)->Prepare("SELECT COUNT(*) FROM spool");
  if (!count.ok()) return count.status();
  if (auto r = count->Step(); !r.ok()) return r.status();
  auto rows = static_cast<uint64_t>(count->Int(0));
  return std::unique_ptr<Spool>(new Spool(options, std::move(*db), rows));
}

Spool::Spool(SpoolOptions options, store::DatabasePtr db, uint64_t rows)
    : options_(std::move(options)), db_(std::move(db)), rows_(rows) {}

absl::Status Spool::Append(const v1::Verdict& verdict) {
  std::string body;
  if (!verdict.SerializeToString(&body)) return absl::InvalidArgumentError("verdict does not serialize");
  std::lock_guard lock(mu_);
  if (rows_ >= options_.max_rows) {
    return absl::ResourceExhaustedError(fmt::format("verdict spool full ({} verdicts)", rows_));
  }
  auto st = db_->Cached("INSERT INTO spool (id, body) VALUES (?, ?)");
  if (!st.ok()) return st.status();
  (*st)->Bind(1, verdict.id()).BindBlob(2, body);
  if (auto s = (*st)->Run(); !s.ok()) return s;
  ++rows_;
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
    if (!r.ok()) return r.status();
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
    auto del = db_->Cached("DELETE FROM spool WHERE seq = ?");
    if (!del.ok()) return del.status();
    for (int64_t seq : corrupt) {
      (*del)->Bind(1, seq);
      if (auto s = (*del)->Run(); !s.ok()) return s;
      rows_ -= std::min<uint64_t>(rows_, static_cast<uint64_t>(db_->Changes()));
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
  auto st = db_->Cached("DELETE FROM spool WHERE seq = ?");
  if (!st.ok()) return st.status();
  uint64_t removed = 0;
  for (int64_t seq : seqs) {
    (*st)->Bind(1, seq);
    if (auto s = (*st)->Run(); !s.ok()) return s;
    removed += static_cast<uint64_t>(db_->Changes());
  }
  if (auto s = tx.Commit(); !s.ok()) return s;
  rows_ -= std::min(rows_, removed);
  return absl::OkStatus();
}

uint64_t Spool::corrupt_dropped() const {
  std::lock_guard lock(mu_);
  return corrupt_dropped_;
}

uint64_t Spool::size() const {
  std::lock_guard lock(mu_);
  return rows_;
}

}  // namespace egressguard::reporter
