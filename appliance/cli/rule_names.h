#pragma once
// How the CLI names rule enums in its output (text and JSON lines alike).

#include <string>

#include "egressguard/rules/v1/rules.pb.h"

namespace egressguard::cli {

inline std::string SeverityName(rules::v1::Severity s) {
  switch (s) {
    case rules::v1::LOW: return "low";
    case rules::v1::MEDIUM: return "medium";
    case rules::v1::HIGH: return "high";
    case rules::v1::CRITICAL: return "critical";
    default: return "unspecified";
  }
}

}  // namespace egressguard::cli
