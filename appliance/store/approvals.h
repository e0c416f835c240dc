#pragma once
// Four-eyes approval of pack activations and rollbacks, kept in the audit trail rather
// than in tables of its own: a proposal is an audit entry ("rules/propose"), an
// approval another ("rules/approve") naming the proposal's id. The trail is hash-
// chained, so who proposed and who approved cannot be edited afterwards, and the
// storage backends (sqlite today, PostgreSQL next) need no schema for it: pending
// proposals are derived by reading the two methods back (Store::ListAudit), and a
// proposal past its expiry is simply no longer pending.

#include <chrono>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "appliance/store/store.h"
#include "egressguard/v1/rule_admin.pb.h"

namespace egressguard::store {

class Approvals {
 public:
  // `now_us`: microseconds since the epoch (tests pin it); default the system clock.
  Approvals(Store& store, std::chrono::seconds ttl, std::function<int64_t()> now_us = {});

  // Records a proposal by `proposer` (its identity and role names, as audited).
  absl::StatusOr<v1::Proposal> Propose(v1::Proposal::Kind kind, const std::string& version, v1::PackMode mode,
                                       const std::string& proposer, const std::string& role,
                                       const std::string& reason);

  absl::StatusOr<std::vector<v1::Proposal>> Pending();

  // Finds the newest pending proposal for `version` that `approver` did not make,
  // runs `apply` on it and, when that succeeds, records the approval. Serialized, so
  // two officers approving at once apply the change once.
  absl::StatusOr<v1::PackInfo> Approve(const std::string& version, const std::string& approver,
                                       const std::string& role, const std::string& reason,
                                       const std::function<absl::StatusOr<v1::PackInfo>(const v1::Proposal&)>& apply);

  // Two identities are the same person for four-eyes purposes. A loopback
  // development caller's identity carries its ephemeral port; every loopback caller
  // counts as one person.
  static bool SamePerson(const std::string& a, const std::string& b);

  static constexpr const char* kProposeMethod = "rules/propose";
  static constexpr const char* kApproveMethod = "rules/approve";

 private:
  absl::StatusOr<std::vector<AuditEntry>> Read(const char* method);

  Store& store_;
  std::chrono::seconds ttl_;
  std::function<int64_t()> now_us_;
  std::mutex approve_mu_;
};

}  // namespace egressguard::store
