#include <string>
#include <vector>

#include "appliance/cli/command.h"

namespace egressguard::cli {

namespace {

struct Pending {
  const char* name;
  const char* description;
  int issue;
};

// Each entry leaves this list when its issue lands and the real command registers itself.
const std::vector<Pending>& PendingCommands() {
  static const std::vector<Pending> kPending = {
      {"run", "Run proxy + compliance store in one process on the embedded default", 6},
      {"proxy", "Run the inline TLS-inspecting proxy", 5},
      {"store", "Run the compliance store (gRPC + sqlite)", 6},
      {"scan", "Scan files or stdin with the DLP engine, like grep", 3},
      {"ca", "Create, show, rotate and export the cluster CA; mint leaves", 4},
      {"rules", "Validate, test and manage rule packs", 3},
      {"verdicts", "Query verdicts and statistics from the compliance store", 6},
  };
  return kPending;
}

}  // namespace

void RegisterPending(CLI::App& app, Context& ctx) {
  for (const auto& p : PendingCommands()) {
    auto* cmd = app.add_subcommand(p.name, std::string(p.description) + " [not built yet]");
    cmd->allow_extras();
    cmd->callback([&ctx, p] { ctx.exit_code = NotBuiltYet(p.name, p.issue); });
  }
}

}  // namespace egressguard::cli
