// Proves, in one process over real gRPC on loopback: the reporter delivers spooled verdicts exactly once, keeps serving while the store is down and drains after it returns, applies its fail mode at the bound; the rule watcher swaps in each activated pack and keeps the old engine when one fails to compile; plaintext off loopback is refused.
#include <gtest/gtest.h>

#include <set>
#include <thread>

#include "appliance/reporter/reporter.h"
#include "appliance/reporter/rule_watcher.h"
#include "appliance/store/server.h"
#include "store_test_util.h"

namespace egressguard {
namespace {

using testing::MakeVerdict;
using testing::TempDir;

// Stands in for the Hyperscan engine: the watcher only needs something to swap.
class FakeEngine final : public dlp::Engine {
 public:
  explicit FakeEngine(rules::v1::RulePack pack) : pack_(std::move(pack)) {}
  const std::string& pack_version() const override { return pack_.version(); }
  const rules::v1::RulePack& pack() const override { return pack_; }
  size_t stream_state_bytes() const override { return 0; }

 private:
  rules::v1::RulePack pack_;
};

absl::StatusOr<dlp::EnginePtr> FakeCompile(const rules::v1::RulePack& pack) {
  for (const auto& r : pack.rules()) {
    for (const auto& p : r.patterns()) {
      if (p == "(") return absl::InvalidArgumentError("rule " + r.id() + ": unbalanced parenthesis");
    }
  }
  return dlp::EnginePtr(std::make_shared<FakeEngine>(pack));
}

rules::v1::RulePack Pack(const std::string& version, const std::string& pattern) {
  rules::v1::RulePack p;
  p.set_version(version);
  auto* r = p.add_rules();
  r->set_id("r1");
  r->set_category("credit_card");
  r->add_patterns(pattern);
  r->set_action(rules::v1::BLOCK);
  return p;
}

store::StoreServerPtr StartStore(const std::string& db, const std::string& listen = "127.0.0.1:0") {
  store::StoreServerOptions o;
  o.listen = listen;
  o.db_path = db;
  auto s = store::StoreServer::Start(o);
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? std::move(*s) : nullptr;
}

std::set<std::string> StoredIds(store::Store& st) {
  std::set<std::string> ids;
  v1::QueryRequest q;
  q.set_page_size(1000);
  for (;;) {
    auto r = st.Query(q);
    EXPECT_TRUE(r.ok());
    if (!r.ok()) break;
    for (const auto& v : r->verdicts()) ids.insert(v.id());
    if (r->next_page_token().empty()) break;
    q.set_page_token(r->next_page_token());
  }
  return ids;
}

// A reporter that sends small batches and retries quickly, spooling in `dir`.
reporter::ReporterOptions FastReporter(const TempDir& dir, const std::string& store_address) {
  reporter::ReporterOptions ro;
  ro.spool.path = dir.File("spool.db");
  ro.store_address = store_address;
  ro.batch_size = 64;
  ro.max_backoff = std::chrono::milliseconds(200);
  return ro;
}

TEST(StoreServer, PlaintextOffLoopbackIsRefused) {
  TempDir dir;
  store::StoreServerOptions o;
  o.listen = "0.0.0.0:0";
  o.db_path = dir.File("s.db");
  auto s = store::StoreServer::Start(o);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("refusing to serve plaintext"), std::string::npos);
  EXPECT_FALSE(store::MakeChannel("10.1.2.3:7443", {}).ok());
  EXPECT_TRUE(store::IsLoopbackAddress("[::1]:80"));
  EXPECT_TRUE(store::IsLoopbackAddress("localhost:1"));
  EXPECT_FALSE(store::IsLoopbackAddress("127example.com:1"));
}

TEST(StoreServer, ReporterDeliversOnceAndSurvivesAStoreOutage) {
  TempDir dir;
  auto server = StartStore(dir.File("s.db"));
  ASSERT_NE(server, nullptr);
  const int port = server->port();

  reporter::ReporterOptions ro = FastReporter(dir, server->address());
  auto rep = reporter::Reporter::Start(ro);
  ASSERT_TRUE(rep.ok()) << rep.status();
  for (int i = 0; i < 300; ++i) ASSERT_TRUE((*rep)->Submit(MakeVerdict("a" + std::to_string(i), i, "h")));
  ASSERT_TRUE((*rep)->Drain(std::chrono::seconds(30)));
  EXPECT_EQ(StoredIds(server->store()).size(), 300u);

  // Store down: Submit still succeeds (spooled), nothing is lost.
  server->Stop();
  server.reset();
  for (int i = 0; i < 200; ++i) ASSERT_TRUE((*rep)->Submit(MakeVerdict("b" + std::to_string(i), 1000 + i, "h")));
  EXPECT_GT((*rep)->stats().spool_depth, 0u);

  server = StartStore(dir.File("s.db"), "127.0.0.1:" + std::to_string(port));
  ASSERT_NE(server, nullptr);
  ASSERT_TRUE((*rep)->Drain(std::chrono::seconds(30)));
  auto ids = StoredIds(server->store());
  EXPECT_EQ(ids.size(), 500u);
  EXPECT_TRUE(ids.count("b199"));
  auto verify = server->store().Verify();
  ASSERT_TRUE(verify.ok());
  EXPECT_TRUE(verify->ok()) << verify->DebugString();
  (*rep)->Stop();
}

TEST(StoreServer, ReporterSplitsBatchesThatWouldPassTheMessageLimit) {
  TempDir dir;
  auto server = StartStore(dir.File("s.db"));
  ASSERT_NE(server, nullptr);
  const int port = server->port();
  reporter::ReporterOptions ro = FastReporter(dir, server->address());
  // The store is down while the spool fills, so the first batch after it returns
  // holds everything: 40 verdicts of ~200 KiB would be 8 MiB, over gRPC's 4 MiB.
  server->Stop();
  server.reset();
  auto rep = reporter::Reporter::Start(ro);
  ASSERT_TRUE(rep.ok()) << rep.status();
  for (int i = 0; i < 40; ++i) {
    auto v = MakeVerdict("big" + std::to_string(i), i, "h");
    v.set_path("/" + std::string(200 * 1024, 'p'));
    ASSERT_TRUE((*rep)->Submit(std::move(v)));
  }
  server = StartStore(dir.File("s.db"), "127.0.0.1:" + std::to_string(port));
  ASSERT_NE(server, nullptr);
  ASSERT_TRUE((*rep)->Drain(std::chrono::seconds(20)));
  EXPECT_EQ(StoredIds(server->store()).size(), 40u);
  EXPECT_EQ((*rep)->stats().rejected, 0u);
  (*rep)->Stop();
}

TEST(StoreServer, FailModesApplyAtTheBound) {
  TempDir dir;
  for (auto mode : {reporter::FailMode::kBlock, reporter::FailMode::kDropWithAlarm}) {
    reporter::ReporterOptions ro;
    ro.spool.path = dir.File(mode == reporter::FailMode::kBlock ? "b.db" : "d.db");
    ro.spool.max_rows = 5;
    ro.fail_mode = mode;
    ro.store_address = "127.0.0.1:1";  // nothing listens there
    auto rep = reporter::Reporter::Start(ro);
    ASSERT_TRUE(rep.ok());
    for (int i = 0; i < 5; ++i) ASSERT_TRUE((*rep)->Submit(MakeVerdict(std::to_string(i), i, "h")));
    const bool accepted = (*rep)->Submit(MakeVerdict("over", 9, "h"));
    auto st = (*rep)->stats();
    if (mode == reporter::FailMode::kBlock) {
      EXPECT_FALSE(accepted);
      EXPECT_EQ(st.refused, 1u);
    } else {
      EXPECT_TRUE(accepted);
      EXPECT_EQ(st.dropped, 1u);
    }
    EXPECT_EQ(st.spool_depth, 5u);
  }
}

TEST(StoreServer, RuleWatcherSwapsAndKeepsOldPackOnCompileFailure) {
  TempDir dir;
  auto server = StartStore(dir.File("s.db"));
  ASSERT_NE(server, nullptr);
  store::AuditEntry who{"test", "officer", "m", "", true};
  auto& st = server->store();
  ASSERT_TRUE(st.PushPack(Pack("1", "a+"), "test", "r").ok());
  ASSERT_TRUE(st.ActivatePack("1", v1::MONITOR, who, "r").ok());

  dlp::EngineHolder holder;
  reporter::RuleWatcherOptions wo;
  wo.store_address = server->address();
  wo.compile = FakeCompile;
  auto watcher = reporter::RuleWatcher::Start(wo, holder);
  ASSERT_TRUE(watcher.ok());
  ASSERT_TRUE((*watcher)->WaitForVersion("1", std::chrono::seconds(20)));
  ASSERT_NE(holder.Current(), nullptr);
  EXPECT_EQ(holder.Current()->pack_version(), "1");
  EXPECT_FALSE((*watcher)->enforce());

  auto old_engine = holder.Current();  // in-flight work keeps this alive
  ASSERT_TRUE(st.PushPack(Pack("2", "b+"), "test", "r").ok());
  ASSERT_TRUE(st.ActivatePack("2", v1::ENFORCE, who, "r").ok());
  ASSERT_TRUE((*watcher)->WaitForVersion("2", std::chrono::seconds(20)));
  EXPECT_EQ(holder.Current()->pack_version(), "2");
  EXPECT_TRUE((*watcher)->enforce());
  EXPECT_EQ(old_engine->pack_version(), "1");

  // Shape-valid but fails to compile on the appliance (the store here has no compile check).
  ASSERT_TRUE(st.PushPack(Pack("3", "("), "test", "r").ok());
  const uint64_t failures = (*watcher)->status().failures;
  ASSERT_TRUE(st.ActivatePack("3", v1::ENFORCE, who, "r").ok());
  for (int i = 0; i < 200 && (*watcher)->status().failures == failures; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  auto status = (*watcher)->status();
  EXPECT_EQ(status.failures, failures + 1);
  EXPECT_NE(status.last_error.find("rule pack 3 does not compile"), std::string::npos) << status.last_error;
  EXPECT_EQ(holder.Current()->pack_version(), "2");
  (*watcher)->Stop();
}

}  // namespace
}  // namespace egressguard
