#pragma once
// What every connection of a ProxyServer shares, read-only after Start(): the config,
// the policy, the TLS contexts, the minter, the engine holder and the verdict sink;
// plus the few counters all workers update. Internal to mitm/.

#include <atomic>
#include <functional>
#include <memory>

#include "ca/leaf_minter.h"
#include "dlp/engine_holder.h"
#include "mitm/policy.h"
#include "mitm/proxy_config.h"
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

struct ProxyShared {
  ProxyConfig config;
  PolicyPtr policy;
  std::shared_ptr<ca::LeafMinter> minter;
  std::shared_ptr<dlp::EngineHolder> engines;
  VerdictSinkPtr sink;
  std::function<EnforceMode()> mode_source;  // empty: config.mode
  EnforceMode mode() const { return mode_source ? mode_source() : config.mode; }
  asio::ssl::context upstream_tls{asio::ssl::context::tls_client};
  asio::ssl::context client_tls{asio::ssl::context::tls_server};
  ProxyCounters counters;
  std::atomic<bool> draining{false};
  std::atomic<uint64_t> next_connection_id{1};
};

}  // namespace egressguard::mitm
