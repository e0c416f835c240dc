// Proves the pack loader accepts the protobuf JSON mapping in YAML, refuses every kind of
// bad pack whole with file:line:column reasons, and round-trips through PackToYaml.
#include "rules/pack_loader.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>

#include <google/protobuf/util/message_differencer.h>

namespace egressguard::rules {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr const char* kGood = R"(name: test-pack
version: "2026.11.1"
description: a pack for tests
bulk_pii_threshold: 30
rules:
  - id: pii.card
    version: 2
    category: credit_card
    description: cards
    patterns:
      - '4[0-9]{12}(?:[0-9]{3})?'
      - '5[1-5][0-9]{14}'
    validator: credit_card
    context:
      keywords: [card, visa]
      window_before: 32
      window_after: 8
      effect: BOOST
    exclusions:
      - literal: "4111111111111111"
        reason: published test card
      - regex: '4242(?:4242){3}'
    action: BLOCK
    severity: HIGH
  - id: pii.email
    category: email
    patterns: ['[a-z0-9._%+-]{1,64}@[a-z0-9.-]{1,253}\.[a-z]{2,24}']
    validator: email
    minCount: 3
    action: alert
    caseInsensitive: true
    enabled: false
)";

LoadOptions KnownValidators() {
  LoadOptions o;
  o.known_validator = [](std::string_view v) { return v == "credit_card" || v == "email"; };
  return o;
}

// Loads `text` and returns the error text (empty when it loaded).
std::string Errors(const std::string& text, const LoadOptions& opts = KnownValidators()) {
  auto p = LoadPackYaml(text, "p.yaml", opts);
  return p.ok() ? std::string() : std::string(p.status().message());
}

std::string GoodWith(const std::string& from, const std::string& to) {
  std::string s = kGood;
  const size_t at = s.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  return s.replace(at, from.size(), to);
}

TEST(PackLoader, LoadsSnakeAndCamelNamesEnumsAndDefaults) {
  auto p = LoadPackYaml(kGood, "p.yaml", KnownValidators());
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->name(), "test-pack");
  EXPECT_EQ(p->version(), "2026.11.1");
  EXPECT_EQ(p->bulk_pii_threshold(), 30u);
  ASSERT_EQ(p->rules_size(), 2);
  const auto& card = p->rules(0);
  EXPECT_EQ(card.patterns_size(), 2);
  EXPECT_EQ(card.patterns(0), "4[0-9]{12}(?:[0-9]{3})?");
  EXPECT_EQ(card.context().effect(), v1::Context::BOOST);
  EXPECT_EQ(card.context().window_before(), 32u);
  EXPECT_EQ(card.exclusions(0).literal(), "4111111111111111");
  EXPECT_EQ(card.exclusions(1).regex(), "4242(?:4242){3}");
  EXPECT_EQ(card.action(), v1::BLOCK);
  EXPECT_EQ(card.severity(), v1::HIGH);
  EXPECT_TRUE(card.enabled()) << "a rule without `enabled` runs";
  const auto& email = p->rules(1);
  EXPECT_EQ(email.min_count(), 3u);
  EXPECT_EQ(email.action(), v1::ALERT);
  EXPECT_TRUE(email.case_insensitive());
  EXPECT_FALSE(email.enabled());
}

TEST(PackLoader, UnknownFieldNamesTheFieldItsLineAndTheAllowedOnes) {
  const std::string e = Errors(GoodWith("    validator: credit_card\n", "    validator: credit_card\n    colour: red\n"));
  EXPECT_THAT(e, HasSubstr("p.yaml:14:5: unknown field 'colour' in Rule; allowed: id, version, category"));
  EXPECT_THAT(Errors(std::string(kGood) + "extra: 1\n"), HasSubstr("p.yaml:33:1: unknown field 'extra' in RulePack"));
}

TEST(PackLoader, WrongTypesAreRefusedWithTheirPosition) {
  EXPECT_THAT(Errors(GoodWith("bulk_pii_threshold: 30", "bulk_pii_threshold: many")),
              HasSubstr("p.yaml:4:21: wrong type: 'bulk_pii_threshold' must be an integer"));
  EXPECT_THAT(Errors(GoodWith("    version: 2\n", "    version: -2\n")), HasSubstr("p.yaml:7:14: wrong type"));
  EXPECT_THAT(Errors(GoodWith("enabled: false", "enabled: nope")), HasSubstr("must be true or false"));
  EXPECT_THAT(Errors(GoodWith("    category: credit_card", "    category: [a, b]")),
              HasSubstr("p.yaml:8:15: wrong type: 'category' must be a single value, not a list"));
  EXPECT_THAT(Errors(GoodWith("      keywords: [card, visa]", "      keywords: card")),
              HasSubstr("wrong type: 'keywords' must be a list"));
  EXPECT_THAT(Errors("- a\n- b\n"), HasSubstr("p.yaml:1:1: a pack must be a mapping"));
  EXPECT_THAT(Errors(GoodWith("    context:\n", "    context: 3\n    unused:\n")), HasSubstr("Context must be a mapping"));
}

TEST(PackLoader, BadEnumValueListsTheAllowedOnes) {
  EXPECT_THAT(Errors(GoodWith("action: BLOCK", "action: DENY")),
              HasSubstr("p.yaml:23:13: bad value 'DENY' for 'action'; allowed: ALLOW, ALERT, BLOCK"));
  EXPECT_THAT(Errors(GoodWith("action: BLOCK", "action: ACTION_UNSPECIFIED")), HasSubstr("bad value"));
  EXPECT_THAT(Errors(GoodWith("effect: BOOST", "effect: boost_a_lot")),
              HasSubstr("allowed: REQUIRE, BOOST, SUPPRESS"));
}

// Message-level rules are raised from the message as a whole: no patterns needed. Any
// other category still needs at least one.
TEST(PackLoader, MessageLevelRulesNeedNoPatterns) {
  const std::string pack = R"(name: p
version: "1"
rules:
  - {id: bulk, category: bulk_pii, action: BLOCK}
  - {id: unreadable, category: undecodable, action: BLOCK, severity: HIGH}
  - {id: locked, category: encrypted_content, action: ALERT, severity: MEDIUM}
)";
  auto p = LoadPackYaml(pack, "p.yaml", KnownValidators());
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_EQ(p->rules_size(), 3);
  EXPECT_EQ(p->rules(1).category(), "undecodable");
  EXPECT_EQ(p->rules(1).action(), v1::BLOCK);
  EXPECT_EQ(p->rules(2).category(), "encrypted_content");
  EXPECT_TRUE(p->rules(2).patterns().empty());
  // Round trip, and the JSON form the API takes.
  auto again = LoadPackYaml(PackToYaml(*p), "again.yaml", KnownValidators());
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->SerializeAsString(), p->SerializeAsString());
  EXPECT_TRUE(PackFromJson(R"({"name":"p","version":"1","rules":[{"id":"u","category":"encrypted_content","action":"BLOCK"}]})")
                  .ok());
  EXPECT_THAT(Errors("name: p\nversion: '1'\nrules:\n  - {id: x, category: encrypted, action: ALERT}\n"),
              HasSubstr("p.yaml:4:5: rule 'x': empty patterns: a rule needs at least one (only bulk_pii, undecodable and "
                        "encrypted_content rules have none)"));
}

TEST(PackLoader, RuleChecks) {
  EXPECT_THAT(Errors(GoodWith("  - id: pii.email", "  - id: pii.card")),
              HasSubstr("p.yaml:25:5: duplicate rule id 'pii.card' (first defined at p.yaml:6:5)"));
  EXPECT_THAT(Errors(GoodWith("  - id: pii.email", "  - id: Pii Email")),
              HasSubstr("p.yaml:25:9: invalid rule id 'Pii Email'"));
  EXPECT_THAT(Errors(GoodWith("    patterns: ['[a-z0-9._%+-]{1,64}@[a-z0-9.-]{1,253}\\.[a-z]{2,24}']", "    patterns: []")),
              HasSubstr("rule 'pii.email': empty patterns"));
  EXPECT_THAT(Errors(GoodWith("      - '5[1-5][0-9]{14}'", "      - ''")), HasSubstr("p.yaml:12:9: empty rule 'pii.card' pattern 2"));
  EXPECT_THAT(Errors(GoodWith("validator: email", "validator: rot13")),
              HasSubstr("p.yaml:28:16: rule 'pii.email': unknown validator 'rot13'"));
  EXPECT_THAT(Errors(GoodWith("minCount: 3", "minCount: 2000000")), HasSubstr("min_count 2000000 out of range"));
  // bulk_pii's record threshold: a pack field, bounded like bulk_pii_threshold.
  EXPECT_THAT(Errors(GoodWith("bulk_pii_threshold: 30", "bulk_pii_threshold: 30\nmin_records: 2000000")),
              HasSubstr("min_records 2000000 out of range 0..1000000"));
  EXPECT_THAT(Errors(GoodWith("bulk_pii_threshold: 30", "bulk_pii_threshold: 30\nmin_records: lots")),
              HasSubstr("wrong type: 'min_records' must be an integer"));
  EXPECT_THAT(Errors(GoodWith("window_before: 32", "window_before: 100000")),
              HasSubstr("p.yaml:16:22: rule 'pii.card': context window_before 100000 out of range 0..2048"));
  EXPECT_THAT(Errors(GoodWith("window_before: 32\n      window_after: 8", "window_before: 0")),
              HasSubstr("context window is empty"));
  EXPECT_THAT(Errors(GoodWith("      effect: BOOST\n", "")), HasSubstr("context needs an effect"));
  EXPECT_THAT(Errors(GoodWith("    action: alert\n", "")), HasSubstr("rule 'pii.email': missing action"));
  EXPECT_THAT(Errors(GoodWith("    category: email\n", "")), HasSubstr("rule 'pii.email': missing category"));
  EXPECT_THAT(Errors(GoodWith("      - literal: \"4111111111111111\"", "      - literal: \"4111111111111111\"\n        regex: x")),
              HasSubstr("'literal' and 'regex' are alternatives"));
  EXPECT_THAT(Errors(GoodWith("name: test-pack\n", "")), HasSubstr("pack without a name"));
}

TEST(PackLoader, BulkPiiRuleNeedsNoPatterns) {
  const std::string pack = "name: n\nversion: '1'\nrules:\n  - id: bulk\n    category: bulk_pii\n    action: BLOCK\n";
  EXPECT_EQ(Errors(pack), "");
}

TEST(PackLoader, ReportsEveryProblemAndLoadsNothing) {
  std::string bad = GoodWith("action: BLOCK", "action: DENY");
  bad = bad.replace(bad.find("validator: email"), 16, "validator: rot13");
  const std::string e = Errors(bad);
  EXPECT_THAT(e, AllOf(HasSubstr("rule pack refused (2 problems)"), HasSubstr("DENY"), HasSubstr("rot13")));
}

TEST(PackLoader, PatternCheckerErrorsCarryThePatternLine) {
  LoadOptions o = KnownValidators();
  o.check_pattern = [](std::string_view p, bool) {
    return p.find("{14}") != std::string_view::npos ? absl::InvalidArgumentError("no fourteens") : absl::OkStatus();
  };
  EXPECT_THAT(Errors(kGood, o), HasSubstr("p.yaml:12:9: rule 'pii.card' pattern 2 refused: no fourteens"));
}

TEST(PackLoader, YamlSyntaxErrorsAndOddDocuments) {
  EXPECT_THAT(Errors("name: [unclosed\n"), HasSubstr("YAML syntax error"));
  EXPECT_THAT(Errors(""), HasSubstr("empty pack"));
  EXPECT_THAT(Errors(std::string(kGood) + "---\nname: second\n"),
              HasSubstr("p.yaml:33:1: YAML syntax error: a second YAML document starts here"));
  // Document markers around the one document are fine.
  EXPECT_EQ(Errors("---\n" + std::string(kGood) + "...\n"), "");
  EXPECT_THAT(Errors("name: a\nname: b\nversion: '1'\n"), HasSubstr("duplicate field 'name'"));
}

// yaml-cpp 0.7's LoadAll reads a stray ',' after (or instead of) the first document as an
// endless run of empty documents (upstream issue 1040) and fills memory with them: five
// bytes were enough. The loader stops at the second document, at once, and says where.
TEST(PackLoader, StrayContentAfterTheDocumentIsRefusedAtOnce) {
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_THAT(Errors("[a]\n,"), HasSubstr("p.yaml:2:1: YAML syntax error: a second YAML document starts here"));
  EXPECT_THAT(Errors(","), HasSubstr("p.yaml:1:1: YAML syntax error: a second YAML document"));
  // Inside a block map a stray ',' is a plain syntax error.
  EXPECT_THAT(Errors(std::string(kGood) + ",\n"), HasSubstr("p.yaml:33:1: YAML syntax error: end of map not found"));
  for (const std::string& text : std::vector<std::string>{"[a],", "[a]\n,\n,\n,\n", "{}\n,", "- a\n---\n,", "'a'\n,", "[a]\n, ,",
                                 std::string(kGood) + "---\n", "[a]\n,\n" + std::string(kGood)}) {
    EXPECT_THAT(Errors(text), HasSubstr("second YAML document")) << text;
  }
  // The same through the JSON entry point and from a file.
  EXPECT_THAT(std::string(PackFromJson("[a]\n,").status().message()), HasSubstr("second YAML document"));
  const std::string path = ::testing::TempDir() + "/stray-comma.yaml";
  std::ofstream(path) << "[a]\n,";
  EXPECT_THAT(std::string(LoadPackFile(path, {}).status().message()), HasSubstr(path + ":2:1:"));
  std::filesystem::remove(path);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
}

TEST(PackLoader, RefusesStringsThatAreNotUtf8) {
  EXPECT_FALSE(Errors("name: \"a\xff\xfe\"\nversion: '1'\n").empty());
  EXPECT_FALSE(Errors("name: n\nversion: '\xc0\xaf'\n").empty());  // overlong '/'
  EXPECT_EQ(Errors("name: Zürich\nversion: '1'\n"), "");
}

TEST(PackLoader, AliasExpansionIsBounded) {
  // 2000 rules that each alias one 2000-pattern list: 4 million nodes from a small file.
  std::string text = "name: n\nversion: '1'\nrules:\n  - &r {id: a, category: c, action: BLOCK, patterns: &p [";
  for (int i = 0; i < 2000; ++i) text += i ? ", x" : "x";
  text += "]}\n";
  for (int i = 0; i < 2000; ++i) text += "  - *r\n";
  const std::string e = Errors(text);
  EXPECT_THAT(e, HasSubstr("pack expands to more than 200000 YAML nodes"));
}

TEST(PackLoader, JsonUsesTheSameSchema) {
  auto p = PackFromJson(R"({"name":"j","version":"1","rules":[{"id":"r1","category":"email","patterns":["a@b"],
                           "action":"ALERT","caseInsensitive":true,"minCount":2}]})");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->rules(0).min_count(), 2u);
  auto bad = PackFromJson(R"({"name":"j","version":"1","rules":[{"id":"r1","colour":"x"}]})");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("<json>:1:47: unknown field 'colour'"));
}

TEST(PackToYaml, RoundTripsToAnEqualPack) {
  auto p = LoadPackYaml(kGood, "p.yaml", KnownValidators());
  ASSERT_TRUE(p.ok()) << p.status();
  p->mutable_rules(0)->add_patterns("\"quoted\" \\d{3} 'single' : # not a comment\n\t");
  p->set_version("1.10");
  const std::string yaml = PackToYaml(*p);
  auto again = LoadPackYaml(yaml, "out.yaml", KnownValidators());
  ASSERT_TRUE(again.ok()) << again.status() << "\n" << yaml;
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(*p, *again)) << yaml;
  EXPECT_THAT(yaml, HasSubstr("enabled: false"));
}

class PackDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("egressguard-packdir-" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  void Write(const std::string& name, const std::string& text) { std::ofstream(dir_ / name) << text; }
  std::filesystem::path dir_;
};

TEST_F(PackDirTest, MergesRuleFilesAfterPackYaml) {
  Write("pack.yaml", "name: d\nversion: '3'\nbulk_pii_threshold: 10\n");
  Write("20-b.yaml", "rules:\n  - {id: b, category: email, patterns: [x], action: ALERT}\n");
  Write("10-a.yml", "rules:\n  - {id: a, category: email, patterns: [x], action: ALERT}\n");
  Write("notes.txt", "not a pack file");
  auto p = LoadPackAny(dir_.string(), KnownValidators());
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->name(), "d");
  EXPECT_EQ(p->bulk_pii_threshold(), 10u);
  ASSERT_EQ(p->rules_size(), 2);
  EXPECT_EQ(p->rules(0).id(), "a");
  EXPECT_EQ(p->rules(1).id(), "b");
}

TEST_F(PackDirTest, RefusesDuplicatesAcrossFilesPackFieldsOutsidePackYamlAndMissingPackYaml) {
  Write("a.yaml", "rules:\n  - {id: a, category: email, patterns: [x], action: ALERT}\n");
  auto missing = LoadPackDir(dir_.string(), {});
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("no pack.yaml"));
  Write("pack.yaml", "name: d\nversion: '3'\n");
  Write("b.yaml", "version: '4'\nrules:\n  - {id: a, category: email, patterns: [x], action: ALERT}\n");
  auto p = LoadPackDir(dir_.string(), {});
  ASSERT_FALSE(p.ok());
  const std::string e(p.status().message());
  EXPECT_THAT(e, HasSubstr("b.yaml:1:1: 'version' belongs in pack.yaml"));
  EXPECT_THAT(e, HasSubstr("b.yaml:3:5: duplicate rule id 'a' (first defined at " + (dir_ / "a.yaml").string() + ":2:5)"));
}

TEST(PackFiles, MissingFileIsNotFound) {
  auto p = LoadPackAny("/nonexistent/egressguard/pack.yaml");
  EXPECT_EQ(p.status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace egressguard::rules
