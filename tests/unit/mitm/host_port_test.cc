// Proves CONNECT authorities parse strictly: names, IPv6 literals, ports, and refusals.
#include "mitm/host_port.h"

#include <gtest/gtest.h>

namespace egressguard::mitm {

TEST(HostPort, ParsesNameAndPort) {
  auto hp = ParseHostPort("Example.COM:8443");
  ASSERT_TRUE(hp.ok()) << hp.status();
  EXPECT_EQ(hp->host, "example.com");
  EXPECT_EQ(hp->port, 8443);
}

TEST(HostPort, ParsesBracketedIpv6AndDefaultPort) {
  auto hp = ParseHostPort("[::1]:443");
  ASSERT_TRUE(hp.ok());
  EXPECT_EQ(hp->host, "::1");
  auto dflt = ParseHostPort("example.org", 443);
  ASSERT_TRUE(dflt.ok());
  EXPECT_EQ(dflt->port, 443);
}

TEST(HostPort, RefusesMalformedAuthorities) {
  for (const char* bad : {"", ":443", "host:", "host:0", "host:65536", "host:12x", "ho st:443",
                          "[::1", "[::1]x", "[zz]:1", "example.com"}) {
    EXPECT_FALSE(ParseHostPort(bad).ok()) << bad;
  }
}

}  // namespace egressguard::mitm
