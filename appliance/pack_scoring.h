#pragma once
// Scoring a compiled pack against labelled samples, as `egressguard rules test` prints it
// and as the store's RuleAdmin.Test answers it (the console's "Test against samples"):
// one engine, one sidecar format (tests/data/corpus/README.md), per file and per located
// occurrence.

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "dlp/engine.h"
#include "egressguard/v1/rule_admin.pb.h"
#include "rules/sample_set.h"

namespace egressguard::appliance {

struct PackScore {
  rules::Evaluation per_file;
  rules::Evaluation per_occurrence;
  uint64_t located = 0;          // labelled occurrences scored
  uint64_t unlocated_pairs = 0;  // listed (file, category) pairs without `at` lines
  // "email precision 0.667"; "per occurrence phone recall 0.900".
  std::vector<std::string> Below(double min) const;
  // The tables `rules test` prints.
  std::string Report() const;
};

// Accumulates samples one by one (each scanned in chunks, as `scan` reads a file).
class PackScorer {
 public:
  explicit PackScorer(dlp::EnginePtr engine) : engine_(std::move(engine)) {}
  void Add(const rules::Sample& sample, std::string_view content);
  PackScore Result() const;

 private:
  dlp::EnginePtr engine_;
  dlp::Scanner scanner_;
  rules::Evaluator files_;
  rules::OccurrenceEvaluator occurrences_;
};

// The engine options scoring needs: every occurrence located.
dlp::EngineOptions ScoringEngineOptions(dlp::EngineOptions base = {});

// RuleAdmin.Test: compiles `pack`, scores the request's samples, fills the response.
// Refuses (INVALID_ARGUMENT, with the reason) a sidecar that does not parse, more than
// kMaxTestSamples samples or kMaxTestBytes of content.
inline constexpr size_t kMaxTestSamples = 1000;
inline constexpr size_t kMaxTestBytes = 3 << 20;
absl::StatusOr<v1::TestPackResponse> TestPack(const rules::v1::RulePack& pack, const v1::TestPackRequest& request,
                                              const dlp::EngineOptions& engine_options);

}  // namespace egressguard::appliance
