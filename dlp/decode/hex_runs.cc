// Hex runs: see hex_runs.h.

#include "dlp/decode/hex_runs.h"

#include <algorithm>
#include <array>

namespace egressguard::dlp::decode {
namespace {

constexpr std::array<int8_t, 256> kNibble = [] {
  std::array<int8_t, 256> t{};
  t.fill(-1);
  for (int c = '0'; c <= '9'; ++c) t[c] = static_cast<int8_t>(c - '0');
  for (int c = 'a'; c <= 'f'; ++c) t[c] = static_cast<int8_t>(c - 'a' + 10);
  for (int c = 'A'; c <= 'F'; ++c) t[c] = static_cast<int8_t>(c - 'A' + 10);
  return t;
}();

inline int Nibble(char c) { return kNibble[static_cast<uint8_t>(c)]; }

OrigSpan Union(OrigSpan a, OrigSpan b) { return {std::min(a.begin, b.begin), std::max(a.end, b.end)}; }

}  // namespace

void HexRunDecoder::Begin() {
  open_ = true;
  started_ = false;
  high_ = -1;
  buf_.clear();
  runs_.clear();
  seg_start_ = seg_bytes_ = 0;
}

void HexRunDecoder::Chars(const Src& s, size_t a, size_t b) {
  const char* d = s.data();
  if (high_ >= 0 && a < b) {
    buf_.push_back(static_cast<char>((high_ << 4) | Nibble(d[a])));
    Extend(Union(high_span_, s.SpanOf(a, a + 1)));
    high_ = -1;
    ++a;
  }
  // Whole pairs, a segment's worth at a time so each takes the span of its characters.
  while (b - a >= 2) {
    const size_t pairs = std::min((b - a) / 2, kSegment - seg_bytes_);
    const size_t at = buf_.size();
    buf_.resize(at + pairs);
    for (size_t k = 0; k < pairs; ++k) {
      buf_[at + k] = static_cast<char>((Nibble(d[a + 2 * k]) << 4) | Nibble(d[a + 2 * k + 1]));
    }
    const OrigSpan span = s.SpanOf(a, a + 2 * pairs);
    seg_span_ = seg_bytes_ == 0 ? span : Union(seg_span_, span);
    seg_bytes_ += pairs;
    if (seg_bytes_ == kSegment) Close();
    a += 2 * pairs;
  }
  if (a < b) {
    high_ = Nibble(d[a]);
    high_span_ = s.SpanOf(a, a + 1);
  }
  if (!started_ && buf_.size() >= kMinHexBytes) {
    out_.BeginDocument(DocHint{});
    started_ = true;
  }
  if (started_ && seg_start_ >= kBatch) Emit();
}

void HexRunDecoder::Extend(OrigSpan span) {
  seg_span_ = seg_bytes_ == 0 ? span : Union(seg_span_, span);
  if (++seg_bytes_ == kSegment) Close();
}

void HexRunDecoder::Close() {
  runs_.push_back(Run{seg_start_, seg_bytes_, seg_span_.begin, seg_span_.end, false});
  seg_start_ += seg_bytes_;
  seg_bytes_ = 0;
}

void HexRunDecoder::Emit() {
  if (!started_ || runs_.empty()) return;
  out_.Emit(Src(buf_.data(), 0, seg_start_, runs_));
  runs_.clear();
  buf_.erase(0, seg_start_);
  seg_start_ = 0;
}

void HexRunDecoder::End() {
  if (!open_) return;
  open_ = false;
  high_ = -1;
  if (started_) {
    if (seg_bytes_ > 0) Close();
    Emit();
    out_.EndDocument();
  }
  started_ = false;
  buf_.clear();
  runs_.clear();
  seg_start_ = seg_bytes_ = 0;
}

uint64_t HexRunDecoder::held_from() const {
  if (!open_) return kNothingHeld;
  uint64_t h = high_ >= 0 ? high_span_.begin : kNothingHeld;
  if (seg_bytes_ > 0) h = std::min(h, seg_span_.begin);
  if (!runs_.empty()) h = std::min(h, runs_.front().ob);  // a run's spans only grow
  return h;
}

}  // namespace egressguard::dlp::decode
