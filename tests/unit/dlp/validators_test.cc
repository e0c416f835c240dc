// Proves the check-digit validators accept known-valid and refuse known-invalid vectors.
#include "dlp/validators.h"

#include <gtest/gtest.h>

namespace egressguard::dlp {

TEST(Luhn, AcceptsPublishedTestCards) {
  EXPECT_TRUE(LuhnValid("4111111111111111"));
  EXPECT_TRUE(LuhnValid("4111 1111 1111 1111"));
  EXPECT_TRUE(LuhnValid("5500-0000-0000-0004"));
  EXPECT_TRUE(LuhnValid("378282246310005"));
}

TEST(Luhn, RefusesOneDigitOff) {
  EXPECT_FALSE(LuhnValid("4111111111111112"));
  EXPECT_FALSE(LuhnValid("378282246310006"));
  EXPECT_FALSE(LuhnValid("0"));
  EXPECT_FALSE(LuhnValid(""));
}

}  // namespace egressguard::dlp
