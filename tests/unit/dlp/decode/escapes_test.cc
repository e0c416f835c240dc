// Percent, '+', JSON backslash, quoted-printable escapes and HTML references decode to the right bytes and map back to the exact original span; Unicode look-alikes (no-break and other spaces, dashes, fullwidth digits, zero-width characters) are read as their ASCII.
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

TEST(Escapes, HtmlReferencesDecodeWhereverTheyOccur) {
  // A rich-text editor's card: &nbsp; between the groups; a hand-obfuscated one in
  // decimal and hex references; an address with &#64; and &commat;.
  const std::string body =
      "<p>Card: 4539&nbsp;1488&nbsp;0343&nbsp;6467</p><p>&#52;&#49;&#49;&#49; &#x31;&#x31;&#x31;&#x31;</p>"
      "<p>anna.meier&#64;bluewin.ch, lea&commat;gmx.ch, AT&T &amp; co, a=1&b=2, &unknown; &#xZZ;</p>";
  const Recorder r = Normalize(body, H("text/html"));
  EXPECT_EQ(r.Find("4539 1488 0343 6467"), SpanIn(body, "4539&nbsp;1488&nbsp;0343&nbsp;6467"));
  EXPECT_EQ(r.Find("4111 1111"), SpanIn(body, "&#52;&#49;&#49;&#49; &#x31;&#x31;&#x31;&#x31;"));
  EXPECT_EQ(r.Find("anna.meier@bluewin.ch"), SpanIn(body, "anna.meier&#64;bluewin.ch"));
  EXPECT_TRUE(r.Has("lea@gmx.ch"));
  EXPECT_TRUE(r.Has("AT&T & co, a=1&b=2, &unknown; &#xZZ;"));  // not references: text
  // Mislabelled, and cut at every byte: the same.
  const Recorder plain = Normalize(body, H("application/octet-stream"));
  EXPECT_EQ(plain.Find("4539 1488 0343 6467"), r.Find("4539 1488 0343 6467"));
  for (size_t chunk = 1; chunk < 24; ++chunk) {
    const Recorder c = Normalize(body, H("text/html"), chunk);
    EXPECT_EQ(c.layers, r.layers) << chunk;
  }
}

TEST(Escapes, UnicodeLookAlikesAreReadAsTheirAscii) {
  const std::string nbsp = "\xC2\xA0", thin = "\xE2\x80\x89", narrow = "\xE2\x80\xAF", zwsp = "\xE2\x80\x8B",
                    en_dash = "\xE2\x80\x93";
  const std::string body = "Karte 4539" + nbsp + "1488" + thin + "0343" + narrow + "6467; IBAN CH93" + nbsp + "0076" +
                           nbsp + "2011" + nbsp + "6238" + nbsp + "5295" + nbsp + "7; SSN 123" + en_dash + "45" + en_dash +
                           "6789; 4111" + zwsp + "1111" + zwsp + "1111" + zwsp + "1111; "
                           "\xEF\xBC\x94\xEF\xBC\x95\xEF\xBC\x93\xEF\xBC\x99; caf\xC3\xA9 \xC2\xA3 5";
  const Recorder r = Normalize(body);
  EXPECT_EQ(r.Find("4539 1488 0343 6467"), SpanIn(body, "4539" + nbsp + "1488" + thin + "0343" + narrow + "6467"));
  EXPECT_TRUE(r.Has("CH93 0076 2011 6238 5295 7"));
  EXPECT_TRUE(r.Has("123-45-6789"));
  EXPECT_TRUE(r.Has("4111111111111111"));  // zero-width spaces are nothing
  EXPECT_TRUE(r.Has("4539; caf\xC3\xA9 \xC2\xA3 5"));  // fullwidth digits; other non-ASCII as it is
  // JSON \u escapes and HTML references of the same characters fold alike.
  const Recorder j = Normalize(R"({"c":"4539\u00a01488\u2009&#160;0343 6467"})");
  EXPECT_TRUE(j.Has("4539 1488  0343 6467"));
  for (size_t chunk = 1; chunk < 8; ++chunk) {
    EXPECT_EQ(Normalize(body, {}, chunk).layers, r.layers) << chunk;
  }
}

TEST(Escapes, NonAsciiTextWithoutLookAlikesEmitsNothing) {
  // German, French quotes and CJK text: their lead bytes are no escapes.
  std::string text;
  for (int i = 0; i < 300; ++i) text += "Gr\xC3\xBC\xC3\x9F \xC2\xAB \xE4\xB8\xAD\xE6\x96\x87 \xE2\x82\xAC 5 \xEF\xBC\x8C ";
  const Recorder r = Normalize(text, {}, 4096);
  EXPECT_TRUE(r.layers.empty());
}

}  // namespace
}  // namespace egressguard::dlp::decode::testing
