#pragma once
// Shared by the decoder fuzz drivers: a sink that checks the Normalizer's output contract
// (layer ids in range, spans inside the message, linear segments 1:1, nothing below a
// reported hold) and records it.

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "dlp/decode/normalizer.h"

namespace egressguard::dlp::decode::fuzz {

class CheckingSink : public SegmentSink {
 public:
  explicit CheckingSink(uint64_t message_size, bool keep_spans = false)
      : size_(message_size), keep_spans_(keep_spans) {}

  void OnSegment(const DecodedSegment& s) override {
    if (s.layer < 1 || s.layer > kMaxLayers) std::abort();
    if (s.orig_begin > s.orig_end || s.orig_end > size_) std::abort();
    if (s.bytes.empty()) std::abort();
    if (s.linear && s.orig_end - s.orig_begin != s.bytes.size()) std::abort();
    // The proxy has forwarded everything below `decided`: a segment from there is a leak.
    if (s.orig_begin < decided) std::abort();
    layers[s.layer].append(s.bytes);
    if (keep_spans_) {
      auto& spans = spans_by_layer[s.layer];
      for (size_t i = 0; i < s.bytes.size(); ++i) {
        spans.push_back(s.linear ? std::pair{s.orig_begin + i, s.orig_begin + i + 1} : std::pair{s.orig_begin, s.orig_end});
      }
    }
  }

  void OnUndecodable(uint64_t b, uint64_t e, std::string_view why) override {
    if (b > e || e > size_) std::abort();
    if (why.empty()) std::abort();
    reasons.emplace_back(why);
  }

  // After each Feed: what the proxy could forward at most so far.
  void Decided(uint64_t held_from, uint64_t fed) { decided = std::max(decided, std::min(held_from, fed)); }

  uint64_t decided = 0;
  std::map<uint32_t, std::string> layers;
  std::map<uint32_t, std::vector<std::pair<uint64_t, uint64_t>>> spans_by_layer;
  std::vector<std::string> reasons;

 private:
  uint64_t size_;
  bool keep_spans_;
};

inline ContentHintLite PickHint(uint8_t a, uint8_t b) {
  static const char* kTypes[] = {"", "application/json", "application/x-www-form-urlencoded",
                                 "multipart/form-data; boundary=b", "text/plain", "multipart/mixed; boundary=\"x y\"",
                                 "application/octet-stream", "multipart/form-data",
                                 "text/csv; charset=utf-16",  // utf16.cc's label, checked against the bytes
                                 "text/html; charset=utf-8"};
  static const char* kEncodings[] = {"", "gzip", "br", "zstd", "deflate", "gzip, br", "compress", "identity"};
  ContentHintLite h;
  h.content_type = kTypes[a % (sizeof kTypes / sizeof kTypes[0])];
  h.content_encoding = kEncodings[b % 8];
  h.is_url = (a & 0x80) != 0;
  return h;
}

}  // namespace egressguard::dlp::decode::fuzz
