#include "appliance/reporter/tee_sink.h"

#include <spdlog/spdlog.h>

namespace egressguard::reporter {

TeeSink::TeeSink(mitm::VerdictSinkPtr primary, mitm::VerdictSinkPtr secondary)
    : primary_(std::move(primary)), secondary_(std::move(secondary)) {}

bool TeeSink::Submit(v1::Verdict verdict) {
  // The primary first, on a copy: the secondary may take the original (a move is cheaper).
  const bool recorded = primary_->Submit(verdict);
  if (verdict.phase() == v1::Verdict::OPEN) return recorded;  // the secondary records completions
  if (!secondary_->Submit(std::move(verdict))) {
    // Counted, logged once per 1,000: the primary's record is what the proxy acts on.
    if (secondary_failures_.fetch_add(1, std::memory_order_relaxed) % 1000 == 0) {
      spdlog::error("verdict tee: the secondary sink (audit log) refused a verdict ({} so far)",
                    secondary_failures_.load(std::memory_order_relaxed));
    }
  }
  return recorded;
}

}  // namespace egressguard::reporter
