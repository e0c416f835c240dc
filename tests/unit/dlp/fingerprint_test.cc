// HmacSha256 is HMAC-SHA256 (RFC 4231 vectors), for short, empty and longer-than-block keys.
#include "dlp/fingerprint.h"

#include <gtest/gtest.h>

#include <string>

namespace egressguard::dlp {
namespace {

TEST(Fingerprint, Rfc4231Vectors) {
  // Test case 2: a short key.
  EXPECT_EQ(HexDigest(HmacSha256("Jefe", "what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  // Test case 6: a 131-byte key, hashed first.
  EXPECT_EQ(HexDigest(HmacSha256(std::string(131, '\xaa'), "Test Using Larger Than Block-Size Key - Hash Key First")),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
  // Test case 1: a 20-byte key of 0x0b.
  EXPECT_EQ(HexDigest(HmacSha256(std::string(20, '\x0b'), "Hi There")),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
}

TEST(Fingerprint, EmptyKeyAndValue) {
  // HMAC-SHA256 with an empty key of an empty message (a well-known constant).
  EXPECT_EQ(HexDigest(HmacSha256("", "")), "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");
  EXPECT_NE(HmacSha256("k", "a"), HmacSha256("k", "b"));
}

}  // namespace
}  // namespace egressguard::dlp
