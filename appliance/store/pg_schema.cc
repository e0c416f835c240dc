#include "appliance/store/pg_schema.h"

#include <fmt/format.h>

#include <string>
#include <vector>

namespace egressguard::store::pg {

namespace {

// Append only: a released migration is never edited, a fix is a new migration.
const std::vector<std::string>& Migrations() {
  static const std::vector<std::string> kMigrations = {
      // 1: the store as on sqlite, shaped for PostgreSQL.
      // verdicts: hash-chained in seq order, partitioned by the month the store
      // received them (partitions are made by the writer as it needs them), so
      // retention drops whole months. The columns beside `body` are copies of fields
      // of the serialized Verdict for the filters; categories and rule_ids are the
      // verdict's distinct finding categories ("" when it has none) and rule ids, GIN
      // indexed for the category and rule filters. Verify checks every copy. The
      // primary key must hold the partition key; verdict_ids keeps the ids unique
      // across partitions (ingest is idempotent on them).
      R"sql(
CREATE TABLE verdicts (
  seq bigint NOT NULL,
  id text NOT NULL,
  time_us bigint NOT NULL,
  received_us bigint NOT NULL,
  appliance text NOT NULL,
  client_address text NOT NULL,
  workload text NOT NULL,
  host text NOT NULL,
  action integer NOT NULL,
  rule_pack_version text NOT NULL,
  bytes_out bigint NOT NULL,
  bytes_in bigint NOT NULL,
  categories text[] NOT NULL,
  rule_ids text[] NOT NULL,
  body bytea NOT NULL,
  prev_hash bytea NOT NULL,
  hash bytea NOT NULL,
  PRIMARY KEY (seq, received_us)
) PARTITION BY RANGE (received_us);
CREATE INDEX verdicts_time ON verdicts (time_us, seq);
CREATE INDEX verdicts_host ON verdicts (host, time_us, seq);
CREATE INDEX verdicts_client ON verdicts (client_address, time_us, seq);
CREATE INDEX verdicts_workload ON verdicts (workload, time_us, seq);
CREATE INDEX verdicts_action ON verdicts (action, time_us, seq);
CREATE INDEX verdicts_pack ON verdicts (rule_pack_version, time_us, seq);
CREATE INDEX verdicts_appliance ON verdicts (appliance, time_us, seq);
CREATE INDEX verdicts_categories ON verdicts USING gin (categories);
CREATE INDEX verdicts_rules ON verdicts USING gin (rule_ids);
CREATE TABLE verdict_partitions (
  name text PRIMARY KEY,
  from_us bigint NOT NULL,
  to_us bigint NOT NULL
);
CREATE TABLE verdict_ids (
  id text PRIMARY KEY,
  seq bigint NOT NULL
);
CREATE INDEX verdict_ids_seq ON verdict_ids (seq);
-- Per chain: the hash before its first remaining row (moves with retention), its
-- last row (so a deleted tail shows), and the last receive time (kept monotonic in
-- seq across replicas whose clocks differ, so retention deletes a prefix).
CREATE TABLE chain_heads (
  chain text PRIMARY KEY,
  anchor_hash bytea NOT NULL,
  head_seq bigint NOT NULL,
  head_hash bytea NOT NULL,
  head_received_us bigint NOT NULL DEFAULT 0
);
INSERT INTO chain_heads (chain, anchor_hash, head_seq, head_hash) VALUES
  ('verdicts', decode(repeat('00', 32), 'hex'), 0, decode(repeat('00', 32), 'hex')),
  ('audit', decode(repeat('00', 32), 'hex'), 0, decode(repeat('00', 32), 'hex'));
CREATE TABLE audit (
  seq bigint PRIMARY KEY,
  time_us bigint NOT NULL,
  actor text NOT NULL,
  role text NOT NULL,
  method text NOT NULL,
  allowed boolean NOT NULL,
  detail text NOT NULL,
  prev_hash bytea NOT NULL,
  hash bytea NOT NULL
);
CREATE INDEX audit_actor ON audit (actor, seq);
CREATE INDEX audit_method ON audit (method, seq);
CREATE TABLE packs (
  version text PRIMARY KEY,
  name text NOT NULL,
  body bytea NOT NULL,
  sha256 text NOT NULL,
  author text NOT NULL,
  reason text NOT NULL,
  pushed_us bigint NOT NULL,
  rule_count integer NOT NULL
);
-- The active pack is the effective top of this history; its max(seq) is the
-- generation every replica polls for WatchActive.
CREATE TABLE activations (
  seq bigserial PRIMARY KEY,
  version text NOT NULL REFERENCES packs (version),
  mode integer NOT NULL,
  kind text NOT NULL,
  actor text NOT NULL,
  reason text NOT NULL,
  time_us bigint NOT NULL
);
)sql",
      // 2: hourly rollups for Stats (see internal.h), kept by ingest in its transaction.
      R"sql(
CREATE TABLE stats_hourly (
  kind integer NOT NULL,
  hour bigint NOT NULL,
  key1 text NOT NULL,
  key2 text NOT NULL,
  verdicts bigint NOT NULL,
  bytes_out bigint NOT NULL,
  bytes_in bigint NOT NULL,
  PRIMARY KEY (kind, hour, key1, key2)
);
INSERT INTO stats_hourly
SELECT 1, ((v.time_us - (((v.time_us % 3600000000) + 3600000000) % 3600000000)) / 3600000000), v.action::text, '', COUNT(*)::bigint, SUM(v.bytes_out)::bigint, SUM(v.bytes_in)::bigint FROM verdicts v GROUP BY 1, 2, 3, 4
UNION ALL SELECT 2, ((v.time_us - (((v.time_us % 3600000000) + 3600000000) % 3600000000)) / 3600000000), t.value, '', COUNT(*)::bigint, SUM(v.bytes_out)::bigint, SUM(v.bytes_in)::bigint FROM verdicts v CROSS JOIN LATERAL unnest(v.categories) AS t(value) GROUP BY 1, 2, 3, 4
UNION ALL SELECT 3, ((v.time_us - (((v.time_us % 3600000000) + 3600000000) % 3600000000)) / 3600000000), v.host, '', COUNT(*)::bigint, SUM(v.bytes_out)::bigint, SUM(v.bytes_in)::bigint FROM verdicts v GROUP BY 1, 2, 3, 4
UNION ALL SELECT 4, ((v.time_us - (((v.time_us % 3600000000) + 3600000000) % 3600000000)) / 3600000000), v.workload, '', COUNT(*)::bigint, SUM(v.bytes_out)::bigint, SUM(v.bytes_in)::bigint FROM verdicts v GROUP BY 1, 2, 3, 4
UNION ALL SELECT 5, ((v.time_us - (((v.time_us % 3600000000) + 3600000000) % 3600000000)) / 3600000000), v.workload, v.host, COUNT(*)::bigint, SUM(v.bytes_out)::bigint, SUM(v.bytes_in)::bigint FROM verdicts v GROUP BY 1, 2, 3, 4;
)sql",
      // 3: less index upkeep per ingested verdict (measured: the COPY under the chain
      // lock was mostly index upkeep). verdict_ids (seq) served only retention's delete
      // of the ids up to a seq, once a day: a scan there costs less than one more B-tree
      // insert per verdict. stats_hourly: every batch adds to the rows of its hours, an
      // UPDATE each; with free room in the page the new row version stays on it (a HOT
      // update) and the primary key is not touched.
      R"sql(
DROP INDEX verdict_ids_seq;
ALTER TABLE stats_hourly SET (fillfactor = 70);
)sql",
      // 4: the daily tier of the rollups (internal.h, kDailyKind): kinds 11-15 with the
      // day number in `hour`, for the days before closed_day. The days before the
      // newest one with verdicts are closed here from the hourly rows; ingest closes
      // the following ones as the store's clock passes them.
      R"sql(
CREATE TABLE stats_days (
  one integer PRIMARY KEY CHECK (one = 1),
  closed_day bigint NOT NULL
);
-- Closed: the days before the newest day with verdicts (none in an empty store; the
-- first ingest closes the days before its own).
INSERT INTO stats_days SELECT 1, COALESCE(MAX((hour - (((hour % 24) + 24) % 24)) / 24), -2147483648) FROM stats_hourly;
INSERT INTO stats_hourly (kind, hour, key1, key2, verdicts, bytes_out, bytes_in)
SELECT kind + 10, ((hour - (((hour % 24) + 24) % 24)) / 24), key1, key2, SUM(verdicts)::bigint, SUM(bytes_out)::bigint, SUM(bytes_in)::bigint
FROM stats_hourly WHERE kind < 10 AND hour < (SELECT closed_day * 24 FROM stats_days) GROUP BY 1, 2, 3, 4;
)sql",
  };
  return kMigrations;
}

}  // namespace

int LatestSchemaVersion() { return static_cast<int>(Migrations().size()); }

absl::StatusOr<int> SchemaVersion(Connection& c) {
  auto exists = c.Exec("SELECT to_regclass('schema_version') IS NOT NULL");
  if (!exists.ok()) return exists.status();
  if (exists->Text(0, 0) != "t") return 0;
  auto r = c.Exec("SELECT version FROM schema_version");
  if (!r.ok()) return r.status();
  return r->rows() == 0 ? 0 : static_cast<int>(r->Int(0, 0));
}

absl::StatusOr<int> Migrate(Connection& c, int target) {
  const int latest = LatestSchemaVersion();
  if (target < 0) target = latest;
  if (target > latest) return absl::InvalidArgumentError(fmt::format("no schema version {}", target));
  int before = -1;
  for (;;) {
    Transaction tx(c);
    if (!tx.begin_status().ok()) return tx.begin_status();
    // Replicas starting at once: the first applies, the others wait here and then
    // find the database current.
    if (auto s = c.Run("SELECT pg_advisory_xact_lock($1)", {Param::Int(kLockMigrate)}); !s.ok()) return s;
    if (auto s = c.Run("CREATE TABLE IF NOT EXISTS schema_version (one integer PRIMARY KEY CHECK (one = 1), "
                       "version integer NOT NULL)");
        !s.ok()) {
      return s;
    }
    auto current = SchemaVersion(c);
    if (!current.ok()) return current.status();
    if (before < 0) before = *current;
    if (*current > latest) {
      return absl::FailedPreconditionError(fmt::format(
          "database schema version {} is newer than this build knows ({}): upgrade egressguard", *current, latest));
    }
    if (*current >= target) {
      if (auto s = tx.Commit(); !s.ok()) return s;
      return before;
    }
    if (auto s = c.Run(Migrations()[static_cast<size_t>(*current)]); !s.ok()) {
      return absl::InternalError(fmt::format("migration {}: {}", *current + 1, std::string(s.message())));
    }
    if (auto s = c.Run("INSERT INTO schema_version (one, version) VALUES (1, $1) "
                       "ON CONFLICT (one) DO UPDATE SET version = EXCLUDED.version",
                       {Param::Int(*current + 1)});
        !s.ok()) {
      return s;
    }
    if (auto s = tx.Commit(); !s.ok()) return s;
  }
}

}  // namespace egressguard::store::pg
