#include "mitm/proxy_protocol.h"

#include <arpa/inet.h>

#include <algorithm>

namespace egressguard::mitm {
namespace {

constexpr std::string_view kSignature("\r\n\r\n\0\r\nQUIT\n", 12);
constexpr size_t kFixedBytes = 16;
constexpr size_t kInetAddressBytes = 12;   // 2 x 4-byte address + 2 x port
constexpr size_t kInet6AddressBytes = 36;  // 2 x 16-byte address + 2 x port
constexpr size_t kUnixAddressBytes = 216;  // 2 x 108-byte path

ProxyHeaderResult Malformed(std::string reason) {
  ProxyHeaderResult r;
  r.status = ProxyHeaderResult::Status::kMalformed;
  r.reason = std::move(reason);
  return r;
}

uint16_t Be16(const unsigned char* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }

std::array<uint8_t, 16> V4Mapped(const unsigned char* p) {
  std::array<uint8_t, 16> out{};
  out[10] = 0xff;
  out[11] = 0xff;
  std::copy(p, p + 4, out.begin() + 12);
  return out;
}

std::array<uint8_t, 16> V6(const unsigned char* p) {
  std::array<uint8_t, 16> out{};
  std::copy(p, p + 16, out.begin());
  return out;
}

// TLVs carry optional facts (ALPN, authority, CRC32C, vendor data) we do not use; their
// framing is still checked so a truncated or overlong one refuses the header.
bool TlvsWellFramed(const unsigned char* p, size_t n) {
  size_t i = 0;
  while (i < n) {
    if (n - i < 3) return false;
    size_t len = Be16(p + i + 1);
    if (n - i - 3 < len) return false;
    i += 3 + len;
  }
  return true;
}

}  // namespace

std::string ProxyHeader::SourceAddress() const {
  if (local) return "";
  char text[INET6_ADDRSTRLEN] = {};
  if (ipv4) {
    inet_ntop(AF_INET, source_ip.data() + 12, text, sizeof(text));
  } else {
    inet_ntop(AF_INET6, source_ip.data(), text, sizeof(text));
  }
  return text;
}

ProxyHeaderResult ParseProxyHeaderV2(std::string_view bytes, size_t max_bytes) {
  const size_t sig = std::min(bytes.size(), kSignature.size());
  if (bytes.substr(0, sig) != kSignature.substr(0, sig)) {
    if (bytes.substr(0, 6) == "PROXY ") return Malformed("PROXY protocol v1 (text) header; only v2 is accepted");
    return Malformed("no PROXY protocol v2 signature");
  }
  if (bytes.size() < kFixedBytes) return {};
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  const unsigned version = p[12] >> 4;
  const unsigned command = p[12] & 0x0f;
  const unsigned family = p[13] >> 4;
  const unsigned transport = p[13] & 0x0f;
  const size_t length = Be16(p + 14);
  if (version != 2) return Malformed("PROXY protocol version " + std::to_string(version) + ", expected 2");
  if (command > 1) return Malformed("unknown PROXY protocol command " + std::to_string(command));
  if (kFixedBytes + length > max_bytes) {
    return Malformed("PROXY protocol header of " + std::to_string(kFixedBytes + length) + " bytes, over the limit of " +
                     std::to_string(max_bytes));
  }
  if (bytes.size() < kFixedBytes + length) return {};

  ProxyHeaderResult r;
  r.consumed = kFixedBytes + length;
  const unsigned char* body = p + kFixedBytes;
  size_t address_bytes = 0;
  if (command == 0) {
    // LOCAL: the addresses block (if any) is ignored by the spec; only framing matters.
    r.header.local = true;
    if (family == 1) address_bytes = kInetAddressBytes;
    if (family == 2) address_bytes = kInet6AddressBytes;
    if (family == 3) address_bytes = kUnixAddressBytes;
    if (address_bytes > length) return Malformed("LOCAL header shorter than its address block");
  } else {
    if (transport != 1) return Malformed("PROXY protocol transport " + std::to_string(transport) + ", only TCP (1) is accepted");
    if (family == 1) {
      address_bytes = kInetAddressBytes;
      if (length < address_bytes) return Malformed("IPv4 PROXY header shorter than its 12 address bytes");
      r.header.ipv4 = true;
      r.header.source_ip = V4Mapped(body);
      r.header.destination_ip = V4Mapped(body + 4);
      r.header.source_port = Be16(body + 8);
      r.header.destination_port = Be16(body + 10);
    } else if (family == 2) {
      address_bytes = kInet6AddressBytes;
      if (length < address_bytes) return Malformed("IPv6 PROXY header shorter than its 36 address bytes");
      r.header.source_ip = V6(body);
      r.header.destination_ip = V6(body + 16);
      r.header.source_port = Be16(body + 32);
      r.header.destination_port = Be16(body + 34);
    } else {
      return Malformed("PROXY protocol address family " + std::to_string(family) + ", only IPv4 (1) and IPv6 (2) are accepted");
    }
  }
  if (!TlvsWellFramed(body + address_bytes, length - address_bytes)) return Malformed("malformed PROXY protocol TLV");
  r.status = ProxyHeaderResult::Status::kOk;
  return r;
}

}  // namespace egressguard::mitm
