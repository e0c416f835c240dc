#pragma once
// A real PostgreSQL server for tests: initdb into a temporary directory, postgres
// listening only on a Unix socket in that directory, torn down (and the directory
// removed) when the object goes. As root it runs as the `postgres` user (the server
// refuses to run as root). Debian's `postgresql` package provides the binaries.

#include <sys/types.h>

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace egressguard::testing {

class PgServer {
 public:
  // The directory holding initdb and postgres: $EGRESSGUARD_PG_BINDIR, else the
  // newest /usr/lib/postgresql/*/bin. Empty when none is installed.
  static std::string FindBinDir();
  // `durable`: fsync and synchronous commit on, as a production server runs (for
  // benchmarks); off by default (tests: many commits, nothing to survive a power loss).
  static absl::StatusOr<std::unique_ptr<PgServer>> Start(bool durable = false);
  ~PgServer();
  PgServer(const PgServer&) = delete;
  PgServer& operator=(const PgServer&) = delete;

  // A libpq URI for `database` on this server (socket directory as host).
  std::string Uri(const std::string& database) const;
  // Creates a fresh, empty database and returns its name.
  absl::StatusOr<std::string> CreateDatabase();
  // Runs SQL (several statements allowed) as the superuser in `database`.
  absl::Status Exec(const std::string& database, const std::string& sql);
  // Stops the server (fast shutdown) / starts it again on the same data directory.
  absl::Status Stop();
  absl::Status Restart();

 private:
  PgServer() = default;
  absl::Status Launch();
  std::string bin_;
  std::string dir_;
  uid_t uid_ = 0;
  gid_t gid_ = 0;
  bool drop_privileges_ = false;
  bool durable_ = false;
  pid_t pid_ = -1;
  int next_db_ = 0;
};

// One server per test process, started by the first caller; nullptr with `why_not`
// set when it cannot start (no binaries installed: tests then skip with that).
PgServer* SharedPgServer(std::string* why_not);

}  // namespace egressguard::testing
