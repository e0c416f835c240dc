#pragma once
// The store's behaviour tests run against each backend: a sqlite file in a temporary
// directory, and a fresh database on a real PostgreSQL server the test process starts
// (tests/support/pg_server.h). Without the server binaries the PostgreSQL cases skip,
// saying why; scripts/install-deps.sh installs them, so CI runs them.

#include <gtest/gtest.h>

#include <string>

#include "appliance/store/sqlite.h"
#include "store_test_util.h"
#include "tests/support/pg_server.h"

namespace egressguard::testing {

enum class StoreBackend { kSqlite, kPostgres };

inline std::string StoreBackendName(const ::testing::TestParamInfo<StoreBackend>& info) {
  return info.param == StoreBackend::kSqlite ? "sqlite" : "postgresql";
}

// One store database for one test.
class StoreDatabase {
 public:
  // Empty database(): could not be made; `why` says why (a PostgreSQL server that
  // cannot start because its binaries are missing is the one reason to skip).
  StoreDatabase(StoreBackend backend, const TempDir& dir) : backend_(backend) {
    if (backend == StoreBackend::kSqlite) {
      database_ = dir.File("s.db");
      return;
    }
    server_ = SharedPgServer(&why_);
    if (server_ == nullptr) return;
    auto name = server_->CreateDatabase();
    if (!name.ok()) {
      why_ = std::string(name.status().message());
      server_ = nullptr;
      return;
    }
    name_ = *name;
    database_ = server_->Uri(name_);
  }

  const std::string& database() const { return database_; }
  const std::string& why() const { return why_; }
  bool binaries_missing() const { return backend_ == StoreBackend::kPostgres && PgServer::FindBinDir().empty(); }
  StoreBackend backend() const { return backend_; }
  PgServer* server() const { return server_; }

  // Runs SQL straight on the database, as someone with the file or a database login
  // would (tampering, fault injection).
  ::testing::AssertionResult Exec(const std::string& sql) const {
    if (backend_ == StoreBackend::kSqlite) {
      auto db = store::Database::Open(database_, {});
      if (!db.ok()) return ::testing::AssertionFailure() << db.status();
      if (auto s = (*db)->Exec(sql); !s.ok()) return ::testing::AssertionFailure() << s << ": " << sql;
      return ::testing::AssertionSuccess();
    }
    if (auto s = server_->Exec(name_, sql); !s.ok()) return ::testing::AssertionFailure() << s << ": " << sql;
    return ::testing::AssertionSuccess();
  }

 private:
  StoreBackend backend_;
  std::string database_;
  std::string name_;
  std::string why_;
  PgServer* server_ = nullptr;
};

// In SetUp: skips when the PostgreSQL binaries are missing, fails on any other reason.
#define EGRESSGUARD_REQUIRE_DATABASE(db)                                         \
  do {                                                                           \
    if ((db).database().empty()) {                                               \
      if ((db).binaries_missing()) GTEST_SKIP() << (db).why();                   \
      FAIL() << "cannot make a store database: " << (db).why();                  \
    }                                                                            \
  } while (0)

}  // namespace egressguard::testing
