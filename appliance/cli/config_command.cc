// `egressguard config check FILE` and `egressguard config defaults`: the operator's
// tools for the YAML config that run, proxy and store read with --config.
#include <fmt/format.h>

#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>

#include "appliance/cli/command.h"
#include "appliance/config/config.h"

namespace egressguard::cli {
namespace {

config::Command CommandNamed(const std::string& name) {
  if (name == "run") return config::Command::kRun;
  if (name == "store") return config::Command::kStore;
  return config::Command::kProxy;
}

// Every problem at once, one "FILE:LINE:COL: reason" line each, so a CI job or an
// editor can jump to them.
int Check(const std::string& file) {
  std::string text;
  if (file == "-") {
    std::stringstream in;
    in << std::cin.rdbuf();
    text = in.str();
  } else {
    std::ifstream in(file, std::ios::binary);
    if (!in) {
      std::cerr << file << ": cannot read the config file\n";
      return kExitError;
    }
    std::stringstream buffer;
    buffer << in.rdbuf();
    text = buffer.str();
  }
  auto parsed = config::Parse(text, config::Defaults(config::Command::kProxy));
  if (!parsed.problems.empty()) {
    std::cerr << config::FormatProblems(file == "-" ? "<stdin>" : file, parsed.problems) << "\n";
    std::cerr << fmt::format("{} problem{}\n", parsed.problems.size(), parsed.problems.size() == 1 ? "" : "s");
    return kExitError;
  }
  std::cout << "ok\n";
  return kExitOk;
}

}  // namespace

void RegisterConfig(CLI::App& app, Context& ctx) {
  auto* cmd = app.add_subcommand("config", "Check a config file or print the default one (see appliance/CONFIG.md)");
  cmd->require_subcommand(1);

  auto file = std::make_shared<std::string>();
  auto* check = cmd->add_subcommand("check", "Check FILE: prints FILE:LINE:COL: reason per problem (exit 2), else ok");
  check->add_option("FILE", *file, "The YAML config file ('-': stdin)")->required();
  check->callback([&ctx, file] { ctx.exit_code = Check(*file); });

  auto which = std::make_shared<std::string>("proxy");
  auto* defaults = cmd->add_subcommand("defaults", "Print the full default config as commented YAML");
  defaults->add_option("--for", *which, "The command whose built-in defaults to print")
      ->check(CLI::IsMember({"proxy", "store", "run"}))
      ->capture_default_str();
  defaults->callback([&ctx, which] {
    std::cout << config::DefaultsYaml(CommandNamed(*which));
    ctx.exit_code = kExitOk;
  });
}

}  // namespace egressguard::cli
