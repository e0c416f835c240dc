// gzip/deflate/br/zstd bodies (from the libraries and the CLIs) decode, declared, stacked or sniffed; bombs, corrupt and truncated streams are undecodable with bounded memory.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iterator>

#include "decode_test_util.h"

namespace egressguard::dlp::decode::testing {
namespace {

const std::string kText = [] {
  std::string t;
  for (int i = 0; i < 300; ++i) t += "row " + std::to_string(i) + ": customer jane.doe@example.org paid with card\n";
  return t + "the secret is 4111 1111 1111 1111\n";
}();

TEST(Compress, DeclaredEncodingsDecode) {
  struct Case {
    const char* name;
    std::string body;
  } cases[] = {{"gzip", Gzip(kText)}, {"x-gzip", Gzip(kText)}, {"deflate", Deflate(kText, 15)},
               {"deflate", Deflate(kText, -15)}, {"br", Brotli(kText)}, {"zstd", Zstd(kText)}};
  for (const auto& c : cases) {
    const Recorder r = Normalize(c.body, H("", c.name));
    EXPECT_TRUE(r.Has(kText)) << c.name;
    EXPECT_TRUE(r.undecodable.empty()) << c.name << ": " << r.Reasons();
    // Mapped to the compressed bytes that carried it (compress.cc: from the input not yet
    // turned into output when the value came out), inside the body.
    const Span s = r.Find("4111 1111 1111 1111");
    EXPECT_LT(s.begin, s.end) << c.name;
    EXPECT_LE(s.end, c.body.size()) << c.name;
  }
}

// A body whose bytes are another codec's than the label says is decoded as what the bytes
// are (the origin may decode them so), and the mismatch is still reported.
TEST(Compress, MislabelledCodecDecodedAsTheBytesSay) {
  for (const char* label : {"br", "deflate", "zstd"}) {
    const Recorder r = Normalize(Gzip(kText), H("", label));
    EXPECT_TRUE(r.Has(kText)) << label;
    EXPECT_FALSE(r.undecodable.empty()) << label;
  }
  const Recorder z = Normalize(Zstd(kText), H("", "br"));
  EXPECT_TRUE(z.Has(kText));
}

TEST(Compress, SniffedByMagicWhateverTheLabelSays) {
  for (const std::string& body : {Gzip(kText), Zstd(kText), Deflate(kText, 15)}) {
    const Recorder r = Normalize(body, H("text/plain"));
    EXPECT_TRUE(r.Has(kText));
    EXPECT_TRUE(r.undecodable.empty()) << r.Reasons();
  }
}

TEST(Compress, StackedEncodingsUndoneInReverseOrder) {
  const std::string body = Brotli(Gzip(kText));  // "gzip, br": gzip first, then br
  const Recorder r = Normalize(body, H("", "gzip, br"));
  EXPECT_TRUE(r.Has(kText));
  EXPECT_TRUE(r.undecodable.empty()) << r.Reasons();
}

TEST(Compress, ConcatenatedGzipMembers) {
  const std::string body = Gzip("first member 111-22-3333 ") + Gzip("second member 444-55-6666");
  const Recorder r = Normalize(body, H("", "gzip"));
  EXPECT_TRUE(r.Has("first member 111-22-3333 second member 444-55-6666"));
  EXPECT_TRUE(r.undecodable.empty()) << r.Reasons();
}

TEST(Compress, NestedBase64InJsonInGzipMapsToTheGzipBody) {
  const std::string inner = "passport X1234567 for jane";
  const std::string json = R"({"attachment":")" + Base64(inner) + R"(","n":1})";
  const std::string body = Gzip(json);
  const Recorder r = Normalize(body, H("application/json", "gzip"));
  ASSERT_TRUE(r.Has(inner));
  const Span s = r.Find("X1234567");
  EXPECT_LT(s.begin, s.end);
  EXPECT_LE(s.end, body.size());
  // And once more inside base64 of the gzip, inside JSON: three layers.
  const std::string outer = R"({"blob":")" + Base64(body) + R"("})";
  const Recorder r2 = Normalize(outer);
  ASSERT_TRUE(r2.Has(inner));
  const Span s2 = r2.Find("X1234567");
  const Span run = SpanIn(outer, Base64(body));
  EXPECT_GE(s2.begin, run.begin);
  EXPECT_LE(s2.end, run.end);
}

TEST(Compress, DeclaredButNotCompressedIsUndecodableAndStillDecoded) {
  const std::string body = R"({"mail":"a\u0040b.com"})";
  const Recorder r = Normalize(body, H("", "gzip"));
  ASSERT_EQ(r.undecodable.size(), 1u);
  EXPECT_NE(r.undecodable[0].why.find("does not match"), std::string::npos);
  EXPECT_TRUE(r.Has("a@b.com"));
}

TEST(Compress, UnsupportedEncodingIsUndecodable) {
  const Recorder r = Normalize("abc", H("", "compress"));
  ASSERT_EQ(r.undecodable.size(), 1u);
  EXPECT_NE(r.undecodable[0].why.find("unsupported"), std::string::npos);
}

TEST(Compress, TruncatedStreamsAreUndecodable) {
  for (const auto& [name, body] : {std::pair<std::string, std::string>{"gzip", Gzip(kText)},
                                   {"br", Brotli(kText)}, {"zstd", Zstd(kText)}, {"deflate", Deflate(kText, 15)}}) {
    const std::string cut = body.substr(0, body.size() / 2);
    const Recorder r = Normalize(cut, H("", name));
    ASSERT_EQ(r.undecodable.size(), 1u) << name;
    EXPECT_NE(r.undecodable[0].why.find("truncated"), std::string::npos) << name << r.Reasons();
    EXPECT_EQ(r.undecodable[0].begin, 0u);
  }
}

TEST(Compress, CorruptStreamsAreUndecodable) {
  for (const auto& [name, body] : {std::pair<std::string, std::string>{"gzip", Gzip(kText)},
                                   {"br", Brotli(kText)}, {"zstd", Zstd(kText, /*checksum=*/true)}}) {
    // (zstd without its optional checksum cannot tell a flipped literal byte.)
    std::string bad = body;
    for (size_t i = bad.size() / 3; i < bad.size() / 3 + 8; ++i) bad[i] = static_cast<char>(bad[i] ^ 0x5a);
    const Recorder r = Normalize(bad, H("", name));
    ASSERT_FALSE(r.undecodable.empty()) << name;
  }
}

// ~97 KB of text with a card number a third of the way in: large enough that libbrotli
// keeps all of it in its window (it hands decoded bytes out only when its input runs out
// or the window wraps) and that zstd cuts it into several blocks.
std::string LongText(size_t size) {
  std::string t;
  for (int i = 0; t.size() < size; ++i) {
    if (i == 600) t += "the card on file is 4111 1111 1111 1111, expiry 12/29\n";
    t += "row " + std::to_string(i) + ": customer jane.doe@example.org paid " + std::to_string(i * 7919 % 100000) +
         " with card\n";
  }
  return t;
}
const std::string kLongText = LongText(97000);

// What one chunking of a body decoded to: each layer's bytes and the reasons reported.
struct Decoded {
  std::string text;
  std::vector<std::string> reasons;
};
Decoded DecodeIn(std::string_view body, const char* encoding, size_t chunk) {
  const Recorder r = Normalize(body, H("", encoding), chunk);
  Decoded d;
  for (const auto& [id, text] : r.layers) d.text += text;
  for (const auto& u : r.undecodable) d.reasons.push_back(u.why);
  return d;
}

// A corrupt stream decodes to the same bytes before the corruption whatever the cuts
// between reads, and is reported undecodable every time. The chunkings are the whole body,
// a TLS record's worth, small reads and single bytes.
void ExpectSameWhateverTheChunking(const std::string& body, const char* encoding, const std::string& label) {
  const Decoded whole = DecodeIn(body, encoding, 0);
  ASSERT_EQ(whole.reasons.size(), 1u) << label;
  EXPECT_NE(whole.reasons[0].find("corrupt"), std::string::npos) << label << ": " << whole.reasons[0];
  // Only bytes of the original, from its start: nothing invented after the corruption.
  EXPECT_EQ(kLongText.compare(0, whole.text.size(), whole.text), 0) << label;
  for (size_t chunk : {size_t{1400}, size_t{64}, size_t{1}, size_t{997}, size_t{4096}}) {
    const Decoded split = DecodeIn(body, encoding, chunk);
    EXPECT_EQ(split.text.size(), whole.text.size()) << label << " in " << chunk << "-byte chunks";
    EXPECT_TRUE(split.text == whole.text) << label << " in " << chunk << "-byte chunks";
    EXPECT_EQ(split.reasons, whole.reasons) << label << " in " << chunk << "-byte chunks";
  }
}

TEST(Compress, CorruptLastByteDecodesTheSameWhateverTheChunking) {
  std::string br = Brotli(kLongText);
  br.back() = static_cast<char>(br.back() ^ 0x80);  // the final padding bits
  ExpectSameWhateverTheChunking(br, "br", "br");
  // Everything up to a few dozen compressed bytes before the corruption is decoded, the
  // card included, even when the body arrives in one read.
  const Decoded d = DecodeIn(br, "br", 0);
  EXPECT_NE(d.text.find("4111 1111 1111 1111"), std::string::npos);
  EXPECT_GT(d.text.size(), kLongText.size() / 2);

  // With its checksum the whole (single) block is decoded before the checksum fails it:
  // all of it comes out, in every chunking.
  std::string zst = Zstd(kLongText, /*checksum=*/true);
  zst.back() = static_cast<char>(zst.back() ^ 0x5a);
  ExpectSameWhateverTheChunking(zst, "zstd", "zstd with checksum");
  EXPECT_EQ(DecodeIn(zst, "zstd", 0).text, kLongText);
  // Without it the last byte is the block's own: zstd decodes a block whole or not at
  // all, and this text is one block, so nothing comes out, in every chunking.
  zst = Zstd(kLongText, /*checksum=*/false);
  zst.back() = static_cast<char>(zst.back() ^ 0x5a);
  ExpectSameWhateverTheChunking(zst, "zstd", "zstd");
}

TEST(Compress, CorruptionAnywhereDecodesTheSameWhateverTheChunking) {
  // Several zstd blocks (128 KiB each), so a corruption in a later one leaves the earlier
  // ones decoded.
  const std::string text = LongText(300000);
  struct Case {
    const char* encoding;
    std::string body;
  } cases[] = {{"gzip", Gzip(text)}, {"deflate", Deflate(text, -15)}, {"br", Brotli(text)},
               {"zstd", Zstd(text, true)}, {"zstd", Zstd(text, false)}};
  size_t decoded_some = 0;
  for (const auto& c : cases) {
    for (size_t at : {c.body.size() / 5, c.body.size() / 2, c.body.size() * 4 / 5, c.body.size() - 2}) {
      std::string bad = c.body;
      for (size_t i = at; i < std::min(at + 4, bad.size()); ++i) bad[i] = static_cast<char>(bad[i] ^ 0xa5);
      const std::string label = std::string(c.encoding) + " corrupt at " + std::to_string(at);
      const Decoded whole = DecodeIn(bad, c.encoding, 0);
      // A flip may happen to decode (zlib cannot always tell): then it must do so the same
      // way in every chunking too.
      EXPECT_LE(whole.reasons.size(), 1u) << label;
      decoded_some += whole.reasons.size() == 1 && whole.text.size() > text.size() / 10;
      for (size_t chunk : {size_t{1400}, size_t{64}, size_t{3}}) {
        const Decoded split = DecodeIn(bad, c.encoding, chunk);
        EXPECT_TRUE(split.text == whole.text) << label << " in " << chunk << "-byte chunks: " << split.text.size()
                                              << " vs " << whole.text.size() << " bytes";
        EXPECT_EQ(split.reasons, whole.reasons) << label << " in " << chunk << "-byte chunks";
      }
    }
  }
  // Most corruptions leave a good part decoded before them (the test would say little if
  // every stream decoded to nothing).
  EXPECT_GE(decoded_some, 12u);
}

TEST(Compress, TrailingDataAfterStreamIsUndecodable) {
  const Recorder r = Normalize(Gzip(kText) + "smuggled", H("", "gzip"));
  ASSERT_EQ(r.undecodable.size(), 1u);
  EXPECT_NE(r.undecodable[0].why.find("after the end"), std::string::npos);
  EXPECT_TRUE(r.Has(kText));
}

// A gzip stream of `total` zero bytes (a multiple of 1 MiB), built the way a bomb maker
// would: after Z_FULL_FLUSH deflate forgets its history, so the compressed form of each
// further MiB of zeros is the same bytes; repeat them, then write the real trailer.
std::string GzipZeros(uint64_t total) {
  z_stream z{};
  EXPECT_EQ(deflateInit2(&z, 9, Z_DEFLATED, 31, 9, Z_DEFAULT_STRATEGY), Z_OK);
  const std::string zeros(1 << 20, '\0');
  std::string buf(1 << 20, '\0');
  auto step = [&](const std::string& in, int flush) {
    z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
    z.avail_in = static_cast<uInt>(in.size());
    z.next_out = reinterpret_cast<Bytef*>(buf.data());
    z.avail_out = static_cast<uInt>(buf.size());
    deflate(&z, flush);
    return buf.substr(0, buf.size() - z.avail_out);
  };
  std::string out = step(zeros, Z_FULL_FLUSH);  // header + first MiB
  const std::string block = step(zeros, Z_FULL_FLUSH);
  EXPECT_EQ(block, step(zeros, Z_FULL_FLUSH));
  for (uint64_t done = 3 << 20; done < total; done += zeros.size()) out += block;
  out += block + block;
  std::string tail = step("", Z_FINISH);  // final empty block + crc32 + isize
  deflateEnd(&z);
  uLong crc = crc32(0, nullptr, 0);
  const uLong crc_mib = crc32(0, reinterpret_cast<const Bytef*>(zeros.data()), static_cast<uInt>(zeros.size()));
  for (uint64_t done = 0; done < total; done += zeros.size()) crc = crc32_combine(crc, crc_mib, static_cast<z_off_t>(zeros.size()));
  for (int i = 0; i < 4; ++i) {
    tail[tail.size() - 8 + i] = static_cast<char>((crc >> (8 * i)) & 0xFF);
    tail[tail.size() - 4 + i] = static_cast<char>((total >> (8 * i)) & 0xFF);
  }
  return out + tail;
}

std::string ZstdZeros(uint64_t total, int window_log = 0) {
  ZSTD_CCtx* c = ZSTD_createCCtx();
  ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, 1);
  if (window_log) ZSTD_CCtx_setParameter(c, ZSTD_c_windowLog, window_log);
  const std::string zeros(1 << 20, '\0');
  std::string out, buf(ZSTD_CStreamOutSize(), '\0');
  for (uint64_t done = 0; done < total; done += zeros.size()) {
    ZSTD_inBuffer in{zeros.data(), zeros.size(), 0};
    const ZSTD_EndDirective mode = done + zeros.size() >= total ? ZSTD_e_end : ZSTD_e_continue;
    size_t left;
    do {
      ZSTD_outBuffer ob{buf.data(), buf.size(), 0};
      left = ZSTD_compressStream2(c, &ob, &in, mode);
      out.append(buf.data(), ob.pos);
    } while (mode == ZSTD_e_end ? left != 0 : in.pos < in.size);
  }
  ZSTD_freeCCtx(c);
  return out;
}

std::string BrotliZeros(uint64_t total) {
  BrotliEncoderState* s = BrotliEncoderCreateInstance(nullptr, nullptr, nullptr);
  BrotliEncoderSetParameter(s, BROTLI_PARAM_QUALITY, 1);
  const std::string zeros(1 << 20, '\0');
  std::string out;
  for (uint64_t done = 0; done < total; done += zeros.size()) {
    size_t avail_in = zeros.size();
    const auto* next_in = reinterpret_cast<const uint8_t*>(zeros.data());
    const BrotliEncoderOperation op = done + zeros.size() >= total ? BROTLI_OPERATION_FINISH : BROTLI_OPERATION_PROCESS;
    while (avail_in > 0 || BrotliEncoderHasMoreOutput(s) || (op == BROTLI_OPERATION_FINISH && !BrotliEncoderIsFinished(s))) {
      size_t avail_out = 0;
      BrotliEncoderCompressStream(s, op, &avail_in, &next_in, &avail_out, nullptr, nullptr);
      size_t n = 0;
      const uint8_t* p = BrotliEncoderTakeOutput(s, &n);
      out.append(reinterpret_cast<const char*>(p), n);
    }
  }
  BrotliEncoderDestroyInstance(s);
  return out;
}

void ExpectBomb(const std::string& body, const char* encoding) {
  const Recorder r = Normalize(body, H("", encoding), 64 << 10);
  ASSERT_EQ(r.undecodable.size(), 1u) << encoding << r.Reasons();
  EXPECT_NE(r.undecodable[0].why.find("decompression bomb"), std::string::npos) << encoding;
  size_t decoded = 0;
  for (const auto& [id, text] : r.layers) decoded += text.size();
  EXPECT_LE(decoded, (1u << 20) + (64u << 10)) << encoding;
  EXPECT_LT(r.max_memory, 12u << 20) << encoding;
}

TEST(Compress, GzipBombIsWellFormed) {
  // The hand-built bomb is a valid gzip stream (checked on a small one fully inflated).
  const std::string small = GzipZeros(8 << 20);
  NormalizerLimits limits;
  limits.max_expansion_ratio = 1u << 30;
  const Recorder r = Normalize(small, H("", "gzip"), 0, limits);
  EXPECT_TRUE(r.undecodable.empty()) << r.Reasons();
  ASSERT_EQ(r.layers.size(), 1u);
  EXPECT_EQ(r.layers.begin()->second, std::string(8 << 20, '\0'));
}

TEST(Compress, GigabyteOfZerosIsABomb) {
  ExpectBomb(GzipZeros(1ull << 30), "gzip");
  ExpectBomb(ZstdZeros(1ull << 30), "zstd");
  ExpectBomb(BrotliZeros(256ull << 20), "br");
}

TEST(Compress, DecodedSizeLimitStopsDecoding) {
  NormalizerLimits limits;
  limits.max_decoded_bytes = 4 << 20;
  limits.max_expansion_ratio = 1u << 30;
  const Recorder r = Normalize(GzipZeros(32 << 20), H("", "gzip"), 4096, limits);
  ASSERT_EQ(r.undecodable.size(), 1u) << r.Reasons();
  EXPECT_NE(r.undecodable[0].why.find("decoded size limit"), std::string::npos);
  EXPECT_LT(r.max_memory, 256u << 10);
}

TEST(Compress, ZstdWindowBeyondTheLimitIsUndecodable) {
  const Recorder r = Normalize(ZstdZeros(2 << 20, 27), H("", "zstd"));
  ASSERT_EQ(r.undecodable.size(), 1u);
  EXPECT_NE(r.undecodable[0].why.find("corrupt zstd"), std::string::npos) << r.Reasons();
}

TEST(Compress, MemoryBudgetFailsTheDecoderNotTheProcess) {
  NormalizerLimits limits;
  limits.max_memory_bytes = 16 << 10;  // less than zlib's window
  const Recorder r = Normalize(Gzip(kText), H("", "gzip"), 0, limits);
  ASSERT_EQ(r.undecodable.size(), 1u);
  EXPECT_NE(r.undecodable[0].why.find("memory"), std::string::npos) << r.Reasons();
}

// Compresses with a command-line tool, if it is installed.
std::string ViaCli(const std::string& tool, const std::string& input) {
  if (access(("/usr/bin/" + tool).c_str(), X_OK) != 0) return "";
  char path[] = "/tmp/egressguard-decode-XXXXXX";
  const int fd = mkstemp(path);
  EXPECT_GE(fd, 0);
  EXPECT_EQ(write(fd, input.data(), input.size()), static_cast<ssize_t>(input.size()));
  close(fd);
  std::string out;
  if (FILE* p = popen(("/usr/bin/" + tool + " -c < " + path).c_str(), "r")) {
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    pclose(p);
  }
  unlink(path);
  return out;
}

TEST(Compress, BodiesFromTheCommandLineTools) {
  int tried = 0;
  for (const auto& [tool, encoding] : {std::pair<std::string, std::string>{"gzip", "gzip"}, {"brotli", "br"}, {"zstd", "zstd"}}) {
    const std::string body = ViaCli(tool, kText);
    if (body.empty()) continue;
    ++tried;
    const Recorder declared = Normalize(body, H("", encoding), 777);
    EXPECT_TRUE(declared.Has(kText)) << tool;
    EXPECT_TRUE(declared.undecodable.empty()) << tool << declared.Reasons();
  }
  if (tried == 0) GTEST_SKIP() << "no gzip/brotli/zstd CLI installed";
}

}  // namespace
}  // namespace egressguard::dlp::decode::testing
