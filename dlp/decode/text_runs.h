#pragma once
// Binary documents are scanned only where a finding can be. A decoded document whose
// first bytes are a binary format's magic or hold control bytes (an image, a compressed
// or encrypted stream, a zip, a PDF: base64 attachments are mostly these) goes to the
// scan reduced to the stretches around "runs": maximal runs of bytes that some pattern
// of the pack can match, at least as long as that pattern's shortest match. Its
// decoders (the layer's TransformSlot and base64 finder) still get every byte.
//
// Why no finding is lost. The engine derives the classes from the pack (Hyperscan's
// hs_expression_info min_width and PatternShape's alphabet of every pattern): a class is
// a byte set U, a length N no longer than the shortest match of any of its patterns and
// a context W no shorter than the keyword window of any of their rules, and every
// pattern's alphabet lies in its class's U. A match of pattern p consists of bytes of
// U, so it lies inside one maximal run of U-bytes at least as long as the match, hence
// at least N long: such a run is "qualifying", and the document's bytes from W + 1
// before it to W + 1 after it are scanned as they are, one contiguous stretch. So every
// match is scanned with its own bytes, the byte on either side (what \b looks at) and
// its rule's whole keyword window (window_before bytes before it, window_after after it,
// both inside the stretch): the same value, the same boundaries and the same keywords,
// for REQUIRE, BOOST and SUPPRESS alike. Where bytes are left out between two stretches
// the layer ends its document (the sink judges what it holds, and restarts its
// Hyperscan streams, as between any two documents), so no match spans a gap, and a
// match found in a stretch is one the document holds: it lies in a qualifying run,
// scanned whole with its true neighbours. Leftmost-longest then picks the same values.
// Runs of different classes are merged conservatively (union of bytes, smaller N,
// larger W). A pack the engine cannot read this way (a pattern PatternShape does not
// understand, or an anchored one) gets no filter.
//
// Streaming: each class's run length is carried across chunks; bytes that a run not yet
// qualifying may still pull in (at most N - 1 + W + 1 bytes back) are held, and what
// is scanned does not depend on how the document was chunked.

#include <bitset>
#include <cstdint>
#include <functional>
#include <memory>
#include <string_view>
#include <utility>
#include <vector>

#include "dlp/decode/mapped.h"
#include "dlp/decode/simd.h"

namespace egressguard::dlp::decode {

inline constexpr size_t kMaxTextRunClasses = 6;
inline constexpr uint32_t kMaxTextRunLength = 64;  // longer minima are cut to it (keeps more)
inline constexpr size_t kBinarySniff = 64;         // bytes that decide text or binary

struct TextRunClass {
  simd::ByteSet bytes;
  std::bitset<256> members;  // the same set, for building and tests
  uint32_t min_run = 1;      // N
  uint32_t context = 0;      // W
};

struct TextRunConfig {
  std::vector<TextRunClass> classes;
};

// What the engine knows of one pattern: every byte some match may contain, its shortest
// match, and the keyword window of its rule (max of window_before and window_after, 0
// for a rule without keywords).
struct TextRunPattern {
  std::bitset<256> alphabet;
  uint32_t min_width = 0;
  uint32_t context = 0;
};

// Groups the patterns into at most kMaxTextRunClasses classes, merging those whose
// union costs least (expected bytes kept from random data). nullptr when there are no
// patterns or one can match the empty string.
std::shared_ptr<const TextRunConfig> BuildTextRunConfig(const std::vector<TextRunPattern>& patterns);

// A binary format's magic or control bytes in the first kBinarySniff bytes.
bool LooksBinary(std::string_view first);

// One layer's filter, document by document. Put/End hand what goes to the scan to
// `keep`, in order; an empty Src says that bytes were left out there (the layer ends
// its document), sent as soon as that is known.
class TextRunFilter {
 public:
  using Keep = std::function<void(const Src&)>;

  explicit TextRunFilter(std::shared_ptr<const TextRunConfig> config);
  ~TextRunFilter();
  void Begin();
  void Put(const Src& s, const Keep& keep);
  void End(const Keep& keep);
  // The earliest original offset of a byte that may still be kept: the undecided sniff
  // prefix, or the bytes a run not yet qualifying may pull in.
  uint64_t held_from() const;
  size_t memory_bytes() const;
  // For tests: bytes of binary documents seen and kept.
  uint64_t binary_bytes() const { return binary_bytes_; }
  uint64_t kept_bytes() const { return kept_bytes_; }

 private:
  enum class Mode { kSniff, kText, kBinary };
  void Decide(const Keep& keep);
  void Binary(const Src& s, const Keep& keep);
  void KeepRange(uint64_t a, uint64_t b);
  void HandOut(uint64_t upto, const Src& s, const Keep& keep);
  void Gap(const Keep& keep);
  void Out(const Src& piece, const Keep& keep);
  void Reset();

  std::shared_ptr<const TextRunConfig> config_;
  const bool avx2_;
  const simd::ErosionPlan plan_;
  Mode mode_ = Mode::kSniff;
  MappedBuffer sniff_;
  // Binary mode, in document offsets.
  uint64_t pos_ = 0;                        // bytes of the document seen
  uint64_t put_start_ = 0;                  // offset of the Put being read
  std::vector<simd::ByteSet> sets_;         // per class: its bytes
  std::vector<uint32_t> run_;               // per class: its run ending at pos_
  std::vector<uint8_t> open_;               // per class: that run qualified
  uint32_t open_count_ = 0;
  uint64_t fwd_end_ = 0;                    // bytes before it are kept (after-context)
  std::vector<std::pair<uint64_t, uint64_t>> kept_;  // kept ranges not handed out yet
  uint64_t out_end_ = 0;                    // end of what was handed out
  bool out_any_ = false;                    // ... in this document
  bool gap_sent_ = false;                   // the left-out bytes after out_end_ were signalled
  MappedBuffer win_;                        // bytes not handed out [win_begin_, put_start_)
  uint64_t win_begin_ = 0;
  uint64_t binary_bytes_ = 0, kept_bytes_ = 0;
};

}  // namespace egressguard::dlp::decode
