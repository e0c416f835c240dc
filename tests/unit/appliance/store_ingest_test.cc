// Proves ingestion is idempotent on the verdict id (retries and in-batch repeats never duplicate), also across batches that concurrent callers commit together, rejects malformed verdicts, undoes a batch that fails alone (the others in its commit are stored, the chain stays whole), and that Query filters, orders and pages and Stats groups with bytes, per workload and per workload x destination too; host, client and workload filters answer from the verdicts the writer has keyed and the newest not keyed yet, together.
#include <fmt/format.h>
#include <google/protobuf/util/time_util.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <set>
#include <thread>
#include <vector>

#include "appliance/store/sqlite.h"
#include "appliance/store/store.h"
#include "store_backends.h"
#include "store_test_util.h"

namespace egressguard::store {
namespace {

using google::protobuf::util::TimeUtil;
using testing::MakeVerdict;
using testing::StoreBackend;
using testing::StoreDatabase;
using testing::TempDir;

// Each test runs on sqlite and on PostgreSQL (store_backends.h).
class IngestTest : public ::testing::TestWithParam<StoreBackend> {
 protected:
  void SetUp() override {
    db_ = std::make_unique<StoreDatabase>(GetParam(), dir_);
    EGRESSGUARD_REQUIRE_DATABASE(*db_);
    auto s = Store::Open({db_->database(), 2, nullptr});
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = std::move(*s);
  }
  TempDir dir_;
  std::unique_ptr<StoreDatabase> db_;
  StorePtr store_;
};
INSTANTIATE_TEST_SUITE_P(Backends, IngestTest, ::testing::Values(StoreBackend::kSqlite, StoreBackend::kPostgres),
                         testing::StoreBackendName);

// Tests of how the sqlite writer groups batches into one commit.
class SqliteIngestTest : public IngestTest {};
INSTANTIATE_TEST_SUITE_P(Backends, SqliteIngestTest, ::testing::Values(StoreBackend::kSqlite),
                         testing::StoreBackendName);

TEST_P(IngestTest, RetriedAndRepeatedVerdictsAreStoredOnce) {
  auto first = store_->Ingest({MakeVerdict("a", 100, "x"), MakeVerdict("b", 101, "x"), MakeVerdict("a", 100, "x")});
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->inserted, 2u);
  EXPECT_EQ(first->acked.size(), 3u);  // every id is acked, repeats too
  auto retry = store_->Ingest({MakeVerdict("b", 101, "x"), MakeVerdict("c", 102, "x")});
  ASSERT_TRUE(retry.ok());
  EXPECT_EQ(retry->inserted, 1u);
  EXPECT_EQ((std::set<std::string>(retry->acked.begin(), retry->acked.end())), (std::set<std::string>{"b", "c"}));
  v1::QueryRequest q;
  auto all = store_->Query(q);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->verdicts_size(), 3);
  auto verify = store_->Verify();
  ASSERT_TRUE(verify.ok());
  EXPECT_TRUE(verify->ok()) << verify->DebugString();
}

// Finding.spans are part of the stored (hashed) verdict: kept as sent, found again by id
// (`verdicts show ID`), the chain verifies with rows stored before and after them.
TEST_P(IngestTest, SpansAreStoredAndTheVerdictIsFoundById) {
  ASSERT_TRUE(store_->Ingest({MakeVerdict("old", 100, "x", "email")}).ok());  // a verdict without spans
  v1::Verdict v = MakeVerdict("with-spans", 101, "x", "credit_card");
  auto* f = v.mutable_findings(0);
  for (int i = 0; i < 3; ++i) {
    auto* span = f->add_spans();
    span->set_start(static_cast<uint64_t>(10 + 30 * i));
    span->set_end(static_cast<uint64_t>(29 + 30 * i));
    span->set_evidence("4111 **** **** 1111");
    if (i == 2) span->set_member("a.zip!b.csv");
  }
  f->set_spans_truncated(true);
  ASSERT_TRUE(store_->Ingest({v, MakeVerdict("later", 102, "x")}).ok());
  v1::QueryRequest q;
  q.mutable_filter()->set_id("with-spans");
  auto got = store_->Query(q);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->verdicts_size(), 1);
  EXPECT_EQ(got->verdicts(0).SerializeAsString(), v.SerializeAsString());
  q.mutable_filter()->set_id("nope");
  EXPECT_EQ(store_->Query(q)->verdicts_size(), 0);
  q.mutable_filter()->set_id("old");
  q.mutable_filter()->set_host("x");  // with a keyed filter as well
  ASSERT_EQ(store_->Query(q)->verdicts_size(), 1);
  auto verify = store_->Verify();
  ASSERT_TRUE(verify.ok());
  EXPECT_TRUE(verify->ok()) << verify->DebugString();
}

TEST_P(IngestTest, MalformedVerdictsAreRejectedNotStored) {
  auto r = store_->Ingest({MakeVerdict("", 100, "x"), MakeVerdict(std::string(200, 'i'), 100, "x"),
                           MakeVerdict("ok", 100, "x")});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->inserted, 1u);
  EXPECT_EQ(r->rejected.size(), 2u);
  ASSERT_EQ(r->acked.size(), 1u);
  EXPECT_EQ(r->acked[0], "ok");
}

// One verdict per id: a write-ahead record is never stored (it would shadow its
// completion); the completion and an interrupted close are.
TEST_P(IngestTest, AnOpenWriteAheadRecordIsRefusedItsCompletionStored) {
  auto open = MakeVerdict("w1", 100, "x");
  open.set_phase(v1::Verdict::OPEN);
  auto interrupted = MakeVerdict("w2", 100, "x");
  interrupted.set_phase(v1::Verdict::INTERRUPTED);
  auto r = store_->Ingest({open, interrupted});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->inserted, 1u);
  ASSERT_EQ(r->rejected.size(), 1u);
  EXPECT_EQ(r->rejected[0].id(), "w1");
  EXPECT_NE(r->rejected[0].reason().find("open (write-ahead) verdict"), std::string::npos);
  auto completed = MakeVerdict("w1", 100, "x");
  completed.set_response_status(200);
  r = store_->Ingest({completed});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->inserted, 1u);
  v1::QueryRequest q;
  q.mutable_filter()->set_id("w1");
  auto got = store_->Query(q);
  ASSERT_TRUE(got.ok());
  ASSERT_EQ(got->verdicts_size(), 1);
  EXPECT_EQ(got->verdicts(0).phase(), v1::Verdict::COMPLETE);
  EXPECT_EQ(got->verdicts(0).response_status(), 200u);
}

// The tag columns hold what the verdict says, byte for byte: PostgreSQL ingest sends
// them in COPY's binary format (array framing, lengths), so quotes, backslashes,
// commas, braces, tabs, newlines and non-ASCII text must come back unchanged and be
// found by the filters, with several findings per verdict and none.
TEST_P(IngestTest, AwkwardTextIsStoredAsSentAndFound) {
  const std::string host = "h\t\"q\",{x}\\y.example";
  const std::string workload = "ns/\u00e9t\u00e9\nline two";
  const std::string category = "cat,\"quoted\"{}";
  v1::Verdict a = MakeVerdict("awk-1", 500, host, category, rules::v1::BLOCK);
  a.set_workload(workload);
  auto* f = a.add_findings();
  f->set_rule_id("rule\\back\tslash");
  f->set_category("NULL");  // the word, not a NULL element
  f->set_count(2);
  v1::Verdict b = MakeVerdict("awk-2", 501, host);  // no findings: category ""
  b.set_workload(workload);
  ASSERT_TRUE(store_->Ingest({a, b}).ok());

  auto ids = [&](const v1::VerdictFilter& filter) {
    v1::QueryRequest q;
    *q.mutable_filter() = filter;
    auto r = store_->Query(q);
    EXPECT_TRUE(r.ok()) << r.status();
    std::set<std::string> out;
    if (r.ok()) {
      for (const auto& v : r->verdicts()) out.insert(v.id());
    }
    return out;
  };
  v1::VerdictFilter filter;
  filter.set_host(host);
  EXPECT_EQ(ids(filter), (std::set<std::string>{"awk-1", "awk-2"}));
  filter.Clear();
  filter.set_workload(workload);
  EXPECT_EQ(ids(filter), (std::set<std::string>{"awk-1", "awk-2"}));
  filter.Clear();
  filter.set_category(category);
  EXPECT_EQ(ids(filter), (std::set<std::string>{"awk-1"}));
  filter.Clear();
  filter.set_category("NULL");
  EXPECT_EQ(ids(filter), (std::set<std::string>{"awk-1"}));
  filter.Clear();
  filter.set_rule_id("rule\\back\tslash");
  EXPECT_EQ(ids(filter), (std::set<std::string>{"awk-1"}));
  filter.Clear();
  filter.set_id("awk-1");
  v1::QueryRequest q;
  *q.mutable_filter() = filter;
  auto r = store_->Query(q);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->verdicts_size(), 1);
  EXPECT_EQ(r->verdicts(0).host(), host);
  EXPECT_EQ(r->verdicts(0).workload(), workload);
  EXPECT_EQ(r->verdicts(0).bytes_out(), 1000u);
  EXPECT_EQ(r->verdicts(0).action(), rules::v1::BLOCK);
  // Verify compares every tag column with the hashed body.
  auto verify = store_->Verify();
  ASSERT_TRUE(verify.ok());
  EXPECT_TRUE(verify->ok()) << verify->DebugString();
}

TEST_P(IngestTest, QueryFiltersOrdersAndPages) {
  std::vector<v1::Verdict> batch;
  for (int i = 0; i < 30; ++i) {
    auto v = MakeVerdict("id" + std::to_string(i), 1000 + i, i % 3 == 0 ? "a.example" : "b.example",
                         i % 2 == 0 ? "credit_card" : "", i % 5 == 0 ? rules::v1::BLOCK : rules::v1::ALLOW);
    if (i % 4 == 0) v.mutable_findings(0)->set_rule_id("cc.visa");
    batch.push_back(v);
  }
  // Any arrival order: queries order by verdict time.
  std::reverse(batch.begin(), batch.end());
  ASSERT_TRUE(store_->Ingest(batch).ok());

  v1::QueryRequest q;
  q.mutable_filter()->set_host("a.example");
  auto r = store_->Query(q);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->verdicts_size(), 10);
  EXPECT_EQ(r->verdicts(0).id(), "id27");  // newest first

  q.Clear();
  q.mutable_filter()->set_category("credit_card");
  q.mutable_filter()->set_action(rules::v1::BLOCK);
  r = store_->Query(q);
  ASSERT_TRUE(r.ok());
  std::set<std::string> ids;
  for (const auto& v : r->verdicts()) ids.insert(v.id());
  EXPECT_EQ(ids, (std::set<std::string>{"id0", "id10", "id20"}));

  q.Clear();
  q.mutable_filter()->set_rule_id("cc.visa");
  *q.mutable_filter()->mutable_since() = TimeUtil::SecondsToTimestamp(1004);
  *q.mutable_filter()->mutable_until() = TimeUtil::SecondsToTimestamp(1020);
  q.set_order(v1::OLDEST_FIRST);
  r = store_->Query(q);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->verdicts_size(), 4);
  EXPECT_EQ(r->verdicts(0).id(), "id4");
  EXPECT_EQ(r->verdicts(3).id(), "id16");

  // Paging walks every verdict exactly once.
  q.Clear();
  q.set_page_size(7);
  std::set<std::string> seen;
  int pages = 0;
  for (;;) {
    r = store_->Query(q);
    ASSERT_TRUE(r.ok());
    ++pages;
    for (const auto& v : r->verdicts()) EXPECT_TRUE(seen.insert(v.id()).second) << v.id();
    if (r->next_page_token().empty()) break;
    q.set_page_token(r->next_page_token());
  }
  EXPECT_EQ(seen.size(), 30u);
  EXPECT_EQ(pages, 5);

  q.set_page_token("garbage");
  EXPECT_EQ(store_->Query(q).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_P(IngestTest, StatsGroupWithBytes) {
  ASSERT_TRUE(store_->Ingest({MakeVerdict("1", 86400 * 3, "a", "iban"), MakeVerdict("2", 86400 * 3 + 5, "a", "iban"),
                              MakeVerdict("3", 86400 * 4, "b", "", rules::v1::BLOCK)})
                  .ok());
  v1::StatsRequest req;
  req.set_group_by(v1::CATEGORY);
  auto r = store_->Stats(req);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->rows_size(), 2);
  EXPECT_EQ(r->rows(0).key(), "iban");
  EXPECT_EQ(r->rows(0).verdicts(), 2u);
  EXPECT_EQ(r->rows(0).bytes_out(), 2000u);
  EXPECT_EQ(r->rows(1).key(), "");

  req.set_group_by(v1::DAY);
  r = store_->Stats(req);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->rows_size(), 2);
  EXPECT_EQ(r->rows(0).key(), "1970-01-04");
  EXPECT_EQ(r->rows(0).bytes_in(), 400u);

  req.set_group_by(v1::ACTION);
  req.mutable_filter()->set_host("b");
  r = store_->Stats(req);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->rows_size(), 1);
  EXPECT_EQ(r->rows(0).key(), "BLOCK");

  req.set_group_by(v1::GROUP_BY_UNSPECIFIED);
  EXPECT_FALSE(store_->Stats(req).ok());
}

TEST_P(IngestTest, StatsPerWorkloadAndDestinationCountRequestsAndBytes) {
  auto v = [](const std::string& id, const std::string& workload, const std::string& host, uint64_t out, uint64_t in) {
    auto x = MakeVerdict(id, 1000, host);
    x.set_workload(workload);
    x.set_bytes_out(out);
    x.set_bytes_in(in);
    return x;
  };
  ASSERT_TRUE(store_->Ingest({v("1", "pay/api", "s3.example", 100, 1), v("2", "pay/api", "s3.example", 200, 2),
                              v("3", "pay/api", "api.example", 50, 5), v("4", "web/fe", "s3.example", 7, 70),
                              v("5", "", "api.example", 1, 1)})
                  .ok());
  v1::StatsRequest req;
  req.set_group_by(v1::WORKLOAD);
  auto r = store_->Stats(req);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->rows_size(), 3);
  EXPECT_EQ(r->rows(0).key(), "pay/api");
  EXPECT_EQ(r->rows(0).workload(), "pay/api");
  EXPECT_EQ(r->rows(0).verdicts(), 3u);
  EXPECT_EQ(r->rows(0).bytes_out(), 350u);
  EXPECT_EQ(r->rows(0).bytes_in(), 8u);
  EXPECT_EQ(r->rows(1).key(), "");  // no workload known: its own row, ties sorted by key
  EXPECT_EQ(r->rows(2).key(), "web/fe");

  req.set_group_by(v1::WORKLOAD_DESTINATION);
  r = store_->Stats(req);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->rows_size(), 4);
  EXPECT_EQ(r->rows(0).key(), "pay/api|s3.example");
  EXPECT_EQ(r->rows(0).workload(), "pay/api");
  EXPECT_EQ(r->rows(0).host(), "s3.example");
  EXPECT_EQ(r->rows(0).verdicts(), 2u);
  EXPECT_EQ(r->rows(0).bytes_out(), 300u);
  EXPECT_EQ(r->rows(0).bytes_in(), 3u);

  // Filters narrow the accounting like any other Stats.
  req.mutable_filter()->set_host("s3.example");
  r = store_->Stats(req);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->rows_size(), 2);
  EXPECT_EQ(r->rows(1).key(), "web/fe|s3.example");
  EXPECT_EQ(r->rows(1).bytes_in(), 70u);
}

// Stats without a filter, or over whole hours, reads the hourly rollups; anything else
// scans the verdicts. Both must give the same answer.
TEST_P(IngestTest, StatsFromRollupsEqualStatsFromVerdicts) {
  std::vector<v1::Verdict> batch;
  const char* categories[] = {"", "iban", "credit_card"};
  const char* hosts[] = {"a.example", "b.example", "c.example", "d.example"};
  for (int i = 0; i < 300; ++i) {
    auto v = MakeVerdict(fmt::format("s{}", i), 7200 + i * 97, hosts[i % 4], categories[i % 3],
                         i % 7 == 0 ? rules::v1::BLOCK : rules::v1::ALLOW);
    if (i % 5 == 0) v.add_findings()->set_category("email");  // two categories on one verdict
    v.set_workload(fmt::format("ns/w{}", i % 6));
    v.set_bytes_out(static_cast<uint64_t>(i) * 11);
    v.set_bytes_in(static_cast<uint64_t>(i) % 13);
    batch.push_back(v);
  }
  ASSERT_TRUE(store_->Ingest(batch).ok());
  for (auto group : {v1::ACTION, v1::CATEGORY, v1::DESTINATION, v1::WORKLOAD, v1::WORKLOAD_DESTINATION, v1::DAY}) {
    for (auto [since, until] : {std::pair<int64_t, int64_t>{0, 0}, {3 * 3600, 6 * 3600}, {2 * 3600, 9 * 3600}}) {
      v1::StatsRequest rollup, scan;
      rollup.set_group_by(group);
      scan.set_group_by(group);
      if (since > 0) {
        *rollup.mutable_filter()->mutable_since() = TimeUtil::SecondsToTimestamp(since);
        *rollup.mutable_filter()->mutable_until() = TimeUtil::SecondsToTimestamp(until);
      }
      // One microsecond off the hour: the same verdicts (their times are whole
      // seconds), but only a scan can answer it.
      *scan.mutable_filter()->mutable_since() =
          TimeUtil::MicrosecondsToTimestamp(since > 0 ? since * 1000000 - 1 : -1);
      if (since > 0) *scan.mutable_filter()->mutable_until() = TimeUtil::MicrosecondsToTimestamp(until * 1000000 - 1);
      auto a = store_->Stats(rollup);
      auto b = store_->Stats(scan);
      ASSERT_TRUE(a.ok()) << a.status();
      ASSERT_TRUE(b.ok()) << b.status();
      EXPECT_GT(a->rows_size(), 0);
      EXPECT_EQ(a->DebugString(), b->DebugString()) << "group " << group << " since " << since;
    }
  }
  auto verify = store_->Verify();
  ASSERT_TRUE(verify.ok());
  EXPECT_TRUE(verify->ok()) << verify->DebugString();
}

// The daily tier: Stats over whole days read one rollup row per day and key. Days are
// closed as the store's clock passes them (here: two at the first ingest, three more
// at a later one), a late verdict of a closed day goes to both tiers, and a range's
// partial first and last days come from the hours. Every range answers as the
// verdicts do; a tampered daily row shows in Stats over whole days and Verify names it.
TEST_P(IngestTest, StatsOverWholeDaysReadTheDailyTier) {
  constexpr int64_t kDay = 86400, kHour = 3600;
  constexpr int64_t kBase = 1893456000;  // 2030-01-01 UTC: after the days the schema closed
  int64_t now_s = kBase + 2 * kDay + kHour;
  auto reopen = [&] {
    store_.reset();
    auto opened = Store::Open({db_->database(), 2, [&now_s] { return now_s * 1000000; }});
    ASSERT_TRUE(opened.ok()) << opened.status();
    store_ = std::move(*opened);
  };
  reopen();
  const char* hosts[] = {"a.example", "b.example", "c.example"};
  std::vector<v1::Verdict> batch;
  for (int i = 0; i < 200; ++i) {  // every 30 min 1 s: days 0 to 4 after kBase
    auto v = MakeVerdict(fmt::format("d{}", i), kBase + i * 1801, hosts[i % 3], i % 2 ? "iban" : "",
                         i % 5 ? rules::v1::ALLOW : rules::v1::BLOCK);
    v.set_workload(fmt::format("ns/w{}", i % 4));
    v.set_bytes_out(static_cast<uint64_t>(i) * 7);
    batch.push_back(v);
  }
  ASSERT_TRUE(store_->Ingest(batch).ok());
  now_s = kBase + 5 * kDay + 60;  // days 2, 3 and 4 close at the next ingest
  ASSERT_TRUE(store_->Ingest({MakeVerdict("late", kBase + kDay + 5, "a.example", "email")}).ok());
  const std::vector<std::pair<int64_t, int64_t>> ranges = {
      {0, 0},                                        // everything
      {kBase, kBase + 5 * kDay},                     // five whole days (four closed)
      {kBase + 6 * kHour, kBase + 4 * kDay + 5 * kHour},  // partial first and last day
      {kBase + kDay, kBase + 2 * kDay},              // one closed day, with the late verdict
      {kBase + 30 * kHour, kBase + 31 * kHour},      // one hour of a closed day
      {kBase + 3 * kDay, 0},                         // since a closed day, no end
  };
  auto compare = [&](const std::string& when) {
    for (auto group : {v1::ACTION, v1::CATEGORY, v1::DESTINATION, v1::WORKLOAD, v1::WORKLOAD_DESTINATION, v1::DAY}) {
      for (auto [since, until] : ranges) {
        v1::StatsRequest rollup, scan;
        rollup.set_group_by(group);
        scan.set_group_by(group);
        if (since > 0) *rollup.mutable_filter()->mutable_since() = TimeUtil::SecondsToTimestamp(since);
        if (until > 0) *rollup.mutable_filter()->mutable_until() = TimeUtil::SecondsToTimestamp(until);
        // One microsecond off the hour: the same verdicts (whole seconds), but only a
        // scan can answer it.
        *scan.mutable_filter()->mutable_since() = TimeUtil::MicrosecondsToTimestamp(since > 0 ? since * 1000000 - 1 : -1);
        if (until > 0) *scan.mutable_filter()->mutable_until() = TimeUtil::MicrosecondsToTimestamp(until * 1000000 - 1);
        auto a = store_->Stats(rollup);
        auto b = store_->Stats(scan);
        ASSERT_TRUE(a.ok()) << a.status();
        ASSERT_TRUE(b.ok()) << b.status();
        EXPECT_GT(a->rows_size(), 0);
        EXPECT_EQ(a->DebugString(), b->DebugString())
            << when << ": group " << group << " since " << since << " until " << until;
      }
    }
  };
  compare("untouched");
  auto verify = store_->Verify();
  ASSERT_TRUE(verify.ok());
  EXPECT_TRUE(verify->ok()) << verify->DebugString();
  // Day 3's daily action rows skewed (the hourly rows left alone): only a reader of the
  // daily tier sees it, and Verify finds it.
  store_.reset();
  ASSERT_TRUE(db_->Exec(fmt::format("UPDATE stats_hourly SET verdicts = verdicts + 1000 WHERE kind = 11 AND hour = {}",
                                    kBase / kDay + 3)));
  reopen();
  v1::StatsRequest days;
  days.set_group_by(v1::ACTION);
  *days.mutable_filter()->mutable_since() = TimeUtil::SecondsToTimestamp(kBase);
  *days.mutable_filter()->mutable_until() = TimeUtil::SecondsToTimestamp(kBase + 5 * kDay);
  auto d = store_->Stats(days);
  ASSERT_TRUE(d.ok()) << d.status();
  uint64_t total = 0;
  for (const auto& r : d->rows()) total += r.verdicts();
  // 201 verdicts, and 1000 more per action seen on day 3 (ALLOW and BLOCK).
  EXPECT_EQ(total, 201u + 2000u);
  // An hour of that day comes from the hourly rows, which were left alone.
  v1::StatsRequest hour = days, hour_scan = days;
  *hour.mutable_filter()->mutable_since() = TimeUtil::SecondsToTimestamp(kBase + 3 * kDay + kHour);
  *hour.mutable_filter()->mutable_until() = TimeUtil::SecondsToTimestamp(kBase + 3 * kDay + 5 * kHour);
  *hour_scan.mutable_filter()->mutable_since() = TimeUtil::MicrosecondsToTimestamp((kBase + 3 * kDay + kHour) * 1000000 - 1);
  *hour_scan.mutable_filter()->mutable_until() = TimeUtil::MicrosecondsToTimestamp((kBase + 3 * kDay + 5 * kHour) * 1000000 - 1);
  EXPECT_EQ(store_->Stats(hour)->DebugString(), store_->Stats(hour_scan)->DebugString());
  verify = store_->Verify();
  ASSERT_TRUE(verify.ok());
  EXPECT_FALSE(verify->ok());
  EXPECT_TRUE(testing::HasRollupProblem(*verify)) << verify->DebugString();
}

TEST_P(IngestTest, ConcurrentBatchesAreStoredOnceAndChained) {
  // Eight callers at once, overlapping ids: their batches share commits (group
  // commit), and still every id is stored once and the chain verifies.
  std::vector<std::thread> callers;
  std::vector<absl::StatusOr<IngestResult>> results(8, absl::UnknownError("not run"));
  for (int c = 0; c < 8; ++c) {
    callers.emplace_back([&, c] {
      std::vector<v1::Verdict> batch;
      for (int i = 0; i < 200; ++i) batch.push_back(MakeVerdict("c" + std::to_string((c * 100 + i) % 1000), 10 + i, "h"));
      results[static_cast<size_t>(c)] = store_->Ingest(std::move(batch));
    });
  }
  for (auto& t : callers) t.join();
  uint64_t inserted = 0;
  for (const auto& r : results) {
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->acked.size(), 200u);
    inserted += r->inserted;
  }
  EXPECT_EQ(inserted, 900u);  // ids c0..c899: callers overlap by half
  v1::QueryRequest q;
  q.set_page_size(1000);
  auto all = store_->Query(q);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->verdicts_size(), 900);
  auto verify = store_->Verify();
  ASSERT_TRUE(verify.ok());
  EXPECT_TRUE(verify->ok()) << verify->DebugString();
  EXPECT_EQ(verify->verdicts_checked(), 900u);
  ASSERT_TRUE(store_->LastIngestedVerdictUnix().has_value());
}

TEST_P(SqliteIngestTest, AFailingBatchIsUndoneAloneAndTheOthersAreStored) {
  // A trigger (set up beside the store) makes any batch holding host "poison" fail
  // half-way through its inserts; batches committed with it must still be stored.
  ASSERT_TRUE(store_->Ingest({MakeVerdict("first", 5, "h")}).ok());
  auto raw = Database::Open(dir_.File("s.db"), {});
  ASSERT_TRUE(raw.ok()) << raw.status();
  ASSERT_TRUE((*raw)
                  ->Exec("CREATE TRIGGER poison BEFORE INSERT ON verdicts WHEN NEW.host = 'poison' "
                         "BEGIN SELECT RAISE(ABORT, 'poisoned'); END")
                  .ok());
  // Hold the write lock while the six batches arrive: the writer blocks on the first,
  // the other five queue and are then committed as one group, so a poisoned batch
  // always shares its commit with good ones.
  ASSERT_TRUE((*raw)->Exec("BEGIN IMMEDIATE").ok());
  std::vector<std::thread> callers;
  std::vector<absl::StatusOr<IngestResult>> results(6, absl::UnknownError("not run"));
  for (int c = 0; c < 6; ++c) {
    callers.emplace_back([&, c] {
      std::vector<v1::Verdict> batch;
      for (int i = 0; i < 50; ++i) {
        const bool poisoned = c % 3 == 1 && i == 25;  // callers 1 and 4
        batch.push_back(MakeVerdict(fmt::format("p{}-{}", c, i), 10 + i, poisoned ? "poison" : "h", "iban"));
      }
      results[static_cast<size_t>(c)] = store_->Ingest(std::move(batch));
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  ASSERT_TRUE((*raw)->Exec("ROLLBACK").ok());  // nothing written: the writer's snapshot stays valid
  for (auto& t : callers) t.join();
  for (int c = 0; c < 6; ++c) {
    const auto& r = results[static_cast<size_t>(c)];
    if (c % 3 == 1) {
      EXPECT_FALSE(r.ok()) << "caller " << c;
    } else {
      ASSERT_TRUE(r.ok()) << "caller " << c << ": " << r.status();
      EXPECT_EQ(r->inserted, 50u);
    }
  }
  EXPECT_TRUE(store_->Health().write.ok());
  v1::QueryRequest q;
  q.set_page_size(1000);
  auto all = store_->Query(q);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->verdicts_size(), 1 + 4 * 50);  // nothing of the failed batches, not even their first 25
  for (const auto& v : all->verdicts()) EXPECT_FALSE(v.id().starts_with("p1-") || v.id().starts_with("p4-")) << v.id();
  q.mutable_filter()->set_category("iban");
  auto tagged = store_->Query(q);
  ASSERT_TRUE(tagged.ok());
  EXPECT_EQ(tagged->verdicts_size(), 4 * 50);  // and no tag rows of them either
  auto verify = store_->Verify();
  ASSERT_TRUE(verify.ok());
  EXPECT_TRUE(verify->ok()) << verify->DebugString();
  EXPECT_EQ(verify->verdicts_checked(), 1u + 4 * 50);
  // The store goes on: the next batch chains onto what was stored.
  ASSERT_TRUE(store_->Ingest({MakeVerdict("after", 200, "h")}).ok());
  verify = store_->Verify();
  ASSERT_TRUE(verify.ok());
  EXPECT_TRUE(verify->ok()) << verify->DebugString();
}

}  // namespace
}  // namespace egressguard::store

namespace egressguard::store {
namespace {

// A keying pass that fails shows in Health until a later one succeeds. The failure is
// caused the way a tampered file would: a key row planted where the next verdict's key
// goes, which the pass's insert then collides with.
TEST(KeyedFilterTest, AFailedKeyingPassShowsInHealth) {
  TempDir dir;
  Store::Options options{dir.File("s.db"), 2, nullptr};
  options.key_index_rows = 1;
  auto opened = Store::Open(options);
  ASSERT_TRUE(opened.ok()) << opened.status();
  StorePtr store = std::move(*opened);
  // An audit call queues behind the writer's keying pass: when it returns, the pass ran.
  auto settle = [&] { ASSERT_TRUE(store->Audit({"alice", "officer", "m", "settle", true}).ok()); };
  ASSERT_TRUE(store->Ingest({MakeVerdict("v1", 1000, "h.example")}).ok());
  settle();
  EXPECT_TRUE(store->Health().index.ok()) << store->Health().index;

  auto exec = [&](const std::string& sql) {
    auto db = Database::Open(dir.File("s.db"), {});
    ASSERT_TRUE(db.ok());
    ASSERT_TRUE((*db)->Exec(sql).ok()) << sql;
  };
  exec("INSERT INTO verdict_keys VALUES (1, 'h.example', 1001000000, 2)");
  ASSERT_TRUE(store->Ingest({MakeVerdict("v2", 1001, "h.example")}).ok());
  settle();
  auto health = store->Health();
  EXPECT_FALSE(health.index.ok());
  EXPECT_TRUE(health.write.ok()) << "ingest itself went on: " << health.write;

  exec("DELETE FROM verdict_keys WHERE seq = 2");
  ASSERT_TRUE(store->Ingest({MakeVerdict("v3", 1002, "h.example")}).ok());
  settle();
  EXPECT_TRUE(store->Health().index.ok()) << store->Health().index;
  auto verify = store->Verify();
  ASSERT_TRUE(verify.ok()) << verify.status();
  EXPECT_TRUE(verify->ok()) << verify->DebugString();
}

// Host, client and workload filters read the verdicts the writer has keyed (in bulk,
// every `key_index_rows`) and the newest ones it has not yet: every page of every
// order must hold exactly what a scan of all verdicts would, across that boundary.
TEST(KeyedFilterTest, KeyedAndUnkeyedVerdictsAnswerTogether) {
  TempDir dir;
  int64_t now_us = 1'000'000'000'000'000;
  Store::Options options{dir.File("s.db"), 2, [&now_us] { return now_us; }};
  options.key_index_rows = 10;
  auto opened = Store::Open(options);
  ASSERT_TRUE(opened.ok()) << opened.status();
  StorePtr store = std::move(*opened);

  // Five batches of seven: the writer keys after the second and the fourth, so 28
  // verdicts are keyed and 7 wait. Times repeat and run backwards within a batch.
  std::vector<v1::Verdict> all;  // in seq order
  for (int b = 0; b < 5; ++b) {
    std::vector<v1::Verdict> batch;
    for (int j = 0; j < 7; ++j) {
      const int i = b * 7 + j;
      auto v = MakeVerdict(fmt::format("v{}", i), 2000 - (i % 9) * 10 + b, i % 5 == 4 ? "" : fmt::format("h{}", i % 3),
                           "", i % 4 == 0 ? rules::v1::BLOCK : rules::v1::ALLOW);
      v.set_client_address(fmt::format("10.0.0.{}", i % 4));
      v.set_workload(i % 2 ? "ns/a" : "ns/b");
      batch.push_back(v);
    }
    all.insert(all.end(), batch.begin(), batch.end());
    auto r = store->Ingest(batch);
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_EQ(r->inserted, 7u);
    if (b == 2) now_us += 40LL * 86400 * 1000000;  // for the retention below
  }
  {
    auto db = Database::Open(dir.File("s.db"), {});
    ASSERT_TRUE(db.ok());
    auto upto = (*db)->Prepare("SELECT upto_seq, (SELECT COUNT(*) FROM verdict_keys) FROM key_index");
    ASSERT_TRUE(upto.ok());
    ASSERT_TRUE(*upto->Step());
    EXPECT_EQ(upto->Int(0), 28);
    EXPECT_GT(upto->Int(1), 28 * 2);  // host (when given), client and workload keys
  }

  struct Case {
    std::string name;
    std::function<void(v1::VerdictFilter&)> fill;
    std::function<bool(const v1::Verdict&)> match;
  };
  const std::vector<Case> cases = {
      {"host", [](auto& f) { f.set_host("h1"); }, [](const auto& v) { return v.host() == "h1"; }},
      {"client", [](auto& f) { f.set_client_address("10.0.0.2"); },
       [](const auto& v) { return v.client_address() == "10.0.0.2"; }},
      {"workload, window", [](auto& f) {
         f.set_workload("ns/a");
         *f.mutable_since() = TimeUtil::SecondsToTimestamp(1930);
         *f.mutable_until() = TimeUtil::SecondsToTimestamp(1990);
       },
       [](const auto& v) { return v.workload() == "ns/a" && v.time().seconds() >= 1930 && v.time().seconds() < 1990; }},
      {"host and action", [](auto& f) {
         f.set_host("h0");
         f.set_action(rules::v1::BLOCK);
       },
       [](const auto& v) { return v.host() == "h0" && v.action() == rules::v1::BLOCK; }},
      {"client and workload", [](auto& f) {
         f.set_client_address("10.0.0.1");
         f.set_workload("ns/a");
       },
       [](const auto& v) { return v.client_address() == "10.0.0.1" && v.workload() == "ns/a"; }},
      {"unknown host", [](auto& f) { f.set_host("nowhere"); }, [](const auto&) { return false; }},
  };
  for (const auto& c : cases) {
    for (auto order : {v1::NEWEST_FIRST, v1::OLDEST_FIRST}) {
      SCOPED_TRACE(c.name + (order == v1::NEWEST_FIRST ? " newest" : " oldest"));
      std::vector<std::pair<int64_t, size_t>> expect_keys;  // (time, seq - 1)
      for (size_t i = 0; i < all.size(); ++i) {
        if (c.match(all[i])) expect_keys.emplace_back(all[i].time().seconds(), i);
      }
      std::sort(expect_keys.begin(), expect_keys.end());
      if (order == v1::NEWEST_FIRST) std::reverse(expect_keys.begin(), expect_keys.end());
      std::vector<std::string> expect, got;
      for (const auto& [t, i] : expect_keys) expect.push_back(all[i].id());

      v1::QueryRequest q;
      c.fill(*q.mutable_filter());
      q.set_order(order);
      q.set_page_size(3);
      for (int pages = 0; pages < 50; ++pages) {
        auto r = store->Query(q);
        ASSERT_TRUE(r.ok()) << r.status();
        for (const auto& v : r->verdicts()) got.push_back(v.id());
        if (r->next_page_token().empty()) break;
        q.set_page_token(r->next_page_token());
      }
      EXPECT_EQ(got, expect);

      v1::StatsRequest s;
      c.fill(*s.mutable_filter());
      s.set_group_by(v1::ACTION);
      auto stats = store->Stats(s);
      ASSERT_TRUE(stats.ok()) << stats.status();
      uint64_t counted = 0;
      for (const auto& row : stats->rows()) counted += row.verdicts();
      EXPECT_EQ(counted, expect.size());
    }
  }

  // Retention takes the deleted verdicts' keys along.
  auto deleted = store->ApplyRetention(30, "test");
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  ASSERT_EQ(*deleted, 21u);
  store.reset();
  auto db = Database::Open(dir.File("s.db"), {});
  ASSERT_TRUE(db.ok());
  auto left = (*db)->Prepare("SELECT COUNT(*), MIN(seq) FROM verdict_keys");
  ASSERT_TRUE(left.ok());
  ASSERT_TRUE(*left->Step());
  EXPECT_GT(left->Int(0), 0);
  EXPECT_EQ(left->Int(1), 22);
}

}  // namespace
}  // namespace egressguard::store
