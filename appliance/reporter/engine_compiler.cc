// Kept apart from rule_watcher.cc so that code which injects its own compiler does
// not link the Hyperscan engine.
#include "appliance/reporter/rule_watcher.h"

namespace egressguard::reporter {

PackCompiler EngineCompiler(dlp::EngineOptions options) {
  return [options = std::move(options)](const rules::v1::RulePack& pack) {
    return dlp::Engine::Compile(pack, options);
  };
}

}  // namespace egressguard::reporter
