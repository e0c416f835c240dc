// `egressguard proxy`: runs the inline TLS-inspecting proxy (mitm::ProxyServer) until
// SIGTERM/SIGINT, then drains; SIGHUP re-reads --config and swaps the policy lists.
// Flags and the config file fill config::Config (flags win), which becomes the
// mitm::ProxyConfig that `egressguard run` builds the same way.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <csignal>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "appliance/cli/command.h"
#include "appliance/cli/config_flags.h"
#include "appliance/cli/config_reload.h"
#include "appliance/cli/stop_signals.h"
#include "appliance/engine_setup.h"
#include "appliance/logging.h"
#include "appliance/reporter/pack_cache.h"
#include "appliance/reporter/reporter.h"
#include "appliance/reporter/rule_watcher.h"
#include "appliance/reporter/tee_sink.h"
#include "appliance/admin/appliance_admin.h"
#include "appliance/admin/counting_sink.h"
#include "ca/certificate_authority.h"
#include "ca/openssl_leaf_minter.h"
#include "dlp/engine.h"
#include "dlp/engine_holder.h"
#include "mitm/jsonl_sink.h"
#include "mitm/proxy_config.h"
#include "mitm/proxy_server.h"

namespace egressguard::cli {
namespace {

using config::Config;

template <typename Text>
int Fail(const Text& what) {
  return FailToStart("proxy", what);
}

absl::StatusOr<dlp::EngineOptions> EngineOptionsFor(const std::string& key_file, uint32_t max_finding_spans) {
  dlp::EngineOptions options;
  options.max_finding_spans = max_finding_spans;
  if (key_file.empty()) {
    spdlog::warn("no --fingerprint-key-file: fingerprints use a random per-process key");
    options.fingerprint_key = appliance::EphemeralFingerprintKey();
    return options;
  }
  auto key = appliance::ReadFingerprintKey(key_file);
  if (!key.ok()) return key.status();
  options.fingerprint_key = *std::move(key);
  return options;
}

int RunProxy(const ConfigFlags& flags) {
  auto resolved = flags.Resolve();
  if (!resolved.ok()) return Fail(resolved.status().message());
  const Config& o = *resolved;
  if (auto st = appliance::ApplyLogConfig(o.log.level, o.log.format); !st.ok()) return Fail(st.message());
  auto proxy_config = config::ToProxyConfig(o);
  if (!proxy_config.ok()) return Fail(proxy_config.status().message());
  mitm::ProxyConfig config = *std::move(proxy_config);
  char host[256] = {};
  if (gethostname(host, sizeof(host) - 1) == 0) config.appliance_name = host;

  if (o.ca.cert.empty() || o.ca.key.empty()) {
    return Fail("the cluster CA is required: --ca-cert and --ca-key (or ca.cert and ca.key in --config)");
  }
  auto ca = ca::CertificateAuthority::LoadFromFiles(o.ca.cert, o.ca.key);
  if (!ca.ok()) return Fail(ca.status().message());
  auto minter = ca::OpenSslLeafMinter::Create(std::make_shared<const ca::CertificateAuthority>(*std::move(ca)));
  if (!minter.ok()) return Fail(minter.status().message());

  const std::string& store_address = o.reporter.store;
  if (!store_address.empty() && (!o.rules.pack.empty() || o.rules.disabled)) {
    return Fail("with --store the rules and mode come from the store; drop --rules/--no-rules");
  }
  auto engine_options = EngineOptionsFor(o.rules.fingerprint_key, o.rules.max_finding_spans);
  if (!engine_options.ok()) return Fail(engine_options.status().message());
  auto engines = std::make_shared<dlp::EngineHolder>();
  mitm::VerdictSinkPtr sink;
  reporter::ReporterPtr verdict_reporter;
  reporter::RuleWatcherPtr watcher;
  if (!store_address.empty()) {
    // Appliance mode: verdicts spool locally then stream to the store; the active pack
    // and its mode come from the store (WatchActive) and swap in without a restart. The
    // last one is kept beside the spool: a restart while the store is unreachable
    // starts from it.
    store::ApiTls tls{o.reporter.tls.cert, o.reporter.tls.key, o.reporter.tls.ca};
    const std::chrono::milliseconds backoff(o.reporter.reconnect_backoff_max_ms);
    reporter::ReporterOptions ro;
    ro.spool.path = o.reporter.spool;
    ro.spool.max_rows = o.reporter.spool_max_rows;
    ro.spool.max_bytes = o.reporter.spool_max_bytes;
    ro.store_address = store_address;
    ro.tls = tls;
    ro.max_backoff = backoff;
    auto rep = reporter::Reporter::Start(ro);
    if (!rep.ok()) return Fail(rep.status().message());
    verdict_reporter = *rep;
    sink = verdict_reporter;
    reporter::RuleWatcherOptions wo;
    wo.store_address = store_address;
    wo.tls = tls;
    wo.appliance = config.appliance_name;
    wo.compile = reporter::EngineCompiler(*engine_options);
    wo.max_backoff = backoff;
    wo.cache_path = reporter::PackCachePath(o.reporter.spool);
    auto w = reporter::RuleWatcher::Start(wo, *engines);
    if (!w.ok()) return Fail(w.status().message());
    watcher = *std::move(w);
    spdlog::info("reporting to store {} through spool {} (at most {} verdicts, {} bytes; reconnect within {} ms); "
                 "rules follow the store's active pack (kept in {})",
                 store_address, o.reporter.spool, ro.spool.max_rows, ro.spool.max_bytes, backoff.count(),
                 wo.cache_path);
  } else if (!o.rules.disabled) {
    auto pack = appliance::LoadPack(o.rules.pack);
    if (!pack.ok()) return Fail(pack.status().message());
    auto engine = dlp::Engine::Compile(*pack, *engine_options);
    if (!engine.ok()) return Fail(engine.status().message());
    spdlog::info("rule pack version {} compiled", (*engine)->pack_version());
    engines->Swap(*engine);
  } else {
    spdlog::warn("--no-rules: the engine cannot scan; traffic is {}",
                 o.proxy.fail_open ? "forwarded unscanned (--fail-open)" : "refused (fail closed)");
  }

  if (!o.proxy.audit_log.empty()) {
    auto jsonl = mitm::JsonlSink::Open(o.proxy.audit_log);
    if (!jsonl.ok()) return Fail(jsonl.status().message());
    if (verdict_reporter) {
      // Both: the store's record decides (a verdict the spool refuses stops its
      // transaction), the local JSONL trail gets every verdict.
      sink = std::make_shared<reporter::TeeSink>(verdict_reporter, *jsonl);
      spdlog::info("verdicts also go to the audit log {}", o.proxy.audit_log);
    } else {
      sink = *jsonl;
    }
  }
  if (config.policy.allow.empty()) spdlog::warn("no --allow rules: every destination is refused");

  mitm::ProxyDependencies deps;
  const ca::OpenSslLeafMinter* leaf_minter = minter->get();  // the proxy owns it from here
  deps.minter = std::shared_ptr<ca::LeafMinter>(*std::move(minter));
  deps.engines = engines;
  auto metrics = std::make_shared<admin::Metrics>();
  deps.sink = o.admin.listen.empty() ? sink : std::make_shared<admin::CountingSink>(sink, metrics->registry());
  if (watcher) {
    deps.mode_source = [w = watcher.get()] { return w->enforce() ? mitm::EnforceMode::kEnforce : mitm::EnforceMode::kMonitor; };
  }
  auto server = mitm::ProxyServer::Create(config, deps);
  if (!server.ok()) return Fail(server.status().message());

  const StopSignals stop_signals;  // before any worker thread starts

  auto status = (*server)->Start();
  if (!status.ok()) return Fail(status.message());
  std::unique_ptr<admin::AdminServer> admin_server;
  if (!o.admin.listen.empty()) {
    admin::ApplianceParts parts{.proxy = server->get(),
                                .minter = leaf_minter,
                                .engines = engines,
                                .reporter = verdict_reporter.get(),
                                .watcher = watcher.get(),
                                .store = nullptr};
    auto started = admin::StartApplianceAdmin(o.admin.listen, metrics, parts);
    if (!started.ok()) return Fail(started.status().message());
    admin_server = *std::move(started);
    spdlog::info("admin: http://{}/metrics, /healthz, /readyz", admin_server->address());
  }
  std::string shown = config.listen_address.find(':') != std::string::npos ? "[" + config.listen_address + "]"
                                                                             : config.listen_address;
  std::cout << "egressguard proxy listening on " << shown << ":" << (*server)->port() << " mode "
            << (config.mode == mitm::EnforceMode::kEnforce ? "enforce" : "monitor") << std::endl;
  int sig = stop_signals.Wait();
  for (; StopSignals::IsReload(sig); sig = stop_signals.Wait()) ReloadConfig(flags, server->get());
  spdlog::info("signal {}: draining", sig);
  if (admin_server) admin_server->Stop();  // its metrics read the parts stopped below
  (*server)->Stop();
  if (watcher) watcher->Stop();
  if (verdict_reporter) {
    verdict_reporter->Drain(std::chrono::seconds(5));
    verdict_reporter->Stop();
  }
  auto st = (*server)->stats();
  spdlog::info("stopped: {} connections accepted, {} transactions, {} blocked", st.accepted, st.transactions, st.blocked);
  return kExitOk;
}

}  // namespace

void RegisterProxy(CLI::App& app, Context& ctx) {
  auto* cmd = app.add_subcommand("proxy", "Run the inline TLS-inspecting proxy");
  auto f = std::make_shared<ConfigFlags>(cmd, config::Command::kProxy);
  using C = Config;
  f->Option("--listen", [](C& c) -> auto& { return c.proxy.listen; }, "ADDR:PORT to listen on (port 0: any free port)")
      ->capture_default_str();
  f->Option("--ca-cert", [](C& c) -> auto& { return c.ca.cert; }, "Cluster CA certificate (PEM, may carry its chain); required");
  f->Option("--ca-key", [](C& c) -> auto& { return c.ca.key; }, "Cluster CA private key (PEM, mode 0600); required");
  f->Option("--upstream-ca", [](C& c) -> auto& { return c.proxy.upstream_ca; }, "Extra trust anchors for verifying origins (PEM bundle)");
  f->Flag("--upstream-ca-only", [](C& c) -> auto& { return c.proxy.upstream_ca_only; }, "Trust only --upstream-ca, not the system store");
  f->Option("--rules", [](C& c) -> auto& { return c.rules.pack; }, "Rule pack file or directory (default: the shipped pack)");
  f->Flag("--no-rules", [](C& c) -> auto& { return c.rules.disabled; }, "Start without a rule pack (fail closed unless --fail-open)");
  f->Option("--mode", [](C& c) -> auto& { return c.proxy.mode; }, "monitor (forward and report) or enforce (block before forwarding)")
      ->check(CLI::IsMember({"monitor", "enforce"}))
      ->capture_default_str();
  f->Option("--workers", [](C& c) -> auto& { return c.proxy.workers; }, "Worker threads (0: one per core)")->check(CLI::Range(0, 256));
  f->Option("--allow", [](C& c) -> auto& { return c.proxy.allow; }, "Egress allow rule PATTERN[:PORTS][@METHODS] (repeatable; none: refuse all)");
  f->Option("--no-decrypt", [](C& c) -> auto& { return c.proxy.no_decrypt; }, "Relay these destinations without decrypting (repeatable)");
  f->Option("--raw-relay", [](C& c) -> auto& { return c.proxy.raw_relay; },
            "Enforce: relay a decrypted stream that is not HTTP, or an Upgrade other than WebSocket, to these destinations raw, scanned (repeatable; else refused)");
  f->Option("--client-cidr", [](C& c) -> auto& { return c.proxy.client_cidrs; }, "Clients allowed to use the proxy (default loopback)");
  f->Option("--audit-log", [](C& c) -> auto& { return c.proxy.audit_log; },
            "Append verdicts as JSON lines to FILE (with --store: as well as the store)");
  f->Option("--hold-limit", [](C& c) -> auto& { return c.proxy.hold_limit; }, "Enforce: hold request bodies up to BYTES until scanned")
      ->capture_default_str();
  f->Flag("--scan-responses", [](C& c) -> auto& { return c.proxy.scan_responses; }, "Scan response bodies too (reported, never blocked)");
  f->Flag("--fail-open", [](C& c) -> auto& { return c.proxy.fail_open; }, "Forward unscanned when the engine cannot scan (default: refuse)");
  f->Flag("--allow-non-tls", [](C& c) -> auto& { return c.proxy.allow_non_tls; }, "Relay non-TLS bytes after CONNECT (scanned) instead of refusing");
  f->Option("--max-connections", [](C& c) -> auto& { return c.proxy.max_connections; }, "Concurrent connection limit")->capture_default_str();
  f->Option("--header-timeout-ms", [](C& c) -> auto& { return c.proxy.header_timeout_ms; }, "Request head timeout")->capture_default_str();
  f->Option("--handshake-timeout-ms", [](C& c) -> auto& { return c.proxy.handshake_timeout_ms; }, "ClientHello/upstream/TLS timeout")
      ->capture_default_str();
  f->Option("--idle-timeout-ms", [](C& c) -> auto& { return c.proxy.idle_timeout_ms; }, "Idle connection timeout")->capture_default_str();
  f->Option("--drain-timeout-ms", [](C& c) -> auto& { return c.proxy.drain_timeout_ms; }, "Graceful drain on SIGTERM")->capture_default_str();
  f->Option("--fingerprint-key-file", [](C& c) -> auto& { return c.rules.fingerprint_key; }, "HMAC key for match fingerprints");
  f->Option("--store", [](C& c) -> auto& { return c.reporter.store; }, "Compliance store ADDR:PORT: report verdicts there and follow its active rule pack");
  f->Option("--spool", [](C& c) -> auto& { return c.reporter.spool; }, "Durable verdict spool (sqlite) used with --store")->capture_default_str();
  f->Option("--spool-max-rows", [](C& c) -> auto& { return c.reporter.spool_max_rows; },
            "Verdicts the spool holds at most (then verdicts are refused)")
      ->check(CLI::Range(uint64_t{1}, config::kMaxSpoolRows))
      ->capture_default_str();
  f->Option("--spool-max-bytes", [](C& c) -> auto& { return c.reporter.spool_max_bytes; },
            "Serialized verdict bytes the spool holds at most")
      ->check(CLI::Range(uint64_t{1}, config::kMaxSpoolBytes))
      ->capture_default_str();
  f->Option("--reconnect-backoff-max-ms", [](C& c) -> auto& { return c.reporter.reconnect_backoff_max_ms; },
            "Longest wait between attempts to reach the store")
      ->check(CLI::Range(config::kMinReconnectBackoffMs, config::kMaxReconnectBackoffMs))
      ->capture_default_str();
  f->Option("--store-cert", [](C& c) -> auto& { return c.reporter.tls.cert; }, "Client certificate for the store (role appliance; needed off loopback)");
  f->Option("--store-key", [](C& c) -> auto& { return c.reporter.tls.key; }, "Its private key");
  f->Option("--store-ca", [](C& c) -> auto& { return c.reporter.tls.ca; }, "CA that signs the store's server certificate");
  f->AddListenerFlags();
  cmd->callback([&ctx, f] { ctx.exit_code = RunProxy(*f); });
}

}  // namespace egressguard::cli
