// Proves the console's tokens: a login token and a session cookie verify only with their own purpose and key, any edit or expiry is refused, malformed and oversized tokens are refused without crashing, and cookie headers are parsed by name.
#include <gtest/gtest.h>

#include <vector>

#include "appliance/console/session.h"

namespace egressguard::console {
namespace {

TokenClaims Claims() {
  TokenClaims c;
  c.user = "alice";
  c.role = ConsoleRole::kOfficer;
  c.issued_us = 1'000;
  c.expires_us = 2'000;
  c.nonce = "0123456789abcdef0123456789abcdef";
  return c;
}

TEST(ConsoleTokens, RoundTripAndPurposeSeparation) {
  const TokenSigner signer(std::string(32, 'k'));
  const std::string login = signer.MakeLogin(Claims());
  auto back = signer.VerifyLogin(login, 1'500);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->user, "alice");
  EXPECT_EQ(back->role, ConsoleRole::kOfficer);
  EXPECT_EQ(back->nonce, Claims().nonce);
  // A login token is no session cookie, and the other way round.
  EXPECT_FALSE(signer.VerifySession(login, 1'500).ok());
  EXPECT_FALSE(signer.VerifyLogin(signer.MakeSession(Claims()), 1'500).ok());
  // Another key's token.
  EXPECT_FALSE(TokenSigner(std::string(32, 'x')).VerifyLogin(login, 1'500).ok());
}

TEST(ConsoleTokens, EditsAndExpiryAreRefused) {
  const TokenSigner signer(std::string(32, 'k'));
  std::string token = signer.MakeSession(Claims());
  EXPECT_EQ(signer.VerifySession(token, 2'000).status().code(), absl::StatusCode::kUnauthenticated);
  std::string promoted = token;
  promoted.replace(promoted.find("officer"), 7, "auditor");
  EXPECT_FALSE(signer.VerifySession(promoted, 1'500).ok());
  std::string renamed = token;
  renamed.replace(renamed.find("alice"), 5, "mallo");
  EXPECT_FALSE(signer.VerifySession(renamed, 1'500).ok());
  token.back() = token.back() == '0' ? '1' : '0';
  EXPECT_FALSE(signer.VerifySession(token, 1'500).ok());
}

TEST(ConsoleTokens, MalformedTokensAreRefused) {
  const TokenSigner signer(std::string(32, 'k'));
  for (const std::string& bad : std::vector<std::string>{"", ":", "v1", "v1:a:b:c:d:e:f", "v2:alice:officer:1:2:nonce:mac", std::string(4096, 'v'),
                                "v1:alice:officer:1:2:0123456789abcdef0123456789abcdef:::"}) {
    EXPECT_FALSE(signer.VerifySession(bad, 1).ok()) << bad;
  }
}

TEST(ConsoleTokens, CsrfTokenIsBoundToTheSession) {
  const TokenSigner signer(std::string(32, 'k'));
  TokenClaims a = Claims(), b = Claims();
  b.nonce = "fedcba9876543210fedcba9876543210";
  EXPECT_TRUE(signer.CheckCsrf(a, signer.CsrfFor(a)));
  EXPECT_FALSE(signer.CheckCsrf(b, signer.CsrfFor(a)));
  EXPECT_FALSE(signer.CheckCsrf(a, ""));
}

TEST(ConsoleNames, UsersAndCookies) {
  EXPECT_TRUE(ValidUserName("alice.o-1@bank_x"));
  EXPECT_FALSE(ValidUserName(""));
  EXPECT_FALSE(ValidUserName("a:b"));
  EXPECT_FALSE(ValidUserName("a b"));
  EXPECT_FALSE(ValidUserName(std::string(65, 'a')));
  EXPECT_EQ(CookieValue("a=1; sess=xyz; b=2", "sess"), "xyz");
  EXPECT_EQ(CookieValue("xsess=1", "sess"), std::nullopt);
  EXPECT_EQ(CookieValue("", "sess"), std::nullopt);
}

}  // namespace
}  // namespace egressguard::console
