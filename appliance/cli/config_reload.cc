#include "appliance/cli/config_reload.h"

#include <spdlog/spdlog.h>

#include <string>

#include "appliance/logging.h"

namespace egressguard::cli {

void ReloadConfig(const ConfigFlags& flags, mitm::ProxyServer* proxy) {
  if (flags.file().empty()) {
    spdlog::info("SIGHUP: no --config file to reload");
    return;
  }
  auto fresh = flags.Resolve();
  if (!fresh.ok()) {
    spdlog::error("SIGHUP: config not reloaded, the running one stays: {}", std::string(fresh.status().message()));
    return;
  }
  if (proxy != nullptr) {
    auto proxy_config = config::ToProxyConfig(*fresh);
    if (!proxy_config.ok()) {
      spdlog::error("SIGHUP: config not reloaded, the running one stays: {}",
                    std::string(proxy_config.status().message()));
      return;
    }
    if (auto st = proxy->Reload(config::ToPolicyConfig(*fresh), proxy_config->workloads); !st.ok()) {
      spdlog::error("SIGHUP: policy not reloaded, the running one stays: {}", std::string(st.message()));
      return;
    }
  }
  if (auto st = appliance::ApplyLogConfig(fresh->log.level, fresh->log.format); !st.ok()) {
    spdlog::error("SIGHUP: log settings not applied: {}", std::string(st.message()));
  }
  if (proxy == nullptr) {
    spdlog::info("SIGHUP: reloaded the log settings of {}; other store settings apply on restart", flags.file());
    return;
  }
  spdlog::info("SIGHUP: reloaded {}: {} allow rules, {} no-decrypt rules, {} client CIDRs, {} workload mappings",
               flags.file(), fresh->proxy.allow.size(), fresh->proxy.no_decrypt.size(),
               fresh->proxy.client_cidrs.size(), fresh->proxy.workloads.size());
}

}  // namespace egressguard::cli
