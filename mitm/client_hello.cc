#include "mitm/client_hello.h"

#include <fmt/format.h>

#include <optional>

namespace egressguard::mitm {
namespace {

constexpr uint8_t kHandshakeRecord = 22;
constexpr uint8_t kClientHelloType = 1;
constexpr size_t kRecordHeader = 5;
constexpr size_t kMaxRecordPayload = 16384;  // RFC 8446 5.1: plaintext fragments are <= 2^14

constexpr uint16_t kExtServerName = 0;
constexpr uint16_t kExtAlpn = 16;
constexpr uint16_t kExtSupportedVersions = 43;

// A bounds-checked cursor: every read fails instead of running past the end.
class Reader {
 public:
  explicit Reader(std::string_view data) : data_(data) {}
  bool empty() const { return pos_ == data_.size(); }
  size_t remaining() const { return data_.size() - pos_; }
  std::optional<uint8_t> U8() {
    if (remaining() < 1) return std::nullopt;
    return static_cast<uint8_t>(data_[pos_++]);
  }
  std::optional<uint16_t> U16() {
    if (remaining() < 2) return std::nullopt;
    uint16_t v = static_cast<uint16_t>((static_cast<uint8_t>(data_[pos_]) << 8) | static_cast<uint8_t>(data_[pos_ + 1]));
    pos_ += 2;
    return v;
  }
  std::optional<uint32_t> U24() {
    if (remaining() < 3) return std::nullopt;
    uint32_t v = (static_cast<uint32_t>(static_cast<uint8_t>(data_[pos_])) << 16) |
                 (static_cast<uint32_t>(static_cast<uint8_t>(data_[pos_ + 1])) << 8) |
                 static_cast<uint32_t>(static_cast<uint8_t>(data_[pos_ + 2]));
    pos_ += 3;
    return v;
  }
  std::optional<std::string_view> Bytes(size_t n) {
    if (remaining() < n) return std::nullopt;
    auto v = data_.substr(pos_, n);
    pos_ += n;
    return v;
  }
  // A vector with an 8- or 16-bit length prefix.
  std::optional<std::string_view> Prefixed8() {
    auto n = U8();
    if (!n) return std::nullopt;
    return Bytes(*n);
  }
  std::optional<std::string_view> Prefixed16() {
    auto n = U16();
    if (!n) return std::nullopt;
    return Bytes(*n);
  }

 private:
  std::string_view data_;
  size_t pos_ = 0;
};

ClientHelloResult Malformed(std::string reason) {
  ClientHelloResult r;
  r.status = ClientHelloResult::Status::kMalformed;
  r.reason = std::move(reason);
  return r;
}

ClientHelloResult NotTls(std::string reason) {
  ClientHelloResult r;
  r.status = ClientHelloResult::Status::kNotTls;
  r.reason = std::move(reason);
  return r;
}

bool HostNameCharOk(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
         c == '_';
}

std::optional<std::string> ParseServerName(std::string_view ext, std::string& error) {
  Reader r(ext);
  auto list = r.Prefixed16();
  if (!list || !r.empty()) {
    error = "server_name extension length mismatch";
    return std::nullopt;
  }
  Reader lr(*list);
  std::string host;
  while (!lr.empty()) {
    auto type = lr.U8();
    auto name = type ? lr.Prefixed16() : std::nullopt;
    if (!name) {
      error = "server_name entry truncated";
      return std::nullopt;
    }
    if (*type != 0) continue;  // only host_name is defined; others are skipped
    if (!host.empty()) {
      error = "more than one host_name in server_name";
      return std::nullopt;
    }
    if (name->empty() || name->size() > 253) {
      error = "host_name empty or longer than 253 bytes";
      return std::nullopt;
    }
    for (char c : *name) {
      if (!HostNameCharOk(c)) {
        error = "host_name has a character not allowed in a DNS name";
        return std::nullopt;
      }
    }
    host.assign(*name);
    for (char& c : host) {
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    }
  }
  if (host.empty()) {
    error = "server_name without host_name";
    return std::nullopt;
  }
  return host;
}

bool ParseAlpn(std::string_view ext, std::vector<std::string>& out, std::string& error) {
  Reader r(ext);
  auto list = r.Prefixed16();
  if (!list || !r.empty() || list->empty()) {
    error = "ALPN extension length mismatch";
    return false;
  }
  Reader lr(*list);
  while (!lr.empty()) {
    auto proto = lr.Prefixed8();
    if (!proto || proto->empty()) {
      error = "ALPN protocol name truncated or empty";
      return false;
    }
    out.emplace_back(*proto);
  }
  return true;
}

bool ParseSupportedVersions(std::string_view ext, std::vector<uint16_t>& out, std::string& error) {
  Reader r(ext);
  auto list = r.Prefixed8();
  if (!list || !r.empty() || list->empty() || list->size() % 2 != 0) {
    error = "supported_versions extension length mismatch";
    return false;
  }
  Reader lr(*list);
  while (!lr.empty()) {
    uint16_t v = *lr.U16();
    if (!IsGrease(v)) out.push_back(v);
  }
  return true;
}

ClientHelloResult ParseHelloBody(std::string_view body, ClientHelloResult result) {
  Reader r(body);
  auto version = r.U16();
  if (!version || !r.Bytes(32)) return Malformed("ClientHello truncated before random");
  result.info.legacy_version = *version;
  if ((*version >> 8) != 3) return Malformed(fmt::format("ClientHello legacy_version {:#06x} is not SSL3/TLS", *version));
  auto session_id = r.Prefixed8();
  if (!session_id || session_id->size() > 32) return Malformed("session_id truncated or longer than 32 bytes");
  auto suites = r.Prefixed16();
  if (!suites || suites->empty() || suites->size() % 2 != 0) return Malformed("cipher_suites truncated or odd length");
  auto compression = r.Prefixed8();
  if (!compression || compression->empty()) return Malformed("compression_methods truncated or empty");
  if (r.empty()) {  // no extensions at all: legal for old clients
    result.status = ClientHelloResult::Status::kParsed;
    return result;
  }
  auto extensions = r.Prefixed16();
  if (!extensions || !r.empty()) return Malformed("extensions block length mismatch");

  Reader er(*extensions);
  std::vector<uint16_t> seen;
  std::string error;
  while (!er.empty()) {
    auto type = er.U16();
    auto data = type ? er.Prefixed16() : std::nullopt;
    if (!data) return Malformed("extension truncated");
    if (!IsGrease(*type)) {
      for (uint16_t s : seen) {
        if (s == *type) return Malformed(fmt::format("duplicate extension {}", *type));
      }
      if (seen.size() < 256) seen.push_back(*type);
    }
    switch (*type) {
      case kExtServerName: {
        auto host = ParseServerName(*data, error);
        if (!host) return Malformed(error);
        result.info.sni = std::move(*host);
        break;
      }
      case kExtAlpn:
        if (!ParseAlpn(*data, result.info.alpn, error)) return Malformed(error);
        break;
      case kExtSupportedVersions:
        if (!ParseSupportedVersions(*data, result.info.supported_versions, error)) return Malformed(error);
        break;
      default:
        break;
    }
  }
  result.status = ClientHelloResult::Status::kParsed;
  return result;
}

}  // namespace

ClientHelloResult ParseClientHello(std::string_view stream, const ClientHelloLimits& limits) {
  ClientHelloResult need_more;
  // Decide "not TLS" as early as the first bytes allow, so plaintext is refused quickly.
  if (!stream.empty() && static_cast<uint8_t>(stream[0]) != kHandshakeRecord) {
    return NotTls(fmt::format("first byte {:#04x} is not a TLS handshake record", static_cast<uint8_t>(stream[0])));
  }
  if (stream.size() >= 2 && static_cast<uint8_t>(stream[1]) != 3) {
    return NotTls("record version major is not 3");
  }

  // Reassemble the handshake message from as many records as it spans.
  std::string handshake;
  size_t pos = 0;
  uint16_t first_record_version = 0;
  std::optional<size_t> message_len;
  while (true) {
    if (stream.size() - pos < kRecordHeader) return need_more;
    Reader hr(stream.substr(pos, kRecordHeader));
    uint8_t type = *hr.U8();
    uint16_t rversion = *hr.U16();
    uint16_t rlen = *hr.U16();
    if (type != kHandshakeRecord) {
      return pos == 0 ? NotTls("not a TLS handshake record") : Malformed("non-handshake record inside the ClientHello");
    }
    if ((rversion >> 8) != 3) return pos == 0 ? NotTls("record version major is not 3") : Malformed("bad record version");
    if (pos == 0) first_record_version = rversion;
    if (rlen == 0) return Malformed("empty handshake record");
    if (rlen > kMaxRecordPayload) return Malformed(fmt::format("record length {} exceeds 2^14", rlen));
    if (stream.size() - pos - kRecordHeader < rlen) return need_more;
    handshake.append(stream.substr(pos + kRecordHeader, rlen));
    pos += kRecordHeader + rlen;

    if (!message_len && handshake.size() >= 4) {
      Reader mr(handshake);
      uint8_t msg_type = *mr.U8();
      uint32_t len = *mr.U24();
      if (msg_type != kClientHelloType) return Malformed(fmt::format("first handshake message is type {}, not ClientHello", msg_type));
      if (len > limits.max_hello_bytes) {
        return Malformed(fmt::format("ClientHello of {} bytes exceeds the {} byte limit", len, limits.max_hello_bytes));
      }
      message_len = len;
    }
    if (message_len && handshake.size() >= 4 + *message_len) {
      if (handshake.size() != 4 + *message_len) return Malformed("extra handshake bytes after the ClientHello");
      break;
    }
    // Bound the reassembly even before the length is known (it is known after 4 bytes).
    if (handshake.size() > limits.max_hello_bytes + 4) return Malformed("ClientHello exceeds the size limit");
  }

  ClientHelloResult result;
  result.info.record_version = first_record_version;
  result.info.record_bytes = pos;
  return ParseHelloBody(std::string_view(handshake).substr(4), std::move(result));
}

}  // namespace egressguard::mitm
