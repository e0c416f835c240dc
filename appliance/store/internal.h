#pragma once
// What both storage backends share so that they store, hash and answer alike: the
// canonical content the chains cover, limits, page tokens, the activation stack and
// the retention anchor check. Internal to appliance/store.

#include <google/protobuf/message.h>
#include <google/protobuf/timestamp.pb.h>

#include <cstdint>
#include <map>
#include <optional>
#include <tuple>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "egressguard/v1/audit.pb.h"
#include "egressguard/v1/store.pb.h"
#include "egressguard/v1/verdict.pb.h"

namespace egressguard::store::internal {

inline constexpr size_t kMaxVerdictBytes = 256 * 1024;
inline constexpr size_t kMaxIdBytes = 128;
inline constexpr uint32_t kDefaultPage = 100;
inline constexpr uint32_t kMaxPage = 1000;

int64_t SystemNowUs();
int64_t ToUs(const google::protobuf::Timestamp& t);
google::protobuf::Timestamp FromUs(int64_t us);

std::string Deterministic(const google::protobuf::Message& m);
// Serializes deterministically into `out`; false when larger than `limit` bytes.
bool DeterministicInto(const google::protobuf::Message& m, size_t limit, std::string* out);

// The bytes a verdict row's hash covers: when the store received it, then the verdict.
std::string VerdictContentPrefix(int64_t received_us);
std::string VerdictContent(int64_t received_us, const std::string& body);
std::string AuditContent(int64_t time_us, const std::string& actor, const std::string& role, const std::string& method,
                         bool allowed, const std::string& detail);
std::string Sha256Hex(const std::string& bytes);

// Why a verdict is not stored (before serializing it); nullopt: it may be.
std::optional<std::string> RejectionOf(const v1::Verdict& v);
inline constexpr const char* kTooLarge = "verdict larger than 256 KiB";

// The category and rule "tags" a verdict is found under: distinct, sorted; a verdict
// without findings has the one category "" (Stats by category counts those as "").
std::vector<std::string> CategoriesOf(const v1::Verdict& v);
std::vector<std::string> RuleIdsOf(const v1::Verdict& v);

// Page tokens are "<time_us>:<seq>" of the last row returned.
absl::Status ParsePageToken(const std::string& token, int64_t* time_us, int64_t* seq);
uint32_t PageSize(uint32_t requested);

absl::Status CheckStatsGroup(v1::GroupBy group);
std::string ActionKey(int64_t action);

struct ActivationRow {
  int64_t seq;
  std::string version;
  int mode;
  std::string kind;
};
// The effective history: an activation pushes, a rollback pops.
std::vector<ActivationRow> EffectiveStack(const std::vector<ActivationRow>& rows);

// What the last retention that deleted rows recorded in the audit trail, parsed from
// its detail ("... up to seq N, anchor HEX"); nullopt for a run that deleted nothing.
struct RetentionRecord {
  int64_t audit_seq = 0;
  int64_t up_to_seq = 0;
  std::string anchor_hex;  // empty in records written before the anchor was recorded
};
std::optional<RetentionRecord> ParseRetentionDetail(int64_t audit_seq, const std::string& detail);
std::string RetentionDetail(int days, uint64_t deleted, int64_t last_old, const std::string& anchor);

// The anchor (hash before the first remaining row) only ever moves by retention, and
// the audit trail records each move: rows cut off the front with the anchor set to
// match would otherwise verify. `first_seq` is 0 for an empty table.
void CheckRetentionAnchor(const std::optional<RetentionRecord>& last, const std::string& anchor, int64_t head_seq,
                          int64_t first_seq, v1::VerifyResponse* out);

enum class Dialect { kSqlite, kPostgres };

// ---- hourly rollups (table stats_hourly): what Stats reads when its filter is a time
// range on whole hours (or none), so it costs the hours in the range, not the verdicts.
// Maintained by ingest in the same transaction, reduced by retention, rebuilt and
// compared by Verify.

enum RollupKind : int {
  kRollupAction = 1,    // key1: the action number as text
  kRollupCategory = 2,  // key1: a category ("" for verdicts without findings)
  kRollupHost = 3,
  kRollupWorkload = 4,
  kRollupWorkloadHost = 5,  // key1 workload, key2 host
};
struct RollupKey {
  int kind;
  int64_t hour;  // floor(time_us / 1 h): the verdict's own time, which Stats filters on
  std::string key1;
  std::string key2;
  bool operator<(const RollupKey& o) const {
    return std::tie(kind, hour, key1, key2) < std::tie(o.kind, o.hour, o.key1, o.key2);
  }
};
struct RollupSums {
  int64_t verdicts = 0;
  int64_t bytes_out = 0;
  int64_t bytes_in = 0;
};
using Rollup = std::map<RollupKey, RollupSums>;

// ---- the daily tier: for Stats over long ranges (years are 8,760 hours x keys; 365 days
// x keys as days). Daily rows live in stats_hourly too, as kind + kDailyKind with `hour`
// holding the day number (floor(time_us / 1 day), UTC). Only "closed" days have them:
// stats_days.closed_day is the first day without; ingest closes the days before the
// store's today (adds up their hourly rows once, under the chain lock / in the writer)
// and adds the verdicts of closed days (late ones, from a spool that waited) to both
// tiers. Hourly rows stay: Stats reads days for the whole days of its range that are
// closed and hours for the rest, so a reader that saw an older closed_day is still right.
inline constexpr int kDailyKind = 10;
int64_t DayOf(int64_t time_us);
// The first day without daily rows; refreshing it needs the database.
void AddToRollup(const v1::Verdict& v, int64_t closed_day, Rollup* rollup);
int64_t HourOf(int64_t time_us);
// Two statements: adds the hourly rows of days [closed_day, new_closed_day) up into daily
// rows, and moves stats_days.closed_day.
std::string CloseDaysSql(Dialect d, int64_t closed_day, int64_t new_closed_day);
inline constexpr const char* kClosedDaySql = "SELECT closed_day FROM stats_days";

// SQL for the hour of v.time_us, the same floor as HourOf (both databases' % and /
// truncate toward zero).
inline constexpr const char* kHourOfSql =
    "((v.time_us - (((v.time_us % 3600000000) + 3600000000) % 3600000000)) / 3600000000)";

// The rollup kind and hour range [from, to) that answer `request`, when they can: no
// filter but since/until, each on a whole hour. DAY reads the action rollup.
struct RollupPlan {
  int kind;
  std::optional<int64_t> from_hour;
  std::optional<int64_t> to_hour;
  // Days [from_day, to_day) read from the daily tier (empty when from_day >= to_day);
  // the hours of the range outside them from the hourly rows. Set by UseDays.
  int64_t from_day = 0;
  int64_t to_day = 0;
};
std::optional<RollupPlan> PlanRollupStats(const v1::StatsRequest& request);
// Reads the whole days of the plan's range before `closed_day` from the daily tier.
void UseDays(int64_t closed_day, RollupPlan* plan);

// SELECT kind, hour, key1, key2, n, bytes_out, bytes_in: the rollup rows (hourly, and
// daily for the closed days) the verdicts matching `cond` (SQL over `v`) make; `cond`
// appears ten times.
std::string RollupOfVerdictsSql(Dialect d, const std::string& cond);
// Stats from stats_hourly for `plan`; `from`/`to` are the placeholders of the hour
// bounds when the plan has them (each may appear more than once: sqlite's ?NNN or
// PostgreSQL's $n, numbered).
std::string RollupStatsSql(Dialect d, const RollupPlan& plan, v1::GroupBy group, const std::string& kind,
                           const std::string& from, const std::string& to);
// Adds `sign` x the rollup of the verdicts matching `cond` to stats_hourly and drops
// rows that reach zero (two statements).
std::string AddRollupOfVerdictsSql(Dialect d, const std::string& cond, int sign);
inline constexpr const char* kUpsertRollupSql =
    "INSERT INTO stats_hourly (kind, hour, key1, key2, verdicts, bytes_out, bytes_in) VALUES {} "
    "ON CONFLICT (kind, hour, key1, key2) DO UPDATE SET verdicts = stats_hourly.verdicts + excluded.verdicts, "
    "bytes_out = stats_hourly.bytes_out + excluded.bytes_out, bytes_in = stats_hourly.bytes_in + excluded.bytes_in";
// Verify: rollup rows that differ from the rebuild (both ways), at most 20 each.
std::string RollupMismatchSql(Dialect d, bool stored_not_rebuilt);
void AddRollupProblem(v1::VerifyResponse* out, bool stored_not_rebuilt, int64_t kind, int64_t hour,
                      const std::string& key1, const std::string& key2, int64_t n);

}  // namespace egressguard::store::internal
