#include "ca/leaf_der.h"

namespace egressguard::ca::der {

namespace {

constexpr std::uint8_t kDnsName = 0x82;    // [2] IMPLICIT IA5String
constexpr std::uint8_t kIpAddress = 0x87;  // [7] IMPLICIT OCTET STRING

// Reads a tag and a minimal definite length at `pos`; leaves `pos` at the content.
bool ReadHeader(std::string_view in, std::size_t& pos, std::uint8_t& tag, std::size_t& length) {
  if (in.size() - pos < 2) return false;
  tag = static_cast<std::uint8_t>(in[pos++]);
  auto first = static_cast<std::uint8_t>(in[pos++]);
  if (first < 0x80) {
    length = first;
  } else {
    std::size_t n = first & 0x7f;
    if (n == 0 || n > 2 || in.size() - pos < n) return false;  // indefinite or absurd for a SAN
    length = 0;
    for (std::size_t i = 0; i < n; ++i) length = (length << 8) | static_cast<std::uint8_t>(in[pos++]);
    if (length < 0x80 || (n == 2 && length < 0x100)) return false;  // not minimal: not DER
  }
  return length <= in.size() - pos;
}

}  // namespace

void AppendHeader(std::string& out, std::uint8_t tag, std::size_t content_length) {
  out.push_back(static_cast<char>(tag));
  if (content_length < 0x80) {
    out.push_back(static_cast<char>(content_length));
    return;
  }
  int bytes = 0;
  for (std::size_t v = content_length; v != 0; v >>= 8) ++bytes;
  out.push_back(static_cast<char>(0x80 | bytes));
  for (int i = bytes - 1; i >= 0; --i) out.push_back(static_cast<char>((content_length >> (8 * i)) & 0xff));
}

namespace {
constexpr std::size_t kLengthRoom = 4;  // 0x83 and three bytes: content under 16 MiB
}  // namespace

std::size_t Writer::Open(std::uint8_t tag) {
  out_.push_back(static_cast<char>(tag));
  out_.append(kLengthRoom, '\0');
  return out_.size();
}

void Writer::Close(std::size_t mark) {
  std::size_t length = out_.size() - mark;
  if (length >= (std::size_t{1} << 24)) {
    ok_ = false;
    return;
  }
  char header[kLengthRoom];
  std::size_t used = 0;
  if (length < 0x80) {
    header[used++] = static_cast<char>(length);
  } else {
    std::size_t bytes = length < 0x100 ? 1 : length < 0x10000 ? 2 : 3;
    header[used++] = static_cast<char>(0x80 | bytes);
    for (std::size_t i = bytes; i-- > 0;) header[used++] = static_cast<char>((length >> (8 * i)) & 0xff);
  }
  std::size_t room = mark - kLengthRoom;
  out_.replace(room, kLengthRoom, header, used);
}

void Writer::Tlv(std::uint8_t tag, std::string_view content) { AppendTlv(out_, tag, content); }

void AppendTlv(std::string& out, std::uint8_t tag, std::string_view content) {
  AppendHeader(out, tag, content.size());
  out.append(content);
}

bool IsHostOnlyGeneralNames(std::string_view san) {
  std::size_t pos = 0;
  std::uint8_t tag = 0;
  std::size_t length = 0;
  if (!ReadHeader(san, pos, tag, length) || tag != kSequence || pos + length != san.size() || length == 0) {
    return false;
  }
  while (pos < san.size()) {
    if (!ReadHeader(san, pos, tag, length)) return false;
    std::string_view value = san.substr(pos, length);
    pos += length;
    if (tag == kIpAddress) {
      if (length != 4 && length != 16) return false;
    } else if (tag == kDnsName) {
      if (length == 0) return false;
      for (char c : value) {
        if (c < 0x21 || c > 0x7e) return false;
      }
    } else {
      return false;
    }
  }
  return true;
}

}  // namespace egressguard::ca::der
