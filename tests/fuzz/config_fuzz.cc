// Fuzzes the config file reader (appliance/config) and what an accepted file feeds into:
// listen addresses, the policy lists (destination rules, CIDRs, methods) and the
// workload map. A refusal names at least one problem, each with a reason and a line
// inside the text; an accepted file goes on through the proxy settings and the Policy
// they build, which may refuse it but must not crash.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "appliance/config/config.h"
#include "mitm/policy.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace config = egressguard::config;
  if (size > 64 * 1024) return 0;  // config files are small; keep runs fast
  std::string_view text(reinterpret_cast<const char*>(data), size);
  static const config::Config kBase = config::Defaults(config::Command::kRun);
  config::ParseResult parsed = config::Parse(text, kBase);
  if (!parsed.problems.empty()) {
    const int lines = static_cast<int>(std::count(text.begin(), text.end(), '\n')) + 1;
    for (const auto& p : parsed.problems) {
      if (p.reason.empty() || p.line < 0 || p.line > lines + 1 || p.column < 0) std::abort();
    }
    if (config::FormatProblems("fuzz.yaml", parsed.problems).empty()) std::abort();
    return 0;
  }
  (void)config::ToProxyConfig(parsed.config);
  (void)egressguard::mitm::Policy::Create(config::ToPolicyConfig(parsed.config));
  return 0;
}
