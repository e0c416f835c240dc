#include "dlp/decode/mapped.h"

#include <algorithm>

namespace egressguard::dlp::decode {

size_t Src::RunIndex(size_t abs_pos) const {
  if (runs_.size() == 1) return 0;
  // Last run starting at or before abs_pos.
  auto it = std::upper_bound(runs_.begin(), runs_.end(), abs_pos,
                             [](size_t p, const Run& r) { return p < r.pos; });
  return it == runs_.begin() ? 0 : static_cast<size_t>(it - runs_.begin()) - 1;
}

OrigSpan Src::SpanOfRuns(size_t i, size_t j) const {
  const size_t a = begin_ + i, b = begin_ + j - 1;  // first and last byte, absolute
  const Run& first = runs_[RunIndex(a)];
  const Run& last = runs_[RunIndex(b)];
  OrigSpan s;
  s.begin = first.linear ? first.ob + (a - first.pos) : first.ob;
  s.end = last.linear ? last.ob + (b - last.pos) + 1 : last.oe;
  // Coarse spans of one decoded stream may overlap (a decompressor's spans all start at
  // the stream start); the union is what holds the bytes.
  s.begin = std::min(s.begin, last.linear ? s.begin : last.ob);
  s.end = std::max(s.end, first.linear ? s.end : first.oe);
  return s;
}

void MappedBuffer::Append(const Src& s) {
  s.ForEachRun([this](std::string_view bytes, OrigSpan span, bool linear) {
    min_begin_ = std::min(min_begin_, span.begin);
    if (!runs_.empty()) {
      Run& last = runs_.back();
      const bool contiguous_linear = linear && last.linear && last.oe == span.begin;
      const bool same_coarse = !linear && !last.linear && last.ob == span.begin && last.oe == span.end;
      if (contiguous_linear || same_coarse) {
        last.len += bytes.size();
        last.oe = span.end;
        data_.append(bytes);
        return;
      }
    }
    runs_.push_back(Run{data_.size(), bytes.size(), span.begin, span.end, linear});
    data_.append(bytes);
  });
}

void MappedBuffer::ReplaceBytes(char from, char to, size_t start) {
  std::replace(data_.begin() + static_cast<std::ptrdiff_t>(std::min(start, data_.size())), data_.end(), from, to);
}

void MappedBuffer::DropFront(size_t n) {
  if (n >= data_.size()) {
    Clear();
    return;
  }
  data_.erase(0, n);
  size_t keep_from = 0;
  min_begin_ = kNothingHeld;  // recomputed over the runs that stay
  for (size_t r = 0; r < runs_.size(); ++r) {
    Run& run = runs_[r];
    if (run.pos + run.len <= n) {
      keep_from = r + 1;
      continue;
    }
    if (run.pos < n) {
      const size_t cut = n - run.pos;
      if (run.linear) run.ob += cut;
      run.len -= cut;
      run.pos = 0;
    } else {
      run.pos -= n;
    }
    min_begin_ = std::min(min_begin_, run.ob);
  }
  runs_.erase(runs_.begin(), runs_.begin() + static_cast<std::ptrdiff_t>(keep_from));
}

}  // namespace egressguard::dlp::decode
