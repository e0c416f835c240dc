#pragma once
// Thin RAII over libpq: a connection, its results, and a small pool. Values reach SQL
// only as parameters ($1, $2, ...), never through the statement text; bytea travels
// in binary, everything else as text.

#include <libpq-fe.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace egressguard::store::pg {

// One statement parameter.
struct Param {
  std::string value;
  bool binary = false;  // bytea
  static Param Text(std::string v) { return {std::move(v), false}; }
  static Param Int(int64_t v) { return {std::to_string(v), false}; }
  static Param Bytes(std::string v) { return {std::move(v), true}; }
};
using Params = std::vector<Param>;

class Result {
 public:
  Result() = default;
  explicit Result(PGresult* r) : r_(r) {}
  Result(Result&& o) noexcept : r_(o.r_) { o.r_ = nullptr; }
  Result& operator=(Result&& o) noexcept;
  Result(const Result&) = delete;
  Result& operator=(const Result&) = delete;
  ~Result();

  int rows() const;
  bool IsNull(int row, int col) const;
  std::string Text(int row, int col) const;
  int64_t Int(int row, int col) const;
  // A bytea column (text result format: "\x" and hex digits).
  std::string Bytes(int row, int col) const;
  // A text[] column: its elements.
  std::vector<std::string> TextArray(int row, int col) const;

 private:
  PGresult* r_ = nullptr;
};

class Connection {
 public:
  // `conninfo`: a postgresql:// URI or key=value conninfo. A connect_timeout of 5 s
  // applies unless it sets its own: a database that does not answer must not hang a
  // caller that is waiting for a store reply.
  static absl::StatusOr<std::unique_ptr<Connection>> Open(const std::string& conninfo);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  absl::StatusOr<Result> Exec(const std::string& sql, const Params& params = {});
  absl::Status Run(const std::string& sql, const Params& params = {});
  // `copy_sql` is a COPY ... FROM STDIN; `data` is everything the server reads
  // (for FORMAT binary: the header, the tuples and the trailer).
  absl::Status CopyIn(const std::string& copy_sql, std::string_view data);
  // Whether the connection is gone (the server went away): a pool drops it.
  bool broken() const;
  PGconn* raw() { return conn_; }

 private:
  explicit Connection(PGconn* conn) : conn_(conn) {}
  absl::Status ErrorOf(PGresult* r) const;
  PGconn* conn_;
};
using ConnectionPtr = std::unique_ptr<Connection>;

// Connections for reuse; one is taken for a call and handed back after (unless broken).
class Pool {
 public:
  Pool(std::string conninfo, int keep) : conninfo_(std::move(conninfo)), keep_(keep) {}

  class Lease {
   public:
    Lease(Pool* pool, ConnectionPtr c) : pool_(pool), c_(std::move(c)) {}
    Lease(Lease&&) = default;
    ~Lease();
    Connection& operator*() { return *c_; }
    Connection* operator->() { return c_.get(); }

   private:
    Pool* pool_;
    ConnectionPtr c_;
  };
  absl::StatusOr<Lease> Get();

 private:
  void Put(ConnectionPtr c);
  std::string conninfo_;
  int keep_;
  std::mutex mu_;
  std::vector<ConnectionPtr> idle_;
};

// BEGIN ... COMMIT, rolled back unless Commit() succeeded.
class Transaction {
 public:
  explicit Transaction(Connection& c, const char* begin = "BEGIN");
  ~Transaction();
  const absl::Status& begin_status() const { return begin_; }
  absl::Status Commit();

 private:
  Connection& c_;
  absl::Status begin_;
  bool done_ = false;
};

// A text[] literal ({"a","b"}) for a parameter.
std::string ArrayLiteral(const std::vector<std::string>& values);

// Refuses a password inside a conninfo; other parse errors are reported too.
absl::Status CheckNoPassword(const std::string& conninfo);

}  // namespace egressguard::store::pg
