#include "dlp/digit_gate.h"

#include <algorithm>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace egressguard::dlp {

namespace {

inline bool IsDigit(char c) { return static_cast<unsigned char>(c - '0') <= 9; }

inline bool IsWordByte(char c) {
  return IsDigit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

// Index of the first ASCII digit in s[from..), or s.size().
size_t FindDigit(std::string_view s, size_t from) {
  const char* p = s.data();
  size_t n = s.size();
  size_t i = from;
#if defined(__SSE2__)
  const __m128i zero = _mm_set1_epi8('0');
  const __m128i nine = _mm_set1_epi8(9);
  auto digit_mask = [&](size_t at) {
    __m128i v = _mm_sub_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + at)), zero);
    return static_cast<unsigned>(_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_min_epu8(v, nine), v)));
  };
  while (i + 32 <= n) {
    unsigned lo = digit_mask(i);
    unsigned hi = digit_mask(i + 16);
    if (lo | hi) return i + static_cast<size_t>(__builtin_ctz(lo | (hi << 16)));
    i += 32;
  }
  if (i + 16 <= n) {
    unsigned m = digit_mask(i);
    if (m) return i + static_cast<size_t>(__builtin_ctz(m));
    i += 16;
  }
#endif
  for (; i < n; ++i) {
    if (IsDigit(p[i])) return i;
  }
  return n;
}

// Whether a run (run[0] a context byte when `ctx`) holding `digits` digits can hold a
// gated match: one starting at byte i lies within run[i..], so it needs that many digits there.
bool Qualifies(std::string_view run, bool ctx, uint32_t digits_in_run, const DigitGateConfig& config) {
  if (digits_in_run < config.min_digits) return false;
  const auto& need = config.need;
  const auto& need_b = config.need_at_boundary;
  const size_t first = ctx ? 1 : 0;
  uint32_t digits = 0;
  for (size_t i = run.size(); i > first; --i) {
    const auto c = static_cast<unsigned char>(run[i - 1]);
    digits += IsDigit(static_cast<char>(c)) ? 1u : 0u;
    if (digits >= need[c]) return true;
    // Before the run's first byte is either the context byte or the stream start.
    const bool boundary = i - 1 == 0 || !IsWordByte(run[i - 2]);
    if (boundary && digits >= need_b[c]) return true;
  }
  return false;
}

uint32_t CountDigits(std::string_view s) {
  return static_cast<uint32_t>(std::count_if(s.begin(), s.end(), IsDigit));
}

}  // namespace

void DigitGate::StartRun(std::string_view chunk, uint64_t base, size_t digit_pos) {
  const auto& m = config_->member;
  const size_t w = config_->max_width;
  // A gated match holds at least one digit, so it starts at most max_width bytes
  // before the first digit of its run: walking further back is never needed.
  size_t lim = digit_pos > w ? digit_pos - w : 0;
  size_t s = digit_pos;
  while (s > lim && m[static_cast<unsigned char>(chunk[s - 1])]) --s;
  run_.clear();
  if (s > 0) {
    run_.assign(chunk.data() + s - 1, digit_pos - s + 1);
    run_base_ = base + s - 1;
    run_ctx_ = true;
  } else if (!tail_.empty()) {
    run_ = tail_;
    run_.append(chunk.data(), digit_pos);
    run_base_ = tail_base_;
    run_ctx_ = tail_ctx_;
    size_t content = run_.size() - (run_ctx_ ? 1 : 0);
    if (content > w) {
      size_t drop = run_.size() - (w + 1);
      run_.erase(0, drop);
      run_base_ += drop;
      run_ctx_ = true;
    }
  } else if (have_last_) {
    run_.push_back(last_);
    run_.append(chunk.data(), digit_pos);
    run_base_ = base - 1;
    run_ctx_ = true;
  } else {
    run_.assign(chunk.data(), digit_pos);
    run_base_ = base;
    run_ctx_ = false;
  }
  tail_.clear();
  in_run_ = true;
  run_digits_ = 0;  // bytes before the first digit hold none
  reported_upto_ = 0;
}

bool DigitGate::MayMatch() const { return Qualifies(run_, run_ctx_, run_digits_, *config_); }

void DigitGate::FlushRun(const Emit& emit, bool run_ended) {
  if (run_ended) {
    size_t content = run_.size() - (run_ctx_ ? 1 : 0);
    if (content >= config_->min_width && MayMatch()) {
      emit(GateWindow{run_, run_base_, run_ctx_ ? 1u : 0u, reported_upto_, UINT64_MAX});
    }
    run_.clear();
    in_run_ = false;
    return;
  }
  // Overflow of a run that goes on: scan what we have, except matches ending at the
  // last byte (the next byte decides \b), and keep enough to find every later match.
  const size_t keep = static_cast<size_t>(config_->max_width) + 2;
  if (run_.size() <= keep) return;
  uint64_t limit = run_base_ + run_.size() - 1;
  if (MayMatch()) {
    emit(GateWindow{run_, run_base_, run_ctx_ ? 1u : 0u, reported_upto_, limit});
  }
  reported_upto_ = std::max(reported_upto_, limit);
  size_t drop = run_.size() - keep;
  run_.erase(0, drop);
  run_base_ += drop;
  run_ctx_ = true;
  run_digits_ = CountDigits(run_);
}

void DigitGate::SaveTail(std::string_view chunk, uint64_t base) {
  const auto& m = config_->member;
  const size_t w = config_->max_width;
  const size_t n = chunk.size();
  size_t lim = n > w ? n - w : 0;
  size_t k = n;
  while (k > lim && m[static_cast<unsigned char>(chunk[k - 1])]) --k;
  if (k == n) {
    tail_.clear();
    return;
  }
  if (k > 0) {
    tail_.assign(chunk.data() + k - 1, n - k + 1);
    tail_base_ = base + k - 1;
    tail_ctx_ = true;
    return;
  }
  // The whole (short) chunk is run bytes: extend the previous tail.
  if (tail_.empty()) {
    if (have_last_) {
      tail_.assign(1, last_);
      tail_base_ = base - 1;
      tail_ctx_ = true;
    } else {
      tail_base_ = base;
      tail_ctx_ = false;
    }
  }
  tail_.append(chunk.data(), n);
  size_t content = tail_.size() - (tail_ctx_ ? 1 : 0);
  if (content > w) {
    size_t drop = tail_.size() - (w + 1);
    tail_.erase(0, drop);
    tail_base_ += drop;
    tail_ctx_ = true;
  }
}

void DigitGate::Feed(std::string_view chunk, uint64_t base, const Emit& emit) {
  const size_t n = chunk.size();
  if (n == 0) return;
  const auto& m = config_->member;
  const size_t max_run = std::max<size_t>(config_->max_run, static_cast<size_t>(config_->max_width) * 2 + 8);
  size_t i = 0;
  while (i < n) {
    if (!in_run_) {
      size_t p = FindDigit(chunk, i);
      if (p == n) break;
      // Fast path, the common case: the run and its context byte lie inside this chunk
      // and it ends before max_run, so it is judged (and emitted) in place, not copied.
      const size_t w = config_->max_width;
      size_t s = p;
      for (const size_t lim = p > w ? p - w : 0; s > lim && m[static_cast<unsigned char>(chunk[s - 1])];) --s;
      if (s > 0) {
        const size_t stop = std::min(n, p + (max_run - (p - s + 1)));
        size_t j = p;
        uint32_t digits = 0;
        while (j < stop && m[static_cast<unsigned char>(chunk[j])]) {
          digits += IsDigit(chunk[j]) ? 1u : 0u;
          ++j;
        }
        if (j < stop) {  // ended by chunk[j], a non-member: the whole run is here
          const std::string_view run = chunk.substr(s - 1, j + 2 - s);
          tail_.clear();
          if (j + 1 - s >= config_->min_width && Qualifies(run, true, digits, *config_)) {
            emit(GateWindow{run, base + s - 1, 1u, 0, UINT64_MAX});
          }
          i = j + 1;
          continue;
        }
      }
      StartRun(chunk, base, p);
      i = p;
    }
    size_t j = i;
    size_t room = max_run > run_.size() ? max_run - run_.size() : 0;
    size_t stop = std::min(n, i + room);
    while (j < stop && m[static_cast<unsigned char>(chunk[j])]) {
      run_digits_ += IsDigit(chunk[j]) ? 1u : 0u;
      ++j;
    }
    run_.append(chunk.data() + i, j - i);
    if (j == stop && j < n && m[static_cast<unsigned char>(chunk[j])]) {
      FlushRun(emit, /*run_ended=*/false);  // overflow; the run continues
      i = j;
      continue;
    }
    if (j < n) {
      run_.push_back(chunk[j]);  // the byte that ended the run, as context for \b
      FlushRun(emit, /*run_ended=*/true);
      i = j + 1;
      continue;
    }
    i = n;
  }
  if (in_run_) {
    tail_.clear();
  } else {
    SaveTail(chunk, base);
  }
  last_ = chunk[n - 1];
  have_last_ = true;
}

void DigitGate::Finish(const Emit& emit) {
  if (in_run_) FlushRun(emit, /*run_ended=*/true);
  tail_.clear();
}

}  // namespace egressguard::dlp
