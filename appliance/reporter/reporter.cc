#include "appliance/reporter/reporter.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "egressguard/v1/store.grpc.pb.h"

namespace egressguard::reporter {

struct Reporter::Impl {
  ReporterOptions options;
  SpoolPtr spool;
  std::shared_ptr<grpc::Channel> channel;

  std::atomic<uint64_t> spooled{0}, refused{0}, dropped{0}, acked{0}, rejected{0};
  std::atomic<uint64_t> unrecorded_enforce{0}, unrecorded_monitor{0};
  std::atomic<bool> connected{false};
  std::atomic<int64_t> last_alarm_s{0};

  std::mutex mu;
  std::condition_variable cv;        // new verdicts, stop
  std::condition_variable drained;   // spool emptied
  bool stopping = false;
  grpc::ClientContext* live = nullptr;  // the open stream, to cancel on Stop
  std::thread sender;

  void Alarm(const std::string& what) {
    // At most one line per 10 s: a full spool under load must not flood the log.
    const int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                            std::chrono::steady_clock::now().time_since_epoch())
                            .count();
    int64_t last = last_alarm_s.load();
    if (now - last >= 10 && last_alarm_s.compare_exchange_strong(last, now)) {
      spdlog::error("verdict reporter: {} (spool {} verdicts, {} bytes; dropped {}, refused {}, store {})", what,
                    spool->size(), spool->bytes(), dropped.load(), refused.load(), options.store_address);
    }
  }

  bool Stopping() {
    std::lock_guard lock(mu);
    return stopping;
  }

  // One Report stream: sends the spool oldest first, one batch in flight, removes
  // what is acked. Returns when the stream breaks or on Stop.
  void RunStream(v1::VerdictIngest::Stub& stub) {
    grpc::ClientContext ctx;
    {
      std::lock_guard lock(mu);
      if (stopping) return;
      live = &ctx;
    }
    auto stream = stub.Report(&ctx);
    for (;;) {
      auto batch = spool->Peek(0, options.batch_size);
      if (!batch.ok()) {
        Alarm(fmt::format("spool read failed: {}", std::string(batch.status().message())));
        break;
      }
      if (batch->empty()) {
        drained.notify_all();
        std::unique_lock lock(mu);
        cv.wait_for(lock, std::chrono::milliseconds(200), [&] { return stopping || spool->HasSendable(); });
        if (stopping) break;
        continue;
      }
      v1::ReportRequest request;
      std::unordered_multimap<std::string, int64_t> seq_of;
      size_t bytes = 0;
      for (auto& sv : *batch) {
        bytes += sv.verdict.ByteSizeLong();
        if (request.verdicts_size() > 0 && bytes > options.batch_bytes) break;  // the rest goes next
        seq_of.emplace(sv.verdict.id(), sv.seq);
        *request.add_verdicts() = std::move(sv.verdict);
      }
      if (!stream->Write(request)) break;
      v1::ReportAck ack;
      if (!stream->Read(&ack)) break;
      connected = true;
      std::vector<int64_t> done;
      auto take = [&](const std::string& id) {
        auto range = seq_of.equal_range(id);
        for (auto it = range.first; it != range.second; ++it) done.push_back(it->second);
        seq_of.erase(id);
      };
      for (const auto& id : ack.ids()) take(id);
      for (const auto& r : ack.rejected()) {
        spdlog::warn("verdict reporter: store rejected verdict {}: {}", r.id(), r.reason());
        take(r.id());
      }
      if (auto s = spool->Remove(done); !s.ok()) {
        Alarm(fmt::format("spool remove failed: {}", std::string(s.message())));
        break;
      }
      acked += static_cast<uint64_t>(ack.ids_size());
      rejected += static_cast<uint64_t>(ack.rejected_size());
    }
    connected = false;
    {
      std::lock_guard lock(mu);
      live = nullptr;
    }
    ctx.TryCancel();
    (void)stream->Finish();
  }

  void SenderLoop() {
    auto stub = v1::VerdictIngest::NewStub(channel);
    auto backoff = std::chrono::milliseconds(100);
    while (!Stopping()) {
      const uint64_t before = acked.load();
      RunStream(*stub);
      if (acked.load() != before) backoff = std::chrono::milliseconds(100);
      // Over early when the channel reconnects: the spool drains as soon as the store is back.
      PauseBeforeRetry(*channel, backoff, [this] { return Stopping(); });
      backoff = std::min(backoff * 2, options.max_backoff);
    }
  }
};

Reporter::Reporter(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Reporter::~Reporter() { Stop(); }

absl::StatusOr<std::shared_ptr<Reporter>> Reporter::Start(const ReporterOptions& options) {
  if (options.batch_size == 0) return absl::InvalidArgumentError("batch size must be positive");
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  auto spool = Spool::Open(options.spool);
  if (!spool.ok()) return spool.status();
  impl->spool = std::move(*spool);
  if (const uint64_t n = impl->spool->interrupted_at_open(); n > 0) {
    spdlog::warn("verdict spool {}: closed {} verdict(s) of transactions the last run forwarded but did not finish, "
                 "as interrupted", options.spool.path, n);
  }
  auto channel = MakeStoreChannel(options.store_address, options.tls, options.max_backoff);
  if (!channel.ok()) return channel.status();
  impl->channel = std::move(*channel);
  Impl* raw = impl.get();
  impl->sender = std::thread([raw] { raw->SenderLoop(); });
  return std::shared_ptr<Reporter>(new Reporter(std::move(impl)));
}

// The store refuses a verdict past 256 KiB serialized. Many findings with their spans
// (an h2 stream of many gRPC messages) could pass it: the occurrences give way first,
// from the last finding back, so the verdict and every finding are still recorded.
static void FitSpans(v1::Verdict& verdict) {
  constexpr size_t kBudget = 192 << 10;  // well under the store's limit
  size_t size = verdict.ByteSizeLong();
  for (int i = verdict.findings_size() - 1; i >= 0 && size > kBudget; --i) {
    v1::Finding* f = verdict.mutable_findings(i);
    if (f->spans_size() == 0) continue;
    const size_t before = f->ByteSizeLong();
    f->clear_spans();
    f->set_spans_truncated(true);
    size -= std::min(size, before - std::min(before, f->ByteSizeLong()));
  }
}

bool Reporter::Submit(v1::Verdict verdict) {
  FitSpans(verdict);
  auto s = impl_->spool->Append(verdict);
  if (s.ok()) {
    ++impl_->spooled;
    // A write-ahead record waits for its completion: nothing to send yet.
    if (verdict.phase() != v1::Verdict::OPEN) impl_->cv.notify_one();
    return true;
  }
  ++(verdict.enforced() ? impl_->unrecorded_enforce : impl_->unrecorded_monitor);
  if (impl_->options.fail_mode == FailMode::kBlock) {
    ++impl_->refused;
    impl_->Alarm(fmt::format("refusing traffic: cannot spool verdict: {}", std::string(s.message())));
    return false;
  }
  ++impl_->dropped;
  impl_->Alarm(fmt::format("DROPPING verdicts: cannot spool: {}", std::string(s.message())));
  return true;
}

bool Reporter::CanAccept() const { return impl_->spool->HasRoom(); }

const SpoolOptions& Reporter::spool_options() const { return impl_->spool->options(); }

double Reporter::SpoolFill() const { return impl_->spool->Fill(); }

std::optional<int64_t> Reporter::OldestSpooledUnix() const {
  auto oldest = impl_->spool->Peek(0, 1);
  if (!oldest.ok() || oldest->empty()) return std::nullopt;
  return oldest->front().verdict.time().seconds();
}

ReporterStats Reporter::stats() const {
  ReporterStats st;
  st.spooled = impl_->spooled;
  st.refused = impl_->refused;
  st.dropped = impl_->dropped;
  st.acked = impl_->acked;
  st.rejected = impl_->rejected;
  st.unrecorded_enforce = impl_->unrecorded_enforce;
  st.unrecorded_monitor = impl_->unrecorded_monitor;
  st.spool_depth = impl_->spool->size();
  st.spool_bytes = impl_->spool->bytes();
  st.connected = impl_->connected;
  return st;
}

bool Reporter::Drain(std::chrono::milliseconds timeout) {
  std::unique_lock lock(impl_->mu);
  return impl_->drained.wait_for(lock, timeout, [&] { return impl_->spool->size() == 0; });
}

void Reporter::Stop() {
  {
    std::lock_guard lock(impl_->mu);
    if (impl_->stopping && !impl_->sender.joinable()) return;
    impl_->stopping = true;
    if (impl_->live) impl_->live->TryCancel();
  }
  impl_->cv.notify_all();
  if (impl_->sender.joinable()) impl_->sender.join();
}

}  // namespace egressguard::reporter
