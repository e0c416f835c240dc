// `egressguard proxy`: runs the inline TLS-inspecting proxy (mitm::ProxyServer) until
// SIGTERM/SIGINT, then drains. Every flag fills mitm::ProxyConfig, the same struct a
// YAML config and `egressguard run` fill.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <csignal>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "appliance/cli/command.h"
#include "appliance/cli/stop_signals.h"
#include "appliance/engine_setup.h"
#include "appliance/reporter/reporter.h"
#include "appliance/reporter/rule_watcher.h"
#include "ca/certificate_authority.h"
#include "ca/openssl_leaf_minter.h"
#include "dlp/engine.h"
#include "dlp/engine_holder.h"
#include "mitm/jsonl_sink.h"
#include "mitm/proxy_config.h"
#include "mitm/proxy_server.h"

namespace egressguard::cli {
namespace {

struct ProxyOptions {
  std::string listen = "127.0.0.1:3128";
  std::string ca_cert;
  std::string ca_key;
  std::string upstream_ca;
  bool upstream_ca_only = false;
  std::string rules;
  bool no_rules = false;
  std::string mode = "monitor";
  int workers = 0;
  std::vector<std::string> allow;
  std::vector<std::string> no_decrypt;
  std::vector<std::string> client_cidrs;
  std::string audit_log;
  uint64_t hold_limit = 16ull << 20;
  bool scan_responses = false;
  bool fail_open = false;
  bool allow_non_tls = false;
  size_t max_connections = 10000;
  int header_timeout_ms = 10000;
  int handshake_timeout_ms = 10000;
  int idle_timeout_ms = 60000;
  int drain_timeout_ms = 10000;
  std::string fingerprint_key_file;
  std::string store;
  std::string spool = "egressguard-spool.db";
  std::string store_cert;
  std::string store_key;
  std::string store_ca;
};

// "ADDR:PORT", "[v6]:PORT"; port 0 picks a free port.
bool ParseListen(const std::string& text, std::string& address, uint16_t& port) {
  auto colon = text.rfind(':');
  if (colon == std::string::npos || colon + 1 == text.size()) return false;
  address = text.substr(0, colon);
  if (address.size() >= 2 && address.front() == '[' && address.back() == ']') address = address.substr(1, address.size() - 2);
  try {
    size_t used = 0;
    unsigned long p = std::stoul(text.substr(colon + 1), &used);
    if (used != text.size() - colon - 1 || p > 65535) return false;
    port = static_cast<uint16_t>(p);
  } catch (...) {
    return false;
  }
  return !address.empty();
}

absl::StatusOr<dlp::EngineOptions> EngineOptionsFor(const std::string& key_file) {
  dlp::EngineOptions options;
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

int RunProxy(const ProxyOptions& o) {
  mitm::ProxyConfig config;
  if (!ParseListen(o.listen, config.listen_address, config.listen_port)) {
    std::cerr << "egressguard proxy: --listen wants ADDR:PORT, got '" << o.listen << "'\n";
    return kExitError;
  }
  config.workers = o.workers;
  config.upstream_ca_file = o.upstream_ca;
  config.upstream_ca_only = o.upstream_ca_only;
  config.policy.allow = o.allow;
  config.policy.no_decrypt = o.no_decrypt;
  if (!o.client_cidrs.empty()) config.policy.client_cidrs = o.client_cidrs;
  config.mode = o.mode == "enforce" ? mitm::EnforceMode::kEnforce : mitm::EnforceMode::kMonitor;
  config.fail_open = o.fail_open;
  config.scan_responses = o.scan_responses;
  config.refuse_non_tls = !o.allow_non_tls;
  config.hold_limit = o.hold_limit;
  config.max_connections = o.max_connections;
  config.header_timeout = std::chrono::milliseconds(o.header_timeout_ms);
  config.handshake_timeout = std::chrono::milliseconds(o.handshake_timeout_ms);
  config.idle_timeout = std::chrono::milliseconds(o.idle_timeout_ms);
  config.drain_timeout = std::chrono::milliseconds(o.drain_timeout_ms);
  char host[256] = {};
  if (gethostname(host, sizeof(host) - 1) == 0) config.appliance_name = host;

  auto ca = ca::CertificateAuthority::LoadFromFiles(o.ca_cert, o.ca_key);
  if (!ca.ok()) {
    std::cerr << "egressguard proxy: " << ca.status().message() << "\n";
    return kExitError;
  }
  auto minter = ca::OpenSslLeafMinter::Create(std::make_shared<const ca::CertificateAuthority>(*std::move(ca)));
  if (!minter.ok()) {
    std::cerr << "egressguard proxy: " << minter.status().message() << "\n";
    return kExitError;
  }

  if (!o.store.empty() && (!o.rules.empty() || o.no_rules || !o.audit_log.empty())) {
    std::cerr << "egressguard proxy: with --store the rules, mode and verdicts go through the store; "
                 "drop --rules/--no-rules/--audit-log\n";
    return kExitError;
  }
  auto engine_options = EngineOptionsFor(o.fingerprint_key_file);
  if (!engine_options.ok()) {
    std::cerr << "egressguard proxy: " << engine_options.status().message() << "\n";
    return kExitError;
  }
  auto engines = std::make_shared<dlp::EngineHolder>();
  mitm::VerdictSinkPtr sink;
  reporter::ReporterPtr verdict_reporter;
  reporter::RuleWatcherPtr watcher;
  if (!o.store.empty()) {
    // Appliance mode: verdicts spool locally then stream to the store; the active pack
    // and its mode come from the store (WatchActive) and swap in without a restart.
    store::ApiTls tls{o.store_cert, o.store_key, o.store_ca};
    reporter::ReporterOptions ro;
    ro.spool.path = o.spool;
    ro.store_address = o.store;
    ro.tls = tls;
    auto rep = reporter::Reporter::Start(ro);
    if (!rep.ok()) {
      std::cerr << "egressguard proxy: " << rep.status().message() << "\n";
      return kExitError;
    }
    verdict_reporter = *rep;
    sink = verdict_reporter;
    reporter::RuleWatcherOptions wo;
    wo.store_address = o.store;
    wo.tls = tls;
    wo.appliance = config.appliance_name;
    wo.compile = reporter::EngineCompiler(*engine_options);
    auto w = reporter::RuleWatcher::Start(wo, *engines);
    if (!w.ok()) {
      std::cerr << "egressguard proxy: " << w.status().message() << "\n";
      return kExitError;
    }
    watcher = *std::move(w);
    spdlog::info("reporting to store {} through spool {}; rules follow the store's active pack", o.store, o.spool);
  } else if (!o.no_rules) {
    auto pack = appliance::LoadPack(o.rules);
    if (!pack.ok()) {
      std::cerr << "egressguard proxy: " << pack.status().message() << "\n";
      return kExitError;
    }
    auto engine = dlp::Engine::Compile(*pack, *engine_options);
    if (!engine.ok()) {
      std::cerr << "egressguard proxy: " << engine.status().message() << "\n";
      return kExitError;
    }
    spdlog::info("rule pack version {} compiled", (*engine)->pack_version());
    engines->Swap(*engine);
  } else {
    spdlog::warn("--no-rules: the engine cannot scan; traffic is {}", o.fail_open ? "forwarded unscanned (--fail-open)" : "refused (fail closed)");
  }

  if (!o.audit_log.empty()) {
    auto jsonl = mitm::JsonlSink::Open(o.audit_log);
    if (!jsonl.ok()) {
      std::cerr << "egressguard proxy: " << jsonl.status().message() << "\n";
      return kExitError;
    }
    sink = *jsonl;
  }
  if (config.policy.allow.empty()) spdlog::warn("no --allow rules: every destination is refused");

  mitm::ProxyDependencies deps;
  deps.minter = std::shared_ptr<ca::LeafMinter>(*std::move(minter));
  deps.engines = engines;
  deps.sink = sink;
  if (watcher) {
    deps.mode_source = [w = watcher.get()] { return w->enforce() ? mitm::EnforceMode::kEnforce : mitm::EnforceMode::kMonitor; };
  }
  auto server = mitm::ProxyServer::Create(config, deps);
  if (!server.ok()) {
    std::cerr << "egressguard proxy: " << server.status().message() << "\n";
    return kExitError;
  }

  const StopSignals stop_signals;  // before any worker thread starts

  auto status = (*server)->Start();
  if (!status.ok()) {
    std::cerr << "egressguard proxy: " << status.message() << "\n";
    return kExitError;
  }
  std::string shown = config.listen_address.find(':') != std::string::npos ? "[" + config.listen_address + "]"
                                                                             : config.listen_address;
  std::cout << "egressguard proxy listening on " << shown << ":" << (*server)->port() << " mode "
            << (config.mode == mitm::EnforceMode::kEnforce ? "enforce" : "monitor") << std::endl;
  const int sig = stop_signals.Wait();
  spdlog::info("signal {}: draining", sig);
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
  auto o = std::make_shared<ProxyOptions>();
  auto* cmd = app.add_subcommand("proxy", "Run the inline TLS-inspecting proxy");
  cmd->add_option("--listen", o->listen, "ADDR:PORT to listen on (port 0: any free port)")->capture_default_str();
  cmd->add_option("--ca-cert", o->ca_cert, "Cluster CA certificate (PEM, may carry its chain)")->required();
  cmd->add_option("--ca-key", o->ca_key, "Cluster CA private key (PEM, mode 0600)")->required();
  cmd->add_option("--upstream-ca", o->upstream_ca, "Extra trust anchors for verifying origins (PEM bundle)");
  cmd->add_flag("--upstream-ca-only", o->upstream_ca_only, "Trust only --upstream-ca, not the system store");
  cmd->add_option("--rules", o->rules, "Rule pack file or directory (default: the shipped pack)");
  cmd->add_flag("--no-rules", o->no_rules, "Start without a rule pack (fail closed unless --fail-open)");
  cmd->add_option("--mode", o->mode, "monitor (forward and report) or enforce (block before forwarding)")
      ->check(CLI::IsMember({"monitor", "enforce"}))
      ->capture_default_str();
  cmd->add_option("--workers", o->workers, "Worker threads (0: one per core)")->check(CLI::Range(0, 256));
  cmd->add_option("--allow", o->allow, "Egress allow rule PATTERN[:PORTS][@METHODS] (repeatable; none: refuse all)");
  cmd->add_option("--no-decrypt", o->no_decrypt, "Relay these destinations without decrypting (repeatable)");
  cmd->add_option("--client-cidr", o->client_cidrs, "Clients allowed to use the proxy (default loopback)");
  cmd->add_option("--audit-log", o->audit_log, "Append verdicts as JSON lines to FILE");
  cmd->add_option("--hold-limit", o->hold_limit, "Enforce: hold request bodies up to BYTES until scanned")
      ->capture_default_str();
  cmd->add_flag("--scan-responses", o->scan_responses, "Scan response bodies too (reported, never blocked)");
  cmd->add_flag("--fail-open", o->fail_open, "Forward unscanned when the engine cannot scan (default: refuse)");
  cmd->add_flag("--allow-non-tls", o->allow_non_tls, "Relay non-TLS bytes after CONNECT (scanned) instead of refusing");
  cmd->add_option("--max-connections", o->max_connections, "Concurrent connection limit")->capture_default_str();
  cmd->add_option("--header-timeout-ms", o->header_timeout_ms, "Request head timeout")->capture_default_str();
  cmd->add_option("--handshake-timeout-ms", o->handshake_timeout_ms, "ClientHello/upstream/TLS timeout")
      ->capture_default_str();
  cmd->add_option("--idle-timeout-ms", o->idle_timeout_ms, "Idle connection timeout")->capture_default_str();
  cmd->add_option("--drain-timeout-ms", o->drain_timeout_ms, "Graceful drain on SIGTERM")->capture_default_str();
  cmd->add_option("--fingerprint-key-file", o->fingerprint_key_file, "HMAC key for match fingerprints");
  cmd->add_option("--store", o->store, "Compliance store ADDR:PORT: report verdicts there and follow its active rule pack");
  cmd->add_option("--spool", o->spool, "Durable verdict spool (sqlite) used with --store")->capture_default_str();
  cmd->add_option("--store-cert", o->store_cert, "Client certificate for the store (role appliance; needed off loopback)");
  cmd->add_option("--store-key", o->store_key, "Its private key");
  cmd->add_option("--store-ca", o->store_ca, "CA that signs the store's server certificate");
  cmd->callback([&ctx, o] { ctx.exit_code = RunProxy(*o); });
}

}  // namespace egressguard::cli
