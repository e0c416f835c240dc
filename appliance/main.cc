// egressguard: TLS-inspecting data-loss-prevention appliance.
#include <iostream>

#include "appliance/cli/command.h"
#include "appliance/logging.h"

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
  // Global, so they may also follow the subcommand (`egressguard proxy --log-format json`).
  app.fallthrough();
  std::string log_level;
  std::string log_format;
  app.add_option("--log-level", log_level, "Log level: trace|debug|info|warn|error (default info; key log.level)")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}));
  app.add_option("--log-format", log_format, "Log format on stderr: text|json (default text; key log.format)")
      ->check(CLI::IsMember({"text", "json"}));
  // Runs after parsing and before any subcommand callback; a --config file's log
  // section is applied later by the command, the flags keeping precedence.
  app.parse_complete_callback([&] { (void)egressguard::appliance::SetLogFlags(log_level, log_format); });
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
  RegisterConfig(app, ctx);
  RegisterConsole(app, ctx);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return e.get_exit_code() == 0 ? 0 : (rc == 0 ? 0 : kExitError);
  }
  return ctx.exit_code;
}
