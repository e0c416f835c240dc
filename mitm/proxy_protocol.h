#pragma once
// PROXY protocol version 2 (haproxy.org/download/2.9/doc/proxy-protocol.txt): the
// binary header a node-local redirector (or a load balancer) puts in front of a
// redirected connection to say whose connection it is. Parsed strictly: every length
// is checked, the whole header is bounded, TLVs are skipped (their framing checked).
//
// Accepted: LOCAL (the redirector's own connection, e.g. a health check: the socket's
// peer stays the client) and PROXY over TCP with IPv4 or IPv6 addresses. Refused with a
// reason: anything else (v1 text headers, UNIX/UDP/UNSPEC families, bad lengths), since
// an egress proxy has no use for them and guessing would let a client pick its identity.

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace egressguard::mitm {

// 16 fixed bytes plus the addresses and TLVs; real redirectors send well under this.
inline constexpr size_t kMaxProxyHeaderBytes = 4096;

struct ProxyHeader {
  bool local = false;                     // LOCAL command: no addresses, keep the socket's
  bool ipv4 = false;
  std::array<uint8_t, 16> source_ip{};    // IPv4 stored v4-mapped (::ffff:a.b.c.d), like mitm::Cidr
  std::array<uint8_t, 16> destination_ip{};
  uint16_t source_port = 0;
  uint16_t destination_port = 0;
  // "10.1.2.3" or "2001:db8::1"; empty for LOCAL.
  std::string SourceAddress() const;
};

struct ProxyHeaderResult {
  enum class Status { kNeedMore, kOk, kMalformed };
  Status status = Status::kNeedMore;
  ProxyHeader header;  // valid with kOk
  size_t consumed = 0; // header bytes (kOk); the stream's own bytes follow
  std::string reason;  // kMalformed: why, for the log and the metrics
};

// Parses the header at the start of `bytes`. kNeedMore until the whole header is there;
// kMalformed as soon as the bytes cannot be a valid header (a client that does not
// speak the protocol is refused at its first bytes, not at the timeout).
ProxyHeaderResult ParseProxyHeaderV2(std::string_view bytes, size_t max_bytes = kMaxProxyHeaderBytes);

}  // namespace egressguard::mitm
