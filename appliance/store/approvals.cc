#include "appliance/store/approvals.h"

#include <fmt/format.h>
#include <openssl/rand.h>

#include <charconv>
#include <map>
#include <optional>
#include <set>

namespace egressguard::store {

namespace {

std::string NewId() {
  unsigned char raw[12];
  if (RAND_bytes(raw, sizeof raw) != 1) std::abort();  // no randomness: no safe id
  std::string out;
  for (unsigned char b : raw) out += fmt::format("{:02x}", b);
  return out;
}

int64_t SystemNowUs() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void SetTime(google::protobuf::Timestamp* t, int64_t us) {
  t->set_seconds(us / 1'000'000);
  t->set_nanos(static_cast<int32_t>((us % 1'000'000) * 1000));
}

int64_t ToUs(const google::protobuf::Timestamp& t) { return t.seconds() * 1'000'000 + t.nanos() / 1000; }

// The detail of a proposal: "id=.. kind=.. version=.. mode=.. expires_us=.. reason=<rest>".
// Versions are [A-Za-z0-9.+_-] (the store refuses others), so only the reason, last,
// may hold spaces.
std::string ProposalDetail(const v1::Proposal& p) {
  return fmt::format("id={} kind={} version={} mode={} expires_us={} reason={}", p.id(),
                     p.kind() == v1::Proposal::ROLLBACK ? "rollback" : "activate", p.version(),
                     v1::PackMode_Name(p.mode()), ToUs(p.expires_at()), p.reason());
}

std::optional<v1::Proposal> ParseProposal(const v1::AuditRecord& r) {
  const std::string& d = r.detail();
  const std::vector<std::string> keys = {"id=", " kind=", " version=", " mode=", " expires_us=", " reason="};
  std::vector<std::string> values;
  size_t at = 0;
  for (size_t i = 0; i < keys.size(); ++i) {
    if (d.compare(at, keys[i].size(), keys[i]) != 0) return std::nullopt;
    at += keys[i].size();
    size_t end = i + 1 < keys.size() ? d.find(keys[i + 1], at) : d.size();
    if (end == std::string::npos) return std::nullopt;
    values.push_back(d.substr(at, end - at));
    at = end;
  }
  v1::Proposal p;
  p.set_id(values[0]);
  p.set_kind(values[1] == "rollback" ? v1::Proposal::ROLLBACK : v1::Proposal::ACTIVATE);
  p.set_version(values[2]);
  v1::PackMode mode = v1::PACK_MODE_UNSPECIFIED;
  (void)v1::PackMode_Parse(values[3], &mode);
  p.set_mode(mode);
  int64_t expires = 0;
  auto [ptr, ec] = std::from_chars(values[4].data(), values[4].data() + values[4].size(), expires);
  if (ec != std::errc() || ptr != values[4].data() + values[4].size()) return std::nullopt;
  SetTime(p.mutable_expires_at(), expires);
  p.set_reason(values[5]);
  p.set_proposer(r.actor());
  *p.mutable_proposed_at() = r.time();
  return p;
}

std::string ProposalIdOf(const std::string& approval_detail) {
  auto at = approval_detail.find("proposal=");
  if (at == std::string::npos) return "";
  return approval_detail.substr(at + 9, approval_detail.find(' ', at) - at - 9);
}

}  // namespace

Approvals::Approvals(Store& store, std::chrono::seconds ttl, std::function<int64_t()> now_us)
    : store_(store), ttl_(ttl), now_us_(now_us ? std::move(now_us) : SystemNowUs) {}

bool Approvals::SamePerson(const std::string& a, const std::string& b) {
  auto loopback = [](const std::string& s) { return s.rfind("loopback ", 0) == 0; };
  return a == b || (loopback(a) && loopback(b));
}

absl::StatusOr<v1::Proposal> Approvals::Propose(v1::Proposal::Kind kind, const std::string& version,
                                                v1::PackMode mode, const std::string& proposer,
                                                const std::string& role, const std::string& reason) {
  v1::Proposal p;
  p.set_id(NewId());
  p.set_kind(kind);
  p.set_version(version);
  p.set_mode(mode);
  p.set_proposer(proposer);
  // One line per proposal: a newline in the reason would let it forge the fields after.
  std::string clean = reason;
  for (char& c : clean) {
    if (static_cast<unsigned char>(c) < 0x20) c = ' ';
  }
  p.set_reason(clean);
  const int64_t now = now_us_();
  SetTime(p.mutable_proposed_at(), now);
  SetTime(p.mutable_expires_at(), now + std::chrono::duration_cast<std::chrono::microseconds>(ttl_).count());
  if (auto st = store_.Audit({proposer, role, kProposeMethod, ProposalDetail(p), true}); !st.ok()) return st;
  return p;
}

namespace {

absl::StatusOr<std::vector<v1::AuditRecord>> ReadAll(Store& store, const char* method) {
  std::vector<v1::AuditRecord> out;
  v1::AuditListRequest req;
  req.set_method(method);
  req.set_limit(1000);
  for (;;) {
    auto page = store.ListAudit(req);
    if (!page.ok()) return page.status();
    if (page->records().empty()) return out;
    req.set_after_seq(page->records().rbegin()->seq());
    for (auto& r : *page->mutable_records()) out.push_back(std::move(r));
  }
}

}  // namespace

absl::StatusOr<std::vector<v1::Proposal>> Approvals::Pending() {
  auto proposed = ReadAll(store_, kProposeMethod);
  if (!proposed.ok()) return proposed.status();
  auto approved = ReadAll(store_, kApproveMethod);
  if (!approved.ok()) return approved.status();
  std::set<std::string> done;
  for (const auto& r : *approved) done.insert(ProposalIdOf(r.detail()));
  const int64_t now = now_us_();
  std::vector<v1::Proposal> pending;
  for (auto it = proposed->rbegin(); it != proposed->rend(); ++it) {
    auto p = ParseProposal(*it);
    if (!p || done.count(p->id()) || ToUs(p->expires_at()) <= now) continue;
    pending.push_back(std::move(*p));
  }
  return pending;
}

absl::StatusOr<v1::PackInfo> Approvals::Approve(
    const std::string& version, const std::string& approver, const std::string& role, const std::string& reason,
    const std::function<absl::StatusOr<v1::PackInfo>(const v1::Proposal&)>& apply) {
  std::lock_guard lock(approve_mu_);
  auto pending = Pending();
  if (!pending.ok()) return pending.status();
  bool own = false;
  for (const auto& p : *pending) {
    if (p.version() != version) continue;
    if (SamePerson(p.proposer(), approver)) {
      own = true;
      continue;
    }
    auto info = apply(p);
    if (!info.ok()) return info.status();
    std::string clean = reason;
    for (char& c : clean) {
      if (static_cast<unsigned char>(c) < 0x20) c = ' ';
    }
    if (auto st = store_.Audit({approver, role, kApproveMethod,
                                fmt::format("proposal={} version={} proposer={} reason={}", p.id(), version,
                                            p.proposer(), clean),
                                true});
        !st.ok()) {
      return st;
    }
    return info;
  }
  if (own) {
    return absl::PermissionDeniedError(fmt::format(
        "the pending proposal for {} is your own; a second, different officer must approve it", version));
  }
  return absl::NotFoundError(fmt::format("no pending proposal for version {} (none made, approved, or expired)", version));
}

}  // namespace egressguard::store
