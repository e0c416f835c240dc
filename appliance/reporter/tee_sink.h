#pragma once
// Hands each verdict to a primary sink (the reporter: spool, then the store) and to a
// secondary one (the local --audit-log JSONL), for an operator who wants both. The
// primary decides: Submit returns what the primary returned, so a verdict the spool
// refuses still stops its transaction; the secondary gets every verdict regardless
// (the local trail also shows those the store will never see) and its result is
// ignored beyond a count.

#include <atomic>
#include <cstdint>

#include "mitm/verdict_sink.h"

namespace egressguard::reporter {

class TeeSink final : public mitm::VerdictSink {
 public:
  TeeSink(mitm::VerdictSinkPtr primary, mitm::VerdictSinkPtr secondary);

  bool Submit(v1::Verdict verdict) override;
  bool KeepsWriteAhead() const override { return primary_->KeepsWriteAhead(); }
  bool CanAccept() const override { return primary_->CanAccept(); }
  // Verdicts the secondary sink refused (e.g. the audit log's disk failed).
  uint64_t secondary_failures() const { return secondary_failures_.load(std::memory_order_relaxed); }

 private:
  mitm::VerdictSinkPtr primary_;
  mitm::VerdictSinkPtr secondary_;
  std::atomic<uint64_t> secondary_failures_{0};
};

}  // namespace egressguard::reporter
