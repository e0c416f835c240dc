// Decompressors: arbitrary bytes as gzip/deflate/br/zstd bodies never crash, and real compressed forms of the input always decode back to it.
#include <brotli/encode.h>
#include <zlib.h>
#include <zstd.h>

#include <cstddef>
#include <cstdint>

#include "decode_fuzz_common.h"

using namespace egressguard::dlp::decode;

namespace {

std::string Compress(int codec, std::string_view in) {
  std::string out;
  if (codec == 0 || codec == 1) {
    uLongf n = compressBound(static_cast<uLong>(in.size())) + 32;
    out.resize(n);
    z_stream z{};
    deflateInit2(&z, 6, Z_DEFLATED, codec == 0 ? 31 : 15, 8, Z_DEFAULT_STRATEGY);
    z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
    z.avail_in = static_cast<uInt>(in.size());
    z.next_out = reinterpret_cast<Bytef*>(out.data());
    z.avail_out = static_cast<uInt>(out.size());
    deflate(&z, Z_FINISH);
    out.resize(z.total_out);
    deflateEnd(&z);
  } else if (codec == 2) {
    size_t n = BrotliEncoderMaxCompressedSize(in.size());
    out.resize(n);
    BrotliEncoderCompress(1, 18, BROTLI_MODE_GENERIC, in.size(), reinterpret_cast<const uint8_t*>(in.data()), &n,
                          reinterpret_cast<uint8_t*>(out.data()));
    out.resize(n);
  } else {
    out.resize(ZSTD_compressBound(in.size()));
    out.resize(ZSTD_compress(out.data(), out.size(), in.data(), in.size(), 1));
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2 || size > (64 << 10)) return 0;
  static const char* kNames[] = {"gzip", "deflate", "br", "zstd"};
  const int codec = data[0] % 4;
  const size_t chunk = 1 + data[1] % 61;
  const std::string_view body(reinterpret_cast<const char*>(data) + 2, size - 2);
  ContentHintLite hint;
  hint.content_encoding = kNames[codec];
  NormalizerLimits limits;
  limits.max_depth = 1;
  limits.max_expansion_ratio = 1u << 30;

  {  // Arbitrary bytes as a body of that encoding.
    fuzz::CheckingSink sink(body.size());
    Normalizer n(hint, limits, sink);
    for (size_t at = 0; at < body.size(); at += chunk) n.Feed(body.substr(at, chunk));
    n.Finish();
  }
  if (body.empty()) return 0;
  {  // The real compressed form of the bytes decodes back to them.
    const std::string packed = Compress(codec, body);
    fuzz::CheckingSink sink(packed.size());
    Normalizer n(hint, limits, sink);
    for (size_t at = 0; at < packed.size(); at += chunk) n.Feed(std::string_view(packed).substr(at, chunk));
    n.Finish();
    if (!sink.reasons.empty()) std::abort();
    bool found = false;
    for (const auto& [id, text] : sink.layers) found |= text == body;
    if (!found) std::abort();
  }
  return 0;
}
