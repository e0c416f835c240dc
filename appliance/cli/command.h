#pragma once
// How subcommands plug into the `egressguard` binary. Each subcommand tree has one
// Register* function in its own file; its callback stores the process exit code.
//
// Exit codes follow grep's habit, which scripts rely on:
//   0 success / nothing found, 1 findings or a negative answer, 2 usage or runtime error.

#include <CLI/CLI.hpp>

namespace egressguard::cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFindings = 1;
inline constexpr int kExitError = 2;

struct Context {
  int exit_code = kExitOk;
};

void RegisterVersion(CLI::App& app, Context& ctx);
// Subcommands whose issue has not landed yet: they say so and exit 2.
void RegisterPending(CLI::App& app, Context& ctx);

// Prints "egressguard <what>: not built yet (issue N)" and returns kExitError.
int NotBuiltYet(const std::string& what, int issue);

}  // namespace egressguard::cli
