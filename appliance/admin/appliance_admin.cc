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
    checks.push_back({"rules",
                      [e = parts.engines] {
                        return e && e->Current() ? "" : "no compiled rule pack (the proxy fails closed)";
                      },
                      // Ready on the cached pack: a store outage must not take every replica
                      // out of rotation, but the operator is told what decides.
                      [w = parts.watcher]() -> std::string {
                        if (w == nullptr) return "";
                        const auto s = w->status();
                        if (!s.from_cache) return "";
                        return fmt::format("serving the cached rule pack {} while the store {}", s.version,
                                           s.connected ? "has not sent its active pack yet" : "is unreachable");
                      }});
    if (parts.reporter != nullptr) {
      checks.push_back({"verdicts", [r = parts.reporter, high = parts.spool_high_water]() -> std::string {
                          const auto s = r->stats();
                          const auto& limits = r->spool_options();
                          const double fill = r->SpoolFill();
                          const std::string where =
                              fmt::format("{} of {} verdicts, {:.1f} of {:.1f} MiB", s.spool_depth, limits.max_rows,
                                          static_cast<double>(s.spool_bytes) / (1 << 20),
                                          static_cast<double>(limits.max_bytes) / (1 << 20));
                          if (!r->CanAccept()) {
                            return fmt::format("the spool is full ({}): verdicts are refused{}", where,
                                               s.connected ? "" : " and the store is unreachable");
                          }
                          if (!s.connected && fill >= high) {
                            return fmt::format(
                                "store unreachable and the spool is {:.0f}% full ({}), past its high-water mark of "
                                "{:.0f}%: verdicts are refused when it is full",
                                100 * fill, where, 100 * high);
                          }
                          return "";
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
