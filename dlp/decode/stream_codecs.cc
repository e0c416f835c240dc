// The decompressors behind StreamCodec (stream_codec.h): zlib's raw inflate, liblzma's
// .xz and LZMA_Alone decoders, libbz2. Each allocates through the charged allocator and
// turns its library's return codes into kOk / kEnd / kError with a reason.

#include "dlp/decode/stream_codec.h"

#include <bzlib.h>
#include <lzma.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <cstring>

#include <fmt/format.h>

#include "dlp/decode/layer.h"

namespace egressguard::dlp::decode {

namespace {

using Status = StreamCodec::Status;
using Result = StreamCodec::Result;

Result Failed(size_t used, size_t produced, std::string why) {
  return {used, produced, Status::kError, std::move(why)};
}

// What the message may still spend on decoder state: a decoder memlimit for liblzma,
// so a 1.5 GiB dictionary fails up front (the allocator would refuse it later anyway).
uint64_t MemoryLeft(const Context& ctx) {
  return ctx.limits.max_memory_bytes > ctx.codec_bytes ? ctx.limits.max_memory_bytes - ctx.codec_bytes : 1;
}

// ---- zlib ----

class RawInflate final : public StreamCodec {
 public:
  explicit RawInflate(Context& ctx) {
    z_.zalloc = [](voidpf o, uInt items, uInt size) -> voidpf {
      return ChargedAlloc(static_cast<Context*>(o), static_cast<size_t>(items) * size);
    };
    z_.zfree = [](voidpf, voidpf p) { ChargedFree(p); };
    z_.opaque = &ctx;
    live_ = inflateInit2(&z_, -15) == Z_OK;
  }
  ~RawInflate() override {
    if (live_) inflateEnd(&z_);
  }
  bool live() const { return live_; }

  Result Code(const uint8_t* in, size_t n, uint8_t* out, size_t cap, bool) override {
    z_.next_in = const_cast<Bytef*>(in);
    z_.avail_in = static_cast<uInt>(std::min<size_t>(n, 1u << 30));
    z_.next_out = out;
    z_.avail_out = static_cast<uInt>(std::min<size_t>(cap, 1u << 30));
    const size_t offered = z_.avail_in, space = z_.avail_out;
    const int r = inflate(&z_, Z_NO_FLUSH);
    Result res{offered - z_.avail_in, space - z_.avail_out, Status::kOk, {}};
    if (r == Z_STREAM_END) res.status = Status::kEnd;
    else if (r == Z_MEM_ERROR) res = Failed(res.used, res.produced, "memory limit");
    else if (r == Z_NEED_DICT) res = Failed(res.used, res.produced, "needs a preset dictionary");
    else if (r != Z_OK && r != Z_BUF_ERROR) res = Failed(res.used, res.produced, z_.msg ? z_.msg : "corrupt data");
    else if (r == Z_BUF_ERROR && z_.avail_in > 0 && res.produced == 0) res = Failed(res.used, 0, "no progress");
    return res;
  }

  bool Reset() override { return live_ && inflateReset(&z_) == Z_OK; }

 private:
  z_stream z_{};
  bool live_ = false;
};

// ---- liblzma ----

const char* LzmaError(lzma_ret r) {
  switch (r) {
    case LZMA_MEM_ERROR:
    case LZMA_MEMLIMIT_ERROR: return "memory limit";
    case LZMA_FORMAT_ERROR: return "not a stream of this format";
    case LZMA_OPTIONS_ERROR: return "unsupported options";
    case LZMA_DATA_ERROR: return "corrupt data";
    case LZMA_BUF_ERROR: return "no progress";
    default: return "decoder error";
  }
}

class Lzma final : public StreamCodec {
 public:
  enum class Kind { kXz, kAlone, kZip };

  Lzma(Context& ctx, Kind kind, uint64_t zip_size, bool zip_end_marker)
      : ctx_(ctx), kind_(kind), zip_size_(zip_size), zip_end_marker_(zip_end_marker) {
    allocator_.alloc = [](void* o, size_t nmemb, size_t size) -> void* {
      if (size != 0 && nmemb > SIZE_MAX / size) return nullptr;
      return ChargedAlloc(static_cast<Context*>(o), nmemb * size);
    };
    allocator_.free = [](void*, void* p) { ChargedFree(p); };
    allocator_.opaque = &ctx_;
  }
  ~Lzma() override { End(); }

  // nullptr on success, else why the decoder would not start.
  const char* Start() {
    End();
    z_ = LZMA_STREAM_INIT;
    z_.allocator = &allocator_;
    const uint64_t memlimit = std::max<uint64_t>(MemoryLeft(ctx_), 1);
    const lzma_ret r = kind_ == Kind::kXz ? lzma_stream_decoder(&z_, memlimit, LZMA_CONCATENATED)
                                          : lzma_alone_decoder(&z_, memlimit);
    if (r != LZMA_OK) return LzmaError(r);
    live_ = true;
    header_.clear();
    header_fed_ = kind_ != Kind::kZip;
    return nullptr;
  }

  Result Code(const uint8_t* in, size_t n, uint8_t* out, size_t cap, bool finish) override {
    if (!live_) return Failed(0, 0, "decoder not started");
    size_t used = 0;
    if (!header_fed_) {
      // Zip's LZMA header: version (2 bytes), properties size (2 bytes, 5), properties.
      // liblzma reads them as an LZMA_Alone header, whose size field says where the
      // data ends: the member's size, or "unknown" when an end marker closes it.
      const size_t take = std::min(n, kZipHeader - header_.size());
      header_.append(reinterpret_cast<const char*>(in), take);
      used = take;
      if (header_.size() < kZipHeader) {
        if (finish) return Failed(used, 0, "truncated LZMA header");
        return {used, 0, Status::kOk, {}};
      }
      if (static_cast<uint8_t>(header_[2]) != 5 || header_[3] != 0) {
        return Failed(used, 0, "unsupported LZMA properties size");
      }
      std::array<uint8_t, 13> alone{};
      std::memcpy(alone.data(), header_.data() + 4, 5);
      const uint64_t size = zip_end_marker_ ? UINT64_MAX : zip_size_;
      for (int i = 0; i < 8; ++i) alone[5 + i] = static_cast<uint8_t>(size >> (8 * i));
      z_.next_in = alone.data();
      z_.avail_in = alone.size();
      // With output space (a header alone decodes to nothing), or it stops short of it.
      z_.next_out = out;
      z_.avail_out = cap;
      const lzma_ret r = lzma_code(&z_, LZMA_RUN);
      if (r != LZMA_OK || z_.avail_in != 0 || z_.avail_out != cap) {
        return Failed(used, 0, fmt::format("LZMA header: {} ({})", LzmaError(r), static_cast<int>(r)));
      }
      header_fed_ = true;
    }
    z_.next_in = in + used;
    z_.avail_in = n - used;
    z_.next_out = out;
    z_.avail_out = cap;
    // Only xz's concatenated reader needs LZMA_FINISH to tell a complete last stream
    // from a cut one; the others end at their own end (marker or size).
    const bool fin = finish && kind_ == Kind::kXz;
    const lzma_ret r = lzma_code(&z_, fin ? LZMA_FINISH : LZMA_RUN);
    Result res{used + (n - used) - z_.avail_in, cap - z_.avail_out, Status::kOk, {}};
    if (r == LZMA_STREAM_END) {
      res.status = Status::kEnd;
    } else if (r == LZMA_BUF_ERROR && fin) {
      // The input ended inside a stream: not an error of the data seen, a truncation the
      // caller reports.
    } else if (r != LZMA_OK) {
      res = Failed(res.used, res.produced, LzmaError(r));
    }
    return res;
  }

  bool Reset() override { return Start() == nullptr; }

 private:
  static constexpr size_t kZipHeader = 9;

  void End() {
    if (live_) lzma_end(&z_);
    live_ = false;
  }

  Context& ctx_;
  const Kind kind_;
  const uint64_t zip_size_;
  const bool zip_end_marker_;
  lzma_allocator allocator_{};
  lzma_stream z_ = LZMA_STREAM_INIT;
  bool live_ = false;
  std::string header_;
  bool header_fed_ = true;
};

// ---- libbz2 ----

const char* Bz2Error(int r) {
  switch (r) {
    case BZ_MEM_ERROR: return "memory limit";
    case BZ_DATA_ERROR_MAGIC: return "not a bzip2 stream";
    case BZ_DATA_ERROR: return "corrupt data";
    default: return "decoder error";
  }
}

class Bzip2 final : public StreamCodec {
 public:
  Bzip2(Context& ctx, bool concatenated) : ctx_(ctx), concatenated_(concatenated) {}
  ~Bzip2() override { End(); }

  const char* Start() {
    End();
    z_ = bz_stream{};
    z_.bzalloc = [](void* o, int n, int m) -> void* {
      if (n < 0 || m < 0) return nullptr;
      return ChargedAlloc(static_cast<Context*>(o), static_cast<size_t>(n) * static_cast<size_t>(m));
    };
    z_.bzfree = [](void*, void* p) { ChargedFree(p); };
    z_.opaque = &ctx_;
    // small = 0: the fast decoder (up to ~3.7 MB for a 900k block), charged.
    const int r = BZ2_bzDecompressInit(&z_, 0, 0);
    if (r != BZ_OK) return Bz2Error(r);
    live_ = true;
    between_ = false;
    return nullptr;
  }

  Result Code(const uint8_t* in, size_t n, uint8_t* out, size_t cap, bool finish) override {
    if (between_ && n > 0) {
      // pbzip2 and lbzip2 write one stream per block, one after the other: the next
      // must be a bzip2 stream too (anything else is data after the end).
      if (const char* why = Start()) return Failed(0, 0, why);
    }
    if (between_) return {0, 0, finish ? Status::kEnd : Status::kOk, {}};
    if (!live_) return Failed(0, 0, "decoder not started");
    z_.next_in = const_cast<char*>(reinterpret_cast<const char*>(in));
    z_.avail_in = static_cast<unsigned>(std::min<size_t>(n, 1u << 30));
    z_.next_out = reinterpret_cast<char*>(out);
    z_.avail_out = static_cast<unsigned>(std::min<size_t>(cap, 1u << 30));
    const size_t offered = z_.avail_in, space = z_.avail_out;
    const int r = BZ2_bzDecompress(&z_);
    Result res{offered - z_.avail_in, space - z_.avail_out, Status::kOk, {}};
    if (r == BZ_STREAM_END) {
      End();
      ++streams_;
      if (!concatenated_) {
        res.status = Status::kEnd;
        return res;
      }
      between_ = true;
      if (finish && res.used == n) res.status = Status::kEnd;
      return res;
    }
    if (r != BZ_OK) {
      res = Failed(res.used, res.produced,
                   r == BZ_DATA_ERROR_MAGIC && streams_ > 0 ? "data after the end of the bzip2 stream" : Bz2Error(r));
      End();
    }
    return res;
  }

  bool Reset() override {
    streams_ = 0;
    return Start() == nullptr;
  }

 private:
  void End() {
    if (live_) BZ2_bzDecompressEnd(&z_);
    live_ = false;
  }

  Context& ctx_;
  const bool concatenated_;
  bz_stream z_{};
  bool live_ = false;
  bool between_ = false;  // a stream ended; the next may follow
  uint64_t streams_ = 0;  // streams ended so far
};

template <typename C>
std::unique_ptr<StreamCodec> Started(std::unique_ptr<C> c, std::string* error) {
  if (const char* why = c->Start()) {
    *error = why;
    return nullptr;
  }
  return c;
}

}  // namespace

std::unique_ptr<StreamCodec> MakeXzCodec(Context& ctx, std::string* error) {
  return Started(std::make_unique<Lzma>(ctx, Lzma::Kind::kXz, 0, false), error);
}

std::unique_ptr<StreamCodec> MakeLzmaAloneCodec(Context& ctx, std::string* error) {
  return Started(std::make_unique<Lzma>(ctx, Lzma::Kind::kAlone, 0, false), error);
}

std::unique_ptr<StreamCodec> MakeZipLzmaCodec(Context& ctx, uint64_t size, bool end_marker, std::string* error) {
  return Started(std::make_unique<Lzma>(ctx, Lzma::Kind::kZip, size, end_marker), error);
}

std::unique_ptr<StreamCodec> MakeBzip2Codec(Context& ctx, bool concatenated, std::string* error) {
  return Started(std::make_unique<Bzip2>(ctx, concatenated), error);
}

std::unique_ptr<StreamCodec> MakeRawInflateCodec(Context& ctx, std::string* error) {
  auto c = std::make_unique<RawInflate>(ctx);
  if (!c->live()) {
    *error = "inflate memory limit";
    return nullptr;
  }
  return c;
}

}  // namespace egressguard::dlp::decode
