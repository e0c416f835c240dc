// Proves rule ids are limited to the alphabet that is safe in verdicts, labels and pages.
#include "rules/rule_id.h"

#include <gtest/gtest.h>

namespace egressguard::rules {

TEST(RuleId, AcceptsLowercaseDottedIds) {
  EXPECT_TRUE(IsValidRuleId("pii.credit_card-luhn"));
  EXPECT_TRUE(IsValidRuleId("a"));
  EXPECT_TRUE(IsValidRuleId(std::string(64, 'x')));
}

TEST(RuleId, RefusesEmptyLongAndUnsafeIds) {
  EXPECT_FALSE(IsValidRuleId(""));
  EXPECT_FALSE(IsValidRuleId(std::string(65, 'x')));
  EXPECT_FALSE(IsValidRuleId("Card"));
  EXPECT_FALSE(IsValidRuleId("card number"));
  EXPECT_FALSE(IsValidRuleId("-leading"));
  EXPECT_FALSE(IsValidRuleId("<script>"));
}

}  // namespace egressguard::rules
