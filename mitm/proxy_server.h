#pragma once
// ProxyServer: the inline proxy as one object the CLI (`egressguard proxy`) and
// `egressguard run` start and stop. N workers, each with its own io_context, its own
// SO_REUSEPORT listener on the same port and its own dlp::Scanner: a connection lives
// on one thread, so the per-connection path takes no locks.

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "ca/leaf_minter.h"
#include "dlp/engine_holder.h"
#include "mitm/proxy_config.h"
#include "mitm/proxy_metrics.h"
#include "mitm/verdict_sink.h"

namespace egressguard::mitm {

struct ProxyDependencies {
  std::shared_ptr<ca::LeafMinter> minter;       // required
  std::shared_ptr<dlp::EngineHolder> engines;   // required; may hold no engine yet (fail closed)
  VerdictSinkPtr sink;                          // may be null (verdicts are dropped)
  // When set, read once per transaction instead of config.mode, so the mode follows the
  // store's active rule pack (RuleAdmin.Activate ... --mode) without a restart.
  std::function<EnforceMode()> mode_source;
};

struct ProxyStats {
  uint64_t accepted = 0;
  uint64_t rejected_clients = 0;
  uint64_t rejected_limit = 0;
  uint64_t active = 0;
  uint64_t transactions = 0;
  uint64_t blocked = 0;
};

class ProxyServer {
 public:
  // Checks the config (policy rules, trust files) and builds the TLS contexts.
  static absl::StatusOr<std::unique_ptr<ProxyServer>> Create(ProxyConfig config, ProxyDependencies deps);
  ~ProxyServer();
  ProxyServer(const ProxyServer&) = delete;
  ProxyServer& operator=(const ProxyServer&) = delete;

  // Binds every worker's listener and starts the worker threads.
  absl::Status Start();
  // Graceful drain: stops accepting, closes idle keep-alive connections, lets in-flight
  // transactions finish for up to drain_timeout, then closes the rest. Idempotent.
  void Stop();
  // The bound port (useful with listen_port 0). Valid after Start().
  uint16_t port() const { return port_; }
  ProxyStats stats() const;
  // Swaps in a new policy (allow, no-decrypt, client CIDRs) and workload map without
  // dropping connections: every later decision uses the policy, every later connection
  // the map. A bad policy or map is refused and the old ones stay.
  absl::Status Reload(const PolicyConfig& policy, const std::vector<ProxyConfig::WorkloadCidrs>& workloads);
  // Live counters (read them at scrape time); valid as long as the server.
  const ProxyMetrics& metrics() const;

 private:
  struct Impl;
  explicit ProxyServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  uint16_t port_ = 0;
};

}  // namespace egressguard::mitm
