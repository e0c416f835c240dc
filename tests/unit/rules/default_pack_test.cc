// Proves the shipped default pack loads with the real validator registry and Hyperscan,
// covers the required categories with the agreed actions, and that each rule's
// patterns + validator + exclusions + context find its positives and none of its hard
// negatives (checked here with a small block-mode matcher, independent of the engine).
#include <hs/hs.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "dlp/redact.h"
#include "dlp/validators.h"
#include "rules/pack_loader.h"
#include "rules/pattern_check.h"

namespace egressguard::rules {
namespace {

LoadOptions RealOptions() {
  LoadOptions o;
  o.known_validator = [](std::string_view name) { return dlp::FindValidator(name) != nullptr; };
  o.check_pattern = CheckHyperscanPattern;
  return o;
}

const v1::RulePack& DefaultPack() {
  static const v1::RulePack pack = [] {
    auto p = LoadPackDir(EGRESSGUARD_DEFAULT_PACK_DIR, RealOptions());
    EXPECT_TRUE(p.ok()) << p.status();
    return p.ok() ? *p : v1::RulePack();
  }();
  return pack;
}

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// True when the whole of `value` matches `regex` (exclusions are anchored on the value).
bool WholeMatch(const std::string& regex, const std::string& value, bool ci) {
  hs_database_t* db = nullptr;
  hs_compile_error_t* err = nullptr;
  const std::string anchored = "^(?:" + regex + ")$";
  if (hs_compile(anchored.c_str(), HS_FLAG_DOTALL | (ci ? HS_FLAG_CASELESS : 0u), HS_MODE_BLOCK, nullptr, &db,
                 &err) != HS_SUCCESS) {
    hs_free_compile_error(err);
    ADD_FAILURE() << "exclusion regex does not compile: " << regex;
    return false;
  }
  hs_scratch_t* scratch = nullptr;
  hs_alloc_scratch(db, &scratch);
  bool hit = false;
  hs_scan(db, value.data(), static_cast<unsigned>(value.size()), 0, scratch,
          [](unsigned, unsigned long long, unsigned long long, unsigned, void* ctx) -> int {
            *static_cast<bool*>(ctx) = true;
            return 1;
          },
          &hit);
  hs_free_scratch(scratch);
  hs_free_database(db);
  return hit;
}

// One block-mode SOM database per rule, compiled once (IBAN alone has 34 patterns).
hs_database_t* RuleDatabase(const v1::Rule& rule) {
  struct Cache {
    std::map<std::string, hs_database_t*> dbs;
    ~Cache() {
      for (auto& [id, db] : dbs) hs_free_database(db);
    }
  };
  static Cache cache_holder;
  auto& cache = cache_holder.dbs;
  auto it = cache.find(rule.id());
  if (it != cache.end()) return it->second;
  std::vector<const char*> exprs;
  std::vector<unsigned> flags, ids;
  for (int i = 0; i < rule.patterns_size(); ++i) {
    exprs.push_back(rule.patterns(i).c_str());
    flags.push_back(HS_FLAG_DOTALL | HS_FLAG_SOM_LEFTMOST | (rule.case_insensitive() ? HS_FLAG_CASELESS : 0u));
    ids.push_back(static_cast<unsigned>(i));
  }
  hs_database_t* db = nullptr;
  hs_compile_error_t* err = nullptr;
  if (hs_compile_multi(exprs.data(), flags.data(), ids.data(), static_cast<unsigned>(exprs.size()), HS_MODE_BLOCK,
                       nullptr, &db, &err) != HS_SUCCESS) {
    ADD_FAILURE() << rule.id() << ": " << (err ? err->message : "?");
    hs_free_compile_error(err);
    db = nullptr;
  }
  cache[rule.id()] = db;
  return db;
}

// The values one rule finds in `text`: every (start, end) match of its patterns that
// passes the validator, the exclusions and a REQUIRE/SUPPRESS context.
std::set<std::string> Findings(const v1::Rule& rule, const std::string& text) {
  hs_database_t* db = RuleDatabase(rule);
  if (db == nullptr) return {};
  hs_scratch_t* scratch = nullptr;
  hs_alloc_scratch(db, &scratch);
  std::vector<std::pair<size_t, size_t>> spans;
  hs_scan(db, text.data(), static_cast<unsigned>(text.size()), 0, scratch,
          [](unsigned, unsigned long long from, unsigned long long to, unsigned, void* ctx) -> int {
            static_cast<std::vector<std::pair<size_t, size_t>>*>(ctx)->emplace_back(from, to);
            return 0;
          },
          &spans);
  hs_free_scratch(scratch);

  // Leftmost-longest, the semantics the pack is written for: of the matches that start
  // at one offset only the longest is a candidate ("jane@mail.example.com", never its
  // prefix "jane@mail.ex"; a 16-digit card inside a 19-digit run is no card).
  std::map<size_t, size_t> longest;
  for (auto [from, to] : spans) longest[from] = std::max(longest[from], to);

  const dlp::Validator* validator = rule.validator().empty() ? nullptr : dlp::FindValidator(rule.validator());
  std::set<std::string> found;
  const std::string lower_text = Lower(text);
  for (auto [from, to] : longest) {
    const std::string value = text.substr(from, to - from);
    if (validator != nullptr && !(*validator)(value)) continue;
    const std::string norm = dlp::NormalizeValue(rule.category(), value);
    bool excluded = false;
    for (const auto& ex : rule.exclusions()) {
      if (ex.has_literal() && ex.literal() == norm) excluded = true;
      if (ex.has_regex() && WholeMatch(ex.regex(), value, rule.case_insensitive())) excluded = true;
    }
    if (excluded) continue;
    if (rule.has_context() && rule.context().effect() != v1::Context::BOOST) {
      const size_t lo = from > rule.context().window_before() ? from - rule.context().window_before() : 0;
      const std::string window = lower_text.substr(lo, to - lo + rule.context().window_after());
      const bool keyword = std::any_of(rule.context().keywords().begin(), rule.context().keywords().end(),
                                       [&](const std::string& k) { return window.find(Lower(k)) != std::string::npos; });
      if (rule.context().effect() == v1::Context::REQUIRE && !keyword) continue;
      if (rule.context().effect() == v1::Context::SUPPRESS && keyword) continue;
    }
    found.insert(norm);
  }
  return found;
}

const v1::Rule* RuleById(const std::string& id) {
  for (const auto& r : DefaultPack().rules()) {
    if (r.id() == id) return &r;
  }
  return nullptr;
}

TEST(DefaultPack, LoadsAndCoversTheRequiredCategoriesWithTheAgreedActions) {
  const auto& pack = DefaultPack();
  ASSERT_GT(pack.rules_size(), 0);
  // bulk_pii counts records of people; no distinct-value threshold by default.
  EXPECT_EQ(pack.bulk_pii_threshold(), 0u);
  EXPECT_EQ(pack.min_records(), 50u);
  std::map<std::string, v1::Action> action;
  for (const auto& r : pack.rules()) {
    EXPECT_TRUE(r.enabled()) << r.id();
    EXPECT_FALSE(r.description().empty()) << r.id();
    auto [it, inserted] = action.emplace(r.category(), r.action());
    if (!inserted) {
      EXPECT_EQ(it->second, r.action()) << "rules of " << r.category() << " disagree on the action";
    }
  }
  // What cannot be read does not leave: `undecodable` blocks like the values it may hide.
  for (const char* c : {"credit_card", "iban", "ahv", "us_ssn", "aws_access_key", "private_key", "jwt", "github_token",
                        "db_dump", "bulk_pii", "uk_nino", "de_steuer_id", "undecodable"}) {
    ASSERT_TRUE(action.count(c)) << c;
    EXPECT_EQ(action[c], v1::BLOCK) << c;
  }
  // Encrypted content is often legitimate: reported, and officers may set block.
  for (const char* c : {"email", "phone", "encrypted_content", "db_schema"}) {
    ASSERT_TRUE(action.count(c)) << c;
    EXPECT_EQ(action[c], v1::ALERT) << c;
  }
}

TEST(DefaultPack, MessageLevelRulesHaveNoPatterns) {
  std::set<std::string> seen;
  for (const auto& r : DefaultPack().rules()) {
    if (!IsMessageLevelCategory(r.category())) continue;
    seen.insert(r.category());
    // Patterns on them would never be scanned: a reader would think they mean something.
    EXPECT_TRUE(r.patterns().empty()) << r.id();
  }
  EXPECT_EQ(seen, (std::set<std::string>{"bulk_pii", "undecodable", "encrypted_content"}));
  EXPECT_EQ(RuleById("content.undecodable")->action(), v1::BLOCK);
  EXPECT_EQ(RuleById("content.encrypted")->action(), v1::ALERT);
  EXPECT_EQ(RuleById("content.encrypted")->severity(), v1::MEDIUM);
}

TEST(DefaultPack, EveryPatternSupportsStartOfMatchInStreamingMode) {
  // The engine may need where a match starts (to hand the value to the validator);
  // Hyperscan refuses SOM for large bounded repeats, so the pack must stay within it.
  for (const auto& r : DefaultPack().rules()) {
    for (const auto& p : r.patterns()) {
      hs_database_t* db = nullptr;
      hs_compile_error_t* err = nullptr;
      const unsigned flags = HS_FLAG_DOTALL | HS_FLAG_SOM_LEFTMOST | (r.case_insensitive() ? HS_FLAG_CASELESS : 0u);
      const bool ok = hs_compile(p.c_str(), flags, HS_MODE_STREAM | HS_MODE_SOM_HORIZON_SMALL, nullptr, &db, &err) ==
                      HS_SUCCESS;
      EXPECT_TRUE(ok) << r.id() << ": " << p << ": " << (ok ? "" : err->message);
      if (ok) hs_free_database(db);
      hs_free_compile_error(err);
    }
  }
}

TEST(DefaultPack, RoundTripsThroughYaml) {
  auto again = LoadPackYaml(PackToYaml(DefaultPack()), "default.yaml", RealOptions());
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->SerializeAsString(), DefaultPack().SerializeAsString());
}

struct Vectors {
  const char* rule;
  std::vector<std::string> positives;
  std::vector<std::string> negatives;
};

const std::vector<Vectors>& AllVectors() {
  static const std::vector<Vectors> v = {
      {"pii.credit_card",
       {"card=4556737586899855;", "Visa 4111 1111 1111 1111 exp 12/28", "mc: 5555-5555-5555-4444",
        "{\"pan\":\"2221000000000009\"}", "amex 3782 822463 10005", "diners 3056 930902 5904", "jcb 3530111333300000",
        // Maestro at 12 digits, compact and 4-4-4, and at 19
        "maestro 675964982648", "card 6759 6498 2648", "maestro 676770123450", "card 6304000000000000000"},
       {"order 4556737586899856", "uuid 550e8400-e29b-41d4-a716-446655440000", "ts 1732612345678",
        "id 1234567812345670", "4111 1111-1111 1111", "phone 0041446681800",
        // 12 digits outside the Maestro ranges, even with Luhn: no card
        "ref 411111111117", "ref 4111 1111 1117", "ean 400638133399"}},
      {"pii.iban",
       {"IBAN CH93 0076 2011 6238 5295 7", "iban=CH9300762011623852957&", "LI21 0881 0000 2324 013A A",
        "DE89 3704 0044 0532 0130 00", "FR1420041010050500013M02606", "GB82WEST12345698765432", "NO9386011117947"},
       {"CH93 0076 2011 6238 5295 8", "DE00370400440532013000", "XX9300762011623852957", "GB82WEST1234569876543"}},
      {"pii.ahv", {"AHV 756.9217.0769.85", "ahv_nr=7569217076985", "<avs>756.5260.1815.91</avs>"},
       {"756.9217.0769.86", "7569217076986", "756.921.70769.85", "EAN 7612345678900"}},
      {"pii.us_ssn", {"SSN 536-22-1234", "ssn: 772 01 9999", "{\"ssn\":\"001-01-0001\"}"},
       {"078-05-1120", "123-45-6789", "666-12-3456", "912-70-1234", "536-00-1234", "2026-11-26", "555-123-4567"}},
      {"pii.us_ssn.compact", {"SSN: 536221234", "social security 772019999"},
       {"order 536221234", "SSN: 666221234", "ssn 123456789"}},
      {"pii.uk_nino", {"NI number: AB 12 34 56 C", "nino=JG103759A"},
       {"part AB123456C", "NINO: QQ123456E", "NI number: GB123456A"}},
      {"pii.de_steuer_id", {"Steuer-ID: 86095742719", "IdNr 29 314 170 583"},
       {"Steuer-ID: 86095742718", "order 86095742719", "Steuer-ID: 12345678901"}},
      {"pii.email", {"mail jane.doe@bluewin.ch", "to=<hans.muster@hospital-zh.ch>", "\"email\":\"j+x@corp.co.uk\""},
       {"logo@2x.png", "user@example.com", "npm i lodash@4.17.21", "@media screen", "admin@localhost"}},
      {"pii.phone.international", {"call +41 44 668 18 00", "+1 650-253-0000", "+49 30 901820", "+41791234567"},
       {"v+1.2.3", "+41 12", "+999 123 456 789", "2026-11-26T10:00:00+01:00", "x+1234567"}},
      {"pii.phone.national", {"Tel. 044 668 18 00", "phone: (650) 253-0000", "Telefon 079 123 45 67"},
       {"044 668 18 00", "order 650-253-0000", "version 0.12.345.6789"}},
      {"secret.aws_access_key", {"aws_access_key_id = AKIAY34FZKBOKMUTVV7A", "ASIAY34FZKBOKMUTVV7A"},
       {"AKIAIOSFODNN7EXAMPLE", "AKIAI44QH8DHBEXAMPLE", "AKIAY34FZKBOKMUTVV7", "AIDAY34FZKBOKMUTVV7A"}},
      {"secret.private_key",
       {"-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n",
        "-----BEGIN EC PRIVATE KEY-----\r\nMHcCAQEEIBkg4LVWM9nuwNSk3yByxZpYRTBnVJk5oc7ER3MbCtkR\r\n",
        "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,3F17F5316E2BAC89BE28C1B2AB5A12AB\n\n"
        "MIIEpAIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6\n"},
       {"-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAu1SU1LfVLPH\n",
        "-----BEGIN PRIVATE KEY-----\n...\n-----END PRIVATE KEY-----",
        "-----BEGIN CERTIFICATE-----\nMIIDdzCCAl+gAwIBAgIEAgAAuTANBgkqhkiG9w0BAQUFADBaMQswCQYDVQQG\n"}},
      {"secret.jwt",
       {"Authorization: Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkphbmUifQ."
        "fwIuhy1JzBXJC5mbdytPx6b9TJFKFttHCHUrDxVEuDU"},
       {"eyJ0eXAiOiJKV1QifQ.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkphbmUifQ.c2ln", "eyJhbGciOiJIUzI1",
        "data:eyJuYW1lIjoiYm9iIn0="}},
      {"secret.github_token", {"token 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", "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"},
       {"ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", "ghp_5ZR3qa7yEeeby3abP3E2Zs8IQ9Y7aJ2Qpehm",
        "ghp_1234567890abcdefghijklmnopqrstuvwxyz"}},
      {"secret.github_fine_grained_token",
       {"github_pat_11ABCDEFG0abcdefghijkl_ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456"},
       {"github_pat_<your token here>"}},
      {"dump.pg_plain", {"--\n-- PostgreSQL database dump\n--\n", "-- Dumped from database version 15.5\n"},
       {"run pg_dump mydb > dump.sql to back up PostgreSQL"}},
      {"dump.pg_copy", {"COPY public.customers (id, email) FROM stdin;\n1\ta@b.ch\n\\.\n",
                        "COPY public.t (a, b) FROM stdin;\n\\N\tx\n\\.\n"},
       {"copy the file from stdin", "COPY t FROM '/tmp/x.csv';",
        // an empty table's block carries no row
        "COPY public.customers (id, email) FROM stdin;\n\\.\n"}},
      {"dump.pg_custom", {std::string("PGDMP\x01\x0f\x00\x04\x08\x01\x01\x01\x00\x00\x00", 15)},
       {"PGDMP is the magic of pg_dump custom archives"}},
      {"dump.mysqldump", {"-- MySQL dump 10.13  Distrib 8.0.35", "-- MariaDB dump 10.19  Distrib 10.11.6-MariaDB"},
       {"mysqldump --single-transaction db > db.sql"}},
      {"dump.mysqldump_rows",
       {"/*!40000 ALTER TABLE `customers` DISABLE KEYS */;\nINSERT INTO `customers` VALUES\n(1,'a'),\n(2,'b');\n"},
       // an empty table's data block: no INSERT between DISABLE and ENABLE KEYS
       {"/*!40000 ALTER TABLE `customers` DISABLE KEYS */;\n/*!40000 ALTER TABLE `customers` ENABLE KEYS */;\n",
        "INSERT INTO `customers` VALUES (1,'a');"}},
      {"dump.sqlite", {"PRAGMA foreign_keys=OFF;\nBEGIN TRANSACTION;\nCREATE TABLE users(id INTEGER);\n"},
       {"BEGIN TRANSACTION;\nCREATE TABLE users(id INTEGER);\n"}},
  };
  return v;
}

TEST(DefaultPack, EveryRuleFindsItsPositivesAndNoneOfItsHardNegatives) {
  std::set<std::string> covered;
  for (const auto& vec : AllVectors()) {
    const v1::Rule* rule = RuleById(vec.rule);
    ASSERT_NE(rule, nullptr) << vec.rule;
    covered.insert(vec.rule);
    for (const auto& text : vec.positives) EXPECT_FALSE(Findings(*rule, text).empty()) << vec.rule << " missed: " << text;
    for (const auto& text : vec.negatives) {
      const auto found = Findings(*rule, text);
      EXPECT_TRUE(found.empty()) << vec.rule << " fired on: " << text << " (" << (found.empty() ? "" : *found.begin()) << ")";
    }
  }
  // Rules that count instead of matching one value are covered by the corpus test; the
  // other message-level rules (undecodable, encrypted_content) match nothing.
  for (const auto& r : DefaultPack().rules()) {
    if (r.min_count() > 1 || IsMessageLevelCategory(r.category())) continue;
    EXPECT_TRUE(covered.count(r.id())) << r.id() << " has no test vectors";
  }
}

TEST(DefaultPack, CountingDumpRulesNeedManyRows) {
  const v1::Rule* inserts = RuleById("dump.sql_insert_rows");
  const v1::Rule* tuples = RuleById("dump.sql_extended_insert");
  ASSERT_NE(inserts, nullptr);
  ASSERT_NE(tuples, nullptr);
  std::string seed, dump = "INSERT INTO `customers` VALUES ";
  for (int i = 0; i < 5; ++i) seed += "INSERT INTO users VALUES (" + std::to_string(i) + ",'x');\n";
  for (int i = 0; i < 60; ++i) dump += (i ? ",(" : "(") + std::to_string(i) + ",'x')";
  // Each statement / separator is one match; the engine compares the count to min_count.
  EXPECT_FALSE(Findings(*inserts, seed).empty());
  EXPECT_LT(5u, inserts->min_count());
  EXPECT_FALSE(Findings(*tuples, dump).empty());
  EXPECT_GE(59u, tuples->min_count());
}

}  // namespace
}  // namespace egressguard::rules
