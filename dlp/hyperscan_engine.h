#pragma once
// The compiled form of a rule pack (the Engine implementation). Internal to dlp/:
// MessageScan reads these tables; other folders see only dlp/engine.h.
//
// Patterns are split across these databases:
//  - stream_db: streaming mode, every pattern with a literal or letter in it (e-mail,
//    keys, tokens, PEM, dump headers...). Start of match comes from SOM (small horizon)
//    or, for fixed-width patterns, from the width, which costs no stream state. It also
//    holds, as caseless literals, the keywords of rules that REQUIRE one (see GatedDb).
//  - gated_dbs: block mode, one per pattern made only of digits and separators (see
//    PatternShape); fed only the digit runs DigitGate finds that can hold a match of
//    that pattern (per first byte: enough digits after it, after a word boundary where
//    the pattern needs one), so most bytes never reach them.
//  - prefix_db: block mode with SOM, bounded patterns led by two upper-case letters and no
//    long literal (IBAN, UK NINO, AWS keys): in streaming mode they alone cost ~15x the
//    rest of the pack. Every match starts where its first kShapePrefix bytes fit the
//    pattern's prefix sets, so a shift-and test over those sets finds each possible
//    start, and only a window of max_width bytes from there is scanned.

#include <hs/hs.h>

#include <array>
#include <bitset>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_set>
#include <vector>

#include "absl/status/statusor.h"
#include "dlp/digit_gate.h"
#include "dlp/engine.h"
#include "dlp/pattern_shape.h"
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
  // The validator's check against the bytes around a match (NeighborCheckFor: a card
  // window inside an IBAN, a phone '+' glued to a word), reading neighbor_bytes on each
  // side; 0: none.
  uint32_t neighbor_bytes = 0;
  bool (*in_longer_token)(std::string_view before, std::string_view value, std::string_view after) = nullptr;
  // Which rule keeps a span two rules' matches share (MessageScanImpl's overlap
  // resolution): a checksum- or structure-validated identifier (2) over a shape that
  // only a plausibility check backs (phone numbers, e-mail addresses, no validator: 1).
  uint8_t specificity = 1;
  uint32_t min_count = 1;
  rules::v1::Action action = rules::v1::ALERT;
  rules::v1::Severity severity = rules::v1::MEDIUM;
};

struct CompiledPattern {
  uint32_t rule = 0;
  uint32_t fixed_width = 0;  // > 0: start = end - width (no SOM)
  bool gated = false;        // in gated_dbs, behind the DigitGate
  bool prefixed = false;     // in prefix_db, behind the prefix test
};

// A block database of gated patterns: those of one DigitGate class (bit `cls` of
// GateWindow::classes). A keyed class holds patterns of rules that REQUIRE a keyword
// before the match: it is scanned only where one of their keywords (reported by the
// stream database) ended at most keyword_window bytes before the window or inside it. Without `fixed` (every pattern fixed-width,
// start = end - width, no start-of-match tracking), `probe` holds the patterns without
// start-of-match tracking, which Hyperscan runs several times faster: a batch of windows
// is probed first, and only the windows with a match are scanned with `db` for starts.
struct GatedDb {
  HsDatabasePtr db;
  HsDatabasePtr probe;
  uint32_t cls = 1;
  bool keyed = false;
  bool fixed = false;
  uint32_t keyword_window = 0;
};

// The prefix test of prefix_db: bit i of mask[b] is set when byte b may be byte i of a
// match of some pattern there; lo/hi bound the bytes of positions 0 and 1 (a cheap SIMD
// range test runs first).
struct PrefixGateConfig {
  std::array<uint8_t, 256> mask{};
  unsigned char lo0 = 0, hi0 = 255, lo1 = 0, hi1 = 255;
  uint32_t max_width = 0;
  // Each position's byte set as nibble tables (byte b fits iff lo[b & 15] & hi[b >> 4]),
  // when every set fits in 8 buckets and the CPU has AVX2: then 32 starts are tested at
  // once, exactly.
  std::array<std::array<uint8_t, 16>, kShapePrefix> nibble_lo{};
  std::array<std::array<uint8_t, 16>, kShapePrefix> nibble_hi{};
  bool simd = false;
  // Every pattern behind the test begins with \b before a word byte, so no match starts
  // right after a word byte: such starts need no window (in base64 text, where pairs of
  // upper-case letters abound, that rules out all but about one start in 30).
  bool boundary = true;
};

// A rule that is not pattern-driven (bulk_pii, undecodable), from the pack or built in.
struct MessageRule {
  std::string id;
  std::string category;
  rules::v1::Action action = rules::v1::ALERT;
  rules::v1::Severity severity = rules::v1::HIGH;
};

class DbCacheSession;  // db_cache.h

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
  const std::vector<GatedDb>& gated_dbs() const { return gated_dbs_; }
  const hs_database_t* prefix_db() const { return prefix_db_.get(); }
  const PrefixGateConfig& prefix_config() const { return prefix_config_; }
  const DigitGateConfig& gate_config() const { return gate_config_; }
  uint32_t max_window() const { return max_window_; }
  // Longest match of a stream-database pattern (UINT32_MAX: some pattern is unbounded).
  uint32_t stream_max_width() const { return stream_max_width_; }
  // Stream-db match ids at or above this are keyword hits of keyed rules, not patterns.
  unsigned keyword_id_base() const { return static_cast<unsigned>(patterns_.size()); }
  uint32_t bulk_threshold() const { return bulk_threshold_; }  // 0: off
  uint32_t bulk_min_records() const { return bulk_min_records_; }
  const MessageRule& bulk_rule() const { return bulk_rule_; }
  const MessageRule& undecodable_rule() const { return undecodable_rule_; }
  const MessageRule& encrypted_rule() const { return encrypted_rule_; }
  // Column-name keywords of CSV headers, in ColumnKeywordTokens() form.
  const std::vector<std::string>& csv_keywords() const { return csv_keywords_; }
  // Process-local key for distinct counting (never leaves the process).
  const std::string& dedup_key() const { return dedup_key_; }
  // Every database a scratch must fit.
  std::vector<const hs_database_t*> databases() const;
  size_t gated_pattern_count() const;

 private:
  HyperscanEngine() = default;
  // Databases come from `cache` where it holds them (never null; it may be disabled).
  absl::Status CompileRules(const EngineOptions& options, DbCacheSession* cache);

  rules::v1::RulePack pack_;
  EngineOptions options_;
  std::vector<CompiledRule> rules_;
  std::vector<CompiledPattern> patterns_;
  HsDatabasePtr stream_db_;
  std::vector<GatedDb> gated_dbs_;
  DigitGateConfig gate_config_;
  HsDatabasePtr prefix_db_;
  PrefixGateConfig prefix_config_;
  size_t stream_state_bytes_ = 0;
  uint32_t max_window_ = 0;
  uint32_t stream_max_width_ = 0;
  uint32_t bulk_threshold_ = 0;
  uint32_t bulk_min_records_ = 50;
  MessageRule bulk_rule_;
  MessageRule undecodable_rule_;
  MessageRule encrypted_rule_;
  std::vector<std::string> csv_keywords_;
  std::string dedup_key_;
};

}  // namespace egressguard::dlp
