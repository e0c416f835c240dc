// Zip archives (zip.cc) from Python's zipfile and the zip CLI, and hand-made edge cases: members found and named (stored, deflate, bzip2, LZMA), stored data at exact offsets, data descriptors, zip64, nesting to and past the depth limit, bombs, truncation, encryption, unsupported methods, chunking independence, holds and bounded memory.
#include <gtest/gtest.h>

#include <chrono>

#include "archive_test_util.h"

namespace egressguard::dlp::decode::testing {
namespace {

constexpr std::string_view kCard1 = "4539 1488 0343 6467";
constexpr std::string_view kCard2 = "4111 1111 1111 1111";

// Little-endian fields for hand-made records.
std::string Le(uint64_t v, int bytes) {
  std::string s;
  for (int i = 0; i < bytes; ++i) s += static_cast<char>((v >> (8 * i)) & 0xff);
  return s;
}

// Hand-made zips for what Python's zipfile cannot write (encryption flags, odd sizes).
struct HandZip {
  std::string bytes;
  int entries = 0;
  std::string central;

  // A local header and data as given; sizes as given (0xffffffff and a zip64 extra when asked).
  void Member(std::string_view name, std::string_view data, uint16_t method = 0, uint16_t flags = 0,
              bool zip64_extra = false, std::string_view descriptor = "", uint64_t usize = UINT64_MAX) {
    if (usize == UINT64_MAX) usize = data.size();
    const bool dd = (flags & 8) != 0;
    std::string extra;
    uint64_t c32 = dd ? 0 : data.size(), u32 = dd ? 0 : usize;
    if (zip64_extra) {
      extra = Le(1, 2) + Le(16, 2) + Le(dd ? 0 : usize, 8) + Le(dd ? 0 : data.size(), 8);
      c32 = u32 = 0xffffffff;
    }
    const size_t offset = bytes.size();
    bytes += "PK\x03\x04" + Le(zip64_extra ? 45 : 20, 2) + Le(flags, 2) + Le(method, 2) + Le(0, 4) +
             Le(crc32(0, reinterpret_cast<const Bytef*>(data.data()), static_cast<uInt>(data.size())), 4) +
             Le(c32, 4) + Le(u32, 4) + Le(name.size(), 2) + Le(extra.size(), 2) + std::string(name) + extra +
             std::string(data) + std::string(descriptor);
    central += "PK\x01\x02" + Le(20, 2) + Le(20, 2) + Le(flags, 2) + Le(method, 2) + Le(0, 4) + Le(0, 4) +
               Le(data.size(), 4) + Le(usize, 4) + Le(name.size(), 2) + Le(0, 2) + Le(0, 2) + Le(0, 2) + Le(0, 2) +
               Le(0, 4) + Le(offset, 4) + std::string(name);
    ++entries;
  }
  std::string Finish(std::string_view comment = "") const {
    return bytes + central + "PK\x05\x06" + Le(0, 4) + Le(entries, 2) + Le(entries, 2) + Le(central.size(), 4) +
           Le(bytes.size(), 4) + Le(comment.size(), 2) + std::string(comment);
  }
};

std::string Z1(std::string_view name, std::string_view data) {
  HandZip h;
  h.Member(name, data);
  return h.Finish();
}

std::string Customers(int rows) {
  std::string csv = "name,email,card\n";
  for (int i = 0; i < rows; ++i) {
    csv += "Customer " + std::to_string(i) + ",c" + std::to_string(i) + "@example.org," + std::string(kCard1) + "\n";
  }
  return csv;
}

TEST(Zip, StoredAndDeflatedMembersAreFoundInTheirMembers) {
  const std::string zip = Python(R"PY(
b = io.BytesIO()
with zipfile.ZipFile(b, 'w') as zf:
    zf.writestr(zipfile.ZipInfo('dir/'), b'')
    zf.writestr('empty.txt', b'')
    zf.writestr('stored.csv', b'name,card\nJane,4539 1488 0343 6467\n', compress_type=zipfile.ZIP_STORED)
    zf.writestr('deep/deflated.txt', b'some padding text ' * 50 + b'card 4111 1111 1111 1111 end',
                compress_type=zipfile.ZIP_DEFLATED)
out(b.getvalue())
)PY");
  const Recorder r = Normalize(zip);
  EXPECT_TRUE(r.undecodable.empty()) << r.Reasons();
  EXPECT_EQ(MembersWith(r, kCard1), std::set<std::string>{"stored.csv"});
  EXPECT_EQ(MembersWith(r, kCard2), std::set<std::string>{"deep/deflated.txt"});
  // Stored bytes map exactly; deflated ones to the compressed bytes of their member.
  EXPECT_EQ(r.Find(kCard1), SpanIn(zip, kCard1));
  const Span deflated = r.Find(kCard2);
  EXPECT_GE(deflated.begin, zip.find("deep/deflated.txt"));
  EXPECT_LE(deflated.end, zip.find("PK\x01\x02"));
  // Directories and empty members emit nothing: two members, one document each.
  ASSERT_EQ(r.layers.size(), 1u);
  EXPECT_EQ(r.members.size(), 2u);
}

TEST(Zip, TwoHundredCustomersInACsvAreOneMember) {
  // The issue: a CSV of 200 customers scanned clean once zipped.
  const std::string zip = Python("out(Z([('customers.csv', " + std::string("'''") + Customers(200) + "'''" +
                                 ".encode())], zipfile.ZIP_DEFLATED))");
  const Recorder r = Normalize(zip, H("application/zip"));
  ASSERT_EQ(r.layers.size(), 1u);
  const std::string& text = r.layers.begin()->second;
  EXPECT_EQ(text, Customers(200));
  EXPECT_EQ(r.members, (std::vector<std::pair<uint32_t, std::string>>{{1, "customers.csv"}}));
  EXPECT_TRUE(r.undecodable.empty()) << r.Reasons();
}

TEST(Zip, DataDescriptorsFromAStreamingWriter) {
  // zipfile writing to an unseekable sink sets flag bit 3: sizes follow the data.
  const std::string zip = Python(R"PY(
u = Unseekable()
with zipfile.ZipFile(u, 'w') as zf:
    zf.writestr('a.csv', b'x,4539 1488 0343 6467\n' + b'PK\x07\x08 looks like a descriptor\n', compress_type=zipfile.ZIP_STORED)
    zf.writestr('b.txt', b'text ' * 100 + b'4111 1111 1111 1111', compress_type=zipfile.ZIP_DEFLATED)
    zf.writestr('c.csv', b'last,4111 1111 1111 1111', compress_type=zipfile.ZIP_STORED)
out(u.buf)
)PY");
  ASSERT_NE(zip.find("PK\x07\x08"), std::string::npos);
  for (size_t chunk : {size_t{0}, size_t{1}, size_t{7}}) {
    const Recorder r = Normalize(zip, {}, chunk);
    EXPECT_TRUE(r.undecodable.empty()) << r.Reasons();
    EXPECT_EQ(MembersWith(r, kCard1), std::set<std::string>{"a.csv"});
    EXPECT_EQ(MembersWith(r, kCard2), (std::set<std::string>{"b.txt", "c.csv"}));
    EXPECT_EQ(r.Find(kCard1), SpanIn(zip, kCard1));
    EXPECT_TRUE(r.Has("looks like a descriptor")) << "a signature inside stored data with the wrong sizes";
  }
}

TEST(Zip, Zip64SizesInLocalHeadersAndDescriptors) {
  const std::string seekable = Python(R"PY(
b = io.BytesIO()
with zipfile.ZipFile(b, 'w') as zf:
    with zf.open('a.csv', 'w', force_zip64=True) as f:
        f.write(b'zip64 stored? no, deflated: 4539 1488 0343 6467')
    zi = zipfile.ZipInfo('b.csv'); zi.compress_type = zipfile.ZIP_STORED
    with zf.open(zi, 'w', force_zip64=True) as f:
        f.write(b'stored zip64 4111 1111 1111 1111')
out(b.getvalue())
)PY");
  const std::string streamed = Python(R"PY(
u = Unseekable()
with zipfile.ZipFile(u, 'w') as zf:
    zi = zipfile.ZipInfo('a.csv'); zi.compress_type = zipfile.ZIP_DEFLATED
    with zf.open(zi, 'w', force_zip64=True) as f:
        f.write(b'streamed zip64 4539 1488 0343 6467')
    zi = zipfile.ZipInfo('b.csv'); zi.compress_type = zipfile.ZIP_STORED
    with zf.open(zi, 'w', force_zip64=True) as f:
        f.write(b'streamed stored zip64 4111 1111 1111 1111')
out(u.buf)
)PY");
  for (const std::string* zip : {&seekable, &streamed}) {
    ASSERT_NE(zip->find(std::string("\x01\x00\x10\x00", 4)), std::string::npos) << "no zip64 extra field";
    const Recorder r = Normalize(*zip);
    EXPECT_TRUE(r.undecodable.empty()) << r.Reasons();
    EXPECT_EQ(MembersWith(r, kCard1), std::set<std::string>{"a.csv"});
    EXPECT_EQ(MembersWith(r, kCard2), std::set<std::string>{"b.csv"});
    EXPECT_EQ(r.Find(kCard2), SpanIn(*zip, kCard2));
  }
  // Hand-made: 0xffffffff in the header, the sizes in the extra field only.
  HandZip h;
  h.Member("z.csv", "hand zip64 4539 1488 0343 6467", 0, 0, /*zip64_extra=*/true);
  const std::string hand = h.Finish();
  const Recorder r = Normalize(hand);
  EXPECT_TRUE(r.undecodable.empty()) << r.Reasons();
  EXPECT_EQ(MembersWith(r, kCard1), std::set<std::string>{"z.csv"});
}

TEST(Zip, NestedArchivesNameTheFullMemberPath) {
  const std::string zip = Python(R"PY(
inner = Z([('a.csv', b'n,4539 1488 0343 6467\n')])
outer = Z([('readme.txt', b'hi'), ('inner.zip', inner)], zipfile.ZIP_DEFLATED)
out(Z([('outer.zip', outer)]))
)PY");
  const Recorder r = Normalize(zip);
  EXPECT_TRUE(r.undecodable.empty()) << r.Reasons();
  EXPECT_TRUE(MembersWith(r, kCard1).count("outer.zip!inner.zip!a.csv")) << r.members.size();
  // Stored inside deflated: the span is the deflated member's, inside the outer member.
  const Span s = r.Find("n,4539");
  EXPECT_GE(s.begin, zip.find("outer.zip"));
}

TEST(Zip, ArchiveNestedPastTheDepthLimitIsUndecodable) {
  const std::string zip = Python(R"PY(
z = Z([('a.csv', b'4539 1488 0343 6467')], zipfile.ZIP_DEFLATED)
for i in range(4):
    z = Z([('level%d.zip' % i, z)], zipfile.ZIP_DEFLATED)
out(z)
)PY");
  const Recorder r = Normalize(zip);
  ASSERT_EQ(r.undecodable.size(), 1u) << r.Reasons();
  EXPECT_TRUE(HasReason(r, "zip archive nested deeper than the decode depth limit (3)")) << r.Reasons();
  EXPECT_TRUE(HasReason(r, "(in level3.zip!level2.zip!level1.zip)")) << r.Reasons();

  NormalizerLimits one;
  one.max_depth = 1;
  const Recorder shallow = Normalize(Python("out(Z([('x.zip', Z([('a', b'b')]))]))"), {}, 0, one);
  EXPECT_TRUE(HasReason(shallow, "zip archive nested deeper than the decode depth limit (1)")) << shallow.Reasons();
  // A gzip member at the limit is as unreadable as an archive.
  const Recorder gz = Normalize(Z1("x.csv.gz", Gzip("4539 1488 0343 6467")), {}, 0, one);
  EXPECT_TRUE(HasReason(gz, "gzip stream nested deeper")) << gz.Reasons();
}

TEST(Zip, BombIsUndecodableAndStopsEarly) {
  // 200 MB of zeros, deflated by zipfile: about 200 KB.
  const std::string zip = Python(R"PY(
b = io.BytesIO()
with zipfile.ZipFile(b, 'w', zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
    with zf.open('zeros.bin', 'w') as f:
        block = bytes(1 << 20)
        for _ in range(200):
            f.write(block)
out(b.getvalue())
)PY");
  ASSERT_LT(zip.size(), 1u << 20);
  const auto t0 = std::chrono::steady_clock::now();
  const Recorder r = Normalize(zip, {}, 4096);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_TRUE(HasReason(r, "decompression bomb")) << r.Reasons();
  EXPECT_TRUE(HasReason(r, "(in zeros.bin)")) << r.Reasons();
  EXPECT_LT(r.recorded, 4u << 20);
  EXPECT_LT(r.max_memory, 512u << 10);
  EXPECT_LT(secs, 5.0);

  // Many small members that each stay under the per-stream threshold: the archive's
  // total ratio catches them, wherever the reads are cut.
  const std::string many = Python(R"PY(
b = io.BytesIO()
with zipfile.ZipFile(b, 'w', zipfile.ZIP_DEFLATED) as zf:
    for i in range(40):
        zf.writestr('z%d' % i, bytes(512 << 10))
out(b.getvalue())
)PY");
  for (size_t chunk : {size_t{0}, size_t{100}}) {
    const Recorder m = Normalize(many, {}, chunk);
    EXPECT_EQ(m.Reasons(), "zip member inflates more than 100x (decompression bomb) (in z1);") << chunk;
  }
}

TEST(Zip, TruncatedAndCorruptArchivesAreUndecodable) {
  const std::string zip = Python(R"PY(
out(Z([('a.csv', b'x' * 300 + b'4539 1488 0343 6467'), ('b.txt', b'y' * 3000)], zipfile.ZIP_DEFLATED))
)PY");
  const size_t central = zip.find("PK\x01\x02");
  for (size_t cut : {size_t{10}, size_t{40}, size_t{100}, central - 5, central + 10, zip.size() - 3}) {
    const Recorder r = Normalize(zip.substr(0, cut));
    ASSERT_EQ(r.undecodable.size(), 1u) << "cut at " << cut << ": " << r.Reasons();
    EXPECT_TRUE(HasReason(r, "truncated")) << cut << ": " << r.Reasons();
  }
  // Garbage where a record must start.
  std::string bad = zip;
  bad.replace(central, 4, "JUNK");
  const Recorder r = Normalize(bad);
  ASSERT_EQ(r.undecodable.size(), 1u) << r.Reasons();
  EXPECT_TRUE(HasReason(r, "corrupt zip archive: no record signature")) << r.Reasons();
  // Data after the end record; a second archive appended is read (and reported once).
  const Recorder tail = Normalize(zip + "trailing text");
  EXPECT_EQ(tail.undecodable.size(), 1u);
  EXPECT_TRUE(HasReason(tail, "data after the end of the zip archive")) << tail.Reasons();
  const std::string second = Python("out(Z([('second.csv', b'4111 1111 1111 1111')]))");
  const Recorder two = Normalize(zip + second);
  EXPECT_EQ(two.undecodable.size(), 1u) << two.Reasons();
  EXPECT_EQ(MembersWith(two, kCard2), std::set<std::string>{"second.csv"});
  // Corrupt deflate data inside a member of known size: that member only.
  std::string corrupt = zip;
  const size_t data = zip.find("a.csv") + 5;
  for (size_t i = data + 2; i < data + 12; ++i) corrupt[i] = '\xff';
  const Recorder c = Normalize(corrupt);
  EXPECT_TRUE(HasReason(c, "corrupt deflate data in zip member")) << c.Reasons();
  EXPECT_TRUE(HasReason(c, "(in a.csv)")) << c.Reasons();
}

TEST(Zip, EmptyArchiveAndCommentsAreClean) {
  const std::string empty = Python("out(Z([]))");
  ASSERT_EQ(empty.substr(0, 4), "PK\x05\x06");
  const Recorder r = Normalize(empty);
  EXPECT_TRUE(r.undecodable.empty()) << r.Reasons();
  EXPECT_TRUE(r.layers.empty());
  HandZip h;
  h.Member("a.txt", "hello");
  const Recorder c = Normalize(h.Finish("an archive comment"));
  EXPECT_TRUE(c.undecodable.empty()) << c.Reasons();
  EXPECT_EQ(c.layers.begin()->second, "hello");
}

TEST(Zip, EncryptedMembersAreReportedAndSkipped) {
  HandZip h;
  h.Member("secret.csv", "\x9a\x13 ciphertext bytes 4539 1488 0343 6467", 0, /*flags=*/1);
  h.Member("plain.csv", "4111 1111 1111 1111");
  const std::string zip = h.Finish();
  const Recorder r = Normalize(zip);
  ASSERT_EQ(r.encrypted.size(), 1u);
  EXPECT_EQ(r.encrypted[0].member, "secret.csv");
  EXPECT_EQ(r.encrypted[0].what, "encrypted zip member");
  EXPECT_EQ(r.encrypted[0].begin, 0u);
  EXPECT_EQ(r.encrypted[0].end, zip.find("plain.csv") - 30);
  EXPECT_TRUE(MembersWith(r, kCard1).empty()) << "encrypted data is not decoded";
  EXPECT_EQ(MembersWith(r, kCard2), std::set<std::string>{"plain.csv"});
  EXPECT_TRUE(r.undecodable.empty()) << r.Reasons();

  // Size unknown (data descriptor): reported, and the rest cannot be parsed, said so.
  HandZip d;
  d.Member("secret.csv", "ciphertext", 8, /*flags=*/1 | 8, false, "PK\x07\x08" + Le(0, 4) + Le(10, 4) + Le(10, 4));
  d.Member("plain.csv", "4111 1111 1111 1111");
  const Recorder u = Normalize(d.Finish());
  ASSERT_EQ(u.encrypted.size(), 1u);
  EXPECT_TRUE(HasReason(u, "encrypted zip member of unknown size")) << u.Reasons();

  // The zip CLI's traditional encryption, when installed.
  if (system("command -v zip >/dev/null 2>&1") != 0) GTEST_SKIP() << "no zip CLI";
  const std::string cli = Python(R"PY(
import subprocess, tempfile, os
d = tempfile.mkdtemp()
open(os.path.join(d, 'c.csv'), 'w').write('n,4539 1488 0343 6467\n' * 20)
subprocess.run(['zip', '-q', '-P', 'pw', os.path.join(d, 'e.zip'), 'c.csv'], cwd=d, check=True)
out(open(os.path.join(d, 'e.zip'), 'rb').read())
subprocess.run(['rm', '-rf', d])
)PY");
  const Recorder z = Normalize(cli);
  ASSERT_EQ(z.encrypted.size(), 1u) << z.Reasons();
  EXPECT_EQ(z.encrypted[0].member, "c.csv");
  EXPECT_FALSE(z.Has(kCard1));
  EXPECT_TRUE(z.undecodable.empty()) << z.Reasons();
}

TEST(Zip, AReportNamesTheMemberOnlyWhenItIsAboutIt) {
  // decode_chunking_fuzz's find: a truncated zip whose stored member holds base64 runs of
  // truncated gzip streams. A stored member's bytes are raw bytes too, and the raw layer's
  // own base64 run over them was reported as inside the member when the archive's end
  // came while the member was open, depending on the reads. Now a report names a member
  // only when it comes from inside it (or from the archive about it).
  std::string body;
  const std::string hex =
      "504b0304032f00000000000000000000000023a377a30000000000000000950000000000000055b2436f6e74656e742d5479"
      "70653a28b52ffd20524a8c29353031266d6162223a2248347349414d414b434773432f367457536c577955d1714dcb545577"
      "4d444649306b266e3d4a616e764f554e4a527967613d0d0a4b36494b416b36753770782b59465a506e364f6759000003177b"
      "2322626c6f62223a2248347349414d414b434773432f367457536c577955d1714d4b545577aa95889aaa000000005357704b"
      "6d42696e414d6c5541774f2bff9f446f65965a4c000000";
  for (size_t i = 0; i + 1 < hex.size(); i += 2) body += static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16));
  const ContentHintLite url = H("", "", true);
  // Layers that fail independently report in the order their bytes arrive: a set.
  const auto reasons = [](const Recorder& r) {
    std::multiset<std::string> set;
    for (const auto& u : r.undecodable) set.insert(u.why);
    return set;
  };
  const std::multiset<std::string> whole = reasons(Normalize(body, url));
  EXPECT_GE(whole.count("truncated gzip stream"), 1u);  // the raw layer's, named by no member
  for (size_t chunk = 1; chunk < 40; ++chunk) EXPECT_EQ(reasons(Normalize(body, url, chunk)), whole) << chunk;
}

TEST(Zip, Bzip2AndLzmaMembersAreRead) {
  // Seekable (sizes in the headers) and streamed (data descriptors: the member ends where
  // its stream does, LZMA with its end marker).
  for (const char* writer : {"io.BytesIO()", "Unseekable()"}) {
    const std::string zip = Python(std::string("b = ") + writer + R"PY(
with zipfile.ZipFile(b, 'w') as zf:
    zf.writestr('a.bz2.csv', b'4539 1488 0343 6467\n' * 10, compress_type=zipfile.ZIP_BZIP2)
    zf.writestr('b.lzma.csv', b'4539 1488 0343 6467\n' * 10, compress_type=zipfile.ZIP_LZMA)
    zf.writestr('c.csv', b'4111 1111 1111 1111', compress_type=zipfile.ZIP_DEFLATED)
out(b.getvalue() if hasattr(b, 'getvalue') else b.buf)
)PY");
    for (size_t chunk : {size_t{0}, size_t{1}, size_t{13}}) {
      const Recorder r = Normalize(zip, {}, chunk);
      EXPECT_TRUE(r.undecodable.empty()) << writer << ": " << r.Reasons();
      EXPECT_EQ(MembersWith(r, kCard1), (std::set<std::string>{"a.bz2.csv", "b.lzma.csv"})) << writer << chunk;
      EXPECT_EQ(MembersWith(r, kCard2), std::set<std::string>{"c.csv"}) << writer << chunk;
    }
  }
}

TEST(Zip, OtherMethodsAreUndecodableAndSkipped) {
  HandZip h;
  h.Member("p.csv", "not really ppmd data 4539 1488 0343 6467", 98);
  h.Member("c.csv", kCard2);
  const Recorder r = Normalize(h.Finish());
  EXPECT_TRUE(HasReason(r, "unsupported method 98 (ppmd) (in p.csv)")) << r.Reasons();
  EXPECT_EQ(r.undecodable.size(), 1u) << r.Reasons();
  EXPECT_EQ(MembersWith(r, kCard2), std::set<std::string>{"c.csv"});
}

TEST(Zip, ZipCliStreamedToAPipe) {
  // Info-ZIP writing to stdout cannot seek back: data descriptors, as a proxy sees them.
  if (system("command -v zip >/dev/null 2>&1") != 0) GTEST_SKIP() << "no zip CLI";
  const std::string zip = Python(R"PY(
import subprocess
p = subprocess.run(['sh', '-c', 'printf "n,4539 1488 0343 6467\n" | zip -q - -'], capture_output=True, check=True)
out(p.stdout)
)PY");
  const Recorder r = Normalize(zip);
  EXPECT_TRUE(r.undecodable.empty()) << r.Reasons();
  EXPECT_EQ(MembersWith(r, kCard1), std::set<std::string>{"-"});
}

TEST(Zip, SniffedByBytesNotByName) {
  const std::string zip = Python("out(Z([('a.csv', b'4539 1488 0343 6467')]))");
  // Declared as something else, named otherwise: the bytes win.
  const Recorder r = Normalize(zip, H("text/plain"));
  EXPECT_EQ(MembersWith(r, kCard1), std::set<std::string>{"a.csv"});
  // A multipart upload named customers.zip whose bytes are text is text; a zip part
  // named otherwise is a zip.
  const std::string body =
      "--b\r\nContent-Disposition: form-data; name=\"f\"; filename=\"customers.zip\"\r\n"
      "Content-Type: application/zip\r\n\r\nplain 4111 1111 1111 1111\r\n"
      "--b\r\nContent-Disposition: form-data; name=\"g\"; filename=\"x.txt\"\r\n\r\n" + zip + "\r\n--b--\r\n";
  const Recorder m = Normalize(body, H("multipart/form-data; boundary=b"));
  EXPECT_TRUE(m.undecodable.empty()) << m.Reasons();
  EXPECT_EQ(MembersWith(m, kCard1), std::set<std::string>{"a.csv"});
  EXPECT_TRUE(MembersWith(m, kCard2).empty()) << "raw text, not decoded";
}

TEST(Zip, ChunkingDoesNotChangeWhatIsFound) {
  const std::vector<std::pair<std::string, bool>> samples = {
      {Python(R"PY(
b = io.BytesIO()
with zipfile.ZipFile(b, 'w') as zf:
    zf.writestr('a.csv', b'x,4539 1488 0343 6467\n' * 30)
    zf.writestr('b.json', b'{"k":"v\\u0040w"} ' + b'QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=')
out(b.getvalue())
)PY"),
       true},
      {Python(R"PY(
u = Unseekable()
with zipfile.ZipFile(u, 'w') as zf:
    zf.writestr('a.csv', b'x,4539 1488 0343 6467\n' * 30, compress_type=zipfile.ZIP_STORED)
    zf.writestr('b.csv', b'y,4111 1111 1111 1111\n' * 300, compress_type=zipfile.ZIP_DEFLATED)
    zf.writestr('n.zip', Z([('in.csv', b'4539 1488 0343 6467')], zipfile.ZIP_DEFLATED))
out(u.buf)
)PY"),
       false},
      {Python(R"PY(
u = Unseekable()
with zipfile.ZipFile(u, 'w') as zf:
    zf.writestr('a.csv', b'x,4539 1488 0343 6467\n' * 300, compress_type=zipfile.ZIP_BZIP2)
    zf.writestr('b.csv', b'y,4111 1111 1111 1111\n' * 300, compress_type=zipfile.ZIP_LZMA)
out(u.buf)
)PY"),
       false},
  };
  for (const auto& [zip, exact] : samples) {
    const Observed whole = Observe(Normalize(zip), exact);
    EXPECT_FALSE(whole.layers.empty());
    EXPECT_EQ(Observe(NormalizeChunks(zip, {1}), exact), whole) << Describe(whole);
    for (uint64_t seed = 1; seed <= 20; ++seed) {
      const Observed split = Observe(NormalizeChunks(zip, RandomChunks(seed, 1 + seed * 7)), exact);
      EXPECT_EQ(split, whole) << "seed " << seed << ": " << Describe(split) << " vs " << Describe(whole);
    }
  }
  // Corrupt and truncated forms report the same whatever the chunking.
  for (const std::string& zip : {samples[1].first, samples[2].first}) {
    for (size_t cut : {size_t{77}, zip.size() / 2, zip.size() - 30}) {
      const std::string part = zip.substr(0, cut);
      const Observed whole = Observe(Normalize(part), false);
      EXPECT_FALSE(whole.reasons.empty());
      EXPECT_EQ(Observe(NormalizeChunks(part, {1}), false), whole) << cut;
      EXPECT_EQ(Observe(NormalizeChunks(part, RandomChunks(cut, 50)), false), whole) << cut;
    }
  }
  // Bytes flipped inside the compressed data of the bzip2 member and of the LZMA one.
  const std::string& zip = samples[2].first;
  const size_t lzma_at = zip.find("b.csv") + 5 + 40;
  for (size_t at : {size_t{120}, lzma_at}) {
    std::string corrupt = zip;
    for (size_t i = at; i < at + 8; ++i) corrupt[i] ^= 0x5a;
    const Observed whole = Observe(Normalize(corrupt), false);
    EXPECT_FALSE(whole.reasons.empty()) << at << ": " << Describe(whole);
    EXPECT_EQ(Observe(NormalizeChunks(corrupt, {1}), false), whole) << at << ": " << Describe(whole);
    for (uint64_t seed = 1; seed <= 5; ++seed) {
      EXPECT_EQ(Observe(NormalizeChunks(corrupt, RandomChunks(seed, 40)), false), whole) << at << " " << seed;
    }
  }
}

// held_from(): stored data passes at once, a deflated member holds about one read, and
// no segment arrives below what was reported.
class HeldCheck : public SegmentSink {
 public:
  void OnSegment(const DecodedSegment& s) override {
    if (s.orig_begin < decided) ++violations;
  }
  void OnUndecodable(uint64_t, uint64_t, std::string_view) override {}
  uint64_t decided = 0;
  size_t violations = 0;
};

struct HeldResult {
  size_t violations = 0;
  uint64_t worst_lag = 0;
};

HeldResult FeedHeld(std::string_view body, size_t chunk) {
  HeldCheck sink;
  Normalizer n({}, {}, sink);
  HeldResult r;
  for (size_t at = 0; at < body.size(); at += chunk) {
    const std::string_view c = body.substr(at, chunk);
    n.Feed(c);
    const uint64_t fed = at + c.size();
    const uint64_t decided = std::min<uint64_t>(n.held_from(), fed);
    r.worst_lag = std::max<uint64_t>(r.worst_lag, fed - decided);
    sink.decided = std::max(sink.decided, decided);
  }
  n.Finish();
  EXPECT_EQ(n.held_from(), UINT64_MAX);
  r.violations = sink.violations;
  return r;
}

TEST(Zip, HoldsAreSmallAndTrue) {
  const std::string stored = Python(R"PY(
import random
data = random.Random(5).randbytes(400000).translate(bytes(b'abcdefgh ,\n'[i % 11] for i in range(256)))
out(Z([('a.csv', data), ('b.csv', b'4539 1488 0343 6467' + data)]))
)PY");
  for (size_t chunk : {size_t{1000}, size_t{4096}, size_t{65536}}) {
    const HeldResult r = FeedHeld(stored, chunk);
    EXPECT_EQ(r.violations, 0u) << chunk;
    // The output layer's sniff and lazy escape context, not the member.
    EXPECT_LE(r.worst_lag, chunk + 1024) << chunk;
  }
  const std::string streamed = Python(R"PY(
import random
data = random.Random(6).randbytes(400000).translate(bytes(b'abcdefgh ,\n'[i % 11] for i in range(256)))
u = Unseekable()
with zipfile.ZipFile(u, 'w') as zf:
    zf.writestr('a.csv', data, compress_type=zipfile.ZIP_STORED)
    zf.writestr('b.csv', data, compress_type=zipfile.ZIP_DEFLATED)
out(u.buf)
)PY");
  for (size_t chunk : {size_t{333}, size_t{4096}}) {
    const HeldResult r = FeedHeld(streamed, chunk);
    EXPECT_EQ(r.violations, 0u) << chunk;
    EXPECT_LE(r.worst_lag, 2 * chunk + 64 * 1024) << chunk;
  }
}

TEST(Zip, MemoryStaysBounded) {
  const std::string zip = Python(R"PY(
import random
data = random.Random(7).randbytes(6 << 20).translate(bytes(b'abcdefghij 0123456789,\n'[i % 23] for i in range(256)))
u = Unseekable()
with zipfile.ZipFile(u, 'w') as zf:
    zf.writestr('stored.csv', data, compress_type=zipfile.ZIP_STORED)
    zf.writestr('deflated.csv', data, compress_type=zipfile.ZIP_DEFLATED)
out(u.buf)
)PY");
  const Recorder r = NormalizeChunks(zip, {64 << 10});
  EXPECT_TRUE(r.undecodable.empty()) << r.Reasons();
  EXPECT_GT(r.recorded, 12u << 20);
  EXPECT_LT(r.max_memory, 256u << 10);
}

TEST(Zip, TornDownMidArchiveWithoutFinish) {
  // A connection reset: the Normalizer goes away inside a member and inside a nested one.
  const std::string zip = Python(R"PY(
u = Unseekable()
with zipfile.ZipFile(u, 'w') as zf:
    zf.writestr('a.csv', b'x' * 5000, compress_type=zipfile.ZIP_STORED)
    zf.writestr('n.zip', Z([('b.csv', b'y' * 5000)], zipfile.ZIP_DEFLATED), compress_type=zipfile.ZIP_DEFLATED)
out(u.buf)
)PY");
  for (size_t cut : {size_t{100}, size_t{3000}, zip.size() - 200}) {
    Recorder r;
    {
      Normalizer n({}, {}, r);
      n.Feed(std::string_view(zip).substr(0, cut));
    }
    EXPECT_TRUE(r.undecodable.empty()) << cut << ": " << r.Reasons();
  }
}

TEST(Zip, MemberNamesAreCleanedForReports) {
  HandZip h;
  h.Member(std::string("we\x01ird\nname.csv"), "4539 1488 0343 6467");
  const Recorder r = Normalize(h.Finish());
  EXPECT_EQ(MembersWith(r, kCard1), std::set<std::string>{"we?ird?name.csv"});
}

}  // namespace
}  // namespace egressguard::dlp::decode::testing
