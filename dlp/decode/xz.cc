// .xz streams through liblzma's stream decoder, with the same guards as the other
// decompressors (compress.cc): state allocated through the message's memory budget (and
// a decoder memlimit from what is left of it, so a 64 MiB dictionary fails as
// undecodable instead of growing memory), a decompression-bomb ratio, truncation and
// trailing garbage reported as undecodable. Also the charged allocator the archive
// decoders share.

#include <lzma.h>
#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "dlp/decode/decoders.h"

namespace egressguard::dlp::decode {

namespace {

constexpr size_t kOutChunk = 16 << 10;
// liblzma may keep back decoded bytes when a call ends in a corruption, and how many
// depends on where the input was cut. So it is fed the compressed stream in slices cut
// at fixed offsets, whatever the reads (as compress.cc feeds brotli and zstd): it sees
// the same calls, and gives the same output, for any chunking. A read that ends inside a
// slice leaves it here until the next read or the end of the body.
constexpr size_t kSlice = 256;
constexpr uint64_t kBombMinOutput = 1 << 20;  // as compress.cc: ratios below this output are not judged

const char* LzmaError(lzma_ret r) {
  switch (r) {
    case LZMA_MEM_ERROR:
    case LZMA_MEMLIMIT_ERROR: return "memory limit";
    case LZMA_FORMAT_ERROR: return "not an xz stream";
    case LZMA_OPTIONS_ERROR: return "unsupported options";
    case LZMA_DATA_ERROR: return "corrupt data";
    case LZMA_BUF_ERROR: return "no progress";
    default: return "decoder error";
  }
}

class XzDecoder final : public Decoder {
 public:
  XzDecoder(Layer& out, const DocHint& out_hint)
      : out_(out), ctx_(out.ctx()), probe_(out), buf_(new char[kOutChunk]) {
    out_.BeginDocument(out_hint);
    probe_.Begin();
  }

  ~XzDecoder() override { Release(); }

  void Put(const Src& in) override {
    if (in.empty() || failed_ || ctx_.stopped) return;
    if (!started_) {
      started_ = true;
      start_ = in.SpanOf(0, 1).begin;
      reflected_ = start_;
      last_end_ = in.SpanOf(0, 1).end;
      if (!Init()) return;
    }
    size_t pos = 0;
    if (!cut_.empty()) {  // complete the slice the last read cut
      pos = std::min(kSlice - cut_.size(), in.size());
      cut_.Append(in.Sub(0, pos));
      if (cut_.size() < kSlice) return;
      DecodeCut();
    }
    while (pos < in.size() && !failed_ && !ctx_.stopped) {
      if (in.size() - pos < kSlice) {
        cut_.Append(in.Sub(pos, in.size()));
        return;
      }
      const Src slice = in.Sub(pos, pos + kSlice);
      Step(&slice, LZMA_RUN);
      pos += kSlice;
    }
  }

  void Finish() override {
    if (!cut_.empty() && !failed_ && !ctx_.stopped && live_) DecodeCut();
    cut_.Clear();
    if (started_ && !failed_ && !ctx_.stopped && live_) {
      // LZMA_CONCATENATED: only LZMA_FINISH tells a complete last stream from a cut one.
      Step(nullptr, LZMA_FINISH);
      if (!failed_ && !ended_ && !ctx_.stopped) ctx_.Undecodable({start_, last_end_}, "truncated xz stream");
    }
    probe_.End();
    out_.EndDocument();
    Release();
  }

  size_t memory_bytes() const override {
    return sizeof(*this) + kOutChunk + probe_.memory_bytes() + cut_.memory_bytes();
  }

  // As the Decompressor's (compress.cc): output spans start at reflected_, and the cut
  // slice is input not yet decoded.
  uint64_t held_from() const override {
    if (!started_ || failed_ || ended_) return kNothingHeld;
    return std::min(reflected_, cut_.orig_begin());
  }

 private:
  bool Init() {
    allocator_.alloc = [](void* o, size_t nmemb, size_t size) -> void* {
      if (size != 0 && nmemb > SIZE_MAX / size) return nullptr;
      return ChargedAlloc(static_cast<Context*>(o), nmemb * size);
    };
    allocator_.free = [](void*, void* p) { ChargedFree(p); };
    allocator_.opaque = &ctx_;
    z_ = LZMA_STREAM_INIT;
    z_.allocator = &allocator_;
    // The dictionary is the decoder's big allocation: refuse it up front past what the
    // message may still spend (the allocator would refuse it anyway, later).
    const uint64_t left = ctx_.limits.max_memory_bytes > ctx_.codec_bytes
                              ? ctx_.limits.max_memory_bytes - ctx_.codec_bytes
                              : 1;
    const lzma_ret r = lzma_stream_decoder(&z_, std::max<uint64_t>(left, 1), LZMA_CONCATENATED);
    if (r != LZMA_OK) {
      failed_ = true;
      ctx_.Undecodable({start_, last_end_}, fmt::format("xz decoder: {}", LzmaError(r)));
      return false;
    }
    live_ = true;
    return true;
  }

  void DecodeCut() {
    const Src cut = cut_.src();
    Step(&cut, LZMA_RUN);
    cut_.Clear();
  }

  // Decodes all of *in (or, with LZMA_FINISH and no input, what the decoder still has).
  void Step(const Src* in, lzma_action action) {
    const size_t n = in ? in->size() : 0;
    size_t pos = 0;
    while (!failed_ && !ctx_.stopped && !ended_) {
      z_.next_in = in ? reinterpret_cast<const uint8_t*>(in->data()) + pos : nullptr;
      z_.avail_in = n - pos;
      z_.next_out = reinterpret_cast<uint8_t*>(buf_.get());
      z_.avail_out = kOutChunk;
      const lzma_ret r = lzma_code(&z_, action);
      const size_t used = (n - pos) - z_.avail_in;
      const size_t produced = kOutChunk - z_.avail_out;
      pos += used;
      in_total_ += used;
      if (in && pos > 0) last_end_ = std::max(last_end_, in->SpanOf(0, pos).end);
      if (produced > 0 && !Output(produced)) return;
      const bool ok = r == LZMA_OK || r == LZMA_STREAM_END;
      // Every byte offered taken and every byte it could give given: the input so far
      // decodes to no more than was emitted.
      const bool stalled = ok && z_.avail_in == 0 && z_.avail_out > 0;
      if (ok && (stalled || r == LZMA_STREAM_END)) reflected_ = last_end_;
      if (r == LZMA_STREAM_END) {
        ended_ = true;
        if (pos < n) Fail(in->SpanOf(0, n).end, "data after the end of the xz stream");
        return;
      }
      if (!ok) {
        // LZMA_BUF_ERROR under LZMA_FINISH: the input ended inside a stream (Finish says so).
        if (r == LZMA_BUF_ERROR && action == LZMA_FINISH) return;
        Fail(last_end_, fmt::format("corrupt xz stream: {}", LzmaError(r)));
        return;
      }
      if (stalled) return;
    }
  }

  bool Output(size_t produced) {
    out_total_ += produced;
    if (out_total_ >= kBombMinOutput && out_total_ / ctx_.limits.max_expansion_ratio > in_total_) {
      Fail(last_end_, fmt::format("xz expands more than {}x (decompression bomb)", ctx_.limits.max_expansion_ratio));
      return false;
    }
    SinglePiece piece(std::string_view(buf_.get(), produced), {reflected_, last_end_}, false);
    probe_.Put(piece.src());
    out_.Emit(piece.src());
    return !ctx_.stopped;
  }

  void Fail(uint64_t end, const std::string& why) {
    failed_ = true;
    ctx_.Undecodable({start_, std::max(end, last_end_)}, why);
    Release();
  }

  void Release() {
    if (live_) lzma_end(&z_);
    live_ = false;
  }

  Layer& out_;
  Context& ctx_;
  DepthLimitProbe probe_;
  std::unique_ptr<char[]> buf_;
  lzma_allocator allocator_{};
  lzma_stream z_ = LZMA_STREAM_INIT;
  MappedBuffer cut_;  // the start of a slice a read cut (< kSlice bytes)
  bool live_ = false, started_ = false, ended_ = false, failed_ = false;
  uint64_t start_ = 0, last_end_ = 0, reflected_ = 0;
  uint64_t in_total_ = 0, out_total_ = 0;
};

}  // namespace

DecoderPtr MakeXz(Layer& out, const DocHint& out_hint) { return std::make_unique<XzDecoder>(out, out_hint); }

}  // namespace egressguard::dlp::decode
