#pragma once
// The binary filter's definition, written the obvious way (a keep flag per byte from
// every class's maximal runs), for the unit tests and the fuzzer to hold
// TextRunFilter's streaming, SIMD and chunk-carrying implementation against.

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "dlp/decode/text_runs.h"

namespace egressguard::dlp::decode::testing {

// What the filter hands out for one binary document: its kept stretches (maximal runs of
// kept bytes), in order.
inline std::vector<std::string> ReferenceKept(std::string_view doc, const TextRunConfig& config) {
  const size_t n = doc.size();
  std::vector<bool> keep(n, false);
  for (const TextRunClass& c : config.classes) {
    size_t i = 0;
    while (i < n) {
      if (!c.members.test(static_cast<unsigned char>(doc[i]))) {
        ++i;
        continue;
      }
      size_t j = i;
      while (j < n && c.members.test(static_cast<unsigned char>(doc[j]))) ++j;
      if (j - i >= c.min_run) {
        const size_t a = i >= c.context + 1 ? i - c.context - 1 : 0;
        const size_t b = std::min(n, j + c.context + 1);
        for (size_t k = a; k < b; ++k) keep[k] = true;
      }
      i = j;
    }
  }
  std::vector<std::string> out;
  bool gap = true;
  for (size_t i = 0; i < n; ++i) {
    if (!keep[i]) {
      gap = true;
      continue;
    }
    if (gap) out.emplace_back();
    out.back().push_back(doc[i]);
    gap = false;
  }
  return out;
}

}  // namespace egressguard::dlp::decode::testing
