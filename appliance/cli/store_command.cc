// `egressguard store`: the compliance store alone (gRPC API over one sqlite file).
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <csignal>
#include <iostream>

#include "appliance/cli/command.h"
#include "appliance/cli/stop_signals.h"
#include "appliance/store/server.h"
#include "dlp/engine.h"

namespace egressguard::cli {

namespace {

struct StoreFlags {
  std::string listen = "127.0.0.1:7443";
  std::string db;
  store::ApiTls tls;
  int retention_days = 0;
};

// Push and Validate refuse a pack that the appliances could not compile.
std::vector<std::string> CompileCheck(const rules::v1::RulePack& pack) {
  auto engine = dlp::Engine::Compile(pack, dlp::EngineOptions{});
  if (engine.ok()) return {};
  return {std::string(engine.status().message())};
}

int RunStore(const StoreFlags& flags) {
  const StopSignals stop_signals;  // before any server thread starts

  store::StoreServerOptions options;
  options.listen = flags.listen;
  options.db_path = flags.db;
  options.tls = flags.tls;
  options.retention_days = flags.retention_days;
  options.compile_check = CompileCheck;
  auto server = store::StoreServer::Start(options);
  if (!server.ok()) {
    std::cerr << "egressguard store: " << server.status().message() << "\n";
    return kExitError;
  }
  std::cout << fmt::format("egressguard store: listening on {} ({}), database {}", (*server)->address(),
                           flags.tls.enabled() ? "mTLS" : "plaintext, loopback only", flags.db)
            << std::endl;
  const int sig = stop_signals.Wait();
  spdlog::info("store: signal {}, stopping", sig);
  (*server)->Stop();
  return kExitOk;
}

}  // namespace

void RegisterStore(CLI::App& app, Context& ctx) {
  auto flags = std::make_shared<StoreFlags>();
  auto* cmd = app.add_subcommand("store", "Run the compliance store (gRPC + sqlite)");
  cmd->add_option("--listen", flags->listen, "Address to serve on, HOST:PORT (port 0: any free port)")
      ->capture_default_str();
  cmd->add_option("--db", flags->db, "The sqlite database file (created and migrated as needed)")->required();
  cmd->add_option("--tls-cert", flags->tls.cert_file, "Server certificate (PEM); required off loopback");
  cmd->add_option("--tls-key", flags->tls.key_file, "Its private key (PEM)");
  cmd->add_option("--client-ca", flags->tls.ca_file, "API CA (PEM) whose client certificates carry the roles");
  cmd->add_option("--retention-days", flags->retention_days, "Delete verdicts older than N days (0: keep all)")
      ->check(CLI::NonNegativeNumber);
  cmd->callback([&ctx, flags] { ctx.exit_code = RunStore(*flags); });
}

}  // namespace egressguard::cli
