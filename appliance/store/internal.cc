#include "appliance/store/internal.h"

#include <fmt/format.h>
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <google/protobuf/util/time_util.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>

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

}  // namespace egressguard::store::internal
