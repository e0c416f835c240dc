#pragma once
// What every connection of a ProxyServer shares, read-only after Start(): the config,
// the policy, the TLS contexts, the minter, the engine holder and the verdict sink;
// plus the few counters all workers update. Internal to mitm/.

#include <boost/asio/ssl/context.hpp>
#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "ca/leaf_minter.h"
#include "dlp/engine_holder.h"
#include "mitm/policy.h"
#include "mitm/proxy_auth.h"
#include "mitm/proxy_config.h"
#include "mitm/proxy_metrics.h"
#include "mitm/stream.h"
#include "mitm/verdict_sink.h"

namespace egressguard::mitm {

struct ProxyCounters {
  std::atomic<uint64_t> accepted{0};
  std::atomic<uint64_t> rejected_clients{0};  // source not on the client allow-list
  std::atomic<uint64_t> rejected_limit{0};    // over max_connections
  std::atomic<uint64_t> active{0};
  std::atomic<uint64_t> transactions{0};
  std::atomic<uint64_t> blocked{0};
};

// The current policy, swapped whole by ProxyServer::Reload (SIGHUP) while workers
// read it. `policy->Decide(...)` reads the current one per decision, so a reload
// applies to the next decision of every connection and never drops one.
class PolicyHolder {
 public:
  PolicyPtr Current() const { return current_.load(std::memory_order_acquire); }
  void Swap(PolicyPtr next) { current_.store(std::move(next), std::memory_order_release); }
  PolicyPtr operator->() const { return Current(); }

 private:
  std::atomic<PolicyPtr> current_;
};

using WorkloadMap = std::vector<std::pair<std::string, std::vector<Cidr>>>;

struct ProxyShared {
  ProxyConfig config;
  PolicyHolder policy;
  std::shared_ptr<ca::LeafMinter> minter;
  std::shared_ptr<dlp::EngineHolder> engines;
  VerdictSinkPtr sink;
  std::function<EnforceMode()> mode_source;
  std::shared_ptr<const ProxyAuth> auth;  // null: no proxy authentication  // empty: config.mode
  EnforceMode mode() const { return mode_source ? mode_source() : config.mode; }
  asio::ssl::context upstream_tls{asio::ssl::context::tls_client};
  asio::ssl::context client_tls{asio::ssl::context::tls_server};
  ProxyCounters counters;
  std::atomic<bool> draining{false};
  std::atomic<uint64_t> next_connection_id{1};
  // Random per process start: "<instance>-<n>" names a connection uniquely across restarts.
  std::string instance_id;
  ProxyMetrics metrics;
  // config.workloads, parsed: the first entry whose CIDRs hold the client address wins.
  // Swapped whole by ProxyServer::Reload; a connection maps itself once, at its start.
  std::atomic<std::shared_ptr<const WorkloadMap>> workloads{std::make_shared<const WorkloadMap>()};
  std::vector<Cidr> proxy_protocol_peers;  // config.proxy_protocol_peers, parsed
};

}  // namespace egressguard::mitm
