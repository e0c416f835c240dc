#include "appliance/reporter/spool.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <unordered_map>

namespace egressguard::reporter {

namespace {

// An intake record: payload length and CRC-32 (little-endian u32 each), then the
// serialized verdict. A record cut short by a power loss, or damaged, ends the replay.
constexpr size_t kRecordHeader = 8;
constexpr uint32_t kMaxRecordBytes = 64u << 20;
// Past this many applied bytes the intake is emptied even while appends keep coming.
constexpr uint64_t kIntakeRewindBytes = 1u << 20;

void PutU32(std::string& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

uint32_t GetU32(const char* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

uint32_t Crc(std::string_view bytes) {
  return static_cast<uint32_t>(
      crc32(crc32(0L, Z_NULL, 0), reinterpret_cast<const Bytef*>(bytes.data()), static_cast<uInt>(bytes.size())));
}

absl::Status WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return absl::InternalError(fmt::format("verdict spool intake write: {}", std::strerror(errno)));
    data.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadRange(int fd, uint64_t from, uint64_t to) {
  std::string data(static_cast<size_t>(to - from), '\0');
  size_t got = 0;
  while (got < data.size()) {
    ssize_t n = ::pread(fd, data.data() + got, data.size() - got, static_cast<off_t>(from + got));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return absl::InternalError(fmt::format("verdict spool intake read: {}", std::strerror(errno)));
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  data.resize(got);
  return data;
}

void Sub(std::atomic<uint64_t>& counter, uint64_t n) {
  uint64_t now = counter.load(std::memory_order_relaxed);
  while (!counter.compare_exchange_weak(now, now - std::min(now, n), std::memory_order_relaxed)) {
  }
}

// Runs a "DELETE ... RETURNING open, LENGTH(body)" statement already bound, adding up
// what it removed.
absl::Status DeleteRows(store::Statement& del, uint64_t* rows, uint64_t* sendable, uint64_t* bytes) {
  for (;;) {
    auto r = del.Step();
    if (!r.ok()) {
      del.Reset();
      return r.status();
    }
    if (!*r) break;
    ++*rows;
    if (del.Int(0) == 0) ++*sendable;
    *bytes += static_cast<uint64_t>(del.Int(1));
  }
  del.Reset();
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Spool>> Spool::Open(const SpoolOptions& options) {
  if (options.path.empty()) return absl::InvalidArgumentError("no spool file given");
  if (options.max_rows == 0 || options.max_bytes == 0) {
    return absl::InvalidArgumentError("the spool's limits (verdicts, bytes) must be positive");
  }
  // The intake first: its lock says the spool is this process's, so OPEN verdicts found
  // below were left by one that stopped.
  const std::string intake = options.path + ".intake";
  int fd = ::open(intake.c_str(), O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return absl::InternalError(fmt::format("verdict spool intake {}: {}", intake, std::strerror(errno)));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    ::close(fd);
    if (err == EWOULDBLOCK) {
      return absl::FailedPreconditionError(
          fmt::format("the verdict spool {} is in use by another process (one appliance per spool)", options.path));
    }
    return absl::InternalError(fmt::format("verdict spool lock {}: {}", intake, std::strerror(err)));
  }
  store::Database::Options o;
  o.synchronous = options.fsync_each ? "FULL" : "NORMAL";
  auto db = store::Database::Open(options.path, o);
  if (!db.ok()) {
    ::close(fd);
    return db.status();
  }
  std::unique_ptr<Spool> spool(new Spool(options, std::move(*db), fd));
  auto& d = *spool->db_;
  if (auto s = d.Exec("CREATE TABLE IF NOT EXISTS spool (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
                      "id TEXT NOT NULL, body BLOB NOT NULL, open INTEGER NOT NULL DEFAULT 0)");
      !s.ok())
    return s;
  // A spool written before write-ahead records has no `open` column: all its rows are complete.
  auto has_open = d.Prepare("SELECT COUNT(*) FROM pragma_table_info('spool') WHERE name = 'open'");
  if (!has_open.ok()) return has_open.status();
  if (auto r = has_open->Step(); !r.ok()) return r.status();
  if (has_open->Int(0) == 0) {
    if (auto s = d.Exec("ALTER TABLE spool ADD COLUMN open INTEGER NOT NULL DEFAULT 0"); !s.ok()) return s;
  }
  if (auto s = d.Exec("CREATE INDEX IF NOT EXISTS spool_open ON spool(id) WHERE open = 1"); !s.ok()) return s;
  struct stat st {};
  if (::fstat(fd, &st) != 0) return absl::InternalError(fmt::format("verdict spool intake: {}", std::strerror(errno)));
  spool->intake_size_ = static_cast<uint64_t>(st.st_size);
  std::lock_guard lock(spool->mu_);
  if (auto s = spool->Recount(); !s.ok()) return s;
  if (auto s = spool->DrainIntake(); !s.ok()) return s;
  if (auto s = spool->CloseInterrupted(); !s.ok()) return s;
  // The replay moved records no Append of this process counted.
  if (auto s = spool->Recount(); !s.ok()) return s;
  return spool;
}

Spool::Spool(SpoolOptions options, store::DatabasePtr db, int intake_fd)
    : options_(std::move(options)), db_(std::move(db)), intake_fd_(intake_fd) {}

Spool::~Spool() {
  {
    // A clean close leaves nothing to replay: a replay would move records already moved
    // (harmless for the store, which is idempotent on ids, but counted twice here).
    std::lock_guard lock(mu_);
    (void)DrainIntake(/*force=*/true);  // what fails stays in the intake for the next open
  }
  if (intake_fd_ >= 0) ::close(intake_fd_);  // drops the lock
}

absl::Status Spool::Recount() {
  auto count = db_->Prepare("SELECT COUNT(*), COALESCE(SUM(LENGTH(body)), 0), COALESCE(SUM(open = 0), 0) FROM spool");
  if (!count.ok()) return count.status();
  if (auto r = count->Step(); !r.ok()) return r.status();
  rows_ = static_cast<uint64_t>(count->Int(0));
  bytes_ = static_cast<uint64_t>(count->Int(1));
  sendable_ = static_cast<uint64_t>(count->Int(2));
  return absl::OkStatus();
}

double Spool::Fill() const {
  const double by_rows = static_cast<double>(size()) / static_cast<double>(options_.max_rows);
  const double by_bytes = static_cast<double>(bytes()) / static_cast<double>(options_.max_bytes);
  return std::max(by_rows, by_bytes);
}

absl::Status Spool::Append(const v1::Verdict& verdict) {
  std::string record(kRecordHeader, '\0');
  if (!verdict.AppendToString(&record)) return absl::InvalidArgumentError("verdict does not serialize");
  const size_t body = record.size() - kRecordHeader;
  if (body > kMaxRecordBytes) return absl::InvalidArgumentError("verdict too large to spool");
  std::string header;
  PutU32(header, static_cast<uint32_t>(body));
  PutU32(header, Crc(std::string_view(record).substr(kRecordHeader)));
  record.replace(0, kRecordHeader, header);
  const bool open = verdict.phase() == v1::Verdict::OPEN;
  std::lock_guard lock(intake_mu_);
  // The completion of a record written ahead takes that record's place: it is never
  // refused (its transaction was let through on the strength of the record) and the
  // counts move by the difference.
  auto opened = open ? open_bytes_.end() : open_bytes_.find(verdict.id());
  const bool completes = opened != open_bytes_.end();
  const uint64_t rows = rows_.load(std::memory_order_relaxed);
  const uint64_t bytes = bytes_.load(std::memory_order_relaxed);
  if (!completes && rows >= options_.max_rows) {
    return absl::ResourceExhaustedError(fmt::format("verdict spool full ({} verdicts)", rows));
  }
  if (!completes && body > options_.max_bytes - std::min(bytes, options_.max_bytes)) {
    return absl::ResourceExhaustedError(
        fmt::format("verdict spool full ({} of {} bytes; this verdict needs {})", bytes, options_.max_bytes, body));
  }
  if (auto s = WriteAll(intake_fd_, record); !s.ok()) {
    // A partial record would end every later replay at it: cut the file back.
    if (::ftruncate(intake_fd_, static_cast<off_t>(intake_size_)) != 0) {
      return absl::InternalError(fmt::format("{}; and the intake could not be cut back: {}", std::string(s.message()),
                                             std::strerror(errno)));
    }
    return s;
  }
  if (options_.fsync_each && ::fdatasync(intake_fd_) != 0) {
    return absl::InternalError(fmt::format("verdict spool intake fsync: {}", std::strerror(errno)));
  }
  intake_size_ += record.size();
  if (completes) {
    Sub(bytes_, opened->second);
    open_bytes_.erase(opened);
  } else {
    rows_.fetch_add(1, std::memory_order_relaxed);
  }
  bytes_.fetch_add(body, std::memory_order_relaxed);
  if (open) {
    open_bytes_[verdict.id()] = body;
  } else {
    intake_sendable_.fetch_add(1, std::memory_order_relaxed);
  }
  return absl::OkStatus();
}

absl::Status Spool::ApplyIntake(std::string_view records, size_t* used) {
  struct Record {
    std::string_view body;
    v1::Verdict verdict;
  };
  std::vector<Record> parsed;
  size_t at = 0;
  while (records.size() - at >= kRecordHeader) {
    const uint32_t len = GetU32(records.data() + at);
    const uint32_t crc = GetU32(records.data() + at + 4);
    if (len > kMaxRecordBytes || records.size() - at - kRecordHeader < len) break;
    std::string_view body = records.substr(at + kRecordHeader, len);
    if (Crc(body) != crc) break;
    Record r{body, {}};
    at += kRecordHeader + len;
    // Counted by Append, so dropped from the counts when it cannot be sent.
    if (!r.verdict.ParseFromArray(body.data(), static_cast<int>(body.size()))) {
      Sub(rows_, 1);
      Sub(bytes_, body.size());
      ++corrupt_dropped_;
      continue;
    }
    parsed.push_back(std::move(r));
  }
  *used = at;
  if (parsed.empty()) return absl::OkStatus();

  store::Transaction tx(*db_);
  if (!tx.begin_status().ok()) return tx.begin_status();
  auto insert = db_->Cached("INSERT INTO spool (id, body, open) VALUES (?, ?, 0)");
  if (!insert.ok()) return insert.status();
  // A replay after a crash may meet an OPEN verdict already moved: it is kept once.
  auto insert_open = db_->Cached(
      "INSERT INTO spool (id, body, open) SELECT ?1, ?2, 1 WHERE NOT EXISTS "
      "(SELECT 1 FROM spool WHERE id = ?1 AND open = 1)");
  if (!insert_open.ok()) return insert_open.status();
  auto close = db_->Cached("DELETE FROM spool WHERE id = ? AND open = 1 RETURNING open, LENGTH(body)");
  if (!close.ok()) return close.status();

  // OPEN verdicts of this batch by id; one whose completion is in the batch too never
  // becomes a row.
  // rows_ and bytes_ already say what the table holds once this batch is in (Append
  // counted a completion in its record's place); only the sendable count moves here.
  std::unordered_map<std::string_view, size_t> open_at;
  std::vector<bool> keep(parsed.size(), true);
  uint64_t gone_rows = 0, gone_bytes = 0, gone_sendable = 0, new_sendable = 0, intake_sendable = 0;
  for (size_t i = 0; i < parsed.size(); ++i) {
    const auto& v = parsed[i].verdict;
    if (v.phase() == v1::Verdict::OPEN) {
      if (auto [it, fresh] = open_at.try_emplace(v.id(), i); !fresh) {
        keep[it->second] = false;  // the same OPEN twice: the later one stands
        it->second = i;
      }
      continue;
    }
    ++intake_sendable;
    if (auto it = open_at.find(v.id()); it != open_at.end()) {
      keep[it->second] = false;
      open_at.erase(it);
    } else {
      (*close)->Bind(1, v.id());
      if (auto s = DeleteRows(**close, &gone_rows, &gone_sendable, &gone_bytes); !s.ok()) return s;
    }
    (*insert)->Bind(1, v.id()).BindBlob(2, parsed[i].body);
    if (auto s = (*insert)->Run(); !s.ok()) return s;
    ++new_sendable;
  }
  for (size_t i = 0; i < parsed.size(); ++i) {
    if (!keep[i] || parsed[i].verdict.phase() != v1::Verdict::OPEN) continue;
    (*insert_open)->Bind(1, parsed[i].verdict.id()).BindBlob(2, parsed[i].body);
    if (auto s = (*insert_open)->Run(); !s.ok()) return s;  // a replay's duplicate inserts nothing
  }
  if (auto s = tx.Commit(); !s.ok()) return s;
  Sub(sendable_, gone_sendable);
  sendable_.fetch_add(new_sendable, std::memory_order_relaxed);
  Sub(intake_sendable_, intake_sendable);
  return absl::OkStatus();
}

absl::Status Spool::DrainIntake(bool force) {
  // Most of the work (reading, parsing, sqlite) runs without intake_mu_, so workers keep
  // appending meanwhile. The file is emptied once everything in it is applied, under
  // intake_mu_; when appends never pause, a last round under the lock empties it past
  // kIntakeRewindBytes.
  for (int round = force ? 1 : 0; round < 2; ++round) {
    uint64_t end = 0;
    {
      std::lock_guard lock(intake_mu_);
      end = intake_size_;
    }
    if (end > intake_applied_) {
      auto data = ReadRange(intake_fd_, intake_applied_, end);
      if (!data.ok()) return data.status();
      size_t used = 0;
      if (auto s = ApplyIntake(*data, &used); !s.ok()) return s;
      if (used < data->size()) {
        // A torn or damaged record: nothing after it can be trusted to be whole. The
        // records before it are applied; the rest is dropped (it was never counted when it
        // is a replay; counted ones are uncounted below).
        std::lock_guard lock(intake_mu_);
        if (::ftruncate(intake_fd_, 0) != 0) {
          return absl::InternalError(fmt::format("verdict spool intake truncate: {}", std::strerror(errno)));
        }
        intake_size_ = 0;
        intake_applied_ = 0;
        intake_sendable_ = 0;
        ++corrupt_dropped_;
        return Recount();  // under intake_mu_: no append lands between the cut and the count
      }
      intake_applied_ = end;
    }
    std::unique_lock lock(intake_mu_);
    if (intake_size_ == intake_applied_ || round == 1) {
      if (intake_size_ > intake_applied_) {
        // Appends are waiting on the lock for this tail only.
        auto data = ReadRange(intake_fd_, intake_applied_, intake_size_);
        if (!data.ok()) return data.status();
        size_t used = 0;
        if (auto s = ApplyIntake(*data, &used); !s.ok()) return s;
      }
      if (::ftruncate(intake_fd_, 0) != 0) {
        return absl::InternalError(fmt::format("verdict spool intake truncate: {}", std::strerror(errno)));
      }
      intake_size_ = 0;
      intake_applied_ = 0;
      return absl::OkStatus();
    }
    if (intake_applied_ < kIntakeRewindBytes) return absl::OkStatus();  // emptied by a later call
  }
  return absl::OkStatus();
}

absl::Status Spool::CloseInterrupted() {
  auto open = db_->Prepare("SELECT seq, body FROM spool WHERE open = 1 ORDER BY seq");
  if (!open.ok()) return open.status();
  std::vector<std::pair<int64_t, std::string>> closed;
  for (;;) {
    auto r = open->Step();
    if (!r.ok()) return r.status();
    if (!*r) break;
    v1::Verdict v;
    std::string body = open->Blob(1);
    if (!v.ParseFromString(body)) continue;  // Peek drops it as corrupt
    v.set_phase(v1::Verdict::INTERRUPTED);
    v.set_reason(v.reason().empty() ? "interrupted" : v.reason() + "; interrupted");
    closed.emplace_back(open->Int(0), v.SerializeAsString());
  }
  if (closed.empty()) return absl::OkStatus();
  store::Transaction tx(*db_);
  if (!tx.begin_status().ok()) return tx.begin_status();
  auto update = db_->Cached("UPDATE spool SET open = 0, body = ? WHERE seq = ?");
  if (!update.ok()) return update.status();
  for (const auto& [seq, body] : closed) {
    (*update)->BindBlob(1, body).Bind(2, seq);
    if (auto s = (*update)->Run(); !s.ok()) return s;
  }
  if (auto s = tx.Commit(); !s.ok()) return s;
  interrupted_at_open_ = closed.size();
  return absl::OkStatus();
}

absl::StatusOr<std::vector<SpooledVerdict>> Spool::Peek(int64_t after_seq, size_t limit) {
  std::lock_guard lock(mu_);
  if (auto s = DrainIntake(); !s.ok()) return s;
  auto st = db_->Cached("SELECT seq, body FROM spool WHERE seq > ? AND open = 0 ORDER BY seq LIMIT ?");
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
    auto del = db_->Cached("DELETE FROM spool WHERE seq = ? RETURNING open, LENGTH(body)");
    if (!del.ok()) return del.status();
    for (int64_t seq : corrupt) {
      uint64_t removed = 0, removed_sendable = 0, removed_bytes = 0;
      (*del)->Bind(1, seq);
      if (auto d = DeleteRows(**del, &removed, &removed_sendable, &removed_bytes); !d.ok()) return d;
      Sub(rows_, removed);
      Sub(sendable_, removed_sendable);
      Sub(bytes_, removed_bytes);
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
  auto st = db_->Cached("DELETE FROM spool WHERE seq = ? RETURNING open, LENGTH(body)");
  if (!st.ok()) return st.status();
  uint64_t removed = 0, removed_sendable = 0, removed_bytes = 0;
  for (int64_t seq : seqs) {
    (*st)->Bind(1, seq);
    if (auto d = DeleteRows(**st, &removed, &removed_sendable, &removed_bytes); !d.ok()) return d;
  }
  if (auto s = tx.Commit(); !s.ok()) return s;
  Sub(rows_, removed);
  Sub(sendable_, removed_sendable);
  Sub(bytes_, removed_bytes);
  return absl::OkStatus();
}

uint64_t Spool::corrupt_dropped() const {
  std::lock_guard lock(mu_);
  return corrupt_dropped_;
}

}  // namespace egressguard::reporter
