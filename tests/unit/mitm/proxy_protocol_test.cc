#include "mitm/proxy_protocol.h"

#include <gtest/gtest.h>

#include <string>

namespace egressguard::mitm {
namespace {

using Status = ProxyHeaderResult::Status;

const std::string kSig("\r\n\r\n\0\r\nQUIT\n", 12);

std::string Be16(size_t v) { return {static_cast<char>((v >> 8) & 0xff), static_cast<char>(v & 0xff)}; }

std::string Header(unsigned char ver_cmd, unsigned char fam, const std::string& body) {
  return kSig + std::string(1, static_cast<char>(ver_cmd)) + std::string(1, static_cast<char>(fam)) + Be16(body.size()) +
         body;
}

std::string V4Body(std::string src, std::string dst, uint16_t sport, uint16_t dport) {
  return src + dst + Be16(sport) + Be16(dport);
}

std::string V4(unsigned a, unsigned b, unsigned c, unsigned d) {
  return {static_cast<char>(a), static_cast<char>(b), static_cast<char>(c), static_cast<char>(d)};
}

TEST(ProxyProtocol, ParsesIpv4ProxyAndLeavesTheStreamBytes) {
  std::string h = Header(0x21, 0x11, V4Body(V4(10, 1, 2, 3), V4(192, 0, 2, 1), 40000, 3128));
  std::string bytes = h + "CONNECT example.org:443 HTTP/1.1\r\n";
  auto r = ParseProxyHeaderV2(bytes);
  ASSERT_EQ(r.status, Status::kOk) << r.reason;
  EXPECT_EQ(r.consumed, h.size());
  EXPECT_FALSE(r.header.local);
  EXPECT_TRUE(r.header.ipv4);
  EXPECT_EQ(r.header.SourceAddress(), "10.1.2.3");
  EXPECT_EQ(r.header.source_port, 40000);
  EXPECT_EQ(r.header.destination_port, 3128);
  EXPECT_EQ(r.header.source_ip[10], 0xff);
  EXPECT_EQ(r.header.source_ip[12], 10);
}

TEST(ProxyProtocol, ParsesIpv6AndSkipsTlvs) {
  std::string src(16, '\0'), dst(16, '\0');
  src[0] = 0x20;
  src[1] = 0x01;
  src[2] = 0x0d;
  src[3] = static_cast<char>(0xb8);
  src[15] = 7;
  dst[15] = 1;
  std::string tlvs = std::string("\x01", 1) + Be16(2) + "h2" + std::string("\x04", 1) + Be16(0);
  auto r = ParseProxyHeaderV2(Header(0x21, 0x21, src + dst + Be16(5555) + Be16(443) + tlvs));
  ASSERT_EQ(r.status, Status::kOk) << r.reason;
  EXPECT_FALSE(r.header.ipv4);
  EXPECT_EQ(r.header.SourceAddress(), "2001:db8::7");
  EXPECT_EQ(r.header.source_port, 5555);
}

TEST(ProxyProtocol, LocalCommandKeepsThePeer) {
  auto r = ParseProxyHeaderV2(Header(0x20, 0x00, ""));
  ASSERT_EQ(r.status, Status::kOk) << r.reason;
  EXPECT_TRUE(r.header.local);
  EXPECT_EQ(r.header.SourceAddress(), "");
  EXPECT_EQ(r.consumed, 16u);
}

TEST(ProxyProtocol, NeedsMoreUntilTheWholeHeaderIsThere) {
  std::string h = Header(0x21, 0x11, V4Body(V4(10, 0, 0, 1), V4(10, 0, 0, 2), 1, 2));
  for (size_t n = 0; n < h.size(); ++n) {
    auto r = ParseProxyHeaderV2(h.substr(0, n));
    EXPECT_EQ(r.status, Status::kNeedMore) << "prefix of " << n << " bytes: " << r.reason;
  }
  EXPECT_EQ(ParseProxyHeaderV2(h).status, Status::kOk);
}

TEST(ProxyProtocol, RefusesAPlainRequestAtItsFirstByte) {
  auto r = ParseProxyHeaderV2("C");
  EXPECT_EQ(r.status, Status::kMalformed);
  EXPECT_EQ(ParseProxyHeaderV2("CONNECT example.org:443 HTTP/1.1\r\n").status, Status::kMalformed);
}

TEST(ProxyProtocol, RefusesVersionOne) {
  auto r = ParseProxyHeaderV2("PROXY TCP4 10.0.0.1 10.0.0.2 1 2\r\n");
  EXPECT_EQ(r.status, Status::kMalformed);
  EXPECT_NE(r.reason.find("v1"), std::string::npos) << r.reason;
}

TEST(ProxyProtocol, RefusesBadVersionCommandFamilyAndTransport) {
  std::string body = V4Body(V4(10, 0, 0, 1), V4(10, 0, 0, 2), 1, 2);
  EXPECT_EQ(ParseProxyHeaderV2(Header(0x11, 0x11, body)).status, Status::kMalformed);  // version 1
  EXPECT_EQ(ParseProxyHeaderV2(Header(0x22, 0x11, body)).status, Status::kMalformed);  // command 2
  EXPECT_EQ(ParseProxyHeaderV2(Header(0x21, 0x12, body)).status, Status::kMalformed);  // UDP
  EXPECT_EQ(ParseProxyHeaderV2(Header(0x21, 0x31, std::string(216, 'a'))).status, Status::kMalformed);  // UNIX
  EXPECT_EQ(ParseProxyHeaderV2(Header(0x21, 0x01, "")).status, Status::kMalformed);  // UNSPEC with PROXY
}

TEST(ProxyProtocol, RefusesLengthsThatDoNotHoldTheAddresses) {
  EXPECT_EQ(ParseProxyHeaderV2(Header(0x21, 0x11, std::string(11, 'x'))).status, Status::kMalformed);
  EXPECT_EQ(ParseProxyHeaderV2(Header(0x21, 0x21, std::string(35, 'x'))).status, Status::kMalformed);
  EXPECT_EQ(ParseProxyHeaderV2(Header(0x20, 0x21, std::string(20, 'x'))).status, Status::kMalformed);
}

TEST(ProxyProtocol, RefusesTruncatedTlvs) {
  std::string base = V4Body(V4(10, 0, 0, 1), V4(10, 0, 0, 2), 1, 2);
  EXPECT_EQ(ParseProxyHeaderV2(Header(0x21, 0x11, base + "\x01")).status, Status::kMalformed);
  EXPECT_EQ(ParseProxyHeaderV2(Header(0x21, 0x11, base + std::string("\x01", 1) + Be16(5) + "abc")).status,
            Status::kMalformed);
}

TEST(ProxyProtocol, RefusesHeadersOverTheLimitBeforeReadingThem) {
  std::string fixed = kSig + "\x21\x11" + Be16(60000);  // only the 16 fixed bytes arrived
  auto r = ParseProxyHeaderV2(fixed);
  EXPECT_EQ(r.status, Status::kMalformed);
  EXPECT_NE(r.reason.find("limit"), std::string::npos) << r.reason;
  std::string ok = Header(0x21, 0x11, V4Body(V4(10, 0, 0, 1), V4(10, 0, 0, 2), 1, 2) + std::string("\x05", 1) +
                                          Be16(100) + std::string(100, 'z'));
  EXPECT_EQ(ParseProxyHeaderV2(ok).status, Status::kOk);
  EXPECT_EQ(ParseProxyHeaderV2(ok, 64).status, Status::kMalformed);
}

}  // namespace
}  // namespace egressguard::mitm
