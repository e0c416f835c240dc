#pragma once
// Puts the admin listener in front of whichever parts a command runs (`run`: all of them,
// `proxy`: proxy + reporter + watcher, `store`: the store): their metrics sources and
// their readiness checks. Stop the returned server before any part it points at.

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "appliance/admin/admin_server.h"
#include "appliance/admin/metrics.h"
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
namespace egressguard::store {
class Store;
}

namespace egressguard::admin {

struct ApplianceParts {
  // Proxy side; null when the command runs no proxy.
  const mitm::ProxyServer* proxy = nullptr;
  const ca::OpenSslLeafMinter* minter = nullptr;     // the loaded cluster CA
  std::shared_ptr<dlp::EngineHolder> engines;        // the compiled rule pack
  const reporter::Reporter* reporter = nullptr;
  // Not ready when the spool is full, or this full (of its verdicts or bytes bound)
  // while the store is unreachable: traffic moves elsewhere before verdicts are refused.
  double spool_high_water = 0.9;
  const reporter::RuleWatcher* watcher = nullptr;
  // Store side; null when the command runs no store.
  store::Store* store = nullptr;
};

// Ready when: (proxy) a CA is loaded, a compiled rule pack is in the holder (from the
// store, or the cached pack while the store is unreachable), and the spool is not full
// and, while the store is unreachable, below its high-water mark; (store) the database
// reads and writes.
std::vector<ReadyCheck> ReadinessChecks(const ApplianceParts& parts);

// Registers the parts' scrape-time sources on `metrics`, then starts the listener.
absl::StatusOr<std::unique_ptr<AdminServer>> StartApplianceAdmin(const std::string& listen,
                                                                 std::shared_ptr<Metrics> metrics,
                                                                 const ApplianceParts& parts);

}  // namespace egressguard::admin
