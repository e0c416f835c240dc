#include "appliance/store/store.h"

#include <fmt/format.h>
#include <google/protobuf/util/time_util.h>

#include <atomic>
#include <deque>
#include <map>
#include <future>
#include <set>
#include <thread>
#include <variant>

#include "appliance/store/chain.h"
#include "appliance/store/schema.h"
#include "appliance/store/sqlite.h"
#include "rules/rule_id.h"

namespace egressguard::store {

namespace {

using google::protobuf::util::TimeUtil;

constexpr size_t kMaxVerdictBytes = 256 * 1024;
constexpr size_t kMaxIdBytes = 128;
constexpr uint32_t kDefaultPage = 100;
constexpr uint32_t kMaxPage = 1000;
constexpr int kTagCategory = 1;
constexpr int kTagRule = 2;

int64_t SystemNowUs() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

int64_t ToUs(const google::protobuf::Timestamp& t) { return TimeUtil::TimestampToMicroseconds(t); }
google::protobuf::Timestamp FromUs(int64_t us) { return TimeUtil::MicrosecondsToTimestamp(us); }

std::string Deterministic(const google::protobuf::Message& m) {
  std::string out;
  {
    google::protobuf::io::StringOutputStream raw(&out);
    google::protobuf::io::CodedOutputStream coded(&raw);
    coded.SetSerializationDeterministic(true);
    m.SerializeToCodedStream(&coded);
  }
  return out;
}

// The bytes a verdict row's hash covers: when the store received it, then the verdict.
std::string VerdictContent(int64_t received_us, const std::string& body) {
  return fmt::format("v1|{}|", received_us) + body;
}

std::string AuditContent(int64_t time_us, const std::string& actor, const std::string& role,
                         const std::string& method, bool allowed, const std::string& detail) {
  v1::AuditRecord r;
  *r.mutable_time() = FromUs(time_us);
  r.set_actor(actor);
  r.set_role(role);
  r.set_method(method);
  r.set_allowed(allowed);
  r.set_detail(detail);
  return Deterministic(r);
}

bool ValidPackVersion(const std::string& v) {
  if (v.empty() || v.size() > 64) return false;
  for (char c : v) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_' || c == '+')) return false;
  }
  return true;
}

std::string Sha256Hex(const std::string& bytes) { return Hex(ChainHash("", bytes)); }

struct Head {
  std::string anchor;
  int64_t seq = 0;
  std::string hash;
};

absl::StatusOr<Head> LoadHead(Database& db, const std::string& chain) {
  auto st = db.Cached("SELECT anchor_hash, head_seq, head_hash FROM chain_heads WHERE chain = ?");
  if (!st.ok()) return st.status();
  (*st)->Bind(1, chain);
  auto row = (*st)->Step();
  if (!row.ok()) return row.status();
  if (!*row) return absl::DataLossError(fmt::format("chain head of {} is missing", chain));
  Head h{(*st)->Blob(0), (*st)->Int(1), (*st)->Blob(2)};
  (*st)->Reset();
  return h;
}

absl::Status SaveHead(Database& db, const std::string& chain, const Head& h) {
  auto st = db.Cached("UPDATE chain_heads SET anchor_hash = ?, head_seq = ?, head_hash = ? WHERE chain = ?");
  if (!st.ok()) return st.status();
  (*st)->BindBlob(1, h.anchor).Bind(2, h.seq).BindBlob(3, h.hash).Bind(4, chain);
  return (*st)->Run();
}

// Appends one audit row inside the caller's transaction.
absl::Status AppendAudit(Database& db, int64_t now_us, const AuditEntry& e) {
  auto head = LoadHead(db, "audit");
  if (!head.ok()) return head.status();
  std::string hash = ChainHash(head->hash, AuditContent(now_us, e.actor, e.role, e.method, e.allowed, e.detail));
  auto st = db.Cached(
      "INSERT INTO audit (time_us, actor, role, method, allowed, detail, prev_hash, hash) VALUES (?,?,?,?,?,?,?,?)");
  if (!st.ok()) return st.status();
  (*st)->Bind(1, now_us).Bind(2, e.actor).Bind(3, e.role).Bind(4, e.method).Bind(5, int64_t{e.allowed ? 1 : 0});
  (*st)->Bind(6, e.detail).BindBlob(7, head->hash).BindBlob(8, hash);
  if (auto s = (*st)->Run(); !s.ok()) return s;
  head->seq = db.LastInsertRowId();
  head->hash = hash;
  return SaveHead(db, "audit", *head);
}

// ---- query building: fixed SQL fragments, values only as bound parameters ----

using Arg = std::variant<int64_t, std::string>;

struct FilterSql {
  std::string from;
  std::string where = "1";
  std::vector<Arg> args;
  std::string time_col = "v.time_us";
  std::string seq_col = "v.seq";

  void And(const std::string& cond) { where += " AND " + cond; }
  void And(const std::string& cond, Arg a) {
    And(cond);
    args.push_back(std::move(a));
  }
};

const char* kTagExists =
    "EXISTS (SELECT 1 FROM verdict_tags x WHERE x.kind = ? AND x.value = ? AND x.time_us = v.time_us AND x.seq = v.seq)";

// `drive_categories`: walk every category tag (Stats by category).
FilterSql BuildFilter(const v1::VerdictFilter& f, bool drive_categories) {
  FilterSql q;
  int drive_kind = 0;
  std::string drive_value;
  if (drive_categories) {
    drive_kind = kTagCategory;
  } else if (!f.category().empty()) {
    drive_kind = kTagCategory;
    drive_value = f.category();
  } else if (!f.rule_id().empty()) {
    drive_kind = kTagRule;
    drive_value = f.rule_id();
  }
  if (drive_kind != 0) {
    q.from = "verdict_tags t JOIN verdicts v ON v.seq = t.seq";
    q.time_col = "t.time_us";
    q.seq_col = "t.seq";
    q.And("t.kind = ?", int64_t{drive_kind});
    if (!drive_value.empty()) {
      q.And("t.value = ?", drive_value);
    } else if (drive_categories && !f.category().empty()) {
      q.And("t.value = ?", f.category());
    }
  } else {
    q.from = "verdicts v";
  }
  if (!f.rule_id().empty() && drive_kind != kTagRule) {
    q.And(kTagExists);
    q.args.push_back(int64_t{kTagRule});
    q.args.push_back(f.rule_id());
  }
  if (f.has_since()) q.And(q.time_col + " >= ?", ToUs(f.since()));
  if (f.has_until()) q.And(q.time_col + " < ?", ToUs(f.until()));
  if (!f.client_address().empty()) q.And("v.client_address = ?", f.client_address());
  if (!f.workload().empty()) q.And("v.workload = ?", f.workload());
  if (!f.host().empty()) q.And("v.host = ?", f.host());
  if (f.action() != rules::v1::ACTION_UNSPECIFIED) q.And("v.action = ?", int64_t{f.action()});
  if (!f.rule_pack_version().empty()) q.And("v.rule_pack_version = ?", f.rule_pack_version());
  if (!f.appliance().empty()) q.And("v.appliance = ?", f.appliance());
  return q;
}

void BindArgs(Statement& st, const std::vector<Arg>& args) {
  int i = 1;
  for (const auto& a : args) {
    if (std::holds_alternative<int64_t>(a)) {
      st.Bind(i++, std::get<int64_t>(a));
    } else {
      st.Bind(i++, std::string_view(std::get<std::string>(a)));
    }
  }
}

// Page tokens are "<time_us>:<seq>" of the last row returned.
absl::Status ParsePageToken(const std::string& token, int64_t* time_us, int64_t* seq) {
  auto colon = token.find(':');
  if (colon == std::string::npos || token.size() > 64) return absl::InvalidArgumentError("malformed page_token");
  try {
    size_t used = 0;
    *time_us = std::stoll(token.substr(0, colon), &used);
    if (used != colon) return absl::InvalidArgumentError("malformed page_token");
    std::string rest = token.substr(colon + 1);
    *seq = std::stoll(rest, &used);
    if (used != rest.size()) return absl::InvalidArgumentError("malformed page_token");
  } catch (const std::exception&) {
    return absl::InvalidArgumentError("malformed page_token");
  }
  return absl::OkStatus();
}

// Names of the fields of `a` and `b` (same type) that differ, skipping `skip`.
std::vector<std::string> DifferingFields(const google::protobuf::Message& a, const google::protobuf::Message& b,
                                         const std::set<std::string>& skip) {
  std::vector<std::string> out;
  const auto* desc = a.GetDescriptor();
  for (int i = 0; i < desc->field_count(); ++i) {
    const auto* field = desc->field(i);
    if (skip.count(field->name())) continue;
    std::unique_ptr<google::protobuf::Message> ca(a.New()), cb(b.New());
    ca->CopyFrom(a);
    cb->CopyFrom(b);
    for (int j = 0; j < desc->field_count(); ++j) {
      if (j == i) continue;
      ca->GetReflection()->ClearField(ca.get(), desc->field(j));
      cb->GetReflection()->ClearField(cb.get(), desc->field(j));
    }
    if (Deterministic(*ca) != Deterministic(*cb)) out.push_back(field->name());
  }
  return out;
}

}  // namespace

std::vector<std::string> CheckPackShape(const rules::v1::RulePack& pack) {
  std::vector<std::string> errors;
  if (!ValidPackVersion(pack.version())) {
    errors.push_back("pack: version must be 1..64 characters of [A-Za-z0-9._+-]");
  }
  std::set<std::string> ids;
  for (const auto& rule : pack.rules()) {
    std::string name = rule.id().empty() ? "(no id)" : rule.id();
    if (!rules::IsValidRuleId(rule.id())) errors.push_back(fmt::format("rule {}: id must be [a-z0-9_.-], 1..64", name));
    if (!ids.insert(rule.id()).second) errors.push_back(fmt::format("rule {}: duplicate id", name));
    if (rule.category().empty()) errors.push_back(fmt::format("rule {}: category is required", name));
    // A bulk_pii rule counts the other rules' findings and has no patterns of its own.
    if (rule.patterns().empty() && rule.category() != "bulk_pii") {
      errors.push_back(fmt::format("rule {}: at least one pattern is required", name));
    }
    for (const auto& p : rule.patterns()) {
      if (p.empty()) errors.push_back(fmt::format("rule {}: empty pattern", name));
    }
    if (rule.action() == rules::v1::ACTION_UNSPECIFIED) errors.push_back(fmt::format("rule {}: action is required", name));
  }
  return errors;
}

// ---------------------------------------------------------------------------

struct Store::Impl {
  Options options;
  DatabasePtr writer;
  std::thread writer_thread;
  std::mutex queue_mu;
  std::condition_variable queue_cv;
  std::deque<std::function<void(Database&)>> queue;
  bool stopping = false;

  std::mutex readers_mu;
  std::vector<DatabasePtr> readers;

  mutable std::mutex active_mu;
  std::condition_variable active_cv;
  uint64_t generation = 0;
  bool shutdown = false;

  int64_t Now() const { return options.now_us ? options.now_us() : SystemNowUs(); }

  void WriterLoop() {
    for (;;) {
      std::function<void(Database&)> task;
      {
        std::unique_lock lock(queue_mu);
        queue_cv.wait(lock, [&] { return stopping || !queue.empty(); });
        if (queue.empty()) return;  // stopping and drained
        task = std::move(queue.front());
        queue.pop_front();
      }
      task(*writer);
    }
  }

  template <class T>
  absl::StatusOr<T> OnWriter(std::function<absl::StatusOr<T>(Database&)> fn) {
    auto promise = std::make_shared<std::promise<absl::StatusOr<T>>>();
    auto future = promise->get_future();
    {
      std::lock_guard lock(queue_mu);
      if (stopping) return absl::UnavailableError("store is shutting down");
      queue.push_back([promise, fn = std::move(fn)](Database& db) { promise->set_value(fn(db)); });
    }
    queue_cv.notify_one();
    return future.get();
  }

  // A reader connection for the duration of one call.
  class Lease {
   public:
    Lease(Impl* impl, DatabasePtr db) : impl_(impl), db_(std::move(db)) {}
    ~Lease() {
      if (!db_) return;
      std::lock_guard lock(impl_->readers_mu);
      impl_->readers.push_back(std::move(db_));
    }
    Lease(Lease&&) = default;
    Database& operator*() { return *db_; }
    Database* operator->() { return db_.get(); }

   private:
    Impl* impl_;
    DatabasePtr db_;
  };

  absl::StatusOr<Lease> Reader() {
    {
      std::lock_guard lock(readers_mu);
      if (!readers.empty()) {
        DatabasePtr db = std::move(readers.back());
        readers.pop_back();
        return Lease(this, std::move(db));
      }
    }
    Database::Options o;
    o.read_only = true;
    o.cache_mib = 64;
    auto db = Database::Open(options.path, o);
    if (!db.ok()) return db.status();
    return Lease(this, std::move(*db));
  }

  absl::StatusOr<IngestResult> IngestOnWriter(Database& db, std::vector<v1::Verdict>& verdicts) {
    IngestResult result;
    const int64_t now = Now();
    Transaction tx(db);
    if (!tx.begin_status().ok()) return tx.begin_status();
    auto head = LoadHead(db, "verdicts");
    if (!head.ok()) return head.status();
    auto insert = db.Cached(
        "INSERT INTO verdicts (id, time_us, received_us, appliance, client_address, workload, host, action, "
        "rule_pack_version, bytes_out, bytes_in, body, prev_hash, hash) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?) "
        "ON CONFLICT(id) DO NOTHING");
    if (!insert.ok()) return insert.status();
    auto tag = db.Cached("INSERT OR IGNORE INTO verdict_tags (kind, value, time_us, seq) VALUES (?,?,?,?)");
    if (!tag.ok()) return tag.status();
    std::set<std::string> batch_ids;
    for (auto& v : verdicts) {
      auto reject = [&](const std::string& why) {
        v1::RejectedVerdict r;
        r.set_id(v.id().substr(0, kMaxIdBytes));
        r.set_reason(why);
        result.rejected.push_back(std::move(r));
      };
      if (v.id().empty() || v.id().size() > kMaxIdBytes) {
        reject("id must be 1..128 bytes");
        continue;
      }
      if (!batch_ids.insert(v.id()).second) {
        result.acked.push_back(v.id());  // the same verdict twice in one batch
        continue;
      }
      if (v.ByteSizeLong() > kMaxVerdictBytes) {
        reject("verdict larger than 256 KiB");
        continue;
      }
      const int64_t time_us = v.has_time() ? ToUs(v.time()) : now;
      if (!v.has_time()) *v.mutable_time() = FromUs(now);
      std::string body = Deterministic(v);
      std::string hash = ChainHash(head->hash, VerdictContent(now, body));
      auto& ins = **insert;
      ins.Bind(1, v.id()).Bind(2, time_us).Bind(3, now).Bind(4, v.appliance()).Bind(5, v.client_address());
      ins.Bind(6, v.workload()).Bind(7, v.host()).Bind(8, int64_t{v.action()}).Bind(9, v.rule_pack_version());
      ins.Bind(10, static_cast<int64_t>(v.bytes_out())).Bind(11, static_cast<int64_t>(v.bytes_in()));
      ins.BindBlob(12, body).BindBlob(13, head->hash).BindBlob(14, hash);
      if (auto s = ins.Run(); !s.ok()) return s;
      if (db.Changes() == 0) {  // stored before (a retry): ack it, the chain does not move
        result.acked.push_back(v.id());
        continue;
      }
      const int64_t seq = db.LastInsertRowId();
      std::set<std::pair<int, std::string>> tags;
      for (const auto& f : v.findings()) {
        tags.emplace(kTagCategory, f.category());
        tags.emplace(kTagRule, f.rule_id());
      }
      if (v.findings().empty()) tags.emplace(kTagCategory, "");  // Stats by category counts these as ""
      for (const auto& [kind, value] : tags) {
        (*tag)->Bind(1, int64_t{kind}).Bind(2, value).Bind(3, time_us).Bind(4, seq);
        if (auto s = (*tag)->Run(); !s.ok()) return s;
      }
      head->seq = seq;
      head->hash = hash;
      result.acked.push_back(v.id());
      ++result.inserted;
    }
    if (result.inserted > 0) {
      if (auto s = SaveHead(db, "verdicts", *head); !s.ok()) return s;
    }
    if (auto s = tx.Commit(); !s.ok()) return s;
    return result;
  }

  // ---- packs ----

  struct ActivationRow {
    int64_t seq;
    std::string version;
    int mode;
    std::string kind;
  };

  static absl::StatusOr<std::vector<ActivationRow>> Activations(Database& db) {
    auto st = db.Prepare("SELECT seq, version, mode, kind FROM activations ORDER BY seq");
    if (!st.ok()) return st.status();
    std::vector<ActivationRow> rows;
    for (;;) {
      auto r = st->Step();
      if (!r.ok()) return r.status();
      if (!*r) break;
      rows.push_back({st->Int(0), st->Text(1), static_cast<int>(st->Int(2)), st->Text(3)});
    }
    return rows;
  }

  // The effective history: an activation pushes, a rollback pops.
  static std::vector<ActivationRow> EffectiveStack(const std::vector<ActivationRow>& rows) {
    std::vector<ActivationRow> stack;
    for (const auto& r : rows) {
      if (r.kind == "rollback" && stack.size() >= 2) {
        stack.pop_back();
        stack.back() = r;
      } else {
        stack.push_back(r);
      }
    }
    return stack;
  }

  static absl::StatusOr<v1::PackInfo> LoadInfo(Database& db, const std::string& version,
                                              rules::v1::RulePack* pack_out) {
    auto st = db.Cached("SELECT name, author, reason, pushed_us, rule_count, sha256, body FROM packs WHERE version = ?");
    if (!st.ok()) return st.status();
    (*st)->Bind(1, version);
    auto r = (*st)->Step();
    if (!r.ok()) return r.status();
    if (!*r) return absl::NotFoundError(fmt::format("no rule pack version {}", version));
    v1::PackInfo info;
    info.set_version(version);
    info.set_name((*st)->Text(0));
    info.set_author((*st)->Text(1));
    info.set_reason((*st)->Text(2));
    *info.mutable_pushed_at() = FromUs((*st)->Int(3));
    info.set_rule_count(static_cast<uint32_t>((*st)->Int(4)));
    info.set_sha256((*st)->Text(5));
    if (pack_out && !pack_out->ParseFromString((*st)->Blob(6))) {
      return absl::DataLossError(fmt::format("stored rule pack {} does not parse", version));
    }
    (*st)->Reset();
    auto acts = Activations(db);
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

  absl::StatusOr<v1::PackInfo> Activate(Database& db, const std::string& version, v1::PackMode mode,
                                        const std::string& kind, const AuditEntry& who, const std::string& reason,
                                        const std::string& detail) {
    Transaction tx(db);
    if (!tx.begin_status().ok()) return tx.begin_status();
    if (auto info = LoadInfo(db, version, nullptr); !info.ok()) return info.status();
    auto st = db.Cached("INSERT INTO activations (version, mode, kind, actor, reason, time_us) VALUES (?,?,?,?,?,?)");
    if (!st.ok()) return st.status();
    const int64_t now = Now();
    (*st)->Bind(1, version).Bind(2, int64_t{mode}).Bind(3, kind).Bind(4, who.actor).Bind(5, reason).Bind(6, now);
    if (auto s = (*st)->Run(); !s.ok()) return s;
    const auto gen = static_cast<uint64_t>(db.LastInsertRowId());
    AuditEntry e = who;
    e.detail = detail;
    if (auto s = AppendAudit(db, now, e); !s.ok()) return s;
    if (auto s = tx.Commit(); !s.ok()) return s;
    {
      std::lock_guard lock(active_mu);
      generation = gen;
    }
    active_cv.notify_all();
    return LoadInfo(db, version, nullptr);
  }
};

Store::Store(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Store::~Store() {
  Shutdown();
  {
    std::lock_guard lock(impl_->queue_mu);
    impl_->stopping = true;
  }
  impl_->queue_cv.notify_all();
  if (impl_->writer_thread.joinable()) impl_->writer_thread.join();
}

absl::StatusOr<std::unique_ptr<Store>> Store::Open(const Options& options) {
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  // FULL: an ack tells the appliance to drop the verdict from its spool, so a
  // commit must survive a power loss, not only a crash of this process.
  Database::Options o;
  o.synchronous = "FULL";
  o.cache_mib = 256;
  auto db = Database::Open(options.path, o);
  if (!db.ok()) return db.status();
  if (auto s = Migrate(**db); !s.ok()) return s;
  impl->writer = std::move(*db);
  {
    auto st = impl->writer->Prepare("SELECT COALESCE(MAX(seq), 0) FROM activations");
    if (!st.ok()) return st.status();
    auto r = st->Step();
    if (!r.ok()) return r.status();
    impl->generation = static_cast<uint64_t>(st->Int(0));
  }
  Impl* raw = impl.get();
  impl->writer_thread = std::thread([raw] { raw->WriterLoop(); });
  return std::unique_ptr<Store>(new Store(std::move(impl)));
}

absl::StatusOr<IngestResult> Store::Ingest(std::vector<v1::Verdict> verdicts) {
  auto shared = std::make_shared<std::vector<v1::Verdict>>(std::move(verdicts));
  return impl_->OnWriter<IngestResult>([this, shared](Database& db) { return impl_->IngestOnWriter(db, *shared); });
}

absl::Status Store::Audit(AuditEntry entry) {
  return impl_
      ->OnWriter<bool>([this, &entry](Database& db) -> absl::StatusOr<bool> {
        Transaction tx(db);
        if (!tx.begin_status().ok()) return tx.begin_status();
        if (auto s = AppendAudit(db, impl_->Now(), entry); !s.ok()) return s;
        if (auto s = tx.Commit(); !s.ok()) return s;
        return true;
      })
      .status();
}

absl::StatusOr<v1::PackInfo> Store::PushPack(const rules::v1::RulePack& pack, const std::string& author,
                                            const std::string& reason) {
  auto errors = CheckPackShape(pack);
  if (!errors.empty()) return absl::InvalidArgumentError(errors.front());
  if (reason.empty()) return absl::InvalidArgumentError("a reason is required");
  return impl_->OnWriter<v1::PackInfo>([&](Database& db) -> absl::StatusOr<v1::PackInfo> {
    Transaction tx(db);
    if (!tx.begin_status().ok()) return tx.begin_status();
    if (Impl::LoadInfo(db, pack.version(), nullptr).ok()) {
      return absl::AlreadyExistsError(
          fmt::format("rule pack version {} exists; versions are immutable, push a new one", pack.version()));
    }
    std::string body = Deterministic(pack);
    std::string sha = Sha256Hex(body);
    const int64_t now = impl_->Now();
    auto st = db.Cached(
        "INSERT INTO packs (version, name, body, sha256, author, reason, pushed_us, rule_count) VALUES (?,?,?,?,?,?,?,?)");
    if (!st.ok()) return st.status();
    (*st)->Bind(1, pack.version()).Bind(2, pack.name()).BindBlob(3, body).Bind(4, sha).Bind(5, author);
    (*st)->Bind(6, reason).Bind(7, now).Bind(8, int64_t{pack.rules_size()});
    if (auto s = (*st)->Run(); !s.ok()) return s;
    AuditEntry e{author, "officer", "/egressguard.v1.RuleAdmin/Push",
                 fmt::format("pushed rule pack {} ({} rules, sha256 {}): {}", pack.version(), pack.rules_size(), sha,
                             reason),
                 true};
    if (auto s = AppendAudit(db, now, e); !s.ok()) return s;
    if (auto s = tx.Commit(); !s.ok()) return s;
    return Impl::LoadInfo(db, pack.version(), nullptr);
  });
}

absl::StatusOr<v1::PackInfo> Store::ActivatePack(const std::string& version, v1::PackMode mode, const AuditEntry& who,
                                                const std::string& reason) {
  if (mode != v1::MONITOR && mode != v1::ENFORCE) return absl::InvalidArgumentError("mode must be monitor or enforce");
  return impl_->OnWriter<v1::PackInfo>([&](Database& db) {
    return impl_->Activate(db, version, mode, "activate", who, reason,
                           fmt::format("activated rule pack {} in {} mode: {}", version,
                                       mode == v1::ENFORCE ? "enforce" : "monitor", reason));
  });
}

absl::StatusOr<v1::PackInfo> Store::RollbackPack(const std::string& to_version, const AuditEntry& who,
                                                const std::string& reason) {
  return impl_->OnWriter<v1::PackInfo>([&](Database& db) -> absl::StatusOr<v1::PackInfo> {
    auto acts = Impl::Activations(db);
    if (!acts.ok()) return acts.status();
    auto stack = Impl::EffectiveStack(*acts);
    if (stack.empty()) return absl::FailedPreconditionError("no rule pack has been activated");
    if (!to_version.empty()) {
      // An explicit target is a new activation in the current mode.
      const auto m = static_cast<v1::PackMode>(stack.back().mode);
      return impl_->Activate(db, to_version, m, "activate", who, reason,
                             fmt::format("rolled back from {} to rule pack {}: {}", stack.back().version, to_version,
                                         reason));
    }
    if (stack.size() < 2) return absl::FailedPreconditionError("nothing to roll back to: one activation so far");
    const auto& prev = stack[stack.size() - 2];
    return impl_->Activate(db, prev.version, static_cast<v1::PackMode>(prev.mode), "rollback", who, reason,
                           fmt::format("rolled back from {} to rule pack {}: {}", stack.back().version, prev.version,
                                       reason));
  });
}

absl::StatusOr<uint64_t> Store::ApplyRetention(int days, const std::string& actor) {
  if (days <= 0) return absl::InvalidArgumentError("retention must be at least 1 day");
  return impl_->OnWriter<uint64_t>([&](Database& db) -> absl::StatusOr<uint64_t> {
    const int64_t now = impl_->Now();
    const int64_t cutoff = now - int64_t{days} * 86400LL * 1000000LL;
    Transaction tx(db);
    if (!tx.begin_status().ok()) return tx.begin_status();
    // received_us grows with seq, so the rows to drop are a prefix of the chain:
    // binary search the last seq received before the cutoff by primary key lookups.
    auto bounds = db.Prepare("SELECT COALESCE(MIN(seq), 0), COALESCE(MAX(seq), 0) FROM verdicts");
    if (!bounds.ok()) return bounds.status();
    if (auto r = bounds->Step(); !r.ok()) return r.status();
    int64_t lo = bounds->Int(0), hi = bounds->Int(1), last_old = 0;
    auto at = db.Prepare("SELECT seq, received_us FROM verdicts WHERE seq >= ? ORDER BY seq LIMIT 1");
    if (!at.ok()) return at.status();
    while (lo <= hi && lo > 0) {
      int64_t mid = lo + (hi - lo) / 2;
      at->Bind(1, mid);
      auto r = at->Step();
      if (!r.ok()) return r.status();
      if (!*r) break;
      int64_t seq = at->Int(0), received = at->Int(1);
      at->Reset();
      if (received < cutoff) {
        last_old = seq;
        lo = seq + 1;
      } else {
        hi = mid - 1;
      }
    }
    uint64_t deleted = 0;
    if (last_old > 0) {
      auto hash = db.Prepare("SELECT hash FROM verdicts WHERE seq = ?");
      if (!hash.ok()) return hash.status();
      hash->Bind(1, last_old);
      if (auto r = hash->Step(); !r.ok() || !*r) return absl::InternalError("retention: boundary row vanished");
      std::string anchor = hash->Blob(0);
      auto del = db.Prepare("DELETE FROM verdicts WHERE seq <= ?");
      if (!del.ok()) return del.status();
      del->Bind(1, last_old);
      if (auto s = del->Run(); !s.ok()) return s;
      deleted = static_cast<uint64_t>(db.Changes());
      auto del_tags = db.Prepare("DELETE FROM verdict_tags WHERE seq <= ?");
      if (!del_tags.ok()) return del_tags.status();
      del_tags->Bind(1, last_old);
      if (auto s = del_tags->Run(); !s.ok()) return s;
      auto head = LoadHead(db, "verdicts");
      if (!head.ok()) return head.status();
      head->anchor = anchor;
      if (auto s = SaveHead(db, "verdicts", *head); !s.ok()) return s;
    }
    AuditEntry e{actor, "store", "retention",
                 fmt::format("retention {} days: deleted {} verdicts up to seq {}", days, deleted, last_old), true};
    if (auto s = AppendAudit(db, now, e); !s.ok()) return s;
    if (auto s = tx.Commit(); !s.ok()) return s;
    return deleted;
  });
}

absl::StatusOr<v1::QueryResponse> Store::Query(const v1::QueryRequest& request) {
  uint32_t page = request.page_size() == 0 ? kDefaultPage : std::min(request.page_size(), kMaxPage);
  FilterSql q = BuildFilter(request.filter(), false);
  const bool newest = request.order() == v1::NEWEST_FIRST;
  if (!request.page_token().empty()) {
    int64_t t = 0, s = 0;
    if (auto st = ParsePageToken(request.page_token(), &t, &s); !st.ok()) return st;
    const char* op = newest ? "<" : ">";
    q.And(fmt::format("({0} {2} ? OR ({0} = ? AND {1} {2} ?))", q.time_col, q.seq_col, op));
    q.args.push_back(t);
    q.args.push_back(t);
    q.args.push_back(s);
  }
  const char* dir = newest ? "DESC" : "ASC";
  std::string sql = fmt::format("SELECT v.body, {0}, {1} FROM {2} WHERE {3} ORDER BY {0} {4}, {1} {4} LIMIT ?",
                                q.time_col, q.seq_col, q.from, q.where, dir);
  q.args.push_back(int64_t{page} + 1);
  auto db = impl_->Reader();
  if (!db.ok()) return db.status();
  auto st = (*db)->Cached(sql);
  if (!st.ok()) return st.status();
  BindArgs(**st, q.args);
  v1::QueryResponse out;
  int64_t last_time = 0, last_seq = 0;
  for (;;) {
    auto r = (*st)->Step();
    if (!r.ok()) return r.status();
    if (!*r) break;
    if (static_cast<uint32_t>(out.verdicts_size()) == page) {
      out.set_next_page_token(fmt::format("{}:{}", last_time, last_seq));
      break;
    }
    if (!out.add_verdicts()->ParseFromString((*st)->Blob(0))) return absl::DataLossError("a stored verdict does not parse");
    last_time = (*st)->Int(1);
    last_seq = (*st)->Int(2);
  }
  (*st)->Reset();
  return out;
}

absl::StatusOr<v1::StatsResponse> Store::Stats(const v1::StatsRequest& request) {
  const bool by_category = request.group_by() == v1::CATEGORY;
  FilterSql q = BuildFilter(request.filter(), by_category);
  std::string key;
  switch (request.group_by()) {
    case v1::CATEGORY: key = "t.value"; break;
    case v1::DESTINATION: key = "v.host"; break;
    case v1::DAY: key = "strftime('%Y-%m-%d', v.time_us / 1000000, 'unixepoch')"; break;
    case v1::ACTION: key = "v.action"; break;
    default: return absl::InvalidArgumentError("group_by must be CATEGORY, DESTINATION, DAY or ACTION");
  }
  std::string sql = fmt::format(
      "SELECT {0}, COUNT(*), COALESCE(SUM(v.bytes_out), 0), COALESCE(SUM(v.bytes_in), 0) FROM {1} WHERE {2} "
      "GROUP BY 1 ORDER BY 2 DESC, 1",
      key, q.from, q.where);
  auto db = impl_->Reader();
  if (!db.ok()) return db.status();
  auto st = (*db)->Cached(sql);
  if (!st.ok()) return st.status();
  BindArgs(**st, q.args);
  v1::StatsResponse out;
  for (;;) {
    auto r = (*st)->Step();
    if (!r.ok()) return r.status();
    if (!*r) break;
    auto* row = out.add_rows();
    if (request.group_by() == v1::ACTION) {
      auto a = static_cast<rules::v1::Action>((*st)->Int(0));
      row->set_key(rules::v1::Action_IsValid(a) ? rules::v1::Action_Name(a) : fmt::format("{}", (*st)->Int(0)));
    } else {
      row->set_key((*st)->Text(0));
    }
    row->set_verdicts(static_cast<uint64_t>((*st)->Int(1)));
    row->set_bytes_out(static_cast<uint64_t>((*st)->Int(2)));
    row->set_bytes_in(static_cast<uint64_t>((*st)->Int(3)));
  }
  (*st)->Reset();
  return out;
}

absl::StatusOr<v1::ListPacksResponse> Store::ListPacks() {
  auto db = impl_->Reader();
  if (!db.ok()) return db.status();
  auto st = (*db)->Prepare("SELECT version FROM packs ORDER BY pushed_us DESC, version");
  if (!st.ok()) return st.status();
  std::vector<std::string> versions;
  for (;;) {
    auto r = st->Step();
    if (!r.ok()) return r.status();
    if (!*r) break;
    versions.push_back(st->Text(0));
  }
  v1::ListPacksResponse out;
  for (const auto& v : versions) {
    auto info = Impl::LoadInfo(**db, v, nullptr);
    if (!info.ok()) return info.status();
    *out.add_packs() = std::move(*info);
  }
  return out;
}

absl::StatusOr<v1::GetPackResponse> Store::GetPack(const std::string& version) {
  auto db = impl_->Reader();
  if (!db.ok()) return db.status();
  std::string v = version;
  if (v.empty()) {
    auto acts = Impl::Activations(**db);
    if (!acts.ok()) return acts.status();
    auto stack = Impl::EffectiveStack(*acts);
    if (stack.empty()) return absl::NotFoundError("no rule pack is active");
    v = stack.back().version;
  }
  v1::GetPackResponse out;
  auto info = Impl::LoadInfo(**db, v, out.mutable_pack());
  if (!info.ok()) return info.status();
  *out.mutable_info() = std::move(*info);
  return out;
}

absl::StatusOr<v1::DiffResponse> Store::DiffPacks(const std::string& from, const std::string& to) {
  auto a = GetPack(from);
  if (!a.ok()) return a.status();
  auto b = GetPack(to);
  if (!b.ok()) return b.status();
  v1::DiffResponse out;
  std::map<std::string, const rules::v1::Rule*> old_rules, new_rules;
  for (const auto& r : a->pack().rules()) old_rules[r.id()] = &r;
  for (const auto& r : b->pack().rules()) new_rules[r.id()] = &r;
  std::set<std::string> ids;  // one change per rule id, in id order
  for (const auto& [id, rule] : old_rules) ids.insert(id);
  for (const auto& [id, rule] : new_rules) ids.insert(id);
  for (const auto& id : ids) {
    auto o = old_rules.find(id);
    auto n = new_rules.find(id);
    v1::RuleChange c;
    c.set_rule_id(id);
    if (o == old_rules.end()) {
      c.set_kind(v1::RuleChange::ADDED);
    } else if (n == new_rules.end()) {
      c.set_kind(v1::RuleChange::REMOVED);
    } else {
      auto fields = DifferingFields(*o->second, *n->second, {});
      if (fields.empty()) continue;
      c.set_kind(v1::RuleChange::CHANGED);
      for (auto& f : fields) c.add_fields(f);
    }
    *out.add_changes() = std::move(c);
  }
  for (auto& f : DifferingFields(a->pack(), b->pack(), {"rules"})) out.add_pack_fields(f);
  return out;
}

absl::StatusOr<v1::ActivePack> Store::Active() {
  // Generation first: a change racing this read is seen again by the next wait.
  const uint64_t gen = active_generation();
  auto got = GetPack("");
  if (!got.ok()) return got.status();
  v1::ActivePack out;
  *out.mutable_info() = std::move(*got->mutable_info());
  *out.mutable_pack() = std::move(*got->mutable_pack());
  out.set_generation(gen);
  return out;
}

absl::StatusOr<v1::AuditListResponse> Store::ListAudit(const v1::AuditListRequest& request) {
  uint32_t limit = request.limit() == 0 ? kDefaultPage : std::min(request.limit(), kMaxPage);
  std::string sql = "SELECT seq, time_us, actor, role, method, allowed, detail, hash FROM audit WHERE seq > ?";
  std::vector<Arg> args{static_cast<int64_t>(request.after_seq())};
  if (!request.actor().empty()) {
    sql += " AND actor = ?";
    args.emplace_back(request.actor());
  }
  if (!request.method().empty()) {
    sql += " AND method = ?";
    args.emplace_back(request.method());
  }
  if (request.denied_only()) sql += " AND allowed = 0";
  sql += " ORDER BY seq LIMIT ?";
  args.emplace_back(int64_t{limit});
  auto db = impl_->Reader();
  if (!db.ok()) return db.status();
  auto st = (*db)->Cached(sql);
  if (!st.ok()) return st.status();
  BindArgs(**st, args);
  v1::AuditListResponse out;
  for (;;) {
    auto r = (*st)->Step();
    if (!r.ok()) return r.status();
    if (!*r) break;
    auto* rec = out.add_records();
    rec->set_seq(static_cast<uint64_t>((*st)->Int(0)));
    *rec->mutable_time() = FromUs((*st)->Int(1));
    rec->set_actor((*st)->Text(2));
    rec->set_role((*st)->Text(3));
    rec->set_method((*st)->Text(4));
    rec->set_allowed((*st)->Int(5) != 0);
    rec->set_detail((*st)->Text(6));
    rec->set_hash(Hex((*st)->Blob(7)));
  }
  (*st)->Reset();
  return out;
}

namespace {

absl::Status VerifyVerdicts(Database& db, v1::VerifyResponse* out) {
  auto head = LoadHead(db, "verdicts");
  if (!head.ok()) return head.status();
  ChainVerifier verifier("verdicts", head->anchor, head->seq, head->hash,
                         [&db](const std::string& h) -> std::optional<int64_t> {
                           auto st = db.Prepare("SELECT seq FROM verdicts WHERE hash = ?");
                           if (!st.ok()) return std::nullopt;
                           st->BindBlob(1, h);
                           auto r = st->Step();
                           if (!r.ok() || !*r) return std::nullopt;
                           return st->Int(0);
                         });
  auto st = db.Prepare(
      "SELECT seq, id, time_us, received_us, appliance, client_address, workload, host, action, rule_pack_version, "
      "bytes_out, bytes_in, body, prev_hash, hash FROM verdicts ORDER BY seq");
  if (!st.ok()) return st.status();
  v1::Verdict v;
  for (;;) {
    auto r = st->Step();
    if (!r.ok()) return r.status();
    if (!*r) break;
    ChainRow row;
    row.seq = st->Int(0);
    std::string body = st->Blob(12);
    row.content = VerdictContent(st->Int(3), body);
    row.prev_hash = st->Blob(13);
    row.hash = st->Blob(14);
    if (!v.ParseFromString(body)) {
      row.inconsistency = "body does not parse";
    } else {
      std::vector<std::string> bad;
      if (st->Text(1) != v.id()) bad.push_back("id");
      if (st->Int(2) != ToUs(v.time())) bad.push_back("time_us");
      if (st->Text(4) != v.appliance()) bad.push_back("appliance");
      if (st->Text(5) != v.client_address()) bad.push_back("client_address");
      if (st->Text(6) != v.workload()) bad.push_back("workload");
      if (st->Text(7) != v.host()) bad.push_back("host");
      if (st->Int(8) != int64_t{v.action()}) bad.push_back("action");
      if (st->Text(9) != v.rule_pack_version()) bad.push_back("rule_pack_version");
      if (st->Int(10) != static_cast<int64_t>(v.bytes_out())) bad.push_back("bytes_out");
      if (st->Int(11) != static_cast<int64_t>(v.bytes_in())) bad.push_back("bytes_in");
      if (!bad.empty()) {
        std::string cols;
        for (const auto& b : bad) cols += (cols.empty() ? "" : ", ") + b;
        row.inconsistency = fmt::format("column(s) {} differ from the hashed verdict {}", cols, v.id());
      }
    }
    verifier.Add(row);
  }
  verifier.Finish();
  out->set_verdicts_checked(verifier.checked());
  for (const auto& p : verifier.problems()) *out->add_problems() = p;
  return absl::OkStatus();
}

absl::Status VerifyAudit(Database& db, v1::VerifyResponse* out) {
  auto head = LoadHead(db, "audit");
  if (!head.ok()) return head.status();
  ChainVerifier verifier("audit", head->anchor, head->seq, head->hash,
                         [&db](const std::string& h) -> std::optional<int64_t> {
                           auto st = db.Prepare("SELECT seq FROM audit WHERE hash = ?");
                           if (!st.ok()) return std::nullopt;
                           st->BindBlob(1, h);
                           auto r = st->Step();
                           if (!r.ok() || !*r) return std::nullopt;
                           return st->Int(0);
                         });
  auto st = db.Prepare("SELECT seq, time_us, actor, role, method, allowed, detail, prev_hash, hash FROM audit ORDER BY seq");
  if (!st.ok()) return st.status();
  for (;;) {
    auto r = st->Step();
    if (!r.ok()) return r.status();
    if (!*r) break;
    ChainRow row;
    row.seq = st->Int(0);
    row.content = AuditContent(st->Int(1), st->Text(2), st->Text(3), st->Text(4), st->Int(5) != 0, st->Text(6));
    row.prev_hash = st->Blob(7);
    row.hash = st->Blob(8);
    verifier.Add(row);
  }
  verifier.Finish();
  out->set_audit_checked(verifier.checked());
  for (const auto& p : verifier.problems()) *out->add_problems() = p;
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<v1::VerifyResponse> Store::Verify() {
  auto db = impl_->Reader();
  if (!db.ok()) return db.status();
  // One read transaction: both chains and their heads from the same snapshot.
  if (auto s = (*db)->Exec("BEGIN"); !s.ok()) return s;
  v1::VerifyResponse out;
  absl::Status s = VerifyVerdicts(**db, &out);
  if (s.ok()) s = VerifyAudit(**db, &out);
  (void)(*db)->Exec("COMMIT");
  if (!s.ok()) return s;
  out.set_ok(out.problems().empty());
  return out;
}

uint64_t Store::active_generation() const {
  std::lock_guard lock(impl_->active_mu);
  return impl_->generation;
}

void Store::WaitActiveChange(uint64_t seen, std::chrono::milliseconds timeout) {
  std::unique_lock lock(impl_->active_mu);
  impl_->active_cv.wait_for(lock, timeout, [&] { return impl_->shutdown || impl_->generation != seen; });
}

void Store::Shutdown() {
  {
    std::lock_guard lock(impl_->active_mu);
    impl_->shutdown = true;
  }
  impl_->active_cv.notify_all();
}

bool Store::shutting_down() const {
  std::lock_guard lock(impl_->active_mu);
  return impl_->shutdown;
}

}  // namespace egressguard::store
