// egressguard: TLS-inspecting data-loss-prevention appliance.
#include <iostream>

#include "appliance/cli/command.h"

int main(int argc, char** argv) {
  using namespace egressguard::cli;
  CLI::App app{
      "egressguard: inline TLS-inspecting DLP appliance.\n"
      "Terminates outbound TLS with a cluster CA, scans what leaves with a Hyperscan rule\n"
      "engine, blocks or allows, and reports every verdict to a compliance store.",
      "egressguard"};
  app.require_subcommand(1);
  app.footer("Run 'egressguard <command> --help' for the options of one command.");
  Context ctx;
  RegisterVersion(app, ctx);
  RegisterCa(app, ctx);
  // Extenders (RulesAdmin -> `rules`, CaClient -> `ca`) after the commands they extend.
  RegisterStore(app, ctx);
  RegisterVerdicts(app, ctx);
  RegisterAudit(app, ctx);
  RegisterRules(app, ctx);
  RegisterRulesAdmin(app, ctx);
  RegisterCaClient(app, ctx);
  RegisterScan(app, ctx);
  RegisterProxy(app, ctx);
  RegisterRun(app, ctx);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return e.get_exit_code() == 0 ? 0 : (rc == 0 ? 0 : kExitError);
  }
  return ctx.exit_code;
}
