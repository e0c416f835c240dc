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

// One located occurrence: a labelled one, or one the engine reported.
struct Occurrence {
  std::string category;
  uint64_t start = 0;
  uint64_t end = 0;  // exclusive
};

struct Sample {
  std::string path;                // the sample file
  std::set<std::string> expected;  // empty: a negative (`none`)
  // Labelled counts, for the lines that give one ("email 3": the finding's count, i.e.
  // distinct values, matches for db_dump, records for bulk_pii).
  std::map<std::string, uint64_t> counts;
  // `at` lines, sorted by start. A listed category without any is unlocated (its values
  // hide in an encoding the labels do not see into): scored per file only.
  std::vector<Occurrence> located;
};

// Everything one sidecar says.
struct Expectation {
  std::set<std::string> categories;
  std::map<std::string, uint64_t> counts;
  std::vector<Occurrence> located;
};
absl::StatusOr<Expectation> ParseExpectation(std::string_view text, const std::string& source);

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
  std::string where;    // per occurrence: its offsets ("120-139")
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
  Evaluation result_;
};

// Scores occurrences: a reported occurrence is right when it overlaps a labelled one of
// its category that no earlier report took (a second report of the same place, a
// value counted twice, is a false positive). Only (file, category) pairs that are
// located are scored, plus every report of a category the sidecar does not list.
class OccurrenceEvaluator {
 public:
  void Add(const Sample& sample, std::vector<Occurrence> found);
  Evaluation Result() const { return result_; }
  // Labelled occurrences scored, and listed (file, category) pairs left unlocated.
  uint64_t labelled() const { return labelled_; }
  uint64_t unlocated_pairs() const { return unlocated_pairs_; }

 private:
  Evaluation result_;
  uint64_t labelled_ = 0;
  uint64_t unlocated_pairs_ = 0;
};

// The precision/recall table (and the mismatches), for people.
std::string FormatEvaluation(const Evaluation& e);
// Categories whose precision or recall is below `min`, e.g. "phone recall 0.91".
std::vector<std::string> BelowMinimum(const Evaluation& e, double min);

}  // namespace egressguard::rules
