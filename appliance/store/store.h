#pragma once
// The compliance store's data: verdicts, rule packs, the audit trail. Where they live
// is a backend (backend.h): one sqlite file (WAL; every write on the store's own
// writer thread, reads on a pool of reader connections beside it), or a PostgreSQL
// database shared by several store replicas (pg_backend.h). Every write is a
// transaction and the caller waits for its commit. Verdict and audit rows are
// hash-chained (see chain.h), with the same values on both backends.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include "egressguard/rules/v1/rules.pb.h"
#include "egressguard/v1/audit.pb.h"
#include "egressguard/v1/rule_admin.pb.h"
#include "egressguard/v1/store.pb.h"
#include "egressguard/v1/verdict.pb.h"

namespace egressguard::store {

class Backend;

struct AuditEntry {
  std::string actor;
  std::string role;
  std::string method;
  std::string detail;  // never raw PII: ids, versions, counts
  bool allowed = true;
};

struct StoreHealth {
  absl::Status read;   // the database file is there and answers a query
  absl::Status write;  // reads work and the last ingest commit succeeded
  // The last pass that moved new verdicts' host, client and workload keys into their
  // index succeeded. While it fails, filtered queries stay right but scan a growing tail.
  absl::Status index;
};

struct IngestResult {
  std::vector<std::string> acked;                // stored now or already before
  std::vector<v1::RejectedVerdict> rejected;
  uint64_t inserted = 0;                         // new rows
};

// What `store migrate --from FILE --to URI` copied.
struct CopyReport {
  uint64_t verdicts = 0;
  uint64_t audit = 0;
  uint64_t packs = 0;
  std::string verdict_head;  // hex hash of each chain's head, the same in both databases
  std::string audit_head;
};

class Store {
 public:
  struct Options {
    // A sqlite file path, or a postgresql:// (postgres://) URI: libpq's connection URI,
    // with sslmode, sslrootcert, sslcert/sslkey, passfile as its parameters. A password
    // inside the URI is refused (it would show in process lists and shell history):
    // give it in a password file (PGPASSFILE or passfile=) or use a client certificate.
    std::string path;
    int readers = 4;
    // Microseconds since the epoch; tests pin it to exercise retention.
    std::function<int64_t()> now_us;
    // "FULL": a commit, and so an ack that lets an appliance drop the verdict from its
    // spool, survives a power loss. "NORMAL" (WAL): survives a crash of this process,
    // but a power loss can undo the last commits; cheaper (no fsync per commit).
    std::string synchronous = "FULL";
    // The writer adds the host, client and workload keys of new verdicts to their
    // index (verdict_keys) once this many are waiting, in one sorted pass: each index
    // page is then written once per pass instead of about once per verdict. Queries
    // scan the waiting verdicts, so this also bounds that scan. Over 1 M verdicts
    // (store_bench, batches of 1000, a busy two-core machine) ingest took 17.4 / 16.0
    // / 14.7 CPU s at 16384 / 32768 / 65536; a host or client Query took ~6 ms (p50,
    // p99 13 ms) with 32,000 waiting, 4-8 ms (p99 up to 46 ms) with 65,000.
    int64_t key_index_rows = 32768;
    // PostgreSQL only: connections kept open for reuse, and how often the active-pack
    // generation is read from the database (activations made through other replicas
    // reach this one's WatchActive streams within that time).
    int pg_connections = 8;
    std::chrono::milliseconds pg_poll_interval{500};
  };
  static absl::StatusOr<std::unique_ptr<Store>> Open(const Options& options);
  // Brings a database's schema to this build's latest (creating it when empty) without
  // serving it, as `egressguard store migrate --db` does before a rollout; a database
  // newer than this build is refused. Returns {version before, version now}.
  static absl::StatusOr<std::pair<int, int>> MigrateSchema(const std::string& database);
  // Copies a sqlite store (at this build's schema) into an empty PostgreSQL database
  // in one transaction: verdicts, packs, activations and audit with their seq, receive
  // times and hashes, so both chains verify there with the same heads; the rollups are
  // rebuilt. The copy is checked with Verify before this returns.
  static absl::StatusOr<CopyReport> CopyIntoPostgres(const std::string& sqlite_path, const std::string& uri);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // Writes: queued to the writer thread; return once committed.
  absl::StatusOr<IngestResult> Ingest(std::vector<v1::Verdict> verdicts);
  absl::Status Audit(AuditEntry entry);
  absl::StatusOr<v1::PackInfo> PushPack(const rules::v1::RulePack& pack, const std::string& author,
                                        const std::string& reason);
  absl::StatusOr<v1::PackInfo> ActivatePack(const std::string& version, v1::PackMode mode, const AuditEntry& who,
                                            const std::string& reason);
  // Empty `to_version`: undo the last activation (back to the version before it).
  absl::StatusOr<v1::PackInfo> RollbackPack(const std::string& to_version, const AuditEntry& who,
                                            const std::string& reason);
  // Deletes the verdicts received more than `days` days ago (a prefix of the chain,
  // whose anchor moves past it) and audits it. Returns the number deleted.
  absl::StatusOr<uint64_t> ApplyRetention(int days, const std::string& actor);

  // Reads.
  absl::StatusOr<v1::QueryResponse> Query(const v1::QueryRequest& request);
  absl::StatusOr<v1::StatsResponse> Stats(const v1::StatsRequest& request);
  absl::StatusOr<v1::ListPacksResponse> ListPacks();
  // Empty version: the active pack (NOT_FOUND when none is active).
  absl::StatusOr<v1::GetPackResponse> GetPack(const std::string& version);
  absl::StatusOr<v1::DiffResponse> DiffPacks(const std::string& from, const std::string& to);
  absl::StatusOr<v1::ActivePack> Active();
  absl::StatusOr<v1::AuditListResponse> ListAudit(const v1::AuditListRequest& request);
  absl::StatusOr<v1::VerifyResponse> Verify();
  // Whether reads and writes work now (for grpc.health.v1).
  StoreHealth Health();
  // The newest verdict time (Unix seconds) in the last committed ingest; none yet:
  // nullopt. For the store-ingest-lag metric; lock-free.
  std::optional<int64_t> LastIngestedVerdictUnix() const;

  // Active-pack changes for WatchActive. The generation is the activation count.
  uint64_t active_generation() const;
  // Returns when the generation differs from `seen`, on Shutdown, or after `timeout`.
  void WaitActiveChange(uint64_t seen, std::chrono::milliseconds timeout);
  // Wakes every waiter for good (server shutdown).
  void Shutdown();
  bool shutting_down() const;

 private:
  explicit Store(std::unique_ptr<Backend> backend);
  std::unique_ptr<Backend> backend_;
};
using StorePtr = std::unique_ptr<Store>;

// Checks a pack's shape (version, rule ids, patterns, actions) without compiling
// it. Returns one message per problem; empty means it passed.
std::vector<std::string> CheckPackShape(const rules::v1::RulePack& pack);

}  // namespace egressguard::store
