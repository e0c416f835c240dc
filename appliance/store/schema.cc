#include "appliance/store/schema.h"

#include <fmt/format.h>

#include <string>
#include <vector>

namespace egressguard::store {

namespace {

// Append only: a released migration is never edited, a fix is a new migration.
const std::vector<std::string>& Migrations() {
  static const std::vector<std::string> kMigrations = {
      // 1: verdicts, hash-chained in seq order. Columns beside `body` are copies of
      // fields of the serialized Verdict, kept for the indexes; Verify checks they agree.
      R"sql(
CREATE TABLE verdicts (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  time_us INTEGER NOT NULL,
  received_us INTEGER NOT NULL,
  appliance TEXT NOT NULL,
  client_address TEXT NOT NULL,
  workload TEXT NOT NULL,
  host TEXT NOT NULL,
  action INTEGER NOT NULL,
  rule_pack_version TEXT NOT NULL,
  bytes_out INTEGER NOT NULL,
  bytes_in INTEGER NOT NULL,
  body BLOB NOT NULL,
  prev_hash BLOB NOT NULL,
  hash BLOB NOT NULL
);
CREATE INDEX verdicts_time ON verdicts(time_us);
CREATE INDEX verdicts_host ON verdicts(host, time_us);
CREATE INDEX verdicts_client ON verdicts(client_address, time_us);
CREATE INDEX verdicts_workload ON verdicts(workload, time_us);
CREATE INDEX verdicts_action ON verdicts(action, time_us);
CREATE INDEX verdicts_pack ON verdicts(rule_pack_version, time_us);
-- One row per distinct (verdict, category) [kind 1] and (verdict, rule id) [kind 2]:
-- a category or rule filter walks this index in time order instead of the verdicts.
CREATE TABLE verdict_tags (
  kind INTEGER NOT NULL,
  value TEXT NOT NULL,
  time_us INTEGER NOT NULL,
  seq INTEGER NOT NULL,
  PRIMARY KEY (kind, value, time_us, seq)
) WITHOUT ROWID;
-- Per chain: the hash before its first remaining row (moves with retention) and
-- its last row, so a deleted tail shows too.
CREATE TABLE chain_heads (
  chain TEXT PRIMARY KEY,
  anchor_hash BLOB NOT NULL,
  head_seq INTEGER NOT NULL,
  head_hash BLOB NOT NULL
);
INSERT INTO chain_heads VALUES ('verdicts', zeroblob(32), 0, zeroblob(32));
)sql",
      // 2: the audit trail, hash-chained like the verdicts.
      R"sql(
CREATE TABLE audit (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  time_us INTEGER NOT NULL,
  actor TEXT NOT NULL,
  role TEXT NOT NULL,
  method TEXT NOT NULL,
  allowed INTEGER NOT NULL,
  detail TEXT NOT NULL,
  prev_hash BLOB NOT NULL,
  hash BLOB NOT NULL
);
CREATE INDEX audit_actor ON audit(actor, seq);
INSERT INTO chain_heads VALUES ('audit', zeroblob(32), 0, zeroblob(32));
)sql",
      // 3: rule packs and the activation history (the active pack is the last row).
      R"sql(
CREATE TABLE packs (
  version TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  body BLOB NOT NULL,
  sha256 TEXT NOT NULL,
  author TEXT NOT NULL,
  reason TEXT NOT NULL,
  pushed_us INTEGER NOT NULL,
  rule_count INTEGER NOT NULL
);
CREATE TABLE activations (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  version TEXT NOT NULL REFERENCES packs(version),
  mode INTEGER NOT NULL,
  kind TEXT NOT NULL,                -- 'activate' or 'rollback' (undoes the last activation)
  actor TEXT NOT NULL,
  reason TEXT NOT NULL,
  time_us INTEGER NOT NULL
);
)sql",
      // 4: the host, client and workload keys leave the verdicts' indexes for
      // verdict_keys. Those keys land all over their trees, so each commit wrote
      // about one page per verdict to each index; verdict_keys is filled by the writer
      // in sorted bulk every so many rows instead, and queries read the rows past
      // key_index.upto_seq (not keyed yet) from verdicts directly. Empty values are
      // not keyed: a filter never asks for them.
      R"sql(
CREATE TABLE verdict_keys (
  kind INTEGER NOT NULL,             -- 1 host, 2 client_address, 3 workload
  value TEXT NOT NULL,
  time_us INTEGER NOT NULL,
  seq INTEGER NOT NULL,
  PRIMARY KEY (kind, value, time_us, seq)
) WITHOUT ROWID;
CREATE TABLE key_index (
  one INTEGER PRIMARY KEY CHECK (one = 1),
  upto_seq INTEGER NOT NULL          -- every verdict with seq <= upto_seq is in verdict_keys
);
INSERT INTO verdict_keys
  SELECT 1, host, time_us, seq FROM verdicts WHERE host != ''
  UNION ALL SELECT 2, client_address, time_us, seq FROM verdicts WHERE client_address != ''
  UNION ALL SELECT 3, workload, time_us, seq FROM verdicts WHERE workload != ''
  ORDER BY 1, 2, 3, 4;
INSERT INTO key_index SELECT 1, COALESCE(MAX(seq), 0) FROM verdicts;
DROP INDEX verdicts_host;
DROP INDEX verdicts_client;
DROP INDEX verdicts_workload;
)sql",
      // 5: hourly rollups for Stats (see internal.h): per hour of the verdict's time x
      // action, category, host, workload, workload x host: verdicts and bytes. Ingest
      // keeps them in its transaction; Stats over a time range on whole hours reads
      // them instead of every verdict.
      R"sql(
CREATE TABLE stats_hourly (
  kind INTEGER NOT NULL,             -- 1 action, 2 category, 3 host, 4 workload, 5 workload x host
  hour INTEGER NOT NULL,             -- floor(time_us / 3600000000)
  key1 TEXT NOT NULL,
  key2 TEXT NOT NULL,                -- the host of kind 5, else ''
  verdicts INTEGER NOT NULL,
  bytes_out INTEGER NOT NULL,
  bytes_in INTEGER NOT NULL,
  PRIMARY KEY (kind, hour, key1, key2)
) WITHOUT ROWID;
INSERT INTO stats_hourly
SELECT 1, ((v.time_us - (((v.time_us % 3600000000) + 3600000000) % 3600000000)) / 3600000000), CAST(v.action AS TEXT), '', COUNT(*), SUM(v.bytes_out), SUM(v.bytes_in) FROM verdicts v GROUP BY 1, 2, 3, 4
UNION ALL SELECT 2, ((v.time_us - (((v.time_us % 3600000000) + 3600000000) % 3600000000)) / 3600000000), t.value, '', COUNT(*), SUM(v.bytes_out), SUM(v.bytes_in) FROM verdict_tags t JOIN verdicts v ON v.seq = t.seq WHERE t.kind = 1 GROUP BY 1, 2, 3, 4
UNION ALL SELECT 3, ((v.time_us - (((v.time_us % 3600000000) + 3600000000) % 3600000000)) / 3600000000), v.host, '', COUNT(*), SUM(v.bytes_out), SUM(v.bytes_in) FROM verdicts v GROUP BY 1, 2, 3, 4
UNION ALL SELECT 4, ((v.time_us - (((v.time_us % 3600000000) + 3600000000) % 3600000000)) / 3600000000), v.workload, '', COUNT(*), SUM(v.bytes_out), SUM(v.bytes_in) FROM verdicts v GROUP BY 1, 2, 3, 4
UNION ALL SELECT 5, ((v.time_us - (((v.time_us % 3600000000) + 3600000000) % 3600000000)) / 3600000000), v.workload, v.host, COUNT(*), SUM(v.bytes_out), SUM(v.bytes_in) FROM verdicts v GROUP BY 1, 2, 3, 4;
)sql",
      // 6: the daily tier of the rollups (internal.h, kDailyKind): kinds 11-15 with the
      // day number in `hour`, for the days before closed_day. The days before the
      // newest one with verdicts are closed here from the hourly rows; ingest closes
      // the following ones as the store's clock passes them.
      R"sql(
CREATE TABLE stats_days (
  one INTEGER PRIMARY KEY CHECK (one = 1),
  closed_day INTEGER NOT NULL
);
-- Closed: the days before the newest day with verdicts (none in an empty store; the
-- first ingest closes the days before its own).
INSERT INTO stats_days SELECT 1, COALESCE(MAX((hour - (((hour % 24) + 24) % 24)) / 24), -2147483648) FROM stats_hourly;
INSERT INTO stats_hourly (kind, hour, key1, key2, verdicts, bytes_out, bytes_in)
SELECT kind + 10, ((hour - (((hour % 24) + 24) % 24)) / 24), key1, key2, SUM(verdicts), SUM(bytes_out), SUM(bytes_in)
FROM stats_hourly WHERE kind < 10 AND hour < (SELECT closed_day * 24 FROM stats_days) GROUP BY 1, 2, 3, 4;
)sql",
  };
  return kMigrations;
}

}  // namespace

int LatestSchemaVersion() { return static_cast<int>(Migrations().size()); }

absl::StatusOr<int> SchemaVersion(Database& db) {
  auto st = db.Prepare("PRAGMA user_version");
  if (!st.ok()) return st.status();
  auto row = st->Step();
  if (!row.ok()) return row.status();
  return *row ? static_cast<int>(st->Int(0)) : 0;
}

absl::Status Migrate(Database& db, int target) {
  const int latest = LatestSchemaVersion();
  if (target < 0) target = latest;
  if (target > latest) return absl::InvalidArgumentError(fmt::format("no schema version {}", target));
  auto current = SchemaVersion(db);
  if (!current.ok()) return current.status();
  if (*current > latest) {
    return absl::FailedPreconditionError(fmt::format(
        "database schema version {} is newer than this build knows ({}): upgrade egressguard", *current, latest));
  }
  for (int v = *current; v < target; ++v) {
    Transaction tx(db);
    if (!tx.begin_status().ok()) return tx.begin_status();
    if (auto s = db.Exec(Migrations()[static_cast<size_t>(v)]); !s.ok()) {
      return absl::InternalError(fmt::format("migration {}: {}", v + 1, std::string(s.message())));
    }
    // user_version takes no bound parameter; the value is our own integer.
    if (auto s = db.Exec(fmt::format("PRAGMA user_version={}", v + 1)); !s.ok()) return s;
    if (auto s = tx.Commit(); !s.ok()) return s;
  }
  return absl::OkStatus();
}

}  // namespace egressguard::store
