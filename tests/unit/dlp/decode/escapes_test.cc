// Percent, '+', JSON backslash and quoted-printable escapes decode to the right bytes and map back to the exact original span.
#include <gtest/gtest.h>

#include "decode_test_util.h"

namespace egressguard::dlp::decode::testing {
namespace {

TEST(Escapes, UrlPercentAndPlus) {
  const std::string url = "/search?q=john%40example.com&name=Jane+Doe&x=1";
  const Recorder r = Normalize(url, H("", "", true));
  EXPECT_EQ(r.Find("john@example.com"), SpanIn(url, "john%40example.com"));
  EXPECT_EQ(r.Find("Jane Doe"), SpanIn(url, "Jane+Doe"));
  EXPECT_TRUE(r.undecodable.empty()) << r.Reasons();
}

TEST(Escapes, FormBodyByContentType) {
  const std::string body = "card=4111+1111+1111+1111&iban=CH93%200076%202011%206238%205295%207";
  const Recorder r = Normalize(body, H("application/x-www-form-urlencoded"));
  EXPECT_EQ(r.Find("4111 1111 1111 1111"), SpanIn(body, "4111+1111+1111+1111"));
  EXPECT_EQ(r.Find("CH93 0076 2011 6238 5295 7"), SpanIn(body, "CH93%200076%202011%206238%205295%207"));
}

TEST(Escapes, FormSniffedWithoutHint) {
  const std::string body = "account_holder=Jonas+Wyss&iban=DE57+8835+5788+3672+2017+40&ref=M-1";
  const Recorder r = Normalize(body);
  EXPECT_EQ(r.Find("DE57 8835 5788 3672 2017 40"), SpanIn(body, "DE57+8835+5788+3672+2017+40"));
  EXPECT_TRUE(r.Has("Jonas Wyss"));
}

TEST(Escapes, PlusIsLiteralOutsideForms) {
  const std::string body = "a%20b c+d";
  const Recorder r = Normalize(body);
  EXPECT_TRUE(r.Has("a b c+d"));
}

TEST(Escapes, PercentSniffedWithoutHint) {
  const std::string body = "plain text then user%3Dadmin%26pw%3Dhunter2 and more";
  const Recorder r = Normalize(body, H("text/plain"));
  EXPECT_EQ(r.Find("user=admin&pw=hunter2"), SpanIn(body, "user%3Dadmin%26pw%3Dhunter2"));
}

TEST(Escapes, InvalidPercentStaysLiteral) {
  const Recorder r = Normalize("100% sure, %zz and %4");
  EXPECT_TRUE(r.layers.empty());
  EXPECT_TRUE(r.undecodable.empty());
}

TEST(Escapes, JsonUnicodeAndNewlines) {
  const std::string body =
      R"({"email":"john\u0040example.com","key":"-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\n-----END RSA PRIVATE KEY-----","q":"say \"hi\" \/ \\ \t"})";
  const Recorder r = Normalize(body, H("application/json"));
  EXPECT_EQ(r.Find("john@example.com"), SpanIn(body, R"(john\u0040example.com)"));
  EXPECT_TRUE(r.Has("-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\n-----END"));
  EXPECT_TRUE(r.Has("say \"hi\" / \\ \t"));
}

TEST(Escapes, JsonSurrogatePairsAndLoneSurrogates) {
  const std::string body = R"(["\ud83d\ude00","\u00e9","x\ud800y","\u20AC"])";
  const Recorder r = Normalize(body);
  EXPECT_EQ(r.Find("\xF0\x9F\x98\x80"), SpanIn(body, R"(\ud83d\ude00)"));
  EXPECT_TRUE(r.Has("\xC3\xA9"));
  EXPECT_TRUE(r.Has("x\xEF\xBF\xBDy"));  // lone surrogate -> U+FFFD
  EXPECT_TRUE(r.Has("\xE2\x82\xAC"));
}

TEST(Escapes, JsonEscapesFoundWithoutAnyHint) {
  // Mislabelled on purpose: the bytes, not the label, decide.
  const std::string body = R"(log line {"ssn":"123\u002d45\u002d6789"})";
  const Recorder r = Normalize(body, H("image/png"));
  EXPECT_EQ(r.Find("123-45-6789"), SpanIn(body, R"(123\u002d45\u002d6789)"));
}

TEST(Escapes, LazyWindowsKeepContextAndSeparateDistantEscapes) {
  const std::string far(2000, 'x');
  const std::string body = "alpha\\u0040beta" + far + "gamma%41delta";
  const Recorder r = Normalize(body);
  ASSERT_EQ(r.layers.size(), 1u);
  const std::string& layer = r.layers.begin()->second;
  EXPECT_NE(layer.find("alpha@beta"), std::string::npos);
  EXPECT_NE(layer.find("gammaAdelta"), std::string::npos);
  // Plain text far from any escape is not emitted again (the raw layer has it).
  EXPECT_LT(layer.size(), 2 * 256 + 64 + 30);
  EXPECT_EQ(r.Find("gammaAdelta"), SpanIn(body, "gamma%41delta"));
}

TEST(Escapes, PlainTextEmitsNothing) {
  std::string text;
  for (int i = 0; i < 2000; ++i) text += "The quick brown fox jumps over the lazy dog. ";
  const Recorder r = Normalize(text, {}, 4096);
  EXPECT_TRUE(r.layers.empty());
  EXPECT_LT(r.max_memory, 8u << 10);
}

}  // namespace
}  // namespace egressguard::dlp::decode::testing
