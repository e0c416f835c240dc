#pragma once
// Hand DER encoding for the leaf's to-be-signed part, and a strict reader for the one
// piece of upstream DER the leaf copies verbatim (the SAN list).
//
// OpenSSL 3.0's template encoder costs about a third of an ECDSA signature to re-encode a
// leaf TBS, and its decoder builds a decoder context per parsed public key (~4 signatures),
// so the minter writes the TBS itself from the very values it sets on the X509 object.
// The object must re-encode to the same bytes (the handshake sends i2d_X509 of it); the
// minter checks that at Create and the ca tests check it over many shapes.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace egressguard::ca::der {

// DER tags used by the leaf.
inline constexpr std::uint8_t kInteger = 0x02;
inline constexpr std::uint8_t kOctetString = 0x04;
inline constexpr std::uint8_t kObjectId = 0x06;
inline constexpr std::uint8_t kSequence = 0x30;
inline constexpr std::uint8_t kSet = 0x31;
inline constexpr std::uint8_t kExplicit0 = 0xa0;
inline constexpr std::uint8_t kExplicit3 = 0xa3;

// Writes nested DER into one buffer without knowing lengths up front: Open leaves room
// for the longest length form a leaf needs, Close writes the minimal form and moves the
// content back over the room left unused. A leaf TBS is one buffer and no allocation
// once the buffer has grown, where a string per nesting level cost ~20 mallocs a mint.
class Writer {
 public:
  explicit Writer(std::string& out) : out_(out) {}
  // Starts a `tag` TLV whose content follows; returns the mark Close takes.
  std::size_t Open(std::uint8_t tag);
  // Ends the TLV `mark` opened.
  void Close(std::size_t mark);
  // False once any TLV held 16 MiB or more (no leaf does): the output is then not DER.
  bool ok() const { return ok_; }
  void Append(std::string_view bytes) { out_.append(bytes); }
  void Tlv(std::uint8_t tag, std::string_view content);

 private:
  std::string& out_;
  bool ok_ = true;
};

// Appends tag, definite minimal length and `content` to `out`.
void AppendTlv(std::string& out, std::uint8_t tag, std::string_view content);
// Appends tag and the minimal length of a `content_length`-byte value (content follows).
void AppendHeader(std::string& out, std::uint8_t tag, std::size_t content_length);

// True when `san` is a DER GeneralNames holding only dNSName (printable ASCII) and
// iPAddress (4 or 16 bytes) entries, at least one, with minimal lengths and nothing
// trailing: exactly what a leaf may carry, so it can be copied as is.
bool IsHostOnlyGeneralNames(std::string_view san);

}  // namespace egressguard::ca::der
