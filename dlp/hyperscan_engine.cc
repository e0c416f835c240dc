#include "dlp/hyperscan_engine.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <string_view>
#include <unordered_set>

#include "absl/status/status.h"
#include "dlp/cpu_features.h"
#include "dlp/csv_header.h"
#include "dlp/db_cache.h"
#include "dlp/decode/text_runs.h"
#include "dlp/fingerprint.h"
#include "dlp/pattern_shape.h"
#include "dlp/redact.h"

namespace egressguard::dlp {

namespace {

using rules::v1::Rule;

constexpr uint32_t kMaxContextWindow = 2048;  // bytes either side; the history holds them
constexpr uint32_t kMaxGatedWidth = 256;      // longer digit patterns stay in the stream db
constexpr uint32_t kDefaultMinRecords = 50;  // bulk_pii: records of people

// Categories that are secrets or structure rather than personal data: they do not
// count toward bulk_pii.
bool IsPiiCategory(std::string_view category) {
  static constexpr std::string_view kNotPii[] = {"aws_access_key", "private_key", "jwt",       "github_token",
                                                 "db_dump",        "db_schema",   "bulk_pii",    "undecodable", "api_key",
                                                 "secret",         "password",    "token"};
  return std::find(std::begin(kNotPii), std::end(kNotPii), category) == std::end(kNotPii);
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
  }
  return out;
}

// Bytes a digit run may contain: digits, the separators people type, whitespace.
const std::bitset<256>& GateAllowed() {
  static const std::bitset<256> kAllowed = [] {
    std::bitset<256> s;
    for (char c : std::string_view("0123456789 -./()+\t\n\r\f\v")) s.set(static_cast<unsigned char>(c));
    return s;
  }();
  return kAllowed;
}

// [0-9A-Za-z_]: what \b tells apart from everything else.
const std::bitset<256>& WordBytes() {
  static const std::bitset<256> kWord = [] {
    std::bitset<256> s;
    for (int c = 0; c < 256; ++c) {
      s.set(static_cast<size_t>(c), (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_');
    }
    return s;
  }();
  return kWord;
}

// Whether a pattern goes behind the prefix test (see hyperscan_engine.h): bounded, not
// anchored, two upper-case letters first, no lower-case letter in its first kShapePrefix
// bytes (so ordinary words never pass the test) and no NUL (the window separator).
bool PrefixGateable(const std::optional<PatternShape>& shape, unsigned max_width) {
  if (!shape || shape->anchored || shape->min_len < kShapePrefix) return false;
  if (max_width == UINT_MAX || max_width > kMaxGatedWidth || shape->alphabet.test(0)) return false;
  std::bitset<256> upper, lower;
  for (int c = 'A'; c <= 'Z'; ++c) upper.set(static_cast<size_t>(c));
  for (int c = 'a'; c <= 'z'; ++c) lower.set(static_cast<size_t>(c));
  if ((shape->prefix[0] & ~upper).any() || (shape->prefix[1] & ~upper).any()) return false;
  for (size_t i = 0; i < kShapePrefix; ++i) {
    if (shape->prefix[i].none() || (shape->prefix[i] & lower).any()) return false;
  }
  return true;
}

// Byte set `in` as shufti tables: b is in it iff lo[b & 15] & hi[b >> 4]. Exact when the
// distinct per-high-nibble sets of low nibbles number at most 8 (false otherwise).
template <typename In>
bool NibbleTables(const In& in, std::array<uint8_t, 16>* lo, std::array<uint8_t, 16>* hi) {
  std::array<uint16_t, 16> lows{};
  for (size_t b = 0; b < 256; ++b) {
    if (in(b)) lows[b >> 4] |= static_cast<uint16_t>(1u << (b & 15));
  }
  std::array<uint16_t, 8> buckets{};
  size_t used = 0;
  lo->fill(0);
  hi->fill(0);
  for (size_t h = 0; h < 16; ++h) {
    if (lows[h] == 0) continue;
    size_t k = static_cast<size_t>(std::find(buckets.begin(), buckets.begin() + used, lows[h]) - buckets.begin());
    if (k == used) {
      if (used == buckets.size()) return false;
      buckets[used++] = lows[h];
    }
    (*hi)[h] |= static_cast<uint8_t>(1u << k);
    for (size_t l = 0; l < 16; ++l) {
      if (lows[h] & (1u << l)) (*lo)[l] |= static_cast<uint8_t>(1u << k);
    }
  }
  return true;
}

struct HsCompileErrorDeleter {
  void operator()(hs_compile_error_t* e) const { hs_free_compile_error(e); }
};

struct Expression {
  std::string text;
  unsigned flags = 0;
  unsigned id = 0;
};

// The database of `exprs`, from the cache when it holds one compiled from exactly these.
absl::StatusOr<HsDatabasePtr> CompileDb(const std::vector<Expression>& exprs, unsigned mode,
                                        const std::function<std::string(size_t)>& describe, DbCacheSession* cache) {
  std::vector<const char*> texts;
  std::vector<unsigned> flags;
  std::vector<unsigned> ids;
  for (const auto& e : exprs) {
    texts.push_back(e.text.c_str());
    flags.push_back(e.flags);
    ids.push_back(e.id);
  }
  std::string fingerprint;
  if (cache->enabled()) {
    fingerprint = DbFingerprint(mode, texts, flags, ids);
    if (hs_database_t* cached = cache->Take(fingerprint)) return HsDatabasePtr(cached);
  }
  hs_database_t* db = nullptr;
  hs_compile_error_t* err = nullptr;
  hs_error_t rc = hs_compile_multi(texts.data(), flags.data(), ids.data(), static_cast<unsigned>(exprs.size()), mode,
                                   nullptr, &db, &err);
  if (rc != HS_SUCCESS) {
    std::unique_ptr<hs_compile_error_t, HsCompileErrorDeleter> guard(err);
    std::string where = err && err->expression >= 0 ? describe(static_cast<size_t>(err->expression)) : "rule pack";
    return absl::InvalidArgumentError(
        fmt::format("{}: Hyperscan refused it: {}", where, err ? err->message : "unknown error"));
  }
  if (cache->enabled()) cache->Record(fingerprint, db);
  return HsDatabasePtr(db);
}

}  // namespace

absl::StatusOr<EnginePtr> Engine::Compile(const rules::v1::RulePack& pack, const EngineOptions& options) {
  auto engine = HyperscanEngine::Build(pack, options);
  if (!engine.ok()) return engine.status();
  return EnginePtr(*std::move(engine));
}

std::vector<const hs_database_t*> HyperscanEngine::databases() const {
  std::vector<const hs_database_t*> dbs;
  if (stream_db_) dbs.push_back(stream_db_.get());
  for (const auto& g : gated_dbs_) {
    dbs.push_back(g.db.get());
    if (g.probe) dbs.push_back(g.probe.get());
  }
  if (prefix_db_) dbs.push_back(prefix_db_.get());
  for (const auto& r : rules_) {
    if (r.exclusion_db) dbs.push_back(r.exclusion_db.get());
  }
  return dbs;
}

size_t HyperscanEngine::gated_pattern_count() const {
  return static_cast<size_t>(std::count_if(patterns_.begin(), patterns_.end(), [](const auto& p) { return p.gated; }));
}

absl::StatusOr<std::shared_ptr<const HyperscanEngine>> HyperscanEngine::Build(const rules::v1::RulePack& pack,
                                                                             const EngineOptions& options) {
  std::shared_ptr<HyperscanEngine> engine(new HyperscanEngine());
  engine->pack_ = pack;
  engine->options_ = options;
  engine->dedup_key_ = RandomKey();
  DbCacheSession cache(options.db_cache_dir, pack);
  if (absl::Status st = engine->CompileRules(options, &cache); !st.ok()) return st;
  cache.Save();
  return std::shared_ptr<const HyperscanEngine>(std::move(engine));
}

absl::Status HyperscanEngine::CompileRules(const EngineOptions& options, DbCacheSession* cache) {
  std::vector<Expression> stream_exprs;
  // A gated pattern and what its matches need; each becomes a DigitGate class.
  struct Gated {
    Expression expr;
    bool keyed = false;
    uint32_t keyword_window = 0;
    unsigned fixed_width = 0;
    GateClass need{DigitGateConfig::Never(), DigitGateConfig::Never()};
  };
  std::vector<Gated> gated;
  std::vector<std::string> keyed_keywords;
  std::vector<Expression> prefix_exprs;
  PrefixGateConfig prefix;
  prefix.lo0 = prefix.lo1 = 255;
  prefix.hi0 = prefix.hi1 = 0;
  std::vector<std::string> pattern_names;  // "rule X pattern N" per CompiledPattern
  std::vector<decode::TextRunPattern> run_patterns;
  bool text_runs_ok = true;
  std::unordered_set<std::string> seen_ids;

  bulk_rule_ = MessageRule{"bulk_pii", "bulk_pii", rules::v1::ALERT, rules::v1::HIGH};
  undecodable_rule_ = MessageRule{"undecodable", "undecodable", options.undecodable_action, rules::v1::MEDIUM};
  // Encrypted content is reported, not blocked, unless the pack says so: a password-
  // protected document is often legitimate, and officers choose (a common DLP policy).
  encrypted_rule_ = MessageRule{"encrypted_content", "encrypted_content", rules::v1::ALERT, rules::v1::MEDIUM};
  bool have_bulk_rule = false;

  DigitGateConfig gate;
  gate.min_digits = UINT32_MAX;
  gate.min_width = UINT32_MAX;
  gate.max_width = 0;

  for (const Rule& rule : pack_.rules()) {
    if (!seen_ids.insert(rule.id()).second) {
      return absl::InvalidArgumentError(fmt::format("rule {}: duplicate rule id", rule.id()));
    }
    if (!rule.enabled()) continue;
    rules::v1::Action action = rule.action() == rules::v1::ACTION_UNSPECIFIED ? rules::v1::ALERT : rule.action();
    rules::v1::Severity severity =
        rule.severity() == rules::v1::SEVERITY_UNSPECIFIED ? rules::v1::MEDIUM : rule.severity();
    if (rule.category() == "bulk_pii") {
      // A message-level rule: its keywords name PII columns of CSV headers; its
      // patterns, if any, are not scanned.
      bulk_rule_ = MessageRule{rule.id(), rule.category(), action, severity};
      have_bulk_rule = true;
      for (const auto& kw : rule.context().keywords()) csv_keywords_.push_back(Lower(kw));
      continue;
    }
    if (rule.category() == "undecodable") {
      undecodable_rule_ = MessageRule{rule.id(), rule.category(), action, severity};
      continue;
    }
    if (rule.category() == "encrypted_content") {
      encrypted_rule_ = MessageRule{rule.id(), rule.category(), action, severity};
      continue;
    }
    if (rule.patterns().empty()) {
      return absl::InvalidArgumentError(fmt::format("rule {}: no patterns", rule.id()));
    }
    CompiledRule cr;
    cr.id = rule.id();
    cr.category = rule.category();
    if (!rule.validator().empty()) {
      const Validator* v = FindValidator(rule.validator());
      if (v == nullptr) {
        return absl::InvalidArgumentError(fmt::format("rule {}: unknown validator \"{}\"", rule.id(), rule.validator()));
      }
      cr.validator = *v;
      if (options.warm_validators) WarmValidator(rule.validator());
    }
    for (const auto& kw : rule.context().keywords()) {
      if (!kw.empty()) cr.keywords.push_back(Lower(kw));
    }
    cr.window_before = std::min(rule.context().window_before(), kMaxContextWindow);
    cr.window_after = std::min(rule.context().window_after(), kMaxContextWindow);
    cr.effect = rule.context().effect();
    if (!cr.keywords.empty() && cr.effect == rules::v1::Context::EFFECT_UNSPECIFIED) {
      cr.effect = rules::v1::Context::BOOST;
    }
    max_window_ = std::max({max_window_, cr.window_before, cr.window_after});
    cr.count_matches = rule.category() == "db_dump" || rule.category() == "db_schema";
    const NeighborCheck neighbors = NeighborCheckFor(rule.validator());
    cr.neighbor_bytes = neighbors.bytes;
    cr.in_longer_token = neighbors.in_longer_token;
    // Checksums and structure (Luhn, mod-97, EAN-13, MOD 11,10, CRC32, NINO letters)
    // make a match far more specific than a number plan or an address shape.
    cr.specificity = rule.validator().empty() || rule.validator() == "phone" || rule.validator() == "email" ? 1 : 2;
    cr.pii = IsPiiCategory(rule.category());
    cr.min_count = std::max<uint32_t>(1, rule.min_count());
    cr.action = action;
    cr.severity = severity;

    std::vector<Expression> excl;
    for (const auto& ex : rule.exclusions()) {
      if (ex.has_literal()) {
        cr.literal_exclusions.insert(NormalizeValue(rule.category(), ex.literal()));
      } else if (ex.has_regex()) {
        excl.push_back({fmt::format("\\A(?:{})\\z", ex.regex()),
                        HS_FLAG_SINGLEMATCH | (rule.case_insensitive() ? HS_FLAG_CASELESS : 0u),
                        static_cast<unsigned>(excl.size())});
      }
    }
    if (!excl.empty()) {
      auto db = CompileDb(
          excl, HS_MODE_BLOCK,
          [&](size_t i) { return fmt::format("rule {}: exclusion regex {}", rule.id(), i + 1); }, cache);
      if (!db.ok()) return db.status();
      cr.exclusion_db = *std::move(db);
    }

    // A rule that counts only with a keyword before its match: its gated patterns need
    // scanning only where a keyword was seen (the stream database reports them). With
    // an after-window the keyword may come later, and a keyword holding '\n' could
    // match across the join KeywordNear makes, so those rules stay in the free class.
    const bool keyed = cr.effect == rules::v1::Context::REQUIRE && !cr.keywords.empty() && cr.window_after == 0 &&
                       std::none_of(cr.keywords.begin(), cr.keywords.end(),
                                    [](const std::string& k) { return k.find('\n') != std::string::npos; });
    const uint32_t rule_index = static_cast<uint32_t>(rules_.size());
    rules_.push_back(std::move(cr));

    for (int k = 0; k < rule.patterns_size(); ++k) {
      const std::string& text = rule.patterns(k);
      std::string name = fmt::format("rule {}: pattern {} \"{}\"", rule.id(), k + 1, text);
      unsigned flags = rule.case_insensitive() ? HS_FLAG_CASELESS : 0u;
      hs_expr_info_t* info = nullptr;
      hs_compile_error_t* err = nullptr;
      if (hs_expression_info(text.c_str(), flags, &info, &err) != HS_SUCCESS) {
        std::unique_ptr<hs_compile_error_t, HsCompileErrorDeleter> guard(err);
        return absl::InvalidArgumentError(
            fmt::format("{}: Hyperscan refused it: {}", name, err ? err->message : "unknown error"));
      }
      const unsigned min_width = info->min_width;
      const unsigned max_width = info->max_width;
      std::free(info);

      CompiledPattern cp;
      cp.rule = rule_index;
      const auto shape = AnalyzePattern(text, rule.case_insensitive());
      // What the binary filter keeps for this pattern: runs of its alphabet, its shortest
      // match long, with its rule's keyword window around them (decode/text_runs.h).
      if (!shape || shape->anchored) {
        text_runs_ok = false;
      } else {
        const CompiledRule& r = rules_[rule_index];
        run_patterns.push_back({shape->alphabet, min_width,
                                r.keywords.empty() ? 0u : std::max(r.window_before, r.window_after)});
      }
      cp.gated = shape && !shape->anchored && shape->min_digits >= 1 && (shape->alphabet & ~GateAllowed()).none() &&
                 max_width != UINT_MAX && max_width <= kMaxGatedWidth;
      const unsigned id = static_cast<unsigned>(patterns_.size());
      if (cp.gated) {
        Gated g;
        g.expr = {text, flags, id};
        g.fixed_width = min_width == max_width ? max_width : 0;
        g.keyed = keyed;
        if (keyed) {
          const CompiledRule& r = rules_[rule_index];
          g.keyword_window = r.window_before;
          for (const auto& kw : r.keywords) {
            if (std::find(keyed_keywords.begin(), keyed_keywords.end(), kw) == keyed_keywords.end()) {
              keyed_keywords.push_back(kw);
            }
          }
        }
        for (size_t b = 0; b < 256; ++b) {
          if (shape->alphabet.test(b)) gate.member[b] = true;
        }
        gate.min_digits = std::min(gate.min_digits, shape->min_digits);
        gate.min_width = std::min(gate.min_width, min_width);
        gate.max_width = std::max(gate.max_width, max_width);
        const bool any_first = shape->min_len == 0;  // cannot happen with a digit; be safe
        // "\b" then a word byte: a match can start only after a non-word byte.
        std::bitset<256> word;
        for (int c = 0; c < 256; ++c) word.set(static_cast<size_t>(c), (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_');
        const bool at_boundary = !any_first && text.rfind("\\b", 0) == 0 && (shape->prefix[0] & ~word).none();
        auto& need = at_boundary ? g.need.at_boundary : g.need.need;
        for (size_t b = 0; b < 256; ++b) {
          if (any_first || shape->prefix[0].test(b)) need[b] = std::min(need[b], shape->min_digits);
        }
        cp.fixed_width = g.fixed_width;
        gated.push_back(std::move(g));
      } else if (text.rfind("\\b", 0) == 0 && PrefixGateable(shape, max_width)) {
        // Only patterns that begin with \b: the test then skips starts after a word byte
        // (see PrefixGateConfig::boundary). The others led by capitals are SQL dump
        // headers, long literals the stream database finds at almost no cost.
        cp.prefixed = true;
        prefix_exprs.push_back({text, flags | HS_FLAG_SOM_LEFTMOST, id});
        for (size_t i = 0; i < kShapePrefix; ++i) {
          for (size_t b = 0; b < 256; ++b) {
            if (shape->prefix[i].test(b)) prefix.mask[b] |= static_cast<uint8_t>(1u << i);
          }
        }
        for (size_t b = 0; b < 256; ++b) {
          const auto c = static_cast<unsigned char>(b);
          if (shape->prefix[0].test(b)) prefix.lo0 = std::min(prefix.lo0, c), prefix.hi0 = std::max(prefix.hi0, c);
          if (shape->prefix[1].test(b)) prefix.lo1 = std::min(prefix.lo1, c), prefix.hi1 = std::max(prefix.hi1, c);
        }
        prefix.max_width = std::max(prefix.max_width, max_width);
        prefix.boundary = prefix.boundary && text.rfind("\\b", 0) == 0 && (shape->prefix[0] & ~WordBytes()).none();
      } else if (min_width == max_width && max_width != UINT_MAX) {
        cp.fixed_width = max_width;
        stream_exprs.push_back({text, flags, id});
        stream_max_width_ = std::max(stream_max_width_, max_width);
      } else {
        stream_exprs.push_back({text, flags | HS_FLAG_SOM_LEFTMOST, id});
        stream_max_width_ = std::max(stream_max_width_, max_width);
      }
      patterns_.push_back(cp);
      pattern_names.push_back(std::move(name));
    }
  }
  (void)have_bulk_rule;
  if (csv_keywords_.empty()) {
    csv_keywords_ = {"card_number", "credit_card", "iban", "ssn", "ahv", "avs", "email", "e_mail", "phone", "mobile"};
  }
  csv_keywords_ = ColumnKeywordTokens(csv_keywords_);  // the form CsvHeaderDetector compares in
  if (options.filter_binary && text_runs_ok) options_.text_runs = decode::BuildTextRunConfig(run_patterns);
  // bulk_pii counts people (records); a distinct-value count decides too only where the
  // options or the pack ask for one.
  bulk_threshold_ = options.bulk_pii_threshold != 0 ? options.bulk_pii_threshold : pack_.bulk_pii_threshold();
  bulk_min_records_ = options.bulk_min_records != 0 ? options.bulk_min_records
                      : pack_.min_records() != 0    ? pack_.min_records()
                                                    : kDefaultMinRecords;

  // Keywords of keyed rules, as caseless literals in the stream database: their hits
  // tell the layer where keyed gated patterns are worth scanning.
  for (const std::string& kw : keyed_keywords) {
    std::string re;
    for (char c : kw) {
      const auto u = static_cast<unsigned char>(c);
      if ((u >= 'a' && u <= 'z') || (u >= '0' && u <= '9')) {
        re.push_back(c);
      } else {
        re += fmt::format("\\x{:02x}", u);
      }
    }
    const unsigned id = static_cast<unsigned>(pattern_names.size());
    pattern_names.push_back(fmt::format("keyword \"{}\"", kw));
    stream_exprs.push_back({re, HS_FLAG_CASELESS, id});
  }

  auto describe = [&](const std::vector<Expression>& exprs) {
    return [&exprs, &pattern_names](size_t i) { return pattern_names[exprs[i].id]; };
  };
  if (!stream_exprs.empty()) {
    bool any_som = std::any_of(stream_exprs.begin(), stream_exprs.end(),
                               [](const Expression& e) { return (e.flags & HS_FLAG_SOM_LEFTMOST) != 0; });
    unsigned mode = HS_MODE_STREAM | (any_som ? HS_MODE_SOM_HORIZON_SMALL : 0u);
    auto db = CompileDb(stream_exprs, mode, describe(stream_exprs), cache);
    if (!db.ok()) return db.status();
    stream_db_ = *std::move(db);
    if (hs_stream_size(stream_db_.get(), &stream_state_bytes_) != HS_SUCCESS) {
      return absl::InternalError("hs_stream_size failed");
    }
  }
  // One DigitGate class and block database per gated pattern (patterns share classes
  // round robin beyond kMaxGateClasses): a window goes only to the databases of patterns
  // that can match in it, and small databases scan far faster than one of them all
  // (log lines that look like "/123456 200 45" reach only the SSN layouts).
  const size_t classes = std::min(gated.size(), kMaxGateClasses);
  std::vector<std::vector<const Gated*>> members(classes);
  for (size_t i = 0; i < gated.size(); ++i) members[i % classes].push_back(&gated[i]);
  for (size_t k = 0; k < classes; ++k) {
    GateClass need{DigitGateConfig::Never(), DigitGateConfig::Never()};
    GatedDb g;
    g.cls = 1u << k;
    g.keyed = true;
    g.fixed = true;
    std::vector<Expression> exprs;
    for (const Gated* p : members[k]) {
      for (size_t b = 0; b < 256; ++b) {
        need.need[b] = std::min(need.need[b], p->need.need[b]);
        need.at_boundary[b] = std::min(need.at_boundary[b], p->need.at_boundary[b]);
      }
      g.keyed = g.keyed && p->keyed;
      g.keyword_window = std::max(g.keyword_window, p->keyword_window);
      g.fixed = g.fixed && p->fixed_width > 0;
      exprs.push_back(p->expr);
    }
    gate.classes.push_back(need);
    // Fixed-width patterns need no start-of-match tracking (start = end - width).
    // Otherwise a probe without it marks the windows holding a match, and only those
    // are scanned again with it, which Hyperscan runs several times slower.
    if (!g.fixed) {
      auto probe = CompileDb(exprs, HS_MODE_BLOCK, describe(exprs), cache);
      if (!probe.ok()) return probe.status();
      g.probe = *std::move(probe);
      for (auto& e : exprs) e.flags |= HS_FLAG_SOM_LEFTMOST;
    }
    auto db = CompileDb(exprs, HS_MODE_BLOCK, describe(exprs), cache);
    if (!db.ok()) return db.status();
    g.db = *std::move(db);
    gated_dbs_.push_back(std::move(g));
  }
  if (!gated.empty()) {
    gate.Prepare();
    gate_config_ = gate;
  }
  if (!prefix_exprs.empty()) {
    auto db = CompileDb(prefix_exprs, HS_MODE_BLOCK, describe(prefix_exprs), cache);
    if (!db.ok()) return db.status();
    prefix_db_ = *std::move(db);
    prefix.simd = UseAvx2();
    for (size_t i = 0; i < kShapePrefix && prefix.simd; ++i) {
      prefix.simd = NibbleTables(
          [&](size_t b) { return (prefix.mask[b] >> i) & 1; }, &prefix.nibble_lo[i], &prefix.nibble_hi[i]);
    }
    prefix_config_ = prefix;
  }
  return absl::OkStatus();
}

}  // namespace egressguard::dlp
