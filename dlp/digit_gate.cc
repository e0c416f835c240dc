#include "dlp/digit_gate.h"

#include <algorithm>
#include <bit>
#include <utility>

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
// `words` whole 64-byte words at p: member bits by nibble lookup (shufti), ASCII digit
// bits by range, special starter bits by compare (every separator when there are more
// than 4 kinds), all from one load of each 32 bytes.
__attribute__((target("avx2"))) void ClassifyWordsAvx2(const char* p, size_t words, const DigitGatePrepared& t,
                                                      uint64_t* member, uint64_t* digit, uint64_t* special) {
  const __m256i lo = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(t.nibble_lo.data())));
  const __m256i hi = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(t.nibble_hi.data())));
  const __m256i nib = _mm256_set1_epi8(0x0f);
  const __m256i zero = _mm256_setzero_si256();
  const __m256i c0 = _mm256_set1_epi8('0');
  const __m256i c9 = _mm256_set1_epi8(9);
  // Unused slots repeat the first special byte (or never match: count 0 uses the masks).
  const auto sp_byte = [&](size_t x) {
    return static_cast<char>(t.special_count == 0 ? 0 : t.special[x < t.special_count ? x : 0]);
  };
  const __m256i s0 = _mm256_set1_epi8(sp_byte(0)), s1 = _mm256_set1_epi8(sp_byte(1));
  const __m256i s2 = _mm256_set1_epi8(sp_byte(2)), s3 = _mm256_set1_epi8(sp_byte(3));
  const bool separators = t.special_count == 0;
  for (size_t k = 0; k < words; ++k, p += 64) {
    uint64_t m = 0, d = 0, sp = 0;
    for (int half = 0; half < 2; ++half) {
      const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 32 * half));
      const __m256i l = _mm256_shuffle_epi8(lo, _mm256_and_si256(v, nib));
      const __m256i h = _mm256_shuffle_epi8(hi, _mm256_and_si256(_mm256_srli_epi16(v, 4), nib));
      const auto not_member =
          static_cast<uint32_t>(_mm256_movemask_epi8(_mm256_cmpeq_epi8(_mm256_and_si256(l, h), zero)));
      const __m256i dv = _mm256_sub_epi8(v, c0);
      const auto is_digit =
          static_cast<uint32_t>(_mm256_movemask_epi8(_mm256_cmpeq_epi8(_mm256_min_epu8(dv, c9), dv)));
      const __m256i eq = _mm256_or_si256(_mm256_or_si256(_mm256_cmpeq_epi8(v, s0), _mm256_cmpeq_epi8(v, s1)),
                                         _mm256_or_si256(_mm256_cmpeq_epi8(v, s2), _mm256_cmpeq_epi8(v, s3)));
      const auto is_special = static_cast<uint32_t>(_mm256_movemask_epi8(eq));
      m |= static_cast<uint64_t>(~not_member) << (32 * half);
      d |= static_cast<uint64_t>(is_digit) << (32 * half);
      sp |= static_cast<uint64_t>(is_special) << (32 * half);
    }
    member[k] = m;
    digit[k] = d;
    special[k] = separators ? m & ~d : sp;
  }
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
  {
    uint32_t plain_all = UINT32_MAX;
    for (size_t k = 0; k < kMaxGateClasses; ++k) {
      if (t->all_classes & (1u << k)) plain_all = std::min(plain_all, t->plain_need[k]);
    }
    const uint32_t digits = std::max(min_digits, t->min_need);
    const uint32_t special_run = std::max({1u, min_width > 0 ? min_width - 1 : 0u, digits});
    t->short_run_special = std::min<uint32_t>(special_run, 64);
    t->short_run_plain = std::min<uint32_t>(std::max(special_run, plain_all), 64);
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

void DigitGate::Reset() {
  active_ = ~0u;
  run_.clear();
  run_base_ = 0;
  run_ctx_ = false;
  in_run_ = false;
  reported_upto_ = 0;
  tail_.clear();
  tail_base_ = 0;
  tail_ctx_ = false;
  have_last_ = false;
  last_ = 0;
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
    k = n / 64;
    ClassifyWordsAvx2(chunk.data(), k, *prepared_, member_bits_.data(), digit_bits_.data(), special_bits_.data());
  }
#endif
  const DigitGatePrepared& t = *prepared_;
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

namespace {

// Two adjacent mask words, so a shift carries bits across the word edge.
__extension__ typedef unsigned __int128 Words2;

// Bit i: bits i .. i+L-1 of x all set (erosion), or some bit of i-L+1 .. i set (dilation),
// in log2(L) shifts by constants (variable 128-bit shifts cost several times more).
template <uint32_t Have, uint32_t L>
inline Words2 Erode(Words2 x) {
  if constexpr (Have >= L) {
    return x;
  } else {
    constexpr uint32_t step = Have < L - Have ? Have : L - Have;
    return Erode<Have + step, L>(x & (x >> step));
  }
}

template <uint32_t Have, uint32_t L>
inline Words2 Dilate(Words2 x) {
  if constexpr (Have >= L) {
    return x;
  } else {
    constexpr uint32_t step = Have < L - Have ? Have : L - Have;
    return Dilate<Have + step, L>(x | (x << step));
  }
}

// out[k] = the digits of digit[k] in member runs at least L long, or at most L - 1 bytes
// after a special starter byte (a run shorter than L can qualify only by a match that
// starts at a special byte, and needs digits after it, all within L - 1 bytes).
// Bits of `member` past the end count as members, so a run cut by the chunk end counts as
// long. The erosion of a word needs the next word, its dilation the previous word's.
template <uint32_t L>
void RunDigitsOf(const uint64_t* member, const uint64_t* digit, const uint64_t* special, size_t words,
                 uint64_t* out) {
  uint64_t prev_starts = 0;
  for (size_t k = 0; k < words; ++k) {
    const uint64_t next = k + 1 < words ? member[k + 1] : ~uint64_t{0};
    const auto starts = static_cast<uint64_t>(Erode<1, L>(member[k] | (static_cast<Words2>(next) << 64)));
    uint64_t keep = static_cast<uint64_t>(Dilate<1, L>((static_cast<Words2>(starts) << 64) | prev_starts) >> 64);
    prev_starts = starts;
    const uint64_t sp_prev = k > 0 ? special[k - 1] : 0;
    if ((special[k] | sp_prev) != 0) {
      keep |= static_cast<uint64_t>(Dilate<1, L>((static_cast<Words2>(special[k]) << 64) | sp_prev) >> 64);
    }
    out[k] = digit[k] & keep;
  }
}

using RunDigitsFn = void (*)(const uint64_t*, const uint64_t*, const uint64_t*, size_t, uint64_t*);

template <size_t... I>
constexpr std::array<RunDigitsFn, sizeof...(I)> RunDigitsTable(std::index_sequence<I...>) {
  return {&RunDigitsOf<static_cast<uint32_t>(I + 1)>...};
}

// RunDigitsOf<len> for len in 1..64.
void RunDigits(const uint64_t* member, const uint64_t* digit, const uint64_t* special, size_t words, uint32_t len,
               uint64_t* out) {
  static constexpr auto kTable = RunDigitsTable(std::make_index_sequence<64>());
  kTable[std::clamp<uint32_t>(len, 1, 64) - 1](member, digit, special, words, out);
}

}  // namespace

// Most digit runs in real bodies are short or hold few digits (hex ids, clock times,
// prices, base64 text) and can hold no window: judging them one by one in Feed costs over
// a hundred instructions each, dropping them here on the bit masks a few per 64 bytes and
// a few dozen per run. run_digit_bits_ keeps the digits of runs at least short_run_plain
// long, and those at most short_run_plain - 1 bytes after a special starter byte (when a
// special starter lowers the need: short_run_special); then drops the runs inside one or
// two words with fewer than `plain` digits and no special starter byte. Only necessary
// conditions of Feed's own judgement are used, so the windows are the same. Word 0 is
// kept whole: a run there may go on from the previous chunk.
EG_GATE_CLONES void DigitGate::MarkRunDigits(size_t n, uint32_t plain) {
  const DigitGatePrepared& t = *prepared_;
  const size_t words = (n + 63) / 64;
  run_digit_bits_.resize(words);
  // The chunk end counts as a member: a run cut by it goes on in the next chunk.
  const uint64_t last = member_bits_[words - 1];
  if (n % 64 != 0) member_bits_[words - 1] |= ~uint64_t{0} << (n % 64);
  // Without a special starter that lowers the need, no special byte keeps a short run.
  no_special_.assign(t.short_run_special < t.short_run_plain ? 0 : words, 0);
  const uint64_t* special = no_special_.empty() ? special_bits_.data() : no_special_.data();
  RunDigits(member_bits_.data(), digit_bits_.data(), special, words, t.short_run_plain, run_digit_bits_.data());
  // Then, run by run, those that lie inside one word or two: a run with fewer than
  // `plain` digits and no special starter byte can hold no window (Feed's fast path would
  // judge it so, at several times the cost).
  for (size_t k = 1; k < words; ++k) {
    uint64_t cand = run_digit_bits_[k];
    const uint64_t outside = ~member_bits_[k];
    while (cand != 0) {
      const auto p = static_cast<unsigned>(std::countr_zero(cand));
      const uint64_t before = outside & ((uint64_t{1} << p) - 1);
      const uint64_t ends = outside >> p;  // the run's end: the next non-member
      if (before == 0) {  // goes on from the previous word, which judged it
        if (ends == 0) break;
        cand &= ~uint64_t{0} << (p + static_cast<unsigned>(std::countr_zero(ends)));
        continue;
      }
      const unsigned start = 64 - static_cast<unsigned>(std::countl_zero(before));  // first run byte
      const uint64_t head = ~uint64_t{0} << start;
      if (ends != 0) {
        const unsigned end = p + static_cast<unsigned>(std::countr_zero(ends));  // first byte after it
        const uint64_t run = head & ((uint64_t{1} << end) - 1);
        if (PopCount(digit_bits_[k] & run) < plain && (special_bits_[k] & run) == 0) run_digit_bits_[k] &= ~run;
        cand &= ~run;
        continue;
      }
      // The run goes on into the next word: judged here when it ends there.
      const uint64_t next_outside = k + 1 < words ? ~member_bits_[k + 1] : 0;
      if (next_outside != 0) {
        const uint64_t tail = (next_outside & -next_outside) - 1;  // its bytes in word k + 1
        if (PopCount(digit_bits_[k] & head) + PopCount(digit_bits_[k + 1] & tail) < plain &&
            ((special_bits_[k] & head) | (special_bits_[k + 1] & tail)) == 0) {
          run_digit_bits_[k] &= ~head;
          run_digit_bits_[k + 1] &= ~tail;
        }
      }
      break;
    }
  }
  member_bits_[words - 1] = last;
  run_digit_bits_[0] = digit_bits_[0];
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
  MarkRunDigits(n, plain_word);
  const uint64_t* run_digits = run_digit_bits_.data();
  size_t i = 0;
  while (i < n) {
    if (!in_run_) {
      size_t p = FindBit<true>(run_digits, i, n);
      if (p == n) break;
      // The run's first digit: MarkRunDigits keeps or drops a run's digits together,
      // except that a special starter byte keeps only the digits shortly after it. Runs
      // start at or after i (byte i - 1 ends one).
      if (p > i && ((member[(p - 1) / 64] >> ((p - 1) % 64)) & 1) != 0) {
        p = FindBit<true>(digit, RunStart(member, p, i), n);
      }
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
