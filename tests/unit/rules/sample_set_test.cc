// Proves sidecars parse strictly and the evaluator's precision/recall arithmetic is right.
#include "rules/sample_set.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

namespace egressguard::rules {
namespace {

using ::testing::HasSubstr;

TEST(ParseExpect, ReadsCategoriesCommentsAndNone) {
  auto c = ParseExpect("# a comment\ncredit_card\n\n email  # trailing\n", "x.expect");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(*c, (std::set<std::string>{"credit_card", "email"}));
  auto n = ParseExpect("none\n", "x.expect");
  ASSERT_TRUE(n.ok());
  EXPECT_TRUE(n->empty());
}

TEST(ParseExpect, RefusesBadLinesEmptyFilesAndNoneWithCategories) {
  EXPECT_THAT(std::string(ParseExpect("email\nCredit Card\n", "x.expect").status().message()),
              HasSubstr("x.expect:2: 'Credit Card' is not a category"));
  EXPECT_FALSE(ParseExpect("", "x.expect").ok());
  EXPECT_FALSE(ParseExpect("none\nemail\n", "x.expect").ok());
  EXPECT_THAT(std::string(ParseExpect("email 0\n", "x.expect").status().message()),
              HasSubstr("x.expect:1: 'email 0': a category's count is a number from 1 to 999999999"));
  EXPECT_THAT(std::string(ParseExpect("email 3x\n", "x.expect").status().message()),
              HasSubstr("'email 3x' is not a category"));
}

TEST(ParseExpect, ReadsLabelledCounts) {
  std::map<std::string, uint64_t> counts;
  auto c = ParseExpect("email 3\nbulk_pii\t300  # records\niban\n", "x.expect", &counts);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(*c, (std::set<std::string>{"bulk_pii", "email", "iban"}));
  EXPECT_EQ(counts, (std::map<std::string, uint64_t>{{"bulk_pii", 300}, {"email", 3}}));
  // Callers that want categories only read the same files.
  auto plain = ParseExpect("email 3\n", "x.expect");
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(*plain, (std::set<std::string>{"email"}));
}

TEST(Evaluator, CountsPerCategory) {
  Evaluator ev;
  ev.Add(Sample{"a", {"email"}}, {"email"});
  ev.Add(Sample{"b", {"email", "phone"}}, {"email"});
  ev.Add(Sample{"c", {}}, {"phone"});
  ev.Add(Sample{"d", {"iban"}}, {"iban", "email"});
  const Evaluation e = ev.Result();
  ASSERT_EQ(e.scores.size(), 3u);
  EXPECT_EQ(e.scores[0].category, "email");
  EXPECT_EQ(e.scores[0].true_positives, 2u);
  EXPECT_EQ(e.scores[0].false_positives, 1u);
  EXPECT_DOUBLE_EQ(e.scores[0].precision(), 2.0 / 3.0);
  EXPECT_DOUBLE_EQ(e.scores[0].recall(), 1.0);
  EXPECT_EQ(e.scores[2].category, "phone");
  EXPECT_DOUBLE_EQ(e.scores[2].precision(), 0.0);
  EXPECT_DOUBLE_EQ(e.scores[2].recall(), 0.0);
  EXPECT_EQ(e.mismatches.size(), 3u);
  const auto below = BelowMinimum(e, 0.98);
  EXPECT_EQ(below, (std::vector<std::string>{"email precision 0.667", "phone precision 0.000", "phone recall 0.000"}));
  EXPECT_THAT(FormatEvaluation(e), HasSubstr("missed phone: b"));
}

TEST(LoadSamples, FindsSidecarsRecursivelyAndRefusesOrphans) {
  const auto dir = std::filesystem::temp_directory_path() / "egressguard-samples-test";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir / "sub");
  std::ofstream(dir / "sub" / "b.json") << "{}";
  std::ofstream(dir / "sub" / "b.json.expect") << "email\n";
  std::ofstream(dir / "a.txt") << "x";
  std::ofstream(dir / "a.txt.expect") << "none\n";
  std::ofstream(dir / "README.md") << "not a sample";
  auto s = LoadSamples(dir.string());
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_EQ(s->size(), 2u);
  EXPECT_EQ((*s)[0].path, (dir / "a.txt").string());
  EXPECT_TRUE((*s)[0].expected.empty());
  EXPECT_EQ((*s)[1].expected, (std::set<std::string>{"email"}));
  std::ofstream(dir / "orphan.expect") << "email\n";
  EXPECT_THAT(std::string(LoadSamples(dir.string()).status().message()), HasSubstr("sidecar without its sample"));
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace egressguard::rules
