// Base64 runs (standard, URL-safe, padded or not, wrapped) are found anywhere, nested to the depth limit, and map to the characters that encode them.
#include <gtest/gtest.h>

#include "decode_test_util.h"

namespace egressguard::dlp::decode::testing {
namespace {

TEST(Base64, RunInPlainTextMapsToItsCharacters) {
  const std::string secret = "card 4111 1111 1111 1111 exp 12/29";
  const std::string b64 = Base64(secret);
  const std::string body = "note: " + b64 + " end";
  const Recorder r = Normalize(body);
  ASSERT_TRUE(r.Has(secret)) << r.layers.size();
  // "4111 1111 1111 1111" is decoded bytes [5, 24): groups 1..7 -> characters [4, 32).
  const Span s = r.Find("4111 1111 1111 1111");
  const Span run = SpanIn(body, b64);
  EXPECT_GE(s.begin, run.begin);
  EXPECT_LE(s.end, run.end);
  EXPECT_LE(s.begin, run.begin + 4);
  EXPECT_GE(s.end, run.begin + 32);
}

TEST(Base64, RandomKeysAreNoBrokenZlibStreams) {
  // A 16-byte key or nonce in base64 (Sec-WebSocket-Key, CSRF tokens) decodes to random
  // bytes; about one in 2,000 starts with a valid zlib header. Those were inflated on a
  // trial of their 16 bytes and reported "truncated zlib stream": undecodable, blocked.
  uint64_t seed = 42;
  std::string body;
  for (int i = 0; i < 60000; ++i) {
    std::string key(16, '\0');
    for (char& c : key) {
      seed = seed * 6364136223846793005ull + 1442695040888963407ull;
      c = static_cast<char>(seed >> 56);
    }
    body += "Sec-WebSocket-Key: " + Base64(key) + "\r\n";
  }
  const Recorder r = Normalize(body);
  EXPECT_TRUE(r.undecodable.empty()) << r.Reasons();
  // A real zlib stream shorter than the sniff prefix still ends, and is read.
  const std::string small = Deflate("iban CH93 0076 2011 6238 5295 7", 15);
  ASSERT_LT(small.size(), 80u);
  EXPECT_TRUE(Normalize("blob: " + Base64(small) + "\n").Has("iban CH93 0076 2011 6238 5295 7"));
}

TEST(Base64, GroupsMapExactlyWithinLongRuns) {
  std::string secret(600, '.');
  secret.replace(300, 16, "AKIAIOSFODNN7XYZ");
  const std::string b64 = Base64(secret);
  const std::string body = "x=" + b64;
  const Recorder r = Normalize(body);
  const Span s = r.Find("AKIAIOSFODNN7XYZ");
  // Bytes [300, 316) are groups 100..105; segments hold 16 groups, so the span is the
  // 64-character segment holding them: characters [384, 448) of the run.
  EXPECT_EQ(s, (Span{2 + 384, 2 + 448}));
}

TEST(Base64, UrlSafeUnpadded) {
  const std::string secret = "\xfb\xff\xfe token=ghp_abcdefghijklmnopqrstuvwxyz0123456789";
  const std::string b64 = Base64(secret, /*url_safe=*/true, /*pad=*/false);
  ASSERT_NE(b64.find_first_of("-_"), std::string::npos);
  const Recorder r = Normalize("id=" + b64);
  EXPECT_TRUE(r.Has("token=ghp_abcdefghijklmnopqrstuvwxyz0123456789"));
}

TEST(Base64, MimeLineWrapped) {
  std::string secret;
  for (int i = 0; i < 20; ++i) secret += "IBAN CH9300762011623852957 row " + std::to_string(i) + "\n";
  const std::string b64 = Base64(secret);
  std::string wrapped;
  for (size_t i = 0; i < b64.size(); i += 76) wrapped += b64.substr(i, 76) + "\r\n";
  const Recorder r = Normalize("Content-Type: text/plain\r\n\r\n" + wrapped);
  EXPECT_TRUE(r.Has(secret));
}

TEST(Base64, ShortRunsDigitsAndIdentifiersAreNotDecoded) {
  const Recorder r = Normalize(
      "short: aGVsbG8= digits: 4111111111111111 lower: abcdefghijklmnopqrstuv "
      "hex: d41d8cd98f00b204e9800998ecf8427e dashes: ----------------------");
  EXPECT_TRUE(r.layers.empty());
}

TEST(Base64, NestedBase64InJsonMapsToInnerValue) {
  const std::string b64 = Base64("the ssn is 123-45-6789, ok");
  const std::string body = R"({"doc":")" + b64 + R"("})";
  const Recorder r = Normalize(body, H("application/json"));
  const Span s = r.Find("123-45-6789");
  const Span run = SpanIn(body, b64);
  EXPECT_GE(s.begin, run.begin);
  EXPECT_LE(s.end, run.end);
}

TEST(Base64, JsonEscapedSlashesInsideBase64) {
  // PHP's json_encode writes "/" as "\/": only the unescaped layer has the whole run.
  std::string secret = "?>?>?>?>?>?>?>?> 4111 1111 1111 1111";
  std::string b64 = Base64(secret);
  ASSERT_NE(b64.find('/'), std::string::npos);
  std::string escaped;
  for (char c : b64) escaped += (c == '/') ? std::string("\\/") : std::string(1, c);
  const std::string body = R"({"f":")" + escaped + R"("})";
  const Recorder r = Normalize(body);
  EXPECT_TRUE(r.Has("4111 1111 1111 1111"));
  const Span s = r.Find("4111 1111 1111 1111");
  const Span run = SpanIn(body, escaped);
  EXPECT_GE(s.begin, run.begin);
  EXPECT_LE(s.end, run.end);
}

TEST(Base64, DepthLimit) {
  const std::string inner = "deep secret 4111 1111 1111 1111";
  std::string x = inner;
  for (int i = 0; i < 4; ++i) x = Base64(x);
  NormalizerLimits limits;
  limits.max_depth = 4;
  EXPECT_TRUE(Normalize(x, {}, 0, limits).Has(inner));
  limits.max_depth = 3;
  EXPECT_FALSE(Normalize(x, {}, 0, limits).Has(inner));
}

}  // namespace
}  // namespace egressguard::dlp::decode::testing
