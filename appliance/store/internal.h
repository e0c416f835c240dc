#pragma once
// What both storage backends share so that they store, hash and answer alike: the
// canonical content the chains cover, limits, page tokens, the activation stack and
// the retention anchor check. Internal to appliance/store.

#include <google/protobuf/message.h>
#include <google/protobuf/timestamp.pb.h>

#include <cstdint>
#include <optional>
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

}  // namespace egressguard::store::internal
