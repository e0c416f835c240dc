// UTF-16 text (utf16.cc): found by its byte-order mark, a charset label its bytes agree
// with, or BOM-less ASCII with NUL high bytes; transcoded to UTF-8 with every character
// mapped to its code units, whatever the chunking; never taken from binary or UTF-8.
// Documents come from Python's str.encode and zipfile, as Excel and PowerShell's
// Out-File write them.

#include <gtest/gtest.h>

#include <random>

#include "archive_test_util.h"
#include "decode_test_util.h"
#include "dlp/decode/decoders.h"

namespace egressguard::dlp::decode::testing {
namespace {

constexpr std::string_view kCard = "4111 1111 1111 1111";
const std::string kTable =
    "name,email,card\r\nJane Doe,jane@example.com,4111 1111 1111 1111\r\n"
    "Jörg Müller,jm@example.org,5500 0000 0000 0004\r\n";

// str.encode(codec) of the text Python reads from stdin (UTF-8).
std::string Encode(std::string_view text, std::string_view codec) {
  std::string hex;
  for (unsigned char c : text) {
    hex += "0123456789abcdef"[c >> 4];
    hex += "0123456789abcdef"[c & 15];
  }
  return Python("out(bytes.fromhex('" + hex + "').decode('utf-8').encode('" + std::string(codec) + "'))\n");
}

// The layer holding the transcoded text, or "" when there is none.
std::string Decoded(const Recorder& r, std::string_view needle) {
  for (const auto& [id, text] : r.layers) {
    if (text.find(needle) != std::string::npos) return text;
  }
  return "";
}

TEST(Utf16, BomLittleAndBigEndianTranscodeWithExactSpans) {
  for (const char* codec : {"utf-16", "utf-16-be"}) {  // Python's utf-16 is LE with a BOM
    std::string doc = Encode(kTable, codec);
    if (std::string_view(codec) == "utf-16-be") doc = std::string("\xFE\xFF", 2) + doc;
    const Recorder r = Normalize(doc);
    EXPECT_EQ(Decoded(r, "Jane Doe"), kTable) << codec;
    EXPECT_TRUE(r.undecodable.empty()) << r.Reasons();
    // Character k of the text is code unit k after the 2-byte mark.
    const size_t k = kTable.find(kCard);
    EXPECT_EQ(r.Find(kCard), (Span{2 + 2 * k, 2 + 2 * (k + kCard.size())})) << codec;
    // "ö" and "ü" are one code unit each: the e-mail after them is still exact.
    const std::u16string_view before = u"name,email,card\r\nJane Doe,jane@example.com,4111 1111 1111 1111\r\nJörg Müller,";
    EXPECT_EQ(r.Find("jm@example.org"), (Span{2 + 2 * before.size(), 2 + 2 * (before.size() + 14)})) << codec;
  }
}

TEST(Utf16, BomLessAsciiFoundByItsNulBytes) {
  for (const char* codec : {"utf-16-le", "utf-16-be"}) {
    const std::string doc = Encode(kTable, codec);
    const Recorder r = Normalize(doc);
    EXPECT_EQ(Decoded(r, "Jane Doe"), kTable) << codec;
    const size_t k = kTable.find(kCard);
    EXPECT_EQ(r.Find(kCard), (Span{2 * k, 2 * (k + kCard.size())})) << codec;
  }
}

TEST(Utf16, CharsetLabelWithBytesThatAgree) {
  // Mostly non-ASCII (Japanese names), no mark: too little ASCII for the BOM-less rule,
  // read by the label.
  const std::string text = "顧客名簿 山田太郎 田中花子 佐藤次郎 鈴木一郎 高橋美咲 カード 4111111111111111";
  const std::string le = Encode(text, "utf-16-le");
  EXPECT_EQ(Decoded(Normalize(le, H("text/plain; charset=UTF-16LE")), "4111"), text);
  EXPECT_EQ(Decoded(Normalize(Encode(text, "utf-16-be"), H("text/plain; charset=\"utf-16\"")), "4111"), text);
  EXPECT_EQ(Decoded(Normalize(le, H("text/plain")), "4111"), "") << "not enough ASCII to tell without a label";
  // The label is not trusted over the bytes: ASCII sent as UTF-16 is read as what it is,
  // its escapes decoded.
  const Recorder ascii = Normalize("card=4111%201111%201111%201111", H("text/plain; charset=utf-16"));
  EXPECT_TRUE(ascii.Has("4111 1111 1111 1111")) << "escapes still decoded";
}

TEST(Utf16, SurrogatesPairedUnpairedAndAnOddLastByte) {
  const std::string smile = "\xF0\x9F\x98\x80";  // U+1F600, a surrogate pair
  std::string doc = Encode("mail " + smile + " a@example.com and more text", "utf-16");
  const Recorder r = Normalize(doc);
  EXPECT_EQ(Decoded(r, "a@example.com"), "mail " + smile + " a@example.com and more text");
  EXPECT_EQ(r.Find(smile), (Span{2 + 10, 2 + 14})) << "both units of the pair";

  // A lone high surrogate (followed by 'x'), a lone low one, a high one at the very end,
  // and an odd last byte: U+FFFD each, the byte dropped, nothing undecodable. (After 64
  // good units: in the first ones they would make the sniff refuse the document.)
  const std::string lead = "text " + std::string(70, '.');
  std::string bad("\xFF\xFE", 2);
  for (char c : lead) bad += std::string{c, '\0'};
  bad += std::string("\x00\xD8x\x00", 4);   // D800 'x'
  bad += std::string("\x00\xDC", 2);        // DC00
  bad += std::string(" \x00" "b\x00", 4);
  bad += std::string("\x3D\xD8", 2);        // D83D at the end
  bad += std::string("\x41", 1);            // half a unit
  const Recorder b = Normalize(bad);
  const std::string fffd = "\xEF\xBF\xBD";
  EXPECT_EQ(Decoded(b, "text"), lead + fffd + "x" + fffd + " b" + fffd);
  EXPECT_TRUE(b.undecodable.empty()) << b.Reasons();
}

TEST(Utf16, SameOutputAndSpansInEveryChunkSize) {
  const std::string smile = "\xF0\x9F\x98\x80";
  const std::string text = "id\tname\tcard\r\n1\tJörg " + smile + "\t4111 1111 1111 1111\r\n" +
                           "2\tAnna\t5500-0000-0000-0004 " + std::string(70, 'w') + "\r\n";
  std::vector<std::string> docs = {Encode(text, "utf-16"), Encode(text, "utf-16-be"), Encode(text, "utf-16-le")};
  docs.push_back(docs[0] + "Z");  // an odd last byte
  for (const std::string& doc : docs) {
    const Recorder whole = Normalize(doc);
    ASSERT_EQ(Decoded(whole, "Anna").substr(0, 2), "id");
    for (size_t chunk = 1; chunk <= doc.size(); ++chunk) {
      const Recorder r = Normalize(doc, {}, chunk);
      ASSERT_EQ(r.layers, whole.layers) << "chunk " << chunk;
      ASSERT_EQ(r.byte_spans, whole.byte_spans) << "chunk " << chunk;
      ASSERT_TRUE(r.undecodable.empty()) << r.Reasons();
    }
    // Every split into two.
    for (size_t cut = 0; cut <= doc.size(); ++cut) {
      Recorder r;
      {
        Normalizer n({}, {}, r);
        n.Feed(std::string_view(doc).substr(0, cut));
        n.Feed(std::string_view(doc).substr(cut));
        n.Finish();
      }
      ASSERT_EQ(r.layers, whole.layers) << "cut " << cut;
      ASSERT_EQ(r.byte_spans, whole.byte_spans) << "cut " << cut;
    }
  }
}

TEST(Utf16, BinaryAndUtf8AreNeverTakenForIt) {
  const DocHint none;
  const std::string png = Python(R"PY(
raw = b''.join(b'\0' + bytes((x * y) & 255 for x in range(16)) for y in range(16))
def chunk(t, d):
    return struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d))
out(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', 16, 16, 8, 0, 0, 0, 0)) +
    chunk(b'IDAT', zlib.compress(raw)) + chunk(b'IEND', b''))
)PY");
  const std::string zip = Python("out(Z([('a.txt', 'hello world ' * 20)], zipfile.ZIP_DEFLATED))\n");
  const std::string utf8 = "Grüße aus München, Jörg — 4111 1111 1111 1111, jane@example.com, naïve café façade";
  DocHint labelled;
  labelled.content_type = "text/plain; charset=utf-16";
  for (const std::string* b : {&png, &zip, &utf8}) {
    EXPECT_FALSE(LooksLikeUtf16(none, *b));
    EXPECT_FALSE(LooksLikeUtf16(labelled, *b));
  }
  // Little-endian integers, as binary formats write them: a NUL high byte, but controls.
  std::string ints;
  for (uint16_t v = 1; v < 64; ++v) ints += std::string{static_cast<char>(v), '\0'};
  EXPECT_FALSE(LooksLikeUtf16(none, ints));
  // Random bytes: none of 200,000 documents.
  std::mt19937_64 rng(12345);
  size_t taken = 0, marked = 0;
  for (int i = 0; i < 200000; ++i) {
    std::string r(96, '\0');
    for (char& c : r) c = static_cast<char>(rng());
    taken += LooksLikeUtf16(none, r) ? 1 : 0;
    // Made to start with a byte-order mark (which random bytes do once in 32,768), the
    // units after it must still be text: 273 in 200,000 here, so about one random
    // document in 24 million is read as UTF-16 (harmlessly: nothing else reads it).
    r[0] = '\xFF', r[1] = '\xFE';
    marked += LooksLikeUtf16(none, r) ? 1 : 0;
  }
  EXPECT_EQ(taken, 0u);
  EXPECT_LT(marked, 400u) << "more than 1 in 500 random documents with a mark";
  // A UTF-16 text with no PII is read, and has nothing to find.
  const Recorder clean = Normalize(Encode("Meeting notes: bring the projector, agenda attached.", "utf-16"));
  EXPECT_EQ(Decoded(clean, "projector"), "Meeting notes: bring the projector, agenda attached.");
}

TEST(Utf16, InsideAZipMemberAndAMultipartPart) {
  const std::string zip = Python(
      "t = 'name\\tcard\\r\\nJane Doe\\t4111 1111 1111 1111\\r\\n'\n"
      "out(Z([('export/customers.txt', t.encode('utf-16'))], zipfile.ZIP_DEFLATED))\n");
  const Recorder z = Normalize(zip);
  EXPECT_EQ(MembersWith(z, kCard), (std::set<std::string>{"export/customers.txt"}));

  const std::string part = Encode("name,card\r\nJane Doe,4111 1111 1111 1111\r\n", "utf-16");
  const std::string body = "--xx\r\nContent-Disposition: form-data; name=\"f\"; filename=\"c.txt\"\r\n"
                           "Content-Type: text/plain\r\n\r\n" + part + "\r\n--xx--\r\n";
  const Recorder m = Normalize(body, H("multipart/form-data; boundary=xx"));
  const size_t at = body.find(part);
  const size_t k = std::string_view("name,card\r\nJane Doe,").size();
  EXPECT_EQ(m.Find(kCard), (Span{at + 2 + 2 * k, at + 2 + 2 * (k + kCard.size())}));
}

TEST(Utf16, XmlWithoutAMarkIsReadAsTextAndXmlWithOneByExpat) {
  // A BOM-less UTF-16 "data.xml" declares encoding="UTF-16": read as XML after the
  // transcoding, expat would refuse the declaration (undecodable, a block). Its text is
  // read as text instead; with its mark, expat reads it as before.
  const std::string zip = Python(
      "x = '<?xml version=\"1.0\" encoding=\"UTF-16\"?>\\n<r><c>4111 1111 1111 1111</c></r>\\n'\n"
      "out(Z([('data.xml', x.encode('utf-16-le')), ('bom.xml', x.encode('utf-16'))]))\n");
  const Recorder r = Normalize(zip);
  EXPECT_TRUE(r.undecodable.empty()) << r.Reasons();
  EXPECT_EQ(MembersWith(r, kCard), (std::set<std::string>{"data.xml", "bom.xml"}));
}

}  // namespace
}  // namespace egressguard::dlp::decode::testing
