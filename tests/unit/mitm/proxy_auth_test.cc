#include "mitm/proxy_auth.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

namespace egressguard::mitm {
namespace {

// 's3cret pass' hashed by `openssl passwd -6 -salt abcdefgh`.
constexpr char kHash[] = "$6$abcdefgh$JkUs2M4cQMIF3fzb8rSPdrGis9kyxOr8G//eP6mEBQv4DyD/cfcCAqUX6.8VAMaqE9BpPh.U5Cfz9mU/DZcFL1";

std::string WriteUsers(const std::string& text) {
  char path[] = "/tmp/eg-users-XXXXXX";
  int fd = mkstemp(path);
  EXPECT_GE(fd, 0);
  close(fd);
  std::ofstream(path) << text;
  return path;
}

std::string Basic(const std::string& user_pass) {
  std::string out(4 * ((user_pass.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(user_pass.data()), static_cast<int>(user_pass.size()));
  out.resize(static_cast<size_t>(n));
  return "Basic " + out;
}

TEST(ProxyAuth, AcceptsTheRightPasswordOnly) {
  auto auth = ProxyAuth::Load(WriteUsers(std::string("# comment\nalice:") + kHash + "\n"), "egress");
  ASSERT_TRUE(auth.ok()) << auth.status();
  EXPECT_EQ((*auth)->Check(Basic("alice:s3cret pass")), "alice");
  EXPECT_EQ((*auth)->Check(Basic("alice:s3cret pass")), "alice");  // remembered
  EXPECT_EQ((*auth)->Check("basic " + Basic("alice:s3cret pass").substr(6)), "alice");
  EXPECT_FALSE((*auth)->Check(Basic("alice:wrong")));
  EXPECT_FALSE((*auth)->Check(Basic("bob:s3cret pass")));
  EXPECT_FALSE((*auth)->Check(Basic("alice")));
  EXPECT_FALSE((*auth)->Check(""));
  EXPECT_FALSE((*auth)->Check("Bearer abc"));
  EXPECT_FALSE((*auth)->Check("Basic !!!notbase64"));
  EXPECT_FALSE((*auth)->Check("Basic " + std::string(10000, 'A')));
  EXPECT_EQ((*auth)->challenge(), "Basic realm=\"egress\", charset=\"UTF-8\"");
}

TEST(ProxyAuth, RefusesWeakOrMalformedFiles) {
  for (const std::string& text : {std::string("alice:plaintext\n"), std::string("alice:{SHA}abc\n"),
                                  std::string("alice\n"), std::string(":") + kHash + "\n", std::string("# only\n"),
                                  std::string("a:") + kHash + "\na:" + kHash + "\n"}) {
    auto auth = ProxyAuth::Load(WriteUsers(text), "r");
    EXPECT_FALSE(auth.ok()) << text;
  }
  EXPECT_FALSE(ProxyAuth::Load("/nonexistent/users", "r").ok());
}

}  // namespace
}  // namespace egressguard::mitm
