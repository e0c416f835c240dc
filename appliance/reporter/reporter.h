#pragma once
// The appliance side of verdict reporting: implements mitm::VerdictSink. Submit
// writes the verdict to the durable spool and returns; a sender thread streams the
// spool to the store (VerdictIngest.Report) and drops what the store acks. When
// the store is down the spool grows to its bound, then the fail mode decides.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "appliance/reporter/spool.h"
#include "appliance/store/api_tls.h"
#include "mitm/verdict_sink.h"

namespace egressguard::reporter {

enum class FailMode {
  kBlock,          // spool full: Submit returns false, the proxy refuses the transaction
  kDropWithAlarm,  // spool full: the verdict is dropped, counted and logged; traffic flows
};

struct ReporterOptions {
  SpoolOptions spool;
  std::string store_address;
  store::ApiTls tls;
  FailMode fail_mode = FailMode::kBlock;
  size_t batch_size = 500;
  // A batch also stops at this many serialized bytes (at least one verdict goes):
  // gRPC refuses messages over 4 MiB by default, and a refused batch would be
  // retried forever.
  size_t batch_bytes = 2 << 20;
  std::chrono::milliseconds max_backoff{2000};
};

struct ReporterStats {
  uint64_t spooled = 0;       // accepted by Submit
  uint64_t refused = 0;       // Submit returned false (block mode)
  uint64_t dropped = 0;       // lost on purpose (drop-with-alarm mode)
  uint64_t acked = 0;         // confirmed stored by the store
  uint64_t rejected = 0;      // refused by the store as malformed
  uint64_t spool_depth = 0;   // waiting in the spool now
  bool connected = false;     // a Report stream is up
};

class Reporter final : public mitm::VerdictSink {
 public:
  static absl::StatusOr<std::shared_ptr<Reporter>> Start(const ReporterOptions& options);
  ~Reporter() override;

  // mitm::VerdictSink
  bool Submit(v1::Verdict verdict) override;

  ReporterStats stats() const;
  // verdict.time (unix seconds) of the oldest verdict still in the spool; nullopt when empty.
  std::optional<int64_t> OldestSpooledUnix() const;
  // Waits until the spool is empty (true) or `timeout` passes (false).
  bool Drain(std::chrono::milliseconds timeout);
  void Stop();  // idempotent; the spool keeps what was not acked

 private:
  struct Impl;
  explicit Reporter(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};
using ReporterPtr = std::shared_ptr<Reporter>;

}  // namespace egressguard::reporter
