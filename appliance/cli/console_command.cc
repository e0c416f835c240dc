// `egressguard console login|logout`: run on the store host by whoever may read the
// console key beside the store database. login prints a one-time sign-in URL for a
// user and role; logout voids every session the user holds (the running store reads
// the revocation file on the next request).
#include <fmt/format.h>

#include <chrono>
#include <iostream>

#include "appliance/cli/command.h"
#include "appliance/console/session.h"

namespace egressguard::cli {

namespace {

struct ConsoleFlags {
  std::string dir;
  std::string db;
  std::string home;
  std::string user;
  std::string role;
  std::string url = "https://127.0.0.1:8443";
  int ttl_minutes = 10;
};

// The console's directory: --dir, else the folder of --db's sqlite file, else run's home.
std::string ConsoleDir(const ConsoleFlags& f) {
  if (!f.dir.empty()) return f.dir;
  if (!f.db.empty()) return console::DefaultConsoleDir(f.db);
  return f.home.empty() ? DefaultHome() : f.home;
}

int Login(const ConsoleFlags& f) {
  if (!console::ValidUserName(f.user)) {
    std::cerr << "egressguard console login: --user must be 1..64 of A-Z a-z 0-9 . _ @ -\n";
    return kExitError;
  }
  auto role = console::ParseConsoleRole(f.role);
  if (!role.ok()) {
    std::cerr << "egressguard console login: " << role.status().message() << "\n";
    return kExitError;
  }
  if (ConsoleDir(f).empty()) {
    std::cerr << "egressguard console login: a PostgreSQL store keeps the console key in its --console-dir: pass "
                 "--dir DIR\n";
    return kExitError;
  }
  const std::string key_path = console::ConsoleKeyPath(ConsoleDir(f));
  auto key = console::LoadConsoleKey(key_path);
  if (!key.ok()) {
    std::cerr << "egressguard console login: " << key.status().message()
              << " (the store creates it when started with --console-listen)\n";
    return kExitError;
  }
  console::TokenClaims claims;
  claims.user = f.user;
  claims.role = *role;
  claims.issued_us = console::NowMicros();
  claims.expires_us = claims.issued_us + int64_t{f.ttl_minutes} * 60 * 1'000'000;
  claims.nonce = console::TokenSigner::NewNonce();
  const console::TokenSigner signer(*std::move(key));
  std::string url = f.url;
  while (!url.empty() && url.back() == '/') url.pop_back();
  std::cout << fmt::format("{}/login?t={}", url, signer.MakeLogin(claims)) << "\n";
  std::cerr << fmt::format("one-time sign-in link for {} ({}), valid {} minutes\n", f.user, f.role, f.ttl_minutes);
  return kExitOk;
}

int Logout(const ConsoleFlags& f) {
  if (ConsoleDir(f).empty()) {
    std::cerr << "egressguard console logout: a PostgreSQL store keeps the revocations in its --console-dir: pass "
                 "--dir DIR\n";
    return kExitError;
  }
  const std::string path = console::RevocationPath(ConsoleDir(f));
  if (auto st = console::AppendRevocation(path, f.user, console::NowMicros()); !st.ok()) {
    std::cerr << "egressguard console logout: " << st.message() << "\n";
    return kExitError;
  }
  std::cout << fmt::format("sessions of {} revoked ({})\n", f.user, path);
  return kExitOk;
}

void AddWhere(CLI::App* cmd, ConsoleFlags& f) {
  cmd->add_option("--dir", f.dir, "The store's --console-dir (where console.key and console.revoked are)");
  cmd->add_option("--db", f.db, "The store's sqlite file instead (the console's files are beside it)");
  cmd->add_option("--home", f.home, "`egressguard run`'s home instead (its store.db); default: run's default home");
  cmd->add_option("--user", f.user, "The person's name, as the audit trail will show it")->required();
}

}  // namespace

void RegisterConsole(CLI::App& app, Context& ctx) {
  auto* console = app.add_subcommand("console", "The officers' web console: sign-in links and sign-out");
  console->require_subcommand(1);
  auto f = std::make_shared<ConsoleFlags>();
  auto* login = console->add_subcommand("login", "Print a one-time sign-in URL for a user (run on the store host)");
  AddWhere(login, *f);
  login->add_option("--role", f->role, "officer or auditor")->required()->check(CLI::IsMember({"officer", "auditor"}));
  login->add_option("--url", f->url, "The console's address as the browser reaches it")->capture_default_str();
  login->add_option("--ttl-minutes", f->ttl_minutes, "How long the link stays good")->check(CLI::Range(1, 60))
      ->capture_default_str();
  login->callback([&ctx, f] { ctx.exit_code = Login(*f); });
  auto* logout = console->add_subcommand("logout", "Void every console session of a user (run on the store host)");
  AddWhere(logout, *f);
  logout->callback([&ctx, f] { ctx.exit_code = Logout(*f); });
}

}  // namespace egressguard::cli
