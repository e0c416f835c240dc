// Proves the store's numbered migrations bring an empty database, and a database left at every earlier version, to the latest schema with its data intact.
#include <gtest/gtest.h>

#include <string>

#include "appliance/store/schema.h"
#include "appliance/store/sqlite.h"
#include "appliance/store/store.h"
#include "store_test_util.h"

namespace egressguard::store {
namespace {

using testing::MakeVerdict;
using testing::TempDir;

TEST(StoreSchema, EmptyDatabaseMigratesToLatest) {
  TempDir dir;
  auto store = Store::Open({dir.File("s.db"), 2, nullptr});
  ASSERT_TRUE(store.ok()) << store.status();
  store->reset();
  auto db = Database::Open(dir.File("s.db"), {});
  ASSERT_TRUE(db.ok());
  auto v = SchemaVersion(**db);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(*v, LatestSchemaVersion());
  EXPECT_GE(LatestSchemaVersion(), 3);
}

TEST(StoreSchema, EveryEarlierVersionMigratesAndKeepsData) {
  for (int from = 0; from < LatestSchemaVersion(); ++from) {
    SCOPED_TRACE(from);
    TempDir dir;
    const std::string path = dir.File("s.db");
    {
      auto db = Database::Open(path, {});
      ASSERT_TRUE(db.ok());
      ASSERT_TRUE(Migrate(**db, from).ok());
      auto v = SchemaVersion(**db);
      ASSERT_TRUE(v.ok());
      ASSERT_EQ(*v, from);
    }
    if (from >= 1) {
      // A row written while the database was at version `from` must survive migrating.
      auto db = Database::Open(path, {});
      ASSERT_TRUE(db.ok());
      ASSERT_TRUE((*db)->Exec("INSERT INTO verdicts (id, time_us, received_us, appliance, client_address, workload, "
                              "host, action, rule_pack_version, bytes_out, bytes_in, body, prev_hash, hash) "
                              "VALUES ('old', 1, 1, '', '', '', 'h', 1, '', 0, 0, x'', zeroblob(32), zeroblob(32))")
                      .ok());
    }
    auto store = Store::Open({path, 2, nullptr});
    ASSERT_TRUE(store.ok()) << store.status();
    auto ingest = (*store)->Ingest({MakeVerdict("new-1", 1000, "a.example")});
    ASSERT_TRUE(ingest.ok()) << ingest.status();
    EXPECT_EQ(ingest->inserted, 1u);
    // The old row's host is keyed by the migration that moved the host index (4), or
    // waits past upto_seq when written after it; either way a host filter finds it.
    for (const char* host : {"h", "a.example"}) {
      v1::QueryRequest q;
      q.mutable_filter()->set_host(host);
      auto found = (*store)->Query(q);
      ASSERT_TRUE(found.ok()) << found.status();
      EXPECT_EQ(found->verdicts_size(), from >= 1 || std::string(host) == "a.example" ? 1 : 0) << host;
    }
    ASSERT_TRUE((*store)->Audit({"test", "officer", "test", "after migration", true}).ok());
    store->reset();
    auto db = Database::Open(path, {});
    ASSERT_TRUE(db.ok());
    auto v = SchemaVersion(**db);
    ASSERT_TRUE(v.ok());
    EXPECT_EQ(*v, LatestSchemaVersion());
    auto count = (*db)->Prepare("SELECT COUNT(*) FROM verdicts");
    ASSERT_TRUE(count.ok());
    ASSERT_TRUE(*count->Step());
    EXPECT_EQ(count->Int(0), from >= 1 ? 2 : 1);
    auto keyed = (*db)->Prepare("SELECT upto_seq, (SELECT COUNT(*) FROM verdict_keys WHERE kind = 1) FROM key_index");
    ASSERT_TRUE(keyed.ok());
    ASSERT_TRUE(*keyed->Step());
    const bool migrated_rows = from >= 1 && from < 4;  // the old row was there when migration 4 ran
    EXPECT_EQ(keyed->Int(0), migrated_rows ? 1 : 0);
    EXPECT_EQ(keyed->Int(1), migrated_rows ? 1 : 0);
  }
}

TEST(StoreSchema, NewerDatabaseIsRefused) {
  TempDir dir;
  {
    auto db = Database::Open(dir.File("s.db"), {});
    ASSERT_TRUE(db.ok());
    ASSERT_TRUE((*db)->Exec("PRAGMA user_version=999").ok());
  }
  auto store = Store::Open({dir.File("s.db"), 2, nullptr});
  ASSERT_FALSE(store.ok());
  EXPECT_NE(store.status().message().find("newer"), std::string::npos);
}

}  // namespace
}  // namespace egressguard::store
