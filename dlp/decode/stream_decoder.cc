// Compressed files that are not HTTP content codings (.xz, .lzma, .bz2, and so tar.xz
// and tar.bz2) through their StreamCodec (stream_codec.h), with the same guards as the
// content-coding decompressors (compress.cc): state allocated through the message's
// memory budget (liblzma also gets a memlimit from what is left of it, so a 64 MiB
// dictionary fails as undecodable instead of growing memory), a decompression-bomb
// ratio, truncation and trailing garbage reported as undecodable.

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "dlp/decode/decoders.h"
#include "dlp/decode/stream_codec.h"

namespace egressguard::dlp::decode {

namespace {

constexpr size_t kOutChunk = 16 << 10;
// A codec may keep back decoded bytes when a call ends in a corruption, and how many
// depends on where the input was cut. So it is fed the compressed stream in slices cut
// at fixed offsets, whatever the reads (as compress.cc feeds brotli and zstd): it sees
// the same calls, and gives the same output, for any chunking. A read that ends inside a
// slice leaves it here until the next read or the end of the body.
constexpr size_t kSlice = 256;
constexpr uint64_t kBombMinOutput = 1 << 20;  // as compress.cc: ratios below this output are not judged

const char* FormatName(StreamFormat f) {
  switch (f) {
    case StreamFormat::kXz: return "xz";
    case StreamFormat::kLzma: return "lzma";
    case StreamFormat::kBzip2: return "bzip2";
  }
  return "compressed";
}

class StreamDecoder final : public Decoder {
 public:
  StreamDecoder(StreamFormat format, Layer& out, const DocHint& out_hint)
      : format_(format), name_(FormatName(format)), out_(out), ctx_(out.ctx()), probe_(out),
        buf_(new uint8_t[kOutChunk]) {
    out_.BeginDocument(out_hint);
    probe_.Begin();
  }

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
      DecodeCut(false);
    }
    while (pos < in.size() && !failed_ && !ctx_.stopped && !ended_) {
      if (in.size() - pos < kSlice) {
        cut_.Append(in.Sub(pos, in.size()));
        return;
      }
      const Src slice = in.Sub(pos, pos + kSlice);
      Step(&slice, false);
      pos += kSlice;
    }
    if (ended_ && pos < in.size() && !failed_) Fail(in.SpanOf(0, in.size()).end, TrailingData());
  }

  void Finish() override {
    if (!cut_.empty() && !failed_ && !ctx_.stopped && codec_) DecodeCut(true);
    cut_.Clear();
    if (started_ && !failed_ && !ctx_.stopped && codec_ && !ended_) {
      Step(nullptr, true);
      if (!failed_ && !ended_ && !ctx_.stopped) {
        ctx_.Undecodable({start_, last_end_}, fmt::format("truncated {} stream", name_));
      }
    }
    probe_.End();
    out_.EndDocument();
    codec_.reset();
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
    std::string why;
    switch (format_) {
      case StreamFormat::kXz: codec_ = MakeXzCodec(ctx_, &why); break;
      case StreamFormat::kLzma: codec_ = MakeLzmaAloneCodec(ctx_, &why); break;
      case StreamFormat::kBzip2: codec_ = MakeBzip2Codec(ctx_, /*concatenated=*/true, &why); break;
    }
    if (!codec_) {
      failed_ = true;
      ctx_.Undecodable({start_, last_end_}, fmt::format("{} decoder: {}", name_, why));
      return false;
    }
    return true;
  }

  std::string TrailingData() const { return fmt::format("data after the end of the {} stream", name_); }

  void DecodeCut(bool finish) {
    const Src cut = cut_.src();
    Step(&cut, finish);
    cut_.Clear();
  }

  // Decodes all of *in (or, with finish and no input, what the codec still has).
  void Step(const Src* in, bool finish) {
    const size_t n = in ? in->size() : 0;
    size_t pos = 0;
    while (!failed_ && !ctx_.stopped && !ended_) {
      const auto* data = in ? reinterpret_cast<const uint8_t*>(in->data()) : nullptr;
      StreamCodec::Result r = codec_->Code(data ? data + pos : nullptr, n - pos, buf_.get(), kOutChunk, finish);
      pos += r.used;
      in_total_ += r.used;
      if (in && pos > 0) last_end_ = std::max(last_end_, in->SpanOf(0, pos).end);
      if (r.produced > 0 && !Output(r.produced)) return;
      if (r.status == StreamCodec::Status::kError) {
        Fail(last_end_, fmt::format("corrupt {} stream: {}", name_, r.error));
        return;
      }
      // Every byte offered taken and every byte it could give given: the input so far
      // decodes to no more than was emitted.
      const bool stalled = pos == n && r.produced < kOutChunk;
      if (stalled || r.status == StreamCodec::Status::kEnd) reflected_ = last_end_;
      if (r.status == StreamCodec::Status::kEnd) {
        ended_ = true;
        if (pos < n) Fail(in->SpanOf(0, n).end, TrailingData());
        return;
      }
      if (stalled) return;
    }
  }

  bool Output(size_t produced) {
    out_total_ += produced;
    if (out_total_ >= kBombMinOutput && out_total_ / ctx_.limits.max_expansion_ratio > in_total_) {
      Fail(last_end_, fmt::format("{} expands more than {}x (decompression bomb)", name_, ctx_.limits.max_expansion_ratio));
      return false;
    }
    SinglePiece piece(std::string_view(reinterpret_cast<const char*>(buf_.get()), produced), {reflected_, last_end_},
                      false);
    probe_.Put(piece.src());
    out_.Emit(piece.src());
    return !ctx_.stopped;
  }

  void Fail(uint64_t end, const std::string& why) {
    failed_ = true;
    ctx_.Undecodable({start_, std::max(end, last_end_)}, why);
    codec_.reset();
  }

  const StreamFormat format_;
  const char* const name_;
  Layer& out_;
  Context& ctx_;
  DepthLimitProbe probe_;
  std::unique_ptr<uint8_t[]> buf_;
  std::unique_ptr<StreamCodec> codec_;
  MappedBuffer cut_;  // the start of a slice a read cut (< kSlice bytes)
  bool started_ = false, ended_ = false, failed_ = false;
  uint64_t start_ = 0, last_end_ = 0, reflected_ = 0;
  uint64_t in_total_ = 0, out_total_ = 0;
};

}  // namespace

DecoderPtr MakeStreamDecoder(StreamFormat format, Layer& out, const DocHint& out_hint) {
  return std::make_unique<StreamDecoder>(format, out, out_hint);
}

}  // namespace egressguard::dlp::decode
