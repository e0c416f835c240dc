// Proves redacted evidence keeps only the non-secret part of each kind of value, and
// that normalization makes differently formatted copies of one value equal.
#include "dlp/redact.h"

#include <gtest/gtest.h>

#include <string>

namespace egressguard::dlp {

namespace {

// Counts characters of `raw` (a secret part) that survive in `evidence` in order.
size_t RawCharsShown(const std::string& evidence, const std::string& secret) {
  size_t shown = 0;
  for (char c : evidence) {
    if (c != '*' && secret.find(c) != std::string::npos) ++shown;
  }
  return shown;
}

}  // namespace

TEST(Redact, ShowsIssuerAndLastFourOfACard) {
  EXPECT_EQ(Redact("credit_card", "4111111111111111"), "4111 **** **** 1111");
  EXPECT_EQ(Redact("credit_card", "4111-1111-1111-1111"), "4111 **** **** 1111");
  EXPECT_EQ(Redact("credit_card", "378282246310005"), "3782 **** ***0 005");
}

TEST(Redact, ShowsCountryCheckAndLastFourOfAnIban) {
  EXPECT_EQ(Redact("iban", "CH9300762011623852957"), "CH93 **** **** **** *295 7");
  EXPECT_EQ(Redact("iban", "CH93 0076 2011 6238 5295 7"), "CH93 **** **** **** *295 7");
}

TEST(Redact, KeepsOnlyTheEndOfNationalIds) {
  EXPECT_EQ(Redact("ahv", "756.9217.0769.85"), "756.****.**69.85");
  EXPECT_EQ(Redact("us_ssn", "536-22-6789"), "***-**-6789");
  EXPECT_EQ(Redact("uk_nino", "AB 12 34 56 C"), "AB******C");
  EXPECT_EQ(Redact("de_steuer_id", "29314170583"), "*******0583");
}

TEST(Redact, KeepsDomainAndFirstLetterOfAnEmail) {
  EXPECT_EQ(Redact("email", "jane.doe@Example.com"), "j***@example.com");
}

TEST(Redact, MasksSecretsToPrefixAndFourCharacters) {
  EXPECT_EQ(Redact("aws_access_key", "AKIAIOSFODNN7EXAMPLE"), "AKIA************MPLE");
  const std::string token = "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";
  const std::string ev = Redact("github_token", token);
  EXPECT_EQ(ev.substr(0, 4), "ghp_");
  EXPECT_EQ(ev.size(), token.size());
  EXPECT_LE(RawCharsShown(ev.substr(4), token.substr(4)), 4u);
}

TEST(Redact, NeverShowsKeyOrTokenBodies) {
  const std::string pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6";
  EXPECT_EQ(Redact("private_key", pem), "-----BEGIN RSA PRIVATE KEY----- [redacted]");
  const std::string jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.fwIuhy1JzBXJC5mbdytPx6b9TJFKFttHCHU";
  EXPECT_EQ(Redact("jwt", jwt), "eyJhbGciOiJIUzI1NiJ9.****.****");
}

TEST(Redact, MasksPhoneMiddleDigits) {
  EXPECT_EQ(Redact("phone", "+41 44 668 18 00"), "+41 ** *** ** 00");
}

TEST(Redact, MasksUnknownCategoriesAndShortValuesEntirely) {
  EXPECT_EQ(Redact("custom", "abc"), "****");
  EXPECT_EQ(Redact("custom", "secretvalue1234"), "se***********34");
  EXPECT_EQ(Redact("credit_card", "41"), "****");
}

TEST(NormalizeValue, MakesFormattingVariantsEqual) {
  EXPECT_EQ(NormalizeValue("credit_card", "4111 1111 1111 1111"), NormalizeValue("credit_card", "4111-1111-1111-1111"));
  EXPECT_EQ(NormalizeValue("iban", "CH93 0076 2011 6238 5295 7"), "CH9300762011623852957");
  EXPECT_EQ(NormalizeValue("ahv", "756.9217.0769.85"), "7569217076985");
  EXPECT_EQ(NormalizeValue("email", "Jane.Doe@Example.COM"), "jane.doe@example.com");
  EXPECT_EQ(NormalizeValue("phone", "+41 44 668 18 00"), NormalizeValue("phone", "0041446681800"));
  EXPECT_EQ(NormalizeValue("uk_nino", "ab 12 34 56 c"), "AB123456C");
  // Case carries meaning in keys and tokens.
  EXPECT_NE(NormalizeValue("aws_access_key", "AKIAIOSFODNN7EXAMPLE"), NormalizeValue("aws_access_key", "akiaiosfodnn7example"));
}

}  // namespace egressguard::dlp
