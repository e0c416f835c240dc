// Proves the reporter's bounds (issue 20): the spool refuses a verdict that would pass
// its byte bound as well as its verdict bound and rebuilds both counts from the file on
// open; Reporter::CanAccept follows the bounds (and stays answerable while other
// threads submit); refused verdicts are counted as unrecorded by mode; the reporter +
// audit-log tee returns the reporter's answer while the audit log gets every verdict;
// and the reporter reconnects within its configured backoff after a store outage.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <atomic>
#include <fstream>
#include <thread>

#include "appliance/reporter/reporter.h"
#include "appliance/reporter/spool.h"
#include "appliance/reporter/tee_sink.h"
#include "appliance/store/server.h"
#include "mitm/jsonl_sink.h"
#include "store_test_util.h"

namespace egressguard::reporter {
namespace {

using testing::MakeVerdict;
using testing::TempDir;

size_t Bytes(const v1::Verdict& v) { return v.ByteSizeLong(); }

TEST(SpoolBytes, RefusesAVerdictThatWouldPassTheByteBound) {
  TempDir dir;
  const auto sample = MakeVerdict("0", 0, "h");
  SpoolOptions o;
  o.path = dir.File("spool.db");
  o.max_bytes = 3 * Bytes(sample) + Bytes(sample) / 2;  // room for three and a half
  auto spool = Spool::Open(o);
  ASSERT_TRUE(spool.ok()) << spool.status();
  for (int i = 0; i < 3; ++i) ASSERT_TRUE((*spool)->Append(MakeVerdict(std::to_string(i), 0, "h")).ok());
  EXPECT_EQ((*spool)->bytes(), 3 * Bytes(sample));
  EXPECT_TRUE((*spool)->HasRoom());  // below the bound, but not by a whole verdict
  auto over = (*spool)->Append(MakeVerdict("3", 0, "h"));
  EXPECT_EQ(over.code(), absl::StatusCode::kResourceExhausted) << over;
  EXPECT_NE(over.message().find("bytes"), std::string::npos) << over;
  EXPECT_EQ((*spool)->size(), 3u);
  // A smaller verdict still fits in what is left.
  v1::Verdict tiny;
  tiny.set_id("t");
  ASSERT_LT(Bytes(tiny), Bytes(sample) / 2);
  EXPECT_TRUE((*spool)->Append(tiny).ok());
  // Acked rows give their bytes back.
  auto first = (*spool)->Peek(0, 1);
  ASSERT_TRUE(first.ok());
  ASSERT_TRUE((*spool)->Remove({first->front().seq}).ok());
  EXPECT_EQ((*spool)->bytes(), 2 * Bytes(sample) + Bytes(tiny));
  EXPECT_TRUE((*spool)->Append(MakeVerdict("3", 0, "h")).ok());
  EXPECT_GT((*spool)->Fill(), 0.85);  // three verdicts of three and a half
}

TEST(SpoolBytes, CountsAreRebuiltOnOpen) {
  TempDir dir;
  SpoolOptions o;
  o.path = dir.File("spool.db");
  uint64_t bytes = 0;
  {
    auto spool = Spool::Open(o);
    ASSERT_TRUE(spool.ok());
    for (int i = 0; i < 10; ++i) {
      auto v = MakeVerdict("v" + std::to_string(i), i, std::string(i * 10 + 1, 'h'));  // sizes differ
      ASSERT_TRUE((*spool)->Append(v).ok());
    }
    auto batch = (*spool)->Peek(0, 4);
    ASSERT_TRUE(batch.ok());
    std::vector<int64_t> seqs;
    for (const auto& sv : *batch) seqs.push_back(sv.seq);
    ASSERT_TRUE((*spool)->Remove(seqs).ok());
    bytes = (*spool)->bytes();
    uint64_t expected = 0;
    for (int i = 4; i < 10; ++i) expected += Bytes(MakeVerdict("v" + std::to_string(i), i, std::string(i * 10 + 1, 'h')));
    EXPECT_EQ(bytes, expected);
    // Dropped without a close, as a killed process leaves it.
  }
  o.max_bytes = bytes;  // exactly full now
  auto spool = Spool::Open(o);
  ASSERT_TRUE(spool.ok());
  EXPECT_EQ((*spool)->size(), 6u);
  EXPECT_EQ((*spool)->bytes(), bytes);
  EXPECT_FALSE((*spool)->HasRoom());
  EXPECT_EQ((*spool)->Append(MakeVerdict("x", 0, "h")).code(), absl::StatusCode::kResourceExhausted);
}

TEST(SpoolBytes, CorruptRowsGiveTheirBytesBack) {
  TempDir dir;
  SpoolOptions o;
  o.path = dir.File("spool.db");
  {
    auto spool = Spool::Open(o);
    ASSERT_TRUE(spool.ok());
    ASSERT_TRUE((*spool)->Append(MakeVerdict("good", 1, "h")).ok());
  }
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(o.path.c_str(), &db), SQLITE_OK);
  // Bytes that do not parse as a Verdict (a truncated varint).
  ASSERT_EQ(sqlite3_exec(db, "INSERT INTO spool (id, body) VALUES ('bad', x'0aff')", nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(db);
  auto spool = Spool::Open(o);
  ASSERT_TRUE(spool.ok());
  EXPECT_EQ((*spool)->size(), 2u);
  EXPECT_EQ((*spool)->bytes(), Bytes(MakeVerdict("good", 1, "h")) + 2);
  auto all = (*spool)->Peek(0, 10);
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 1u);
  EXPECT_EQ((*spool)->size(), 1u);
  EXPECT_EQ((*spool)->bytes(), Bytes(MakeVerdict("good", 1, "h")));
  EXPECT_EQ((*spool)->corrupt_dropped(), 1u);
}

ReporterOptions Unreachable(const TempDir& dir, const std::string& name) {
  ReporterOptions ro;
  ro.spool.path = dir.File(name);
  ro.store_address = "127.0.0.1:1";  // nothing listens there: everything stays spooled
  return ro;
}

TEST(ReporterLimits, CanAcceptFollowsBothBounds) {
  TempDir dir;
  {
    ReporterOptions ro = Unreachable(dir, "rows.db");
    ro.spool.max_rows = 3;
    auto rep = Reporter::Start(ro);
    ASSERT_TRUE(rep.ok()) << rep.status();
    for (int i = 0; i < 3; ++i) {
      EXPECT_TRUE((*rep)->CanAccept());
      ASSERT_TRUE((*rep)->Submit(MakeVerdict(std::to_string(i), i, "h")));
    }
    EXPECT_FALSE((*rep)->CanAccept());
    EXPECT_DOUBLE_EQ((*rep)->SpoolFill(), 1.0);
    auto enforced = MakeVerdict("e", 9, "h");
    enforced.set_enforced(true);
    EXPECT_FALSE((*rep)->Submit(enforced));
    EXPECT_FALSE((*rep)->Submit(MakeVerdict("m1", 9, "h")));  // enforced=false: monitor mode
    EXPECT_FALSE((*rep)->Submit(MakeVerdict("m2", 9, "h")));
    auto st = (*rep)->stats();
    EXPECT_EQ(st.refused, 3u);
    EXPECT_EQ(st.unrecorded_enforce, 1u);
    EXPECT_EQ(st.unrecorded_monitor, 2u);
    EXPECT_EQ(st.spool_depth, 3u);
  }
  {
    ReporterOptions ro = Unreachable(dir, "bytes.db");
    ro.spool.max_bytes = 2 * Bytes(MakeVerdict("0", 0, "h"));
    auto rep = Reporter::Start(ro);
    ASSERT_TRUE(rep.ok());
    EXPECT_EQ((*rep)->spool_options().max_bytes, ro.spool.max_bytes);
    ASSERT_TRUE((*rep)->Submit(MakeVerdict("0", 0, "h")));
    EXPECT_TRUE((*rep)->CanAccept());
    EXPECT_DOUBLE_EQ((*rep)->SpoolFill(), 0.5);
    ASSERT_TRUE((*rep)->Submit(MakeVerdict("1", 0, "h")));
    EXPECT_FALSE((*rep)->CanAccept());
    EXPECT_EQ((*rep)->stats().spool_bytes, ro.spool.max_bytes);
    EXPECT_FALSE((*rep)->Submit(MakeVerdict("2", 0, "h")));
  }
}

// Many findings with their spans (an h2 stream of many gRPC messages) would pass the
// store's 256 KiB verdict limit: the spans give way, from the last finding back, and the
// verdict with every finding is spooled; a verdict that fits keeps all of them.
TEST(ReporterLimits, SpansGiveWayBeforeTheStoresVerdictLimit) {
  TempDir dir;
  const std::string path = dir.File("spans.db");
  auto with_spans = [](const std::string& id, int findings) {
    v1::Verdict v = MakeVerdict(id, 1, "h");
    for (int i = 0; i < findings; ++i) {
      auto* f = v.add_findings();
      f->set_rule_id("pii.credit_card");
      f->set_category("credit_card");
      f->set_count(16);
      f->set_evidence("4111 **** **** 1111");
      for (int k = 0; k < 16; ++k) {
        auto* s = f->add_spans();
        s->set_start(static_cast<uint64_t>(1000 * i + 40 * k));
        s->set_end(static_cast<uint64_t>(1000 * i + 40 * k + 19));
        s->set_evidence("4111 **** **** 1111");
        s->set_fingerprint(std::string(64, 'a'));
        s->set_member("upload.zip!customers.csv");
      }
    }
    return v;
  };
  const v1::Verdict big = with_spans("big", 1000);
  ASSERT_GT(Bytes(big), 256u * 1024);
  const v1::Verdict small = with_spans("small", 3);
  {
    ReporterOptions ro = Unreachable(dir, "spans.db");
    auto rep = Reporter::Start(ro);
    ASSERT_TRUE(rep.ok()) << rep.status();
    ASSERT_TRUE((*rep)->Submit(big));
    ASSERT_TRUE((*rep)->Submit(small));
  }
  SpoolOptions o;
  o.path = path;
  auto spool = Spool::Open(o);
  ASSERT_TRUE(spool.ok()) << spool.status();
  auto rows = (*spool)->Peek(0, 10);
  ASSERT_TRUE(rows.ok());
  ASSERT_EQ(rows->size(), 2u);
  const v1::Verdict& got = rows->at(0).verdict;
  EXPECT_LE(Bytes(got), 256u * 1024);
  ASSERT_EQ(got.findings_size(), 1000);
  EXPECT_EQ(got.findings(0).spans_size(), 16);  // the first findings keep theirs
  EXPECT_FALSE(got.findings(0).spans_truncated());
  EXPECT_EQ(got.findings(999).spans_size(), 0);
  EXPECT_TRUE(got.findings(999).spans_truncated());
  EXPECT_EQ(got.findings(999).count(), 16u);
  EXPECT_EQ(rows->at(1).verdict.SerializeAsString(), small.SerializeAsString());
}

TEST(ReporterLimits, CanAcceptAnswersWhileOthersSubmit) {
  TempDir dir;
  ReporterOptions ro = Unreachable(dir, "spool.db");
  ro.spool.max_rows = 400;
  auto rep = Reporter::Start(ro);
  ASSERT_TRUE(rep.ok());
  std::atomic<bool> done{false};
  std::atomic<uint64_t> asked{0}, accepted{0};
  std::thread reader([&] {
    while (!done) {
      (void)(*rep)->CanAccept();
      ++asked;
    }
  });
  std::vector<std::thread> writers;
  for (int t = 0; t < 4; ++t) {
    writers.emplace_back([&, t] {
      for (int i = 0; i < 150; ++i) {
        if ((*rep)->Submit(MakeVerdict(std::to_string(t) + "-" + std::to_string(i), i, "h"))) ++accepted;
      }
    });
  }
  for (auto& w : writers) w.join();
  done = true;
  reader.join();
  EXPECT_EQ(accepted.load(), 400u);
  EXPECT_EQ((*rep)->stats().spool_depth, 400u);
  EXPECT_EQ((*rep)->stats().refused, 200u);
  EXPECT_FALSE((*rep)->CanAccept());
  // Many answers while 400 sqlite commits ran: CanAccept never waits for one.
  EXPECT_GT(asked.load(), 600u);
}

size_t LinesIn(const std::string& path) {
  std::ifstream in(path);
  size_t n = 0;
  for (std::string line; std::getline(in, line);) n += !line.empty();
  return n;
}

TEST(TeeSink, ReturnsTheReportersAnswerAndTheAuditLogGetsEveryVerdict) {
  TempDir dir;
  ReporterOptions ro = Unreachable(dir, "spool.db");
  ro.spool.max_rows = 2;
  auto rep = Reporter::Start(ro);
  ASSERT_TRUE(rep.ok());
  const std::string log = dir.File("audit.jsonl");
  auto jsonl = mitm::JsonlSink::Open(log);
  ASSERT_TRUE(jsonl.ok()) << jsonl.status();
  TeeSink tee(*rep, *jsonl);
  EXPECT_TRUE(tee.Submit(MakeVerdict("a", 1, "h")));
  EXPECT_TRUE(tee.Submit(MakeVerdict("b", 2, "h")));
  EXPECT_FALSE(tee.Submit(MakeVerdict("c", 3, "h")));  // the spool is full: refused
  (*jsonl)->Flush();
  EXPECT_EQ(LinesIn(log), 3u);
  std::ifstream in(log);
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(all.find("\"id\":\"c\""), std::string::npos) << all;
  EXPECT_EQ((*rep)->stats().spool_depth, 2u);
  EXPECT_EQ(tee.secondary_failures(), 0u);
}

store::StoreServerPtr StartStore(const std::string& db, const std::string& listen) {
  store::StoreServerOptions o;
  o.listen = listen;
  o.db_path = db;
  auto s = store::StoreServer::Start(o);
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? std::move(*s) : nullptr;
}

TEST(ReporterReconnect, DrainsWithinTheBackoffAfterTheStoreReturns) {
  TempDir dir;
  auto server = StartStore(dir.File("s.db"), "127.0.0.1:0");
  ASSERT_NE(server, nullptr);
  const std::string address = server->address();
  ReporterOptions ro;
  ro.spool.path = dir.File("spool.db");
  ro.store_address = address;
  ro.max_backoff = std::chrono::milliseconds(300);
  auto rep = Reporter::Start(ro);
  ASSERT_TRUE(rep.ok());
  ASSERT_TRUE((*rep)->Submit(MakeVerdict("before", 1, "h")));
  ASSERT_TRUE((*rep)->Drain(std::chrono::seconds(20)));
  server->Stop();
  server.reset();
  // Down for 4 s: gRPC's default backoff (1 s, x1.6) would next try at ~5.2 s, then ~9.3 s.
  std::this_thread::sleep_for(std::chrono::seconds(4));
  ASSERT_TRUE((*rep)->Submit(MakeVerdict("during", 2, "h")));
  EXPECT_FALSE((*rep)->Drain(std::chrono::milliseconds(100)));
  server = StartStore(dir.File("s.db"), address);
  ASSERT_NE(server, nullptr);
  const auto back = std::chrono::steady_clock::now();
  ASSERT_TRUE((*rep)->Drain(std::chrono::seconds(20)));
  const auto took = std::chrono::steady_clock::now() - back;
  // 300 ms backoff + 20% jitter + connect and one batch; far below gRPC's default.
  EXPECT_LT(took, std::chrono::milliseconds(1500))
      << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms";
  (*rep)->Stop();
}

}  // namespace
}  // namespace egressguard::reporter
