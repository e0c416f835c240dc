// Differential: the Normalizer gives the same layers (and, without decompression, the same per-byte spans) for one buffer and for arbitrary chunkings; and no segment starts below a held_from() reported after an earlier Feed.
#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "decode_fuzz_common.h"

using namespace egressguard::dlp::decode;

namespace {

struct Outcome {
  std::vector<std::pair<std::string, std::vector<std::pair<uint64_t, uint64_t>>>> layers;
  std::vector<std::string> reasons;
  bool limited = false;
};

Outcome Run(const ContentHintLite& hint, const NormalizerLimits& limits, std::string_view body, size_t chunk,
            bool spans) {
  fuzz::CheckingSink sink(body.size(), spans);
  Normalizer n(hint, limits, sink);
  for (size_t at = 0; at < body.size(); at += chunk) {
    n.Feed(body.substr(at, chunk));
    sink.Decided(n.held_from(), std::min(body.size(), at + chunk));
  }
  n.Finish();
  Outcome o;
  for (auto& [id, text] : sink.layers) o.layers.emplace_back(text, sink.spans_by_layer[id]);
  std::sort(o.layers.begin(), o.layers.end());
  o.reasons = sink.reasons;
  // Layers that fail independently (a corrupt br layer and a corrupt gzip layer, say)
  // report in the order their bytes arrive, which the chunking decides: compared as a set.
  std::sort(o.reasons.begin(), o.reasons.end());
  for (const auto& r : o.reasons) {
    // Where a limit cuts depends on how output was grouped: not comparable.
    if (r.find("limit") != std::string::npos || r.find("layers") != std::string::npos ||
        r.find("bomb") != std::string::npos) {
      o.limited = true;
    }
  }
  return o;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 3 || size > (16 << 10)) return 0;
  ContentHintLite hint = fuzz::PickHint(data[0], data[1]);
  NormalizerLimits limits;
  limits.max_decoded_bytes = 1 << 20;
  std::string body(reinterpret_cast<const char*>(data) + 3, size - 3);
  // Mode "exact": no compression anywhere (one layer deep, no magic, no encodings), so
  // per-byte spans must match too.
  const bool exact = (data[2] & 1) != 0;
  if (exact) {
    hint.content_encoding.clear();
    limits.max_depth = 1;
    body.insert(0, " ");
  }
  const size_t chunk = 1 + data[2] / 2 % 37;
  const Outcome whole = Run(hint, limits, body, body.size() + 1, exact);
  const Outcome split = Run(hint, limits, body, chunk, exact);
  if (whole.limited || split.limited) return 0;
  if (whole.layers != split.layers || whole.reasons != split.reasons) std::abort();
  return 0;
}
