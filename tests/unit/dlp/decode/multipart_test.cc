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

// ---------------------------------------------------------------- Internet messages (.eml)

std::string Message(const std::string& headers, const std::string& body) {
  return "Return-Path: <anna@bluewin.ch>\r\nFrom: Anna <anna@bluewin.ch>\r\nTo: hr@bank.example\r\n"
         "Subject: Lohn\r\nMIME-Version: 1.0\r\n" + headers + "\r\n" + body;
}

TEST(MailMessage, QuotedPrintableBodyIsDecodedSoftBreaksJoined) {
  const std::string body =
      "Karte 4539 1488 03=\r\n43 6467, Mail anna.meier=40bluewin.ch, Gr=C3=BCsse\r\n";
  const std::string msg = Message("Content-Type: text/plain; charset=utf-8\r\n"
                                  "Content-Transfer-Encoding: quoted-printable\r\n", body);
  for (size_t chunk : {0u, 1u, 7u, 64u}) {
    const Recorder r = Normalize(msg, {}, chunk);
    EXPECT_TRUE(r.undecodable.empty()) << r.Reasons();
    EXPECT_TRUE(r.Has("Karte 4539 1488 0343 6467")) << "chunk " << chunk;
    EXPECT_EQ(r.Find("anna.meier@bluewin.ch"), SpanIn(msg, "anna.meier=40bluewin.ch")) << "chunk " << chunk;
    EXPECT_TRUE(r.Has("Gr\xC3\xBCsse"));
  }
}

TEST(MailMessage, Base64BodyAndAMultipartMessagesPartsAreDecoded) {
  const std::string secret = "IBAN CH56 0483 5012 3456 7800 9 in a base64 body";
  const std::string single = Message("Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n",
                                     Base64(secret) + "\r\n");
  EXPECT_TRUE(Normalize(single).Has(secret));
  const std::string att = "id,email\n1,luca.keller@gmx.ch\n";
  const std::string multi = Message(
      "Content-Type: multipart/mixed; boundary=\"==b1==\"\r\n",
      "This is a multi-part message in MIME format.\r\n"
      "--==b1==\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
      "Siehe Anhang, Tel. +41 79 123 45 =\r\n67\r\n"
      "--==b1==\r\nContent-Type: text/csv; name=\"kunden.csv\"\r\nContent-Disposition: attachment; "
      "filename=\"kunden.csv\"\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
          Base64(att) + "\r\n--==b1==--\r\n");
  const Recorder r = Normalize(multi);
  EXPECT_TRUE(r.undecodable.empty()) << r.Reasons();
  EXPECT_TRUE(r.Has("Tel. +41 79 123 45 67"));
  EXPECT_TRUE(r.Has("1,luca.keller@gmx.ch"));
}

TEST(MailMessage, SniffedByItsFirstHeaderOrItsTypeNotByAFromLineInProse) {
  const std::string qp = "Content-Transfer-Encoding: quoted-printable\r\n";
  const std::string body = "x=40y.ch soft=\r\nbreak\r\n";
  // message/rfc822 and an .eml name are messages whatever their first line.
  EXPECT_TRUE(Normalize("X-Custom: 1\r\n" + qp + "\r\n" + body, H("message/rfc822")).Has("softbreak"));
  // A document that opens with a message header field.
  EXPECT_TRUE(Normalize("Received: from mx by mx2\r\n" + qp + "\r\n" + body).Has("softbreak"));
  // Prose that mentions a header, and a header block that never ends: read as they are
  // (no soft breaks undone), nothing lost and nothing refused.
  const Recorder prose = Normalize("Note: " + qp + "\r\n" + body);
  EXPECT_FALSE(prose.Has("softbreak"));
  const Recorder endless = Normalize("From: a@b.ch\r\n" + std::string(20000, 'x') + "=\r\n" + body);
  EXPECT_TRUE(endless.undecodable.empty()) << endless.Reasons();
  EXPECT_FALSE(endless.Has("softbreak"));
  EXPECT_TRUE(LooksLikeMailMessage("DKIM-Signature: v=1; a=rsa-sha256"));
  EXPECT_FALSE(LooksLikeMailMessage("{\"from\": \"a@b.ch\"}"));
  EXPECT_FALSE(LooksLikeMailMessage("From the desk of the CFO: numbers"));
}

}  // namespace
}  // namespace egressguard::dlp::decode::testing
