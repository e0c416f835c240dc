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

TEST(ParseExpectation, ReadsLocatedOccurrencesSortedAndRefusesBadOnes) {
  auto e = ParseExpectation("email 2\nphone\nat phone 40-56\nat email 0-17  # first\nat email 20-31\n", "x.expect");
  ASSERT_TRUE(e.ok()) << e.status();
  ASSERT_EQ(e->located.size(), 3u);
  EXPECT_EQ(e->located[0].category, "email");
  EXPECT_EQ(e->located[0].start, 0u);
  EXPECT_EQ(e->located[0].end, 17u);
  EXPECT_EQ(e->located[2].category, "phone");
  EXPECT_EQ(e->counts.at("email"), 2u);
  // Offsets must be a range, of a category the sidecar lists.
  for (const char* bad : {"email\nat email 17-17\n", "email\nat email 9\n", "email\nat email x-9\n",
                          "email\nat Email 1-9\n", "email\nat email 1-99999999999999\n"}) {
    auto r = ParseExpectation(bad, "x.expect");
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_THAT(std::string(r.status().message()), HasSubstr("x.expect:2: ")) << bad;
  }
  auto unlisted = ParseExpectation("email\nat iban 1-9\n", "x.expect");
  ASSERT_FALSE(unlisted.ok());
  EXPECT_THAT(std::string(unlisted.status().message()),
              HasSubstr("x.expect:2: occurrence of 'iban', a category the sidecar does not list"));
}

TEST(OccurrenceEvaluator, MatchesOneReportPerLabelSkipsUnlocatedAndCountsStrays) {
  OccurrenceEvaluator ev;
  Sample s{"a", {"email", "phone", "iban"}, {}, {{"email", 0, 17}, {"email", 20, 31}, {"phone", 40, 56}}};
  // email 0-17 found; email 20-31 reported twice (a value counted twice: one is false);
  // phone missed; an e-mail where none is labelled is false; iban is unlocated (no `at`
  // lines), so its reports are left to the per-file score; a card is not listed at all.
  ev.Add(s, {{"email", 2, 17}, {"email", 20, 31}, {"email", 25, 31}, {"email", 60, 70}, {"iban", 80, 90},
             {"credit_card", 90, 106}});
  const Evaluation e = ev.Result();
  EXPECT_EQ(ev.labelled(), 3u);
  EXPECT_EQ(ev.unlocated_pairs(), 1u);
  ASSERT_EQ(e.scores.size(), 3u);  // credit_card, email, phone: no iban row
  EXPECT_EQ(e.scores[0].category, "credit_card");
  EXPECT_EQ(e.scores[0].false_positives, 1u);
  EXPECT_EQ(e.scores[1].category, "email");
  EXPECT_EQ(e.scores[1].true_positives, 2u);
  EXPECT_EQ(e.scores[1].false_positives, 2u);
  EXPECT_EQ(e.scores[1].false_negatives, 0u);
  EXPECT_EQ(e.scores[2].category, "phone");
  EXPECT_EQ(e.scores[2].false_negatives, 1u);
  const std::string table = FormatEvaluation(e);
  EXPECT_THAT(table, HasSubstr("missed phone: a:40-56"));
  EXPECT_THAT(table, HasSubstr("false  email: a:25-31"));
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
