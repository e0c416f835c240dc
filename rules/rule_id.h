#pragma once
// Rule ids appear in verdicts, metrics labels and 403 pages, so they are kept to a
// small alphabet that is safe in all three without escaping.

#include <string_view>

namespace egressguard::rules {

// True for 1..64 characters of [a-z0-9_.-], starting with a letter or digit.
bool IsValidRuleId(std::string_view id);

}  // namespace egressguard::rules
