// The decoder library's SIMD kernels and the binary filter on arbitrary bytes: the AVX2
// paths agree with their portable twins (base64 masks, base64 decoding, byte-set masks),
// and the filter hands out exactly the reference definition's stretches however the
// input is chunked (tests/unit/dlp/decode/text_runs_reference.h).
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "dlp/decode/simd.h"
#include "dlp/decode/text_runs.h"
#include "tests/unit/dlp/decode/text_runs_reference.h"

namespace {

using namespace egressguard::dlp::decode;

bool CpuHasAvx2() {
#if defined(__x86_64__)
  return __builtin_cpu_supports("avx2") != 0;
#else
  return false;
#endif
}

void Check(bool ok) {
  if (!ok) std::abort();
}

std::bitset<256> Chars(std::string_view s) {
  std::bitset<256> b;
  for (char c : s) b.set(static_cast<unsigned char>(c));
  return b;
}

std::bitset<256> Range(int lo, int hi) {
  std::bitset<256> b;
  for (int c = lo; c <= hi; ++c) b.set(static_cast<size_t>(c));
  return b;
}

const std::shared_ptr<const TextRunConfig>& Config(unsigned which) {
  static const std::shared_ptr<const TextRunConfig> kConfigs[] = {
      BuildTextRunConfig({{Chars("0123456789 -"), 13, 48},
                          {Chars("._%+-@") | Range('a', 'z') | Range('A', 'Z') | Range('0', '9'), 6, 0},
                          {Chars("PGDM") | Range(0, 0x20), 11, 0}}),
      BuildTextRunConfig({{Range('a', 'c'), 2, 3}, {Range(0xf0, 0xff), 3, 1}, {Chars("xyz"), 1, 0}}),
      BuildTextRunConfig({{Range(0, 255), 64, 2048}}),
  };
  return kConfigs[which % 3];
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const unsigned knobs = data[0] | (data[1] << 8);
  const std::string_view in(reinterpret_cast<const char*>(data) + 2, size - 2);
  const bool avx2 = CpuHasAvx2();

  // Kernels, block by block (zero-padded).
  for (size_t at = 0; at < in.size(); at += 64) {
    char block[64] = {};
    std::memcpy(block, in.data() + at, std::min<size_t>(64, in.size() - at));
    const uint64_t portable = simd::Base64Mask64(block, false);
    if (avx2) Check(simd::Base64Mask64(block, true) == portable);
    simd::ByteSet sets[3];
    for (size_t k = 0; k < 3; ++k) {
      for (size_t i = k; i < 64; i += 3) sets[k].Add(static_cast<uint8_t>(block[i] ^ (knobs >> k)));
    }
    uint64_t a[3], b[3];
    simd::ByteSetMasks64(block, sets, 3, a, false);
    for (size_t k = 0; k < 3; ++k) Check(a[k] == simd::ByteSetMask64(block, sets[k], false));
    if (avx2) {
      simd::ByteSetMasks64(block, sets, 3, b, true);
      for (size_t k = 0; k < 3; ++k) Check(a[k] == b[k]);
    }
  }
  {
    static constexpr std::string_view kAlpha = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/-_";
    std::string chars;
    for (char c : in) chars.push_back(kAlpha[static_cast<unsigned char>(c) % kAlpha.size()]);
    const size_t groups = chars.size() / 4;
    std::string p(3 * groups, '\0'), v(3 * groups, '\0');
    simd::DecodeBase64Groups(chars.data(), groups, p.data(), false);
    if (avx2) {
      simd::DecodeBase64Groups(chars.data(), groups, v.data(), true);
      Check(p == v);
    }
  }

  // The filter: a binary document (control bytes first) in chunks drawn from the knobs.
  const auto& config = Config(knobs);
  if (!config) return 0;
  const std::string doc = std::string("\x01\x02", 2) + std::string(in);
  std::vector<std::string> got;
  bool gap = true;
  const TextRunFilter::Keep keep = [&](const Src& s) {
    if (s.empty()) {
      gap = true;
      return;
    }
    if (gap) got.emplace_back();
    gap = false;
    got.back().append(s.bytes());
  };
  TextRunFilter filter(config);
  filter.Begin();
  const size_t chunk = 1 + (knobs >> 2) % 200;
  for (size_t at = 0; at < doc.size(); at += chunk) {
    const size_t n = std::min(chunk, doc.size() - at);
    SinglePiece piece(std::string_view(doc).substr(at, n), {at, at + n}, true);
    filter.Put(piece.src(), keep);
  }
  filter.End(keep);
  Check(got == testing::ReferenceKept(doc, *config));
  return 0;
}
