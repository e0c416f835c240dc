#include "dlp/digit_gate.h"

#include <algorithm>
#include <bit>

#if defined(__x86_64__)
#include <immintrin.h>
#elif defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "dlp/cpu_features.h"

namespace egressguard::dlp {

namespace {

inline bool IsDigit(char c) { return static_cast<unsigned char>(c - '0') <= 9; }

inline bool IsWordByte(char c) {
  return IsDigit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

// The gate's hot loops are built twice (target_clones): with the POPCNT instruction
// (every x86-64 CPU since 2008; "arch=haswell" would be picked on Intel Haswell only, not
// on an AMD EPYC), and for the x86-64 baseline, where popcount is a libgcc call.
#if defined(__x86_64__) && !defined(__clang__)
#define EG_GATE_CLONES __attribute__((target_clones("popcnt", "default")))
#else
#define EG_GATE_CLONES
#endif

inline __attribute__((always_inline)) uint32_t PopCount(uint64_t x) {
  return static_cast<uint32_t>(__builtin_popcountll(x));
}

// Bits [a, b) of a bit array: digits in a byte range are one popcount per word.
inline __attribute__((always_inline)) uint32_t CountBits(const uint64_t* bits, size_t a, size_t b) {
  if (a >= b) return 0;
  const size_t ka = a / 64, kb = (b - 1) / 64;
  const uint64_t head = bits[ka] & (~uint64_t{0} << (a % 64));
  const uint64_t tail_mask = ~uint64_t{0} >> (63 - (b - 1) % 64);
  if (ka == kb) return PopCount(head & tail_mask);
  uint32_t n = PopCount(head);
  for (size_t k = ka + 1; k < kb; ++k) n += PopCount(bits[k]);
  return n + PopCount(bits[kb] & tail_mask);
}

// First index >= from (and < n) whose bit is `set`, or n.
template <bool kSet>
inline __attribute__((always_inline)) size_t FindBit(const uint64_t* bits, size_t from, size_t n) {
  if (from >= n) return n;
  size_t k = from / 64;
  uint64_t w = (kSet ? bits[k] : ~bits[k]) & (~uint64_t{0} << (from % 64));
  const size_t words = (n + 63) / 64;
  while (w == 0) {
    if (++k == words) return n;
    w = kSet ? bits[k] : ~bits[k];
  }
  return std::min(n, k * 64 + static_cast<size_t>(std::countr_zero(w)));
}

// The start of the member run that ends just before `p`, walking back no further than
// `lim`: the smallest s in [lim, p] with bits [s, p) all set.
inline __attribute__((always_inline)) size_t RunStart(const uint64_t* member, size_t p, size_t lim) {
  size_t s = p;
  while (s > lim) {
    const size_t k = (s - 1) / 64;
    const size_t hi = (s - 1) % 64;  // bits [.., hi] of word k lie before s
    uint64_t clear = ~member[k];
    if (hi < 63) clear &= (uint64_t{1} << (hi + 1)) - 1;
    if (clear != 0) {
      const size_t at = k * 64 + 63 - static_cast<size_t>(std::countl_zero(clear));
      return std::max(lim, at + 1);
    }
    s = k * 64;
  }
  return lim;
}

// The classes a match starting with byte c (after a non-word byte when `boundary`) with
// `digits` digits from there on may belong to: class k where need <= digits.
inline uint32_t ClassesAt(const DigitGatePrepared& t, unsigned char c, bool boundary, uint32_t digits) {
  const auto d = static_cast<uint8_t>(std::min<uint32_t>(digits, 254));
#if defined(__SSE2__)
  // need <= d exactly when min(need, d) == need.
  const __m128i dv = _mm_set1_epi8(static_cast<char>(d));
  const __m128i n = _mm_load_si128(reinterpret_cast<const __m128i*>(t.need[c].data()));
  __m128i ok = _mm_cmpeq_epi8(_mm_min_epu8(n, dv), n);
  if (boundary) {
    const __m128i nb = _mm_load_si128(reinterpret_cast<const __m128i*>(t.at_boundary[c].data()));
    ok = _mm_or_si128(ok, _mm_cmpeq_epi8(_mm_min_epu8(nb, dv), nb));
  }
  return static_cast<uint32_t>(_mm_movemask_epi8(ok));
#else
  uint32_t classes = 0;
  for (size_t k = 0; k < kMaxGateClasses; ++k) {
    if (t.need[c][k] <= d || (boundary && t.at_boundary[c][k] <= d)) classes |= 1u << k;
  }
  return classes;
#endif
}

// Which classes a run (run[0] a context byte when `ctx`) holding `total` digits may hold:
// a match starting at byte i lies within run[i..], so it needs need[run[i]] digits there.
// Digits from a position on only shrink as it moves right, so the scan stops once fewer
// than any class needs remain.
uint32_t Qualifies(std::string_view run, bool ctx, uint32_t total, const DigitGateConfig& config,
                   const DigitGatePrepared& t) {
  if (total < config.min_digits || total < t.min_need) return 0;
  uint32_t classes = 0;
  uint32_t before = 0;
  for (size_t i = ctx ? 1 : 0; i < run.size(); ++i) {
    const uint32_t digits = total - before;
    if (digits < t.min_need) break;
    const auto c = static_cast<unsigned char>(run[i]);
    // Before the run's first byte is either the context byte or the stream start.
    const bool boundary = i == 0 || !IsWordByte(run[i - 1]);
    classes |= ClassesAt(t, c, boundary, digits);
    classes &= t.all_classes;
    if (classes == t.all_classes) break;
    before += IsDigit(static_cast<char>(c)) ? 1u : 0u;
  }
  return classes;
}

uint32_t CountDigits(std::string_view s) {
  return static_cast<uint32_t>(std::count_if(s.begin(), s.end(), IsDigit));
}

#if defined(__x86_64__)
// 64 bytes at p: member bits by nibble lookup (shufti), ASCII digit bits by range.
__attribute__((target("avx2"))) void Classify64Avx2(const char* p, const uint8_t* lo_tab, const uint8_t* hi_tab,
                                                   uint64_t* member, uint64_t* digit) {
  const __m256i lo = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(lo_tab)));
  const __m256i hi = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(hi_tab)));
  const __m256i nib = _mm256_set1_epi8(0x0f);
  const __m256i zero = _mm256_setzero_si256();
  const __m256i c0 = _mm256_set1_epi8('0');
  const __m256i c9 = _mm256_set1_epi8(9);
  uint64_t m = 0, d = 0;
  for (int half = 0; half < 2; ++half) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 32 * half));
    const __m256i l = _mm256_shuffle_epi8(lo, _mm256_and_si256(v, nib));
    const __m256i h = _mm256_shuffle_epi8(hi, _mm256_and_si256(_mm256_srli_epi16(v, 4), nib));
    const auto not_member =
        static_cast<uint32_t>(_mm256_movemask_epi8(_mm256_cmpeq_epi8(_mm256_and_si256(l, h), zero)));
    const __m256i dv = _mm256_sub_epi8(v, c0);
    const auto is_digit = static_cast<uint32_t>(_mm256_movemask_epi8(_mm256_cmpeq_epi8(_mm256_min_epu8(dv, c9), dv)));
    m |= static_cast<uint64_t>(~not_member) << (32 * half);
    d |= static_cast<uint64_t>(is_digit) << (32 * half);
  }
  *member = m;
  *digit = d;
}

// Bit i: p[i] == c, for 64 bytes.
__attribute__((target("avx2"))) uint64_t EqualMask64Avx2(const char* p, char c) {
  const __m256i v = _mm256_set1_epi8(c);
  const auto lo = static_cast<uint32_t>(
      _mm256_movemask_epi8(_mm256_cmpeq_epi8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)), v)));
  const auto hi = static_cast<uint32_t>(
      _mm256_movemask_epi8(_mm256_cmpeq_epi8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 32)), v)));
  return lo | (static_cast<uint64_t>(hi) << 32);
}

#endif

}  // namespace

void DigitGateConfig::Prepare() {
  auto t = std::make_shared<DigitGatePrepared>();
  std::vector<GateClass> all = classes;
  if (all.empty()) all.push_back(GateClass{need, need_at_boundary});
  for (auto& row : t->need) row.fill(255);
  for (auto& row : t->at_boundary) row.fill(255);
  t->min_need = UINT32_MAX;
  auto sat = [](uint32_t v) { return static_cast<uint8_t>(v == UINT32_MAX ? 255 : std::min<uint32_t>(v, 254)); };
  for (size_t k = 0; k < all.size() && k < kMaxGateClasses; ++k) {
    t->all_classes |= 1u << k;
    for (size_t b = 0; b < 256; ++b) {
      t->need[b][k] = sat(all[k].need[b]);
      t->at_boundary[b][k] = sat(all[k].at_boundary[b]);
      t->min_need = std::min({t->min_need, all[k].need[b], all[k].at_boundary[b]});
    }
  }
  std::array<bool, 256> special{};
  std::vector<uint8_t> specials;
  for (size_t b = 0; b < 256; ++b) {
    if (b >= '0' && b <= '9') continue;
    for (size_t k = 0; k < kMaxGateClasses; ++k) {
      if (t->need[b][k] != 255 || t->at_boundary[b][k] != 255) special[b] = true;
    }
    if (special[b]) specials.push_back(static_cast<uint8_t>(b));
  }
  t->special_count = specials.size() <= t->special.size() ? specials.size() : 0;
  for (size_t i = 0; i < t->special_count; ++i) t->special[i] = specials[i];
  for (size_t k = 0; k < all.size() && k < kMaxGateClasses; ++k) {
    uint32_t m = UINT32_MAX;
    for (size_t b = 0; b < 256; ++b) {
      if (!special[b] || t->special_count == 0) m = std::min({m, all[k].need[b], all[k].at_boundary[b]});
    }
    t->plain_need[k] = m;
  }
  t->digits_start_at_boundary = t->min_need > 0;
  for (int c = '0'; c <= '9'; ++c) {
    for (size_t k = 0; k < kMaxGateClasses; ++k) {
      if (t->need[static_cast<size_t>(c)][k] != 255) t->digits_start_at_boundary = false;
    }
  }
  // Exact nibble tables exist when the distinct per-high-nibble sets of low nibbles
  // number 8 or fewer (one bucket bit each); the run alphabets of real packs are a few
  // ASCII punctuation bytes and digits.
  std::array<uint16_t, 16> lows{};
  for (size_t b = 0; b < 256; ++b) {
    if (member[b]) lows[b >> 4] |= static_cast<uint16_t>(1u << (b & 15));
  }
  std::array<uint16_t, 8> buckets{};
  size_t used = 0;
  t->simd = true;
  for (size_t h = 0; h < 16 && t->simd; ++h) {
    if (lows[h] == 0) continue;
    const size_t k = static_cast<size_t>(std::find(buckets.begin(), buckets.begin() + used, lows[h]) - buckets.begin());
    if (k == used) {
      if (used == buckets.size()) {
        t->simd = false;
        break;
      }
      buckets[used++] = lows[h];
    }
    t->nibble_hi[h] |= static_cast<uint8_t>(1u << k);
    for (size_t l = 0; l < 16; ++l) {
      if (lows[h] & (1u << l)) t->nibble_lo[l] |= static_cast<uint8_t>(1u << k);
    }
  }
#if defined(__x86_64__)
  t->simd = t->simd && UseAvx2();
#else
  t->simd = false;
#endif
  prepared = std::move(t);
}

DigitGate::DigitGate(const DigitGateConfig* config) : config_(config), prepared_(config->prepared) {
  if (!prepared_) {
    DigitGateConfig copy = *config;
    copy.Prepare();
    prepared_ = copy.prepared;
  }
}

void DigitGate::Classify(std::string_view chunk) {
  const size_t n = chunk.size();
  const size_t words = (n + 63) / 64;
  member_bits_.resize(words);
  digit_bits_.resize(words);
  special_bits_.resize(words);
  size_t k = 0;
#if defined(__x86_64__)
  if (prepared_->simd) {
    for (; (k + 1) * 64 <= n; ++k) {
      Classify64Avx2(chunk.data() + k * 64, prepared_->nibble_lo.data(), prepared_->nibble_hi.data(), &member_bits_[k], &digit_bits_[k]);
    }
  }
#endif
  const DigitGatePrepared& t = *prepared_;
#if defined(__x86_64__)
  // Special starters are rare bytes: a plain compare per byte value, word by word.
  for (size_t q = 0; q < k; ++q) {
    uint64_t sp = 0;
    if (t.special_count == 0) {
      sp = member_bits_[q] & ~digit_bits_[q];
    } else {
      const char* p = chunk.data() + q * 64;
      for (size_t x = 0; x < t.special_count; ++x) sp |= EqualMask64Avx2(p, static_cast<char>(t.special[x]));
    }
    special_bits_[q] = sp;
  }
#endif
  const auto& m = config_->member;
  for (; k < words; ++k) {
    uint64_t mw = 0, dw = 0;
    const size_t end = std::min(n, (k + 1) * 64);
    for (size_t i = k * 64; i < end; ++i) {
      const char c = chunk[i];
      mw |= static_cast<uint64_t>(m[static_cast<unsigned char>(c)]) << (i % 64);
      dw |= static_cast<uint64_t>(IsDigit(c)) << (i % 64);
    }
    member_bits_[k] = mw;
    digit_bits_[k] = dw;
    uint64_t sw = 0;
    for (size_t i = k * 64; i < end; ++i) {
      const auto c = static_cast<unsigned char>(chunk[i]);
      bool sp = false;
      if (t.special_count == 0) {
        sp = m[c] && !IsDigit(chunk[i]);
      } else {
        for (size_t x = 0; x < t.special_count; ++x) sp = sp || c == t.special[x];
      }
      sw |= static_cast<uint64_t>(sp) << (i % 64);
    }
    special_bits_[k] = sw;
  }
}

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
  reported_upto_ = 0;
}

// Qualifies() for a run [s, j) of the current chunk whose context byte chunk[s - 1] is in
// the chunk too, visiting only the positions that can start a match: separators and the
// first digit of each digit group (a digit after a digit is no \b start).
EG_GATE_CLONES uint32_t DigitGate::QualifiesInChunk(std::string_view chunk, size_t s, size_t j, uint32_t total, uint32_t active,
                                     uint32_t plain, bool has_special) const {
  const DigitGatePrepared& t = *prepared_;
  if (!t.digits_start_at_boundary) return Qualifies(chunk.substr(s - 1, j + 2 - s), true, total, *config_, t) & active;
  if (total < config_->min_digits || total < t.min_need) return 0;
  // Without a special starter byte in the run, only digit-group starts can start a match
  // of an active class, and only with `plain` digits.
  const uint32_t bound = has_special ? t.min_need : std::max(plain, t.min_need);
  const uint32_t want = t.all_classes & active;
  const uint64_t* digit = digit_bits_.data();
  uint32_t classes = 0;
  uint32_t before = 0;  // digits in [s, word start) or [s, i)
  for (size_t k = s / 64; k * 64 < j; ++k) {
    const size_t lo = std::max(s, k * 64), hi = std::min(j, k * 64 + 64);
    uint64_t range = (hi - lo == 64 ? ~uint64_t{0} : ((uint64_t{1} << (hi - lo)) - 1)) << (lo % 64);
    const uint64_t d = digit[k];
    // Bit i-1 of the previous word for i = k*64 (carry), shifted in.
    const uint64_t prev_digit = (d << 1) | (k > 0 ? digit[k - 1] >> 63 : 0);
    uint64_t cand = range & ~(d & prev_digit);  // separators and digit-group starts
    if (!has_special) cand &= d;
    while (cand != 0) {
      const size_t bit = static_cast<size_t>(std::countr_zero(cand));
      cand &= cand - 1;
      const size_t i = k * 64 + bit;
      const uint64_t below = d & ((uint64_t{1} << bit) - 1) & range;
      const uint32_t digits = total - before - PopCount(below);
      if (digits < bound) return classes;
      const auto c = static_cast<unsigned char>(chunk[i]);
      const bool boundary = !IsWordByte(chunk[i - 1]);
      classes |= ClassesAt(t, c, boundary, digits) & want;
      if (classes == want) return classes;
    }
    before += PopCount(d & range);
  }
  return classes;
}

uint32_t DigitGate::MayMatch() const {
  const std::string_view content = std::string_view(run_).substr(run_ctx_ ? 1 : 0);
  return Qualifies(run_, run_ctx_, CountDigits(content), *config_, *prepared_) & active_;
}

void DigitGate::FlushRun(const Emit& emit, bool run_ended) {
  if (run_ended) {
    size_t content = run_.size() - (run_ctx_ ? 1 : 0);
    if (content >= config_->min_width) {
      if (const uint32_t classes = MayMatch()) {
        emit(GateWindow{run_, run_base_, run_ctx_ ? 1u : 0u, reported_upto_, UINT64_MAX, classes});
      }
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
  if (const uint32_t classes = MayMatch()) {
    emit(GateWindow{run_, run_base_, run_ctx_ ? 1u : 0u, reported_upto_, limit, classes});
  }
  reported_upto_ = std::max(reported_upto_, limit);
  size_t drop = run_.size() - keep;
  run_.erase(0, drop);
  run_base_ += drop;
  run_ctx_ = true;
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

EG_GATE_CLONES void DigitGate::Feed(std::string_view chunk, uint64_t base, const Emit& emit, const GateKeywords* keywords) {
  const size_t n = chunk.size();
  if (n == 0) return;
  const DigitGatePrepared& t = *prepared_;
  const uint32_t all = ~0u;
  const uint32_t free = keywords ? ~keywords->keyed_classes : all;
  const std::vector<uint64_t> no_ends;
  const std::vector<uint64_t>& ends = keywords && keywords->ends ? *keywords->ends : no_ends;
  const uint64_t window = keywords ? keywords->window : 0;
  size_t next_end = 0;  // first keyword end not below the current run's reach
  // Runs outside the fast path (carried over chunks) look for keyed classes whenever a
  // keyword is held at all.
  active_ = ends.empty() ? free : all;
  Classify(chunk);
  const uint64_t* member = member_bits_.data();
  const uint64_t* digit = digit_bits_.data();
  const uint64_t* special = special_bits_.data();
  const size_t max_run = std::max<size_t>(config_->max_run, static_cast<size_t>(config_->max_width) * 2 + 8);
  const size_t w = config_->max_width;
  const uint32_t min_digits = std::max(config_->min_digits, t.min_need);
  // A run without a special starter byte needs this many digits for an active class.
  uint32_t plain_free = UINT32_MAX, plain_all = UINT32_MAX;
  for (size_t k = 0; k < kMaxGateClasses; ++k) {
    if (!(t.all_classes & (1u << k))) continue;
    plain_all = std::min(plain_all, t.plain_need[k]);
    if (free & (1u << k)) plain_free = std::min(plain_free, t.plain_need[k]);
  }
  // Without a keyword held, keyed classes cannot be active anywhere in this chunk.
  const uint32_t plain_word = ends.empty() ? plain_free : plain_all;
  size_t i = 0;
  while (i < n) {
    if (!in_run_) {
      // Whole words first: when the rest of a 64-byte word holds too few digits for any
      // class, no special starter and no run that goes on into the next word (and the
      // byte before i ends a run, so none comes in), no run in it can qualify.
      if (i > 0 && ((member[(i - 1) / 64] >> ((i - 1) % 64)) & 1) == 0) {
        const size_t k = i / 64;
        if ((k + 1) * 64 <= n && (member[k] >> 63) == 0) {
          const uint64_t above = ~uint64_t{0} << (i % 64);
          if (PopCount(digit[k] & above) < plain_word && (special[k] & above) == 0) {
            tail_.clear();
            i = (k + 1) * 64;
            continue;
          }
        }
      }
      const size_t p = FindBit<true>(digit, i, n);
      if (p == n) break;
      // Cheapest reject first, for the many numbers no pattern can use: too few digits
      // for any class and no special starter byte where the run could begin. The run
      // then lies inside the chunk and is shorter than max_run, so nothing carries over.
      {
        const size_t j = FindBit<false>(member, p, n);
        if (j < n && p > w && j - p + w + 1 < max_run) {
          const size_t lo = p - w;
          if (CountBits(digit, p, j) < plain_word && CountBits(special, lo, j) == 0) {
            tail_.clear();
            i = j + 1;
            continue;
          }
        }
      }
      // Fast path, the common case: the run and its context byte lie inside this chunk
      // and it ends before max_run, so it is judged (and emitted) in place, not copied.
      const size_t s = RunStart(member, p, p > w ? p - w : 0);
      if (s > 0) {
        const size_t stop = std::min(n, p + (max_run - (p - s + 1)));
        const size_t j = std::min(stop, FindBit<false>(member, p, n));
        if (j < stop) {  // ended by chunk[j], a non-member: the whole run is here
          tail_.clear();
          // Bytes before the first digit hold none: the run's digits lie in [p, j).
          const uint32_t digits = CountBits(digit, p, j);
          uint32_t active = free;
          uint32_t plain = plain_free;
          if (next_end < ends.size()) {
            const uint64_t lo = base + s > window ? base + s - window : 0;
            while (next_end < ends.size() && ends[next_end] < lo) ++next_end;
            if (next_end < ends.size() && ends[next_end] <= base + j) {
              active = all;
              plain = plain_all;
            }
          }
          const bool has_special = digits >= min_digits && CountBits(special, s, j) != 0;
          if (digits >= min_digits && j + 1 - s >= config_->min_width && (digits >= plain || has_special)) {
            const std::string_view run = chunk.substr(s - 1, j + 2 - s);
            if (const uint32_t classes = QualifiesInChunk(chunk, s, j, digits, active, plain, has_special)) {
              emit(GateWindow{run, base + s - 1, 1u, 0, UINT64_MAX, classes});
            }
          }
          i = j + 1;
          continue;
        }
      }
      StartRun(chunk, base, p);
      i = p;
    }
    size_t room = max_run > run_.size() ? max_run - run_.size() : 0;
    size_t stop = std::min(n, i + room);
    const size_t j = std::min(stop, FindBit<false>(member, i, n));
    run_.append(chunk.data() + i, j - i);
    if (j == stop && j < n && ((member[j / 64] >> (j % 64)) & 1) != 0) {
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

void DigitGate::Finish(const Emit& emit, const GateKeywords* keywords) {
  active_ = keywords && (!keywords->ends || keywords->ends->empty()) ? ~keywords->keyed_classes : ~0u;
  if (in_run_) FlushRun(emit, /*run_ended=*/true);
  tail_.clear();
}

}  // namespace egressguard::dlp
