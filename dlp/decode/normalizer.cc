#include "dlp/decode/normalizer.h"

#include "dlp/decode/decoders.h"
#include "dlp/decode/layer.h"

namespace egressguard::dlp::decode {

struct Normalizer::Impl {
  Impl(const NormalizerLimits& limits, SegmentSink& sink) : ctx(limits, sink), root(ctx, 0) {}
  Context ctx;
  Layer root;
  uint64_t offset = 0;
  bool finished = false;
};

Normalizer::Normalizer(const ContentHintLite& hint, const NormalizerLimits& limits, SegmentSink& sink)
    : impl_(std::make_unique<Impl>(limits, sink)) {
  DocHint h;
  h.encodings = ParseContentEncoding(hint.content_encoding, &h.unsupported_encoding);
  h.content_type = hint.content_type;
  h.is_url = hint.is_url;
  impl_->root.BeginDocument(h);
}

Normalizer::~Normalizer() = default;

void Normalizer::Feed(std::string_view raw_chunk) {
  if (impl_->finished || raw_chunk.empty()) return;
  const uint64_t at = impl_->offset;
  impl_->offset += raw_chunk.size();
  impl_->ctx.input_bytes += raw_chunk.size();
  SinglePiece piece(raw_chunk, {at, at + raw_chunk.size()}, true);
  impl_->root.Emit(piece.src(), /*to_sink=*/false);
}

void Normalizer::Finish() {
  if (impl_->finished) return;
  impl_->finished = true;
  impl_->root.EndDocument();
}

uint64_t Normalizer::held_from() const {
  // Finish flushed everything; a stopped context delivers nothing more.
  if (impl_->finished || impl_->ctx.stopped) return kNothingHeld;
  return impl_->root.held_from();
}

bool Normalizer::stopped() const { return impl_->ctx.stopped; }

size_t Normalizer::memory_bytes() const { return impl_->root.memory_bytes() + impl_->ctx.codec_bytes; }

}  // namespace egressguard::dlp::decode
