#pragma once
// UTF-8 encoding of one code point, for the decoders that turn escapes, references,
// UTF-16 and PDF text into the UTF-8 the engine scans.

#include <cstddef>
#include <cstdint>
#include <string>

namespace egressguard::dlp::decode {

// Writes cp (at most U+10FFFF; the caller maps anything else) to out[0..4); returns the
// number of bytes written.
inline size_t EncodeUtf8(uint32_t cp, char* out) {
  if (cp < 0x80) {
    out[0] = static_cast<char>(cp);
    return 1;
  }
  if (cp < 0x800) {
    out[0] = static_cast<char>(0xC0 | (cp >> 6));
    out[1] = static_cast<char>(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    out[0] = static_cast<char>(0xE0 | (cp >> 12));
    out[1] = static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out[2] = static_cast<char>(0x80 | (cp & 0x3F));
    return 3;
  }
  out[0] = static_cast<char>(0xF0 | (cp >> 18));
  out[1] = static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
  out[2] = static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
  out[3] = static_cast<char>(0x80 | (cp & 0x3F));
  return 4;
}

// Appends cp; a value past U+10FFFF is no character and is left out.
inline void AppendUtf8(std::string* out, uint32_t cp) {
  if (cp > 0x10FFFF) return;
  char buf[4];
  out->append(buf, EncodeUtf8(cp, buf));
}

}  // namespace egressguard::dlp::decode
