#pragma once
// The seam between MessageScan and the content decoders (dlp/decode/). MessageScan
// feeds the raw message to a DecodeHook; the hook reports decoded layers and
// undecodable spans back through DecodedSink. Kept apart so the engine builds and
// tests on raw bytes alone and the decoder library plugs in at one place.

#include <cstdint>
#include <memory>
#include <string_view>

#include "dlp/engine.h"

namespace egressguard::dlp {

class DecodedSink {
 public:
  virtual ~DecodedSink() = default;
  // `bytes` of decoded layer `layer` (>= 1), produced from the original bytes
  // [orig_begin, orig_end) of the message; `linear`: byte i comes from orig_begin + i.
  virtual void OnDecoded(uint32_t layer, std::string_view bytes, uint64_t orig_begin, uint64_t orig_end,
                         bool linear) = 0;
  virtual void OnUndecodable(uint64_t orig_begin, uint64_t orig_end, std::string_view why) = 0;
  // A document of decoded layer `layer` ended; the layer's next bytes start an unrelated one.
  virtual void OnDocumentEnd(uint32_t /*layer*/) {}
  // The next bytes of `layer` come from inside this container member path ("" = none).
  virtual void OnMember(uint32_t /*layer*/, std::string_view /*path*/) {}
  // Content that needs a key to read (encrypted archive member, protected document).
  virtual void OnEncrypted(uint64_t /*orig_begin*/, uint64_t /*orig_end*/, std::string_view /*member*/,
                           std::string_view /*what*/) {}
};

class DecodeHook {
 public:
  virtual ~DecodeHook() = default;
  virtual void Feed(std::string_view raw_chunk) = 0;
  virtual void Finish() = 0;
  virtual size_t memory_bytes() const = 0;
  // Decoding stopped for good (a limit): no decoded layer gets another byte.
  virtual bool stopped() const = 0;
  // The smallest original offset of a raw byte that the decode tree has consumed and may
  // still deliver to the sink later (as decoded bytes, or as context around them), or
  // UINT64_MAX when it holds nothing. Valid after Feed; never larger than the truth
  // (smaller is safe but holds back more).
  virtual uint64_t held_from() const = 0;
};

// nullptr when decoding is off (EngineOptions::decode) or not available.
std::unique_ptr<DecodeHook> MakeDecodeHook(const ContentHint& hint, const EngineOptions& options, DecodedSink& sink);

}  // namespace egressguard::dlp
