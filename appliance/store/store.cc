#include "appliance/store/store.h"

#include <fmt/format.h>

#include <filesystem>
#include <map>
#include <set>

#include "appliance/store/backend.h"
#include "appliance/store/internal.h"
#include "rules/pack_loader.h"
#include "rules/rule_id.h"

namespace egressguard::store {

namespace {

bool ValidPackVersion(const std::string& v) {
  if (v.empty() || v.size() > 64) return false;
  for (char c : v) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_' || c == '+')) return false;
  }
  return true;
}

// Names of the fields of `a` and `b` (same type) that differ, skipping `skip`.
std::vector<std::string> DifferingFields(const google::protobuf::Message& a, const google::protobuf::Message& b,
                                         const std::set<std::string>& skip) {
  std::vector<std::string> out;
  const auto* desc = a.GetDescriptor();
  for (int i = 0; i < desc->field_count(); ++i) {
    const auto* field = desc->field(i);
    if (skip.count(field->name())) continue;
    std::unique_ptr<google::protobuf::Message> ca(a.New()), cb(b.New());
    ca->CopyFrom(a);
    cb->CopyFrom(b);
    for (int j = 0; j < desc->field_count(); ++j) {
      if (j == i) continue;
      ca->GetReflection()->ClearField(ca.get(), desc->field(j));
      cb->GetReflection()->ClearField(cb.get(), desc->field(j));
    }
    if (internal::Deterministic(*ca) != internal::Deterministic(*cb)) out.push_back(field->name());
  }
  return out;
}

}  // namespace

std::vector<std::string> CheckPackShape(const rules::v1::RulePack& pack) {
  std::vector<std::string> errors;
  if (!ValidPackVersion(pack.version())) {
    errors.push_back("pack: version must be 1..64 characters of [A-Za-z0-9._+-]");
  }
  std::set<std::string> ids;
  for (const auto& rule : pack.rules()) {
    std::string name = rule.id().empty() ? "(no id)" : rule.id();
    if (!rules::IsValidRuleId(rule.id())) errors.push_back(fmt::format("rule {}: id must be [a-z0-9_.-], 1..64", name));
    if (!ids.insert(rule.id()).second) errors.push_back(fmt::format("rule {}: duplicate id", name));
    if (rule.category().empty()) errors.push_back(fmt::format("rule {}: category is required", name));
    // Message-level rules (bulk_pii, undecodable, encrypted_content) have no patterns of
    // their own: the engine raises them from the message as a whole.
    if (rule.patterns().empty() && !rules::IsMessageLevelCategory(rule.category())) {
      errors.push_back(fmt::format("rule {}: at least one pattern is required", name));
    }
    for (const auto& p : rule.patterns()) {
      if (p.empty()) errors.push_back(fmt::format("rule {}: empty pattern", name));
    }
    if (rule.action() == rules::v1::ACTION_UNSPECIFIED) errors.push_back(fmt::format("rule {}: action is required", name));
  }
  return errors;
}

bool IsPostgresUri(const std::string& database) {
  return database.starts_with("postgresql://") || database.starts_with("postgres://");
}

Store::Store(std::unique_ptr<Backend> backend) : backend_(std::move(backend)) {}
Store::~Store() = default;

absl::StatusOr<std::unique_ptr<Store>> Store::Open(const Options& options) {
  if (options.path.empty()) return absl::InvalidArgumentError("no database given (a file path or a postgresql:// URI)");
  auto backend = IsPostgresUri(options.path) ? OpenPgBackend(options) : OpenSqliteBackend(options);
  if (!backend.ok()) return backend.status();
  return std::unique_ptr<Store>(new Store(std::move(*backend)));
}

absl::StatusOr<std::pair<int, int>> Store::MigrateSchema(const std::string& database) {
  if (database.empty()) return absl::InvalidArgumentError("no database given (a file path or a postgresql:// URI)");
  return IsPostgresUri(database) ? MigratePgSchema(database) : MigrateSqliteSchema(database);
}

absl::StatusOr<CopyReport> Store::CopyIntoPostgres(const std::string& sqlite_path, const std::string& uri) {
  if (IsPostgresUri(sqlite_path) || !IsPostgresUri(uri)) {
    return absl::InvalidArgumentError("copy from a sqlite file (--from FILE) into a postgresql:// URI (--to)");
  }
  std::error_code ec;
  if (!std::filesystem::is_regular_file(sqlite_path, ec)) {
    return absl::NotFoundError(fmt::format("no sqlite store at {}", sqlite_path));
  }
  auto report = CopySqliteIntoPg(sqlite_path, uri);
  if (!report.ok()) return report.status();
  auto copied = Open({uri, 1, nullptr});
  if (!copied.ok()) return copied.status();
  auto verify = (*copied)->Verify();
  if (!verify.ok()) return verify.status();
  if (!verify->ok() || verify->verdicts_checked() != report->verdicts || verify->audit_checked() != report->audit) {
    return absl::DataLossError(fmt::format(
        "the copy does not verify ({} problem(s); {} of {} verdicts, {} of {} audit records checked): run `audit "
        "verify` on the source",
        verify->problems_size(), verify->verdicts_checked(), report->verdicts, verify->audit_checked(),
        report->audit));
  }
  return report;
}

absl::StatusOr<IngestResult> Store::Ingest(std::vector<v1::Verdict> verdicts) {
  return backend_->Ingest(std::move(verdicts));
}

absl::Status Store::Audit(AuditEntry entry) { return backend_->Audit(std::move(entry)); }

absl::StatusOr<v1::PackInfo> Store::PushPack(const rules::v1::RulePack& pack, const std::string& author,
                                            const std::string& reason) {
  auto errors = CheckPackShape(pack);
  if (!errors.empty()) return absl::InvalidArgumentError(errors.front());
  if (reason.empty()) return absl::InvalidArgumentError("a reason is required");
  return backend_->PushPack(pack, author, reason);
}

absl::StatusOr<v1::PackInfo> Store::ActivatePack(const std::string& version, v1::PackMode mode, const AuditEntry& who,
                                                const std::string& reason) {
  if (mode != v1::MONITOR && mode != v1::ENFORCE) return absl::InvalidArgumentError("mode must be monitor or enforce");
  return backend_->ActivatePack(version, mode, who, reason);
}

absl::StatusOr<v1::PackInfo> Store::RollbackPack(const std::string& to_version, const AuditEntry& who,
                                                const std::string& reason) {
  return backend_->RollbackPack(to_version, who, reason);
}

absl::StatusOr<uint64_t> Store::ApplyRetention(int days, const std::string& actor) {
  if (days <= 0) return absl::InvalidArgumentError("retention must be at least 1 day");
  return backend_->ApplyRetention(days, actor);
}

absl::StatusOr<v1::QueryResponse> Store::Query(const v1::QueryRequest& request) { return backend_->Query(request); }

absl::StatusOr<v1::StatsResponse> Store::Stats(const v1::StatsRequest& request) {
  if (auto s = internal::CheckStatsGroup(request.group_by()); !s.ok()) return s;
  return backend_->Stats(request);
}

absl::StatusOr<v1::ListPacksResponse> Store::ListPacks() { return backend_->ListPacks(); }

absl::StatusOr<v1::GetPackResponse> Store::GetPack(const std::string& version) { return backend_->GetPack(version); }

absl::StatusOr<v1::DiffResponse> Store::DiffPacks(const std::string& from, const std::string& to) {
  auto a = GetPack(from);
  if (!a.ok()) return a.status();
  auto b = GetPack(to);
  if (!b.ok()) return b.status();
  v1::DiffResponse out;
  std::map<std::string, const rules::v1::Rule*> old_rules, new_rules;
  for (const auto& r : a->pack().rules()) old_rules[r.id()] = &r;
  for (const auto& r : b->pack().rules()) new_rules[r.id()] = &r;
  std::set<std::string> ids;  // one change per rule id, in id order
  for (const auto& [id, rule] : old_rules) ids.insert(id);
  for (const auto& [id, rule] : new_rules) ids.insert(id);
  for (const auto& id : ids) {
    auto o = old_rules.find(id);
    auto n = new_rules.find(id);
    v1::RuleChange c;
    c.set_rule_id(id);
    if (o == old_rules.end()) {
      c.set_kind(v1::RuleChange::ADDED);
    } else if (n == new_rules.end()) {
      c.set_kind(v1::RuleChange::REMOVED);
    } else {
      auto fields = DifferingFields(*o->second, *n->second, {});
      if (fields.empty()) continue;
      c.set_kind(v1::RuleChange::CHANGED);
      for (auto& f : fields) c.add_fields(f);
    }
    *out.add_changes() = std::move(c);
  }
  for (auto& f : DifferingFields(a->pack(), b->pack(), {"rules"})) out.add_pack_fields(f);
  return out;
}

absl::StatusOr<v1::ActivePack> Store::Active() {
  // Generation first: a change racing this read is seen again by the next wait.
  const uint64_t gen = active_generation();
  auto got = GetPack("");
  if (!got.ok()) return got.status();
  v1::ActivePack out;
  *out.mutable_info() = std::move(*got->mutable_info());
  *out.mutable_pack() = std::move(*got->mutable_pack());
  out.set_generation(gen);
  return out;
}

absl::StatusOr<v1::AuditListResponse> Store::ListAudit(const v1::AuditListRequest& request) {
  return backend_->ListAudit(request);
}

absl::StatusOr<v1::VerifyResponse> Store::Verify() { return backend_->Verify(); }
StoreHealth Store::Health() { return backend_->Health(); }
std::optional<int64_t> Store::LastIngestedVerdictUnix() const { return backend_->LastIngestedVerdictUnix(); }
uint64_t Store::active_generation() const { return backend_->active_generation(); }
void Store::WaitActiveChange(uint64_t seen, std::chrono::milliseconds timeout) {
  backend_->WaitActiveChange(seen, timeout);
}
void Store::Shutdown() { backend_->Shutdown(); }
bool Store::shutting_down() const { return backend_->shutting_down(); }

}  // namespace egressguard::store
