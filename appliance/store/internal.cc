#include "appliance/store/internal.h"

#include <fmt/format.h>
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <google/protobuf/util/time_util.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <limits>

#include "appliance/store/chain.h"
#include "egressguard/v1/audit.pb.h"

namespace egressguard::store::internal {

using google::protobuf::util::TimeUtil;

int64_t SystemNowUs() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

int64_t ToUs(const google::protobuf::Timestamp& t) { return TimeUtil::TimestampToMicroseconds(t); }
google::protobuf::Timestamp FromUs(int64_t us) { return TimeUtil::MicrosecondsToTimestamp(us); }

std::string Deterministic(const google::protobuf::Message& m) {
  std::string out;
  {
    google::protobuf::io::StringOutputStream raw(&out);
    google::protobuf::io::CodedOutputStream coded(&raw);
    coded.SetSerializationDeterministic(true);
    m.SerializeToCodedStream(&coded);
  }
  return out;
}

bool DeterministicInto(const google::protobuf::Message& m, size_t limit, std::string* out) {
  const size_t size = m.ByteSizeLong();
  if (size > limit) return false;
  out->resize(size);
  google::protobuf::io::ArrayOutputStream raw(out->data(), static_cast<int>(size));
  {
    // Scoped: the stream flushes its last bytes into `out` when it goes away.
    google::protobuf::io::CodedOutputStream coded(&raw);
    coded.SetSerializationDeterministic(true);
    m.SerializeWithCachedSizes(&coded);
    if (coded.HadError()) return false;
  }
  return raw.ByteCount() == static_cast<int64_t>(size);
}

std::string VerdictContentPrefix(int64_t received_us) { return fmt::format("v1|{}|", received_us); }
std::string VerdictContent(int64_t received_us, const std::string& body) {
  return VerdictContentPrefix(received_us) + body;
}

std::string AuditContent(int64_t time_us, const std::string& actor, const std::string& role, const std::string& method,
                         bool allowed, const std::string& detail) {
  v1::AuditRecord r;
  *r.mutable_time() = FromUs(time_us);
  r.set_actor(actor);
  r.set_role(role);
  r.set_method(method);
  r.set_allowed(allowed);
  r.set_detail(detail);
  return Deterministic(r);
}

std::string Sha256Hex(const std::string& bytes) { return Hex(ChainHash("", bytes)); }

std::optional<std::string> RejectionOf(const v1::Verdict& v) {
  if (v.id().empty() || v.id().size() > kMaxIdBytes) return "id must be 1..128 bytes";
  if (v.phase() == v1::Verdict::OPEN) {
    // One verdict per id: a write-ahead record stays in its appliance's spool until it is
    // completed (or closed as interrupted), so an OPEN one here would shadow its completion.
    return "an open (write-ahead) verdict is not stored; send it completed or interrupted";
  }
  return std::nullopt;
}

std::vector<std::string> CategoriesOf(const v1::Verdict& v) {
  std::vector<std::string> out;
  for (const auto& f : v.findings()) out.push_back(f.category());
  if (v.findings().empty()) out.emplace_back();
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

std::vector<std::string> RuleIdsOf(const v1::Verdict& v) {
  std::vector<std::string> out;
  for (const auto& f : v.findings()) out.push_back(f.rule_id());
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

absl::Status ParsePageToken(const std::string& token, int64_t* time_us, int64_t* seq) {
  auto colon = token.find(':');
  if (colon == std::string::npos || token.size() > 64) return absl::InvalidArgumentError("malformed page_token");
  try {
    size_t used = 0;
    *time_us = std::stoll(token.substr(0, colon), &used);
    if (used != colon) return absl::InvalidArgumentError("malformed page_token");
    std::string rest = token.substr(colon + 1);
    *seq = std::stoll(rest, &used);
    if (used != rest.size()) return absl::InvalidArgumentError("malformed page_token");
  } catch (const std::exception&) {
    return absl::InvalidArgumentError("malformed page_token");
  }
  return absl::OkStatus();
}

uint32_t PageSize(uint32_t requested) { return requested == 0 ? kDefaultPage : std::min(requested, kMaxPage); }

absl::Status CheckStatsGroup(v1::GroupBy group) {
  switch (group) {
    case v1::CATEGORY:
    case v1::DESTINATION:
    case v1::DAY:
    case v1::ACTION:
    case v1::WORKLOAD:
    case v1::WORKLOAD_DESTINATION:
      return absl::OkStatus();
    default:
      return absl::InvalidArgumentError(
          "group_by must be CATEGORY, DESTINATION, DAY, ACTION, WORKLOAD or WORKLOAD_DESTINATION");
  }
}

std::string ActionKey(int64_t action) {
  auto a = static_cast<rules::v1::Action>(action);
  return rules::v1::Action_IsValid(a) ? rules::v1::Action_Name(a) : fmt::format("{}", action);
}

std::vector<ActivationRow> EffectiveStack(const std::vector<ActivationRow>& rows) {
  std::vector<ActivationRow> stack;
  for (const auto& r : rows) {
    if (r.kind == "rollback" && stack.size() >= 2) {
      stack.pop_back();
      stack.back() = r;
    } else {
      stack.push_back(r);
    }
  }
  return stack;
}

std::optional<RetentionRecord> ParseRetentionDetail(int64_t audit_seq, const std::string& detail) {
  static constexpr std::string_view kUpTo = " up to seq ", kAnchor = ", anchor ";
  auto at = detail.find(kUpTo);
  if (at == std::string::npos) return std::nullopt;
  RetentionRecord rec;
  rec.audit_seq = audit_seq;
  rec.up_to_seq = std::strtoll(detail.c_str() + at + kUpTo.size(), nullptr, 10);
  if (rec.up_to_seq <= 0) return std::nullopt;  // a run that deleted nothing moved no anchor
  if (auto a = detail.find(kAnchor); a != std::string::npos) rec.anchor_hex = detail.substr(a + kAnchor.size(), 64);
  return rec;
}

std::string RetentionDetail(int days, uint64_t deleted, int64_t last_old, const std::string& anchor) {
  std::string detail = fmt::format("retention {} days: deleted {} verdicts up to seq {}", days, deleted, last_old);
  // The anchor goes into the (hash-chained) audit record, so Verify can tell a
  // retention from rows cut off the front by hand with the anchor moved to match.
  if (last_old > 0) detail += fmt::format(", anchor {}", Hex(anchor));
  return detail;
}

void CheckRetentionAnchor(const std::optional<RetentionRecord>& last, const std::string& anchor, int64_t head_seq,
                          int64_t first_seq, v1::VerifyResponse* out) {
  auto problem = [&](int64_t seq, std::string detail) {
    auto* p = out->add_problems();
    p->set_chain("verdicts");
    p->set_seq(static_cast<uint64_t>(seq));
    p->set_kind("anchor");
    p->set_detail(std::move(detail));
  };
  if (!last) {
    if (anchor != std::string(kHashBytes, '\0')) {
      problem(first_seq, "the chain anchor was moved but no retention is in the audit trail (rows cut off the front?)");
    } else if (first_seq > 1) {
      problem(first_seq, fmt::format("the chain starts at seq {} but no retention deleted rows", first_seq));
    }
    return;
  }
  const auto& rec = *last;
  if (!rec.anchor_hex.empty() && Hex(anchor) != rec.anchor_hex) {
    problem(first_seq, fmt::format("the chain anchor differs from the one retention recorded (audit seq {}, up to "
                                   "verdict seq {}): rows deleted outside retention",
                                   rec.audit_seq, rec.up_to_seq));
  }
  if (first_seq != 0 && first_seq != rec.up_to_seq + 1) {
    problem(first_seq, fmt::format("the first verdict is seq {} but retention (audit seq {}) deleted up to seq {}",
                                   first_seq, rec.audit_seq, rec.up_to_seq));
  }
  if (head_seq < rec.up_to_seq) {
    problem(head_seq, fmt::format("the chain head (seq {}) is before what retention deleted (up to seq {})", head_seq,
                                  rec.up_to_seq));
  }
}

int64_t HourOf(int64_t time_us) {
  constexpr int64_t kHourUs = 3600LL * 1000000LL;
  int64_t h = time_us / kHourUs;
  if (time_us % kHourUs < 0) --h;
  return h;
}

int64_t DayOf(int64_t time_us) {
  constexpr int64_t kDayUs = 86400LL * 1000000LL;
  int64_t d = time_us / kDayUs;
  if (time_us % kDayUs < 0) --d;
  return d;
}

void AddToRollup(const v1::Verdict& v, int64_t closed_day, Rollup* rollup) {
  const int64_t time_us = ToUs(v.time());
  const int64_t hour = HourOf(time_us);
  const int64_t day = DayOf(time_us);
  const bool daily = day < closed_day;  // a late verdict of a closed day: both tiers
  auto add = [&](int kind, const std::string& k1, const std::string& k2) {
    for (int tier = 0; tier < (daily ? 2 : 1); ++tier) {
      auto& sums = (*rollup)[RollupKey{kind + tier * kDailyKind, tier ? day : hour, k1, k2}];
      sums.verdicts += 1;
      sums.bytes_out += static_cast<int64_t>(v.bytes_out());
      sums.bytes_in += static_cast<int64_t>(v.bytes_in());
    }
  };
  add(kRollupAction, std::to_string(static_cast<int>(v.action())), "");
  for (auto& c : CategoriesOf(v)) add(kRollupCategory, c, "");
  add(kRollupHost, v.host(), "");
  add(kRollupWorkload, v.workload(), "");
  add(kRollupWorkloadHost, v.workload(), v.host());
}

namespace {
// The day of an hour number, floored (hours before 1970 are negative).
constexpr const char* kDayOfHourSql = "((hour - (((hour % 24) + 24) % 24)) / 24)";
constexpr const char* kDayOfSql =
    "((v.time_us - (((v.time_us % 86400000000) + 86400000000) % 86400000000)) / 86400000000)";
}  // namespace

std::string CloseDaysSql(Dialect d, int64_t closed_day, int64_t new_closed_day) {
  const bool pg = d == Dialect::kPostgres;
  // Our own integers in the text: the two statements run as one.
  return fmt::format(
      "INSERT INTO stats_hourly (kind, hour, key1, key2, verdicts, bytes_out, bytes_in) "
      "SELECT kind + {0}, {1}, key1, key2, SUM(verdicts){5}, SUM(bytes_out){5}, SUM(bytes_in){5} FROM stats_hourly "
      "WHERE kind < {0} AND hour >= {2} AND hour < {3} GROUP BY 1, 2, 3, 4 "
      "ON CONFLICT (kind, hour, key1, key2) DO UPDATE SET verdicts = stats_hourly.verdicts + excluded.verdicts, "
      "bytes_out = stats_hourly.bytes_out + excluded.bytes_out, bytes_in = stats_hourly.bytes_in + excluded.bytes_in; "
      "UPDATE stats_days SET closed_day = {4}",
      kDailyKind, kDayOfHourSql, closed_day * 24, new_closed_day * 24, new_closed_day, pg ? "::bigint" : "");
}

void UseDays(int64_t closed_day, RollupPlan* plan) {
  constexpr int64_t kHourUs = 3600LL * 1000000LL;
  int64_t from = std::numeric_limits<int32_t>::min();  // no lower bound: every closed day
  if (plan->from_hour) {
    const int64_t h = *plan->from_hour;
    // Whole days only: from 06:00 on, the rest of that day is read from its hours.
    from = DayOf(h * kHourUs) + (((h % 24) + 24) % 24 == 0 ? 0 : 1);
  }
  // The day holding the (exclusive) end hour is read from its hours before that hour.
  int64_t to = plan->to_hour ? DayOf(*plan->to_hour * kHourUs) : closed_day;
  to = std::min(to, closed_day);
  plan->from_day = from;
  plan->to_day = std::max(from, to);
}

std::optional<RollupPlan> PlanRollupStats(const v1::StatsRequest& request) {
  const auto& f = request.filter();
  v1::VerdictFilter rest = f;
  rest.clear_since();
  rest.clear_until();
  if (rest.ByteSizeLong() != 0) return std::nullopt;  // any other filter: scan
  RollupPlan plan{};
  switch (request.group_by()) {
    case v1::ACTION:
    case v1::DAY: plan.kind = kRollupAction; break;
    case v1::CATEGORY: plan.kind = kRollupCategory; break;
    case v1::DESTINATION: plan.kind = kRollupHost; break;
    case v1::WORKLOAD: plan.kind = kRollupWorkload; break;
    case v1::WORKLOAD_DESTINATION: plan.kind = kRollupWorkloadHost; break;
    default: return std::nullopt;
  }
  constexpr int64_t kHourUs = 3600LL * 1000000LL;
  for (auto [has, t, out] : {std::tuple{f.has_since(), &f.since(), &plan.from_hour},
                             std::tuple{f.has_until(), &f.until(), &plan.to_hour}}) {
    if (!has) continue;
    const int64_t us = ToUs(*t);
    if (us % kHourUs != 0) return std::nullopt;  // part of an hour: only the verdicts can tell
    *out = us / kHourUs;
  }
  return plan;
}

std::string RollupOfVerdictsSql(Dialect d, const std::string& cond) {
  const bool pg = d == Dialect::kPostgres;
  const std::string n = pg ? "COUNT(*)::bigint" : "COUNT(*)";
  const std::string sums = pg ? "SUM(v.bytes_out)::bigint AS bytes_out, SUM(v.bytes_in)::bigint AS bytes_in"
                              : "SUM(v.bytes_out) AS bytes_out, SUM(v.bytes_in) AS bytes_in";
  const std::string action = pg ? "v.action::text" : "CAST(v.action AS TEXT)";
  const std::string categories = pg ? "verdicts v CROSS JOIN LATERAL unnest(v.categories) AS t(value)"
                                    : "verdict_tags t JOIN verdicts v ON v.seq = t.seq";
  const std::string category_cond = pg ? cond : "t.kind = 1 AND " + cond;
  auto part = [&](int kind, bool daily, const std::string& from, const std::string& k1, const std::string& k2,
                  const std::string& where) {
    // The daily tier holds the closed days only (see kDailyKind).
    const std::string w =
        daily ? fmt::format("{} AND {} < ({})", where, kDayOfSql, kClosedDaySql) : where;
    return fmt::format("SELECT {0} AS kind, {1} AS hour, {2} AS key1, {3} AS key2, {4} AS n, {5} FROM {6} WHERE {7} "
                       "GROUP BY 1, 2, 3, 4",
                       kind + (daily ? kDailyKind : 0), daily ? kDayOfSql : kHourOfSql, k1, k2, n, sums, from, w);
  };
  std::string out;
  for (bool daily : {false, true}) {
    if (daily) out += " UNION ALL ";
    out += part(kRollupAction, daily, "verdicts v", action, "''", cond) + " UNION ALL " +
           part(kRollupCategory, daily, categories, "t.value", "''", category_cond) + " UNION ALL " +
           part(kRollupHost, daily, "verdicts v", "v.host", "''", cond) + " UNION ALL " +
           part(kRollupWorkload, daily, "verdicts v", "v.workload", "''", cond) + " UNION ALL " +
           part(kRollupWorkloadHost, daily, "verdicts v", "v.workload", "v.host", cond);
  }
  return out;
}

std::string RollupStatsSql(Dialect d, const RollupPlan& plan, v1::GroupBy group, const std::string& kind,
                           const std::string& from, const std::string& to) {
  const bool pg = d == Dialect::kPostgres;
  const std::string sums = pg ? "SUM(verdicts)::bigint, SUM(bytes_out)::bigint, SUM(bytes_in)::bigint"
                              : "SUM(verdicts), SUM(bytes_out), SUM(bytes_in)";
  // The rows to add up: t is the start of the row's hour or day in seconds (for DAY).
  auto hours = [&](const std::string& cond) {
    return fmt::format("SELECT key1, key2, verdicts, bytes_out, bytes_in, hour * 3600 AS t FROM stats_hourly "
                       "WHERE kind = {}{}",
                       kind, cond);
  };
  std::string lower = plan.from_hour ? " AND hour >= " + from : "";
  std::string upper = plan.to_hour ? " AND hour < " + to : "";
  std::string src;
  if (plan.from_day < plan.to_day) {
    // Each part a range of the primary key (kind, hour, ...): the hours before the
    // first whole closed day, the days, the hours after the last one.
    src = hours(fmt::format("{} AND hour < {}", lower, plan.from_day * 24)) + " UNION ALL " +
          fmt::format("SELECT key1, key2, verdicts, bytes_out, bytes_in, hour * 86400 AS t FROM stats_hourly "
                      "WHERE kind = {} + {} AND hour >= {} AND hour < {}",
                      kind, kDailyKind, plan.from_day, plan.to_day) +
          " UNION ALL " + hours(fmt::format(" AND hour >= {}{}", plan.to_day * 24, upper));
  } else {
    src = hours(lower + upper);
  }
  src = "(" + src + ") r";
  const char* c = pg ? " COLLATE \"C\"" : "";
  if (group == v1::DAY) {
    const std::string day = pg ? "to_char(to_timestamp(t) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
                               : "strftime('%Y-%m-%d', t, 'unixepoch')";
    // Dates are ASCII digits and dashes: every collation sorts them alike.
    return fmt::format("SELECT {0} AS d, {1} FROM {2} GROUP BY 1 ORDER BY 2 DESC, 1", day, sums, src);
  }
  if (group == v1::WORKLOAD_DESTINATION) {
    return fmt::format("SELECT key1, key2, {0} FROM {1} GROUP BY 1, 2 ORDER BY 3 DESC, key1{2}, key2{2}", sums, src, c);
  }
  if (group == v1::ACTION) {
    // Ties in action order, as the verdict scan sorts them (by number).
    return fmt::format("SELECT key1, {0} FROM {1} GROUP BY 1 ORDER BY 2 DESC, {2}", sums, src,
                       pg ? "key1::integer" : "CAST(key1 AS INTEGER)");
  }
  return fmt::format("SELECT key1, {0} FROM {1} GROUP BY 1 ORDER BY 2 DESC, key1{2}", sums, src, c);
}

std::string AddRollupOfVerdictsSql(Dialect d, const std::string& cond, int sign) {
  // WHERE TRUE: sqlite's parser would take an ON right after the FROM for a join's.
  return fmt::format(
      "INSERT INTO stats_hourly (kind, hour, key1, key2, verdicts, bytes_out, bytes_in) "
      "SELECT kind, hour, key1, key2, {0} * n, {0} * bytes_out, {0} * bytes_in FROM ({1}) r WHERE {2} "
      "ON CONFLICT (kind, hour, key1, key2) DO UPDATE SET verdicts = stats_hourly.verdicts + excluded.verdicts, "
      "bytes_out = stats_hourly.bytes_out + excluded.bytes_out, bytes_in = stats_hourly.bytes_in + excluded.bytes_in; "
      "DELETE FROM stats_hourly WHERE verdicts = 0",
      sign, RollupOfVerdictsSql(d, cond), d == Dialect::kPostgres ? "TRUE" : "1");
}

std::string RollupMismatchSql(Dialect d, bool stored_not_rebuilt) {
  const std::string rebuilt = RollupOfVerdictsSql(d, d == Dialect::kPostgres ? "TRUE" : "1");
  const std::string stored = "SELECT kind, hour, key1, key2, verdicts, bytes_out, bytes_in FROM stats_hourly";
  // Each side a subquery: EXCEPT binds no tighter than the UNION ALLs of the rebuild.
  return fmt::format("SELECT * FROM (SELECT * FROM ({}) a EXCEPT SELECT * FROM ({}) b) x ORDER BY 1, 2, 3, 4 LIMIT 20",
                     stored_not_rebuilt ? stored : rebuilt, stored_not_rebuilt ? rebuilt : stored);
}

void AddRollupProblem(v1::VerifyResponse* out, bool stored_not_rebuilt, int64_t kind, int64_t hour,
                      const std::string& key1, const std::string& key2, int64_t n) {
  auto* p = out->add_problems();
  p->set_chain("verdicts");
  p->set_kind("rollup");
  p->set_detail(fmt::format(
      "stats_hourly kind {} hour {} ({} h since 1970) key \"{}\"{}: {} {} verdicts that the verdicts {}",
      kind, hour, hour, key1, key2.empty() ? "" : fmt::format("|\"{}\"", key2),
      stored_not_rebuilt ? "holds a row of" : "lacks the row of", n,
      stored_not_rebuilt ? "do not make (edited or added)" : "make (edited or deleted)"));
}

}  // namespace egressguard::store::internal
