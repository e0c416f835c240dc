// Proves the pattern reader routes only digit-and-separator patterns to the digit gate, and gives up on syntax it does not know.
#include "dlp/pattern_shape.h"

#include <gtest/gtest.h>

namespace egressguard::dlp {
namespace {

bool OnlyRunBytes(const PatternShape& s) {
  for (size_t b = 0; b < 256; ++b) {
    if (s.alphabet.test(b) && std::string_view("0123456789 -./()+").find(static_cast<char>(b)) == std::string_view::npos) {
      return false;
    }
  }
  return true;
}

TEST(PatternShapeTest, DigitPatterns) {
  auto card = AnalyzePattern("[2-6][0-9]{3}[ -][0-9]{4}[ -][0-9]{4}[ -][0-9]{4}(?:[ -][0-9]{3})?", false);
  ASSERT_TRUE(card);
  EXPECT_TRUE(OnlyRunBytes(*card));
  EXPECT_EQ(card->min_digits, 16u);
  auto phone = AnalyzePattern(R"(\+[1-9][0-9]{0,3}(?:[ ./-]?\(?[0-9]{1,5}\)?){2,6})", false);
  ASSERT_TRUE(phone);
  EXPECT_TRUE(OnlyRunBytes(*phone));
  EXPECT_EQ(phone->min_digits, 3u);
  auto ssn = AnalyzePattern(R"(\b\d{3}-\d{2}-\d{4}\b)", false);
  ASSERT_TRUE(ssn);
  EXPECT_TRUE(OnlyRunBytes(*ssn));
  EXPECT_EQ(ssn->min_digits, 9u);
  auto alt = AnalyzePattern("756[0-9]{10}|1[0-9]{2}", false);
  ASSERT_TRUE(alt);
  EXPECT_EQ(alt->min_digits, 3u);
}

TEST(PatternShapeTest, LettersAndWildcardsAreNotRuns) {
  auto iban = AnalyzePattern("(?:CH|LI)[0-9]{2}[A-Z0-9]{17}", false);
  ASSERT_TRUE(iban);
  EXPECT_FALSE(OnlyRunBytes(*iban));
  auto dot = AnalyzePattern("[0-9]{3}.[0-9]{3}", false);
  ASSERT_TRUE(dot);
  EXPECT_FALSE(OnlyRunBytes(*dot));
  auto neg = AnalyzePattern("[^a][0-9]", false);
  ASSERT_TRUE(neg);
  EXPECT_FALSE(OnlyRunBytes(*neg));
  auto caseless = AnalyzePattern("(?i)x[0-9]", false);
  ASSERT_TRUE(caseless);
  EXPECT_TRUE(caseless->alphabet.test('X'));
}

TEST(PatternShapeTest, AnchorsAndUnknownSyntax) {
  EXPECT_TRUE(AnalyzePattern("^[0-9]{3}$", false)->anchored);
  EXPECT_FALSE(AnalyzePattern("(?=[0-9])[0-9]{3}", false));
  EXPECT_FALSE(AnalyzePattern(R"(([0-9])\1)", false));
  EXPECT_FALSE(AnalyzePattern("[0-9", false));
  EXPECT_FALSE(AnalyzePattern(R"(\p{N}{3})", false));
}

}  // namespace
}  // namespace egressguard::dlp
