#pragma once
// Follows the store's active rule pack (RuleAdmin.WatchActive): each new version is
// compiled on the watcher's own thread, never a proxy worker, then swapped into the
// EngineHolder; messages already scanning keep the engine they started with. A pack
// that fails to compile is reported (log + status) and the old engine stays.

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "appliance/store/api_tls.h"
#include "dlp/engine.h"
#include "dlp/engine_holder.h"
#include "egressguard/v1/rule_admin.pb.h"

namespace egressguard::reporter {

using PackCompiler = std::function<absl::StatusOr<dlp::EnginePtr>(const rules::v1::RulePack&)>;

// dlp::Engine::Compile with the given options.
PackCompiler EngineCompiler(dlp::EngineOptions options);

struct RuleWatcherOptions {
  std::string store_address;
  store::ApiTls tls;
  std::string appliance;          // sent to the store for its logs
  PackCompiler compile;           // usually EngineCompiler(...)
  std::chrono::milliseconds max_backoff{2000};
};

struct RuleWatcherStatus {
  std::string version;            // the pack the holder's engine was compiled from
  v1::PackMode mode = v1::PACK_MODE_UNSPECIFIED;
  uint64_t generation = 0;
  uint64_t swaps = 0;
  uint64_t failures = 0;          // packs that did not compile
  std::string last_error;
  bool connected = false;
};

class RuleWatcher {
 public:
  static absl::StatusOr<std::unique_ptr<RuleWatcher>> Start(const RuleWatcherOptions& options,
                                                            dlp::EngineHolder& holder);
  ~RuleWatcher();
  RuleWatcher(const RuleWatcher&) = delete;
  RuleWatcher& operator=(const RuleWatcher&) = delete;

  // True in ENFORCE mode: the proxy reads it per transaction.
  bool enforce() const;
  RuleWatcherStatus status() const;
  // Waits until `version` is the swapped-in pack (true) or `timeout` passes.
  bool WaitForVersion(const std::string& version, std::chrono::milliseconds timeout);
  void Stop();

 private:
  struct Impl;
  explicit RuleWatcher(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};
using RuleWatcherPtr = std::unique_ptr<RuleWatcher>;

}  // namespace egressguard::reporter
