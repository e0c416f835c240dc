// Proves atomic file writes replace content whole, get exactly the requested mode whatever the umask, and leave no temp files.
#include "ca/atomic_file.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "tests/unit/ca/test_pki.h"

namespace egressguard::ca {
namespace {

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

unsigned ModeOf(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0);
  return st.st_mode & 07777;
}

TEST(AtomicFileTest, WritesReplacesAndForcesMode) {
  testing::TempDir tmp;
  std::string path = tmp / "secret.key";
  mode_t old = ::umask(0);
  ASSERT_TRUE(WriteFileAtomically(path, "one", 0600).ok());
  ::umask(old);
  EXPECT_EQ(Slurp(path), "one");
  EXPECT_EQ(ModeOf(path), 0600u);
  // Replacing a file that had a loose mode yields the requested mode, not the old one.
  ASSERT_EQ(::chmod(path.c_str(), 0666), 0);
  old = ::umask(0277);
  ASSERT_TRUE(WriteFileAtomically(path, "two", 0600).ok());
  ::umask(old);
  EXPECT_EQ(Slurp(path), "two");
  EXPECT_EQ(ModeOf(path), 0600u);
  int files = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(tmp.path())) ++files;
  EXPECT_EQ(files, 1);
}

TEST(AtomicFileTest, FailsCleanlyInMissingDirectory) {
  testing::TempDir tmp;
  auto st = WriteFileAtomically(tmp / "nope/file", "x", 0600);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("nope"), std::string::npos);
}

TEST(AtomicFileTest, EnsurePrivateDirectoryCreates0700) {
  testing::TempDir tmp;
  ASSERT_TRUE(EnsurePrivateDirectory(tmp / "a/b").ok());
  EXPECT_EQ(ModeOf(tmp / "a/b"), 0700u);
  ASSERT_TRUE(EnsurePrivateDirectory(tmp / "a/b").ok());
  std::ofstream(tmp / "file") << "x";
  EXPECT_FALSE(EnsurePrivateDirectory(tmp / "file").ok());
}

}  // namespace
}  // namespace egressguard::ca
