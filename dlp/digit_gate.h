#pragma once
// The digit-run prefilter. Patterns whose matches can only contain "run" bytes (digits
// and a few separators, see PatternShape) are not scanned byte by byte: a SIMD search
// jumps to the next digit, the surrounding run is collected, and only runs with enough
// digits and length are handed to a block-mode database. Runs that cross chunk
// boundaries are carried over (bounded: the longest match width plus two bytes once a
// run overflows `max_run`), so matches are exactly those of scanning one buffer.

#include <algorithm>
#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace egressguard::dlp {

struct DigitGateConfig {
  std::array<bool, 256> member{};  // bytes that may belong to a run (union of gated alphabets)
  uint32_t min_digits = 1;         // fewest digits any gated match contains (>= 1)
  uint32_t min_width = 1;          // shortest gated match
  uint32_t max_width = 1;          // longest gated match (bounded by construction)
  uint32_t max_run = 4096;         // a longer run is scanned in overlapping pieces
  // Per byte b: fewest digits a gated match starting with b contains (UINT32_MAX: no match
  // starts with b; all 0: no such knowledge). A run is scanned only if from some byte b of
  // it on it holds need[b] digits, which skips dates, prices and short ids without losing
  // a match.
  std::array<uint32_t, 256> need{};
  // The same for patterns that begin with \b before a word byte: they count only where
  // the byte before is not a word byte (so "2026-01-05" starts no phone number at "026").
  std::array<uint32_t, 256> need_at_boundary = [] {
    std::array<uint32_t, 256> a{};
    a.fill(UINT32_MAX);
    return a;
  }();
};

// One window for the block database. window[0] is context only (never a match start)
// when `first_start` is 1. Report matches whose absolute end e satisfies
// end_after < e <= end_limit (absolute offset = base + offset in window).
struct GateWindow {
  std::string_view bytes;
  uint64_t base = 0;
  uint32_t first_start = 0;
  uint64_t end_after = 0;
  uint64_t end_limit = UINT64_MAX;
};

class DigitGate {
 public:
  using Emit = std::function<void(const GateWindow&)>;

  explicit DigitGate(const DigitGateConfig* config) : config_(config) {}

  // `chunk` starts at absolute offset `base` (the bytes fed so far).
  void Feed(std::string_view chunk, uint64_t base, const Emit& emit);
  // End of the stream: the open run, if any, is scanned.
  void Finish(const Emit& emit);

  size_t memory_bytes() const { return run_.capacity() + tail_.capacity(); }

  // Every gated match ending at or before this offset has been emitted (`fed` = bytes
  // fed so far): the open run holds back what it has not scanned yet.
  uint64_t settled(uint64_t fed) const { return in_run_ ? std::max(run_base_, reported_upto_) : fed; }

 private:
  void StartRun(std::string_view chunk, uint64_t base, size_t digit_pos);
  void FlushRun(const Emit& emit, bool run_ended);
  void SaveTail(std::string_view chunk, uint64_t base);
  bool MayMatch() const;

  const DigitGateConfig* config_;
  // The open run: run_[0] is a context byte when run_ctx_.
  std::string run_;
  uint64_t run_base_ = 0;
  bool run_ctx_ = false;
  bool in_run_ = false;
  uint32_t run_digits_ = 0;
  uint64_t reported_upto_ = 0;
  // Run bytes (no digit yet) at the end of the previous chunk, same layout as run_.
  std::string tail_;
  uint64_t tail_base_ = 0;
  bool tail_ctx_ = false;
  // The byte before the current chunk (context for a run starting at its first byte).
  bool have_last_ = false;
  char last_ = 0;
};

}  // namespace egressguard::dlp
