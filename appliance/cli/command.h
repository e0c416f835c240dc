#pragma once
// How subcommands plug into the `egressguard` binary. Each subcommand tree has one
// Register* function in its own file; its callback stores the process exit code.
//
// Exit codes follow grep's habit, which scripts rely on:
//   0 success / nothing found, 1 findings or a negative answer, 2 usage or runtime error.

#include <CLI/CLI.hpp>

#include <sstream>
#include <string_view>

#include "appliance/logging.h"

namespace egressguard::cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFindings = 1;
inline constexpr int kExitError = 2;

// A long-running command that cannot start: the reason on stderr (a JSON line in
// JSON log format), then exit 2. Takes std::string and abseil's string_view alike
// (Debian's abseil has its own string_view), through operator<<.
template <typename Text>
int FailToStart(std::string_view command, const Text& what) {
  std::ostringstream text;
  text << what;
  appliance::PrintFatal(command, text.str());
  return kExitError;
}

struct Context {
  int exit_code = kExitOk;
};

void RegisterVersion(CLI::App& app, Context& ctx);
// `ca` (init, show, export, rotate, mint); call before RegisterCaClient, which extends it.
void RegisterCa(CLI::App& app, Context& ctx);
// Compliance store (issue 6): the server, its officer/auditor clients, and the API
// certificates. RulesAdmin and CaClient extend `rules` and `ca` (found or created).
void RegisterStore(CLI::App& app, Context& ctx);
void RegisterVerdicts(CLI::App& app, Context& ctx);
void RegisterAudit(CLI::App& app, Context& ctx);
void RegisterRulesAdmin(CLI::App& app, Context& ctx);
void RegisterCaClient(CLI::App& app, Context& ctx);
// `rules validate|test`: check a pack and score it on labelled samples; call before
// RegisterRulesAdmin, which adds the store's subcommands to the same `rules`.
void RegisterRules(CLI::App& app, Context& ctx);
// `scan`: grep-like DLP scan of files or stdin (dlp engine).
void RegisterScan(CLI::App& app, Context& ctx);
// `proxy`: the inline TLS-inspecting proxy (mitm::ProxyServer).
void RegisterProxy(CLI::App& app, Context& ctx);
// `run`: proxy + store in one process on the embedded default.
void RegisterRun(CLI::App& app, Context& ctx);
// `config check|defaults`: the YAML config file that run, proxy and store read.
void RegisterConfig(CLI::App& app, Context& ctx);
// `console login|logout`: sign-in links and revocation for the officers' web console.
void RegisterConsole(CLI::App& app, Context& ctx);

// `run`'s state directory: $EGRESSGUARD_HOME, else the XDG state directory.
std::string DefaultHome();

}  // namespace egressguard::cli
