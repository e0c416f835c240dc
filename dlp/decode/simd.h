#pragma once
// The decoder library's SIMD kernels. Each has an AVX2 path and a portable twin (SSE2
// on x86-64, plain C++ elsewhere) that give identical results; the choice is made at
// run time, once per process, from the CPU and the EGRESSGUARD_NO_AVX2 switch that the
// engine's own kernels obey (dlp/cpu_features.h, which asks UseAvx2 here: this library
// needs nothing of the engine's, it builds without Hyperscan).

#include <array>
#include <cstddef>
#include <cstdint>

namespace egressguard::dlp::decode::simd {

// Value of each base64 character, standard and URL-safe alphabets in one table (a run
// may use either); kNotBase64 for every other byte.
inline constexpr uint8_t kNotBase64 = 0xFF;
inline constexpr std::array<uint8_t, 256> kBase64Values = [] {
  std::array<uint8_t, 256> t{};
  for (auto& v : t) v = kNotBase64;
  for (int i = 0; i < 26; ++i) {
    t['A' + i] = static_cast<uint8_t>(i);
    t['a' + i] = static_cast<uint8_t>(26 + i);
  }
  for (int i = 0; i < 10; ++i) t['0' + i] = static_cast<uint8_t>(52 + i);
  t['+'] = t['-'] = 62;
  t['/'] = t['_'] = 63;
  return t;
}();

// The CPU has AVX2 and EGRESSGUARD_NO_AVX2 is not set (dlp::UseAvx2 asks this one).
bool UseAvx2();

// Bit i set when p[i] is a base64 character (standard or URL-safe alphabet), i < 64.
uint64_t Base64Mask64(const char* p, bool avx2);

// Decodes `groups` groups of 4 base64 characters into 3 * groups bytes. Every input
// byte must be a base64 character of either alphabet (the finder checked them).
void DecodeBase64Groups(const char* in, size_t groups, char* out, bool avx2);

// A set of bytes in the form the kernels test: bit (b >> 4) & 7 of lo_half[b & 15]
// (b < 0x80) or hi_half[b & 15] (b >= 0x80) says whether byte b is in the set.
struct ByteSet {
  std::array<uint8_t, 16> lo_half{};
  std::array<uint8_t, 16> hi_half{};
  bool high = false;  // some byte >= 0x80 is in the set
  void Add(uint8_t b) {
    (b < 0x80 ? lo_half : hi_half)[b & 15] |= static_cast<uint8_t>(1u << ((b >> 4) & 7));
    high = high || b >= 0x80;
  }
  bool Has(uint8_t b) const { return ((b < 0x80 ? lo_half : hi_half)[b & 15] >> ((b >> 4) & 7)) & 1; }
};

// Bit i set when p[i] is in `set`, i < 64.
uint64_t ByteSetMask64(const char* p, const ByteSet& set, bool avx2);
// The same for `count` sets at once (one pass over the 64 bytes): masks[k] for sets[k].
void ByteSetMasks64(const char* p, const ByteSet* sets, size_t count, uint64_t* masks, bool avx2);

// Erosion of up to 8 bit masks at once: bit j of out[k] is set when bits
// j - need[k] + 1 .. j of masks[k] are all set (bits below 0 count as clear).
inline constexpr size_t kErosionSteps = 7;  // halving steps for a need of up to 64
struct ErosionPlan {
  explicit ErosionPlan(const uint32_t* need, size_t count);  // each need in 1..64
  alignas(32) uint64_t shift[kErosionSteps][8] = {};           // 0: no step
  size_t count = 0;
};
// masks and out hold 8 entries (32-byte aligned); returns the OR of out[0..count).
uint64_t Erode64(const uint64_t* masks, const ErosionPlan& plan, uint64_t* out, bool avx2);

}  // namespace egressguard::dlp::decode::simd
