#pragma once
// JsonlSink: appends each verdict to an audit log as one JSON object per line (the
// protobuf JSON mapping of egressguard.v1.Verdict, proto field names). Thread-safe.
// Verdicts carry only redacted evidence and keyed fingerprints (the engine's contract)
// and paths without query values (the proxy's), so the log never holds raw matched data.
//
// A worker turns its verdict into a line itself and queues only the line: the verdict's
// strings are freed on the thread that allocated them (handing ~15 allocations per
// verdict to another thread's free cost more than writing the line). One writer thread
// appends whole batches with one write each, so no worker ever waits on the file or on
// another worker's line. A line reaches the file within kBatchWindow of its verdict (the
// writer wakes on the first queued line, collects for that long, then writes the
// batch), so one wake-up and one write(2) serve many verdicts under load. The queue is
// bounded (a worker waits for room rather than drop a verdict), and destroying the sink
// writes everything queued before it returns.

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "mitm/verdict_sink.h"

namespace egressguard::mitm {

class JsonlSink final : public VerdictSink {
 public:
  static constexpr size_t kDefaultMaxQueued = 16384;
  static constexpr std::chrono::milliseconds kBatchWindow{20};

  // Opens (creates, appends to) `path` with mode 0600.
  static absl::StatusOr<std::shared_ptr<JsonlSink>> Open(const std::string& path,
                                                         size_t max_queued = kDefaultMaxQueued);
  ~JsonlSink() override;
  JsonlSink(const JsonlSink&) = delete;
  JsonlSink& operator=(const JsonlSink&) = delete;

  // VerdictSink. False only when an earlier write to the file failed.
  bool Submit(v1::Verdict verdict) override;
  // Returns once every verdict submitted before the call is in the file.
  void Flush();

 private:
  JsonlSink(int fd, size_t max_queued);
  void WriterLoop();

  static constexpr size_t kKeptLineCapacity = 16 * 1024;
  static constexpr size_t kKeptBatchCapacity = 1 << 20;

  const int fd_;
  const size_t max_queued_;
  std::mutex mu_;
  std::condition_variable wake_writer_;  // something queued, or stopping
  std::condition_variable room_;         // the writer took a batch (room in the queue, progress for Flush)
  std::string queue_;         // whole lines, each ending in '\n'
  size_t queued_lines_ = 0;   // lines in queue_
  uint64_t submitted_ = 0;  // verdicts ever queued
  uint64_t written_ = 0;    // verdicts ever handed to write(2)
  bool stopping_ = false;
  bool flush_requested_ = false;
  bool failed_ = false;
  std::thread writer_;
};

// One line of JSON for `verdict` (no trailing newline): the protobuf JSON mapping with
// proto field names, as google::protobuf::util::MessageToJsonString prints it, only
// much faster. Exposed for tests and the CLI.
std::string VerdictToJsonLine(const v1::Verdict& verdict);
// The same, appended to `out`.
void AppendVerdictJson(const v1::Verdict& verdict, std::string& out);

}  // namespace egressguard::mitm
