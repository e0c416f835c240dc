#include "appliance/store/pg.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

namespace egressguard::store::pg {

namespace {

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

Result& Result::operator=(Result&& o) noexcept {
  if (this != &o) {
    if (r_) PQclear(r_);
    r_ = o.r_;
    o.r_ = nullptr;
  }
  return *this;
}

Result::~Result() {
  if (r_) PQclear(r_);
}

int Result::rows() const { return r_ ? PQntuples(r_) : 0; }
bool Result::IsNull(int row, int col) const { return PQgetisnull(r_, row, col) != 0; }

std::string Result::Text(int row, int col) const {
  return std::string(PQgetvalue(r_, row, col), static_cast<size_t>(PQgetlength(r_, row, col)));
}

int64_t Result::Int(int row, int col) const {
  if (IsNull(row, col)) return 0;
  return std::strtoll(PQgetvalue(r_, row, col), nullptr, 10);
}

std::string Result::Bytes(int row, int col) const {
  const char* v = PQgetvalue(r_, row, col);
  const size_t n = static_cast<size_t>(PQgetlength(r_, row, col));
  // bytea_output = hex (the default since PostgreSQL 9.0, and set by Connection::Open).
  if (n < 2 || v[0] != '\\' || v[1] != 'x' || n % 2 != 0) return {};
  std::string out((n - 2) / 2, '\0');
  for (size_t i = 0; i < out.size(); ++i) {
    const int hi = HexDigit(v[2 + 2 * i]), lo = HexDigit(v[3 + 2 * i]);
    if (hi < 0 || lo < 0) return {};
    out[i] = static_cast<char>(hi << 4 | lo);
  }
  return out;
}

std::vector<std::string> Result::TextArray(int row, int col) const {
  // The text form of a one-dimensional array: {a,"b c",""}; quoted elements escape "
  // and \ with a backslash.
  std::vector<std::string> out;
  const std::string s = Text(row, col);
  if (s.size() < 2 || s.front() != '{' || s.back() != '}') return out;
  size_t i = 1;
  const size_t end = s.size() - 1;
  while (i < end) {
    std::string elem;
    if (s[i] == '"') {
      ++i;
      while (i < end && s[i] != '"') {
        if (s[i] == '\\' && i + 1 < end) ++i;
        elem.push_back(s[i++]);
      }
      ++i;  // closing quote
    } else {
      while (i < end && s[i] != ',') elem.push_back(s[i++]);
    }
    out.push_back(std::move(elem));
    if (i < end && s[i] == ',') ++i;
  }
  return out;
}

absl::StatusOr<ConnectionPtr> Connection::Open(const std::string& conninfo) {
  // Keywords are applied in order and dbname expands the URI in place, so the URI's
  // own connect_timeout, if it has one, overrides this default.
  const char* keys[] = {"connect_timeout", "dbname", nullptr};
  const char* values[] = {"5", conninfo.c_str(), nullptr};
  PGconn* c = PQconnectdbParams(keys, values, 1);
  if (c == nullptr) return absl::ResourceExhaustedError("libpq: out of memory");
  if (PQstatus(c) != CONNECTION_OK) {
    std::string msg = PQerrorMessage(c);
    while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
    PQfinish(c);
    return absl::UnavailableError(fmt::format("cannot connect to PostgreSQL: {}", msg));
  }
  ConnectionPtr conn(new Connection(c));
  // NOTICEs ("relation ... already exists, skipping") would go to stderr unasked;
  // errors come back as results.
  PQsetNoticeProcessor(c, [](void*, const char*) {}, nullptr);
  // Result::Bytes reads the hex form; a server or role default of "escape" would
  // otherwise garble every hash.
  if (PQsetClientEncoding(c, "UTF8") != 0) return absl::InternalError("PostgreSQL: cannot set client_encoding UTF8");
  if (auto s = conn->Run("SET bytea_output = 'hex'"); !s.ok()) return s;
  return conn;
}

Connection::~Connection() { PQfinish(conn_); }

bool Connection::broken() const { return PQstatus(conn_) != CONNECTION_OK; }

absl::Status Connection::ErrorOf(PGresult* r) const {
  std::string msg = r ? PQresultErrorMessage(r) : PQerrorMessage(conn_);
  while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
  const char* state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : nullptr;
  const std::string sqlstate = state ? state : "";
  msg = fmt::format("PostgreSQL: {}", msg);
  if (broken() || sqlstate.starts_with("08") || sqlstate.starts_with("57P")) return absl::UnavailableError(msg);
  if (sqlstate == "40001" || sqlstate == "40P01") return absl::AbortedError(msg);
  if (sqlstate == "23505") return absl::AlreadyExistsError(msg);
  return absl::InternalError(msg);
}

absl::StatusOr<Result> Connection::Exec(const std::string& sql, const Params& params) {
  std::vector<const char*> values(params.size());
  std::vector<int> lengths(params.size()), formats(params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    const Param& p = params[i];
    // A text parameter is a C string to libpq: a NUL would cut it short silently.
    if (!p.binary && std::memchr(p.value.data(), '\0', p.value.size()) != nullptr) {
      return absl::InvalidArgumentError(fmt::format("parameter ${} holds a NUL byte", i + 1));
    }
    values[i] = p.value.c_str();
    lengths[i] = static_cast<int>(p.value.size());
    formats[i] = p.binary ? 1 : 0;
  }
  // Without parameters: PQexec, which also runs several statements (migrations).
  PGresult* r = params.empty() ? PQexec(conn_, sql.c_str())
                               : PQexecParams(conn_, sql.c_str(), static_cast<int>(params.size()), nullptr,
                                              values.data(), lengths.data(), formats.data(), 0);
  const auto st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
    absl::Status err = ErrorOf(r);
    if (r) PQclear(r);
    return err;
  }
  return Result(r);
}

absl::Status Connection::Run(const std::string& sql, const Params& params) { return Exec(sql, params).status(); }

absl::Status Connection::CopyIn(const std::string& copy_sql, std::string_view data) {
  PGresult* r = PQexec(conn_, copy_sql.c_str());
  if (!r || PQresultStatus(r) != PGRES_COPY_IN) {
    absl::Status err = ErrorOf(r);
    if (r) PQclear(r);
    return err;
  }
  PQclear(r);
  // Blocking connection: PQputCopyData returns 1 once queued (or -1); in chunks so
  // libpq's buffer does not hold a second copy of the whole batch.
  constexpr size_t kChunk = 1 << 20;
  bool failed = false;
  for (size_t off = 0; off < data.size() && !failed; off += kChunk) {
    const size_t n = std::min(kChunk, data.size() - off);
    failed = PQputCopyData(conn_, data.data() + off, static_cast<int>(n)) != 1;
  }
  if (PQputCopyEnd(conn_, failed ? "egressguard: sending the COPY data failed" : nullptr) != 1) failed = true;
  // The COPY's own result, then the null that ends it.
  absl::Status status = absl::OkStatus();
  while ((r = PQgetResult(conn_)) != nullptr) {
    if (PQresultStatus(r) != PGRES_COMMAND_OK && status.ok()) status = ErrorOf(r);
    PQclear(r);
  }
  if (status.ok() && failed) status = absl::UnavailableError(fmt::format("PostgreSQL: COPY: {}", PQerrorMessage(conn_)));
  return status;
}

Pool::Lease::~Lease() {
  if (c_ && pool_) pool_->Put(std::move(c_));
}

absl::StatusOr<Pool::Lease> Pool::Get() {
  {
    std::lock_guard lock(mu_);
    while (!idle_.empty()) {
      ConnectionPtr c = std::move(idle_.back());
      idle_.pop_back();
      if (!c->broken()) return Lease(this, std::move(c));
    }
  }
  auto c = Connection::Open(conninfo_);
  if (!c.ok()) return c.status();
  return Lease(this, std::move(*c));
}

void Pool::Put(ConnectionPtr c) {
  // A connection left inside a transaction (an error path that returned early) is
  // not reused: its next user would run in that transaction.
  if (c->broken() || PQtransactionStatus(c->raw()) != PQTRANS_IDLE) return;
  std::lock_guard lock(mu_);
  if (static_cast<int>(idle_.size()) < keep_) idle_.push_back(std::move(c));
}

Transaction::Transaction(Connection& c, const char* begin) : c_(c), begin_(c.Run(begin)) {}

Transaction::~Transaction() {
  if (!done_ && begin_.ok()) (void)c_.Run("ROLLBACK");
}

absl::Status Transaction::Commit() {
  done_ = true;
  return c_.Run("COMMIT");
}

std::string ArrayLiteral(const std::vector<std::string>& values) {
  std::string out = "{";
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0) out.push_back(',');
    out.push_back('"');
    for (char c : values[i]) {
      if (c == '"' || c == '\\') out.push_back('\\');
      out.push_back(c);
    }
    out.push_back('"');
  }
  out.push_back('}');
  return out;
}

absl::Status CheckNoPassword(const std::string& conninfo) {
  char* err = nullptr;
  PQconninfoOption* opts = PQconninfoParse(conninfo.c_str(), &err);
  if (opts == nullptr) {
    std::string msg = err ? err : "out of memory";
    if (err) PQfreemem(err);
    while (!msg.empty() && msg.back() == '\n') msg.pop_back();
    return absl::InvalidArgumentError(fmt::format("bad PostgreSQL URI: {}", msg));
  }
  bool has_password = false;
  for (PQconninfoOption* o = opts; o->keyword != nullptr; ++o) {
    if (std::strcmp(o->keyword, "password") == 0 && o->val != nullptr && o->val[0] != '\0') has_password = true;
  }
  PQconninfoFree(opts);
  if (has_password) {
    return absl::InvalidArgumentError(
        "the PostgreSQL URI holds a password, which would show in process lists, shell history and logs: "
        "remove it and put it in a password file (PGPASSFILE, or passfile=FILE in the URI; mode 0600), "
        "or authenticate with a client certificate (sslcert=, sslkey=)");
  }
  return absl::OkStatus();
}

}  // namespace egressguard::store::pg
