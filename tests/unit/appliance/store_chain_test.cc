// Proves Verify finds an edited, deleted or reordered verdict or audit row (and a deleted tail), and a deleted, edited or added row of the derived tables filtered queries read (keys, tags), names the row, and passes an untouched store, also after retention; and that rows cut off the front with the chain anchor moved to match (which the chain alone cannot see) are found against the retention anchor in the audit trail.
#include <gtest/gtest.h>

#include <chrono>

#include "appliance/store/sqlite.h"
#include "appliance/store/store.h"
#include "store_backends.h"
#include "store_test_util.h"

namespace egressguard::store {
namespace {

using testing::MakeVerdict;
using testing::TempDir;

using testing::StoreBackend;
using testing::StoreDatabase;

// Runs on sqlite and PostgreSQL (store_backends.h); tampering goes straight to the
// database, as an attacker with the file or a database login would.
class ChainTest : public ::testing::TestWithParam<StoreBackend> {
 protected:
  void SetUp() override {
    db_ = std::make_unique<StoreDatabase>(GetParam(), dir_);
    EGRESSGUARD_REQUIRE_DATABASE(*db_);
    path_ = db_->database();
    Reopen();
    std::vector<v1::Verdict> batch;
    for (int i = 1; i <= 10; ++i) batch.push_back(MakeVerdict("v" + std::to_string(i), 1000 + i, "h.example"));
    ASSERT_TRUE(store_->Ingest(batch).ok());
    for (int i = 1; i <= 5; ++i) ASSERT_TRUE(store_->Audit({"alice", "officer", "m", "change " + std::to_string(i), true}).ok());
  }

  bool pg() const { return GetParam() == StoreBackend::kPostgres; }

  void Reopen(std::function<int64_t()> now = nullptr) {
    store_.reset();
    Store::Options options{path_, 2, std::move(now)};
    options.key_index_rows = key_index_rows_;
    auto s = Store::Open(options);
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = std::move(*s);
  }

  void Tamper(const std::string& sql) {
    store_.reset();
    ASSERT_TRUE(db_->Exec(sql));
    Reopen();
  }

  v1::VerifyResponse Verify() {
    auto r = store_->Verify();
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : v1::VerifyResponse{};
  }

  static bool Has(const v1::VerifyResponse& r, const std::string& chain, const std::string& kind, uint64_t seq) {
    for (const auto& p : r.problems()) {
      if (p.chain() == chain && p.kind() == kind && p.seq() == seq) return true;
    }
    return false;
  }

  TempDir dir_;
  std::unique_ptr<StoreDatabase> db_;
  std::string path_;
  StorePtr store_;
  int64_t key_index_rows_ = 32768;  // the default: these ten verdicts stay unkeyed
};
INSTANTIATE_TEST_SUITE_P(Backends, ChainTest, ::testing::Values(StoreBackend::kSqlite, StoreBackend::kPostgres),
                         testing::StoreBackendName);

// The derived tables of the sqlite backend (verdict_tags, verdict_keys).
class SqliteChainTest : public ChainTest {};
INSTANTIATE_TEST_SUITE_P(Backends, SqliteChainTest, ::testing::Values(StoreBackend::kSqlite),
                         testing::StoreBackendName);

// The same store with every verdict keyed (the writer keys after each group; the audit
// calls of SetUp queue behind it, so keying is done when SetUp returns).
class KeyIndexTest : public ChainTest {
 protected:
  void SetUp() override {
    key_index_rows_ = 1;
    ChainTest::SetUp();
  }
};
INSTANTIATE_TEST_SUITE_P(Backends, KeyIndexTest, ::testing::Values(StoreBackend::kSqlite), testing::StoreBackendName);

TEST_P(KeyIndexTest, UntouchedKeyedStoreVerifies) {
  auto r = Verify();
  EXPECT_TRUE(r.ok()) << r.DebugString();
}

TEST_P(KeyIndexTest, DeletedKeyRowIsFound) {
  Tamper("DELETE FROM verdict_keys WHERE kind = 1 AND seq = 4");
  auto r = Verify();
  EXPECT_FALSE(r.ok());
  ASSERT_TRUE(Has(r, "verdicts", "index", 4)) << r.DebugString();
  EXPECT_EQ(testing::NonRollupProblems(r), 1) << r.DebugString();
  EXPECT_NE(r.problems(0).detail().find("host row of this verdict is missing from verdict_keys"), std::string::npos) << r.DebugString();
}

TEST_P(KeyIndexTest, EditedKeyRowIsFound) {
  Tamper("UPDATE verdict_keys SET value = 'other.example' WHERE kind = 1 AND seq = 3");
  auto r = Verify();
  EXPECT_FALSE(r.ok());
  EXPECT_TRUE(Has(r, "verdicts", "index", 3)) << r.DebugString();
}

TEST_P(KeyIndexTest, AddedKeyRowIsFound) {
  Tamper("INSERT INTO verdict_keys SELECT 1, 'evil.example', time_us, seq FROM verdicts WHERE seq = 7");
  auto r = Verify();
  EXPECT_FALSE(r.ok());
  EXPECT_TRUE(Has(r, "verdicts", "index", 7)) << r.DebugString();
  EXPECT_EQ(testing::NonRollupProblems(r), 1) << r.DebugString();
}

TEST_P(SqliteChainTest, DeletedTagRowIsFound) {
  Tamper("DELETE FROM verdict_tags WHERE seq = 4");
  auto r = Verify();
  EXPECT_FALSE(r.ok());
  ASSERT_TRUE(Has(r, "verdicts", "index", 4)) << r.DebugString();
  EXPECT_EQ(testing::NonRollupProblems(r), 1) << r.DebugString();
  EXPECT_NE(r.problems(0).detail().find("missing from verdict_tags"), std::string::npos) << r.DebugString();
}

TEST_P(SqliteChainTest, AddedTagRowIsFound) {
  // A rule tag that would list verdict 7 under a rule that never fired on it.
  Tamper("INSERT INTO verdict_tags SELECT 2, 'card.rule', time_us, seq FROM verdicts WHERE seq = 7");
  auto r = Verify();
  EXPECT_FALSE(r.ok());
  EXPECT_TRUE(Has(r, "verdicts", "index", 7)) << r.DebugString();
  EXPECT_EQ(testing::NonRollupProblems(r), 1) << r.DebugString();
}

TEST_P(KeyIndexTest, KeyRowOfADeletedVerdictIsFound) {
  // The verdict goes (the chain sees that at seq 6); its key row stays behind.
  Tamper("DELETE FROM verdicts WHERE seq = 5");
  auto r = Verify();
  EXPECT_FALSE(r.ok());
  EXPECT_TRUE(Has(r, "verdicts", "deleted", 6)) << r.DebugString();
  EXPECT_TRUE(Has(r, "verdicts", "index", 5)) << r.DebugString();
}

TEST_P(ChainTest, UntouchedStoreVerifies) {
  auto r = Verify();
  EXPECT_TRUE(r.ok()) << r.DebugString();
  EXPECT_EQ(r.verdicts_checked(), 10u);
  EXPECT_EQ(r.audit_checked(), 5u);
}

TEST_P(ChainTest, EditedVerdictBodyIsFound) {
  // Rewrite row 4's body to a different, well-formed verdict.
  auto other = MakeVerdict("v4", 1004, "evil.example");
  std::string body;
  other.SerializeToString(&body);
  std::string hex;
  for (unsigned char c : body) hex += "0123456789abcdef"[c >> 4], hex += "0123456789abcdef"[c & 15];
  Tamper(pg() ? "UPDATE verdicts SET body = decode('" + hex + "', 'hex') WHERE seq = 4"
               : "UPDATE verdicts SET body = x'" + hex + "' WHERE seq = 4");
  auto r = Verify();
  EXPECT_FALSE(r.ok());
  EXPECT_TRUE(Has(r, "verdicts", "edited", 4)) << r.DebugString();
}

TEST_P(ChainTest, EditedIndexedColumnIsFound) {
  Tamper("UPDATE verdicts SET action = 1, host = 'other' WHERE seq = 6");
  auto r = Verify();
  EXPECT_FALSE(r.ok());
  ASSERT_TRUE(Has(r, "verdicts", "edited", 6)) << r.DebugString();
  EXPECT_NE(r.problems(0).detail().find("host"), std::string::npos);
}

TEST_P(ChainTest, DeletedVerdictIsFound) {
  Tamper("DELETE FROM verdicts WHERE seq = 5");
  auto r = Verify();
  EXPECT_FALSE(r.ok());
  EXPECT_TRUE(Has(r, "verdicts", "deleted", 6)) << r.DebugString();
  // Its category tag (sqlite) or its id (PostgreSQL) stayed behind, pointing at nothing.
  EXPECT_TRUE(Has(r, "verdicts", "index", 5)) << r.DebugString();
  EXPECT_EQ(testing::NonRollupProblems(r), 2) << r.DebugString();
  // And the hourly rollups still count it: rebuilt from the verdicts, they differ.
  EXPECT_TRUE(testing::HasRollupProblem(r)) << r.DebugString();
}

TEST_P(ChainTest, EditedRollupIsFound) {
  // An officer's overview skewed without touching a verdict.
  Tamper("UPDATE stats_hourly SET verdicts = verdicts + 100, bytes_out = bytes_out + 1 WHERE kind = 3");
  auto r = Verify();
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(testing::NonRollupProblems(r), 0) << r.DebugString();
  ASSERT_TRUE(testing::HasRollupProblem(r)) << r.DebugString();
  EXPECT_NE(r.problems(0).detail().find("kind 3"), std::string::npos) << r.DebugString();
  EXPECT_NE(r.problems(0).detail().find("h.example"), std::string::npos) << r.DebugString();
}

TEST_P(ChainTest, DeletedTailIsFound) {
  Tamper("DELETE FROM verdicts WHERE seq >= 9");
  auto r = Verify();
  EXPECT_FALSE(r.ok());
  EXPECT_TRUE(Has(r, "verdicts", "deleted", 8)) << r.DebugString();
}

TEST_P(ChainTest, ReorderedVerdictsAreFound) {
  Tamper("UPDATE verdicts SET seq = -3 WHERE seq = 3; UPDATE verdicts SET seq = 3 WHERE seq = 7; "
         "UPDATE verdicts SET seq = 7 WHERE seq = -3");
  auto r = Verify();
  EXPECT_FALSE(r.ok());
  EXPECT_TRUE(Has(r, "verdicts", "reordered", 3)) << r.DebugString();
  EXPECT_TRUE(Has(r, "verdicts", "reordered", 7)) << r.DebugString();
}

TEST_P(ChainTest, EditedAuditRowIsFound) {
  Tamper("UPDATE audit SET actor = 'mallory' WHERE seq = 2");
  auto r = Verify();
  EXPECT_FALSE(r.ok());
  EXPECT_TRUE(Has(r, "audit", "edited", 2)) << r.DebugString();
}

TEST_P(ChainTest, DeletedAuditRowIsFound) {
  Tamper("DELETE FROM audit WHERE seq = 3");
  auto r = Verify();
  EXPECT_FALSE(r.ok());
  EXPECT_TRUE(Has(r, "audit", "deleted", 4)) << r.DebugString();
}

TEST_P(ChainTest, FrontCutWithMovedAnchorAndNoRetentionIsFound) {
  // An attacker deletes the oldest rows and sets the anchor to the first survivor's
  // prev_hash: every link still holds, so only the anchor check can tell.
  Tamper("UPDATE chain_heads SET anchor_hash = (SELECT prev_hash FROM verdicts WHERE seq = 4) WHERE chain = 'verdicts';"
         "DELETE FROM verdicts WHERE seq <= 3");
  auto r = Verify();
  EXPECT_FALSE(r.ok());
  EXPECT_TRUE(Has(r, "verdicts", "anchor", 4)) << r.DebugString();
}

class RetentionTest : public ChainTest {
 protected:
  // Pins the clock 40 days after the rows so far, adds two late rows, and applies a
  // 30-day retention: the ten first rows go.
  void RetainTenOfTwelve() {
    Reopen([this] { return now_us_; });
    now_us_ = std::chrono::duration_cast<std::chrono::microseconds>(
                  std::chrono::system_clock::now().time_since_epoch())
                  .count() +
              40LL * 86400 * 1000000;
    ASSERT_TRUE(
        store_->Ingest({MakeVerdict("late-1", 5000, "h.example"), MakeVerdict("late-2", 5001, "h.example")}).ok());
    auto deleted = store_->ApplyRetention(30, "test");
    ASSERT_TRUE(deleted.ok()) << deleted.status();
    ASSERT_EQ(*deleted, 10u);
  }
  void TamperKeepingClock(const std::string& sql) {
    store_.reset();
    ASSERT_TRUE(db_->Exec(sql));
    Reopen([this] { return now_us_; });
  }
  int64_t now_us_ = 0;
};
INSTANTIATE_TEST_SUITE_P(Backends, RetentionTest, ::testing::Values(StoreBackend::kSqlite, StoreBackend::kPostgres),
                         testing::StoreBackendName);

TEST_P(RetentionTest, RetentionAnchorIsRecordedAndCrossChecked) {
  RetainTenOfTwelve();
  EXPECT_TRUE(Verify().ok());
  // One more row cut off the front, the anchor moved to match: the links hold, but
  // the anchor no longer is the one the retention recorded.
  TamperKeepingClock(
      "UPDATE chain_heads SET anchor_hash = (SELECT hash FROM verdicts WHERE seq = 11) WHERE chain = 'verdicts';"
      "DELETE FROM verdicts WHERE seq = 11");
  auto r = Verify();
  EXPECT_FALSE(r.ok());
  EXPECT_TRUE(Has(r, "verdicts", "anchor", 12)) << r.DebugString();
}

TEST_P(RetentionTest, RetentionRecordClaimingLessThanWasDeletedIsFound) {
  RetainTenOfTwelve();
  // The audit row edited to claim fewer deletions breaks the audit chain, and the
  // anchor check names the mismatch on the verdict side too.
  TamperKeepingClock("UPDATE audit SET detail = replace(detail, 'up to seq 10', 'up to seq 8') WHERE method = 'retention'");
  auto r = Verify();
  EXPECT_FALSE(r.ok());
  EXPECT_TRUE(Has(r, "verdicts", "anchor", 11)) << r.DebugString();
}

TEST_P(ChainTest, RetentionKeepsTheChainValidAndIsAudited) {
  // Pin the clock 40 days after the first batch: everything so far is old.
  int64_t now_us = 0;
  Reopen([&now_us] { return now_us; });
  // Rows so far were received at wall-clock time; make new rows land much later.
  now_us = std::chrono::duration_cast<std::chrono::microseconds>(
               std::chrono::system_clock::now().time_since_epoch())
               .count() +
           40LL * 86400 * 1000000;
  ASSERT_TRUE(store_->Ingest({MakeVerdict("late-1", 5000, "h.example"), MakeVerdict("late-2", 5001, "h.example")}).ok());
  auto deleted = store_->ApplyRetention(30, "test");
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_EQ(*deleted, 10u);
  auto r = Verify();
  EXPECT_TRUE(r.ok()) << r.DebugString();
  EXPECT_EQ(r.verdicts_checked(), 2u);
  v1::AuditListRequest req;
  req.set_method("retention");
  auto audit = store_->ListAudit(req);
  ASSERT_TRUE(audit.ok());
  ASSERT_EQ(audit->records_size(), 1);
  EXPECT_NE(audit->records(0).detail().find("deleted 10 verdicts"), std::string::npos);
}

}  // namespace
}  // namespace egressguard::store
