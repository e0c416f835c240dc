// tar archives (tar.cc) in ustar, GNU and pax formats from Python's tarfile, plain and inside gzip, xz, bzip2 and zstd; .xz, .bz2 and .lzma streams (stream_decoder.cc): members named, exact offsets, pax and base-256 sizes, checksums, truncation, trailing data, the depth limit, memory limits and bombs, chunking independence.
#include <gtest/gtest.h>

#include <random>

#include "archive_test_util.h"
#include "dlp/decode/decoders.h"

namespace egressguard::dlp::decode::testing {
namespace {

constexpr std::string_view kCard1 = "4539 1488 0343 6467";
constexpr std::string_view kCard2 = "4111 1111 1111 1111";

// Python helpers: T(members, fmt, mode) builds a tar in memory; fix(buf, at) recomputes
// the checksum of the header at `at` after a field was patched.
constexpr std::string_view kTarPy = R"PY(
def T(members, fmt=tarfile.PAX_FORMAT, mode='w'):
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode=mode, format=fmt) as tf:
        for m in members:
            name, data = m[0], m[1]
            ti = tarfile.TarInfo(name)
            if len(m) > 2:
                ti.type = m[2]
            if data is not None:
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))
            else:
                tf.addfile(ti)
    return b.getvalue()
def fix(buf, at):
    buf[at + 148:at + 156] = b' ' * 8
    buf[at + 148:at + 156] = b'%06o\0 ' % sum(buf[at:at + 512])
)PY";

std::string Tar(std::string_view script) { return Python(std::string(kTarPy) + std::string(script)); }

const std::string kLongDir = std::string(60, 'd') + "/" + std::string(60, 'e');

TEST(Tar, MembersOfEveryFormatAreFoundAtExactOffsets) {
  for (const char* fmt : {"tarfile.USTAR_FORMAT", "tarfile.GNU_FORMAT", "tarfile.PAX_FORMAT"}) {
    const std::string tar = Tar(std::string("out(T([") +
                                "('dir', None, tarfile.DIRTYPE), ('empty.txt', b''), "
                                "('link', None, tarfile.SYMTYPE), "
                                "('a.csv', b'n,4539 1488 0343 6467\\n' * 3), "
                                "('" + kLongDir + "/long.csv', b'x' * 700 + b'4111 1111 1111 1111')], " +
                                fmt + "))");
    const Recorder r = Normalize(tar);
    EXPECT_TRUE(r.undecodable.empty()) << fmt << ": " << r.Reasons();
    EXPECT_EQ(MembersWith(r, kCard1), std::set<std::string>{"a.csv"}) << fmt;
    EXPECT_EQ(MembersWith(r, kCard2), std::set<std::string>{kLongDir + "/long.csv"}) << fmt;
    EXPECT_EQ(r.Find(kCard1), SpanIn(tar, kCard1)) << fmt;
    EXPECT_EQ(r.Find(kCard2), SpanIn(tar, kCard2)) << fmt;
    EXPECT_EQ(r.members.size(), 2u) << fmt;
  }
}

TEST(Tar, PaxPathAndNonAsciiNames) {
  const std::string tar = Tar("out(T([('na\\u00efve/caf\\u00e9.csv', b'4539 1488 0343 6467'), "
                              "('" + std::string(300, 'p') + "', b'4111 1111 1111 1111')]))");
  ASSERT_NE(tar.find("path="), std::string::npos);
  const Recorder r = Normalize(tar);
  EXPECT_TRUE(r.undecodable.empty()) << r.Reasons();
  EXPECT_EQ(MembersWith(r, kCard1), std::set<std::string>{"na\xc3\xafve/caf\xc3\xa9.csv"});
  EXPECT_EQ(MembersWith(r, kCard2), std::set<std::string>{std::string(300, 'p')});
}

TEST(Tar, PaxSizeAndBase256SizesOverrideTheOctalField) {
  // A pax "size" record with the header's octal size zeroed: only the record says where
  // the data ends (as for files over 8 GiB).
  const std::string pax = Tar(R"PY(
b = io.BytesIO()
with tarfile.open(fileobj=b, mode='w', format=tarfile.PAX_FORMAT) as tf:
    data = b'pax sized 4539 1488 0343 6467' * 40
    ti = tarfile.TarInfo('p.csv'); ti.size = len(data); ti.pax_headers = {'size': str(len(data))}
    tf.addfile(ti, io.BytesIO(data))
    ti = tarfile.TarInfo('q.csv'); ti.size = 19
    tf.addfile(ti, io.BytesIO(b'4111 1111 1111 1111'))
buf = bytearray(b.getvalue())
at = buf.index(b'p.csv', 512) - 0
at = at - at % 512
buf[at + 124:at + 136] = b'00000000000\0'
fix(buf, at)
out(buf)
)PY");
  const Recorder r = Normalize(pax);
  EXPECT_TRUE(r.undecodable.empty()) << r.Reasons();
  EXPECT_EQ(MembersWith(r, kCard1), std::set<std::string>{"p.csv"});
  EXPECT_EQ(MembersWith(r, kCard2), std::set<std::string>{"q.csv"});

  const std::string b256 = Tar(R"PY(
buf = bytearray(T([('big.csv', b'base-256 4539 1488 0343 6467'), ('q.csv', b'4111 1111 1111 1111')], tarfile.GNU_FORMAT))
buf[124:136] = b'\x80' + (28).to_bytes(11, 'big')
fix(buf, 0)
out(buf)
)PY");
  const Recorder g = Normalize(b256);
  EXPECT_TRUE(g.undecodable.empty()) << g.Reasons();
  EXPECT_EQ(MembersWith(g, kCard1), std::set<std::string>{"big.csv"});
  EXPECT_EQ(MembersWith(g, kCard2), std::set<std::string>{"q.csv"});
}

TEST(Tar, CompressedTarballsAreOpened) {
  const std::string script = "out(T([('a.csv', b'n,4539 1488 0343 6467\\n' * 50)], tarfile.PAX_FORMAT, '";
  const std::string plain = Tar(script + "w'))");
  const std::string gz = Tar(script + "w:gz'))");
  const std::string xz = Tar(script + "w:xz'))");
  const std::string bz2 = Tar(script + "w:bz2'))");
  const std::string zst = Zstd(plain);
  ASSERT_EQ(gz.substr(0, 2), "\x1f\x8b");
  struct Case {
    const char* name;
    const std::string* body;
    ContentHintLite hint;
  };
  const Case cases[] = {
      {"tar.gz sniffed", &gz, {}},
      {"tar.gz declared", &gz, H("application/x-tar", "gzip")},
      {"tar.xz sniffed", &xz, {}},
      {"tar.bz2 sniffed", &bz2, {}},
      {"tar.zst sniffed", &zst, {}},
      {"tar.zst declared", &zst, H("", "zstd")},
  };
  for (const Case& c : cases) {
    for (size_t chunk : {size_t{0}, size_t{1}, size_t{100}}) {
      const Recorder r = Normalize(*c.body, c.hint, chunk);
      EXPECT_TRUE(r.undecodable.empty()) << c.name << ": " << r.Reasons();
      // Also in the decompressed layer the tar came in (outside any member).
      EXPECT_EQ(MembersWith(r, kCard1), (std::set<std::string>{"", "a.csv"})) << c.name << " chunk " << chunk;
    }
  }
  // A multipart upload of backup.tgz.
  const std::string body = "--b\r\nContent-Disposition: form-data; name=\"f\"; filename=\"backup.tgz\"\r\n"
                           "Content-Type: application/gzip\r\n\r\n" + gz + "\r\n--b--\r\n";
  const Recorder m = Normalize(body, H("multipart/form-data; boundary=b"));
  EXPECT_TRUE(m.undecodable.empty()) << m.Reasons();
  EXPECT_EQ(MembersWith(m, kCard1), (std::set<std::string>{"", "a.csv"}));
}

TEST(Tar, V7TarIsOpenedOnlyWhenNamedSo) {
  // No "ustar" magic: the name must say tar, and the checksum must hold.
  const std::string v7 = Tar(R"PY(
buf = bytearray(T([('a.csv', b'4539 1488 0343 6467')], tarfile.USTAR_FORMAT))
buf[257:265] = bytes(8)
fix(buf, 0)
out(buf)
)PY");
  // A browser upload: the part's bytes as they are, its name from Content-Disposition.
  auto part = [&](const std::string& filename) {
    return "--b\r\nContent-Disposition: form-data; name=\"f\"; filename=\"" + filename +
           "\"\r\nContent-Type: application/octet-stream\r\n\r\n" + v7 + "\r\n--b--\r\n";
  };
  const Recorder named = Normalize(part("old.tar"), H("multipart/form-data; boundary=b"));
  EXPECT_TRUE(named.undecodable.empty()) << named.Reasons();
  EXPECT_EQ(MembersWith(named, kCard1), std::set<std::string>{"a.csv"});
  // filename* (RFC 6266) wins over filename.
  const Recorder ext = Normalize("--b\r\nContent-Disposition: form-data; name=\"f\"; filename=\"x.bin\"; "
                                 "filename*=UTF-8''%C3%A4lt.tar\r\n\r\n" + v7 + "\r\n--b--\r\n",
                                 H("multipart/form-data; boundary=b"));
  EXPECT_EQ(MembersWith(ext, kCard1), std::set<std::string>{"a.csv"});
  const Recorder unnamed = Normalize(part("old.bin"), H("multipart/form-data; boundary=b"));
  EXPECT_TRUE(MembersWith(unnamed, kCard1).empty());
}

TEST(Tar, BadChecksumTruncationAndTrailingDataAreUndecodable) {
  const std::string tar = Tar("out(T([('a.csv', b'x' * 1000 + b'4539 1488 0343 6467'), ('b.csv', b'y' * 10)]))");
  std::string bad = tar;
  bad[20] ^= 1;  // inside the first header's name
  const Recorder c = Normalize(bad);
  ASSERT_EQ(c.undecodable.size(), 1u);
  EXPECT_TRUE(HasReason(c, "corrupt tar archive: header checksum mismatch")) << c.Reasons();
  EXPECT_TRUE(c.layers.empty());

  for (size_t cut : {size_t{300}, size_t{700}, size_t{1300}}) {
    const Recorder r = Normalize(tar.substr(0, cut));
    ASSERT_EQ(r.undecodable.size(), 1u) << cut << ": " << r.Reasons();
    EXPECT_TRUE(HasReason(r, "truncated tar archive")) << cut << ": " << r.Reasons();
  }
  // Ended at a header boundary without the end blocks: every member was read whole.
  const size_t end_blocks = tar.find_last_not_of('\0') / 512 * 512 + 512;
  EXPECT_TRUE(Normalize(tar.substr(0, end_blocks)).undecodable.empty());

  const Recorder t = Normalize(tar + "smuggled text after the end");
  ASSERT_EQ(t.undecodable.size(), 1u) << t.Reasons();
  EXPECT_TRUE(HasReason(t, "data after the end of the tar archive")) << t.Reasons();
  // A second archive after the first is still read, and reported once.
  const std::string second = Tar("out(T([('c.csv', b'4111 1111 1111 1111')]))");
  const Recorder two = Normalize(tar + second);
  EXPECT_EQ(two.undecodable.size(), 1u) << two.Reasons();
  EXPECT_EQ(MembersWith(two, kCard2), std::set<std::string>{"c.csv"});
}

TEST(Tar, TarInsideAZipAtTheDepthLimitIsUndecodable) {
  const std::string zip = Tar("out(Z([('a.tar', T([('a.csv', b'4539 1488 0343 6467')]))], zipfile.ZIP_DEFLATED))");
  NormalizerLimits one;
  one.max_depth = 1;
  const Recorder r = Normalize(zip, {}, 0, one);
  ASSERT_EQ(r.undecodable.size(), 1u) << r.Reasons();
  EXPECT_TRUE(HasReason(r, "tar archive nested deeper than the decode depth limit (1) (in a.tar)")) << r.Reasons();
  // With room, the member inside is found by its full path.
  const Recorder deep = Normalize(zip);
  EXPECT_TRUE(deep.undecodable.empty()) << deep.Reasons();
  EXPECT_TRUE(MembersWith(deep, kCard1).count("a.tar!a.csv"));
}

TEST(Tar, ChunkingDoesNotChangeWhatIsFound) {
  const std::string tar = Tar(
      "out(T([('a.csv', b'x,4539 1488 0343 6467\\n' * 40), ('" + kLongDir +
      "/b.json', b'{\"k\":\"v\\\\u0040w\"}'), ('c.b64', b'QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=')], "
      "tarfile.GNU_FORMAT))");
  const std::string xz = Tar("out(T([('a.csv', b'x,4539 1488 0343 6467\\n' * 400)], tarfile.PAX_FORMAT, 'w:xz'))");
  for (const auto& [body, exact] : {std::pair{tar, true}, std::pair{xz, false}}) {
    const Observed whole = Observe(Normalize(body), exact);
    EXPECT_EQ(Observe(NormalizeChunks(body, {1}), exact), whole) << Describe(whole);
    for (uint64_t seed = 1; seed <= 10; ++seed) {
      EXPECT_EQ(Observe(NormalizeChunks(body, RandomChunks(seed, 600)), exact), whole) << seed;
    }
    // Inside the tar's member data, inside the xz stream.
    for (size_t cut : exact ? std::vector<size_t>{600, 1000} : std::vector<size_t>{body.size() / 2, body.size() - 7}) {
      const std::string part = body.substr(0, cut);
      const Observed w = Observe(Normalize(part), false);
      EXPECT_FALSE(w.reasons.empty()) << cut;
      EXPECT_EQ(Observe(NormalizeChunks(part, {1}), false), w) << cut;
      EXPECT_EQ(Observe(NormalizeChunks(part, RandomChunks(cut, 300)), false), w) << cut;
    }
  }
}

TEST(Xz, StreamsDecodeAndLimitsHold) {
  const std::string xz = Python("import lzma\nout(lzma.compress(b'xz body 4539 1488 0343 6467 ' * 100))");
  const Recorder r = Normalize(xz);
  EXPECT_TRUE(r.undecodable.empty()) << r.Reasons();
  EXPECT_TRUE(r.Has(kCard1));
  // Truncated, corrupt, followed by garbage.
  const Recorder cut = Normalize(xz.substr(0, xz.size() - 10));
  ASSERT_EQ(cut.undecodable.size(), 1u) << cut.Reasons();
  EXPECT_TRUE(HasReason(cut, "xz")) << cut.Reasons();
  std::string corrupt = xz;
  corrupt[xz.size() / 2] ^= 0x55;
  EXPECT_TRUE(HasReason(Normalize(corrupt), "corrupt xz stream"));
  // What a corrupt stream gives before its corruption does not depend on the reads.
  const std::string long_xz =
      Python("import lzma, random\nout(lzma.compress(random.Random(3).randbytes(200000).hex().encode()))");
  std::string long_corrupt = long_xz;
  for (size_t i = long_xz.size() / 2; i < long_xz.size() / 2 + 8; ++i) long_corrupt[i] ^= 0x5a;
  const Observed whole = Observe(Normalize(long_corrupt), false);
  EXPECT_EQ(whole.reasons.size(), 1u);
  EXPECT_EQ(Observe(NormalizeChunks(long_corrupt, {1}), false), whole);
  for (uint64_t seed = 1; seed <= 5; ++seed) {
    EXPECT_EQ(Observe(NormalizeChunks(long_corrupt, RandomChunks(seed, 3000)), false), whole) << seed;
  }
  EXPECT_EQ(Normalize(xz + "garbage").undecodable.size(), 1u);
  // Two streams back to back (xz concatenates them, as gzip members).
  const Recorder two = Normalize(xz + Python("import lzma\nout(lzma.compress(b'4111 1111 1111 1111'))"));
  EXPECT_TRUE(two.undecodable.empty()) << two.Reasons();
  EXPECT_TRUE(two.Has(kCard2));
  // A 64 MiB dictionary (preset 9) is past the 16 MiB budget: refused, not allocated.
  const std::string big_dict = Python("import lzma\nout(lzma.compress(b'abc' * 1000, preset=9))");
  const Recorder m = Normalize(big_dict);
  EXPECT_TRUE(HasReason(m, "memory limit")) << m.Reasons();
  EXPECT_LT(m.max_memory, 1u << 20);
  // 20 MB of zeros.
  const std::string bomb = Python(R"PY(
import lzma
c = lzma.LZMACompressor(preset=0)
parts = [c.compress(bytes(1 << 20)) for _ in range(20)]
out(b''.join(parts) + c.flush())
)PY");
  const Recorder b = Normalize(bomb, {}, 4096);
  EXPECT_TRUE(HasReason(b, "decompression bomb")) << b.Reasons();
  EXPECT_LT(b.recorded, 4u << 20);
}

// The same contract as .xz for the other compressed files that are no content coding:
// decoded, truncation, corruption and trailing data undecodable, concatenated streams
// read on, the output before a corruption independent of the reads, bombs stopped.
struct FileCodecCase {
  const char* name;       // as the reasons say it
  const char* compress;   // a Python expression of `d` (bytes)
  bool concatenates;      // two streams back to back are one file
};

class FileCodecs : public ::testing::TestWithParam<FileCodecCase> {};

TEST_P(FileCodecs, StreamsDecodeAndLimitsHold) {
  const FileCodecCase& c = GetParam();
  const auto compressed = [&](const std::string& data_expr) {
    return Python(std::string("import bz2, lzma\nd = ") + data_expr + "\nout(" + c.compress + ")");
  };
  const std::string body = compressed("b'body 4539 1488 0343 6467 ' * 100");
  const Recorder r = Normalize(body);
  EXPECT_TRUE(r.undecodable.empty()) << c.name << ": " << r.Reasons();
  EXPECT_TRUE(r.Has(kCard1)) << c.name;
  const Recorder cut = Normalize(body.substr(0, body.size() - 10));
  ASSERT_EQ(cut.undecodable.size(), 1u) << c.name << ": " << cut.Reasons();
  EXPECT_TRUE(HasReason(cut, c.name)) << cut.Reasons();
  EXPECT_EQ(Normalize(body + "garbage").undecodable.size(), 1u) << c.name;
  // What a corrupt stream gives before its corruption does not depend on the reads.
  const std::string long_body = compressed("__import__('random').Random(3).randbytes(300000).hex().encode()");
  std::string corrupt = long_body;
  for (size_t i = long_body.size() / 2; i < long_body.size() / 2 + 8; ++i) corrupt[i] ^= 0x5a;
  const Observed whole = Observe(Normalize(corrupt), false);
  EXPECT_EQ(whole.reasons.size(), 1u) << c.name << ": " << Describe(whole);
  EXPECT_EQ(Observe(NormalizeChunks(corrupt, {1}), false), whole) << c.name;
  for (uint64_t seed = 1; seed <= 5; ++seed) {
    EXPECT_EQ(Observe(NormalizeChunks(corrupt, RandomChunks(seed, 3000)), false), whole) << c.name << " " << seed;
  }
  if (c.concatenates) {  // pbzip2 writes one stream per block
    const Recorder two = Normalize(body + compressed("b'4111 1111 1111 1111'"));
    EXPECT_TRUE(two.undecodable.empty()) << two.Reasons();
    EXPECT_TRUE(two.Has(kCard2)) << c.name;
  }
  // 20 MB of zeros.
  const Recorder b = Normalize(compressed("bytes(20 << 20)"), {}, 4096);
  EXPECT_TRUE(HasReason(b, "decompression bomb")) << c.name << ": " << b.Reasons();
  EXPECT_LT(b.recorded, 4u << 20);
}

INSTANTIATE_TEST_SUITE_P(Decode, FileCodecs,
                         ::testing::Values(FileCodecCase{"bzip2", "bz2.compress(d)", true},
                                           FileCodecCase{"lzma", "lzma.compress(d, format=lzma.FORMAT_ALONE)", false}),
                         [](const ::testing::TestParamInfo<FileCodecCase>& p) { return std::string(p.param.name); });

TEST(FileCodecs, LzmaDictionaryPastTheBudgetIsRefused) {
  // preset 9: a 64 MiB dictionary, past the 16 MiB budget: refused, not allocated.
  const Recorder m = Normalize(Python("import lzma\nout(lzma.compress(b'abc' * 1000, format=lzma.FORMAT_ALONE, preset=9))"));
  EXPECT_TRUE(HasReason(m, "memory limit")) << m.Reasons();
  EXPECT_LT(m.max_memory, 1u << 20);
}

TEST(FileCodecs, SniffingFindsNoneInRandomOrFramedBytes) {
  // The .lzma header has no magic: its shape must not be met by other bytes, or a clean
  // upload would be read as a corrupt stream and blocked.
  std::mt19937_64 rng(7);
  for (int i = 0; i < 200000; ++i) {
    std::string b(32, '\0');
    for (char& ch : b) ch = static_cast<char>(rng());
    if (i % 4 == 1) b[0] = 0x5D;  // the properties byte, to test the rest of the shape
    if (i % 4 == 2) b.replace(0, 5, std::string("\0\0\0\x10\0", 5));  // a gRPC message prefix
    ASSERT_FALSE(LooksLikeLzmaAlone(b)) << i;
    ASSERT_FALSE(LooksLikeBzip2(b)) << i;
  }
  EXPECT_TRUE(LooksLikeLzmaAlone(Python("import lzma\nout(lzma.compress(b'x', format=lzma.FORMAT_ALONE))")));
  EXPECT_TRUE(LooksLikeBzip2(Python("import bz2\nout(bz2.compress(b'x'))")));
  EXPECT_TRUE(LooksLikeBzip2(Python("import bz2\nout(bz2.compress(b''))")));
}

TEST(FileCodecs, ArchivesNotReadAreUndecodable) {
  // 7z, rar and cab archives: no decoder here reads them, so they do not pass as read.
  for (const std::string& head : {std::string("7z\xbc\xaf\x27\x1c\x00\x04", 8) + std::string(56, 'x'),
                                  std::string("Rar!\x1a\x07\x01\x00", 8) + std::string(56, 'x'),
                                  std::string("Rar!\x1a\x07\x00", 7) + std::string(57, 'x'),
                                  std::string("MSCF\0\0\0\0", 8) + std::string(56, 'x')}) {
    const Recorder r = Normalize(head);
    EXPECT_EQ(r.undecodable.size(), 1u) << r.Reasons();
    EXPECT_TRUE(HasReason(r, "this format is not read")) << r.Reasons();
  }
}

}  // namespace
}  // namespace egressguard::dlp::decode::testing
