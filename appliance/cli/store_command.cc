// `egressguard store`: the compliance store alone (gRPC API over one sqlite file).
// Flags and --config fill config::Config (flags win); SIGHUP re-reads the file's
// log settings (the rest needs a restart).
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <csignal>
#include <fstream>
#include <iostream>
#include <sstream>

#include "appliance/cli/command.h"
#include "appliance/cli/config_flags.h"
#include "appliance/cli/config_reload.h"
#include "appliance/cli/stop_signals.h"
#include "appliance/logging.h"
#include "appliance/pack_scoring.h"
#include "appliance/admin/appliance_admin.h"
#include "appliance/console/console_server.h"
#include "appliance/console/session.h"
#include "appliance/store/server.h"
#include "dlp/engine.h"

namespace egressguard::cli {

namespace {

using config::Config;

template <typename Text>
int Fail(const Text& what) {
  return FailToStart("store", what);
}

// Push and Validate refuse a pack that the appliances could not compile.
std::vector<std::string> CompileCheck(const rules::v1::RulePack& pack) {
  auto engine = dlp::Engine::Compile(pack, dlp::EngineOptions{});
  if (engine.ok()) return {};
  return {std::string(engine.status().message())};
}

absl::StatusOr<std::string> ReadText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError("cannot read " + path);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// The console serves HTTPS with the store's own server certificate.
absl::StatusOr<console::ConsoleServerPtr> StartConsole(const Config& c, store::StoreServer& server) {
  if (c.store.tls.cert.empty() || c.store.tls.key.empty()) {
    return absl::InvalidArgumentError(
        "the console (--console-listen) serves HTTPS with the store's certificate: pass --tls-cert and --tls-key");
  }
  console::ConsoleOptions options;
  options.listen = c.store.console_listen;
  options.state_dir = c.store.console_dir.empty() ? console::DefaultConsoleDir(c.store.db) : c.store.console_dir;
  if (options.state_dir.empty()) {
    return absl::InvalidArgumentError(
        "the console on a PostgreSQL store needs --console-dir DIR (store.console_dir): the directory of its "
        "sign-in key (console.key, 0600) and revocations (console.revoked), shared by every store replica");
  }
  auto cert = ReadText(c.store.tls.cert);
  if (!cert.ok()) return cert.status();
  auto key = ReadText(c.store.tls.key);
  if (!key.ok()) return key.status();
  options.cert_chain_pem = *std::move(cert);
  options.key_pem = *std::move(key);
  return console::ConsoleServer::Start(options, server.InProcessChannel(), server.store());
}

int RunStore(const ConfigFlags& flags) {
  auto resolved = flags.Resolve();
  if (!resolved.ok()) return Fail(resolved.status().message());
  const Config& c = *resolved;
  if (auto st = appliance::ApplyLogConfig(c.log.level, c.log.format); !st.ok()) return Fail(st.message());
  if (c.store.db.empty()) return Fail("the database is required: --db FILE (or store.db in --config)");

  const StopSignals stop_signals;  // before any server thread starts

  store::StoreServerOptions options;
  options.listen = c.store.listen;
  options.db_path = c.store.db;
  options.tls = store::ApiTls{c.store.tls.cert, c.store.tls.key, c.store.tls.ca};
  options.retention_days = static_cast<int>(c.store.retention_days);
  options.compile_check = CompileCheck;
  options.pack_tester = [](const rules::v1::RulePack& pack, const v1::TestPackRequest& request) {
    return appliance::TestPack(pack, request, dlp::EngineOptions{});
  };
  options.approvals_required = static_cast<int>(c.rules.approvals_required);
  options.approval_ttl = std::chrono::minutes(c.rules.approval_ttl_minutes);
  auto server = store::StoreServer::Start(options);
  if (!server.ok()) return Fail(server.status().message());
  std::unique_ptr<admin::AdminServer> admin_server;
  if (!c.admin.listen.empty()) {
    admin::ApplianceParts parts;
    parts.store = &(*server)->store();
    auto started = admin::StartApplianceAdmin(c.admin.listen, std::make_shared<admin::Metrics>(), parts);
    if (!started.ok()) return Fail(started.status().message());
    admin_server = *std::move(started);
    spdlog::info("admin: http://{}/metrics, /healthz, /readyz", admin_server->address());
  }
  console::ConsoleServerPtr console_server;
  if (!c.store.console_listen.empty()) {
    auto started = StartConsole(c, **server);
    if (!started.ok()) return Fail(started.status().message());
    console_server = *std::move(started);
  }
  std::cout << fmt::format("egressguard store: listening on {} ({}), database {}", (*server)->address(),
                           options.tls.enabled() ? "mTLS" : "plaintext, loopback only", c.store.db)
            << std::endl;
  if (console_server) {
    const std::string dir =
        c.store.console_dir.empty() ? console::DefaultConsoleDir(c.store.db) : c.store.console_dir;
    std::cout << fmt::format("egressguard store: console on https://{}  (sign in: egressguard console login --dir {} "
                             "--user NAME --role officer|auditor --url https://{})",
                             console_server->address(), dir, console_server->address())
              << std::endl;
  }
  int sig = stop_signals.Wait();
  for (; StopSignals::IsReload(sig); sig = stop_signals.Wait()) ReloadConfig(flags, nullptr);
  spdlog::info("store: signal {}, stopping", sig);
  if (admin_server) admin_server->Stop();
  if (console_server) console_server->Stop();  // before the services it calls
  (*server)->Stop();
  return kExitOk;
}

struct MigrateFlags {
  std::string db;
  std::string from;
  std::string to;
};

int RunMigrate(const MigrateFlags& f) {
  if (!f.from.empty() || !f.to.empty()) {
    if (f.from.empty() || f.to.empty() || !f.db.empty()) {
      return FailToStart("store migrate", "copying wants --from FILE and --to postgresql://... (and no --db)");
    }
    auto copied = store::Store::CopyIntoPostgres(f.from, f.to);
    if (!copied.ok()) return FailToStart("store migrate", copied.status().message());
    std::cout << fmt::format(
        "egressguard store migrate: copied {} verdicts, {} audit records, {} rule packs; both chains verify, heads "
        "verdicts {} audit {}\n",
        copied->verdicts, copied->audit, copied->packs, copied->verdict_head, copied->audit_head);
    return kExitOk;
  }
  if (f.db.empty()) {
    return FailToStart("store migrate", "the database is required: --db FILE or --db postgresql://... (or --from/--to)");
  }
  auto versions = store::Store::MigrateSchema(f.db);
  if (!versions.ok()) return FailToStart("store migrate", versions.status().message());
  if (versions->first == versions->second) {
    std::cout << fmt::format("egressguard store migrate: schema version {} is current\n", versions->second);
  } else {
    std::cout << fmt::format("egressguard store migrate: schema version {} -> {}\n", versions->first, versions->second);
  }
  return kExitOk;
}

}  // namespace

void RegisterStore(CLI::App& app, Context& ctx) {
  auto* cmd = app.add_subcommand("store", "Run the compliance store (gRPC + sqlite or PostgreSQL)");
  auto f = std::make_shared<ConfigFlags>(cmd, config::Command::kStore);
  using C = Config;
  f->Option("--listen", [](C& c) -> auto& { return c.store.listen; }, "Address to serve on, HOST:PORT (port 0: any free port)")
      ->capture_default_str();
  f->Option("--db", [](C& c) -> auto& { return c.store.db; },
            "The sqlite database file, or a postgresql:// URI (libpq; no password in it: PGPASSFILE or a client "
            "certificate); created and migrated as needed; required");
  f->Option("--tls-cert", [](C& c) -> auto& { return c.store.tls.cert; }, "Server certificate (PEM); required off loopback");
  f->Option("--tls-key", [](C& c) -> auto& { return c.store.tls.key; }, "Its private key (PEM)");
  f->Option("--client-ca", [](C& c) -> auto& { return c.store.tls.ca; }, "API CA (PEM) whose client certificates carry the roles");
  f->Option("--retention-days", [](C& c) -> auto& { return c.store.retention_days; }, "Delete verdicts older than N days (0: keep all)")
      ->check(CLI::NonNegativeNumber);
  f->Option("--console-listen", [](C& c) -> auto& { return c.store.console_listen; }, "ADDR:PORT of the officers' web console (HTTPS with --tls-cert; default: off)");
  f->Option("--console-dir", [](C& c) -> auto& { return c.store.console_dir; },
            "Directory of the console's sign-in key and revocations (default: the sqlite file's folder; required "
            "with a PostgreSQL database, shared by its store replicas)");
  f->Option("--approvals-required", [](C& c) -> auto& { return c.rules.approvals_required; }, "Officers who must agree to activate or roll back a pack (1 or 2)")
      ->check(CLI::Range(1, 2));
  f->Option("--admin-listen", [](C& c) -> auto& { return c.admin.listen; }, "ADDR:PORT for /metrics, /healthz, /readyz (default: off)");
  auto m = std::make_shared<MigrateFlags>();
  auto* migrate = cmd->add_subcommand(
      "migrate", "Create or upgrade the store's schema without serving (e.g. a Job before a rollout of replicas)");
  migrate->add_option("--db", m->db, "Create or upgrade this sqlite file's or postgresql:// URI's schema");
  migrate->add_option("--from", m->from, "Copy this sqlite store (verdicts, packs, audit, chains intact) ...");
  migrate->add_option("--to", m->to, "... into this empty PostgreSQL database (postgresql:// URI)");
  migrate->callback([&ctx, m] { ctx.exit_code = RunMigrate(*m); });
  cmd->callback([&ctx, f, migrate] {
    if (migrate->parsed()) return;  // `store migrate` ran instead of the server
    ctx.exit_code = RunStore(*f);
  });
}

}  // namespace egressguard::cli
