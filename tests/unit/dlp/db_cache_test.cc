// Compiled databases on disk (dlp/db_cache.h): a second build of the same pack reads
// them and writes nothing; another pack, a file made for another key, a truncated or
// corrupted file, one Hyperscan refuses and one others may write are all refused and
// rebuilt; files are 0600 in a 0700 directory; an engine from the cache finds what a
// compiled one finds. And the binary filter as the engine configures it: a card number
// inside binary base64 is found, random bytes are not scanned.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "dlp/db_cache.h"
#include "dlp/decode/text_runs.h"
#include "engine_test_util.h"

namespace egressguard::dlp::testing {
namespace {

namespace fs = std::filesystem;

class DbCache : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / Name("eg-dbcache-{}-{}", ::getpid(), counter_++);
    dir_ = (root_ / "cache" / "db").string();
  }
  void TearDown() override { fs::remove_all(root_); }

  static std::string Name(std::string_view f, int pid, int n) {
    std::string s(f);
    s.replace(s.find("{}"), 2, std::to_string(pid));
    s.replace(s.find("{}"), 2, std::to_string(n));
    return s;
  }

  EnginePtr Build(const rules::v1::RulePack& pack) {
    EngineOptions o;
    o.db_cache_dir = dir_;
    return CompileOrDie(pack, o);
  }

  std::string FileOf(const rules::v1::RulePack& pack) const {
    return (fs::path(dir_) / (DbCacheKey(pack) + ".hsdb")).string();
  }

  static ino_t Inode(const std::string& path) {
    struct stat st {};
    EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
    return st.st_ino;
  }
  static unsigned Mode(const std::string& path) {
    struct stat st {};
    EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
    return st.st_mode & 0777;
  }

  static rules::v1::RulePack SmallPack() {
    auto card = MakeRule("card", "credit_card", {"\\b4[0-9]{15}\\b"}, "credit_card");
    auto mail = MakeRule("mail", "email", {"[a-z]{2,20}@[a-z]{2,20}\\.(?:ch|com)"});
    auto excl = MakeRule("iban", "iban", {"\\bCH[0-9]{19}\\b"});
    excl.add_exclusions()->set_regex("CH00.*");
    return MakePack({card, mail, excl});
  }

  // What the engine finds in a message with one of each.
  static std::string Findings(const EnginePtr& e) {
    return Describe(ScanWhole(e, "pay 4111111111111111 to anna@corp.ch, iban CH9300762011623852957"));
  }

  fs::path root_;
  std::string dir_;
  static inline int counter_ = 0;
};

TEST_F(DbCache, SecondBuildReadsTheFileAndWritesNothing) {
  const auto pack = SmallPack();
  const EnginePtr first = Build(pack);
  const std::string file = FileOf(pack);
  ASSERT_TRUE(fs::exists(file));
  EXPECT_EQ(Mode(file), 0600u);
  EXPECT_EQ(Mode(dir_), 0700u);
  EXPECT_EQ(Mode((root_ / "cache").string()), 0700u) << "created parents are private too";
  const ino_t inode = Inode(file);
  const EnginePtr second = Build(pack);
  EXPECT_EQ(Inode(file), inode) << "a full hit rewrites nothing";
  EXPECT_EQ(Findings(second), Findings(first));
  EXPECT_EQ(Findings(second), Findings(CompileOrDie(pack)));
  EXPECT_NE(Findings(second).find("credit_card"), std::string::npos);

  DbCacheSession session(dir_, pack);
  EXPECT_TRUE(session.enabled());
}

TEST_F(DbCache, AnotherPackGetsItsOwnFile) {
  auto pack = SmallPack();
  Build(pack);
  auto other = pack;
  other.mutable_rules(1)->set_patterns(0, "[a-z]{2,20}@[a-z]{2,20}\\.(?:ch|com|org)");
  EXPECT_NE(DbCacheKey(other), DbCacheKey(pack));
  const EnginePtr e = Build(other);
  EXPECT_TRUE(fs::exists(FileOf(other)));
  EXPECT_TRUE(fs::exists(FileOf(pack)));
  EXPECT_EQ(Findings(e), Findings(CompileOrDie(other)));
}

// A file under this pack's name that was made for another key, truncated, corrupted
// anywhere, or holding a database Hyperscan refuses: refused, rebuilt, rewritten.
TEST_F(DbCache, BadFilesAreRefusedAndRebuilt) {
  const auto pack = SmallPack();
  auto other = pack;
  other.mutable_rules(0)->set_id("card2");
  const std::string expected = Findings(CompileOrDie(pack));
  Build(other);
  Build(pack);
  const std::string file = FileOf(pack);
  std::string good;
  {
    std::ifstream in(file, std::ios::binary);
    good.assign(std::istreambuf_iterator<char>(in), {});
  }
  auto write = [&](const std::string& bytes) {
    fs::remove(file);
    std::ofstream out(file, std::ios::binary);
    out << bytes;
    out.close();
    fs::permissions(file, fs::perms::owner_read | fs::perms::owner_write);
  };
  auto refused_and_rebuilt = [&](const char* what) {
    const ino_t before = Inode(file);
    const EnginePtr e = Build(pack);
    EXPECT_EQ(Findings(e), expected) << what;
    EXPECT_NE(Inode(file), before) << what << ": the file was not rewritten";
    EXPECT_TRUE(ReadDbCacheFile(file, DbCacheKey(pack)).ok()) << what;
    EXPECT_EQ(Mode(file), 0600u) << what;
  };

  std::string theirs;
  {
    std::ifstream in(FileOf(other), std::ios::binary);
    theirs.assign(std::istreambuf_iterator<char>(in), {});
  }
  write(theirs);
  EXPECT_FALSE(ReadDbCacheFile(file, DbCacheKey(pack)).ok());
  refused_and_rebuilt("another pack's file");

  write(good.substr(0, good.size() / 2));
  EXPECT_EQ(ReadDbCacheFile(file, DbCacheKey(pack)).status().message(), "bad checksum");
  refused_and_rebuilt("truncated");

  write(good.substr(0, 10));
  EXPECT_EQ(ReadDbCacheFile(file, DbCacheKey(pack)).status().message(), "truncated");
  refused_and_rebuilt("cut to its header");

  std::string flipped = good;
  flipped[flipped.size() / 3] ^= 0x40;
  write(flipped);
  EXPECT_EQ(ReadDbCacheFile(file, DbCacheKey(pack)).status().message(), "bad checksum");
  refused_and_rebuilt("one bit flipped");

  // A well-formed file whose first database Hyperscan cannot read.
  auto read = ReadDbCacheFile(file, DbCacheKey(pack));
  ASSERT_TRUE(read.ok());
  ASSERT_FALSE(read->dbs.empty());
  std::vector<CachedDb> dbs;
  for (const auto& e : read->dbs) dbs.push_back(CachedDb{std::string(e.fingerprint), std::string(e.bytes)});
  dbs[0].bytes = "not a database";
  ASSERT_TRUE(WriteDbCacheFile(file, DbCacheKey(pack), dbs).ok());
  refused_and_rebuilt("a database Hyperscan refuses");

  // Writable by others: not trusted.
  write(good);
  fs::permissions(file, fs::perms::others_write, fs::perm_options::add);
  EXPECT_FALSE(ReadDbCacheFile(file, DbCacheKey(pack)).ok());
  refused_and_rebuilt("world-writable");
}

TEST_F(DbCache, NoDirectoryNoFiles) {
  const auto pack = SmallPack();
  EXPECT_EQ(Findings(CompileOrDie(pack)), Findings(Build(pack)));
  DbCacheSession off("", pack);
  EXPECT_FALSE(off.enabled());
  EXPECT_EQ(off.Take("x"), nullptr);
  off.Save();  // nothing to write anywhere
}

TEST_F(DbCache, DefaultPackFromTheCacheFindsTheSame) {
  const auto pack = DefaultPack();
  const std::string text =
      "card 4111 1111 1111 1111, iban CH93 0076 2011 6238 5295 7, mail anna.meier@corp-mail.ch, "
      "AHV 756.9217.0769.85, key AKIA2E3X7PQRS4TUVWXY, phone +41 44 668 18 00";
  const std::string fresh = Describe(ScanWhole(CompileOrDie(pack), text));
  Build(pack);
  const ino_t inode = Inode(FileOf(pack));
  EXPECT_EQ(Describe(ScanWhole(Build(pack), text)), fresh);
  EXPECT_EQ(Inode(FileOf(pack)), inode);
}

std::string Base64(std::string_view in) {
  static constexpr char kA[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0, line = 0;
  for (; i + 3 <= in.size(); i += 3) {
    const uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8) | uint8_t(in[i + 2]);
    for (int k = 3; k >= 0; --k) out += kA[(v >> (6 * k)) & 63];
    if ((line += 4) == 76) out += "\r\n", line = 0;
  }
  return out + "\r\n";
}

// The filter as Compile sets it up for the default pack: a card number and its keyword
// in binary bytes are found; random bytes around it add nothing to scan.
TEST(BinaryFilter, DefaultPackFindsACardInsideBinaryBase64) {
  const auto pack = DefaultPack();
  const EnginePtr on = CompileOrDie(pack);
  EngineOptions off_options;
  off_options.filter_binary = false;
  const EnginePtr off = CompileOrDie(pack, off_options);
  std::mt19937_64 rng(9);
  std::string inner(20000, '\0');
  for (char& c : inner) c = static_cast<char>(rng());
  const std::string planted = std::string("\x02kreditkarte\x00\x14", 15) + "4111 1111 1111 1111" + std::string(1, '\0');
  inner.replace(9000, planted.size(), planted);
  const std::string body = "Content-Type: application/octet-stream\r\n\r\n" + Base64(inner);
  const MessageResult a = ScanWhole(on, body), b = ScanWhole(off, body);
  EXPECT_NE(FindCategory(a, "credit_card"), nullptr) << Describe(a);
  EXPECT_EQ(Describe(a), Describe(b));
  for (size_t chunk : {7, 100, 4096}) {
    std::vector<size_t> cuts;
    for (size_t at = chunk; at < body.size(); at += chunk) cuts.push_back(at);
    EXPECT_EQ(Describe(ScanSplit(on, body, cuts)), Describe(a)) << chunk;
  }
}

// A decoded layer's documents follow one another in one Hyperscan stream that is reset
// between them (MessageScan's OnDocumentEnd); a match in a later document must still be
// placed in the layer, not at the stream's restarted offsets. Base64 runs are documents,
// and so are the binary filter's stretches: an e-mail address in the second run of a
// message, or in the second stretch of a binary attachment, must be found.
TEST(DecodedLayer, LaterDocumentsAreScannedToo) {
  const EnginePtr e = CompileOrDie(DefaultPack());
  auto b64 = [](std::string_view s) {
    std::string out = Base64(s);
    return out.substr(0, out.size() - 2);  // no line break: one run each
  };
  const std::string one = "note " + b64("Please contact anna.meier@corp-mail.ch about the invoice ok") + " end\n";
  const std::string two = "note " + b64("Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do!") + " and " +
                          b64("Please contact anna.meier@corp-mail.ch about the invoice ok") + " end\n";
  EXPECT_NE(FindCategory(ScanWhole(e, one), "email"), nullptr);
  EXPECT_NE(FindCategory(ScanWhole(e, two), "email"), nullptr) << Describe(ScanWhole(e, two));
  // In binary data: a first stretch (a run of e-mail bytes) ends a document before the
  // second, which holds the address.
  std::mt19937_64 rng(4);
  std::string inner = "\x01\x02";
  for (int i = 0; i < 300; ++i) inner.push_back(static_cast<char>(0x80 | (rng() & 0x7f)));
  inner += "\xf5izGR3R\xa2";
  for (int i = 0; i < 100; ++i) inner.push_back(static_cast<char>(0x80 | (rng() & 0x7f)));
  inner += "\"7@U.ag~";
  for (int i = 0; i < 300; ++i) inner.push_back(static_cast<char>(0x80 | (rng() & 0x7f)));
  const MessageResult r = ScanWhole(e, Base64(inner));
  EXPECT_NE(FindCategory(r, "email"), nullptr) << Describe(r);
}

}  // namespace
}  // namespace egressguard::dlp::testing
