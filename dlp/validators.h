#pragma once
// Check-digit and structure validators that turn a pattern match into a finding.
// They see the matched bytes only; separators (spaces, dashes, dots) are skipped.

#include <string_view>

namespace egressguard::dlp {

// Luhn (mod 10) over the digits of `value`; false when fewer than two digits.
bool LuhnValid(std::string_view value);

}  // namespace egressguard::dlp
