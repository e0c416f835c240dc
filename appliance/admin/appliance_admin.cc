#include "appliance/admin/appliance_admin.h"

#include <fmt/format.h>

#include "appliance/reporter/reporter.h"
#include "appliance/reporter/rule_watcher.h"
#include "appliance/store/store.h"
#include "ca/openssl_leaf_minter.h"
#include "mitm/proxy_server.h"

namespace egressguard::admin {

std::vector<ReadyCheck> ReadinessChecks(const ApplianceParts& parts) {
  std::vector<ReadyCheck> checks;
  if (parts.proxy != nullptr) {
    checks.push_back({"ca", [m = parts.minter] { return m != nullptr ? "" : "no cluster CA loaded"; }});
    checks.push_back({"rules", [e = parts.engines] {
                        return e && e->Current() ? "" : "no compiled rule pack (the proxy fails closed)";
                      }});
    if (parts.reporter != nullptr) {
      checks.push_back({"verdicts", [r = parts.reporter, max = parts.spool_max_rows]() -> std::string {
                          auto s = r->stats();
                          if (s.connected || max == 0 || s.spool_depth < max) return "";
                          return fmt::format("store unreachable and the spool is full ({} verdicts)", s.spool_depth);
                        }});
    }
  }
  if (parts.store != nullptr) {
    checks.push_back({"store", [s = parts.store]() -> std::string {
                        auto health = s->Health();
                        if (!health.read.ok()) return "database not readable: " + std::string(health.read.message());
                        if (!health.write.ok()) return "database not writable: " + std::string(health.write.message());
                        if (!health.index.ok()) {
                          return "new verdicts are not being indexed: " + std::string(health.index.message());
                        }
                        return "";
                      }});
  }
  return checks;
}

absl::StatusOr<std::unique_ptr<AdminServer>> StartApplianceAdmin(const std::string& listen,
                                                                 std::shared_ptr<Metrics> metrics,
                                                                 const ApplianceParts& parts) {
  if (parts.proxy) metrics->AddSource(ProxySource(*parts.proxy));
  if (parts.minter) metrics->AddSource(LeafCacheSource(*parts.minter));
  if (parts.reporter) metrics->AddSource(ReporterSource(*parts.reporter));
  if (parts.engines) metrics->AddSource(RulePackSource(parts.engines, parts.watcher));
  if (parts.store) {
    metrics->AddSource(StoreIngestLagSource([s = parts.store] { return s->LastIngestedVerdictUnix(); }));
  }
  AdminOptions options;
  options.listen = listen;
  AdminHandlers handlers;
  handlers.metrics = [metrics] { return metrics->Render(); };
  handlers.ready = ReadinessChecks(parts);
  return AdminServer::Start(options, std::move(handlers));
}

}  // namespace egressguard::admin
