#include "tests/support/pg_server.h"

#include <fcntl.h>
#include <libpq-fe.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <thread>
#include <vector>

namespace egressguard::testing {

namespace {

constexpr int kPort = 5432;  // only names the socket file (.s.PGSQL.5432) in our own directory

// fork + exec `argv`, output to `log`, as uid/gid when `drop`. Returns the pid.
pid_t Spawn(const std::vector<std::string>& argv, const std::string& log, bool drop, uid_t uid, gid_t gid) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const pid_t pid = fork();
  if (pid != 0) return pid;
  // Child: async-signal-safe calls only until exec.
  const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (fd >= 0) {
    dup2(fd, 1);
    dup2(fd, 2);
  }
  if (drop && (setgid(gid) != 0 || setuid(uid) != 0)) _exit(126);
  // A test process killed before its destructors run (a crash, SIGPIPE) takes its
  // server down with it (SIGINT: fast shutdown). Set after setuid, which clears it.
  prctl(PR_SET_PDEATHSIG, SIGINT);
  execv(args[0], args.data());
  _exit(127);
}

}  // namespace

std::string PgServer::FindBinDir() {
  namespace fs = std::filesystem;
  if (const char* env = std::getenv("EGRESSGUARD_PG_BINDIR"); env && *env) {
    return fs::exists(fs::path(env) / "postgres") ? env : "";
  }
  std::error_code ec;
  std::string best;
  int best_version = -1;
  for (const auto& entry : fs::directory_iterator("/usr/lib/postgresql", ec)) {
    const auto bin = entry.path() / "bin";
    if (!fs::exists(bin / "initdb") || !fs::exists(bin / "postgres")) continue;
    const int version = std::atoi(entry.path().filename().c_str());
    if (version > best_version) {
      best_version = version;
      best = bin.string();
    }
  }
  return best;
}

absl::StatusOr<std::unique_ptr<PgServer>> PgServer::Start(bool durable) {
  std::unique_ptr<PgServer> s(new PgServer());
  s->durable_ = durable;
  s->bin_ = FindBinDir();
  if (s->bin_.empty()) {
    return absl::NotFoundError(
        "PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin/initdb; Debian package `postgresql`, "
        "installed by scripts/install-deps.sh; or set EGRESSGUARD_PG_BINDIR)");
  }
  std::string tmpl = (std::filesystem::temp_directory_path() / "egressguard-pg-XXXXXX").string();
  if (::mkdtemp(tmpl.data()) == nullptr) return absl::InternalError("mkdtemp failed");
  s->dir_ = tmpl;
  if (geteuid() == 0) {
    // postgres refuses to run as root.
    const passwd* pw = getpwnam("postgres");
    if (pw == nullptr) return absl::FailedPreconditionError("running as root and there is no `postgres` user");
    s->uid_ = pw->pw_uid;
    s->gid_ = pw->pw_gid;
    s->drop_privileges_ = true;
    if (chown(s->dir_.c_str(), s->uid_, s->gid_) != 0) return absl::InternalError("chown of the server directory");
  }
  const std::string data = s->dir_ + "/data";
  const pid_t initdb = Spawn({s->bin_ + "/initdb", "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8",
                              "--no-locale", "--no-sync"},
                             s->dir_ + "/initdb.log", s->drop_privileges_, s->uid_, s->gid_);
  int status = 0;
  if (initdb < 0 || waitpid(initdb, &status, 0) != initdb || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return absl::InternalError("initdb failed; see " + s->dir_ + "/initdb.log");
  }
  if (auto st = s->Launch(); !st.ok()) return st;
  return s;
}

absl::Status PgServer::Launch() {
  // No TCP at all: the socket lives in our directory. fsync off: a test server's data
  // need not survive a power loss, and the tests run many commits.
  std::vector<std::string> args = {bin_ + "/postgres", "-D", dir_ + "/data", "-k", dir_, "-p", std::to_string(kPort),
                                   "-c", "listen_addresses=", "-c", "max_connections=200"};
  if (!durable_) {
    for (const char* o : {"fsync=off", "synchronous_commit=off", "full_page_writes=off"}) {
      args.push_back("-c");
      args.push_back(o);
    }
  } else {
    // Room for a bulk load between checkpoints (the default 1 GB checkpoints every
    // few seconds of ingest and writes each page again after it).
    args.push_back("-c");
    args.push_back("max_wal_size=8GB");
    args.push_back("-c");
    args.push_back("shared_buffers=512MB");
  }
  pid_ = Spawn(args, dir_ + "/postgres.log", drop_privileges_, uid_, gid_);
  if (pid_ < 0) return absl::InternalError("fork failed");
  const std::string uri = Uri("postgres");
  for (int i = 0; i < 300; ++i) {
    if (PQping(uri.c_str()) == PQPING_OK) return absl::OkStatus();
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return absl::InternalError("postgres exited at start; see " + dir_ + "/postgres.log");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return absl::DeadlineExceededError("postgres did not answer within 30 s; see " + dir_ + "/postgres.log");
}

absl::Status PgServer::Stop() {
  if (pid_ <= 0) return absl::OkStatus();
  kill(pid_, SIGINT);  // fast shutdown: ends sessions, no checkpoint wait for clients
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
  return absl::OkStatus();
}

absl::Status PgServer::Restart() {
  if (pid_ > 0) return absl::FailedPreconditionError("the server is running");
  return Launch();
}

PgServer::~PgServer() {
  (void)Stop();
  if (!dir_.empty() && std::getenv("EGRESSGUARD_KEEP_PG") == nullptr) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
}

std::string PgServer::Uri(const std::string& database) const {
  // The socket directory goes in the host parameter; percent-encode its slashes.
  std::string host;
  for (char c : dir_) host += c == '/' ? std::string("%2F") : std::string(1, c);
  return "postgresql://postgres@" + host + ":" + std::to_string(kPort) + "/" + database;
}

absl::StatusOr<std::string> PgServer::CreateDatabase() {
  const std::string name = "t" + std::to_string(getpid()) + "_" + std::to_string(next_db_++);
  if (auto s = Exec("postgres", "CREATE DATABASE " + name); !s.ok()) return s;
  return name;
}

absl::Status PgServer::Exec(const std::string& database, const std::string& sql) {
  PGconn* c = PQconnectdb(Uri(database).c_str());
  if (PQstatus(c) != CONNECTION_OK) {
    std::string msg = PQerrorMessage(c);
    PQfinish(c);
    return absl::UnavailableError(msg);
  }
  PGresult* r = PQexec(c, sql.c_str());
  const auto st = PQresultStatus(r);
  absl::Status out = absl::OkStatus();
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) out = absl::InternalError(PQresultErrorMessage(r));
  PQclear(r);
  PQfinish(c);
  return out;
}

PgServer* SharedPgServer(std::string* why_not) {
  static std::mutex mu;
  static std::unique_ptr<PgServer> server;
  static std::string error;
  static bool tried = false;
  std::lock_guard lock(mu);
  if (!tried) {
    tried = true;
    auto s = PgServer::Start();
    if (s.ok()) {
      server = std::move(*s);
    } else {
      error = std::string(s.status().message());
    }
  }
  if (!server && why_not) *why_not = error;
  return server.get();
}

}  // namespace egressguard::testing
