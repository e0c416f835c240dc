#pragma once
// Shared helpers for the decoder tests: a sink that records each layer's bytes with the
// original span of every byte, and compressors from the real libraries.

#include <brotli/encode.h>
#include <zlib.h>
#include <zstd.h>

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "dlp/decode/normalizer.h"

namespace egressguard::dlp::decode::testing {

struct Span {
  uint64_t begin = 0, end = 0;
  auto operator<=>(const Span&) const = default;
};

struct Undecodable {
  uint64_t begin, end;
  std::string why;
};

struct Encrypted {
  uint64_t begin, end;
  std::string member, what;
};

class Recorder : public SegmentSink {
 public:
  void OnSegment(const DecodedSegment& s) override {
    EXPECT_GE(s.layer, 1u);
    EXPECT_LE(s.layer, kMaxLayers);
    EXPECT_LE(s.orig_begin, s.orig_end);
    if (s.linear) {
      EXPECT_EQ(s.orig_end - s.orig_begin, s.bytes.size());
    }
    auto& text = layers[s.layer];
    auto& spans = byte_spans[s.layer];
    text.append(s.bytes);
    recorded += s.bytes.size();
    if (recorded > (1u << 20)) keep_spans = false;  // multi-MiB outputs: bytes only
    for (size_t i = 0; keep_spans && i < s.bytes.size(); ++i) {
      spans.push_back(s.linear ? Span{s.orig_begin + i, s.orig_begin + i + 1} : Span{s.orig_begin, s.orig_end});
    }
    ++segments;
  }
  void OnUndecodable(uint64_t b, uint64_t e, std::string_view why) override {
    undecodable.push_back({b, e, std::string(why)});
  }
  void OnMember(uint32_t layer, std::string_view path) override {
    members.emplace_back(layer, std::string(path));
    // Where each layer's text stands when the member changes: member_at[layer] maps a
    // layer offset to the member path that starts there.
    member_at[layer].emplace_back(layers[layer].size(), std::string(path));
  }
  void OnEncrypted(uint64_t b, uint64_t e, std::string_view member, std::string_view what) override {
    encrypted.push_back({b, e, std::string(member), std::string(what)});
  }
  // The member path that layer text offset `at` of `layer` was emitted under.
  std::string MemberOf(uint32_t layer, size_t at) const {
    auto it = member_at.find(layer);
    if (it == member_at.end()) return "";
    std::string m;
    for (const auto& [from, path] : it->second) {
      if (from > at) break;
      m = path;
    }
    return m;
  }

  // The original span of the first occurrence of needle in any layer, as the engine
  // would compute it: union of the spans of its bytes. begin > end when absent.
  Span Find(std::string_view needle) const {
    for (const auto& [id, text] : layers) {
      const size_t at = text.find(needle);
      if (at == std::string::npos) continue;
      EXPECT_TRUE(keep_spans) << "spans are not recorded for outputs over 1 MiB";
      if (!keep_spans) return Span{1, 0};
      Span s{UINT64_MAX, 0};
      for (size_t i = at; i < at + needle.size(); ++i) {
        s.begin = std::min(s.begin, byte_spans.at(id)[i].begin);
        s.end = std::max(s.end, byte_spans.at(id)[i].end);
      }
      return s;
    }
    return Span{1, 0};
  }
  bool Has(std::string_view needle) const { return Find(needle).begin <= Find(needle).end; }
  std::string Reasons() const {
    std::string r;
    for (const auto& u : undecodable) r += u.why + ";";
    return r;
  }

  std::map<uint32_t, std::string> layers;
  std::map<uint32_t, std::vector<Span>> byte_spans;
  std::vector<Undecodable> undecodable;
  std::vector<std::pair<uint32_t, std::string>> members;  // OnMember calls, in order
  std::map<uint32_t, std::vector<std::pair<size_t, std::string>>> member_at;
  std::vector<Encrypted> encrypted;
  size_t segments = 0;
  bool keep_spans = true;
  size_t recorded = 0;
  size_t max_memory = 0;
};

inline ContentHintLite H(std::string content_type, std::string content_encoding = "", bool is_url = false) {
  ContentHintLite h;
  h.content_type = std::move(content_type);
  h.content_encoding = std::move(content_encoding);
  h.is_url = is_url;
  return h;
}

// Feeds input in chunks of the given size (0: one buffer) and records the result.
inline Recorder Normalize(std::string_view input, const ContentHintLite& hint = {}, size_t chunk = 0,
                          const NormalizerLimits& limits = {}) {
  Recorder rec;
  Normalizer n(hint, limits, rec);
  if (chunk == 0) chunk = input.size() + 1;
  for (size_t at = 0; at < input.size(); at += chunk) {
    n.Feed(input.substr(at, chunk));
    rec.max_memory = std::max(rec.max_memory, n.memory_bytes());
  }
  n.Feed("");
  n.Finish();
  return rec;
}

// Original span of `inner` inside `outer` (first occurrence).
inline Span SpanIn(std::string_view outer, std::string_view inner) {
  const size_t at = outer.find(inner);
  EXPECT_NE(at, std::string_view::npos) << inner;
  return Span{at, at + inner.size()};
}

inline std::string Base64(std::string_view in, bool url_safe = false, bool pad = true) {
  static constexpr char kStd[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  static constexpr char kUrl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  const char* a = url_safe ? kUrl : kStd;
  std::string out;
  size_t i = 0;
  for (; i + 3 <= in.size(); i += 3) {
    const uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8) | uint8_t(in[i + 2]);
    for (int k = 3; k >= 0; --k) out += a[(v >> (6 * k)) & 63];
  }
  if (i < in.size()) {
    uint32_t v = uint8_t(in[i]) << 16;
    if (i + 1 < in.size()) v |= uint8_t(in[i + 1]) << 8;
    out += a[(v >> 18) & 63];
    out += a[(v >> 12) & 63];
    if (i + 1 < in.size()) out += a[(v >> 6) & 63];
    if (pad) out += (i + 1 < in.size()) ? "=" : "==";
  }
  return out;
}

// windowBits: 31 gzip, 15 zlib, -15 raw deflate.
inline std::string Deflate(std::string_view in, int window_bits) {
  z_stream z{};
  EXPECT_EQ(deflateInit2(&z, 6, Z_DEFLATED, window_bits, 8, Z_DEFAULT_STRATEGY), Z_OK);
  std::string out(deflateBound(&z, in.size()) + 64, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&z, Z_FINISH), Z_STREAM_END);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}
inline std::string Gzip(std::string_view in) { return Deflate(in, 31); }

inline std::string Brotli(std::string_view in) {
  size_t size = BrotliEncoderMaxCompressedSize(in.size());
  std::string out(size, '\0');
  EXPECT_TRUE(BrotliEncoderCompress(5, BROTLI_DEFAULT_WINDOW, BROTLI_MODE_GENERIC, in.size(),
                                    reinterpret_cast<const uint8_t*>(in.data()), &size,
                                    reinterpret_cast<uint8_t*>(out.data())));
  out.resize(size);
  return out;
}

inline std::string Zstd(std::string_view in, bool checksum = false) {
  std::string out(ZSTD_compressBound(in.size()), '\0');
  ZSTD_CCtx* c = ZSTD_createCCtx();
  ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, checksum ? 1 : 0);
  const size_t n = ZSTD_compress2(c, out.data(), out.size(), in.data(), in.size());
  ZSTD_freeCCtx(c);
  EXPECT_FALSE(ZSTD_isError(n));
  out.resize(n);
  return out;
}

}  // namespace egressguard::dlp::decode::testing
