// `egressguard run`: the embedded default — proxy + compliance store in one process,
// everything on loopback and under one home directory:
//   HOME/ca/                 dev cluster CA (created on first run; ca.key 0600)
//   HOME/ca-bundle.pem       the trust bundle clients need (curl --cacert)
//   HOME/fingerprint.key     HMAC key for finding fingerprints (0600)
//   HOME/store.db            compliance store (sqlite, WAL)
//   HOME/spool.db            the reporter's durable verdict spool
// The proxy reports through the spool to the store and follows the store's active rule
// pack, exactly as a separate appliance would, only over loopback.
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

#include "appliance/cli/command.h"
#include "appliance/cli/stop_signals.h"
#include "appliance/engine_setup.h"
#include "appliance/reporter/reporter.h"
#include "appliance/reporter/rule_watcher.h"
#include "appliance/store/server.h"
#include "ca/atomic_file.h"
#include "ca/certificate_authority.h"
#include "ca/openssl_leaf_minter.h"
#include "dlp/engine_holder.h"
#include "mitm/proxy_server.h"

namespace egressguard::cli {
namespace {

struct RunOptions {
  std::string home;
  std::string proxy_listen = "127.0.0.1:3128";
  std::string store_listen = "127.0.0.1:7690";
  std::string initial_mode = "enforce";
  std::vector<std::string> allow = {"*:443"};
  std::vector<std::string> no_decrypt;
  std::string upstream_ca;
  int workers = 0;
};

std::string DefaultHome() {
  if (const char* env = std::getenv("EGRESSGUARD_HOME"); env && *env) return env;
  if (const char* state = std::getenv("XDG_STATE_HOME"); state && *state) return std::string(state) + "/egressguard";
  if (const char* home = std::getenv("HOME"); home && *home) return std::string(home) + "/.local/state/egressguard";
  return "/var/lib/egressguard";
}

bool SplitListen(const std::string& text, std::string& host, uint16_t& port) {
  auto colon = text.rfind(':');
  if (colon == std::string::npos) return false;
  host = text.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  char* end = nullptr;
  unsigned long p = std::strtoul(text.c_str() + colon + 1, &end, 10);
  if (end == text.c_str() + colon + 1 || *end != '\0' || p > 65535) return false;
  port = static_cast<uint16_t>(p);
  return !host.empty();
}

int Fail(const std::string& what) {
  std::cerr << "egressguard run: " << what << "\n";
  return kExitError;
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

int Run(const RunOptions& o) {
  const std::string home = o.home.empty() ? DefaultHome() : o.home;
  if (auto st = ca::EnsurePrivateDirectory(home); !st.ok()) return Fail(std::string(st.message()));

  mitm::ProxyConfig proxy;
  if (!SplitListen(o.proxy_listen, proxy.listen_address, proxy.listen_port)) {
    return Fail("--proxy-listen wants ADDR:PORT, got '" + o.proxy_listen + "'");
  }
  std::string store_host;
  uint16_t store_port = 0;
  if (!SplitListen(o.store_listen, store_host, store_port)) {
    return Fail("--store-listen wants ADDR:PORT, got '" + o.store_listen + "'");
  }
  if (!store::IsLoopbackAddress(o.store_listen)) {
    return Fail("the embedded store serves plaintext gRPC and only on loopback; run `egressguard store` with TLS for anything else");
  }
  v1::PackMode mode = o.initial_mode == "monitor" ? v1::MONITOR : v1::ENFORCE;

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

  auto key = appliance::LoadOrCreateFingerprintKey(home + "/fingerprint.key");
  if (!key.ok()) return Fail(std::string(key.status().message()));
  dlp::EngineOptions engine_options;
  engine_options.fingerprint_key = *key;

  // Store.
  store::StoreServerOptions store_options;
  store_options.listen = o.store_listen;
  store_options.db_path = home + "/store.db";
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
  reporter_options.store_address = store_address;
  auto verdict_reporter = reporter::Reporter::Start(reporter_options);
  if (!verdict_reporter.ok()) return Fail(std::string(verdict_reporter.status().message()));

  auto engines = std::make_shared<dlp::EngineHolder>();
  char hostname[256] = {};
  if (gethostname(hostname, sizeof(hostname) - 1) == 0) proxy.appliance_name = hostname;
  reporter::RuleWatcherOptions watch;
  watch.store_address = store_address;
  watch.appliance = proxy.appliance_name;
  watch.compile = reporter::EngineCompiler(engine_options);
  auto watcher = reporter::RuleWatcher::Start(watch, *engines);
  if (!watcher.ok()) return Fail(std::string(watcher.status().message()));
  auto active = (*store_server)->store().Active();
  if (!active.ok()) return Fail(std::string(active.status().message()));
  if (!(*watcher)->WaitForVersion(active->info().version(), std::chrono::seconds(30))) {
    return Fail("the active rule pack did not compile in 30 s: " + (*watcher)->status().last_error);
  }

  // Proxy.
  proxy.workers = o.workers;
  proxy.upstream_ca_file = o.upstream_ca;
  proxy.policy.allow = o.allow;
  proxy.policy.no_decrypt = o.no_decrypt;
  proxy.mode = (*watcher)->enforce() ? mitm::EnforceMode::kEnforce : mitm::EnforceMode::kMonitor;
  mitm::ProxyDependencies deps;
  deps.minter = std::shared_ptr<ca::LeafMinter>(*std::move(minter));
  deps.engines = engines;
  deps.sink = *verdict_reporter;
  deps.mode_source = [w = watcher->get()] { return w->enforce() ? mitm::EnforceMode::kEnforce : mitm::EnforceMode::kMonitor; };
  auto proxy_server = mitm::ProxyServer::Create(proxy, deps);
  if (!proxy_server.ok()) return Fail(std::string(proxy_server.status().message()));

  const StopSignals stop_signals;  // before any worker thread starts
  if (auto st = (*proxy_server)->Start(); !st.ok()) return Fail(std::string(st.message()));

  std::cout << fmt::format(
                   "egressguard run: embedded default, home {}\n"
                   "  proxy     http://{}:{}  (HTTPS_PROXY; mode {} (follows the active pack); allow {})\n"
                   "  store     {}  (gRPC, plaintext, loopback only)\n"
                   "  rules     {} (active in the store)\n"
                   "  CA        {}/ca.crt   trust bundle for clients: {}\n"
                   "  files     {}/store.db, {}/spool.db, {}/fingerprint.key\n"
                   "  try       curl --proxy http://{}:{} --cacert {} https://example.org/\n"
                   "  stop      Ctrl-C or SIGTERM (drains in-flight requests)",
                   home, proxy.listen_address, (*proxy_server)->port(),
                   proxy.mode == mitm::EnforceMode::kEnforce ? "enforce" : "monitor", fmt::join(o.allow, ","),
                   store_address, active->info().version(), ca_dir, bundle, home, home, home,
                   proxy.listen_address, (*proxy_server)->port(), bundle)
            << std::endl;

  const int sig = stop_signals.Wait();
  spdlog::info("signal {}: draining", sig);
  (*proxy_server)->Stop();
  (*watcher)->Stop();
  (*verdict_reporter)->Drain(std::chrono::seconds(5));
  (*verdict_reporter)->Stop();
  (*store_server)->Stop();
  return kExitOk;
}

}  // namespace

void RegisterRun(CLI::App& app, Context& ctx) {
  auto o = std::make_shared<RunOptions>();
  auto* cmd = app.add_subcommand("run", "Run proxy + compliance store in one process on the embedded default (loopback)");
  cmd->add_option("--home", o->home, "Directory for the dev CA, store, spool and keys (default: $EGRESSGUARD_HOME, else ~/.local/state/egressguard)");
  cmd->add_option("--proxy-listen", o->proxy_listen, "Proxy ADDR:PORT")->capture_default_str();
  cmd->add_option("--store-listen", o->store_listen, "Store gRPC ADDR:PORT (loopback only here)")->capture_default_str();
  cmd->add_option("--initial-mode", o->initial_mode, "Mode of the default pack when the store has none active yet")
      ->check(CLI::IsMember({"monitor", "enforce"}))
      ->capture_default_str();
  cmd->add_option("--allow", o->allow, "Egress allow-list rule, repeatable: PATTERN[:PORTS][@METHODS]")->capture_default_str();
  cmd->add_option("--no-decrypt", o->no_decrypt, "Destinations relayed untouched (splice), repeatable");
  cmd->add_option("--upstream-ca", o->upstream_ca, "Extra trust anchors for verifying origins (PEM)");
  cmd->add_option("--workers", o->workers, "Proxy worker threads (0: one per core)")->capture_default_str();
  cmd->callback([&ctx, o] { ctx.exit_code = Run(*o); });
}

}  // namespace egressguard::cli
