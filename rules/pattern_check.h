#pragma once
// Asks Hyperscan itself whether a rule pattern compiles, so `rules validate` and the
// pack loader report a bad pattern at its file and line, before the engine builds the
// whole database (which only names the rule).

#include <string_view>

#include "absl/status/status.h"

namespace egressguard::rules {

// Compiles `pattern` alone as a streaming database with the flags a rule gets (DOTALL,
// CASELESS when asked). InvalidArgument with Hyperscan's reason when it is refused;
// patterns that can match the empty string are refused too.
absl::Status CheckHyperscanPattern(std::string_view pattern, bool case_insensitive);

}  // namespace egressguard::rules
