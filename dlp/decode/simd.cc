#include "dlp/decode/simd.h"

#include <algorithm>
#include <cstdlib>

#if defined(__x86_64__)
#include <immintrin.h>
#elif defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace egressguard::dlp::decode::simd {
namespace {

constexpr uint8_t kNot = kNotBase64;
constexpr const std::array<uint8_t, 256>& kTable = kBase64Values;

uint64_t Base64MaskPortable(const char* p) {
#if defined(__SSE2__)
  auto in_range = [](__m128i v, char lo, char hi) {
    return _mm_and_si128(_mm_cmpgt_epi8(v, _mm_set1_epi8(static_cast<char>(lo - 1))),
                         _mm_cmpgt_epi8(_mm_set1_epi8(static_cast<char>(hi + 1)), v));
  };
  uint64_t mask = 0;
  for (int k = 0; k < 4; ++k) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16 * k));
    __m128i ok = in_range(_mm_or_si128(v, _mm_set1_epi8(0x20)), 'a', 'z');  // either case
    ok = _mm_or_si128(ok, in_range(v, '0', '9'));
    ok = _mm_or_si128(ok, _mm_cmpeq_epi8(v, _mm_set1_epi8('+')));
    ok = _mm_or_si128(ok, _mm_cmpeq_epi8(v, _mm_set1_epi8('/')));
    ok = _mm_or_si128(ok, _mm_cmpeq_epi8(v, _mm_set1_epi8('-')));
    ok = _mm_or_si128(ok, _mm_cmpeq_epi8(v, _mm_set1_epi8('_')));
    mask |= static_cast<uint64_t>(static_cast<uint16_t>(_mm_movemask_epi8(ok))) << (16 * k);
  }
  return mask;
#else
  uint64_t mask = 0;
  for (int k = 0; k < 64; ++k) mask |= static_cast<uint64_t>(kTable[static_cast<uint8_t>(p[k])] != kNot) << k;
  return mask;
#endif
}

void DecodePortable(const char* in, size_t groups, char* out) {
  for (size_t g = 0; g < groups; ++g, in += 4, out += 3) {
    const uint32_t v = (uint32_t{kTable[static_cast<uint8_t>(in[0])]} << 18) |
                       (uint32_t{kTable[static_cast<uint8_t>(in[1])]} << 12) |
                       (uint32_t{kTable[static_cast<uint8_t>(in[2])]} << 6) | kTable[static_cast<uint8_t>(in[3])];
    out[0] = static_cast<char>(v >> 16);
    out[1] = static_cast<char>(v >> 8);
    out[2] = static_cast<char>(v);
  }
}

uint64_t ByteSetMaskPortable(const char* p, const ByteSet& set) {
  uint64_t mask = 0;
  for (int k = 0; k < 64; ++k) mask |= static_cast<uint64_t>(set.Has(static_cast<uint8_t>(p[k]))) << k;
  return mask;
}

#if defined(__x86_64__)
// The base64 alphabets (standard and URL-safe) as a nibble table: bit h of kB64Rows[lo]
// is set when byte (h << 4) | lo is a base64 character (all are below 0x80).
inline constexpr std::array<uint8_t, 16> kB64Rows = [] {
  std::array<uint8_t, 16> rows{};
  for (int b = 0; b < 0x80; ++b) {
    if (kBase64Values[static_cast<size_t>(b)] != kNotBase64) rows[b & 15] |= static_cast<uint8_t>(1u << (b >> 4));
  }
  return rows;
}();

// One table lookup per byte instead of range compares: the row of the low nibble (0 for
// a byte >= 0x80: pshufb zeroes lanes whose index has its top bit set) tested for the
// bit of the high nibble.
__attribute__((target("avx2"))) inline __m256i Base64ClassNibbles(__m256i v, __m256i rows, __m256i bits) {
  const __m256i row = _mm256_shuffle_epi8(rows, v);
  const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), _mm256_set1_epi8(0x07));
  const __m256i bit = _mm256_shuffle_epi8(bits, hi);
  return _mm256_cmpeq_epi8(_mm256_and_si256(row, bit), bit);
}

__attribute__((target("avx2"))) uint64_t Base64MaskAvx2(const char* p) {
  const __m256i rows = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(kB64Rows.data())));
  const __m256i bits = _mm256_setr_epi8(1, 2, 4, 8, 16, 32, 64, -128, 1, 2, 4, 8, 16, 32, 64, -128,  //
                                        1, 2, 4, 8, 16, 32, 64, -128, 1, 2, 4, 8, 16, 32, 64, -128);
  const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 32));
  return static_cast<uint32_t>(_mm256_movemask_epi8(Base64ClassNibbles(a, rows, bits))) |
         (static_cast<uint64_t>(static_cast<uint32_t>(_mm256_movemask_epi8(Base64ClassNibbles(b, rows, bits))))
          << 32);
}

// 32 characters -> 24 bytes per step: each character's 6-bit value is the character
// plus an offset chosen by its range (the input holds base64 characters only), then
// multiply-adds pack 4 x 6 bits into 24 and a shuffle puts the bytes in order.
__attribute__((target("avx2"))) size_t DecodeAvx2(const char* in, size_t groups, char* out) {
  const __m256i pack_pairs = _mm256_set1_epi32(0x01400140);  // c0 * 64 + c1
  const __m256i pack_quads = _mm256_set1_epi32(0x00011000);  // w0 * 4096 + w1
  const __m256i order = _mm256_setr_epi8(2, 1, 0, 6, 5, 4, 10, 9, 8, 14, 13, 12, -1, -1, -1, -1,  //
                                         2, 1, 0, 6, 5, 4, 10, 9, 8, 14, 13, 12, -1, -1, -1, -1);
  const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 4, 5, 6, 3, 7);
  size_t g = 0;
  for (; g + 8 <= groups; g += 8) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(in + 4 * g));
    __m256i off = _mm256_set1_epi8(4);                                                       // '0'..'9' -> 52..61
    off = _mm256_blendv_epi8(off, _mm256_set1_epi8(-65), _mm256_cmpgt_epi8(v, _mm256_set1_epi8(0x40)));  // A..Z
    off = _mm256_blendv_epi8(off, _mm256_set1_epi8(-71), _mm256_cmpgt_epi8(v, _mm256_set1_epi8(0x60)));  // a..z
    off = _mm256_blendv_epi8(off, _mm256_set1_epi8(19), _mm256_cmpeq_epi8(v, _mm256_set1_epi8('+')));
    off = _mm256_blendv_epi8(off, _mm256_set1_epi8(17), _mm256_cmpeq_epi8(v, _mm256_set1_epi8('-')));
    off = _mm256_blendv_epi8(off, _mm256_set1_epi8(16), _mm256_cmpeq_epi8(v, _mm256_set1_epi8('/')));
    off = _mm256_blendv_epi8(off, _mm256_set1_epi8(-32), _mm256_cmpeq_epi8(v, _mm256_set1_epi8('_')));
    __m256i x = _mm256_add_epi8(v, off);
    x = _mm256_maddubs_epi16(x, pack_pairs);
    x = _mm256_madd_epi16(x, pack_quads);
    x = _mm256_permutevar8x32_epi32(_mm256_shuffle_epi8(x, order), lanes);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 3 * g), _mm256_castsi256_si128(x));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(out + 3 * g + 16), _mm256_extracti128_si256(x, 1));
  }
  return g;
}

__attribute__((target("avx2"))) uint64_t ByteSetMaskAvx2(const char* p, const ByteSet& set) {
  const __m256i lo_tbl =
      _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(set.lo_half.data())));
  const __m256i hi_tbl =
      _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(set.hi_half.data())));
  const __m256i bits = _mm256_setr_epi8(1, 2, 4, 8, 16, 32, 64, -128, 1, 2, 4, 8, 16, 32, 64, -128,  //
                                        1, 2, 4, 8, 16, 32, 64, -128, 1, 2, 4, 8, 16, 32, 64, -128);
  const __m256i nib = _mm256_set1_epi8(0x0f);
  const __m256i seven = _mm256_set1_epi8(0x07);
  uint64_t mask = 0;
  for (int k = 0; k < 2; ++k) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 32 * k));
    const __m256i low = _mm256_and_si256(v, nib);
    // The row of the byte's low nibble, from the half its top bit picks.
    const __m256i row = _mm256_blendv_epi8(_mm256_shuffle_epi8(lo_tbl, low), _mm256_shuffle_epi8(hi_tbl, low), v);
    const __m256i bit = _mm256_shuffle_epi8(bits, _mm256_and_si256(_mm256_srli_epi16(v, 4), seven));
    const __m256i in = _mm256_cmpeq_epi8(_mm256_and_si256(row, bit), bit);
    mask |= static_cast<uint64_t>(static_cast<uint32_t>(_mm256_movemask_epi8(in))) << (32 * k);
  }
  return mask;
}

__attribute__((target("avx2"))) void ByteSetMasksAvx2(const char* p, const ByteSet* sets, size_t count,
                                                      uint64_t* masks) {
  const __m256i bits = _mm256_setr_epi8(1, 2, 4, 8, 16, 32, 64, -128, 1, 2, 4, 8, 16, 32, 64, -128,  //
                                        1, 2, 4, 8, 16, 32, 64, -128, 1, 2, 4, 8, 16, 32, 64, -128);
  const __m256i nib = _mm256_set1_epi8(0x0f);
  const __m256i seven = _mm256_set1_epi8(0x07);
  const __m256i v0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  const __m256i v1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 32));
  const __m256i low0 = _mm256_and_si256(v0, nib), low1 = _mm256_and_si256(v1, nib);
  const __m256i bit0 = _mm256_shuffle_epi8(bits, _mm256_and_si256(_mm256_srli_epi16(v0, 4), seven));
  const __m256i bit1 = _mm256_shuffle_epi8(bits, _mm256_and_si256(_mm256_srli_epi16(v1, 4), seven));
  for (size_t k = 0; k < count; ++k) {
    const __m256i lo_tbl =
        _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(sets[k].lo_half.data())));
    const __m256i hi_tbl =
        _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(sets[k].hi_half.data())));
    // Without bytes >= 0x80 the low half alone answers: pshufb yields 0 for an index byte
    // with its top bit set.
    const __m256i row0 = sets[k].high ? _mm256_blendv_epi8(_mm256_shuffle_epi8(lo_tbl, low0),
                                                           _mm256_shuffle_epi8(hi_tbl, low0), v0)
                                      : _mm256_shuffle_epi8(lo_tbl, v0);
    const __m256i row1 = sets[k].high ? _mm256_blendv_epi8(_mm256_shuffle_epi8(lo_tbl, low1),
                                                           _mm256_shuffle_epi8(hi_tbl, low1), v1)
                                      : _mm256_shuffle_epi8(lo_tbl, v1);
    const auto in0 = static_cast<uint32_t>(_mm256_movemask_epi8(_mm256_cmpeq_epi8(_mm256_and_si256(row0, bit0), bit0)));
    const auto in1 = static_cast<uint32_t>(_mm256_movemask_epi8(_mm256_cmpeq_epi8(_mm256_and_si256(row1, bit1), bit1)));
    masks[k] = in0 | (static_cast<uint64_t>(in1) << 32);
  }
}

// Four masks per vector, each shifted by its own amounts.
__attribute__((target("avx2"))) uint64_t ErodeAvx2(const uint64_t* masks, const ErosionPlan& plan, uint64_t* out) {
  __m256i any = _mm256_setzero_si256();
  for (size_t k = 0; k < plan.count; k += 4) {
    __m256i r = _mm256_load_si256(reinterpret_cast<const __m256i*>(masks + k));
    for (size_t t = 0; t < kErosionSteps; ++t) {
      const __m256i by = _mm256_load_si256(reinterpret_cast<const __m256i*>(&plan.shift[t][k]));
      r = _mm256_and_si256(r, _mm256_sllv_epi64(r, by));
    }
    _mm256_store_si256(reinterpret_cast<__m256i*>(out + k), r);
    any = _mm256_or_si256(any, r);
  }
  alignas(32) uint64_t lanes[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), any);
  return lanes[0] | lanes[1] | lanes[2] | lanes[3];
}
#endif

}  // namespace

ErosionPlan::ErosionPlan(const uint32_t* need, size_t n) : count(std::min<size_t>(n, 8)) {
  for (size_t k = 0; k < count; ++k) {
    size_t t = 0;
    uint32_t width = 1;
    for (; 2 * width <= need[k]; width *= 2) shift[t++][k] = width;
    if (width < need[k]) shift[t][k] = need[k] - width;
  }
}

uint64_t Erode64(const uint64_t* masks, const ErosionPlan& plan, uint64_t* out, bool avx2) {
#if defined(__x86_64__)
  if (avx2) return ErodeAvx2(masks, plan, out);
#endif
  (void)avx2;
  uint64_t any = 0;
  for (size_t k = 0; k < plan.count; ++k) {
    uint64_t r = masks[k];
    for (size_t t = 0; t < kErosionSteps && plan.shift[t][k] != 0 && r != 0; ++t) r &= r << plan.shift[t][k];
    out[k] = r;
    any |= r;
  }
  return any;
}

bool UseAvx2() {
  static const bool use = [] {
    if (const char* off = std::getenv("EGRESSGUARD_NO_AVX2"); off != nullptr && *off != '\0') return false;
#if defined(__x86_64__)
    return __builtin_cpu_supports("avx2") != 0;
#else
    return false;
#endif
  }();
  return use;
}

uint64_t Base64Mask64(const char* p, bool avx2) {
#if defined(__x86_64__)
  if (avx2) return Base64MaskAvx2(p);
#endif
  (void)avx2;
  return Base64MaskPortable(p);
}

void DecodeBase64Groups(const char* in, size_t groups, char* out, bool avx2) {
  size_t done = 0;
#if defined(__x86_64__)
  if (avx2) done = DecodeAvx2(in, groups, out);
#endif
  (void)avx2;
  DecodePortable(in + 4 * done, groups - done, out + 3 * done);
}

void ByteSetMasks64(const char* p, const ByteSet* sets, size_t count, uint64_t* masks, bool avx2) {
#if defined(__x86_64__)
  if (avx2) {
    ByteSetMasksAvx2(p, sets, count, masks);
    return;
  }
#endif
  (void)avx2;
  for (size_t k = 0; k < count; ++k) masks[k] = ByteSetMaskPortable(p, sets[k]);
}

uint64_t ByteSetMask64(const char* p, const ByteSet& set, bool avx2) {
#if defined(__x86_64__)
  if (avx2) return ByteSetMaskAvx2(p, set);
#endif
  (void)avx2;
  return ByteSetMaskPortable(p, set);
}

}  // namespace egressguard::dlp::decode::simd
