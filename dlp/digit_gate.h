#pragma once
// The digit-run prefilter. Patterns whose matches can only contain "run" bytes (digits
// and a few separators, see PatternShape) are not scanned byte by byte: each chunk is
// classified 64 bytes at a time into member/digit bit masks (AVX2 where present), runs
// are found and their digits counted on those masks, and only runs with enough digits
// for some pattern class are handed to that class's block-mode database. Runs that cross chunk
// boundaries are carried over (bounded: the longest match width plus two bytes once a
// run overflows `max_run`), so matches are exactly those of scanning one buffer.

#include <algorithm>
#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace egressguard::dlp {

inline constexpr size_t kMaxGateClasses = 16;

// What matches of one class of gated patterns need: per first byte b, the fewest digits a
// match starting with b contains (UINT32_MAX: none starts with b), anywhere (`need`) or
// only after a non-word byte (`at_boundary`, for patterns that begin with \b before a
// word byte, so "2026-01-05" starts no phone number at "026").
struct GateClass {
  std::array<uint32_t, 256> need;
  std::array<uint32_t, 256> at_boundary;
};

struct DigitGatePrepared;

struct DigitGateConfig {
  std::array<bool, 256> member{};  // bytes that may belong to a run (union of gated alphabets)
  uint32_t min_digits = 1;         // fewest digits any gated match contains (>= 1)
  uint32_t min_width = 1;          // shortest gated match
  uint32_t max_width = 1;          // longest gated match (bounded by construction)
  uint32_t max_run = 4096;         // a longer run is scanned in overlapping pieces
  // Class 0, the only one when `classes` is empty: per byte b, fewest digits a gated match
  // starting with b contains (all 0: no such knowledge). A run is handed on only if from
  // some byte b of it on it holds need[b] digits, which skips dates, prices and short ids
  // without losing a match.
  std::array<uint32_t, 256> need{};
  std::array<uint32_t, 256> need_at_boundary = Never();
  // When set, these replace need/need_at_boundary: class k is bit k of
  // GateWindow::classes (at most kMaxGateClasses), so the caller scans each window only
  // with the patterns that can match in it.
  std::vector<GateClass> classes;
  // Derived tables (Prepare()); a gate built on an unprepared config derives its own.
  std::shared_ptr<const DigitGatePrepared> prepared;

  void Prepare();

  static std::array<uint32_t, 256> Never() {
    std::array<uint32_t, 256> a{};
    a.fill(UINT32_MAX);
    return a;
  }
};

// Tables derived from a DigitGateConfig once, not per stream.
struct DigitGatePrepared {
  // Per byte and class: digits needed, saturated to 254 (255: never), so one SIMD compare
  // judges every class at a run position.
  alignas(16) std::array<std::array<uint8_t, kMaxGateClasses>, 256> need{};
  alignas(16) std::array<std::array<uint8_t, kMaxGateClasses>, 256> at_boundary{};
  uint32_t all_classes = 0;
  uint32_t min_need = 0;  // fewest digits any class needs from any byte
  // No class starts a match at a digit that follows a word byte (every digit-led pattern
  // begins with \b): inside a run only digit-group starts and separators can start one.
  bool digits_start_at_boundary = false;
  // Non-digit bytes some class can start a match with ("+41 ...", "(650) ..."); when
  // there are more than 4, every separator counts as one (special_count 0).
  std::array<uint8_t, 4> special{};
  size_t special_count = 0;
  // Per class: fewest digits a match needs when it starts with a byte not in `special`.
  std::array<uint32_t, kMaxGateClasses> plain_need{};
  // `member` as two nibble tables (member(b) iff lo[b & 15] & hi[b >> 4]), when it fits
  // in 8 buckets: then AVX2 classifies 32 bytes per instruction.
  std::array<uint8_t, 16> nibble_lo{};
  std::array<uint8_t, 16> nibble_hi{};
  bool simd = false;
  // Member runs shorter than these (clamped to 1..64) can hold no emitted window: one
  // without a special starter byte needs plain digits, one with it still min_width - 1
  // bytes and min_digits digits. The digits of short runs far from special bytes are
  // dropped 64 bytes at a time, on the bit masks, before the per-run work.
  uint32_t short_run_plain = 1;
  uint32_t short_run_special = 1;
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
  uint32_t classes = 1;  // bit k: class k may match in it
};

// Where keyed classes are worth looking for: they are active for a run only if some
// keyword ended within `window` bytes before the run or inside it.
struct GateKeywords {
  uint32_t keyed_classes = 0;
  uint32_t window = 0;
  const std::vector<uint64_t>* ends = nullptr;  // keyword end offsets, ascending
};

class DigitGate {
 public:
  using Emit = std::function<void(const GateWindow&)>;

  explicit DigitGate(const DigitGateConfig* config);

  // `chunk` starts at absolute offset `base` (the bytes fed so far). With `keywords`,
  // keyed classes are looked for only near a keyword (see GateKeywords).
  void Feed(std::string_view chunk, uint64_t base, const Emit& emit, const GateKeywords* keywords = nullptr);
  // End of the stream: the open run, if any, is scanned.
  void Finish(const Emit& emit, const GateKeywords* keywords = nullptr);

  size_t memory_bytes() const { return run_.capacity() + tail_.capacity(); }

  // Back to the state of a new gate, keeping the buffers (a pooled scan's next message).
  void Reset();

  // Every gated match ending at or before this offset has been emitted (`fed` = bytes
  // fed so far): the open run holds back what it has not scanned yet.
  uint64_t settled(uint64_t fed) const { return in_run_ ? std::max(run_base_, reported_upto_) : fed; }
  // No gated match still to come can start before this offset: every one lies inside a
  // run, and the open run and the run bytes ending the last chunk (a run that may yet
  // begin) are the only runs not judged yet.
  uint64_t undecided_from(uint64_t fed) const {
    uint64_t from = fed;
    if (in_run_) from = std::min(from, run_base_ + (run_ctx_ ? 1 : 0));
    if (!tail_.empty()) from = std::min(from, tail_base_ + (tail_ctx_ ? 1 : 0));
    return from;
  }

 private:
  void StartRun(std::string_view chunk, uint64_t base, size_t digit_pos);
  void FlushRun(const Emit& emit, bool run_ended);
  void SaveTail(std::string_view chunk, uint64_t base);
  uint32_t MayMatch() const;
  uint32_t QualifiesInChunk(std::string_view chunk, size_t s, size_t j, uint32_t total, uint32_t active,
                            uint32_t plain, bool has_special) const;
  void Classify(std::string_view chunk);
  void MarkRunDigits(size_t n, uint32_t plain);

  const DigitGateConfig* config_;
  // Bit i of word k: byte 64k+i of the current chunk is a run member / an ASCII digit.
  // Finding runs and counting their digits on these words costs a few instructions per
  // run instead of several per byte.
  std::vector<uint64_t> member_bits_;
  std::vector<uint64_t> digit_bits_;
  std::vector<uint64_t> special_bits_;  // bytes of DigitGatePrepared::special
  // Digits of member runs that may qualify (see MarkRunDigits).
  std::vector<uint64_t> run_digit_bits_;
  std::vector<uint64_t> no_special_;  // all zero: special bytes that keep no run
  uint32_t active_ = ~0u;
  std::shared_ptr<const DigitGatePrepared> prepared_;
  // The open run: run_[0] is a context byte when run_ctx_.
  std::string run_;
  uint64_t run_base_ = 0;
  bool run_ctx_ = false;
  bool in_run_ = false;
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
