// The decoder library's SIMD kernels (simd.h): the AVX2 paths and their portable twins
// give the same results on the same random inputs, and both decode base64 the way a
// plain reference does. The whole decode test binary also runs once more with
// EGRESSGUARD_NO_AVX2=1 (see CMakeLists.txt), so every other test covers both paths too.
#include <gtest/gtest.h>

#include <bitset>
#include <random>

#include "decode_test_util.h"
#include "dlp/decode/simd.h"

namespace egressguard::dlp::decode::testing {
namespace {

bool CpuHasAvx2() {
#if defined(__x86_64__)
  return __builtin_cpu_supports("avx2") != 0;
#else
  return false;
#endif
}

constexpr std::string_view kAlphabets = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/-_";

int Value(char c) {
  const size_t at = kAlphabets.find(c);
  if (at < 62) return static_cast<int>(at);
  return (c == '+' || c == '-') ? 62 : 63;
}

std::string ReferenceDecode(std::string_view chars) {
  std::string out;
  for (size_t i = 0; i + 4 <= chars.size(); i += 4) {
    const int v = (Value(chars[i]) << 18) | (Value(chars[i + 1]) << 12) | (Value(chars[i + 2]) << 6) | Value(chars[i + 3]);
    out.push_back(static_cast<char>(v >> 16));
    out.push_back(static_cast<char>(v >> 8));
    out.push_back(static_cast<char>(v));
  }
  return out;
}

// Mostly base64 characters (both alphabets), some bytes of anything.
std::string Mixed(std::mt19937_64& rng, size_t n, int other_percent) {
  std::string s(n, '\0');
  for (char& c : s) {
    c = static_cast<int>(rng() % 100) < other_percent ? static_cast<char>(rng()) : kAlphabets[rng() % kAlphabets.size()];
  }
  return s;
}

TEST(Simd, Base64MaskTwinsAgree) {
  std::mt19937_64 rng(1);
  for (int i = 0; i < 20000; ++i) {
    const std::string block = Mixed(rng, 64, static_cast<int>(rng() % 101));
    uint64_t want = 0;
    for (size_t k = 0; k < 64; ++k) want |= uint64_t{kAlphabets.find(block[k]) != std::string_view::npos} << k;
    ASSERT_EQ(simd::Base64Mask64(block.data(), false), want) << i;
    if (CpuHasAvx2()) {
      ASSERT_EQ(simd::Base64Mask64(block.data(), true), want) << i;
    }
  }
}

TEST(Simd, Base64DecodeTwinsAgree) {
  std::mt19937_64 rng(2);
  for (int i = 0; i < 5000; ++i) {
    const size_t groups = rng() % 200;
    const std::string chars = Mixed(rng, 4 * groups, 0);
    const std::string want = ReferenceDecode(chars);
    std::string portable(3 * groups, '\0'), avx2(3 * groups, '\0');
    simd::DecodeBase64Groups(chars.data(), groups, portable.data(), false);
    ASSERT_EQ(portable, want) << i;
    if (CpuHasAvx2()) {
      simd::DecodeBase64Groups(chars.data(), groups, avx2.data(), true);
      ASSERT_EQ(avx2, want) << i;
    }
  }
}

// Every byte value in every lane, at every alignment: the mask is a table lookup on
// the AVX2 path (nibble rows) and range compares on the portable one.
TEST(Simd, Base64MaskEveryByteEveryAlignment) {
  std::string buf(64 + 64 + 64, '\0');
  for (size_t offset = 0; offset < 64; ++offset) {
    for (int b = 0; b < 256; ++b) {
      for (size_t lane = 0; lane < 64; lane += 7) {
        std::fill(buf.begin(), buf.end(), 'A');
        buf[offset + lane] = static_cast<char>(b);
        const bool member = kAlphabets.find(static_cast<char>(b)) != std::string_view::npos;
        const uint64_t want = member ? ~uint64_t{0} : ~(uint64_t{1} << lane);
        ASSERT_EQ(simd::Base64Mask64(buf.data() + offset, false), want) << b << " lane " << lane;
        if (CpuHasAvx2()) {
          ASSERT_EQ(simd::Base64Mask64(buf.data() + offset, true), want) << b << " lane " << lane << " offset " << offset;
        }
      }
    }
  }
}

// Input and output at every alignment and every group count up to 40 (AVX2 steps of 8
// groups, then the portable twin for the rest): exactly the reference's bytes, and not
// one byte written outside the output.
TEST(Simd, Base64DecodeTwinsAgreeAtEveryAlignment) {
  std::mt19937_64 rng(4);
  for (size_t groups = 0; groups <= 40; ++groups) {
    for (size_t in_off = 0; in_off < 32; in_off += 3) {
      for (size_t out_off = 0; out_off < 32; out_off += 5) {
        std::string in(in_off + 4 * groups, '\0');
        const std::string chars = Mixed(rng, 4 * groups, 0);
        std::copy(chars.begin(), chars.end(), in.begin() + static_cast<std::ptrdiff_t>(in_off));
        const std::string want = ReferenceDecode(chars);
        for (const bool avx2 : {false, true}) {
          if (avx2 && !CpuHasAvx2()) continue;
          std::string out(out_off + 3 * groups + 32, '\x5a');
          simd::DecodeBase64Groups(in.data() + in_off, groups, out.data() + out_off, avx2);
          ASSERT_EQ(out.substr(out_off, 3 * groups), want) << groups << " avx2 " << avx2;
          ASSERT_EQ(out.substr(0, out_off), std::string(out_off, '\x5a')) << "written before the output";
          ASSERT_EQ(out.substr(out_off + 3 * groups), std::string(32, '\x5a')) << "written past the output";
        }
      }
    }
  }
}

TEST(Simd, ByteSetTwinsAgree) {
  std::mt19937_64 rng(3);
  for (int i = 0; i < 2000; ++i) {
    simd::ByteSet set;
    std::bitset<256> members;
    const int density = static_cast<int>(rng() % 101);
    for (int b = 0; b < 256; ++b) {
      if (static_cast<int>(rng() % 100) < density) {
        set.Add(static_cast<uint8_t>(b));
        members.set(static_cast<size_t>(b));
      }
    }
    for (int k = 0; k < 10; ++k) {
      std::string block(64, '\0');
      for (char& c : block) c = static_cast<char>(rng());
      uint64_t want = 0;
      for (size_t j = 0; j < 64; ++j) want |= uint64_t{members.test(static_cast<unsigned char>(block[j]))} << j;
      ASSERT_EQ(simd::ByteSetMask64(block.data(), set, false), want);
      if (CpuHasAvx2()) {
        ASSERT_EQ(simd::ByteSetMask64(block.data(), set, true), want);
      }
    }
  }
}

TEST(Simd, ManySetsAndErosionTwinsAgree) {
  std::mt19937_64 rng(5);
  for (int i = 0; i < 3000; ++i) {
    const size_t count = 1 + rng() % 8;
    simd::ByteSet sets[8];
    uint32_t need[8] = {};
    for (size_t k = 0; k < count; ++k) {
      const int density = static_cast<int>(rng() % 101);
      for (int b = 0; b < 256; ++b) {
        if (static_cast<int>(rng() % 100) < density) sets[k].Add(static_cast<uint8_t>(b));
      }
      need[k] = 1 + static_cast<uint32_t>(rng() % 64);
    }
    std::string block(64, '\0');
    for (char& c : block) c = static_cast<char>(rng() % 3 == 0 ? rng() : rng() % 8 + 'a');
    alignas(32) uint64_t portable[8] = {}, avx2[8] = {};
    simd::ByteSetMasks64(block.data(), sets, count, portable, false);
    for (size_t k = 0; k < count; ++k) ASSERT_EQ(portable[k], simd::ByteSetMask64(block.data(), sets[k], false));
    if (CpuHasAvx2()) {
      simd::ByteSetMasks64(block.data(), sets, count, avx2, true);
      for (size_t k = 0; k < count; ++k) ASSERT_EQ(avx2[k], portable[k]);
    }
    // Erosion: bit j set iff bits j - need + 1 .. j are all set.
    const simd::ErosionPlan plan(need, count);
    alignas(32) uint64_t out_p[8] = {}, out_v[8] = {};
    const uint64_t any_p = simd::Erode64(portable, plan, out_p, false);
    uint64_t any = 0;
    for (size_t k = 0; k < count; ++k) {
      uint64_t want = 0;
      for (uint32_t j = need[k] - 1; j < 64; ++j) {
        const uint64_t run = (need[k] == 64 ? ~uint64_t{0} : ((uint64_t{1} << need[k]) - 1)) << (j + 1 - need[k]);
        if ((portable[k] & run) == run) want |= uint64_t{1} << j;
      }
      ASSERT_EQ(out_p[k], want) << "need " << need[k];
      any |= want;
    }
    ASSERT_EQ(any_p, any);
    if (CpuHasAvx2()) {
      ASSERT_EQ(simd::Erode64(portable, plan, out_v, true), any);
      for (size_t k = 0; k < count; ++k) ASSERT_EQ(out_v[k], out_p[k]);
    }
  }
}

// Through the finder, on whichever path this run takes: random payloads in standard and
// URL-safe base64, padded or not, wrapped at 76 with CRLF or LF, come out byte for byte.
TEST(Simd, FinderDecodesRandomPayloads) {
  std::mt19937_64 rng(4);
  for (int i = 0; i < 300; ++i) {
    std::string payload(12 + rng() % 3000, '\0');
    for (char& c : payload) c = static_cast<char>(rng());
    const bool url = rng() % 2 == 0;
    std::string b64 = Base64(payload, url, rng() % 2 == 0);
    // Runs must mix cases to count as base64 (PlausibleRun); random payloads do.
    if (rng() % 2 == 0) {
      const char* eol = rng() % 2 == 0 ? "\r\n" : "\n";
      std::string wrapped;
      for (size_t at = 0; at < b64.size(); at += 76) wrapped += b64.substr(at, 76) + eol;
      b64 = wrapped;
    }
    const std::string body = "data: " + b64 + " .";
    const Recorder r = Normalize(body, {}, 1 + rng() % 5000);
    bool found = false;
    for (const auto& [id, text] : r.layers) found |= text.find(payload) != std::string::npos;
    ASSERT_TRUE(found) << "round " << i << " url " << url << " size " << payload.size();
  }
}

}  // namespace
}  // namespace egressguard::dlp::decode::testing
