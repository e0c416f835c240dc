#include "dlp/decode_bridge.h"

#include "dlp/decode/normalizer.h"

namespace egressguard::dlp {

namespace {

// Adapts the decoder library's Normalizer to the engine's DecodedSink.
class NormalizerHook final : public DecodeHook, public decode::SegmentSink {
 public:
  NormalizerHook(const ContentHint& hint, const EngineOptions& options, DecodedSink& sink)
      : sink_(sink), normalizer_(Lite(hint), Limits(options), *this) {}

  // DecodeHook
  void Feed(std::string_view raw_chunk) override { normalizer_.Feed(raw_chunk); }
  void Finish() override { normalizer_.Finish(); }
  size_t memory_bytes() const override { return normalizer_.memory_bytes(); }
  uint64_t held_from() const override { return normalizer_.held_from(); }
  bool stopped() const override { return normalizer_.stopped(); }

  // decode::SegmentSink
  void OnSegment(const decode::DecodedSegment& s) override {
    sink_.OnDecoded(s.layer, s.bytes, s.orig_begin, s.orig_end, s.linear);
  }
  void OnUndecodable(uint64_t orig_begin, uint64_t orig_end, std::string_view why) override {
    sink_.OnUndecodable(orig_begin, orig_end, why);
  }
  void OnDocumentEnd(uint32_t layer) override { sink_.OnDocumentEnd(layer); }
  void OnMember(uint32_t layer, std::string_view path) override { sink_.OnMember(layer, path); }
  void OnEncrypted(uint64_t orig_begin, uint64_t orig_end, std::string_view member, std::string_view what) override {
    sink_.OnEncrypted(orig_begin, orig_end, member, what);
  }

 private:
  static decode::ContentHintLite Lite(const ContentHint& h) {
    return decode::ContentHintLite{h.content_type, h.content_encoding, h.is_url};
  }
  static decode::NormalizerLimits Limits(const EngineOptions& o) {
    decode::NormalizerLimits l;
    l.max_depth = o.max_decode_depth;
    l.max_decoded_bytes = o.max_decoded_bytes;
    l.decoded_bytes_per_input_byte = o.decoded_bytes_per_input_byte;
    l.max_expansion_ratio = o.max_expansion_ratio;
    l.text_runs = o.filter_binary ? o.text_runs : nullptr;
    return l;
  }

  DecodedSink& sink_;
  decode::Normalizer normalizer_;
};

}  // namespace

std::unique_ptr<DecodeHook> MakeDecodeHook(const ContentHint& hint, const EngineOptions& options, DecodedSink& sink) {
  if (!options.decode) return nullptr;
  return std::make_unique<NormalizerHook>(hint, options, sink);
}

}  // namespace egressguard::dlp
