#include "appliance/store/sqlite.h"

#include <fmt/format.h>

#include <unordered_map>

namespace egressguard::store {

namespace {

absl::Status SqliteError(sqlite3* db, const std::string& what) {
  return absl::InternalError(fmt::format("sqlite: {}: {}", what, db ? sqlite3_errmsg(db) : "no connection"));
}

}  // namespace

Statement::Statement(Statement&& other) noexcept : stmt_(other.stmt_), db_(other.db_) {
  other.stmt_ = nullptr;
}

Statement& Statement::operator=(Statement&& other) noexcept {
  if (this != &other) {
    sqlite3_finalize(stmt_);
    stmt_ = other.stmt_;
    db_ = other.db_;
    other.stmt_ = nullptr;
  }
  return *this;
}

Statement::~Statement() { sqlite3_finalize(stmt_); }

Statement& Statement::Bind(int index, int64_t value) {
  sqlite3_bind_int64(stmt_, index, value);
  return *this;
}

Statement& Statement::Bind(int index, std::string_view text) {
  sqlite3_bind_text64(stmt_, index, text.data(), text.size(), SQLITE_TRANSIENT, SQLITE_UTF8);
  return *this;
}

Statement& Statement::BindBlob(int index, std::string_view bytes) {
  sqlite3_bind_blob64(stmt_, index, bytes.data(), bytes.size(), SQLITE_TRANSIENT);
  return *this;
}

Statement& Statement::BindNull(int index) {
  sqlite3_bind_null(stmt_, index);
  return *this;
}

absl::StatusOr<bool> Statement::Step() {
  int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  return SqliteError(db_, "step");
}

absl::Status Statement::Run() {
  auto r = Step();
  Reset();
  return r.ok() ? absl::OkStatus() : r.status();
}

void Statement::Reset() {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
}

int64_t Statement::Int(int column) const { return sqlite3_column_int64(stmt_, column); }

std::string Statement::Text(int column) const {
  const auto* p = sqlite3_column_text(stmt_, column);
  int n = sqlite3_column_bytes(stmt_, column);
  return p ? std::string(reinterpret_cast<const char*>(p), static_cast<size_t>(n)) : std::string();
}

std::string Statement::Blob(int column) const {
  const void* p = sqlite3_column_blob(stmt_, column);
  int n = sqlite3_column_bytes(stmt_, column);
  return p ? std::string(static_cast<const char*>(p), static_cast<size_t>(n)) : std::string();
}

bool Statement::IsNull(int column) const { return sqlite3_column_type(stmt_, column) == SQLITE_NULL; }

struct Database::Cache {
  std::unordered_map<std::string, Statement> statements;
};

Database::Database(sqlite3* db) : db_(db), cache_(std::make_unique<Cache>()) {}

absl::StatusOr<std::unique_ptr<Database>> Database::Open(const std::string& path, const Options& options) {
  sqlite3* raw = nullptr;
  // Readers open read-write without create: a WAL reader still maps the -shm file.
  int flags = options.read_only ? SQLITE_OPEN_READWRITE : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  flags |= SQLITE_OPEN_NOMUTEX;  // each connection is used by one thread at a time
  int rc = sqlite3_open_v2(path.c_str(), &raw, flags, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = raw ? sqlite3_errmsg(raw) : sqlite3_errstr(rc);
    sqlite3_close(raw);
    return absl::UnavailableError(fmt::format("cannot open database {}: {}", path, msg));
  }
  std::unique_ptr<Database> db(new Database(raw));
  sqlite3_busy_timeout(raw, options.busy_timeout_ms);
  sqlite3_extended_result_codes(raw, 1);
  if (!options.read_only) {
    if (auto s = db->Exec("PRAGMA journal_mode=WAL"); !s.ok()) return s;
    if (options.synchronous != "FULL" && options.synchronous != "NORMAL") {
      return absl::InvalidArgumentError("synchronous must be FULL or NORMAL");
    }
    if (auto s = db->Exec("PRAGMA synchronous=" + options.synchronous); !s.ok()) return s;
    if (auto s = db->Exec(fmt::format("PRAGMA wal_autocheckpoint={}", options.wal_autocheckpoint_pages)); !s.ok()) {
      return s;
    }
  }
  if (auto s = db->Exec("PRAGMA foreign_keys=ON"); !s.ok()) return s;
  // Fixed integers of our own, not input: no binding needed (PRAGMA takes none).
  if (auto s = db->Exec(fmt::format("PRAGMA cache_size=-{}", options.cache_mib * 1024)); !s.ok()) return s;
  if (auto s = db->Exec("PRAGMA temp_store=MEMORY"); !s.ok()) return s;
  if (options.read_only) {
    if (auto s = db->Exec("PRAGMA query_only=1"); !s.ok()) return s;
  }
  return db;
}

Database::~Database() {
  cache_.reset();  // statements must be finalized before the connection closes
  sqlite3_close(db_);
}

absl::Status Database::Exec(const std::string& sql) {
  char* err = nullptr;
  int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err);
  if (rc != SQLITE_OK) {
    std::string msg = err ? err : sqlite3_errstr(rc);
    sqlite3_free(err);
    return absl::InternalError(fmt::format("sqlite: {}", msg));
  }
  return absl::OkStatus();
}

absl::StatusOr<Statement> Database::Prepare(const std::string& sql) {
  sqlite3_stmt* stmt = nullptr;
  int rc = sqlite3_prepare_v2(db_, sql.c_str(), static_cast<int>(sql.size()), &stmt, nullptr);
  if (rc != SQLITE_OK) return SqliteError(db_, "prepare");
  return Statement(stmt, db_);
}

absl::StatusOr<Statement*> Database::Cached(const std::string& sql) {
  auto it = cache_->statements.find(sql);
  if (it == cache_->statements.end()) {
    auto st = Prepare(sql);
    if (!st.ok()) return st.status();
    it = cache_->statements.emplace(sql, std::move(*st)).first;
  }
  it->second.Reset();
  return &it->second;
}

int64_t Database::LastInsertRowId() const { return sqlite3_last_insert_rowid(db_); }
int Database::Changes() const { return sqlite3_changes(db_); }

Transaction::Transaction(Database& db) : db_(db), begin_(db.Exec("BEGIN IMMEDIATE")) {
  done_ = !begin_.ok();
}

Transaction::~Transaction() {
  if (!done_) (void)db_.Exec("ROLLBACK");
}

absl::Status Transaction::Commit() {
  if (done_) return begin_.ok() ? absl::FailedPreconditionError("transaction already ended") : begin_;
  auto s = db_.Exec("COMMIT");
  if (s.ok()) done_ = true;
  return s;
}

}  // namespace egressguard::store
