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
  };
  return kPending;
}

}  // namespace

void RegisterPending(CLI::App& app, Context& ctx) {
  for (const auto& p : PendingCommands()) {
    // A command that another Register call already created (e.g. `rules` extended by
    // rules_admin_command.cc) is not pending any more.
    const std::string name = p.name;
    if (!app.get_subcommands([&name](const CLI::App* sub) { return sub->get_name() == name; }).empty()) continue;
    auto* cmd = app.add_subcommand(p.name, std::string(p.description) + " [not built yet]");
    cmd->allow_extras();
    cmd->callback([&ctx, p] { ctx.exit_code = NotBuiltYet(p.name, p.issue); });
  }
}

}  // namespace egressguard::cli
