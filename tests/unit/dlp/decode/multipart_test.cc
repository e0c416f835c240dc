// multipart/form-data parts are split by the boundary and decoded by their own Content-Transfer-Encoding and Content-Type, with original spans.
#include <gtest/gtest.h>

#include "decode_test_util.h"
#include "dlp/decode/decoders.h"

namespace egressguard::dlp::decode::testing {
namespace {

std::string Body(const std::string& b64_part, const std::string& gz_part) {
  return "preamble\r\n"
         "--XyZ123\r\n"
         "Content-Disposition: form-data; name=\"plain\"\r\n\r\n"
         "just text\r\n"
         "--XyZ123\r\n"
         "Content-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n"
         "Content-Type: text/plain\r\n"
         "Content-Transfer-Encoding: base64\r\n\r\n" +
         b64_part +
         "\r\n--XyZ123\r\n"
         "Content-Type: text/plain\r\n"
         "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
         "mail=3Djane.doe@example.org soft=\r\nbreak caf=C3=A9\r\n"
         "--XyZ123\r\n"
         "Content-Type: application/json\r\n\r\n"
         "{\"k\":\"a\\u0040b.ch\"}\r\n"
         "--XyZ123\r\n"
         "Content-Type: application/gzip\r\n\r\n" +
         gz_part +
         "\r\n--XyZ123--\r\nepilogue";
}

TEST(Multipart, PartsDecodedByTheirHeaders) {
  const std::string secret = "AHV 756.1234.5678.97 in a file attachment";
  const std::string b64 = Base64(secret);
  const std::string gz = Gzip("gzipped part: 4111-1111-1111-1111");
  const std::string body = Body(b64, gz);
  const Recorder r = Normalize(body, H("multipart/form-data; boundary=XyZ123"));
  EXPECT_TRUE(r.undecodable.empty()) << r.Reasons();
  const Span s = r.Find("756.1234.5678.97");
  const Span run = SpanIn(body, b64);
  EXPECT_GE(s.begin, run.begin);
  EXPECT_LE(s.end, run.end);
  EXPECT_EQ(r.Find("mail=jane.doe@example.org"), SpanIn(body, "mail=3Djane.doe@example.org"));
  EXPECT_TRUE(r.Has("softbreak caf\xC3\xA9"));
  EXPECT_EQ(r.Find("a@b.ch"), SpanIn(body, "a\\u0040b.ch"));
  const Span g = r.Find("4111-1111-1111-1111");
  EXPECT_EQ(g.begin, SpanIn(body, gz).begin);
  EXPECT_LE(g.end, SpanIn(body, gz).end);
  // Plain parts are in the raw layer already: not emitted a second time.
  EXPECT_FALSE(r.Has("just text"));
}

TEST(Multipart, BoundarySniffedWithoutContentType) {
  const std::string b64 = Base64("sniffed multipart secret value 12345");
  const std::string body = Body(b64, Gzip("x"));
  const Recorder r = Normalize(body.substr(body.find("--XyZ123")));
  EXPECT_TRUE(r.Has("sniffed multipart secret value 12345"));
}

TEST(Multipart, QuotedBoundaryParameter) {
  const std::string body = "--a b\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nx=3Dy\r\n--a b--\r\n";
  const Recorder r = Normalize(body, H("multipart/mixed; boundary=\"a b\"; charset=x"));
  EXPECT_TRUE(r.Has("x=y"));
  EXPECT_TRUE(r.undecodable.empty()) << r.Reasons();
}

TEST(Multipart, MissingClosingBoundaryIsUndecodable) {
  const std::string body = "--b\r\nContent-Type: text/plain\r\n\r\nunterminated";
  const Recorder r = Normalize(body, H("multipart/form-data; boundary=b"));
  ASSERT_EQ(r.undecodable.size(), 1u);
  EXPECT_NE(r.undecodable[0].why.find("closing boundary"), std::string::npos);
}

TEST(Multipart, OversizedPartHeadersAreUndecodable) {
  const std::string body = "--b\r\nX-Long: " + std::string(40000, 'h');
  const Recorder r = Normalize(body, H("multipart/form-data; boundary=b"), 1000);
  ASSERT_FALSE(r.undecodable.empty());
  EXPECT_NE(r.undecodable[0].why.find("headers too long"), std::string::npos);
  EXPECT_LT(r.max_memory, 64u << 10);
}

TEST(Multipart, PemArmourIsNotTakenForMultipart) {
  const std::string pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy\n-----END RSA PRIVATE KEY-----\n";
  const Recorder r = Normalize(pem);
  EXPECT_TRUE(r.undecodable.empty()) << r.Reasons();
}

// One Trim for header text (multipart part headers and the sniffer): a CRLF line split
// at '\n' keeps its '\r', which must not end up in a token, boundary or media type.
TEST(HeaderText, TrimDropsSpaceTabAndCarriageReturnAtBothEnds) {
  EXPECT_EQ(Trim(" \t base64 \t\r"), "base64");
  EXPECT_EQ(Trim("\r\n"), "\n");  // only the edges; '\n' is not header whitespace
  EXPECT_EQ(Trim("a b"), "a b");
  EXPECT_EQ(Trim(" \r\t"), "");
  EXPECT_EQ(Lower("Content-Transfer-Encoding: BASE64"), "content-transfer-encoding: base64");
  EXPECT_EQ(Lower("\xC4X"), "\xC4x");  // ASCII only, whatever the locale
}

TEST(HeaderText, CarriageReturnDoesNotLeakIntoBoundaryOrEncoding) {
  EXPECT_EQ(BoundaryParam("multipart/form-data; boundary=XyZ123\r"), "XyZ123");
  std::string unknown;
  const std::vector<Codec> codecs = ParseContentEncoding("gzip\r", &unknown);
  ASSERT_EQ(codecs.size(), 1u);
  EXPECT_EQ(codecs[0], Codec::kGzip);
  EXPECT_EQ(unknown, "");
}

}  // namespace
}  // namespace egressguard::dlp::decode::testing
