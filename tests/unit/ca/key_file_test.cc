// Proves a private key file readable by group or others is refused with a fix-it hint.
#include "ca/key_file.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace egressguard::ca {
namespace {

class KeyFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/egressguard-keyfile-XXXXXX";
    dir_ = mkdtemp(tmpl);
    path_ = dir_ + "/ca.key";
    std::ofstream(path_) << "not really a key";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
  std::string path_;
};

TEST_F(KeyFileTest, AcceptsOwnerOnly) {
  ASSERT_EQ(chmod(path_.c_str(), 0600), 0);
  EXPECT_TRUE(CheckPrivateKeyPermissions(path_).ok());
}

TEST_F(KeyFileTest, RefusesGroupOrWorldReadable) {
  ASSERT_EQ(chmod(path_.c_str(), 0640), 0);
  auto st = CheckPrivateKeyPermissions(path_);
  EXPECT_EQ(st.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_NE(st.message().find("chmod 600"), std::string::npos);
  ASSERT_EQ(chmod(path_.c_str(), 0604), 0);
  EXPECT_EQ(CheckPrivateKeyPermissions(path_).code(), absl::StatusCode::kPermissionDenied);
}

TEST_F(KeyFileTest, RefusesMissingFileAndDirectory) {
  EXPECT_EQ(CheckPrivateKeyPermissions(dir_ + "/nope").code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(CheckPrivateKeyPermissions(dir_).ok());
}

}  // namespace
}  // namespace egressguard::ca
