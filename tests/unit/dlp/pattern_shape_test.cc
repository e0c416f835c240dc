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

std::string Bytes(const std::bitset<256>& set) {
  std::string out;
  for (size_t b = 0; b < 256; ++b) {
    if (set.test(b)) out.push_back(static_cast<char>(b));
  }
  return out;
}

// The leading byte sets route letter-led patterns (IBAN, NINO) to the prefix test; a set
// that is too small would drop matches, so each is checked through optional parts,
// alternations, repeats and case folding.
TEST(PatternShapeTest, PrefixSetsOfLeadingBytes) {
  auto iban = AnalyzePattern(R"(\b(?:CH|LI)[0-9]{2}(?: [A-Z0-9]{4}){4} [A-Z0-9]{1}\b)", false);
  ASSERT_TRUE(iban);
  EXPECT_EQ(Bytes(iban->prefix[0]), "CL");
  EXPECT_EQ(Bytes(iban->prefix[1]), "HI");
  EXPECT_EQ(Bytes(iban->prefix[2]), "0123456789");
  EXPECT_EQ(Bytes(iban->prefix[3]), "0123456789");
  EXPECT_EQ(iban->min_len, 26u);

  auto optional = AnalyzePattern(R"(a?b{0,2}cd)", false);  // "cd", "acd", "bbcd", "abcd"...
  ASSERT_TRUE(optional);
  EXPECT_EQ(Bytes(optional->prefix[0]), "abc");
  EXPECT_EQ(Bytes(optional->prefix[1]), "bcd");
  EXPECT_EQ(optional->min_len, 2u);

  auto repeat = AnalyzePattern(R"((?:xy){2,}z)", false);
  ASSERT_TRUE(repeat);
  EXPECT_EQ(Bytes(repeat->prefix[0]), "x");
  EXPECT_EQ(Bytes(repeat->prefix[2]), "x");
  EXPECT_EQ(Bytes(repeat->prefix[3]), "y");
  EXPECT_EQ(repeat->min_len, 5u);

  auto caseless = AnalyzePattern("ab", true);
  ASSERT_TRUE(caseless);
  EXPECT_EQ(Bytes(caseless->prefix[0]), "Aa");
}

}  // namespace
}  // namespace egressguard::dlp
