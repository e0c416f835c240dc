#pragma once
// Thin RAII over the sqlite3 C API: a connection and prepared statements. Values
// reach SQL only through bind calls, never through the statement text.

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace egressguard::store {

class Statement {
 public:
  Statement() = default;
  Statement(sqlite3_stmt* stmt, sqlite3* db) : stmt_(stmt), db_(db) {}
  Statement(Statement&& other) noexcept;
  Statement& operator=(Statement&& other) noexcept;
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  ~Statement();

  // Parameters are 1-based, as in sqlite3_bind_*.
  Statement& Bind(int index, int64_t value);
  Statement& Bind(int index, std::string_view text);
  Statement& BindBlob(int index, std::string_view bytes);
  Statement& BindNull(int index);

  // true: a row is ready; false: done. Errors come back as a status.
  absl::StatusOr<bool> Step();
  // Steps a statement that returns no rows (or whose rows are ignored).
  absl::Status Run();
  void Reset();

  int64_t Int(int column) const;
  std::string Text(int column) const;
  std::string Blob(int column) const;
  bool IsNull(int column) const;

 private:
  sqlite3_stmt* stmt_ = nullptr;
  sqlite3* db_ = nullptr;
};

class Database {
 public:
  struct Options {
    bool read_only = false;  // an existing database, queries only
    // "FULL" or "NORMAL": see the callers for why each picks what it picks.
    std::string synchronous = "NORMAL";
    int busy_timeout_ms = 10000;
    // Page cache in MiB. The store's indexes take random inserts; a cache that holds
    // their hot pages keeps ingest off the disk.
    int cache_mib = 16;
    // WAL pages before a commit checkpoints them into the database. More pages: a
    // page that many commits touch is copied back once, not once per commit.
    int wal_autocheckpoint_pages = 1000;
  };
  // Opens (creating unless read_only) a database in WAL mode.
  static absl::StatusOr<std::unique_ptr<Database>> Open(const std::string& path, const Options& options);
  ~Database();
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;

  absl::Status Exec(const std::string& sql);  // fixed statements only (DDL, BEGIN, COMMIT)
  absl::StatusOr<Statement> Prepare(const std::string& sql);
  // A statement kept for the life of the connection, keyed by its text.
  absl::StatusOr<Statement*> Cached(const std::string& sql);
  int64_t LastInsertRowId() const;
  int Changes() const;
  sqlite3* raw() { return db_; }

 private:
  explicit Database(sqlite3* db);
  sqlite3* db_;
  struct Cache;
  std::unique_ptr<Cache> cache_;
};
using DatabasePtr = std::unique_ptr<Database>;

// BEGIN IMMEDIATE ... COMMIT, rolled back unless Commit() succeeded.
class Transaction {
 public:
  explicit Transaction(Database& db);
  ~Transaction();
  absl::Status begin_status() const { return begin_; }
  absl::Status Commit();

 private:
  Database& db_;
  absl::Status begin_;
  bool done_ = false;
};

}  // namespace egressguard::store
