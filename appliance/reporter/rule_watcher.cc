#include "appliance/reporter/rule_watcher.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "egressguard/v1/rule_admin.grpc.pb.h"

namespace egressguard::reporter {

struct RuleWatcher::Impl {
  RuleWatcherOptions options;
  dlp::EngineHolder* holder = nullptr;
  std::shared_ptr<grpc::Channel> channel;
  std::atomic<bool> enforce{false};

  mutable std::mutex mu;
  std::condition_variable cv;
  RuleWatcherStatus status;
  bool stopping = false;
  grpc::ClientContext* live = nullptr;
  std::thread thread;

  void Apply(const v1::ActivePack& active) {
    const std::string& version = active.info().version();
    bool need_compile;
    {
      std::lock_guard lock(mu);
      need_compile = version != status.version || holder->Current() == nullptr;
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
    }
    cv.notify_all();
    spdlog::info("rule watcher: rule pack {} active in {} mode", version,
                 active.info().mode() == v1::ENFORCE ? "enforce" : "monitor");
  }

  void RunStream(v1::RuleAdmin::Stub& stub) {
    grpc::ClientContext ctx;
    {
      std::lock_guard lock(mu);
      if (stopping) return;
      live = &ctx;
    }
    v1::WatchActiveRequest request;
    request.set_appliance(options.appliance);
    auto reader = stub.WatchActive(&ctx, request);
    v1::ActivePack active;
    while (reader->Read(&active)) {
      {
        std::lock_guard lock(mu);
        status.connected = true;
      }
      Apply(active);
    }
    auto s = reader->Finish();
    std::lock_guard lock(mu);
    live = nullptr;
    status.connected = false;
    if (!stopping && !s.ok()) status.last_error = fmt::format("watch: {}", s.error_message());
  }

  void Loop() {
    auto stub = v1::RuleAdmin::NewStub(channel);
    auto backoff = std::chrono::milliseconds(100);
    for (;;) {
      RunStream(*stub);
      std::unique_lock lock(mu);
      if (cv.wait_for(lock, backoff, [&] { return stopping; })) return;
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
  auto channel = store::MakeChannel(options.store_address, options.tls);
  if (!channel.ok()) return channel.status();
  impl->channel = std::move(*channel);
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
  return impl_->cv.wait_for(lock, timeout, [&] { return impl_->status.version == version; });
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
