#include "appliance/reporter/rule_watcher.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "appliance/reporter/pack_cache.h"
#include "egressguard/v1/rule_admin.grpc.pb.h"

namespace egressguard::reporter {

namespace {
const char* ModeName(v1::PackMode mode) { return mode == v1::ENFORCE ? "enforce" : "monitor"; }
}  // namespace

struct RuleWatcher::Impl {
  RuleWatcherOptions options;
  dlp::EngineHolder* holder = nullptr;
  std::shared_ptr<grpc::Channel> channel;
  std::atomic<bool> enforce{false};

  mutable std::mutex mu;
  std::condition_variable cv;
  RuleWatcherStatus status;
  std::string pack_sha256;   // PackInfo.sha256 of the pack the engine runs
  std::string cached_key;    // what the cache file holds now (version, sha256, mode, generation)
  bool stopping = false;
  bool told_unreachable = false;
  grpc::ClientContext* live = nullptr;
  std::thread thread;

  static std::string CacheKey(const v1::ActivePack& active) {
    return fmt::format("{}\n{}\n{}\n{}", active.info().version(), active.info().sha256(),
                       static_cast<int>(active.info().mode()), active.generation());
  }

  // Keeps `active` in the cache file when it differs from what the file holds. On the
  // watcher's thread: a proxy worker never waits on this write.
  void KeepInCache(const v1::ActivePack& active) {
    if (options.cache_path.empty()) return;
    const std::string key = CacheKey(active);
    {
      std::lock_guard lock(mu);
      if (key == cached_key) return;
    }
    auto written = WritePackCache(options.cache_path, active);
    std::lock_guard lock(mu);
    if (!written.ok()) {
      spdlog::warn("rule watcher: {}", std::string(written.status().message()));
      status.cache_error = std::string(written.status().message());
      return;
    }
    cached_key = key;
    status.cache_error.clear();
    spdlog::debug("rule watcher: rule pack {} kept in {} (sha256 {})", active.info().version(), options.cache_path,
                  *written);
  }

  // Start: the cached pack, compiled and swapped in before the proxy takes traffic.
  void LoadCache() {
    if (options.cache_path.empty()) return;
    auto cached = ReadPackCache(options.cache_path);
    if (!cached.ok()) {
      if (cached.status().code() == absl::StatusCode::kNotFound) {
        spdlog::info("rule watcher: no cached rule pack yet ({}); waiting for the store", options.cache_path);
        return;
      }
      spdlog::error("rule watcher: refusing the cached rule pack: {}; waiting for the store",
                    std::string(cached.status().message()));
      std::lock_guard lock(mu);
      status.cache_error = std::string(cached.status().message());
      return;
    }
    const v1::ActivePack& active = cached->active;
    auto engine = options.compile(active.pack());
    if (!engine.ok()) {
      std::string err = fmt::format("cached rule pack {} does not compile: {}", active.info().version(),
                                    std::string(engine.status().message()));
      spdlog::error("rule watcher: {}; waiting for the store", err);
      std::lock_guard lock(mu);
      status.cache_error = err;
      return;
    }
    holder->Swap(std::move(*engine));
    enforce = active.info().mode() == v1::ENFORCE;
    {
      std::lock_guard lock(mu);
      status.version = active.info().version();
      status.mode = active.info().mode();
      status.generation = active.generation();
      status.from_cache = true;
      ++status.swaps;
      pack_sha256 = active.info().sha256();
      cached_key = CacheKey(active);
    }
    cv.notify_all();
    spdlog::warn("rule watcher: serving the cached rule pack {} ({} mode, generation {}, from {}) until the store {} "
                 "sends its active pack",
                 active.info().version(), ModeName(active.info().mode()), active.generation(), options.cache_path,
                 options.store_address);
  }

  void Apply(const v1::ActivePack& active) {
    const std::string& version = active.info().version();
    bool need_compile;
    bool was_cached;
    {
      std::lock_guard lock(mu);
      need_compile = version != status.version || active.info().sha256() != pack_sha256 || holder->Current() == nullptr;
      was_cached = status.from_cache;
    }
    if (need_compile) {
      auto engine = options.compile(active.pack());
      if (!engine.ok()) {
        std::string err = fmt::format("rule pack {} does not compile, keeping {}: {}", version,
                                      holder->Current() ? "the previous pack" : "no pack",
                                      std::string(engine.status().message()));
        spdlog::error("rule watcher: {}", err);
        std::lock_guard lock(mu);
        ++status.failures;
        status.last_error = err;
        status.generation = active.generation();
        return;
      }
      holder->Swap(std::move(*engine));
    }
    enforce = active.info().mode() == v1::ENFORCE;
    {
      std::lock_guard lock(mu);
      if (need_compile) ++status.swaps;
      status.version = version;
      status.mode = active.info().mode();
      status.generation = active.generation();
      status.from_cache = false;
      pack_sha256 = active.info().sha256();
    }
    cv.notify_all();
    if (was_cached) {
      spdlog::info("rule watcher: the store answered: rule pack {} active in {} mode{}", version,
                   ModeName(active.info().mode()), need_compile ? " (replaces the cached pack)" : " (as cached)");
    } else {
      spdlog::info("rule watcher: rule pack {} active in {} mode", version, ModeName(active.info().mode()));
    }
    KeepInCache(active);
  }

  // One WatchActive stream; true when the store sent anything on it.
  bool RunStream(v1::RuleAdmin::Stub& stub) {
    grpc::ClientContext ctx;
    {
      std::lock_guard lock(mu);
      if (stopping) return false;
      live = &ctx;
    }
    bool received = false;
    v1::WatchActiveRequest request;
    request.set_appliance(options.appliance);
    auto reader = stub.WatchActive(&ctx, request);
    v1::ActivePack active;
    while (reader->Read(&active)) {
      {
        std::lock_guard lock(mu);
        status.connected = true;
        told_unreachable = false;
      }
      received = true;
      Apply(active);
    }
    auto s = reader->Finish();
    spdlog::debug("rule watcher: watch stream ended: {}", s.ok() ? std::string("ok") : s.error_message());
    std::lock_guard lock(mu);
    live = nullptr;
    status.connected = false;
    if (!stopping && !s.ok()) {
      status.last_error = fmt::format("watch: {}", s.error_message());
      if (status.from_cache && !told_unreachable) {
        told_unreachable = true;
        spdlog::warn("rule watcher: store {} unreachable ({}); serving the cached rule pack {}", options.store_address,
                     s.error_message(), status.version);
      }
    }
    return received;
  }

  void Loop() {
    auto stub = v1::RuleAdmin::NewStub(channel);
    auto backoff = std::chrono::milliseconds(100);
    for (;;) {
      if (RunStream(*stub)) backoff = std::chrono::milliseconds(100);
      PauseBeforeRetry(*channel, backoff, [this] {
        std::lock_guard lock(mu);
        return stopping;
      });
      {
        std::lock_guard lock(mu);
        if (stopping) return;
      }
      backoff = std::min(backoff * 2, options.max_backoff);
    }
  }
};

RuleWatcher::RuleWatcher(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

RuleWatcher::~RuleWatcher() { Stop(); }

absl::StatusOr<std::unique_ptr<RuleWatcher>> RuleWatcher::Start(const RuleWatcherOptions& options,
                                                                dlp::EngineHolder& holder) {
  if (!options.compile) return absl::InvalidArgumentError("rule watcher needs a compiler");
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->holder = &holder;
  auto channel = MakeStoreChannel(options.store_address, options.tls, options.max_backoff);
  if (!channel.ok()) return channel.status();
  impl->channel = std::move(*channel);
  impl->LoadCache();
  Impl* raw = impl.get();
  impl->thread = std::thread([raw] { raw->Loop(); });
  return std::unique_ptr<RuleWatcher>(new RuleWatcher(std::move(impl)));
}

bool RuleWatcher::enforce() const { return impl_->enforce.load(std::memory_order_relaxed); }

RuleWatcherStatus RuleWatcher::status() const {
  std::lock_guard lock(impl_->mu);
  return impl_->status;
}

bool RuleWatcher::WaitForVersion(const std::string& version, std::chrono::milliseconds timeout) {
  std::unique_lock lock(impl_->mu);
  return impl_->cv.wait_for(lock, timeout,
                            [&] { return impl_->status.version == version && !impl_->status.from_cache; });
}

void RuleWatcher::Stop() {
  {
    std::lock_guard lock(impl_->mu);
    impl_->stopping = true;
    if (impl_->live) impl_->live->TryCancel();
  }
  impl_->cv.notify_all();
  if (impl_->thread.joinable()) impl_->thread.join();
}

}  // namespace egressguard::reporter
