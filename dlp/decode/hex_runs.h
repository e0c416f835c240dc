#pragma once
// Hex text (what `xxd -p`, Python's bytes.hex() and many JSON APIs write) decoded back
// into bytes, for the run finder of each layer (base64.cc): a run of hex digits that
// base64 would not take (one letter case only, or digits only) is read two characters
// to a byte. A run shorter than kMinHexBytes decoded bytes is no document: card and
// phone numbers, ids and short hashes are runs of hex digits too, and what they decode
// to is too short to hold a value the raw scan did not already see. Hex of text, of a
// zip or a gzip stream is one document of the finder's layer, sniffed and decoded like
// any other.

#include <cstdint>
#include <string>
#include <vector>

#include "dlp/decode/layer.h"

namespace egressguard::dlp::decode {

inline constexpr size_t kMinHexBytes = 16;  // 32 hex digits: the hex of a card number

inline bool IsHexDigit(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

// One hex run at a time into `out`. Decoded bytes are cut into segments of 32 bytes,
// each mapped to the span of its 64 characters and counted from the start of the run,
// so they come out the same however the input was chunked. The document begins once
// kMinHexBytes bytes are decoded; a shorter run is dropped whole.
class HexRunDecoder {
 public:
  explicit HexRunDecoder(Layer& out) : out_(out) {}

  void Begin();
  // s[a, b) are all hex digits.
  void Chars(const Src& s, size_t a, size_t b);
  // Hands the complete segments to the layer once the document has begun.
  void Emit();
  // End of the run: an odd last digit is dropped.
  void End();
  size_t memory_bytes() const { return buf_.capacity() + runs_.capacity() * sizeof(Run); }
  uint64_t held_from() const;

 private:
  static constexpr size_t kSegment = 32;      // bytes
  static constexpr size_t kBatch = 16 << 10;  // complete bytes that make Chars emit

  void Extend(OrigSpan span);
  void Close();

  Layer& out_;
  bool open_ = false;     // a run is being read
  bool started_ = false;  // its document began (kMinHexBytes reached)
  int high_ = -1;         // a first digit waiting for its pair, or -1
  OrigSpan high_span_;
  std::string buf_;        // complete segments [0, seg_start_), then the open one
  std::vector<Run> runs_;  // the complete segments
  size_t seg_start_ = 0;
  size_t seg_bytes_ = 0;
  OrigSpan seg_span_;
};

}  // namespace egressguard::dlp::decode
