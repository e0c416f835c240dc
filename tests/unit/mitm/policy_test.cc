// Proves the egress policy matches wildcards, CIDRs, ports and methods, splices the no-decrypt list, and limits clients.
#include "mitm/policy.h"

#include <gtest/gtest.h>

namespace egressguard::mitm {
namespace {

PolicyPtr Make(PolicyConfig c) {
  auto p = Policy::Create(c);
  EXPECT_TRUE(p.ok()) << p.status();
  return *p;
}

TEST(Policy, AllowListWithWildcardsPortsCidrsAndMethods) {
  PolicyConfig c;
  c.allow = {"api.example.com:443@GET,POST", "*.cdn.example:443,8443", "10.0.0.0/8:443", "[2001:db8::/32]"};
  auto p = Make(c);
  EXPECT_EQ(p->Decide("api.example.com", 443).action, PolicyAction::kBump);
  EXPECT_EQ(p->Decide("API.Example.com", 443).action, PolicyAction::kBump);
  EXPECT_EQ(p->Decide("api.example.com", 8443).action, PolicyAction::kRefuse);
  EXPECT_EQ(p->Decide("x.example.com", 443).reason, "destination_not_allowed");
  EXPECT_EQ(p->Decide("a.b.cdn.example", 8443).action, PolicyAction::kBump);
  EXPECT_EQ(p->Decide("cdn.example", 443).action, PolicyAction::kRefuse);
  EXPECT_EQ(p->Decide("10.1.2.3", 443).action, PolicyAction::kBump);
  EXPECT_EQ(p->Decide("11.1.2.3", 443).action, PolicyAction::kRefuse);
  EXPECT_EQ(p->Decide("2001:db8::1", 1234).action, PolicyAction::kBump);
  EXPECT_EQ(p->Decide("2001:db9::1", 1234).action, PolicyAction::kRefuse);
  // An allowed CONNECT host with an SNI that is not allowed is refused (no fronting).
  EXPECT_EQ(p->Decide("api.example.com", 443, "evil.example").action, PolicyAction::kRefuse);
  EXPECT_TRUE(p->MethodAllowed("api.example.com", 443, "post"));
  EXPECT_FALSE(p->MethodAllowed("api.example.com", 443, "DELETE"));
  EXPECT_TRUE(p->MethodAllowed("x.cdn.example", 443, "DELETE"));
}

TEST(Policy, EmptyAllowListRefusesEverything) {
  auto p = Make(PolicyConfig{});
  EXPECT_EQ(p->Decide("example.com", 443).action, PolicyAction::kRefuse);
}

TEST(Policy, NoDecryptListSplices) {
  PolicyConfig c;
  c.allow = {"*"};
  c.no_decrypt = {"*.bank.example", "health.example:443"};
  auto p = Make(c);
  EXPECT_EQ(p->Decide("www.bank.example", 443).action, PolicyAction::kSplice);
  EXPECT_EQ(p->Decide("1.2.3.4", 443, "www.bank.example").action, PolicyAction::kSplice);
  EXPECT_EQ(p->Decide("health.example", 8443).action, PolicyAction::kBump);
  EXPECT_EQ(p->Decide("other.example", 443).action, PolicyAction::kBump);
}

TEST(Policy, ClientCidrs) {
  PolicyConfig c;
  auto p = Make(c);
  EXPECT_TRUE(p->ClientAllowed("127.0.0.1"));
  EXPECT_TRUE(p->ClientAllowed("::1"));
  EXPECT_FALSE(p->ClientAllowed("192.168.1.1"));
  EXPECT_FALSE(p->ClientAllowed("not-an-ip"));
  c.client_cidrs = {"192.168.0.0/16"};
  p = Make(c);
  EXPECT_TRUE(p->ClientAllowed("192.168.1.1"));
  EXPECT_TRUE(p->ClientAllowed("::ffff:192.168.1.1"));
  EXPECT_FALSE(p->ClientAllowed("127.0.0.1"));
}

TEST(Policy, RefusesBadRules) {
  for (const char* bad : {"", "a.com:", "a.com:0", "a.com:70000", "a*.com", "10.0.0.0/33", "[::1", "a b.com", "a.com@G T"}) {
    PolicyConfig c;
    c.allow = {bad};
    EXPECT_FALSE(Policy::Create(c).ok()) << bad;
  }
  PolicyConfig c;
  c.no_decrypt = {"a.com@GET"};
  EXPECT_FALSE(Policy::Create(c).ok());
}

}  // namespace
}  // namespace egressguard::mitm
