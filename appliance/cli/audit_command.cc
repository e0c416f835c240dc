// `egressguard audit verify|list`: check the hash chains, read the audit trail (auditor).
#include <fmt/format.h>
#include <google/protobuf/util/time_util.h>

#include <algorithm>
#include <iostream>

#include "appliance/cli/command.h"
#include "appliance/cli/store_client.h"
#include "egressguard/v1/audit.grpc.pb.h"

namespace egressguard::cli {

namespace {

using google::protobuf::util::TimeUtil;

struct VerifyFlags {
  StoreClientFlags client;
  bool json = false;
};

int RunVerify(const VerifyFlags& flags) {
  // Verify reads both chains whole: give it at least ten minutes on a large store.
  StoreClientFlags client = flags.client;
  client.timeout_s = std::max(client.timeout_s, 600);
  v1::VerifyResponse response;
  int rc = CallStore<v1::Audit>(client, "audit verify", [&](auto& stub, auto& ctx) {
    return stub.Verify(&ctx, v1::VerifyRequest{}, &response);
  });
  if (rc != kExitOk) return rc;
  PrintResult(flags.json, response, [&] {
    for (const auto& p : response.problems()) {
      std::cout << fmt::format("{} seq {}: {}: {}\n", p.chain(), p.seq(), p.kind(), p.detail());
    }
    std::cout << fmt::format("{}: {} verdicts and {} audit records checked, {} problem(s)\n",
                             response.ok() ? "ok" : "TAMPERED", response.verdicts_checked(), response.audit_checked(),
                             response.problems_size());
  });
  return response.ok() ? kExitOk : kExitFindings;
}

struct ListFlags {
  StoreClientFlags client;
  uint64_t after = 0;
  uint32_t limit = 100;
  std::string actor, method;
  bool denied = false;
  bool json = false;
};

int RunList(const ListFlags& flags) {
  v1::AuditListRequest request;
  request.set_after_seq(flags.after);
  request.set_limit(flags.limit);
  request.set_actor(flags.actor);
  request.set_method(flags.method);
  request.set_denied_only(flags.denied);
  v1::AuditListResponse response;
  int rc = CallStore<v1::Audit>(flags.client, "audit list",
                                [&](auto& stub, auto& ctx) { return stub.List(&ctx, request, &response); });
  if (rc != kExitOk) return rc;
  PrintResult(flags.json, response, [&] {
    for (const auto& r : response.records()) {
      std::cout << fmt::format("{:>6} {} {:<7} {} [{}] {}: {}\n", r.seq(), TimeUtil::ToString(r.time()),
                               r.allowed() ? "ok" : "DENIED", r.actor(), r.role(), r.method(), r.detail());
    }
  });
  return kExitOk;
}

}  // namespace

void RegisterAudit(CLI::App& app, Context& ctx) {
  auto* cmd = app.add_subcommand("audit", "Verify the store's hash chains and read its audit trail");
  cmd->require_subcommand(1);

  auto v = std::make_shared<VerifyFlags>();
  auto* verify = cmd->add_subcommand(
      "verify", "Check the verdict and audit hash chains; exit 1 and say where when a row was edited, deleted or moved");
  AddStoreClientFlags(*verify, v->client);
  verify->add_flag("--json", v->json, "JSON for scripts");
  verify->callback([&ctx, v] { ctx.exit_code = RunVerify(*v); });

  auto l = std::make_shared<ListFlags>();
  auto* list = cmd->add_subcommand("list", "Audit records, oldest first");
  AddStoreClientFlags(*list, l->client);
  list->add_option("--after", l->after, "Records after this seq");
  list->add_option("--limit", l->limit, "At most this many (1000 max)")->capture_default_str();
  list->add_option("--actor", l->actor, "Only this caller identity");
  list->add_option("--method", l->method, "Only this method, e.g. /egressguard.v1.RuleAdmin/Push");
  list->add_flag("--denied", l->denied, "Only refusals");
  list->add_flag("--json", l->json, "JSON for scripts");
  list->callback([&ctx, l] { ctx.exit_code = RunList(*l); });
}

}  // namespace egressguard::cli
