#pragma once
// Parses a TLS ClientHello from the raw bytes a client sent before any handshake, so the
// proxy can decide bump / splice / refuse from the SNI before answering. Handles a
// hello split across several TLS records and several TCP reads, skips GREASE values,
// and bounds every length it reads.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace egressguard::mitm {

struct ClientHelloInfo {
  uint16_t record_version = 0;  // TLSPlaintext.legacy_record_version of the first record
  uint16_t legacy_version = 0;  // ClientHello.legacy_version (0x0303 for TLS 1.2 and 1.3)
  std::string sni;              // lower-cased host_name, empty when absent
  std::vector<std::string> alpn;             // in client order
  std::vector<uint16_t> supported_versions;  // GREASE removed; empty when the extension is absent
  size_t record_bytes = 0;      // bytes of TLS records the hello occupied (from the stream start)
};

struct ClientHelloResult {
  enum class Status { kNeedMore, kParsed, kNotTls, kMalformed };
  Status status = Status::kNeedMore;
  ClientHelloInfo info;  // valid when kParsed
  std::string reason;    // why, for kNotTls / kMalformed
};

struct ClientHelloLimits {
  size_t max_hello_bytes = 64 * 1024;  // handshake message body; larger is refused
};

// Parses `stream_start` (everything the client sent so far, from its first byte). Call
// again with more bytes after kNeedMore; the parse is stateless and cheap.
ClientHelloResult ParseClientHello(std::string_view stream_start, const ClientHelloLimits& limits = {});

// True for the reserved GREASE values (RFC 8701): 0x0a0a, 0x1a1a, ... 0xfafa.
constexpr bool IsGrease(uint16_t v) { return (v & 0x0f0f) == 0x0a0a && (v >> 8) == (v & 0xff); }

}  // namespace egressguard::mitm
