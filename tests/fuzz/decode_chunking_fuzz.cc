// Differential: the Normalizer gives the same layers and the same undecodable reasons (and,
// without decompression, the same per-byte spans) for one buffer and for arbitrary
// chunkings, corrupt and truncated streams included: what a stream decodes to before its
// corruption must not depend on the reads (compress.cc feeds brotli and zstd in fixed
// slices for that). Only where a limit cuts (decoded size, depth, memory, bomb ratio)
// depends on how output was grouped: then both runs must still report it, and each layer
// decoded in one run must agree with the other's up to where the shorter one stops. And
// no segment starts below a held_from() reported after an earlier Feed.
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
  bool out_of_layers = false;  // "more than N decode layers"
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
    // Where a limit cuts depends on how output was grouped (see the top).
    if (r.find("limit") != std::string::npos || r.find("layers") != std::string::npos ||
        r.find("bomb") != std::string::npos) {
      o.limited = true;
    }
    if (r.find("decode layers") != std::string::npos) o.out_of_layers = true;
  }
  return o;
}

bool PrefixOfEachOther(const std::string& a, const std::string& b) {
  const size_t n = std::min(a.size(), b.size());
  return a.compare(0, n, b, 0, n) == 0;
}

// Under a limit: every layer text of `a` agrees, up to where one stops, with some layer
// text of `b`, unless `b` stopped before it decoded as many layers.
bool AgreesUpToTheCut(const Outcome& a, const Outcome& b) {
  if (b.layers.size() < a.layers.size()) return true;
  for (const auto& [text, spans] : a.layers) {
    bool found = false;
    for (const auto& [other, other_spans] : b.layers) found |= PrefixOfEachOther(text, other);
    if (!found) return false;
  }
  return true;
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
  // Reads of 1..32 bytes (inside compress.cc's 64-byte slices) or of 37..1500 (across them).
  const size_t chunk = (data[2] & 2) != 0 ? 1 + data[2] / 4 % 32 : 37 + (data[2] / 4) * 23;
  const Outcome whole = Run(hint, limits, body, body.size() + 1, exact);
  const Outcome split = Run(hint, limits, body, chunk, exact);
  if (whole.limited || split.limited) {
    if (whole.reasons.empty() || split.reasons.empty()) std::abort();
    // Layer ids go to documents in the order their first bytes reach the sink, which the
    // reads decide; once they run out, which documents were refused one differs, and so
    // do the layer texts. Both runs must still have run out (or hit another limit).
    if (whole.out_of_layers || split.out_of_layers) return 0;
    if (!AgreesUpToTheCut(whole, split) || !AgreesUpToTheCut(split, whole)) std::abort();
    return 0;
  }
  if (whole.layers != split.layers || whole.reasons != split.reasons) std::abort();
  return 0;
}
