// The PostgreSQL backend: the compliance store in a database that several store
// replicas share. Each replica is stateless beyond its connection pool.
//
// One chain, many writers: every transaction that appends to a chain first takes
// that chain's transaction-level advisory lock (pg_advisory_xact_lock), then reads
// the chain head, appends after it and moves it, and commits (which releases the
// lock). So the replicas' appends are one sequence: seq is the head's seq + 1 (no
// gaps, the same numbering as on sqlite, so `store migrate` copies chains as they
// are), and two appends can never both chain onto the same head.
//
// WatchActive across replicas: each replica polls max(activations.seq) (the
// generation) every Options::pg_poll_interval. Polling rather than LISTEN/NOTIFY: a
// notification sent while a replica's listening connection is down is lost, so it
// would have to poll after every reconnect anyway; NOTIFY also does not pass a
// transaction-pooling pgbouncer. One index lookup per interval per replica costs
// nothing measurable.

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <limits>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_set>

#include "appliance/store/backend.h"
#include "appliance/store/chain.h"
#include "appliance/store/internal.h"
#include "appliance/store/pg.h"
#include "appliance/store/pg_schema.h"
#include "appliance/store/schema.h"
#include "appliance/store/sqlite.h"

namespace egressguard::store {

namespace {

using namespace internal;  // NOLINT: the shared helpers of both backends
using pg::Param;
using pg::Params;

// Rows per COPY when `store migrate` copies a database (bounds its memory).
constexpr size_t kRowsPerInsert = 1000;
constexpr int kVerifyFetch = 5000;

struct Head {
  std::string anchor;
  int64_t seq = 0;
  std::string hash;
  int64_t received_us = 0;
};

absl::StatusOr<Head> LoadHead(pg::Connection& c, const char* chain) {
  auto r = c.Exec("SELECT anchor_hash, head_seq, head_hash, head_received_us FROM chain_heads WHERE chain = $1",
                  {Param::Text(chain)});
  if (!r.ok()) return r.status();
  if (r->rows() != 1) return absl::DataLossError(fmt::format("chain head of {} is missing", chain));
  return Head{r->Bytes(0, 0), r->Int(0, 1), r->Bytes(0, 2), r->Int(0, 3)};
}

absl::Status SaveHead(pg::Connection& c, const char* chain, const Head& h) {
  return c.Run(
      "UPDATE chain_heads SET anchor_hash = $1, head_seq = $2, head_hash = $3, head_received_us = $4 WHERE chain = $5",
      {Param::Bytes(h.anchor), Param::Int(h.seq), Param::Bytes(h.hash), Param::Int(h.received_us),
       Param::Text(chain)});
}

absl::Status Lock(pg::Connection& c, int64_t key) {
  return c.Run("SELECT pg_advisory_xact_lock($1)", {Param::Int(key)});
}

// Appends one audit row inside the caller's transaction.
absl::Status AppendAudit(pg::Connection& c, int64_t now_us, const AuditEntry& e) {
  if (auto s = Lock(c, pg::kLockAuditChain); !s.ok()) return s;
  auto head = LoadHead(c, "audit");
  if (!head.ok()) return head.status();
  std::string hash = ChainHash(head->hash, AuditContent(now_us, e.actor, e.role, e.method, e.allowed, e.detail));
  const int64_t seq = head->seq + 1;
  if (auto s = c.Run("INSERT INTO audit (seq, time_us, actor, role, method, allowed, detail, prev_hash, hash) "
                     "VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)",
                     {Param::Int(seq), Param::Int(now_us), Param::Text(e.actor), Param::Text(e.role),
                      Param::Text(e.method), Param::Text(e.allowed ? "true" : "false"), Param::Text(e.detail),
                      Param::Bytes(head->hash), Param::Bytes(hash)});
      !s.ok()) {
    return s;
  }
  head->seq = seq;
  head->hash = std::move(hash);
  return SaveHead(c, "audit", *head);
}

bool HasNul(const std::string& s) { return std::memchr(s.data(), '\0', s.size()) != nullptr; }

// PostgreSQL text cannot hold a NUL byte; sqlite's can. Refused rather than cut.
bool TextFieldsHaveNul(const v1::Verdict& v) {
  if (HasNul(v.id()) || HasNul(v.appliance()) || HasNul(v.client_address()) || HasNul(v.workload()) ||
      HasNul(v.host()) || HasNul(v.rule_pack_version())) {
    return true;
  }
  for (const auto& f : v.findings()) {
    if (HasNul(f.category()) || HasNul(f.rule_id())) return true;
  }
  return false;
}

// The month partition holding `received_us`: its name and [from, to) in microseconds.
struct Partition {
  std::string name;
  int64_t from_us;
  int64_t to_us;
};

Partition MonthOf(int64_t received_us) {
  using namespace std::chrono;
  const int64_t day_us = 86400LL * 1000000LL;
  // Floor division: before 1970 too (a test clock pinned at 0 minus a little).
  int64_t days = received_us / day_us;
  if (received_us % day_us < 0) --days;
  const year_month_day ymd{sys_days{std::chrono::days{days}}};
  const year_month first = ymd.year() / ymd.month();
  const year_month next = first + months{1};
  const auto from = sys_days{first / 1}.time_since_epoch().count();
  const auto to = sys_days{next / 1}.time_since_epoch().count();
  return {fmt::format("verdicts_y{:04d}m{:02d}", static_cast<int>(ymd.year()), static_cast<unsigned>(ymd.month())),
          static_cast<int64_t>(from) * day_us, static_cast<int64_t>(to) * day_us};
}

// Makes the month partition for `received_us` (and its verdict_partitions row) inside
// the caller's transaction, which holds the verdict chain lock: replicas never race on it.
absl::StatusOr<std::string> CreatePartition(pg::Connection& c, int64_t received_us) {
  const Partition p = MonthOf(received_us);
  // DDL takes no parameters; the name and bounds are our own integers.
  if (auto s = c.Run(fmt::format("CREATE TABLE IF NOT EXISTS {} PARTITION OF verdicts FOR VALUES FROM ({}) TO ({})",
                                 p.name, p.from_us, p.to_us));
      !s.ok()) {
    return s;
  }
  if (auto s = c.Run("INSERT INTO verdict_partitions (name, from_us, to_us) VALUES ($1, $2, $3) "
                     "ON CONFLICT (name) DO NOTHING",
                     {Param::Text(p.name), Param::Int(p.from_us), Param::Int(p.to_us)});
      !s.ok()) {
    return s;
  }
  return p.name;
}

// PostgreSQL's binary COPY format (the COPY reference, "Binary Format"): a header,
// per tuple an int16 field count and per field an int32 length and the value in the
// type's binary form (big-endian integers; text and bytea as their bytes), then an
// int16 -1. Binary rather than text: no escaping of tabs, backslashes or bytea.
class CopyWriter {
 public:
  void Header() {
    static constexpr char kSignature[] = {'P', 'G', 'C', 'O', 'P', 'Y', '\n', '\377', '\r', '\n', '\0'};
    buf_.append(kSignature, sizeof kSignature);
    Put32(0);  // flags
    Put32(0);  // header extension length
  }
  void Tuple(int16_t fields) { Put16(static_cast<uint16_t>(fields)); }
  void Int8(int64_t v) {
    Put32(8);
    Put32(static_cast<uint32_t>(static_cast<uint64_t>(v) >> 32));
    Put32(static_cast<uint32_t>(static_cast<uint64_t>(v)));
  }
  void Int4(int32_t v) {
    Put32(4);
    Put32(static_cast<uint32_t>(v));
  }
  // text (valid UTF-8, no NUL: checked by the caller) and bytea alike.
  void Bytes(std::string_view v) {
    Put32(static_cast<uint32_t>(v.size()));
    buf_.append(v);
  }
  // A one-dimensional text[] (element type oid 25); {} has no dimensions.
  void TextArray(const std::vector<std::string>& values) {
    size_t n = 12 + (values.empty() ? 0 : 8);
    for (const auto& e : values) n += 4 + e.size();
    Put32(static_cast<uint32_t>(n));
    Put32(values.empty() ? 0 : 1);  // dimensions
    Put32(0);                       // no NULL elements
    Put32(25);                      // text
    if (!values.empty()) {
      Put32(static_cast<uint32_t>(values.size()));
      Put32(1);  // lower bound
    }
    for (const auto& e : values) Bytes(e);
  }
  void Raw(std::string_view v) { buf_.append(v); }
  void Trailer() { Put16(0xffff); }
  std::string& data() { return buf_; }
  void clear() { buf_.clear(); }

 private:
  void Put16(uint16_t v) {
    const char b[2] = {static_cast<char>(v >> 8), static_cast<char>(v)};
    buf_.append(b, 2);
  }
  void Put32(uint32_t v) {
    const char b[4] = {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8),
                       static_cast<char>(v)};
    buf_.append(b, 4);
  }
  std::string buf_;
};

// The COPY column order: first the 13 columns that need no chain head (encoded before
// the chain lock is taken), then the 4 that do.
constexpr const char* kCopyVerdictsSql =
    "COPY verdicts (id, time_us, appliance, client_address, workload, host, action, rule_pack_version, bytes_out, "
    "bytes_in, categories, rule_ids, body, seq, received_us, prev_hash, hash) FROM STDIN (FORMAT binary)";
constexpr int16_t kVerdictCopyFields = 17;

// The tuple start and first 13 fields of a verdict row, for VerdictCopy::Add.
std::string VerdictFields(const v1::Verdict& v, const std::vector<std::string>& categories,
                          const std::vector<std::string>& rule_ids, std::string_view body) {
  CopyWriter w;
  w.Tuple(kVerdictCopyFields);
  w.Bytes(v.id());
  w.Int8(ToUs(v.time()));
  w.Bytes(v.appliance());
  w.Bytes(v.client_address());
  w.Bytes(v.workload());
  w.Bytes(v.host());
  w.Int4(static_cast<int32_t>(v.action()));
  w.Bytes(v.rule_pack_version());
  w.Int8(static_cast<int64_t>(v.bytes_out()));
  w.Int8(static_cast<int64_t>(v.bytes_in()));
  w.TextArray(categories);
  w.TextArray(rule_ids);
  w.Bytes(body);
  return std::move(w.data());
}

// Verdict rows for one COPY each into verdicts and verdict_ids: one statement per
// flush, no parameter list for the server to parse and plan.
class VerdictCopy {
 public:
  // `ids`: whether Flush writes verdict_ids too (Ingest may have claimed them already).
  explicit VerdictCopy(bool ids = true) : with_ids_(ids) {}
  // `fields`: VerdictFields of the verdict.
  void Add(int64_t seq, std::string_view id, std::string_view fields, int64_t received_us,
           std::string_view prev_hash, std::string_view hash) {
    if (pending_ == 0) {
      verdicts_.Header();
      ids_.Header();
    }
    verdicts_.Raw(fields);
    verdicts_.Int8(seq);
    verdicts_.Int8(received_us);
    verdicts_.Bytes(prev_hash);
    verdicts_.Bytes(hash);
    ids_.Tuple(2);
    ids_.Bytes(id);
    ids_.Int8(seq);
    ++pending_;
  }
  void Add(int64_t seq, const v1::Verdict& v, int64_t received_us, const std::vector<std::string>& categories,
           const std::vector<std::string>& rule_ids, const std::string& body, const std::string& prev_hash,
           const std::string& hash) {
    Add(seq, v.id(), VerdictFields(v, categories, rule_ids, body), received_us, prev_hash, hash);
  }
  size_t pending() const { return pending_; }
  absl::Status Flush(pg::Connection& c) {
    if (pending_ == 0) return absl::OkStatus();
    verdicts_.Trailer();
    ids_.Trailer();
    if (auto s = c.CopyIn(kCopyVerdictsSql, verdicts_.data()); !s.ok()) return s;
    if (with_ids_) {
      if (auto s = c.CopyIn("COPY verdict_ids (id, seq) FROM STDIN (FORMAT binary)", ids_.data()); !s.ok()) {
        return s;
      }
    }
    verdicts_.clear();
    ids_.clear();
    pending_ = 0;
    return absl::OkStatus();
  }

 private:
  bool with_ids_;
  CopyWriter verdicts_, ids_;
  size_t pending_ = 0;
};

// Query and Stats conditions; `{}` in a condition is replaced by the next $n.
struct Where {
  std::string sql = "TRUE";
  Params params;
  void And(const std::string& cond) { sql += " AND " + cond; }
  void And(const std::string& cond_with_param, Param p) {
    params.push_back(std::move(p));
    sql += " AND " + fmt::format(fmt::runtime(cond_with_param), fmt::format("${}", params.size()));
  }
  std::string Next(Param p) {
    params.push_back(std::move(p));
    return fmt::format("${}", params.size());
  }
};

// `skip_category`: Stats by category matches the category on the unnested value.
Where BuildWhere(const v1::VerdictFilter& f, bool skip_category = false) {
  Where w;
  if (!f.category().empty() && !skip_category) {
    w.And("v.categories @> ARRAY[{}]::text[]", Param::Text(f.category()));
  }
  if (!f.rule_id().empty()) w.And("v.rule_ids @> ARRAY[{}]::text[]", Param::Text(f.rule_id()));
  if (f.has_since()) w.And("v.time_us >= {}", Param::Int(ToUs(f.since())));
  if (f.has_until()) w.And("v.time_us < {}", Param::Int(ToUs(f.until())));
  if (!f.client_address().empty()) w.And("v.client_address = {}", Param::Text(f.client_address()));
  if (!f.workload().empty()) w.And("v.workload = {}", Param::Text(f.workload()));
  if (!f.host().empty()) w.And("v.host = {}", Param::Text(f.host()));
  if (f.action() != rules::v1::ACTION_UNSPECIFIED) w.And("v.action = {}", Param::Int(f.action()));
  if (!f.rule_pack_version().empty()) w.And("v.rule_pack_version = {}", Param::Text(f.rule_pack_version()));
  if (!f.appliance().empty()) w.And("v.appliance = {}", Param::Text(f.appliance()));
  if (!f.id().empty()) {
    // verdicts has no index on id (a unique one would have to hold the partition key);
    // verdict_ids has, and gives the seq, which the primary key leads with.
    const std::string id = w.Next(Param::Text(f.id()));
    w.And(fmt::format("v.id = {0} AND v.seq = (SELECT i.seq FROM verdict_ids i WHERE i.id = {0})", id));
  }
  return w;
}

// Rows of a group commit (PgBackend::Ingest) at most: bounds one transaction's COPY
// buffer and how long it holds the chain lock.
constexpr size_t kMaxGroupRows = 8000;

class PgBackend final : public Backend {
 public:
  static absl::StatusOr<BackendPtr> Open(const Store::Options& options) {
    if (auto s = pg::CheckNoPassword(options.path); !s.ok()) return s;
    auto self = std::unique_ptr<PgBackend>(new PgBackend(options));
    {
      auto c = self->pool_.Get();
      if (!c.ok()) return c.status();
      if (auto v = pg::Migrate(**c); !v.ok()) return v.status();
      auto gen = (*c)->Exec("SELECT COALESCE(MAX(seq), 0) FROM activations");
      if (!gen.ok()) return gen.status();
      self->active_.Raise(static_cast<uint64_t>(gen->Int(0, 0)));
    }
    PgBackend* raw = self.get();
    self->poller_ = std::thread([raw] { raw->PollLoop(); });
    return BackendPtr(std::move(self));
  }

  ~PgBackend() override {
    {
      std::lock_guard lock(poll_mu_);
      stopping_ = true;
    }
    poll_cv_.notify_all();
    if (poller_.joinable()) poller_.join();
  }

  // Backend

  absl::StatusOr<IngestResult> Ingest(std::vector<v1::Verdict> verdicts) override {
    IngestResult result;
    std::vector<Row> rows;
    rows.reserve(verdicts.size());
    std::unordered_set<std::string_view> batch_ids;
    const int64_t now = Now();
    // Everything that needs no chain head is done before the lock, in the caller's
    // thread: serializing, checking, the tags. Other batches commit meanwhile.
    for (auto& v : verdicts) {
      auto reject = [&](const std::string& why) {
        v1::RejectedVerdict r;
        r.set_id(v.id().substr(0, kMaxIdBytes));
        r.set_reason(why);
        result.rejected.push_back(std::move(r));
      };
      if (auto why = RejectionOf(v)) {
        reject(*why);
        continue;
      }
      if (TextFieldsHaveNul(v)) {
        reject("a text field (id, appliance, client, workload, host, pack version, category, rule id) holds a NUL byte");
        continue;
      }
      if (!batch_ids.insert(v.id()).second) {
        result.acked.push_back(v.id());  // the same verdict twice in one batch
        continue;
      }
      if (!v.has_time()) *v.mutable_time() = FromUs(now);
      Row row{&v, {}, {}};
      if (!DeterministicInto(v, kMaxVerdictBytes, &row.body)) {
        batch_ids.erase(v.id());
        reject(kTooLarge);
        continue;
      }
      row.fields = VerdictFields(v, CategoriesOf(v), RuleIdsOf(v), row.body);
      rows.push_back(std::move(row));
    }
    if (rows.empty()) return result;

    // Group commit: the batches of concurrent callers (several appliances' Report
    // streams on this replica) go into one transaction, one chain-lock hold and one
    // durable commit. Each transaction holds the chain lock through its commit's WAL
    // flush (about 10 ms on this machine's disk), so one commit per caller's batch
    // capped ingest at a few hundred batches per second whatever the streams; the
    // reporter sends batches of 500. The first caller to find no transaction running
    // leads: it writes what is queued (its own batch among it) while later callers
    // queue for the next one. Its own batch may not fit a group; it then leads again.
    PendingBatch mine{&rows, now, 0, absl::OkStatus(), false};
    {
      std::unique_lock lock(group_mu_);
      group_queue_.push_back(&mine);
      while (!mine.done) {
        if (group_leader_) {
          group_cv_.wait(lock);
          continue;
        }
        group_leader_ = true;
        std::vector<PendingBatch*> group;
        size_t group_rows = 0;
        while (!group_queue_.empty() &&
               (group.empty() || group_rows + group_queue_.front()->rows->size() <= kMaxGroupRows)) {
          group_rows += group_queue_.front()->rows->size();
          group.push_back(group_queue_.front());
          group_queue_.pop_front();
        }
        lock.unlock();
        const absl::Status status = WriteGroup(group);
        {
          std::lock_guard error_lock(write_error_mu_);
          write_error_ = status;
        }
        lock.lock();
        for (auto* p : group) {
          p->status = status;
          p->done = true;
        }
        group_leader_ = false;
        group_cv_.notify_all();
      }
    }
    if (!mine.status.ok()) return mine.status;
    result.inserted = mine.inserted;
    int64_t newest = 0;
    for (const auto& r : rows) {
      result.acked.push_back(r.v->id());
      newest = std::max<int64_t>(newest, r.v->time().seconds());
    }
    if (newest > 0) last_ingested_unix_.store(newest, std::memory_order_relaxed);
    return result;
  }

  absl::Status Audit(AuditEntry entry) override {
    auto c = pool_.Get();
    if (!c.ok()) return c.status();
    pg::Transaction tx(**c);
    if (!tx.begin_status().ok()) return tx.begin_status();
    if (auto s = AppendAudit(**c, Now(), entry); !s.ok()) return s;
    return tx.Commit();
  }

  absl::StatusOr<v1::PackInfo> PushPack(const rules::v1::RulePack& pack, const std::string& author,
                                        const std::string& reason) override {
    auto c = pool_.Get();
    if (!c.ok()) return c.status();
    pg::Transaction tx(**c);
    if (!tx.begin_status().ok()) return tx.begin_status();
    if (auto s = Lock(**c, pg::kLockPacks); !s.ok()) return s;
    if (LoadInfo(**c, pack.version(), nullptr).ok()) {
      return absl::AlreadyExistsError(
          fmt::format("rule pack version {} exists; versions are immutable, push a new one", pack.version()));
    }
    std::string body = Deterministic(pack);
    std::string sha = Sha256Hex(body);
    const int64_t now = Now();
    if (auto s = (*c)->Run("INSERT INTO packs (version, name, body, sha256, author, reason, pushed_us, rule_count) "
                           "VALUES ($1,$2,$3,$4,$5,$6,$7,$8)",
                           {Param::Text(pack.version()), Param::Text(pack.name()), Param::Bytes(body),
                            Param::Text(sha), Param::Text(author), Param::Text(reason), Param::Int(now),
                            Param::Int(pack.rules_size())});
        !s.ok()) {
      return s;
    }
    AuditEntry e{author, "officer", "/egressguard.v1.RuleAdmin/Push",
                 fmt::format("pushed rule pack {} ({} rules, sha256 {}): {}", pack.version(), pack.rules_size(), sha,
                             reason),
                 true};
    if (auto s = AppendAudit(**c, now, e); !s.ok()) return s;
    if (auto s = tx.Commit(); !s.ok()) return s;
    return LoadInfo(**c, pack.version(), nullptr);
  }

  absl::StatusOr<v1::PackInfo> ActivatePack(const std::string& version, v1::PackMode mode, const AuditEntry& who,
                                            const std::string& reason) override {
    return Activate(version, std::optional<v1::PackMode>(mode), who, reason, false);
  }

  absl::StatusOr<v1::PackInfo> RollbackPack(const std::string& to_version, const AuditEntry& who,
                                            const std::string& reason) override {
    return Activate(to_version, std::nullopt, who, reason, true);
  }

  absl::StatusOr<uint64_t> ApplyRetention(int days, const std::string& actor) override {
    auto c = pool_.Get();
    if (!c.ok()) return c.status();
    const int64_t now = Now();
    const int64_t cutoff = now - int64_t{days} * 86400LL * 1000000LL;
    pg::Transaction tx(**c);
    if (!tx.begin_status().ok()) return tx.begin_status();
    if (auto s = Lock(**c, pg::kLockVerdictChain); !s.ok()) return s;
    // received_us grows with seq (the writers keep it so), so the rows to drop are a
    // prefix of the chain.
    auto last = (*c)->Exec("SELECT COALESCE(MAX(seq), 0) FROM verdicts WHERE received_us < $1", {Param::Int(cutoff)});
    if (!last.ok()) return last.status();
    const int64_t last_old = last->Int(0, 0);
    uint64_t deleted = 0;
    std::string anchor;
    if (last_old > 0) {
      auto hash = (*c)->Exec("SELECT hash FROM verdicts WHERE seq = $1", {Param::Int(last_old)});
      if (!hash.ok()) return hash.status();
      if (hash->rows() != 1) return absl::InternalError("retention: boundary row vanished");
      anchor = hash->Bytes(0, 0);
      // The deleted verdicts leave the rollups with them (before their partitions go);
      // our own integer in the text, for the two statements to run as one.
      if (auto s = (*c)->Run(AddRollupOfVerdictsSql(Dialect::kPostgres, fmt::format("v.seq <= {}", last_old), -1));
          !s.ok()) {
        return s;
      }
      // Whole months before the cutoff go as partitions (no row-by-row delete, no
      // dead tuples to vacuum); the boundary month's old rows are deleted.
      auto whole = (*c)->Exec("SELECT name FROM verdict_partitions WHERE to_us <= $1 ORDER BY from_us",
                              {Param::Int(cutoff)});
      if (!whole.ok()) return whole.status();
      std::vector<std::string> dropped;
      for (int i = 0; i < whole->rows(); ++i) {
        const std::string name = whole->Text(i, 0);
        if (!ValidPartitionName(name)) return absl::DataLossError(fmt::format("bad partition name {}", name));
        auto n = (*c)->Exec(fmt::format("SELECT COUNT(*) FROM {}", name));
        if (!n.ok()) return n.status();
        deleted += static_cast<uint64_t>(n->Int(0, 0));
        if (auto s = (*c)->Run(fmt::format("DROP TABLE {}", name)); !s.ok()) return s;
        if (auto s = (*c)->Run("DELETE FROM verdict_partitions WHERE name = $1", {Param::Text(name)}); !s.ok()) {
          return s;
        }
        dropped.push_back(name);
      }
      auto del = (*c)->Exec("WITH d AS (DELETE FROM verdicts WHERE seq <= $1 RETURNING 1) SELECT COUNT(*) FROM d",
                            {Param::Int(last_old)});
      if (!del.ok()) return del.status();
      deleted += static_cast<uint64_t>(del->Int(0, 0));
      if (auto s = (*c)->Run("DELETE FROM verdict_ids WHERE seq <= $1", {Param::Int(last_old)}); !s.ok()) return s;
      auto head = LoadHead(**c, "verdicts");
      if (!head.ok()) return head.status();
      head->anchor = anchor;
      if (auto s = SaveHead(**c, "verdicts", *head); !s.ok()) return s;
      if (auto s = AppendAudit(**c, now, {actor, "store", "retention",
                                          RetentionDetail(days, deleted, last_old, anchor), true});
          !s.ok()) {
        return s;
      }
      if (auto s = tx.Commit(); !s.ok()) return s;
      for (const auto& name : dropped) known_partitions_.Remove(name);
      return deleted;
    }
    if (auto s = AppendAudit(**c, now, {actor, "store", "retention", RetentionDetail(days, 0, 0, ""), true});
        !s.ok()) {
      return s;
    }
    if (auto s = tx.Commit(); !s.ok()) return s;
    return deleted;
  }

  absl::StatusOr<v1::QueryResponse> Query(const v1::QueryRequest& request) override {
    const uint32_t page = PageSize(request.page_size());
    const bool newest = request.order() == v1::NEWEST_FIRST;
    Where w = BuildWhere(request.filter());
    if (!request.page_token().empty()) {
      int64_t token_time = 0, token_seq = 0;
      if (auto st = ParsePageToken(request.page_token(), &token_time, &token_seq); !st.ok()) return st;
      const std::string t = w.Next(Param::Int(token_time));
      const std::string s = w.Next(Param::Int(token_seq));
      // A row comparison: the (time_us, seq) indexes walk straight to it.
      w.And(fmt::format("(v.time_us, v.seq) {} ({}, {})", newest ? "<" : ">", t, s));
    }
    const char* dir = newest ? "DESC" : "ASC";
    const std::string limit = w.Next(Param::Int(int64_t{page} + 1));
    const std::string sql =
        fmt::format("SELECT v.body, v.time_us, v.seq FROM verdicts v WHERE {0} ORDER BY v.time_us {2}, v.seq {2} LIMIT {1}",
                    w.sql, limit, dir);
    auto c = pool_.Get();
    if (!c.ok()) return c.status();
    auto r = (*c)->Exec(sql, w.params);
    if (!r.ok()) return r.status();
    v1::QueryResponse out;
    const int n = std::min(r->rows(), static_cast<int>(page));
    for (int i = 0; i < n; ++i) {
      if (!out.add_verdicts()->ParseFromString(r->Bytes(i, 0))) {
        return absl::DataLossError("a stored verdict does not parse");
      }
    }
    if (r->rows() > static_cast<int>(page)) {
      out.set_next_page_token(fmt::format("{}:{}", r->Int(n - 1, 1), r->Int(n - 1, 2)));
    }
    return out;
  }

  absl::StatusOr<v1::StatsResponse> Stats(const v1::StatsRequest& request) override {
    const auto group = request.group_by();
    if (auto plan = PlanRollupStats(request)) return RollupStats(*plan, group);
    const bool by_category = group == v1::CATEGORY;
    Where w = BuildWhere(request.filter(), by_category);
    std::string from = "verdicts v";
    std::string key;
    switch (group) {
      case v1::CATEGORY:
        from = "verdicts v CROSS JOIN LATERAL unnest(v.categories) AS c(value)";
        key = "c.value";
        if (!request.filter().category().empty()) w.And("c.value = {}", Param::Text(request.filter().category()));
        break;
      case v1::DESTINATION: key = "v.host"; break;
      case v1::DAY: key = "to_char(to_timestamp(v.time_us / 1000000) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"; break;
      case v1::ACTION: key = "v.action"; break;
      case v1::WORKLOAD: key = "v.workload"; break;
      case v1::WORKLOAD_DESTINATION: key = "v.workload, v.host"; break;
      default: return CheckStatsGroup(group);
    }
    const bool pair = group == v1::WORKLOAD_DESTINATION;
    const int n = pair ? 2 : 1;
    // Ordered outside the grouping by name: a COLLATE on an ordinal would make it an
    // integer constant. COLLATE "C": ties sorted by bytes, as on sqlite.
    const std::string select_keys =
        pair ? "v.workload AS k1, v.host AS k2" : key + " AS k1";
    const std::string order_keys =
        group == v1::ACTION ? "k1" : pair ? "k1 COLLATE \"C\", k2 COLLATE \"C\"" : "k1 COLLATE \"C\"";
    const std::string sql = fmt::format(
        "SELECT * FROM (SELECT {0}, COUNT(*) AS n, COALESCE(SUM(v.bytes_out), 0)::bigint, "
        "COALESCE(SUM(v.bytes_in), 0)::bigint FROM {1} WHERE {2} GROUP BY {3}) s ORDER BY n DESC, {4}",
        select_keys, from, w.sql, pair ? "1, 2" : "1", order_keys);
    auto c = pool_.Get();
    if (!c.ok()) return c.status();
    auto r = (*c)->Exec(sql, w.params);
    if (!r.ok()) return r.status();
    v1::StatsResponse out;
    for (int i = 0; i < r->rows(); ++i) {
      auto* row = out.add_rows();
      if (group == v1::ACTION) {
        row->set_key(ActionKey(r->Int(i, 0)));
      } else if (pair) {
        row->set_workload(r->Text(i, 0));
        row->set_host(r->Text(i, 1));
        row->set_key(fmt::format("{}|{}", row->workload(), row->host()));
      } else {
        row->set_key(r->Text(i, 0));
        if (group == v1::WORKLOAD) row->set_workload(row->key());
        if (group == v1::DESTINATION) row->set_host(row->key());
      }
      row->set_verdicts(static_cast<uint64_t>(r->Int(i, n)));
      row->set_bytes_out(static_cast<uint64_t>(r->Int(i, n + 1)));
      row->set_bytes_in(static_cast<uint64_t>(r->Int(i, n + 2)));
    }
    return out;
  }

  absl::StatusOr<v1::ListPacksResponse> ListPacks() override {
    auto c = pool_.Get();
    if (!c.ok()) return c.status();
    auto r = (*c)->Exec("SELECT version FROM packs ORDER BY pushed_us DESC, version COLLATE \"C\"");
    if (!r.ok()) return r.status();
    v1::ListPacksResponse out;
    for (int i = 0; i < r->rows(); ++i) {
      auto info = LoadInfo(**c, r->Text(i, 0), nullptr);
      if (!info.ok()) return info.status();
      *out.add_packs() = std::move(*info);
    }
    return out;
  }

  absl::StatusOr<v1::GetPackResponse> GetPack(const std::string& version) override {
    auto c = pool_.Get();
    if (!c.ok()) return c.status();
    std::string v = version;
    if (v.empty()) {
      auto acts = Activations(**c);
      if (!acts.ok()) return acts.status();
      auto stack = EffectiveStack(*acts);
      if (stack.empty()) return absl::NotFoundError("no rule pack is active");
      v = stack.back().version;
    }
    v1::GetPackResponse out;
    auto info = LoadInfo(**c, v, out.mutable_pack());
    if (!info.ok()) return info.status();
    *out.mutable_info() = std::move(*info);
    return out;
  }

  absl::StatusOr<v1::AuditListResponse> ListAudit(const v1::AuditListRequest& request) override {
    const uint32_t limit = PageSize(request.limit());
    Where w;
    w.And("seq > {}", Param::Int(static_cast<int64_t>(request.after_seq())));
    if (!request.actor().empty()) w.And("actor = {}", Param::Text(request.actor()));
    if (!request.method().empty()) w.And("method = {}", Param::Text(request.method()));
    if (request.denied_only()) w.And("NOT allowed");
    const std::string lim = w.Next(Param::Int(limit));
    auto c = pool_.Get();
    if (!c.ok()) return c.status();
    auto r = (*c)->Exec(fmt::format("SELECT seq, time_us, actor, role, method, allowed, detail, hash FROM audit "
                                    "WHERE {} ORDER BY seq LIMIT {}",
                                    w.sql, lim),
                        w.params);
    if (!r.ok()) return r.status();
    v1::AuditListResponse out;
    for (int i = 0; i < r->rows(); ++i) {
      auto* rec = out.add_records();
      rec->set_seq(static_cast<uint64_t>(r->Int(i, 0)));
      *rec->mutable_time() = FromUs(r->Int(i, 1));
      rec->set_actor(r->Text(i, 2));
      rec->set_role(r->Text(i, 3));
      rec->set_method(r->Text(i, 4));
      rec->set_allowed(r->Text(i, 5) == "t");
      rec->set_detail(r->Text(i, 6));
      rec->set_hash(Hex(r->Bytes(i, 7)));
    }
    return out;
  }

  absl::StatusOr<v1::VerifyResponse> Verify() override {
    auto c = pool_.Get();
    if (!c.ok()) return c.status();
    // One snapshot: both chains and their heads as of the same moment.
    pg::Transaction tx(**c, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
    if (!tx.begin_status().ok()) return tx.begin_status();
    v1::VerifyResponse out;
    if (auto s = VerifyVerdicts(**c, &out); !s.ok()) return s;
    // The rollups are derived, not chained: rebuilt from the verdicts and compared.
    for (bool stored : {true, false}) {
      auto r = (*c)->Exec(RollupMismatchSql(Dialect::kPostgres, stored));
      if (!r.ok()) return r.status();
      for (int i = 0; i < r->rows(); ++i) {
        AddRollupProblem(&out, stored, r->Int(i, 0), r->Int(i, 1), r->Text(i, 2), r->Text(i, 3), r->Int(i, 4));
      }
    }
    if (auto s = VerifyAudit(**c, &out); !s.ok()) return s;
    if (auto s = tx.Commit(); !s.ok()) return s;
    out.set_ok(out.problems().empty());
    return out;
  }

  StoreHealth Health() override {
    StoreHealth h;
    h.read = [&]() -> absl::Status {
      auto c = pool_.Get();
      if (!c.ok()) return c.status();
      return (*c)->Run("SELECT head_seq FROM chain_heads WHERE chain = 'verdicts'");
    }();
    {
      std::lock_guard lock(write_error_mu_);
      h.write = write_error_;
    }
    // A lost connection that has come back is not a write failure any more; any other
    // failure stays until an ingest commits again.
    if (h.read.ok() && absl::IsUnavailable(h.write)) h.write = absl::OkStatus();
    if (!h.read.ok()) h.write = h.read;
    h.index = absl::OkStatus();  // no deferred index here: PostgreSQL's indexes are updated at insert
    return h;
  }

  std::optional<int64_t> LastIngestedVerdictUnix() const override {
    const int64_t t = last_ingested_unix_.load(std::memory_order_relaxed);
    return t > 0 ? std::optional<int64_t>(t) : std::nullopt;
  }
  uint64_t active_generation() const override { return active_.generation(); }
  void WaitActiveChange(uint64_t seen, std::chrono::milliseconds timeout) override { active_.Wait(seen, timeout); }
  void Shutdown() override { active_.Shutdown(); }
  bool shutting_down() const override { return active_.shutting_down(); }

 private:
  // A verdict ready to be written: its serialized body and its COPY fields.
  struct Row {
    const v1::Verdict* v;
    std::string body;
    std::string fields;  // VerdictFields: the COPY tuple without seq, receive time and hashes
  };
  // One caller's batch waiting in the group-commit queue.
  struct PendingBatch {
    const std::vector<Row>* rows;
    int64_t now;  // the caller's clock when it came
    uint64_t inserted = 0;
    absl::Status status;
    bool done = false;
  };

  absl::StatusOr<v1::StatsResponse> RollupStats(RollupPlan plan, v1::GroupBy group) {
    auto c = pool_.Get();
    if (!c.ok()) return c.status();
    {
      // A closed_day read before a concurrent close is still right: closing keeps the hours.
      auto closed = (*c)->Exec(kClosedDaySql);
      if (!closed.ok()) return closed.status();
      UseDays(closed->rows() == 1 ? closed->Int(0, 0) : std::numeric_limits<int32_t>::min(), &plan);
    }
    Params params{Param::Int(plan.kind)};
    std::string from, to;
    if (plan.from_hour) {
      params.push_back(Param::Int(*plan.from_hour));
      from = fmt::format("${}", params.size());
    }
    if (plan.to_hour) {
      params.push_back(Param::Int(*plan.to_hour));
      to = fmt::format("${}", params.size());
    }
    auto r = (*c)->Exec(RollupStatsSql(Dialect::kPostgres, plan, group, "$1", from, to), params);
    if (!r.ok()) return r.status();
    const bool pair = group == v1::WORKLOAD_DESTINATION;
    const int n = pair ? 2 : 1;
    v1::StatsResponse out;
    for (int i = 0; i < r->rows(); ++i) {
      auto* row = out.add_rows();
      if (group == v1::ACTION) {
        row->set_key(ActionKey(r->Int(i, 0)));
      } else if (pair) {
        row->set_workload(r->Text(i, 0));
        row->set_host(r->Text(i, 1));
        row->set_key(fmt::format("{}|{}", row->workload(), row->host()));
      } else {
        row->set_key(r->Text(i, 0));
        if (group == v1::WORKLOAD) row->set_workload(row->key());
        if (group == v1::DESTINATION) row->set_host(row->key());
      }
      row->set_verdicts(static_cast<uint64_t>(r->Int(i, n)));
      row->set_bytes_out(static_cast<uint64_t>(r->Int(i, n + 1)));
      row->set_bytes_in(static_cast<uint64_t>(r->Int(i, n + 2)));
    }
    return out;
  }

  // One transaction for a group of callers' batches (Ingest): under the verdict chain
  // lock it reads the head, claims the ids, hashes in memory, COPYs the pre-encoded
  // rows, adds the rollups and moves the head. Sets each batch's `inserted`.
  absl::Status WriteGroup(const std::vector<PendingBatch*>& group) {
    // An id sent in two of the group's batches (an appliance's retry racing its
    // original) is one verdict: the first row is the one written, the later ones are
    // acked as stored.
    std::vector<const Row*> rows;
    std::vector<PendingBatch*> owner;
    std::unordered_set<std::string_view> seen;
    int64_t now = 0;
    for (auto* p : group) {
      p->inserted = 0;
      now = std::max(now, p->now);
      for (const auto& r : *p->rows) {
        if (!seen.insert(r.v->id()).second) continue;
        rows.push_back(&r);
        owner.push_back(p);
      }
    }
    std::vector<std::string> batch_id_list;
    batch_id_list.reserve(rows.size());
    for (const auto* r : rows) batch_id_list.push_back(r->v->id());
    const std::string ids_literal = pg::ArrayLiteral(batch_id_list);

    auto c = pool_.Get();
    if (!c.ok()) return c.status();
    pg::Transaction tx(**c);
    if (!tx.begin_status().ok()) return tx.begin_status();
    if (auto s = Lock(**c, pg::kLockVerdictChain); !s.ok()) return s;
    auto head = LoadHead(**c, "verdicts");
    if (!head.ok()) return head.status();
    // Monotonic in seq even when replicas' clocks differ: retention deletes a prefix.
    const int64_t received = std::max(now, head->received_us);
    auto partition = EnsurePartition(**c, received);
    if (!partition.ok()) return partition.status();
    // The daily tier: the days before today are closed first (under the chain lock, as
    // every rollup change), so this group's verdicts of closed days go to both tiers.
    auto closed = (*c)->Exec(kClosedDaySql);
    if (!closed.ok()) return closed.status();
    if (closed->rows() != 1) return absl::DataLossError("stats_days is empty");
    int64_t closed_day = closed->Int(0, 0);
    if (const int64_t today = DayOf(now); today > closed_day) {
      if (auto s = (*c)->Run(CloseDaysSql(Dialect::kPostgres, closed_day, today)); !s.ok()) return s;
      closed_day = today;
    }
    // Claims the ids with the seqs they get when all are new (the usual case): one
    // statement both finds retried ids and writes verdict_ids, where a lookup first
    // would probe the same index twice. When some were stored before, the seqs
    // would have gaps: the claim is undone and the new ids are written with the rows.
    if (auto s = (*c)->Run("SAVEPOINT claim_ids"); !s.ok()) return s;
    auto claimed = (*c)->Exec(
        "INSERT INTO verdict_ids (id, seq) SELECT u.id, $2::bigint + u.n FROM unnest($1::text[]) "
        "WITH ORDINALITY AS u(id, n) ON CONFLICT (id) DO NOTHING RETURNING id",
        {Param::Text(ids_literal), Param::Int(head->seq)});
    if (!claimed.ok()) return claimed.status();
    const bool ids_claimed = claimed->rows() == static_cast<int>(rows.size());
    std::set<std::string> stored_before;
    if (ids_claimed) {
      if (auto s = (*c)->Run("RELEASE SAVEPOINT claim_ids"); !s.ok()) return s;
    } else {
      std::set<std::string> fresh;
      for (int i = 0; i < claimed->rows(); ++i) fresh.insert(claimed->Text(i, 0));
      for (const auto* r : rows) {
        if (!fresh.count(r->v->id())) stored_before.insert(r->v->id());
      }
      if (auto s = (*c)->Run("ROLLBACK TO SAVEPOINT claim_ids"); !s.ok()) return s;
    }
    const std::string prefix = VerdictContentPrefix(received);
    Rollup rollup;
    // Under the lock only what needs the head: the hashes (in memory), one COPY of
    // the pre-encoded rows, the rollups and the head.
    VerdictCopy insert(/*ids=*/!ids_claimed);
    std::vector<uint64_t> inserted(rows.size(), 0);
    uint64_t total = 0;
    for (size_t i = 0; i < rows.size(); ++i) {
      const Row& r = *rows[i];
      const v1::Verdict& v = *r.v;
      if (stored_before.count(v.id())) continue;  // a retry: acked, the chain does not move
      const int64_t seq = head->seq + 1;
      std::string hash = ChainHash(head->hash, prefix, r.body);
      insert.Add(seq, v.id(), r.fields, received, head->hash, hash);
      head->seq = seq;
      head->hash = std::move(hash);
      inserted[i] = 1;
      ++total;
      AddToRollup(v, closed_day, &rollup);
    }
    if (auto s = insert.Flush(**c); !s.ok()) return s;
    // In the batch's transaction: the rollups count exactly the stored verdicts. One
    // statement over arrays: its plan does not grow with the number of rows.
    if (!rollup.empty()) {
      std::vector<std::string> kind, hour, key1, key2, n, out, in;
      for (const auto& [key, sums] : rollup) {
        kind.push_back(std::to_string(key.kind));
        hour.push_back(std::to_string(key.hour));
        key1.push_back(key.key1);
        key2.push_back(key.key2);
        n.push_back(std::to_string(sums.verdicts));
        out.push_back(std::to_string(sums.bytes_out));
        in.push_back(std::to_string(sums.bytes_in));
      }
      if (auto s = (*c)->Run(
              "INSERT INTO stats_hourly (kind, hour, key1, key2, verdicts, bytes_out, bytes_in) "
              "SELECT * FROM unnest($1::integer[], $2::bigint[], $3::text[], $4::text[], $5::bigint[], "
              "$6::bigint[], $7::bigint[]) "
              "ON CONFLICT (kind, hour, key1, key2) DO UPDATE SET verdicts = stats_hourly.verdicts + "
              "excluded.verdicts, bytes_out = stats_hourly.bytes_out + excluded.bytes_out, "
              "bytes_in = stats_hourly.bytes_in + excluded.bytes_in",
              {Param::Text(pg::ArrayLiteral(kind)), Param::Text(pg::ArrayLiteral(hour)),
               Param::Text(pg::ArrayLiteral(key1)), Param::Text(pg::ArrayLiteral(key2)),
               Param::Text(pg::ArrayLiteral(n)), Param::Text(pg::ArrayLiteral(out)),
               Param::Text(pg::ArrayLiteral(in))});
          !s.ok()) {
        return s;
      }
    }
    if (total > 0) {
      head->received_us = received;
      if (auto s = SaveHead(**c, "verdicts", *head); !s.ok()) return s;
    }
    if (auto s = tx.Commit(); !s.ok()) return s;
    known_partitions_.Add(*partition);
    for (size_t i = 0; i < rows.size(); ++i) owner[i]->inserted += inserted[i];
    return absl::OkStatus();
  }

  // The partitions this process knows exist (made or seen committed), so a batch
  // asks the catalog only when it enters a new month.
  class KnownPartitions {
   public:
    bool Has(const std::string& name) {
      std::lock_guard lock(mu_);
      return names_.count(name) > 0;
    }
    void Add(const std::string& name) {
      std::lock_guard lock(mu_);
      names_.insert(name);
    }
    void Remove(const std::string& name) {
      std::lock_guard lock(mu_);
      names_.erase(name);
    }

   private:
    std::mutex mu_;
    std::set<std::string> names_;
  };

  explicit PgBackend(const Store::Options& options)
      : options_(options), pool_(options.path, std::max(1, options.pg_connections)) {}

  int64_t Now() const { return options_.now_us ? options_.now_us() : SystemNowUs(); }

  static bool ValidPartitionName(const std::string& name) {
    if (!name.starts_with("verdicts_y") || name.size() > 32) return false;
    for (char ch : name) {
      if (!(std::isalnum(static_cast<unsigned char>(ch)) || ch == '_')) return false;
    }
    return true;
  }

  // Makes the month partition for `received_us` inside the caller's transaction (which
  // holds the verdict chain lock, so replicas never race on it); returns its name.
  absl::StatusOr<std::string> EnsurePartition(pg::Connection& c, int64_t received_us) {
    const std::string name = MonthOf(received_us).name;
    if (known_partitions_.Has(name)) return name;
    return CreatePartition(c, received_us);
  }

  static absl::StatusOr<std::vector<ActivationRow>> Activations(pg::Connection& c) {
    auto r = c.Exec("SELECT seq, version, mode, kind FROM activations ORDER BY seq");
    if (!r.ok()) return r.status();
    std::vector<ActivationRow> rows;
    for (int i = 0; i < r->rows(); ++i) {
      rows.push_back({r->Int(i, 0), r->Text(i, 1), static_cast<int>(r->Int(i, 2)), r->Text(i, 3)});
    }
    return rows;
  }

  static absl::StatusOr<v1::PackInfo> LoadInfo(pg::Connection& c, const std::string& version,
                                              rules::v1::RulePack* pack_out) {
    auto r = c.Exec("SELECT name, author, reason, pushed_us, rule_count, sha256, body FROM packs WHERE version = $1",
                    {Param::Text(version)});
    if (!r.ok()) return r.status();
    if (r->rows() == 0) return absl::NotFoundError(fmt::format("no rule pack version {}", version));
    v1::PackInfo info;
    info.set_version(version);
    info.set_name(r->Text(0, 0));
    info.set_author(r->Text(0, 1));
    info.set_reason(r->Text(0, 2));
    *info.mutable_pushed_at() = FromUs(r->Int(0, 3));
    info.set_rule_count(static_cast<uint32_t>(r->Int(0, 4)));
    info.set_sha256(r->Text(0, 5));
    if (pack_out && !pack_out->ParseFromString(r->Bytes(0, 6))) {
      return absl::DataLossError(fmt::format("stored rule pack {} does not parse", version));
    }
    auto acts = Activations(c);
    if (!acts.ok()) return acts.status();
    info.set_state(v1::DRAFT);
    for (const auto& a : *acts) {
      if (a.version == version) info.set_state(v1::INACTIVE);
    }
    auto stack = EffectiveStack(*acts);
    if (!stack.empty() && stack.back().version == version) {
      info.set_state(v1::ACTIVE);
      info.set_mode(static_cast<v1::PackMode>(stack.back().mode));
    }
    return info;
  }

  // An activation (`rollback` false), or a rollback: to `version` when given (a new
  // activation in the current mode), else undoing the last activation. Under the
  // packs lock, so two replicas' rollbacks cannot both pop the same activation.
  absl::StatusOr<v1::PackInfo> Activate(const std::string& version, std::optional<v1::PackMode> mode,
                                        const AuditEntry& who, const std::string& reason, bool rollback) {
    auto c = pool_.Get();
    if (!c.ok()) return c.status();
    pg::Transaction tx(**c);
    if (!tx.begin_status().ok()) return tx.begin_status();
    if (auto s = Lock(**c, pg::kLockPacks); !s.ok()) return s;
    std::string target = version, kind = "activate", detail;
    v1::PackMode m = mode.value_or(v1::MONITOR);
    if (!rollback) {
      detail = fmt::format("activated rule pack {} in {} mode: {}", version, m == v1::ENFORCE ? "enforce" : "monitor",
                           reason);
    } else {
      auto acts = Activations(**c);
      if (!acts.ok()) return acts.status();
      auto stack = EffectiveStack(*acts);
      if (stack.empty()) return absl::FailedPreconditionError("no rule pack has been activated");
      if (!version.empty()) {
        m = static_cast<v1::PackMode>(stack.back().mode);
      } else {
        if (stack.size() < 2) return absl::FailedPreconditionError("nothing to roll back to: one activation so far");
        const auto& prev = stack[stack.size() - 2];
        target = prev.version;
        m = static_cast<v1::PackMode>(prev.mode);
        kind = "rollback";
      }
      detail = fmt::format("rolled back from {} to rule pack {}: {}", stack.back().version, target, reason);
    }
    if (auto info = LoadInfo(**c, target, nullptr); !info.ok()) return info.status();
    const int64_t now = Now();
    auto ins = (*c)->Exec(
        "INSERT INTO activations (version, mode, kind, actor, reason, time_us) VALUES ($1,$2,$3,$4,$5,$6) RETURNING seq",
        {Param::Text(target), Param::Int(m), Param::Text(kind), Param::Text(who.actor), Param::Text(reason),
         Param::Int(now)});
    if (!ins.ok()) return ins.status();
    const auto gen = static_cast<uint64_t>(ins->Int(0, 0));
    AuditEntry e = who;
    e.detail = detail;
    if (auto s = AppendAudit(**c, now, e); !s.ok()) return s;
    if (auto s = tx.Commit(); !s.ok()) return s;
    active_.Raise(gen);
    return LoadInfo(**c, target, nullptr);
  }

  // For ChainVerifier: the seq of the row of a chain holding a given hash.
  static std::function<std::optional<int64_t>(const std::string&)> SeqOfHash(pg::Connection& c, const char* table) {
    return [&c, table](const std::string& h) -> std::optional<int64_t> {
      auto r = c.Exec(fmt::format("SELECT seq FROM {} WHERE hash = $1 LIMIT 1", table), {Param::Bytes(h)});
      if (!r.ok() || r->rows() == 0) return std::nullopt;
      return r->Int(0, 0);
    };
  }

  static void IndexProblem(v1::VerifyResponse* out, int64_t seq, std::string detail) {
    auto* p = out->add_problems();
    p->set_chain("verdicts");
    p->set_seq(static_cast<uint64_t>(seq));
    p->set_kind("index");
    p->set_detail(std::move(detail));
  }

  static absl::Status VerifyVerdicts(pg::Connection& c, v1::VerifyResponse* out) {
    auto head = LoadHead(c, "verdicts");
    if (!head.ok()) return head.status();
    {
      std::optional<RetentionRecord> last;
      auto ret = c.Exec("SELECT seq, detail FROM audit WHERE method = 'retention' ORDER BY seq DESC");
      if (!ret.ok()) return ret.status();
      for (int i = 0; i < ret->rows() && !last; ++i) last = ParseRetentionDetail(ret->Int(i, 0), ret->Text(i, 1));
      auto first = c.Exec("SELECT COALESCE(MIN(seq), 0) FROM verdicts");
      if (!first.ok()) return first.status();
      CheckRetentionAnchor(last, head->anchor, head->seq, first->Int(0, 0), out);
    }
    // verdict_ids makes ingest idempotent: an id missing there would let a resend store
    // the verdict twice, an extra one would ack a verdict that is not stored.
    auto no_id = c.Exec(
        "SELECT v.seq FROM verdicts v WHERE NOT EXISTS (SELECT 1 FROM verdict_ids i WHERE i.id = v.id AND i.seq = "
        "v.seq) ORDER BY v.seq LIMIT 100");
    if (!no_id.ok()) return no_id.status();
    for (int i = 0; i < no_id->rows(); ++i) {
      IndexProblem(out, no_id->Int(i, 0),
                   "the id of this verdict is missing from verdict_ids: a resend would store it again");
    }
    auto stray = c.Exec(
        "SELECT i.seq FROM verdict_ids i WHERE NOT EXISTS (SELECT 1 FROM verdicts v WHERE v.seq = i.seq AND v.id = "
        "i.id) ORDER BY i.seq LIMIT 100");
    if (!stray.ok()) return stray.status();
    for (int i = 0; i < stray->rows(); ++i) {
      IndexProblem(out, stray->Int(i, 0),
                   "an id in verdict_ids names no such verdict: added, or its verdict deleted (a resend would be "
                   "acked and not stored)");
    }
    ChainVerifier verifier("verdicts", head->anchor, head->seq, head->hash, SeqOfHash(c, "verdicts"));
    if (auto s = c.Run("DECLARE verify_verdicts NO SCROLL CURSOR FOR SELECT seq, id, time_us, received_us, appliance, "
                       "client_address, workload, host, action, rule_pack_version, bytes_out, bytes_in, categories, "
                       "rule_ids, body, prev_hash, hash FROM verdicts ORDER BY seq");
        !s.ok()) {
      return s;
    }
    v1::Verdict v;
    for (;;) {
      auto r = c.Exec(fmt::format("FETCH {} FROM verify_verdicts", kVerifyFetch));
      if (!r.ok()) return r.status();
      if (r->rows() == 0) break;
      for (int i = 0; i < r->rows(); ++i) {
        ChainRow row;
        row.seq = r->Int(i, 0);
        std::string body = r->Bytes(i, 14);
        row.content = VerdictContent(r->Int(i, 3), body);
        row.prev_hash = r->Bytes(i, 15);
        row.hash = r->Bytes(i, 16);
        if (!v.ParseFromString(body)) {
          row.inconsistency = "body does not parse";
        } else {
          std::vector<std::string> bad;
          if (r->Text(i, 1) != v.id()) bad.push_back("id");
          if (r->Int(i, 2) != ToUs(v.time())) bad.push_back("time_us");
          if (r->Text(i, 4) != v.appliance()) bad.push_back("appliance");
          if (r->Text(i, 5) != v.client_address()) bad.push_back("client_address");
          if (r->Text(i, 6) != v.workload()) bad.push_back("workload");
          if (r->Text(i, 7) != v.host()) bad.push_back("host");
          if (r->Int(i, 8) != int64_t{v.action()}) bad.push_back("action");
          if (r->Text(i, 9) != v.rule_pack_version()) bad.push_back("rule_pack_version");
          if (r->Int(i, 10) != static_cast<int64_t>(v.bytes_out())) bad.push_back("bytes_out");
          if (r->Int(i, 11) != static_cast<int64_t>(v.bytes_in())) bad.push_back("bytes_in");
          if (r->TextArray(i, 12) != CategoriesOf(v)) bad.push_back("categories");
          if (r->TextArray(i, 13) != RuleIdsOf(v)) bad.push_back("rule_ids");
          if (!bad.empty()) {
            std::string cols;
            for (const auto& b : bad) cols += (cols.empty() ? "" : ", ") + b;
            row.inconsistency = fmt::format("column(s) {} differ from the hashed verdict {}", cols, v.id());
          }
        }
        verifier.Add(row);
      }
    }
    if (auto s = c.Run("CLOSE verify_verdicts"); !s.ok()) return s;
    verifier.Finish();
    out->set_verdicts_checked(verifier.checked());
    for (const auto& p : verifier.problems()) *out->add_problems() = p;
    return absl::OkStatus();
  }

  static absl::Status VerifyAudit(pg::Connection& c, v1::VerifyResponse* out) {
    auto head = LoadHead(c, "audit");
    if (!head.ok()) return head.status();
    ChainVerifier verifier("audit", head->anchor, head->seq, head->hash, SeqOfHash(c, "audit"));
    if (auto s = c.Run("DECLARE verify_audit NO SCROLL CURSOR FOR SELECT seq, time_us, actor, role, method, allowed, "
                       "detail, prev_hash, hash FROM audit ORDER BY seq");
        !s.ok()) {
      return s;
    }
    for (;;) {
      auto r = c.Exec(fmt::format("FETCH {} FROM verify_audit", kVerifyFetch));
      if (!r.ok()) return r.status();
      if (r->rows() == 0) break;
      for (int i = 0; i < r->rows(); ++i) {
        ChainRow row;
        row.seq = r->Int(i, 0);
        row.content = AuditContent(r->Int(i, 1), r->Text(i, 2), r->Text(i, 3), r->Text(i, 4), r->Text(i, 5) == "t",
                                   r->Text(i, 6));
        row.prev_hash = r->Bytes(i, 7);
        row.hash = r->Bytes(i, 8);
        verifier.Add(row);
      }
    }
    if (auto s = c.Run("CLOSE verify_audit"); !s.ok()) return s;
    verifier.Finish();
    out->set_audit_checked(verifier.checked());
    for (const auto& p : verifier.problems()) *out->add_problems() = p;
    return absl::OkStatus();
  }

  // Reads the generation every poll interval: activations made through other
  // replicas wake this one's WatchActive streams.
  void PollLoop() {
    std::unique_lock lock(poll_mu_);
    while (!stopping_) {
      lock.unlock();
      auto gen = [&]() -> absl::StatusOr<uint64_t> {
        auto c = pool_.Get();
        if (!c.ok()) return c.status();
        auto r = (*c)->Exec("SELECT COALESCE(MAX(seq), 0) FROM activations");
        if (!r.ok()) return r.status();
        return static_cast<uint64_t>(r->Int(0, 0));
      }();
      if (gen.ok()) active_.Raise(*gen);
      lock.lock();
      poll_cv_.wait_for(lock, options_.pg_poll_interval, [&] { return stopping_; });
    }
  }

  Store::Options options_;
  pg::Pool pool_;
  KnownPartitions known_partitions_;
  ActiveWatch active_;
  std::mutex write_error_mu_;
  absl::Status write_error_;
  // Group commit (Ingest): the queued batches, and whether a caller is writing a group.
  std::mutex group_mu_;
  std::condition_variable group_cv_;
  std::deque<PendingBatch*> group_queue_;
  bool group_leader_ = false;
  std::atomic<int64_t> last_ingested_unix_{0};

  std::mutex poll_mu_;
  std::condition_variable poll_cv_;
  bool stopping_ = false;
  std::thread poller_;
};

}  // namespace

absl::StatusOr<BackendPtr> OpenPgBackend(const Store::Options& options) { return PgBackend::Open(options); }

absl::StatusOr<CopyReport> CopySqliteIntoPg(const std::string& from, const std::string& to) {
  if (auto s = pg::CheckNoPassword(to); !s.ok()) return s;
  Database::Options ro;
  ro.read_only = true;
  auto src = Database::Open(from, ro);
  if (!src.ok()) return src.status();
  if (auto v = store::SchemaVersion(**src); !v.ok() || *v != store::LatestSchemaVersion()) {
    return absl::FailedPreconditionError(fmt::format(
        "{} is not at this build's sqlite schema version {}: run `egressguard store migrate --db {}` first", from,
        store::LatestSchemaVersion(), from));
  }
  if (auto m = MigratePgSchema(to); !m.ok()) return m.status();
  auto c = pg::Connection::Open(to);
  if (!c.ok()) return c.status();
  CopyReport report;
  // One transaction: the copy is all there or not at all. The chain and pack locks keep
  // a store replica already serving this database from writing meanwhile.
  pg::Transaction tx(**c);
  if (!tx.begin_status().ok()) return tx.begin_status();
  for (int64_t lock : {pg::kLockVerdictChain, pg::kLockAuditChain, pg::kLockPacks}) {
    if (auto s = Lock(**c, lock); !s.ok()) return s;
  }
  auto used = (*c)->Exec(
      "SELECT (SELECT COUNT(*) FROM packs) + (SELECT COUNT(*) FROM activations) + (SELECT SUM(head_seq) FROM "
      "chain_heads)");
  if (!used.ok()) return used.status();
  if (used->Int(0, 0) != 0) {
    return absl::FailedPreconditionError("the target database already holds store data: copy into an empty one");
  }
  // Runs a sqlite query and hands each row over; errors end the copy.
  auto each = [&](const char* sql, const std::function<absl::Status(Statement&)>& row) -> absl::Status {
    auto st = (*src)->Prepare(sql);
    if (!st.ok()) return st.status();
    for (;;) {
      auto r = st->Step();
      if (!r.ok()) return r.status();
      if (!*r) return absl::OkStatus();
      if (auto s = row(*st); !s.ok()) return s;
    }
  };
  auto s = each("SELECT version, name, body, sha256, author, reason, pushed_us, rule_count FROM packs",
                [&](Statement& st) {
                  ++report.packs;
                  return (*c)->Run(
                      "INSERT INTO packs (version, name, body, sha256, author, reason, pushed_us, rule_count) "
                      "VALUES ($1,$2,$3,$4,$5,$6,$7,$8)",
                      {Param::Text(st.Text(0)), Param::Text(st.Text(1)), Param::Bytes(st.Blob(2)),
                       Param::Text(st.Text(3)), Param::Text(st.Text(4)), Param::Text(st.Text(5)),
                       Param::Int(st.Int(6)), Param::Int(st.Int(7))});
                });
  if (s.ok()) {
    s = each("SELECT seq, version, mode, kind, actor, reason, time_us FROM activations ORDER BY seq",
             [&](Statement& st) {
               return (*c)->Run(
                   "INSERT INTO activations (seq, version, mode, kind, actor, reason, time_us) VALUES "
                   "($1,$2,$3,$4,$5,$6,$7)",
                   {Param::Int(st.Int(0)), Param::Text(st.Text(1)), Param::Int(st.Int(2)), Param::Text(st.Text(3)),
                    Param::Text(st.Text(4)), Param::Text(st.Text(5)), Param::Int(st.Int(6))});
             });
  }
  // The next activation continues the copied numbering (the WatchActive generation).
  if (s.ok()) {
    s = (*c)->Run(
        "SELECT setval(pg_get_serial_sequence('activations', 'seq'), COALESCE(MAX(seq), 1), MAX(seq) IS NOT NULL) "
        "FROM activations");
  }
  if (s.ok()) {
    s = each("SELECT seq, time_us, actor, role, method, allowed, detail, prev_hash, hash FROM audit ORDER BY seq",
             [&](Statement& st) {
               ++report.audit;
               return (*c)->Run(
                   "INSERT INTO audit (seq, time_us, actor, role, method, allowed, detail, prev_hash, hash) VALUES "
                   "($1,$2,$3,$4,$5,$6,$7,$8,$9)",
                   {Param::Int(st.Int(0)), Param::Int(st.Int(1)), Param::Text(st.Text(2)), Param::Text(st.Text(3)),
                    Param::Text(st.Text(4)), Param::Text(st.Int(5) != 0 ? "true" : "false"),
                    Param::Text(st.Text(6)), Param::Bytes(st.Blob(7)), Param::Bytes(st.Blob(8))});
             });
  }
  // Verdicts as stored: same seq, receive time, body and hashes, so the chain and its
  // anchor carry over; the tag columns are derived from each body as ingest does.
  int64_t last_received = 0;
  std::set<std::string> partitions;
  VerdictCopy insert;
  v1::Verdict v;
  if (s.ok()) {
    s = each("SELECT seq, received_us, body, prev_hash, hash FROM verdicts ORDER BY seq", [&](Statement& st) {
      const int64_t seq = st.Int(0), received = st.Int(1);
      std::string body = st.Blob(2);
      if (!v.ParseFromString(body) || TextFieldsHaveNul(v)) {
        return absl::DataLossError(fmt::format(
            "verdict seq {} of {} does not parse or cannot be stored in PostgreSQL: run `audit verify` on it", seq,
            from));
      }
      if (const std::string name = MonthOf(received).name; partitions.insert(name).second) {
        if (auto p = CreatePartition(**c, received); !p.ok()) return p.status();
      }
      insert.Add(seq, v, received, CategoriesOf(v), RuleIdsOf(v), std::move(body), st.Blob(3), st.Blob(4));
      last_received = std::max(last_received, received);
      ++report.verdicts;
      return insert.pending() == kRowsPerInsert ? insert.Flush(**c) : absl::OkStatus();
    });
  }
  if (s.ok()) s = insert.Flush(**c);
  if (s.ok()) {
    s = each("SELECT chain, anchor_hash, head_seq, head_hash FROM chain_heads", [&](Statement& st) {
      const std::string chain = st.Text(0);
      if (chain != "verdicts" && chain != "audit") return absl::OkStatus();
      if (chain == "verdicts") report.verdict_head = Hex(st.Blob(3));
      if (chain == "audit") report.audit_head = Hex(st.Blob(3));
      return SaveHead(**c, chain == "verdicts" ? "verdicts" : "audit",
                      Head{st.Blob(1), st.Int(2), st.Blob(3), chain == "verdicts" ? last_received : 0});
    });
  }
  if (s.ok()) s = (*c)->Run("INSERT INTO stats_hourly " + RollupOfVerdictsSql(Dialect::kPostgres, "TRUE"));
  if (!s.ok()) return s;
  if (auto done = tx.Commit(); !done.ok()) return done;
  return report;
}

absl::StatusOr<std::pair<int, int>> MigratePgSchema(const std::string& uri) {
  if (auto s = pg::CheckNoPassword(uri); !s.ok()) return s;
  auto c = pg::Connection::Open(uri);
  if (!c.ok()) return c.status();
  auto before = pg::Migrate(**c);
  if (!before.ok()) return before.status();
  return std::pair<int, int>{*before, pg::LatestSchemaVersion()};
}

}  // namespace egressguard::store
