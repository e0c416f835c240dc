#pragma once
// Bytes that remember where they came from: every decoder consumes and produces runs of
// bytes tagged with the span of ORIGINAL message bytes that encoded them.

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace egressguard::dlp::decode {

struct OrigSpan {
  uint64_t begin = 0, end = 0;
};

// held_from() of a part of the tree that holds no byte it may still deliver.
inline constexpr uint64_t kNothingHeld = UINT64_MAX;

// A run of bytes [pos, pos + len) in some buffer. Linear runs map byte i to original
// byte ob + (i - pos); coarse runs map every byte to [ob, oe).
struct Run {
  size_t pos = 0, len = 0;
  uint64_t ob = 0, oe = 0;
  bool linear = false;
};

// A read-only view of mapped bytes: buf[begin, end) described by runs (sorted by pos,
// covering the view). Cheap to copy and to slice.
class Src {
 public:
  Src() = default;
  Src(const char* buf, size_t begin, size_t end, std::span<const Run> runs)
      : buf_(buf), begin_(begin), end_(end), runs_(runs) {}

  std::string_view bytes() const { return {buf_ + begin_, end_ - begin_}; }
  const char* data() const { return buf_ + begin_; }
  size_t size() const { return end_ - begin_; }
  bool empty() const { return begin_ == end_; }
  Src Sub(size_t i, size_t j) const { return Src(buf_, begin_ + i, begin_ + j, runs_); }
  // Original span of view bytes [i, j), i < j.
  OrigSpan SpanOf(size_t i, size_t j) const {
    // One run (a raw chunk, most decoder outputs): what SpanOfRuns gives for it, inline,
    // since the base64 decoder asks this for every segment it cuts.
    if (runs_.size() == 1) {
      const Run& r = runs_[0];
      if (!r.linear) return {r.ob, r.oe};
      return {r.ob + (begin_ + i - r.pos), r.ob + (begin_ + j - 1 - r.pos) + 1};
    }
    return SpanOfRuns(i, j);
  }
  // Calls f(string_view bytes, OrigSpan span, bool linear) for each run piece in order.
  template <typename F>
  void ForEachRun(F&& f) const;

 private:
  size_t RunIndex(size_t abs_pos) const;
  OrigSpan SpanOfRuns(size_t i, size_t j) const;

  const char* buf_ = nullptr;
  size_t begin_ = 0, end_ = 0;
  std::span<const Run> runs_;
};

// One owned run over a transient buffer: how raw chunks and decoder outputs enter a Layer.
class SinglePiece {
 public:
  SinglePiece(std::string_view bytes, OrigSpan span, bool linear)
      : bytes_(bytes), run_{0, bytes.size(), span.begin, span.end, linear} {}
  Src src() const { return Src(bytes_.data(), 0, bytes_.size(), std::span<const Run>(&run_, 1)); }

 private:
  std::string_view bytes_;
  Run run_;
};

// A small owned buffer of mapped bytes (sniff prefixes, partial escapes, held context).
class MappedBuffer {
 public:
  void Append(const Src& s);
  void DropFront(size_t n);
  void Clear() {
    data_.clear();
    runs_.clear();
    min_begin_ = kNothingHeld;
  }
  size_t size() const { return data_.size(); }
  // Smallest original offset any buffered byte maps to (kNothingHeld when empty). Kept
  // up to date by Append and DropFront so asking costs nothing: held_from() asks it
  // after every Feed. The minimum over runs, not the first run's begin: coarse spans of
  // one stream may overlap (see Src::SpanOf).
  uint64_t orig_begin() const { return data_.empty() ? kNothingHeld : min_begin_; }
  bool empty() const { return data_.empty(); }
  std::string_view bytes() const { return data_; }
  Src src() const { return Src(data_.data(), 0, data_.size(), runs_); }
  // Replaces every byte `from` at or after `start` by `to` in place; the mapping stays.
  void ReplaceBytes(char from, char to, size_t start = 0);
  size_t memory_bytes() const { return data_.capacity() + runs_.capacity() * sizeof(Run); }

 private:
  std::string data_;
  std::vector<Run> runs_;
  uint64_t min_begin_ = kNothingHeld;
};

template <typename F>
void Src::ForEachRun(F&& f) const {
  if (empty()) return;
  for (size_t r = RunIndex(begin_); r < runs_.size() && runs_[r].pos < end_; ++r) {
    const Run& run = runs_[r];
    const size_t b = run.pos > begin_ ? run.pos : begin_;
    const size_t e = run.pos + run.len < end_ ? run.pos + run.len : end_;
    if (b >= e) continue;
    OrigSpan span{run.ob, run.oe};
    if (run.linear) span = {run.ob + (b - run.pos), run.ob + (e - run.pos)};
    f(std::string_view(buf_ + b, e - b), span, run.linear);
  }
}

}  // namespace egressguard::dlp::decode
