// Base64 runs (standard, URL-safe, padded or not, wrapped) are found anywhere, nested to the depth limit, and map to the characters that encode them.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>

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
  // Hex digits decode as hex (below) from 32 of them: these are all shorter, or no hex.
  const Recorder r = Normalize(
      "short: aGVsbG8= digits: 4111111111111111 lower: abcdefghijklmnopqrstuv "
      "hex: d41d8cd98f00b204e9800998ecf842 dashes: ---------------------- "
      "uuid: 550e8400-e29b-41d4-a716-446655440000 phone: 004144668180012345678");
  EXPECT_TRUE(r.layers.empty());
}

TEST(Base64, PathSegmentOfAUrlIsReadFromItsOwnStart) {
  // "/d/<base64>": the standard alphabet has '/', so the run found starts at the path's
  // first '/', three characters before the value. URLs are read once more split at '/'.
  const std::string secret = "card 4539 1488 0343 6467 exp 12/29";
  for (const std::string prefix : {"/d/", "/api/v1/upload/", "/x/y/"}) {
    for (bool url_safe : {false, true}) {
      const std::string url = prefix + Base64(secret, url_safe, false) + "?session=1";
      const Recorder r = Normalize(url, H("", "", /*is_url=*/true));
      EXPECT_TRUE(r.Has(secret)) << url;
    }
  }
  // In a URL the value may itself hold '/' (standard base64, percent-decoded): still read.
  const std::string with_slash = "card 4539 1488 0343 6467 ???";  // "...Pz8/"
  const std::string b64 = Base64(with_slash);
  ASSERT_NE(b64.find('/'), std::string::npos) << b64;
  EXPECT_TRUE(Normalize("/q?d=" + b64, H("", "", true)).Has(with_slash)) << b64;
}

TEST(Base64, ValueAfterAPathOrNameInAnyTextIsReadFromItsOwnStart) {
  // Outside URLs too: a URL inside JSON, a name joined to its value.
  const std::string secret = "card 4539 1488 0343 6467 exp 12/29";
  const std::string url = R"({"callback":"https://hooks.example.com/d/)" + Base64(secret, true, false) + R"("})";
  const std::string named = "token=user_" + Base64(secret, true, false) + "\n";
  const std::string dashed = "id: x-" + Base64(secret) + "\n";
  for (const std::string& body : {url, named, dashed}) {
    const Recorder whole = Normalize(body, H("application/json"));
    EXPECT_TRUE(whole.Has(secret)) << body;
    // The value maps into its own characters.
    const Span s = whole.Find("4539 1488 0343 6467");
    EXPECT_GE(s.begin, body.find(Base64(secret, true, false).substr(0, 4)) - 1) << body;
    for (size_t chunk : {size_t{1}, size_t{3}, size_t{17}}) {
      EXPECT_TRUE(Normalize(body, H("application/json"), chunk).Has(secret)) << chunk << " " << body;
    }
  }
  // Base64 that merely opens with lower-case letters and a '/' is still read from its start.
  std::string plain;
  std::string b64;
  for (int i = 0; i < 5000; ++i) {
    plain = "row " + std::to_string(i) + " iban CH9300762011623852957";
    b64 = Base64(plain);
    const size_t slash = b64.find('/');
    if (slash != std::string::npos && slash < 12 &&
        std::all_of(b64.begin(), b64.begin() + slash, [](char c) { return std::islower(c) || std::isdigit(c); })) {
      break;
    }
  }
  EXPECT_TRUE(Normalize("x " + b64 + " y").Has(plain)) << b64;
}

std::string Hex(std::string_view in, bool upper = false) {
  static constexpr char kLower[] = "0123456789abcdef", kUpper[] = "0123456789ABCDEF";
  const char* digits = upper ? kUpper : kLower;
  std::string out;
  for (unsigned char c : in) {
    out += digits[c >> 4];
    out += digits[c & 15];
  }
  return out;
}

TEST(Hex, RunInTextMapsToItsCharacters) {
  const std::string secret = "IBAN CH93 0076 2011 6238 5295 7 for Anna Muster";
  for (bool upper : {false, true}) {
    const std::string hex = Hex(secret, upper);
    const std::string body = R"({"blob":")" + hex + R"(","n":1})";
    const Recorder r = Normalize(body, H("application/json"));
    ASSERT_TRUE(r.Has(secret)) << upper;
    // Segments of 32 bytes map to their 64 characters.
    const Span s = r.Find("CH93 0076 2011 6238 5295 7");
    const Span run = SpanIn(body, hex);
    EXPECT_GE(s.begin, run.begin);
    EXPECT_LE(s.end, run.end);
    EXPECT_LE(s.end - s.begin, 128u);
  }
}

TEST(Hex, XxdLinesAndEveryChunkingGiveTheSameText) {
  std::string csv = "name,email,card\n";
  for (int i = 0; i < 40; ++i) csv += "Cust" + std::to_string(i) + ",c" + std::to_string(i) + "@example.com,4539 1488 0343 6467\n";
  const std::string hex = Hex(csv);
  std::string wrapped;  // xxd -p: lines of 60 digits
  for (size_t i = 0; i < hex.size(); i += 60) wrapped += hex.substr(i, 60) + "\n";
  const Recorder whole = Normalize("dump:\n" + wrapped);
  ASSERT_TRUE(whole.Has(csv));
  for (size_t chunk : {size_t{1}, size_t{7}, size_t{61}, size_t{1000}}) {
    const Recorder r = Normalize("dump:\n" + wrapped, {}, chunk);
    EXPECT_EQ(r.layers, whole.layers) << chunk;
  }
  // An odd last digit is dropped; the bytes before it are read.
  EXPECT_TRUE(Normalize(Hex(csv) + "a").Has(csv));
}

TEST(Hex, HexThatIsNoHexEndsTheRun) {
  // A stretch of base64 characters that starts with 32+ hex digits and goes on with other
  // letters: the hex prefix is read, the rest is neither hex nor (one case only) base64.
  const std::string secret = "card 4539 1488 0343 6467";
  const Recorder r = Normalize("x " + Hex(secret) + "xyzxyzxyz and more");
  EXPECT_TRUE(r.Has(secret));
}

TEST(Hex, RandomHashesAreNoBrokenStreams) {
  // md5 / trace ids / sha256 in hex decode to random bytes: never reported undecodable.
  uint64_t seed = 7;
  std::string body;
  for (int i = 0; i < 60000; ++i) {
    std::string key(i % 2 ? 16 : 32, '\0');
    for (char& c : key) {
      seed = seed * 6364136223846793005ull + 1442695040888963407ull;
      c = static_cast<char>(seed >> 56);
    }
    body += "etag: " + Hex(key) + "\r\n";
  }
  const Recorder r = Normalize(body);
  EXPECT_TRUE(r.undecodable.empty()) << r.Reasons();
}

TEST(Hex, HexOfAGzipStreamIsInflated) {
  const std::string secret = "ssn 123-45-6789 of Jane";
  const Recorder r = Normalize("payload=" + Hex(Gzip(secret)));
  EXPECT_TRUE(r.Has(secret));
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
