#include "rules/pattern_check.h"

#include <fmt/format.h>
#include <hs/hs.h>

#include <string>

namespace egressguard::rules {

absl::Status CheckHyperscanPattern(std::string_view pattern, bool case_insensitive) {
  const std::string expr(pattern);
  if (expr.find('\0') != std::string::npos) return absl::InvalidArgumentError("pattern contains a NUL byte");
  unsigned flags = HS_FLAG_DOTALL;
  if (case_insensitive) flags |= HS_FLAG_CASELESS;
  hs_database_t* db = nullptr;
  hs_compile_error_t* err = nullptr;
  if (hs_compile(expr.c_str(), flags, HS_MODE_STREAM, nullptr, &db, &err) != HS_SUCCESS) {
    std::string reason = err != nullptr && err->message != nullptr ? err->message : "refused by Hyperscan";
    hs_free_compile_error(err);
    return absl::InvalidArgumentError(fmt::format("Hyperscan: {}", reason));
  }
  hs_free_database(db);
  return absl::OkStatus();
}

}  // namespace egressguard::rules
