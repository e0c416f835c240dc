// `egressguard run`: the embedded default — proxy + compliance store in one process,
// everything on loopback and under one home directory:
//   HOME/ca/                 dev cluster CA (created on first run; ca.key 0600)
//   HOME/ca-bundle.pem       the trust bundle clients need (curl --cacert)
//   HOME/fingerprint.key     HMAC key for finding fingerprints (0600)
//   HOME/store.db            compliance store (sqlite, WAL)
//   HOME/spool.db            the reporter's durable verdict spool
// The proxy reports through the spool to the store and follows the store's active rule
// pack, exactly as a separate appliance would, only over loopback. Flags and --config
// fill config::Config (flags win); SIGHUP re-reads the file and swaps the proxy's
// policy lists.
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>

#include "appliance/admin/appliance_admin.h"
#include "appliance/admin/counting_sink.h"
#include "appliance/cli/command.h"
#include "appliance/console/console_server.h"
#include "appliance/console/dev_certificate.h"
#include "appliance/pack_scoring.h"
#include "appliance/cli/config_flags.h"
#include "appliance/cli/config_reload.h"
#include "appliance/cli/stop_signals.h"
#include "appliance/engine_setup.h"
#include "appliance/logging.h"
#include "appliance/reporter/reporter.h"
#include "appliance/reporter/rule_watcher.h"
#include "appliance/store/server.h"
#include "ca/atomic_file.h"
#include "ca/certificate_authority.h"
#include "ca/openssl_leaf_minter.h"
#include "dlp/engine_holder.h"
#include "mitm/proxy_server.h"

namespace egressguard::cli {

std::string DefaultHome() {
  if (const char* env = std::getenv("EGRESSGUARD_HOME"); env && *env) return env;
  if (const char* state = std::getenv("XDG_STATE_HOME"); state && *state) return std::string(state) + "/egressguard";
  if (const char* home = std::getenv("HOME"); home && *home) return std::string(home) + "/.local/state/egressguard";
  return "/var/lib/egressguard";
}

namespace {

using config::Config;

template <typename Text>
int Fail(const Text& what) {
  return FailToStart("run", what);
}

// First start: the store has no active pack yet, so push and activate the shipped one.
absl::Status SeedDefaultPack(store::Store& db, v1::PackMode mode) {
  auto active = db.Active();
  if (active.ok()) return absl::OkStatus();
  if (active.status().code() != absl::StatusCode::kNotFound) return active.status();
  auto pack = appliance::LoadPack("");
  if (!pack.ok()) return pack.status();
  auto info = db.PushPack(*pack, "egressguard run", "embedded default pack, first start");
  if (!info.ok() && info.status().code() != absl::StatusCode::kAlreadyExists) return info.status();
  store::AuditEntry who{.actor = "egressguard run", .role = "local", .method = "run/seed", .detail = "", .allowed = true};
  auto activated = db.ActivatePack(pack->version(), mode, who, "embedded default pack, first start");
  return activated.ok() ? absl::OkStatus() : activated.status();
}

int Run(const ConfigFlags& flags) {
  auto resolved = flags.Resolve();
  if (!resolved.ok()) return Fail(resolved.status().message());
  const Config& o = *resolved;
  if (auto st = appliance::ApplyLogConfig(o.log.level, o.log.format); !st.ok()) return Fail(st.message());
  const std::string home = o.home.empty() ? DefaultHome() : o.home;
  if (auto st = ca::EnsurePrivateDirectory(home); !st.ok()) return Fail(std::string(st.message()));

  auto proxy_config = config::ToProxyConfig(o);
  if (!proxy_config.ok()) return Fail(proxy_config.status().message());
  mitm::ProxyConfig proxy = *std::move(proxy_config);
  if (!store::IsLoopbackAddress(o.store.listen)) {
    return Fail("the embedded store serves plaintext gRPC and only on loopback; run `egressguard store` with TLS for anything else");
  }
  v1::PackMode mode = o.proxy.mode == "monitor" ? v1::MONITOR : v1::ENFORCE;

  // CA and trust bundle.
  const std::string ca_dir = home + "/ca";
  auto authority = ca::EnsureDevCa(ca_dir);
  if (!authority.ok()) return Fail(std::string(authority.status().message()));
  const std::string bundle = home + "/ca-bundle.pem";
  if (auto st = ca::WriteFileAtomically(bundle, authority->TrustBundlePem(), 0644); !st.ok()) {
    return Fail(std::string(st.message()));
  }
  auto ca_shared = std::make_shared<const ca::CertificateAuthority>(*std::move(authority));
  auto minter = ca::OpenSslLeafMinter::Create(ca_shared);
  if (!minter.ok()) return Fail(std::string(minter.status().message()));
  console::PemPair console_pem;
  if (!o.store.console_listen.empty()) {
    auto pem = console::MintLoopbackCertificate(**minter);
    if (!pem.ok()) return Fail("cannot mint the console certificate: " + std::string(pem.status().message()));
    console_pem = *std::move(pem);
  }

  auto key = appliance::LoadOrCreateFingerprintKey(home + "/fingerprint.key");
  if (!key.ok()) return Fail(std::string(key.status().message()));
  dlp::EngineOptions engine_options;
  engine_options.fingerprint_key = *key;
  engine_options.max_finding_spans = o.rules.max_finding_spans;

  // Store.
  store::StoreServerOptions store_options;
  store_options.listen = o.store.listen;
  store_options.db_path = home + "/store.db";
  store_options.approvals_required = static_cast<int>(o.rules.approvals_required);
  store_options.approval_ttl = std::chrono::minutes(o.rules.approval_ttl_minutes);
  store_options.pack_tester = [engine_options](const rules::v1::RulePack& pack, const v1::TestPackRequest& request) {
    return appliance::TestPack(pack, request, engine_options);
  };
  store_options.compile_check = [engine_options](const rules::v1::RulePack& pack) {
    std::vector<std::string> problems;
    auto engine = dlp::Engine::Compile(pack, engine_options);
    if (!engine.ok()) problems.emplace_back(engine.status().message());
    return problems;
  };
  auto store_server = store::StoreServer::Start(store_options);
  if (!store_server.ok()) return Fail(std::string(store_server.status().message()));
  if (auto st = SeedDefaultPack((*store_server)->store(), mode); !st.ok()) {
    return Fail("cannot seed the default rule pack: " + std::string(st.message()));
  }
  const std::string store_address = (*store_server)->address();

  // Appliance side: spool + reporter, rule watcher.
  reporter::ReporterOptions reporter_options;
  reporter_options.spool.path = home + "/spool.db";
  reporter_options.spool.max_rows = o.reporter.spool_max_rows;
  reporter_options.spool.max_bytes = o.reporter.spool_max_bytes;
  reporter_options.store_address = store_address;
  reporter_options.max_backoff = std::chrono::milliseconds(o.reporter.reconnect_backoff_max_ms);
  auto verdict_reporter = reporter::Reporter::Start(reporter_options);
  if (!verdict_reporter.ok()) return Fail(std::string(verdict_reporter.status().message()));

  auto engines = std::make_shared<dlp::EngineHolder>();
  char hostname[256] = {};
  if (gethostname(hostname, sizeof(hostname) - 1) == 0) proxy.appliance_name = hostname;
  reporter::RuleWatcherOptions watch;
  watch.store_address = store_address;
  watch.appliance = proxy.appliance_name;
  watch.compile = reporter::EngineCompiler(engine_options);
  watch.max_backoff = reporter_options.max_backoff;
  auto watcher = reporter::RuleWatcher::Start(watch, *engines);
  if (!watcher.ok()) return Fail(std::string(watcher.status().message()));
  auto active = (*store_server)->store().Active();
  if (!active.ok()) return Fail(std::string(active.status().message()));
  if (!(*watcher)->WaitForVersion(active->info().version(), std::chrono::seconds(30))) {
    return Fail("the active rule pack did not compile in 30 s: " + (*watcher)->status().last_error);
  }

  // Proxy.
  proxy.mode = (*watcher)->enforce() ? mitm::EnforceMode::kEnforce : mitm::EnforceMode::kMonitor;
  mitm::ProxyDependencies deps;
  const ca::OpenSslLeafMinter* leaf_minter = minter->get();  // the proxy owns it from here
  deps.minter = std::shared_ptr<ca::LeafMinter>(*std::move(minter));
  deps.engines = engines;
  auto metrics = std::make_shared<admin::Metrics>();
  deps.sink = std::make_shared<admin::CountingSink>(*verdict_reporter, metrics->registry());
  deps.mode_source = [w = watcher->get()] { return w->enforce() ? mitm::EnforceMode::kEnforce : mitm::EnforceMode::kMonitor; };
  auto proxy_server = mitm::ProxyServer::Create(proxy, deps);
  if (!proxy_server.ok()) return Fail(std::string(proxy_server.status().message()));

  const StopSignals stop_signals;  // before any worker thread starts
  if (auto st = (*proxy_server)->Start(); !st.ok()) return Fail(std::string(st.message()));
  std::unique_ptr<admin::AdminServer> admin_server;
  if (!o.admin.listen.empty()) {
    admin::ApplianceParts parts{.proxy = proxy_server->get(),
                                .minter = leaf_minter,
                                .engines = engines,
                                .reporter = verdict_reporter->get(),
                                .watcher = watcher->get(),
                                .store = &(*store_server)->store()};
    auto started = admin::StartApplianceAdmin(o.admin.listen, metrics, parts);
    if (!started.ok()) return Fail(std::string(started.status().message()));
    admin_server = *std::move(started);
  }
  const std::string admin_line =
      admin_server ? fmt::format("http://{}/metrics  (/healthz, /readyz)", admin_server->address()) : "off";
  console::ConsoleServerPtr console_server;
  if (!o.store.console_listen.empty()) {
    console::ConsoleOptions console_options;
    console_options.listen = o.store.console_listen;
    console_options.state_dir = home;
    console_options.cert_chain_pem = console_pem.chain;
    console_options.key_pem = console_pem.key;
    auto started = console::ConsoleServer::Start(console_options, (*store_server)->InProcessChannel(),
                                                 (*store_server)->store());
    if (!started.ok()) return Fail(std::string(started.status().message()));
    console_server = *std::move(started);
  }
  const std::string console_line =
      console_server ? fmt::format("https://{}  (sign in: egressguard console login --home {} --user NAME --role officer --url https://{})",
                                   console_server->address(), home, console_server->address())
                     : "off";

  std::cout << fmt::format(
                   "egressguard run: embedded default, home {}\n"
                   "  proxy     http://{}:{}  (HTTPS_PROXY; mode {} (follows the active pack); allow {})\n"
                   "  store     {}  (gRPC, plaintext, loopback only)\n"
                   "  admin     {}\n"
                   "  console   {}\n"
                   "  rules     {} (active in the store)\n"
                   "  CA        {}/ca.crt   trust bundle for clients: {}\n"
                   "  files     {}/store.db, {}/spool.db, {}/fingerprint.key\n"
                   "  try       curl --proxy http://{}:{} --cacert {} https://example.org/\n"
                   "  stop      Ctrl-C or SIGTERM (drains in-flight requests)",
                   home, proxy.listen_address, (*proxy_server)->port(),
                   proxy.mode == mitm::EnforceMode::kEnforce ? "enforce" : "monitor", fmt::join(o.proxy.allow, ","),
                   store_address, admin_line, console_line, active->info().version(), ca_dir, bundle, home, home, home,
                   proxy.listen_address, (*proxy_server)->port(), bundle)
            << std::endl;

  int sig = stop_signals.Wait();
  for (; StopSignals::IsReload(sig); sig = stop_signals.Wait()) ReloadConfig(flags, proxy_server->get());
  spdlog::info("signal {}: draining", sig);
  if (console_server) console_server->Stop();  // it calls the store's services
  if (admin_server) admin_server->Stop();  // its metrics read the parts stopped below
  (*proxy_server)->Stop();
  (*watcher)->Stop();
  (*verdict_reporter)->Drain(std::chrono::seconds(5));
  (*verdict_reporter)->Stop();
  (*store_server)->Stop();
  return kExitOk;
}

}  // namespace

void RegisterRun(CLI::App& app, Context& ctx) {
  auto* cmd = app.add_subcommand("run", "Run proxy + compliance store in one process on the embedded default (loopback)");
  auto f = std::make_shared<ConfigFlags>(cmd, config::Command::kRun);
  using C = Config;
  f->Option("--home", [](C& c) -> auto& { return c.home; }, "Directory for the dev CA, store, spool and keys (default: $EGRESSGUARD_HOME, else ~/.local/state/egressguard)");
  f->Option("--proxy-listen", [](C& c) -> auto& { return c.proxy.listen; }, "Proxy ADDR:PORT")->capture_default_str();
  f->Option("--store-listen", [](C& c) -> auto& { return c.store.listen; }, "Store gRPC ADDR:PORT (loopback only here)")->capture_default_str();
  f->Option("--initial-mode", [](C& c) -> auto& { return c.proxy.mode; }, "Mode of the default pack when the store has none active yet")
      ->check(CLI::IsMember({"monitor", "enforce"}))
      ->capture_default_str();
  f->Option("--allow", [](C& c) -> auto& { return c.proxy.allow; }, "Egress allow-list rule, repeatable: PATTERN[:PORTS][@METHODS]")->capture_default_str();
  f->Option("--no-decrypt", [](C& c) -> auto& { return c.proxy.no_decrypt; }, "Destinations relayed untouched (splice), repeatable");
  f->Option("--raw-relay", [](C& c) -> auto& { return c.proxy.raw_relay; },
            "Enforce: destinations whose non-HTTP decrypted stream (or non-WebSocket Upgrade) is relayed raw, scanned, repeatable");
  f->Option("--upstream-ca", [](C& c) -> auto& { return c.proxy.upstream_ca; }, "Extra trust anchors for verifying origins (PEM)");
  f->Option("--workers", [](C& c) -> auto& { return c.proxy.workers; }, "Proxy worker threads (0: one per core)")->capture_default_str();
  f->Option("--console-listen", [](C& c) -> auto& { return c.store.console_listen; }, "ADDR:PORT of the officers' web console (HTTPS, dev CA certificate); \"\": off")
      ->capture_default_str();
  f->AddListenerFlags();
  cmd->callback([&ctx, f] { ctx.exit_code = Run(*f); });
}

}  // namespace egressguard::cli
