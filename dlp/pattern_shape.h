#pragma once
// A conservative reading of a Hyperscan pattern: which bytes any match can contain and
// how many digits every match must contain. The engine uses it to route patterns whose
// matches can only be runs of digits and separators (cards, AHV, SSN, phone numbers)
// behind a cheap digit-run prefilter instead of the streaming database, where such
// literal-less patterns would slow every byte down.

#include <array>
#include <bitset>
#include <cstdint>
#include <optional>
#include <string_view>

namespace egressguard::dlp {

// How many leading byte positions PatternShape::prefix describes.
inline constexpr size_t kShapePrefix = 4;

struct PatternShape {
  std::bitset<256> alphabet;  // every byte some match may contain (zero-width assertions excluded)
  uint32_t min_digits = 0;    // digits every match contains, at least
  // prefix[i]: every byte that can be byte i of a match, for i < min(min_len, kShapePrefix);
  // a match shorter than i + 1 bytes leaves prefix[i] meaningless, hence min_len.
  std::array<std::bitset<256>, kShapePrefix> prefix;
  uint32_t min_len = 0;
  bool anchored = false;      // uses ^, $, \A, \z or \Z: its meaning depends on the whole buffer
};

// Parses the PCRE subset Hyperscan accepts. Anything this reader does not fully
// understand (lookarounds, backreferences, \p, \Q...) yields nullopt, which callers
// must treat as "could match anything".
std::optional<PatternShape> AnalyzePattern(std::string_view pattern, bool caseless);

}  // namespace egressguard::dlp
