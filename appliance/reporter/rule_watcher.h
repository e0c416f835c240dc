#pragma once
// Follows the store's active rule pack (RuleAdmin.WatchActive): each new version is
// compiled on the watcher's own thread, never a proxy worker, then swapped into the
// EngineHolder; messages already scanning keep the engine they started with. A pack
// that fails to compile is reported (log + status) and the old engine stays.
//
// With a cache file (pack_cache.h) the watcher keeps the last active pack it received
// there, and Start compiles and swaps in that cached pack (with its mode) before it
// returns, so a proxy restarted while the store is unreachable serves at once with
// the pack it had; the store's active pack replaces it as soon as the store answers.

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "appliance/reporter/store_channel.h"
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
  // The longest wait between two attempts to reach the store (gRPC's reconnect backoff
  // and the watcher's retry loop).
  std::chrono::milliseconds max_backoff = kDefaultReconnectBackoff;
  // Where the last active pack is kept (PackCachePath(spool)); "": no cache.
  std::string cache_path;
};

struct RuleWatcherStatus {
  std::string version;            // the pack the holder's engine was compiled from
  v1::PackMode mode = v1::PACK_MODE_UNSPECIFIED;
  uint64_t generation = 0;
  uint64_t swaps = 0;
  uint64_t failures = 0;          // packs that did not compile
  std::string last_error;
  bool connected = false;
  // The engine runs the cached pack: the store has not sent its active pack since start.
  bool from_cache = false;
  std::string cache_error;        // why the cache was refused or could not be written
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
