// Proves the verdict schema round-trips through the JSON mapping the CLI's --json uses.
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include "egressguard/v1/verdict.pb.h"

namespace egressguard {

TEST(VerdictSchema, JsonRoundTrip) {
  v1::Verdict v;
  v.set_id("4b0e7c1e-2f7d-4cf4-9a0a-3f1c1a7d9e21");
  v.set_host("api.example.com");
  v.set_action(rules::v1::BLOCK);
  auto* f = v.add_findings();
  f->set_category("credit_card");
  f->set_evidence("4111 **** **** 1111");
  std::string json;
  ASSERT_TRUE(google::protobuf::util::MessageToJsonString(v, &json).ok());
  EXPECT_NE(json.find("\"action\":\"BLOCK\""), std::string::npos) << json;
  v1::Verdict back;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(json, &back).ok());
  EXPECT_EQ(back.findings(0).evidence(), "4111 **** **** 1111");
  EXPECT_FALSE(google::protobuf::util::JsonStringToMessage("{\"hots\":\"x\"}", &back).ok());
}

}  // namespace egressguard
