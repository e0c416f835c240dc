// Proves the pack cache beside the spool (issue 20): it round-trips an active pack
// (0600, sha256 recorded), refuses a missing, corrupt, truncated, edited or
// group-writable file with a reason; the rule watcher starts from it at once while the
// store is unreachable (engine and mode before Start returns), then follows the store
// when it answers and keeps the new pack in the cache; a refused cache leaves the
// watcher waiting for the store, as without one.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <netinet/in.h>
#include <unistd.h>

#include <fstream>
#include <iterator>
#include <thread>

#include "appliance/reporter/pack_cache.h"
#include "appliance/reporter/rule_watcher.h"
#include "appliance/store/server.h"
#include "store_test_util.h"

namespace egressguard::reporter {
namespace {

using testing::TempDir;

class FakeEngine final : public dlp::Engine {
 public:
  explicit FakeEngine(rules::v1::RulePack pack) : pack_(std::move(pack)) {}
  const std::string& pack_version() const override { return pack_.version(); }
  const rules::v1::RulePack& pack() const override { return pack_; }
  size_t stream_state_bytes() const override { return 0; }

 private:
  rules::v1::RulePack pack_;
};

std::atomic<int> compiles{0};

absl::StatusOr<dlp::EnginePtr> FakeCompile(const rules::v1::RulePack& pack) {
  ++compiles;
  return dlp::EnginePtr(std::make_shared<FakeEngine>(pack));
}

rules::v1::RulePack Pack(const std::string& version) {
  rules::v1::RulePack p;
  p.set_version(version);
  auto* r = p.add_rules();
  r->set_id("r1");
  r->set_category("credit_card");
  r->add_patterns("4[0-9]{15}");
  r->set_action(rules::v1::BLOCK);
  return p;
}

v1::ActivePack Active(const std::string& version, v1::PackMode mode, uint64_t generation) {
  v1::ActivePack a;
  *a.mutable_pack() = Pack(version);
  a.mutable_info()->set_version(version);
  a.mutable_info()->set_mode(mode);
  a.mutable_info()->set_sha256(std::string(64, 'a'));
  a.set_generation(generation);
  return a;
}

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void Spit(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
}

TEST(PackCache, PathIsBesideTheSpool) {
  EXPECT_EQ(PackCachePath("/var/lib/egressguard/spool.db"), "/var/lib/egressguard/spool.pack-cache");
  EXPECT_EQ(PackCachePath("egressguard-spool.db"), "egressguard-spool.pack-cache");
  EXPECT_EQ(PackCachePath("/a.b/spool"), "/a.b/spool.pack-cache");
  EXPECT_EQ(PackCachePath("/a/.spool"), "/a/.spool.pack-cache");
}

TEST(PackCache, RoundTripsPrivately) {
  TempDir dir;
  const std::string path = dir.File("spool.pack-cache");
  const auto active = Active("2026.11.1", v1::ENFORCE, 7);
  auto sha = WritePackCache(path, active);
  ASSERT_TRUE(sha.ok()) << sha.status();
  EXPECT_EQ(sha->size(), 64u);
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto read = ReadPackCache(path);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->sha256, *sha);
  EXPECT_EQ(read->active.SerializeAsString(), active.SerializeAsString());
  // Rewritten in place (atomically): the new pack replaces the old one.
  ASSERT_TRUE(WritePackCache(path, Active("2026.11.2", v1::MONITOR, 8)).ok());
  read = ReadPackCache(path);
  ASSERT_TRUE(read.ok());
  EXPECT_EQ(read->active.info().version(), "2026.11.2");
  EXPECT_EQ(read->active.info().mode(), v1::MONITOR);
}

TEST(PackCache, RefusesMissingCorruptEditedAndWritableByOthers) {
  TempDir dir;
  const std::string path = dir.File("spool.pack-cache");
  EXPECT_EQ(ReadPackCache(path).status().code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(WritePackCache(path, Active("9", v1::ENFORCE, 1)).ok());
  const std::string good = Slurp(path);

  // One byte of the pack changed (a rule's pattern widened, say): sha256 mismatch.
  std::string edited = good;
  const auto at = edited.find("4[0-9]{15}");
  ASSERT_NE(at, std::string::npos);
  edited[at] = '5';
  Spit(path, edited);
  auto r = ReadPackCache(path);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(r.status().message().find("sha256"), std::string::npos) << r.status();

  // Truncated, as a torn write would leave it (never ours: we rename a whole file).
  Spit(path, good.substr(0, good.size() - 5));
  EXPECT_EQ(ReadPackCache(path).status().code(), absl::StatusCode::kDataLoss);
  // The sha256 line edited to match nothing, or gone.
  std::string bad_sha = good;
  bad_sha[bad_sha.find("sha256 ") + 7] ^= 1;
  Spit(path, bad_sha);
  EXPECT_EQ(ReadPackCache(path).status().code(), absl::StatusCode::kDataLoss);
  Spit(path, "egressguard-active-pack-cache 1\n");
  EXPECT_EQ(ReadPackCache(path).status().code(), absl::StatusCode::kDataLoss);
  Spit(path, "not a cache at all");
  EXPECT_EQ(ReadPackCache(path).status().code(), absl::StatusCode::kDataLoss);

  // Intact, but group-writable: someone else could have put it there.
  Spit(path, good);
  ASSERT_TRUE(ReadPackCache(path).ok());
  ASSERT_EQ(::chmod(path.c_str(), 0620), 0);
  r = ReadPackCache(path);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_NE(r.status().message().find("group or others"), std::string::npos) << r.status();
}

int FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

TEST(RuleWatcherCache, StartsFromTheCacheThenFollowsTheStore) {
  TempDir dir;
  const std::string cache = dir.File("spool.pack-cache");
  ASSERT_TRUE(WritePackCache(cache, Active("7", v1::ENFORCE, 3)).ok());
  const std::string address = "127.0.0.1:" + std::to_string(FreePort());  // no store there yet

  dlp::EngineHolder holder;
  RuleWatcherOptions wo;
  wo.store_address = address;
  wo.compile = FakeCompile;
  wo.cache_path = cache;
  wo.max_backoff = std::chrono::milliseconds(200);
  auto watcher = RuleWatcher::Start(wo, holder);
  ASSERT_TRUE(watcher.ok()) << watcher.status();
  // Serving before Start returned: the cached pack and its mode.
  ASSERT_NE(holder.Current(), nullptr);
  EXPECT_EQ(holder.Current()->pack_version(), "7");
  EXPECT_TRUE((*watcher)->enforce());
  auto status = (*watcher)->status();
  EXPECT_TRUE(status.from_cache);
  EXPECT_EQ(status.version, "7");
  EXPECT_FALSE(status.connected);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // the store stays unreachable a while
  EXPECT_EQ(holder.Current()->pack_version(), "7");
  EXPECT_TRUE((*watcher)->status().from_cache);

  // The store comes up with another pack active, in monitor mode: the watcher follows.
  store::StoreServerOptions so;
  so.listen = address;
  so.db_path = dir.File("s.db");
  auto server = store::StoreServer::Start(so);
  ASSERT_TRUE(server.ok()) << server.status();
  store::AuditEntry who{"test", "officer", "m", "", true};
  ASSERT_TRUE((*server)->store().PushPack(Pack("8"), "test", "r").ok());
  ASSERT_TRUE((*server)->store().ActivatePack("8", v1::MONITOR, who, "r").ok());
  ASSERT_TRUE((*watcher)->WaitForVersion("8", std::chrono::seconds(10)));
  EXPECT_EQ(holder.Current()->pack_version(), "8");
  EXPECT_FALSE((*watcher)->enforce());
  EXPECT_FALSE((*watcher)->status().from_cache);
  // ... and keeps it in the cache for the next start.
  for (int i = 0; i < 100; ++i) {
    auto c = ReadPackCache(cache);
    if (c.ok() && c->active.info().version() == "8") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  auto kept = ReadPackCache(cache);
  ASSERT_TRUE(kept.ok()) << kept.status();
  EXPECT_EQ(kept->active.info().version(), "8");
  EXPECT_EQ(kept->active.info().mode(), v1::MONITOR);
  (*watcher)->Stop();

  // A restart with the store up and the same pack cached compiles it once, not twice.
  compiles = 0;
  dlp::EngineHolder holder2;
  auto again = RuleWatcher::Start(wo, holder2);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(holder2.Current()->pack_version(), "8");
  ASSERT_TRUE((*again)->WaitForVersion("8", std::chrono::seconds(10)));
  EXPECT_EQ(compiles.load(), 1);
  EXPECT_EQ((*again)->status().swaps, 1u);
  (*again)->Stop();
  (*server)->Stop();
}

TEST(RuleWatcherCache, ARefusedCacheLeavesItWaitingForTheStore) {
  TempDir dir;
  const std::string cache = dir.File("spool.pack-cache");
  ASSERT_TRUE(WritePackCache(cache, Active("7", v1::ENFORCE, 3)).ok());
  std::string bytes = Slurp(cache);
  bytes[bytes.size() - 3] ^= 0x20;
  Spit(cache, bytes);
  dlp::EngineHolder holder;
  RuleWatcherOptions wo;
  wo.store_address = "127.0.0.1:" + std::to_string(FreePort());
  wo.compile = FakeCompile;
  wo.cache_path = cache;
  auto watcher = RuleWatcher::Start(wo, holder);
  ASSERT_TRUE(watcher.ok());
  EXPECT_EQ(holder.Current(), nullptr);
  auto status = (*watcher)->status();
  EXPECT_FALSE(status.from_cache);
  EXPECT_NE(status.cache_error.find("sha256"), std::string::npos) << status.cache_error;
  (*watcher)->Stop();
}

}  // namespace
}  // namespace egressguard::reporter
