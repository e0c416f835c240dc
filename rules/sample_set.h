#pragma once
// Labelled samples for checking a rule pack: a directory tree of files, each with a
// `<file>.expect` sidecar naming the categories the pack must find in it (one per
// line; `none` for a negative; `#` comments). `rules test` and the corpus accuracy
// test score a pack against them with the Evaluator below. The scanning itself is the
// caller's (rules/ does not depend on the engine).

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace egressguard::rules {

inline constexpr std::string_view kExpectSuffix = ".expect";

struct Sample {
  std::string path;                // the sample file
  std::set<std::string> expected;  // empty: a negative (`none`)
  // Labelled counts, for the lines that give one ("email 3": the finding's count, i.e.
  // distinct values, matches for db_dump, records for bulk_pii).
  std::map<std::string, uint64_t> counts;
};

// The categories of one sidecar's text; `source` labels errors ("file:line: reason").
// A line is a category, optionally followed by its expected count ("email 3").
absl::StatusOr<std::set<std::string>> ParseExpect(std::string_view text, const std::string& source);
// The same, also filling `counts` with the counts the lines give.
absl::StatusOr<std::set<std::string>> ParseExpect(std::string_view text, const std::string& source,
                                                  std::map<std::string, uint64_t>* counts);

// Every file under `dir` (recursively, sorted by path) that has a sidecar. Files without
// one are not samples (README, generators); a sidecar without its file is an error.
absl::StatusOr<std::vector<Sample>> LoadSamples(const std::string& dir);

struct CategoryScore {
  std::string category;
  uint64_t true_positives = 0;   // expected and found
  uint64_t false_positives = 0;  // found, not expected
  uint64_t false_negatives = 0;  // expected, not found
  // 1.0 when there is nothing to be wrong about (no findings / nothing expected).
  double precision() const;
  double recall() const;
};

struct Mismatch {
  std::string path;
  std::string category;
  bool missed = false;  // true: expected and not found; false: found and not expected
};

struct Evaluation {
  size_t samples = 0;
  std::vector<CategoryScore> scores;  // sorted by category
  std::vector<Mismatch> mismatches;   // in sample order
};

class Evaluator {
 public:
  void Add(const Sample& sample, const std::set<std::string>& found);
  Evaluation Result() const { return result_; }

 private:
  CategoryScore& Score(const std::string& category);
  Evaluation result_;
};

// The precision/recall table (and the mismatches), for people.
std::string FormatEvaluation(const Evaluation& e);
// Categories whose precision or recall is below `min`, e.g. "phone recall 0.91".
std::vector<std::string> BelowMinimum(const Evaluation& e, double min);

}  // namespace egressguard::rules
