// Proves what is particular to the PostgreSQL backend, against a real server the test starts: several store replicas on one database write one chain that verifies (the advisory lock), see each other's activations (polling), refuse a password in the URI and a database newer than the build, keep verdicts in month partitions that retention drops whole, find a tampered verdict_ids or tag column, and answer UNAVAILABLE (health not serving) while the database is down and recover when it is back.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <set>
#include <thread>
#include <vector>

#include "appliance/store/chain.h"
#include "appliance/store/pg.h"
#include "appliance/store/pg_schema.h"
#include "appliance/store/store.h"
#include "store_backends.h"
#include "store_test_util.h"

namespace egressguard::store {
namespace {

using testing::MakeVerdict;
using testing::StoreBackend;
using testing::StoreDatabase;
using testing::TempDir;

class PgStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    db_ = std::make_unique<StoreDatabase>(StoreBackend::kPostgres, dir_);
    EGRESSGUARD_REQUIRE_DATABASE(*db_);
  }
  StorePtr Open(std::function<int64_t()> now = nullptr) {
    Store::Options o{db_->database(), 2, std::move(now)};
    o.pg_poll_interval = std::chrono::milliseconds(50);
    auto s = Store::Open(o);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? std::move(*s) : nullptr;
  }
  TempDir dir_;
  std::unique_ptr<StoreDatabase> db_;
};

rules::v1::RulePack Pack(const std::string& version) {
  rules::v1::RulePack p;
  p.set_name("test");
  p.set_version(version);
  auto* r = p.add_rules();
  r->set_id("cc.visa");
  r->set_category("credit_card");
  r->add_patterns("4[0-9]{15}");
  r->set_action(rules::v1::BLOCK);
  return p;
}

TEST_F(PgStoreTest, TwoReplicasWriteOneChainThatVerifies) {
  auto a = Open();
  auto b = Open();
  ASSERT_TRUE(a && b);
  std::vector<std::thread> writers;
  std::vector<absl::StatusOr<IngestResult>> results(8, absl::UnknownError("not run"));
  for (int w = 0; w < 8; ++w) {
    writers.emplace_back([&, w] {
      Store& s = w % 2 ? *a : *b;
      std::vector<v1::Verdict> batch;
      // Overlapping ids across replicas: each id is stored once, whichever replica wins.
      for (int i = 0; i < 150; ++i) batch.push_back(MakeVerdict(fmt::format("r{}", (w * 100 + i) % 900), 100 + i, "h"));
      results[static_cast<size_t>(w)] = s.Ingest(std::move(batch));
    });
  }
  for (int i = 0; i < 5; ++i) ASSERT_TRUE((i % 2 ? *a : *b).Audit({"alice", "officer", "m", "x", true}).ok());
  for (auto& t : writers) t.join();
  uint64_t inserted = 0;
  for (const auto& r : results) {
    ASSERT_TRUE(r.ok()) << r.status();
    inserted += r->inserted;
  }
  EXPECT_EQ(inserted, 850u);  // r0..r849
  for (Store* s : {a.get(), b.get()}) {
    auto v = s->Verify();
    ASSERT_TRUE(v.ok()) << v.status();
    EXPECT_TRUE(v->ok()) << v->DebugString();
    EXPECT_EQ(v->verdicts_checked(), 850u);
    EXPECT_EQ(v->audit_checked(), 5u);
  }
}

// Group commit: batches that queue while a transaction holds the chain lock are written
// together, in one transaction, once it is free. The chain lock is held from outside
// while eight callers arrive; then at most two transactions write their 800 verdicts
// (the first caller's alone, the other seven together), each with one receive time
// (the store's clock ticks at every reading, so one-batch transactions would leave
// eight). Every verdict is stored once and the chain verifies.
TEST_F(PgStoreTest, ConcurrentBatchesShareOneTransaction) {
  std::atomic<int64_t> clock{int64_t{1767225600} * 1000000};
  auto s = Open([&clock] { return clock.fetch_add(1); });
  ASSERT_TRUE(s);
  auto holder = pg::Connection::Open(db_->database());
  ASSERT_TRUE(holder.ok()) << holder.status();
  ASSERT_TRUE((*holder)->Run("SELECT pg_advisory_lock($1)", {pg::Param::Int(pg::kLockVerdictChain)}).ok());
  std::vector<std::thread> callers;
  std::vector<absl::StatusOr<IngestResult>> results(8, absl::UnknownError("not run"));
  for (int c = 0; c < 8; ++c) {
    callers.emplace_back([&, c] {
      std::vector<v1::Verdict> batch;
      for (int i = 0; i < 100; ++i) batch.push_back(MakeVerdict(fmt::format("g{}-{}", c, i), 100 + i, "h"));
      results[static_cast<size_t>(c)] = s->Ingest(std::move(batch));
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // all eight have queued
  ASSERT_TRUE((*holder)->Run("SELECT pg_advisory_unlock($1)", {pg::Param::Int(pg::kLockVerdictChain)}).ok());
  for (auto& t : callers) t.join();
  for (const auto& r : results) {
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->inserted, 100u);
  }
  auto groups = (*holder)->Exec("SELECT COUNT(DISTINCT received_us), COUNT(*) FROM verdicts");
  ASSERT_TRUE(groups.ok()) << groups.status();
  EXPECT_EQ(groups->Int(0, 1), 800);
  EXPECT_LE(groups->Int(0, 0), 2) << "transactions that wrote the eight batches";
  auto v = s->Verify();
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_TRUE(v->ok()) << v->DebugString();
  EXPECT_EQ(v->verdicts_checked(), 800u);
}

TEST_F(PgStoreTest, AnActivationThroughOneReplicaWakesTheOther) {
  auto a = Open();
  auto b = Open();
  ASSERT_TRUE(a && b);
  AuditEntry officer{"alice", "officer", "m", "", true};
  ASSERT_TRUE(a->PushPack(Pack("1.0"), "alice", "first").ok());
  const uint64_t seen = b->active_generation();
  ASSERT_TRUE(a->ActivatePack("1.0", v1::ENFORCE, officer, "go").ok());
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (b->active_generation() == seen && std::chrono::steady_clock::now() < until) {
    b->WaitActiveChange(seen, std::chrono::milliseconds(500));
  }
  ASSERT_NE(b->active_generation(), seen);
  auto active = b->Active();
  ASSERT_TRUE(active.ok()) << active.status();
  EXPECT_EQ(active->info().version(), "1.0");
  EXPECT_EQ(active->info().mode(), v1::ENFORCE);
}

TEST_F(PgStoreTest, APasswordInTheUriIsRefused) {
  std::string uri = db_->database();
  uri.replace(uri.find("postgres@"), 9, "postgres:secret@");
  auto s = Store::Open({uri, 2, nullptr});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.status().message().find("PGPASSFILE"), std::string::npos) << s.status();
  EXPECT_EQ(s.status().message().find("secret"), std::string::npos) << "the error must not repeat the password";
}

TEST_F(PgStoreTest, ADatabaseNewerThanTheBuildIsRefused) {
  ASSERT_TRUE(Open() != nullptr);  // migrated to the latest
  ASSERT_TRUE(db_->Exec(fmt::format("UPDATE schema_version SET version = {}", pg::LatestSchemaVersion() + 1)));
  auto s = Store::Open({db_->database(), 2, nullptr});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.status().message().find("newer than this build"), std::string::npos) << s.status();
}

TEST_F(PgStoreTest, RetentionDropsWholeMonthsAndDeletesTheBoundary) {
  // Received on 2026-01-10, 2026-02-10 and 2026-03-13 (UTC); retention of 30 days on
  // 2026-03-28 keeps what came after 2026-02-26: January goes as a dropped partition,
  // February's row is deleted from its partition (which reaches past the cutoff).
  auto at = [](int month) { return (int64_t{1767225600} + (month - 1) * 31LL * 86400 + 9 * 86400) * 1000000; };
  int64_t now = at(1);
  auto s = Open([&now] { return now; });
  ASSERT_TRUE(s);
  ASSERT_TRUE(s->Ingest({MakeVerdict("jan-1", 1, "h"), MakeVerdict("jan-2", 2, "h")}).ok());
  now = at(2);
  ASSERT_TRUE(s->Ingest({MakeVerdict("feb-1", 3, "h")}).ok());
  now = at(3);
  ASSERT_TRUE(s->Ingest({MakeVerdict("mar-1", 4, "h")}).ok());
  now = at(3) + 15LL * 86400 * 1000000;
  auto deleted = s->ApplyRetention(30, "test");
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_EQ(*deleted, 3u);
  EXPECT_FALSE(db_->Exec("SELECT 1 FROM verdicts_y2026m01"));  // gone from the catalog
  EXPECT_TRUE(db_->Exec("SELECT 1 FROM verdicts_y2026m02"));
  EXPECT_TRUE(db_->Exec("SELECT 1 FROM verdicts_y2026m03"));
  auto v = s->Verify();
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->ok()) << v->DebugString();
  EXPECT_EQ(v->verdicts_checked(), 1u);
  // A resend of a deleted verdict is stored again (its id went with it), like on sqlite.
  auto again = s->Ingest({MakeVerdict("jan-1", 1, "h")});
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->inserted, 1u);
}

TEST_F(PgStoreTest, RetentionOfPartOfAMonthDeletesRows) {
  int64_t now = int64_t{1767225600 + 2 * 86400} * 1000000;  // 2026-01-03
  auto s = Open([&now] { return now; });
  ASSERT_TRUE(s);
  ASSERT_TRUE(s->Ingest({MakeVerdict("a", 1, "h")}).ok());
  now += 20LL * 86400 * 1000000;  // 2026-01-23, same month
  ASSERT_TRUE(s->Ingest({MakeVerdict("b", 2, "h")}).ok());
  now += 12LL * 86400 * 1000000;
  auto deleted = s->ApplyRetention(20, "test");
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_EQ(*deleted, 1u);
  EXPECT_TRUE(db_->Exec("SELECT 1 FROM verdicts_y2026m01"));
  auto v = s->Verify();
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->ok()) << v->DebugString();
  EXPECT_EQ(v->verdicts_checked(), 1u);
}

TEST_F(PgStoreTest, TamperedIdsAndTagColumnsAreFound) {
  auto s = Open();
  ASSERT_TRUE(s);
  std::vector<v1::Verdict> batch;
  for (int i = 1; i <= 6; ++i) batch.push_back(MakeVerdict(fmt::format("v{}", i), 100 + i, "h", "iban"));
  ASSERT_TRUE(s->Ingest(batch).ok());
  s.reset();
  ASSERT_TRUE(db_->Exec("DELETE FROM verdict_ids WHERE seq = 2; UPDATE verdicts SET categories = '{credit_card}' "
                        "WHERE seq = 4; UPDATE verdicts SET rule_ids = '{}' WHERE seq = 5"));
  s = Open();
  auto v = s->Verify();
  ASSERT_TRUE(v.ok());
  EXPECT_FALSE(v->ok());
  std::set<std::pair<std::string, uint64_t>> found;
  for (const auto& p : v->problems()) found.insert({p.kind(), p.seq()});
  EXPECT_TRUE(found.count({"index", 2})) << v->DebugString();
  EXPECT_TRUE(found.count({"edited", 4})) << v->DebugString();
  EXPECT_TRUE(found.count({"edited", 5})) << v->DebugString();
  EXPECT_EQ(testing::NonRollupProblems(*v), 3) << v->DebugString();
  // The deleted id row would let a resend store v2 again: Verify names it, and the
  // filters still see the category column the attacker changed as it is now.
  v1::QueryRequest q;
  q.mutable_filter()->set_category("credit_card");
  auto got = s->Query(q);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->verdicts_size(), 1);
}

// `store migrate --from --to`: a sqlite store with verdicts, packs, activations, audit
// and a retention (a moved chain anchor) is copied with its chains intact: the copy
// verifies with the same heads and answers like the original; a second copy into the
// same database is refused.
TEST_F(PgStoreTest, ASqliteStoreIsCopiedWithItsChainsIntact) {
  const std::string file = dir_.File("old.db");
  int64_t now = 0;
  {
    auto old = Store::Open({file, 2, [&now] { return now; }});
    ASSERT_TRUE(old.ok()) << old.status();
    now = int64_t{1767225600} * 1000000;  // 2026-01-01
    std::vector<v1::Verdict> batch;
    for (int i = 0; i < 2500; ++i) {
      batch.push_back(MakeVerdict(fmt::format("c{}", i), 1767225600 + i, i % 2 ? "a.example" : "b.example",
                                  i % 3 ? "iban" : "", i % 5 ? rules::v1::ALLOW : rules::v1::BLOCK));
    }
    ASSERT_TRUE((*old)->Ingest(batch).ok());
    now += 40LL * 86400 * 1000000;  // February: a retention of 30 days drops January's
    ASSERT_TRUE((*old)->Ingest({MakeVerdict("late", 1767225600 + 40 * 86400, "c.example", "email")}).ok());
    ASSERT_TRUE((*old)->ApplyRetention(30, "test").ok());
    ASSERT_TRUE((*old)->Ingest({MakeVerdict("later", 1767225600 + 41 * 86400, "c.example")}).ok());
    AuditEntry officer{"alice", "officer", "m", "", true};
    ASSERT_TRUE((*old)->PushPack(Pack("1.0"), "alice", "first").ok());
    ASSERT_TRUE((*old)->ActivatePack("1.0", v1::ENFORCE, officer, "go").ok());
    ASSERT_TRUE((*old)->PushPack(Pack("2.0"), "alice", "second").ok());
    ASSERT_TRUE((*old)->ActivatePack("2.0", v1::MONITOR, officer, "go").ok());
  }
  auto report = Store::CopyIntoPostgres(file, db_->database());
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->verdicts, 2u);  // late, later: the first 2500 went with the retention
  EXPECT_EQ(report->packs, 2u);
  EXPECT_EQ(report->audit, 5u);  // retention, 2 pushes, 2 activations
  auto a = Store::Open({file, 2, nullptr});
  auto b = Open();
  ASSERT_TRUE(a.ok() && b);
  auto va = (*a)->Verify();
  auto vb = b->Verify();
  ASSERT_TRUE(va.ok() && vb.ok());
  EXPECT_TRUE(vb->ok()) << vb->DebugString();
  EXPECT_EQ(va->verdicts_checked(), vb->verdicts_checked());
  EXPECT_EQ(va->audit_checked(), vb->audit_checked());
  auto audit_a = (*a)->ListAudit({});
  auto audit_b = b->ListAudit({});
  ASSERT_TRUE(audit_a.ok() && audit_b.ok());
  EXPECT_EQ(audit_a->DebugString(), audit_b->DebugString());  // same records, same hashes
  auto qa = (*a)->Query({});
  auto qb = b->Query({});
  ASSERT_TRUE(qa.ok() && qb.ok());
  EXPECT_EQ(qa->DebugString(), qb->DebugString());
  v1::StatsRequest by_category;
  by_category.set_group_by(v1::CATEGORY);
  EXPECT_EQ((*a)->Stats(by_category)->DebugString(), b->Stats(by_category)->DebugString());
  auto active = b->Active();
  ASSERT_TRUE(active.ok());
  EXPECT_EQ(active->info().version(), "2.0");
  EXPECT_EQ(active->generation(), (*a)->active_generation());
  // The copy goes on as one chain: a new verdict and a rollback chain onto the copied heads.
  ASSERT_TRUE(b->Ingest({MakeVerdict("after-copy", 1767225600 + 42 * 86400, "d.example")}).ok());
  ASSERT_TRUE(b->RollbackPack("", {"alice", "officer", "m", "", true}, "back").ok());
  vb = b->Verify();
  ASSERT_TRUE(vb.ok());
  EXPECT_TRUE(vb->ok()) << vb->DebugString();
  EXPECT_GT(b->active_generation(), (*a)->active_generation());
  // Into a database that holds data: refused, nothing changed.
  auto again = Store::CopyIntoPostgres(file, db_->database());
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(again.status().message().find("empty"), std::string::npos) << again.status();
}

TEST_F(PgStoreTest, ALostDatabaseAnswersUnavailableAndRecovers) {
  auto s = Open();
  ASSERT_TRUE(s);
  ASSERT_TRUE(s->Ingest({MakeVerdict("before", 1, "h")}).ok());
  EXPECT_TRUE(s->Health().read.ok());
  ASSERT_TRUE(db_->server()->Stop().ok());
  auto r = s->Ingest({MakeVerdict("during", 2, "h")});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
  EXPECT_EQ(s->Query({}).status().code(), absl::StatusCode::kUnavailable);
  auto h = s->Health();
  EXPECT_FALSE(h.read.ok());
  EXPECT_FALSE(h.write.ok());
  ASSERT_TRUE(db_->server()->Restart().ok());
  h = s->Health();
  EXPECT_TRUE(h.read.ok()) << h.read;
  EXPECT_TRUE(h.write.ok()) << h.write;
  r = s->Ingest({MakeVerdict("during", 2, "h"), MakeVerdict("after", 3, "h")});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->inserted, 2u);
  auto v = s->Verify();
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->ok()) << v->DebugString();
  EXPECT_EQ(v->verdicts_checked(), 3u);
}

}  // namespace
}  // namespace egressguard::store

namespace egressguard::store {
namespace {

// Every earlier PostgreSQL schema version migrates to the latest and keeps its data:
// a database at version 1 (before the rollups) with verdicts and audit rows in it
// comes up with rollups that match its verdicts, and its chains still verify.
TEST_F(PgStoreTest, EveryEarlierSchemaVersionMigratesAndKeepsData) {
  for (int version = 1; version < pg::LatestSchemaVersion(); ++version) {
    StoreDatabase db(StoreBackend::kPostgres, dir_);
    ASSERT_FALSE(db.database().empty()) << db.why();
    {
      auto c = pg::Connection::Open(db.database());
      ASSERT_TRUE(c.ok()) << c.status();
      auto before = pg::Migrate(**c, version);
      ASSERT_TRUE(before.ok()) << before.status();
      EXPECT_EQ(*before, 0);
      auto now = pg::SchemaVersion(**c);
      ASSERT_TRUE(now.ok());
      ASSERT_EQ(*now, version);
      // Rows as that version's store wrote them: one verdict (seq 1, its month
      // partition), its id, the chain head, one audit row. The hashes are real ones.
      v1::Verdict v = MakeVerdict("old-1", 1767225600, "h.example", "iban");
      std::string body;
      v.SerializeToString(&body);
      const std::string zero(kHashBytes, '\0');
      const int64_t received = int64_t{1767225600} * 1000000;
      const std::string hash = ChainHash(zero, fmt::format("v1|{}|", received), body);
      ASSERT_TRUE((*c)->Run("CREATE TABLE verdicts_y2026m01 PARTITION OF verdicts FOR VALUES FROM "
                            "(1767225600000000) TO (1769904000000000)")
                      .ok());
      ASSERT_TRUE((*c)->Run("INSERT INTO verdict_partitions VALUES ('verdicts_y2026m01', 1767225600000000, "
                            "1769904000000000)")
                      .ok());
      ASSERT_TRUE((*c)->Run("INSERT INTO verdicts VALUES (1, 'old-1', $1, $2, 'app-1', '10.0.0.7', 'ns/payments', "
                            "'h.example', $6, '2026.11.1', 1000, 200, '{iban}', '{iban.rule}', $3, $4, $5)",
                            {pg::Param::Int(received), pg::Param::Int(received), pg::Param::Bytes(body),
                             pg::Param::Bytes(zero), pg::Param::Bytes(hash), pg::Param::Int(v.action())})
                      .ok());
      ASSERT_TRUE((*c)->Run("INSERT INTO verdict_ids VALUES ('old-1', 1)").ok());
      ASSERT_TRUE((*c)->Run("UPDATE chain_heads SET head_seq = 1, head_hash = $1, head_received_us = $2 WHERE chain "
                            "= 'verdicts'",
                            {pg::Param::Bytes(hash), pg::Param::Int(received)})
                      .ok());
      // From version 2 on, that store kept the hourly rollups with its verdicts.
      // Its five hourly rows: the verdict's hour x action, category, host, workload,
      // workload x host.
      if (version >= 2) {
        const int64_t hour = received / 3600000000;
        ASSERT_TRUE((*c)->Run("INSERT INTO stats_hourly VALUES ($1, $2, $3, '', 1, 1000, 200), "
                              "(2, $2, 'iban', '', 1, 1000, 200), (3, $2, 'h.example', '', 1, 1000, 200), "
                              "(4, $2, 'ns/payments', '', 1, 1000, 200), (5, $2, 'ns/payments', 'h.example', 1, 1000, 200)",
                              {pg::Param::Int(1), pg::Param::Int(hour), pg::Param::Text(std::to_string(v.action()))})
                        .ok());
      }
    }
    Store::Options o{db.database(), 2, nullptr};
    auto s = Store::Open(o);
    ASSERT_TRUE(s.ok()) << s.status();
    auto v = (*s)->Verify();
    ASSERT_TRUE(v.ok()) << v.status();
    EXPECT_TRUE(v->ok()) << "from version " << version << ": " << v->DebugString();
    {
      // Version 3: the seq index of verdict_ids is gone, stats_hourly leaves room for
      // HOT updates.
      auto c = pg::Connection::Open(db.database());
      ASSERT_TRUE(c.ok()) << c.status();
      auto r = (*c)->Exec("SELECT to_regclass('verdict_ids_seq') IS NULL, "
                          "(SELECT array_to_string(reloptions, ',') FROM pg_class WHERE relname = 'stats_hourly')");
      ASSERT_TRUE(r.ok()) << r.status();
      EXPECT_EQ(r->Text(0, 0), "t") << "from version " << version;
      EXPECT_EQ(r->Text(0, 1), "fillfactor=70") << "from version " << version;
    }
    EXPECT_EQ(v->verdicts_checked(), 1u);
    v1::StatsRequest by_category;
    by_category.set_group_by(v1::CATEGORY);
    auto stats = (*s)->Stats(by_category);
    ASSERT_TRUE(stats.ok()) << stats.status();
    ASSERT_EQ(stats->rows_size(), 1);
    EXPECT_EQ(stats->rows(0).key(), "iban");
    EXPECT_EQ(stats->rows(0).bytes_out(), 1000u);
    ASSERT_TRUE((*s)->Ingest({MakeVerdict("new-1", 1767225601, "h.example")}).ok());
    v = (*s)->Verify();
    ASSERT_TRUE(v.ok());
    EXPECT_TRUE(v->ok()) << v->DebugString();
  }
}

}  // namespace
}  // namespace egressguard::store
