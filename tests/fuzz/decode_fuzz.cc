// The whole Normalizer under random hints, limits and chunk sizes: no crash, no leak, output contract holds, memory stays bounded.
#include <cstddef>
#include <cstdint>

#include "decode_fuzz_common.h"

using namespace egressguard::dlp::decode;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 4) return 0;
  const ContentHintLite hint = fuzz::PickHint(data[0], data[1]);
  NormalizerLimits limits;
  limits.max_depth = 1 + data[2] % 4;
  limits.max_decoded_bytes = 1 << 20;
  limits.max_expansion_ratio = 1 + data[3] % 200;
  limits.max_memory_bytes = 4 << 20;
  const size_t chunk = 1 + data[3] % 97;
  const std::string_view body(reinterpret_cast<const char*>(data) + 4, size - 4);
  fuzz::CheckingSink sink(body.size());
  Normalizer n(hint, limits, sink);
  for (size_t at = 0; at < body.size(); at += chunk) {
    n.Feed(body.substr(at, chunk));
    if (n.memory_bytes() > limits.max_memory_bytes + (1 << 20)) std::abort();
  }
  n.Finish();
  return 0;
}
