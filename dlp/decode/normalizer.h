#pragma once
// Content normalization before scanning: turns one message's raw bytes into decoded
// layers (percent / JSON / quoted-printable escapes, base64 runs, multipart parts,
// gzip / deflate / br / zstd bodies) as a stream, with bounded memory, and maps every
// decoded byte back to the span of ORIGINAL bytes that encoded it.
//
// Layers. Layer 0 is the raw message (the engine scans it itself; it is never emitted).
// Every other layer id names one decoder slot in a small tree: each layer has at most
// two children, a "transform" (the decoder the layer's content calls for: a
// decompressor, multipart, or the escape decoder) and a "base64 runs" finder. A slot
// gets its id the first time it emits, ids count up from 1 and never exceed kMaxLayers,
// so the engine holds at most kMaxLayers streams. Decoding stops at limits.max_depth
// (base64 inside JSON inside gzip is depth 3). One layer id is one continuous stream:
// when a slot decodes several separate "documents" (base64 runs, multipart parts,
// windows of escaped text) their outputs follow each other with one '\n' between them.
//
// Offsets. DecodedSegment.orig_* always cover the ORIGINAL bytes that produced the
// segment, through any nesting. A segment with linear == true maps byte i to original
// byte orig_begin + i; otherwise the whole segment maps to [orig_begin, orig_end). A
// match over layer bytes [a, b) therefore covers the union of the segments holding a
// and b - 1. Escapes map exactly (a `\u0040` segment covers those 6 bytes), base64 in
// groups of at most 64 characters, decompressed data to [start of the compressed
// stream, end of the compressed input that produced it).
//
// Undecodable input (corrupt or truncated compressed data, a decompression bomb, a
// limit) is reported once per decoder through OnUndecodable and that decoder stops;
// the rest of the message is still decoded where it can be. Never throws.
//
// Memory. A Normalizer holds at most limits.max_memory_bytes (16 MiB by default) of
// decompressor state, charged through a counting allocator (zlib ~44 KiB, zstd its window
// (<= 8 MiB) + ~160 KiB, brotli its window; an allocation beyond the budget fails that
// decoder as undecodable), plus bounded buffers: per layer an 80-byte sniff prefix, 256
// bytes of escape context, < 64 bytes of base64 state, and for a decompressor a 16 KiB
// output chunk or for multipart a 4 KiB slice + <= 16 KiB of part headers; < 256 KiB in
// all. Measured: 1.4 KiB over plain text, 4.5 KiB over JSON, 59 KiB over a gzip body.
// memory_bytes() says how much right now.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace egressguard::dlp::decode {

struct ContentHintLite {
  std::string content_type;      // e.g. "multipart/form-data; boundary=x"
  std::string content_encoding;  // e.g. "gzip, br" (applied in that order)
  bool is_url = false;           // the request target: percent-decode, '+' is a space
};

struct DecodedSegment {
  uint32_t layer;          // >= 1
  std::string_view bytes;  // valid only during the OnSegment call
  uint64_t orig_begin, orig_end;
  bool linear = false;     // byte i of bytes comes from original byte orig_begin + i
};

class SegmentSink {
 public:
  virtual ~SegmentSink() = default;
  virtual void OnSegment(const DecodedSegment&) = 0;
  virtual void OnUndecodable(uint64_t orig_begin, uint64_t orig_end, std::string_view why) = 0;
  // A document of `layer` ended (its next one, if any, is unrelated text): what the sink
  // still had pending for that layer is final.
  virtual void OnDocumentEnd(uint32_t /*layer*/) {}
  // The segments of `layer` that follow come from inside this container member path
  // ("upload.zip" members are named "customers.csv", nested ones "inner.zip!a.csv"), or
  // from outside any container when `path` is empty. Called only when it changes.
  virtual void OnMember(uint32_t /*layer*/, std::string_view /*path*/) {}
  // Content that cannot be read without a key: an encrypted archive member, a
  // password-protected document. `member` names where ("" outside a container).
  virtual void OnEncrypted(uint64_t /*orig_begin*/, uint64_t /*orig_end*/, std::string_view /*member*/,
                           std::string_view /*what*/) {}
};

struct TextRunConfig;  // text_runs.h

struct NormalizerLimits {
  uint32_t max_depth = 3;
  uint64_t max_decoded_bytes = 64ull << 20;  // all layers together; beyond it decoding stops
  // The limit grows by this many decoded bytes per raw byte fed (0: a fixed limit). Work
  // that is linear in the input (base64, escapes, multipart, stored members) then never
  // reaches it however large the upload, while a bomb, which is not, still does.
  uint32_t decoded_bytes_per_input_byte = 0;
  uint32_t max_expansion_ratio = 100;        // per decompressor, once it produced >= 1 MiB
  uint64_t max_memory_bytes = 16ull << 20;   // decompressor state of the whole Normalizer
  // Binary documents of decoded layers go to the sink reduced to the stretches where the
  // engine's patterns can match (text_runs.h); null: every decoded byte goes.
  std::shared_ptr<const TextRunConfig> text_runs;
};

// Most layer ids a Normalizer hands out (see above).
inline constexpr uint32_t kMaxLayers = 8;

class Normalizer {
 public:
  Normalizer(const ContentHintLite& hint, const NormalizerLimits& limits, SegmentSink& sink);
  ~Normalizer();
  Normalizer(const Normalizer&) = delete;
  Normalizer& operator=(const Normalizer&) = delete;

  void Feed(std::string_view raw_chunk);  // any chunk size, incl. 0
  void Finish();                          // flushes; reports truncated streams
  size_t memory_bytes() const;            // current bytes held (buffers + decoder state)
  // The smallest original offset a segment delivered from now on may have (orig_begin),
  // or UINT64_MAX when nothing is held: original bytes below min(held_from(), bytes fed)
  // can be forwarded. A few comparisons per layer, no allocation: fine after every
  // Feed. Held: undecided sniff prefixes, cut escapes, the lazy unescaper's literal tail
  // (before-context of a next escape, <= 256 bytes), unflushed escape and base64 groups,
  // base64 candidates under 16 characters, multipart look-behind and part headers, and
  // a compressed stream's input not yet fully turned into output (its output spans
  // start there).
  uint64_t held_from() const;
  // Decoding stopped for good (the decoded-size limit): no layer gets another byte.
  bool stopped() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace egressguard::dlp::decode
