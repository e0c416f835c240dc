#pragma once
// The compiled form of a rule pack (the Engine implementation). Internal to dlp/:
// MessageScan reads these tables; other folders see only dlp/engine.h.
//
// Patterns are split across two databases:
//  - stream_db: streaming mode, every pattern with a literal or letter in it (e-mail,
//    keys, tokens, PEM, dump headers...). Start of match comes from SOM (small horizon)
//    or, for fixed-width patterns, from the width, which costs no stream state.
//  - gated_db: block mode with SOM, patterns made only of digits and separators (see
//    PatternShape); fed only the digit runs DigitGate finds, so most bytes never reach it.

#include <hs/hs.h>

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_set>
#include <vector>

#include "absl/status/statusor.h"
#include "dlp/digit_gate.h"
#include "dlp/engine.h"
#include "dlp/validators.h"

namespace egressguard::dlp {

struct HsDatabaseDeleter {
  void operator()(hs_database_t* db) const { hs_free_database(db); }
};
using HsDatabasePtr = std::unique_ptr<hs_database_t, HsDatabaseDeleter>;

struct CompiledRule {
  std::string id;
  std::string category;
  Validator validator = nullptr;
  std::vector<std::string> keywords;  // lower-case
  uint32_t window_before = 0;
  uint32_t window_after = 0;
  rules::v1::Context::Effect effect = rules::v1::Context::EFFECT_UNSPECIFIED;
  std::unordered_set<std::string> literal_exclusions;  // normalized values
  HsDatabasePtr exclusion_db;                          // block mode, anchored regexes
  bool count_matches = false;  // db_dump: min_count counts matches, not distinct values
  bool pii = false;            // counts toward bulk_pii
  uint32_t min_count = 1;
  rules::v1::Action action = rules::v1::ALERT;
  rules::v1::Severity severity = rules::v1::MEDIUM;
};

struct CompiledPattern {
  uint32_t rule = 0;
  uint32_t fixed_width = 0;  // > 0: start = end - width (no SOM)
  bool gated = false;
};

// A rule that is not pattern-driven (bulk_pii, undecodable), from the pack or built in.
struct MessageRule {
  std::string id;
  std::string category;
  rules::v1::Action action = rules::v1::ALERT;
  rules::v1::Severity severity = rules::v1::HIGH;
};

class HyperscanEngine final : public Engine {
 public:
  static absl::StatusOr<std::shared_ptr<const HyperscanEngine>> Build(const rules::v1::RulePack& pack,
                                                                      const EngineOptions& options);

  // Engine
  const std::string& pack_version() const override { return pack_.version(); }
  const rules::v1::RulePack& pack() const override { return pack_; }
  size_t stream_state_bytes() const override { return stream_state_bytes_; }

  const EngineOptions& options() const { return options_; }
  const std::vector<CompiledRule>& rules() const { return rules_; }
  const std::vector<CompiledPattern>& patterns() const { return patterns_; }
  const hs_database_t* stream_db() const { return stream_db_.get(); }
  const hs_database_t* gated_db() const { return gated_db_.get(); }
  const DigitGateConfig& gate_config() const { return gate_config_; }
  uint32_t max_window() const { return max_window_; }
  uint32_t bulk_threshold() const { return bulk_threshold_; }
  const MessageRule& bulk_rule() const { return bulk_rule_; }
  const MessageRule& undecodable_rule() const { return undecodable_rule_; }
  const std::vector<std::string>& csv_keywords() const { return csv_keywords_; }
  // Process-local key for distinct counting (never leaves the process).
  const std::string& dedup_key() const { return dedup_key_; }
  // Every database a scratch must fit.
  std::vector<const hs_database_t*> databases() const;
  size_t gated_pattern_count() const;

 private:
  HyperscanEngine() = default;
  absl::Status CompileRules(const EngineOptions& options);

  rules::v1::RulePack pack_;
  EngineOptions options_;
  std::vector<CompiledRule> rules_;
  std::vector<CompiledPattern> patterns_;
  HsDatabasePtr stream_db_;
  HsDatabasePtr gated_db_;
  DigitGateConfig gate_config_;
  size_t stream_state_bytes_ = 0;
  uint32_t max_window_ = 0;
  uint32_t bulk_threshold_ = 25;
  MessageRule bulk_rule_;
  MessageRule undecodable_rule_;
  std::vector<std::string> csv_keywords_;
  std::string dedup_key_;
};

}  // namespace egressguard::dlp
