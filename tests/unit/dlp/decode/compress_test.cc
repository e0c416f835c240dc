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
