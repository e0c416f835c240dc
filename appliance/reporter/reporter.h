#pragma once
// The appliance side of verdict reporting: implements mitm::VerdictSink. Submit
// writes the verdict to the durable spool and returns; a sender thread streams the
// spool to the store (VerdictIngest.Report) and drops what the store acks. When
// the store is down the spool grows to its bounds (verdicts, bytes), then the fail
// mode decides. The channel reconnects with a bounded backoff (store_channel.h).

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "appliance/reporter/spool.h"
#include "appliance/reporter/store_channel.h"
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
  // The longest wait between two attempts to reach the store: gRPC's reconnect backoff
  // (channel arguments) and the sender's own retry loop (reporter.reconnect_backoff_max_ms).
  std::chrono::milliseconds max_backoff = kDefaultReconnectBackoff;
};

struct ReporterStats {
  uint64_t spooled = 0;       // accepted by Submit
  uint64_t refused = 0;       // Submit returned false (block mode)
  uint64_t dropped = 0;       // lost on purpose (drop-with-alarm mode)
  // Not recorded (refused or dropped), by the verdict's mode (Verdict.enforced).
  uint64_t unrecorded_enforce = 0;
  uint64_t unrecorded_monitor = 0;
  uint64_t acked = 0;         // confirmed stored by the store
  uint64_t rejected = 0;      // refused by the store as malformed
  uint64_t spool_depth = 0;   // waiting in the spool now
  uint64_t spool_bytes = 0;   // their serialized bytes
  bool connected = false;     // a Report stream is up
};

class Reporter final : public mitm::VerdictSink {
 public:
  static absl::StatusOr<std::shared_ptr<Reporter>> Start(const ReporterOptions& options);
  ~Reporter() override;

  // mitm::VerdictSink
  bool Submit(v1::Verdict verdict) override;
  bool KeepsWriteAhead() const override { return true; }

  // Cheap and thread-safe (two atomic loads): the spool is below both of its bounds,
  // so a verdict submitted now will very likely be spooled. The proxy asks before it
  // forwards a request, so that it can refuse one whose verdict could not be recorded.
  // Submit may still refuse (a verdict larger than the room left, or other workers
  // taking the last room first), and in drop mode Submit accepts regardless.
  bool CanAccept() const;
  const SpoolOptions& spool_options() const;
  // How full the spool is, 0..1: the larger of verdicts/max_rows and bytes/max_bytes.
  double SpoolFill() const;

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
