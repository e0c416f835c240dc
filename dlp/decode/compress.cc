// Streaming decompression (zlib for gzip/deflate, libbrotli, libzstd) with bomb guards.
// Every library allocates through a counting allocator charged to the message's
// Context, so a hostile window size fails as undecodable instead of growing memory.
//
// Chunking. What a corrupt stream decodes to before its corruption must not depend on
// how the body was cut into reads. zlib hands out every byte it decoded before it reports
// an error. libbrotli keeps decoded bytes in its window until its input runs out or the
// window wraps, and gives none of them out after an error (BrotliDecoderHasMoreOutput and
// TakeOutput refuse then); libzstd forgets what it flushed in the call that fails. So
// those two are fed in slices cut at fixed offsets of the compressed stream (kSlice),
// whatever the reads, and drained after each call (Step): the library sees the same calls
// for any chunking. A read that ends inside a slice leaves its last < kSlice bytes here
// until the next read or the end of the body (held_from() accounts for them). Before a
// corruption at most what one slice decodes to is lost (for zstd, the corrupt block:
// it decodes a block whole or not at all), the same every time.

#include <zlib.h>
#define ZSTD_STATIC_LINKING_ONLY  // ZSTD_createDCtx_advanced: custom allocator
#include <brotli/decode.h>
#include <fmt/format.h>
#include <zstd.h>

#include <cstdlib>
#include <cstring>

#include "dlp/decode/decoders.h"

namespace egressguard::dlp::decode {
namespace {

constexpr size_t kOutChunk = 16 << 10;
constexpr uint64_t kBombMinOutput = 1 << 20;  // ratios below this much output are not judged
constexpr int kZstdWindowLogMax = 23;         // 8 MiB, what RFC 8878 asks decoders to support
// Compressed bytes per brotli / zstd call (see the top): small, so little output is lost
// before a corruption and a cut read leaves little behind; large enough that the per-call
// cost stays small.
constexpr size_t kSlice = 64;

class Decompressor final : public Decoder {
 public:
  Decompressor(Codec codec, Layer& out, const DocHint& out_hint)
      : codec_(codec), out_(out), ctx_(out.ctx()), buf_(new char[kOutChunk]) {
    out_.BeginDocument(out_hint);
  }

  ~Decompressor() override { Release(); }

  void Put(const Src& in) override {
    if (in.empty() || failed_ || ctx_.stopped) return;
    if (!started_) {
      started_ = true;
      start_ = in.SpanOf(0, 1).begin;
      reflected_ = start_;
      last_end_ = in.SpanOf(0, 1).end;
      if (!Init(in.bytes())) return;
    }
    Take(in);
    Flush();
  }

  void Finish() override {
    if (!cut_.empty() && !failed_ && !ctx_.stopped) DecodeCut();
    Flush();
    const bool complete = codec_ == Codec::kZstd ? zstd_frame_done_ : ended_;
    if (started_ && !failed_ && !complete && !ctx_.stopped) {
      ctx_.Undecodable({start_, last_end_}, fmt::format("truncated {} stream", CodecName(codec_)));
    }
    out_.EndDocument();
    Release();
  }

  size_t memory_bytes() const override { return sizeof(*this) + kOutChunk + cut_.memory_bytes(); }

  // Output segments span from `reflected_` (Output): input before it decodes to no more
  // than what was already emitted, so it may be forwarded; input from there on may still
  // make output, and so may the bytes of a cut slice not given to the library yet. Nothing
  // is held before the first byte (the parent holds that input), after a failure, or once
  // a stream other than gzip ended (more input only fails it); a gzip member may be
  // followed by another.
  uint64_t held_from() const override {
    if (!started_ || failed_) return kNothingHeld;
    if (ended_ && codec_ != Codec::kGzip) return kNothingHeld;
    return std::min(reflected_, cut_.orig_begin());
  }

 private:
  bool sliced() const { return codec_ == Codec::kBrotli || codec_ == Codec::kZstd; }

  // Hands `in` to the library: zlib, and any stream past its end (more bytes only fail
  // it, at once), straight; brotli and zstd in kSlice slices of the stream (see the top).
  void Take(const Src& in) {
    if (!sliced() || ended_) {
      Decode(in);
      return;
    }
    size_t pos = 0;
    if (!cut_.empty()) {  // complete the slice the last read cut
      pos = std::min(kSlice - cut_.size(), in.size());
      cut_.Append(in.Sub(0, pos));
      if (cut_.size() < kSlice) return;
      DecodeCut();
    }
    while (pos < in.size() && !failed_ && !ctx_.stopped) {
      if (ended_) {  // the stream ended inside a slice: what follows is data after it
        Decode(in.Sub(pos, in.size()));
        return;
      }
      if (in.size() - pos < kSlice) {
        cut_.Append(in.Sub(pos, in.size()));
        return;
      }
      Decode(in.Sub(pos, pos + kSlice));
      pos += kSlice;
    }
  }

  void DecodeCut() {
    Decode(cut_.src());
    cut_.Clear();
  }

  // Decodes all of `in`: a gzip member may follow the previous one; anything else after
  // the end of the stream fails it.
  void Decode(const Src& in) {
    size_t pos = 0;
    while (pos < in.size() && !failed_ && !ctx_.stopped) {
      if (ended_) {
        // gzip allows members back to back; anything else after the end is smuggled data.
        if (codec_ == Codec::kGzip && static_cast<uint8_t>(in.data()[pos]) == 0x1f && inflateReset(&z_) == Z_OK) {
          ended_ = false;
        } else {
          Fail(in, pos + 1, fmt::format("data after the end of the {} stream", CodecName(codec_)));
          return;
        }
      }
      pos = Step(in, pos);
    }
  }

  bool Init(std::string_view first) {
    ctx_ptr_ = &ctx_;
    switch (codec_) {
      case Codec::kGzip:
      case Codec::kZlib:
      case Codec::kRawDeflate:
      case Codec::kDeflate: {
        int bits = 15;
        if (codec_ == Codec::kGzip) bits = 15 + 16;
        if (codec_ == Codec::kRawDeflate) bits = -15;
        // HTTP "deflate" is meant to be zlib, but raw deflate is common in the wild.
        if (codec_ == Codec::kDeflate && !LooksLikeZlib(first)) bits = -15;
        z_ = {};
        z_.zalloc = [](voidpf o, uInt items, uInt size) -> voidpf {
          return ChargedAlloc(static_cast<Context*>(o), static_cast<size_t>(items) * size);
        };
        z_.zfree = [](voidpf, voidpf p) { ChargedFree(p); };
        z_.opaque = ctx_ptr_;
        if (inflateInit2(&z_, bits) != Z_OK) return InitFailed();
        z_live_ = true;
        return true;
      }
      case Codec::kBrotli:
        br_ = BrotliDecoderCreateInstance(
            [](void* o, size_t n) { return ChargedAlloc(static_cast<Context*>(o), n); },
            [](void*, void* p) { ChargedFree(p); }, ctx_ptr_);
        return br_ != nullptr || InitFailed();
      case Codec::kZstd: {
        ZSTD_customMem mem{[](void* o, size_t n) { return ChargedAlloc(static_cast<Context*>(o), n); },
                           [](void*, void* p) { ChargedFree(p); }, ctx_ptr_};
        zstd_ = ZSTD_createDCtx_advanced(mem);
        if (zstd_ == nullptr) return InitFailed();
        ZSTD_DCtx_setParameter(zstd_, ZSTD_d_windowLogMax, kZstdWindowLogMax);
        return true;
      }
    }
    return InitFailed();
  }

  bool InitFailed() {
    failed_ = true;
    ctx_.Undecodable({start_, last_end_}, fmt::format("{} decoder: memory limit", CodecName(codec_)));
    return false;
  }

  // Decodes from in[pos...] until the input is used up, the stream ends or fails.
  size_t Step(const Src& in, size_t pos) {
    const size_t n = in.size();
    const auto* data = reinterpret_cast<const uint8_t*>(in.data());
    while (!failed_ && !ctx_.stopped) {
      size_t produced = 0, used = 0;
      bool end = false, stalled = false;
      std::string err;
      char* const out = buf_.get() + pending_;  // after the output gathered so far
      const size_t room = kOutChunk - pending_;
      if (codec_ == Codec::kBrotli) {
        size_t avail_in = n - pos, avail_out = room;
        const uint8_t* next_in = data + pos;
        auto* next_out = reinterpret_cast<uint8_t*>(out);
        const BrotliDecoderResult r = BrotliDecoderDecompressStream(br_, &avail_in, &next_in, &avail_out, &next_out, nullptr);
        used = (n - pos) - avail_in;
        produced = room - avail_out;
        end = r == BROTLI_DECODER_RESULT_SUCCESS;
        // Out of input, libbrotli pushes out what it decoded, but only as much as fits in
        // the room given; the rest stays in its window, where an error in later input would
        // lose it (nothing is handed out after an error). Drain it first, so what comes out
        // never depends on the room.
        stalled = r == BROTLI_DECODER_RESULT_NEEDS_MORE_INPUT && !BrotliDecoderHasMoreOutput(br_);
        if (r == BROTLI_DECODER_RESULT_ERROR) err = BrotliDecoderErrorString(BrotliDecoderGetErrorCode(br_));
      } else if (codec_ == Codec::kZstd) {
        // While a block's output is still coming out (the last call filled its room),
        // offer no input: a call that finishes flushing and then fails on the next bytes
        // returns only the error, and what it flushed is lost.
        ZSTD_inBuffer ib{data + pos, zstd_draining_ ? 0 : n - pos, 0};
        ZSTD_outBuffer ob{out, room, 0};
        const size_t r = ZSTD_decompressStream(zstd_, &ob, &ib);
        used = ib.pos;
        produced = ob.pos;
        zstd_draining_ = ob.pos == ob.size;
        if (ZSTD_isError(r)) {
          err = ZSTD_getErrorName(r);
        } else {
          // r == 0: a frame is complete; another may follow in the same body.
          zstd_frame_done_ = r == 0;
          stalled = pos + ib.pos == n && ob.pos < ob.size;
        }
      } else {
        z_.next_in = const_cast<Bytef*>(data + pos);
        z_.avail_in = static_cast<uInt>(std::min<size_t>(n - pos, 1u << 30));
        z_.next_out = reinterpret_cast<Bytef*>(out);
        z_.avail_out = static_cast<uInt>(room);
        const size_t offered = z_.avail_in;
        const int r = inflate(&z_, Z_NO_FLUSH);
        used = offered - z_.avail_in;
        produced = room - z_.avail_out;
        end = r == Z_STREAM_END;
        stalled = (r == Z_OK || r == Z_BUF_ERROR) && z_.avail_in == 0 && z_.avail_out > 0;
        if (r == Z_MEM_ERROR) err = "memory limit";
        else if (r == Z_NEED_DICT) err = "needs a preset dictionary";
        else if (r != Z_OK && r != Z_STREAM_END && r != Z_BUF_ERROR) err = z_.msg ? z_.msg : "corrupt data";
        else if (r == Z_BUF_ERROR && z_.avail_in > 0) err = "no progress";
      }
      pos += used;
      in_total_ += used;
      if (pos > 0) last_end_ = std::max(last_end_, in.SpanOf(0, pos).end);
      if (produced > 0 && !Output(produced)) return n;
      // The decoder took every byte offered and gave every byte it could: whoever holds
      // the input so far can decode no more than was emitted.
      if (err.empty() && (stalled || end)) reflected_ = last_end_;
      if (!err.empty()) {
        Fail(in, pos, fmt::format("corrupt {} stream: {}", CodecName(codec_), err));
        return n;
      }
      if (end) {
        ended_ = true;
        return pos;
      }
      if (stalled || (pos == n && produced == 0)) return n;
    }
    return n;
  }

  // Takes the `produced` bytes the last call wrote after the pending ones. Output is
  // gathered across calls (a brotli or zstd slice yields a few hundred bytes) and emitted
  // when the buffer is full, before a failure is reported, and before Put or Finish
  // returns, so nothing is pending when held_from() is asked.
  bool Output(size_t produced) {
    out_total_ += produced;
    if (out_total_ >= kBombMinOutput && out_total_ / ctx_.limits.max_expansion_ratio > in_total_) {
      failed_ = true;
      Flush();  // what came before the output that tripped the ratio
      ctx_.Undecodable({start_, last_end_}, fmt::format("{} expands more than {}x (decompression bomb)",
                                                        CodecName(codec_), ctx_.limits.max_expansion_ratio));
      return false;
    }
    // Spans from the input not yet fully turned into output when the first of these bytes
    // came out: a finding maps to the compressed bytes that carried it, not to the whole
    // stream, so a streamed body is held back by about one read, not from its start.
    if (pending_ == 0) pending_from_ = reflected_;
    pending_ += produced;
    if (pending_ == kOutChunk) Flush();
    return !ctx_.stopped;
  }

  void Flush() {
    const size_t n = pending_;
    pending_ = 0;
    if (n == 0 || ctx_.stopped) return;
    SinglePiece piece(std::string_view(buf_.get(), n), {pending_from_, last_end_}, false);
    out_.Emit(piece.src());
  }

  void Fail(const Src& in, size_t pos, const std::string& why) {
    Flush();  // the bytes decoded before the corruption are scanned too
    failed_ = true;
    const uint64_t end = pos > 0 ? in.SpanOf(0, std::min(pos, in.size())).end : last_end_;
    ctx_.Undecodable({start_, std::max(end, last_end_)}, why);
  }

  void Release() {
    cut_.Clear();
    if (z_live_) inflateEnd(&z_);
    z_live_ = false;
    if (br_) BrotliDecoderDestroyInstance(br_);
    br_ = nullptr;
    if (zstd_) ZSTD_freeDCtx(zstd_);
    zstd_ = nullptr;
  }

  const Codec codec_;
  Layer& out_;
  Context& ctx_;
  void* ctx_ptr_ = nullptr;
  std::unique_ptr<char[]> buf_;
  z_stream z_{};
  bool z_live_ = false;
  BrotliDecoderState* br_ = nullptr;
  ZSTD_DCtx* zstd_ = nullptr;
  bool started_ = false, ended_ = false, failed_ = false;
  bool zstd_frame_done_ = false;  // zstd bodies may hold several frames: never "ended"
  bool zstd_draining_ = false;    // the last zstd call filled the output buffer
  uint64_t start_ = 0, last_end_ = 0;
  uint64_t reflected_ = 0;  // input before it is fully reflected in the output emitted
  size_t pending_ = 0;        // output gathered in buf_, not emitted yet (see Output)
  uint64_t pending_from_ = 0;  // reflected_ when its first byte came out
  uint64_t in_total_ = 0, out_total_ = 0;
  MappedBuffer cut_;  // brotli / zstd: the start of a slice a read cut (< kSlice bytes)
};

}  // namespace

DecoderPtr MakeDecompressor(Codec codec, Layer& out, const DocHint& out_hint) {
  return std::make_unique<Decompressor>(codec, out, out_hint);
}

const char* CodecName(Codec c) {
  switch (c) {
    case Codec::kGzip: return "gzip";
    case Codec::kDeflate: return "deflate";
    case Codec::kZlib: return "zlib";
    case Codec::kRawDeflate: return "raw deflate";
    case Codec::kBrotli: return "br";
    case Codec::kZstd: return "zstd";
  }
  return "?";
}

}  // namespace egressguard::dlp::decode
