// `egressguard rules push|activate|rollback|list|diff|get`: manage the rule packs in
// the compliance store (officer). Extends the `rules` command of rules_command.cc.
#include <fmt/format.h>
#include <google/protobuf/util/time_util.h>

#include <iostream>

#include "appliance/cli/command.h"
#include "appliance/cli/store_client.h"
#include "egressguard/v1/rule_admin.grpc.pb.h"
#include "rules/pack_loader.h"

namespace egressguard::cli {

namespace {

using google::protobuf::util::TimeUtil;

const char* StateName(v1::PackState s) {
  switch (s) {
    case v1::DRAFT: return "draft";
    case v1::ACTIVE: return "ACTIVE";
    case v1::INACTIVE: return "inactive";
    default: return "-";
  }
}

const char* ModeName(v1::PackMode m) {
  switch (m) {
    case v1::MONITOR: return "monitor";
    case v1::ENFORCE: return "enforce";
    default: return "-";
  }
}

void PrintInfo(const v1::PackInfo& p) {
  std::cout << fmt::format("{} {} {} rules={} pushed={} by {}: {}\n", p.version(), StateName(p.state()),
                           p.state() == v1::ACTIVE ? ModeName(p.mode()) : "", p.rule_count(),
                           TimeUtil::ToString(p.pushed_at()), p.author(), p.reason());
}

struct AdminFlags {
  StoreClientFlags client;
  std::string path, version, to, from, reason, mode = "monitor";
  bool dry_run = false, json = false;
};

int RunPush(const AdminFlags& f) {
  auto pack = rules::LoadPackAny(f.path);
  if (!pack.ok()) {
    std::cerr << "egressguard rules push: " << pack.status().message() << "\n";
    return kExitError;
  }
  if (f.dry_run) {
    v1::ValidateRequest req;
    *req.mutable_pack() = std::move(*pack);
    v1::ValidateResponse resp;
    int rc = CallStore<v1::RuleAdmin>(f.client, "rules push --dry-run",
                                      [&](auto& stub, auto& ctx) { return stub.Validate(&ctx, req, &resp); });
    if (rc != kExitOk) return rc;
    for (const auto& e : resp.errors()) std::cout << e << "\n";
    std::cout << (resp.ok() ? "valid: the store would accept it\n" : "invalid\n");
    return resp.ok() ? kExitOk : kExitFindings;
  }
  if (f.reason.empty()) {
    std::cerr << "egressguard rules push: --reason is required (it goes into the audit trail)\n";
    return kExitError;
  }
  v1::PushRequest req;
  *req.mutable_pack() = std::move(*pack);
  req.set_reason(f.reason);
  v1::PackInfo info;
  int rc = CallStore<v1::RuleAdmin>(f.client, "rules push",
                                    [&](auto& stub, auto& ctx) { return stub.Push(&ctx, req, &info); });
  if (rc != kExitOk) return rc;
  PrintResult(f.json, info, [&] {
    std::cout << "pushed (draft; activate it to take effect): ";
    PrintInfo(info);
  });
  return kExitOk;
}

int RunActivate(const AdminFlags& f, bool rollback) {
  v1::PackInfo info;
  int rc;
  if (rollback) {
    v1::RollbackRequest req;
    req.set_to_version(f.to);
    req.set_reason(f.reason);
    rc = CallStore<v1::RuleAdmin>(f.client, "rules rollback",
                                  [&](auto& stub, auto& ctx) { return stub.Rollback(&ctx, req, &info); });
  } else {
    v1::ActivateRequest req;
    req.set_version(f.version);
    req.set_mode(f.mode == "enforce" ? v1::ENFORCE : v1::MONITOR);
    req.set_reason(f.reason);
    rc = CallStore<v1::RuleAdmin>(f.client, "rules activate",
                                  [&](auto& stub, auto& ctx) { return stub.Activate(&ctx, req, &info); });
  }
  if (rc != kExitOk) return rc;
  PrintResult(f.json, info, [&] {
    std::cout << "active: ";
    PrintInfo(info);
  });
  return kExitOk;
}

// Four-eyes: carries out another officer's pending activation or rollback.
int RunApprove(const AdminFlags& f) {
  v1::ApproveRequest req;
  req.set_version(f.version);
  req.set_reason(f.reason);
  v1::PackInfo info;
  int rc = CallStore<v1::RuleAdmin>(f.client, "rules approve",
                                    [&](auto& stub, auto& ctx) { return stub.Approve(&ctx, req, &info); });
  if (rc != kExitOk) return rc;
  PrintResult(f.json, info, [&] {
    std::cout << "approved, active: ";
    PrintInfo(info);
  });
  return kExitOk;
}

int RunProposals(const AdminFlags& f) {
  v1::ListProposalsResponse resp;
  int rc = CallStore<v1::RuleAdmin>(f.client, "rules proposals", [&](auto& stub, auto& ctx) {
    return stub.ListProposals(&ctx, v1::ListProposalsRequest{}, &resp);
  });
  if (rc != kExitOk) return rc;
  PrintResult(f.json, resp, [&] {
    for (const auto& p : resp.proposals()) {
      std::cout << (p.kind() == v1::Proposal::ROLLBACK ? "rollback to " : "activate ") << p.version()
                << (p.kind() == v1::Proposal::ACTIVATE ? " (" + v1::PackMode_Name(p.mode()) + ")" : "") << "  by "
                << p.proposer() << "  expires " << p.expires_at().seconds() << "  " << p.reason() << "\n";
    }
  });
  return kExitOk;
}

int RunList(const AdminFlags& f) {
  v1::ListPacksResponse resp;
  int rc = CallStore<v1::RuleAdmin>(
      f.client, "rules list", [&](auto& stub, auto& ctx) { return stub.List(&ctx, v1::ListPacksRequest{}, &resp); });
  if (rc != kExitOk) return rc;
  PrintResult(f.json, resp, [&] {
    for (const auto& p : resp.packs()) PrintInfo(p);
  });
  return kExitOk;
}

int RunGet(const AdminFlags& f) {
  v1::GetPackRequest req;
  req.set_version(f.version);
  v1::GetPackResponse resp;
  int rc = CallStore<v1::RuleAdmin>(f.client, "rules get",
                                    [&](auto& stub, auto& ctx) { return stub.Get(&ctx, req, &resp); });
  if (rc != kExitOk) return rc;
  PrintResult(f.json, resp, [&] { std::cout << rules::PackToYaml(resp.pack()); });
  return kExitOk;
}

int RunDiff(const AdminFlags& f) {
  v1::DiffRequest req;
  req.set_from_version(f.from);
  req.set_to_version(f.to);
  v1::DiffResponse resp;
  int rc = CallStore<v1::RuleAdmin>(f.client, "rules diff",
                                    [&](auto& stub, auto& ctx) { return stub.Diff(&ctx, req, &resp); });
  if (rc != kExitOk) return rc;
  PrintResult(f.json, resp, [&] {
    for (const auto& field : resp.pack_fields()) std::cout << "~ pack." << field << "\n";
    for (const auto& c : resp.changes()) {
      const char* mark = c.kind() == v1::RuleChange::ADDED ? "+" : c.kind() == v1::RuleChange::REMOVED ? "-" : "~";
      std::string fields;
      for (const auto& x : c.fields()) fields += (fields.empty() ? " (" : ", ") + x;
      if (!fields.empty()) fields += ")";
      std::cout << mark << " " << c.rule_id() << fields << "\n";
    }
  });
  // Like diff(1): 1 when the packs differ.
  return resp.changes().empty() && resp.pack_fields().empty() ? kExitOk : kExitFindings;
}

CLI::App* Subcommand(CLI::App& parent, const char* name, const char* description, AdminFlags& f) {
  auto* cmd = parent.add_subcommand(name, description);
  AddStoreClientFlags(*cmd, f.client);
  cmd->add_flag("--json", f.json, "JSON for scripts");
  return cmd;
}

}  // namespace

void RegisterRulesAdmin(CLI::App& app, Context& ctx) {
  auto* rules_cmd = FindOrAddSubcommand(app, "rules", "Validate, test and manage rule packs");

  auto push = std::make_shared<AdminFlags>();
  auto* p = Subcommand(*rules_cmd, "push", "Push a rule pack (file or directory) to the store as a new draft version",
                       *push);
  p->add_option("pack", push->path, "Pack YAML file or directory")->required();
  p->add_option("--reason", push->reason, "Why (recorded in the audit trail; required)");
  p->add_flag("--dry-run", push->dry_run, "Only ask the store to validate it (RuleAdmin.Validate)");
  p->callback([&ctx, push] { ctx.exit_code = RunPush(*push); });

  auto act = std::make_shared<AdminFlags>();
  auto* a = Subcommand(*rules_cmd, "activate", "Make a pushed version the active pack; appliances swap to it", *act);
  a->add_option("version", act->version, "Pack version")->required();
  a->add_option("--mode", act->mode, "monitor (report only) or enforce (block)")
      ->check(CLI::IsMember({"monitor", "enforce"}))
      ->capture_default_str();
  a->add_option("--reason", act->reason, "Why (audit trail)");
  a->callback([&ctx, act] { ctx.exit_code = RunActivate(*act, false); });

  auto rb = std::make_shared<AdminFlags>();
  auto* r = Subcommand(*rules_cmd, "rollback", "Undo the last activation (or go to --to VERSION)", *rb);
  r->add_option("--to", rb->to, "Activate this earlier version instead");
  r->add_option("--reason", rb->reason, "Why (audit trail)");
  r->callback([&ctx, rb] { ctx.exit_code = RunActivate(*rb, true); });

  auto ap = std::make_shared<AdminFlags>();
  auto* apc = Subcommand(*rules_cmd, "approve",
                         "Approve another officer's pending activation of (or rollback to) VERSION (four-eyes)", *ap);
  apc->add_option("version", ap->version, "The proposal's pack version")->required();
  apc->add_option("--reason", ap->reason, "Why (audit trail)");
  apc->callback([&ctx, ap] { ctx.exit_code = RunApprove(*ap); });

  auto pr = std::make_shared<AdminFlags>();
  auto* prc = Subcommand(*rules_cmd, "proposals", "Activations and rollbacks waiting for a second officer", *pr);
  prc->callback([&ctx, pr] { ctx.exit_code = RunProposals(*pr); });

  auto ls = std::make_shared<AdminFlags>();
  auto* l = Subcommand(*rules_cmd, "list", "Pack versions in the store, newest first", *ls);
  l->callback([&ctx, ls] { ctx.exit_code = RunList(*ls); });

  auto get = std::make_shared<AdminFlags>();
  auto* g = Subcommand(*rules_cmd, "get", "Print a stored pack as YAML (default: the active one)", *get);
  g->add_option("version", get->version, "Pack version");
  g->callback([&ctx, get] { ctx.exit_code = RunGet(*get); });

  auto diff = std::make_shared<AdminFlags>();
  auto* d = Subcommand(*rules_cmd, "diff", "Rules added, removed or changed between two versions", *diff);
  d->add_option("from", diff->from, "Older version")->required();
  d->add_option("to", diff->to, "Newer version")->required();
  d->callback([&ctx, diff] { ctx.exit_code = RunDiff(*diff); });
}

}  // namespace egressguard::cli
