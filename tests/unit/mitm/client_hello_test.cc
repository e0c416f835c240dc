// Proves the ClientHello parser extracts SNI/ALPN/versions across fragmented records and reads, skips GREASE, and refuses bad lengths.
#include "mitm/client_hello.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace egressguard::mitm {
namespace {

std::string U16(uint16_t v) { return std::string{static_cast<char>(v >> 8), static_cast<char>(v & 0xff)}; }
std::string U24(uint32_t v) {
  return std::string{static_cast<char>((v >> 16) & 0xff), static_cast<char>((v >> 8) & 0xff), static_cast<char>(v & 0xff)};
}
std::string Ext(uint16_t type, const std::string& data) { return U16(type) + U16(static_cast<uint16_t>(data.size())) + data; }

std::string SniExt(const std::string& host) {
  std::string entry = std::string(1, '\0') + U16(static_cast<uint16_t>(host.size())) + host;
  return Ext(0, U16(static_cast<uint16_t>(entry.size())) + entry);
}

std::string AlpnExt(const std::vector<std::string>& protos) {
  std::string list;
  for (const auto& p : protos) list += std::string(1, static_cast<char>(p.size())) + p;
  return Ext(16, U16(static_cast<uint16_t>(list.size())) + list);
}

std::string VersionsExt(const std::vector<uint16_t>& versions) {
  std::string list;
  for (auto v : versions) list += U16(v);
  return Ext(43, std::string(1, static_cast<char>(list.size())) + list);
}

std::string HelloBody(const std::string& extensions) {
  std::string body = U16(0x0303) + std::string(32, 'r');
  body += std::string(1, 32) + std::string(32, 's');  // session id
  body += U16(4) + U16(0x1301) + U16(0x0a0a);         // suites incl. GREASE
  body += std::string(1, 1) + std::string(1, 0);      // null compression
  body += U16(static_cast<uint16_t>(extensions.size())) + extensions;
  return body;
}

std::string Handshake(const std::string& body) { return std::string(1, 1) + U24(static_cast<uint32_t>(body.size())) + body; }

// Splits the handshake message into records of at most `fragment` bytes.
std::string Records(const std::string& handshake, size_t fragment) {
  std::string out;
  for (size_t i = 0; i < handshake.size(); i += fragment) {
    std::string part = handshake.substr(i, fragment);
    out += std::string(1, 22) + U16(0x0301) + U16(static_cast<uint16_t>(part.size())) + part;
  }
  return out;
}

std::string FullHello() {
  return Handshake(HelloBody(Ext(0x2a2a, "") + SniExt("Example.COM") + AlpnExt({"h2", "http/1.1"}) +
                             VersionsExt({0x3a3a, 0x0304, 0x0303})));
}

TEST(ClientHello, ParsesSniAlpnVersionsAndSkipsGrease) {
  std::string wire = Records(FullHello(), 16384);
  auto r = ParseClientHello(wire);
  ASSERT_EQ(r.status, ClientHelloResult::Status::kParsed) << r.reason;
  EXPECT_EQ(r.info.sni, "example.com");
  EXPECT_EQ(r.info.alpn, (std::vector<std::string>{"h2", "http/1.1"}));
  EXPECT_EQ(r.info.supported_versions, (std::vector<uint16_t>{0x0304, 0x0303}));
  EXPECT_EQ(r.info.legacy_version, 0x0303);
  EXPECT_EQ(r.info.record_version, 0x0301);
  EXPECT_EQ(r.info.record_bytes, wire.size());
}

TEST(ClientHello, ReassemblesAcrossRecordsAndPartialReads) {
  std::string wire = Records(FullHello(), 7);
  for (size_t cut = 0; cut < wire.size(); ++cut) {
    auto partial = ParseClientHello(std::string_view(wire).substr(0, cut));
    ASSERT_EQ(partial.status, ClientHelloResult::Status::kNeedMore) << "cut " << cut << ": " << partial.reason;
  }
  auto r = ParseClientHello(wire + "\x17\x03\x03");  // trailing early bytes are not part of the hello
  ASSERT_EQ(r.status, ClientHelloResult::Status::kParsed) << r.reason;
  EXPECT_EQ(r.info.sni, "example.com");
  EXPECT_EQ(r.info.record_bytes, wire.size());
}

TEST(ClientHello, NoExtensionsIsParsedWithoutSni) {
  std::string body = U16(0x0301) + std::string(32, 'r') + std::string(1, 0) + U16(2) + U16(0x002f) + std::string(1, 1) +
                     std::string(1, 0);
  auto r = ParseClientHello(Records(Handshake(body), 100));
  ASSERT_EQ(r.status, ClientHelloResult::Status::kParsed) << r.reason;
  EXPECT_TRUE(r.info.sni.empty());
}

TEST(ClientHello, PlaintextIsNotTls) {
  EXPECT_EQ(ParseClientHello("GET / HTTP/1.1\r\n").status, ClientHelloResult::Status::kNotTls);
  EXPECT_EQ(ParseClientHello(std::string("\x16\x01", 2)).status, ClientHelloResult::Status::kNotTls);
  EXPECT_EQ(ParseClientHello("").status, ClientHelloResult::Status::kNeedMore);
}

TEST(ClientHello, RefusesBadLengths) {
  std::string hello = FullHello();
  // Handshake length larger than the limit.
  ClientHelloLimits small;
  small.max_hello_bytes = 64;
  EXPECT_EQ(ParseClientHello(Records(hello, 16384), small).status, ClientHelloResult::Status::kMalformed);
  // Record length over 2^14.
  std::string big = std::string(1, 22) + U16(0x0301) + U16(16385);
  EXPECT_EQ(ParseClientHello(big).status, ClientHelloResult::Status::kMalformed);
  // Inner SNI length running past its extension.
  std::string bad_sni = Ext(0, U16(10) + std::string(1, 0) + U16(200) + "a.com");
  EXPECT_EQ(ParseClientHello(Records(Handshake(HelloBody(bad_sni)), 16384)).status,
            ClientHelloResult::Status::kMalformed);
  // Duplicate extensions.
  std::string dup = SniExt("a.com") + SniExt("b.com");
  EXPECT_EQ(ParseClientHello(Records(Handshake(HelloBody(dup)), 16384)).status, ClientHelloResult::Status::kMalformed);
  // Not a ClientHello (ServerHello type 2).
  std::string sh = hello;
  sh[0] = 2;
  EXPECT_EQ(ParseClientHello(Records(sh, 16384)).status, ClientHelloResult::Status::kMalformed);
  // Alert record after the first handshake fragment.
  std::string frag = Records(hello.substr(0, 10), 10) + std::string(1, 21) + U16(0x0303) + U16(2) + "\x02\x28";
  EXPECT_EQ(ParseClientHello(frag).status, ClientHelloResult::Status::kMalformed);
  // SNI with a character not valid in a DNS name.
  EXPECT_EQ(ParseClientHello(Records(Handshake(HelloBody(SniExt("a b.com"))), 16384)).status,
            ClientHelloResult::Status::kMalformed);
}

TEST(ClientHello, GreaseDetection) {
  EXPECT_TRUE(IsGrease(0x0a0a));
  EXPECT_TRUE(IsGrease(0xfafa));
  EXPECT_FALSE(IsGrease(0x0a1a));
  EXPECT_FALSE(IsGrease(0x0304));
}

}  // namespace
}  // namespace egressguard::mitm
