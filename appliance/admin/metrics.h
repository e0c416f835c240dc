#pragma once
// The appliance's Prometheus metrics: one registry for what is counted as it happens
// (the verdict sink decorator) plus sources read at scrape time from the parts' own
// atomics (proxy, leaf cache, reporter, rule watcher, store), so mitm/, ca/ and dlp/
// never depend on Prometheus. Every name starts with egressguard_; every label takes
// values from a fixed set or a BoundedLabels.

#include <prometheus/metric_family.h>
#include <prometheus/registry.h>

#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "dlp/engine_holder.h"

namespace egressguard::mitm {
class ProxyServer;
}
namespace egressguard::ca {
class OpenSslLeafMinter;
}
namespace egressguard::reporter {
class Reporter;
class RuleWatcher;
}  // namespace egressguard::reporter

namespace egressguard::admin {

using Families = std::vector<prometheus::MetricFamily>;
// Appends families read at scrape time; runs on the admin thread.
using MetricSource = std::function<void(Families&)>;

class Metrics {
 public:
  Metrics();
  prometheus::Registry& registry() { return *registry_; }
  // The referenced parts must outlive every Render (stop the admin server first).
  void AddSource(MetricSource source);
  // The text exposition format (version 0.0.4).
  std::string Render() const;

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  mutable std::mutex mu_;
  std::vector<MetricSource> sources_;
};

// Connections by mode and outcome, handshake and upstream-verification failures, DLP
// scan bytes/seconds, fail-open/closed events (engine side), active connections.
MetricSource ProxySource(const mitm::ProxyServer& proxy);
MetricSource LeafCacheSource(const ca::OpenSslLeafMinter& minter);
// Spool depth and oldest age, verdicts dropped/refused (fail-open/closed on a full spool).
MetricSource ReporterSource(const reporter::Reporter& reporter);
// egressguard_rule_pack_active{version} 1 from the engine in the holder; with a watcher
// (rules from the store) also swaps and compile failures.
MetricSource RulePackSource(std::shared_ptr<dlp::EngineHolder> engines, const reporter::RuleWatcher* watcher);
// Store ingest lag: now minus the verdict time of the newest verdict in the last ingested
// batch; `last_ingested_unix` returns nullopt before the first batch.
MetricSource StoreIngestLagSource(std::function<std::optional<int64_t>()> last_ingested_unix);

// Building blocks for sources.
prometheus::MetricFamily Family(std::string name, std::string help, prometheus::MetricType type);
void AddSample(prometheus::MetricFamily& family, std::vector<prometheus::ClientMetric::Label> labels, double value);

}  // namespace egressguard::admin
