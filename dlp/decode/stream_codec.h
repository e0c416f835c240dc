#pragma once
// One face for the streaming decompressors that run behind a document or an archive
// member (zlib's raw inflate, liblzma's .xz and .lzma decoders, libbz2), so that the
// code around them (slicing, spans, bomb ratios, truncation, undecodable reports) is
// written once for all of them: the stream decoder (stream_decoder.cc) and the zip
// member reader (zip.cc). Every codec allocates through the message's charged
// allocator (layer.h), so a hostile dictionary or block size fails as undecodable.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace egressguard::dlp::decode {

struct Context;

class StreamCodec {
 public:
  enum class Status {
    kOk,     // all input taken or all output space used; call again
    kEnd,    // the stream ended (`used` counts its last byte; input after it is not taken)
    kError,  // corrupt or unsupported: `error` says why; the codec is dead
  };
  struct Result {
    size_t used = 0;
    size_t produced = 0;
    Status status = Status::kOk;
    std::string error;
  };

  virtual ~StreamCodec() = default;
  // Decodes from in[0, n) into out[0, cap). `finish`: no input follows these bytes
  // (only codecs that cannot tell a complete stream from a cut one without it, the
  // concatenated xz and bzip2 readers, need it).
  virtual Result Code(const uint8_t* in, size_t n, uint8_t* out, size_t cap, bool finish) = 0;
  // Ready for a new stream, keeping its allocations; false when that failed.
  virtual bool Reset() = 0;
};

// Each returns nullptr and says why in *error when the codec cannot start (memory).
// Concatenated streams (xz's LZMA_CONCATENATED; pbzip2's one bzip2 stream per block)
// are one stream to the caller and end only with `finish`.
std::unique_ptr<StreamCodec> MakeXzCodec(Context& ctx, std::string* error);
// The legacy .lzma format (LZMA_Alone: 13-byte header, then LZMA1 data).
std::unique_ptr<StreamCodec> MakeLzmaAloneCodec(Context& ctx, std::string* error);
// bzip2; `concatenated` false: the first stream's end is the end (a zip member).
std::unique_ptr<StreamCodec> MakeBzip2Codec(Context& ctx, bool concatenated, std::string* error);
// Raw deflate (zip method 8).
std::unique_ptr<StreamCodec> MakeRawInflateCodec(Context& ctx, std::string* error);
// Zip method 14: a 4-byte LZMA SDK header, the 5 LZMA properties, then LZMA1 data that
// ends at `size` bytes of output, or at its end marker when `end_marker` (flag bit 1).
std::unique_ptr<StreamCodec> MakeZipLzmaCodec(Context& ctx, uint64_t size, bool end_marker, std::string* error);

}  // namespace egressguard::dlp::decode
