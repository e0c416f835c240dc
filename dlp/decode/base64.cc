// Base64: runs found anywhere in a layer (Base64Finder) and whole bodies in base64
// (multipart Content-Transfer-Encoding). Runs are found 64 bytes at a time from a mask
// of base64 characters, and their characters decoded 32 at a time (dlp/decode/simd.h:
// AVX2 with a portable twin). Decoded bytes leave in batches of up to 16 KiB, one Src
// whose runs are the 64-character segments, so the layers below get few large Puts
// instead of one per segment, while the segments (and their spans) stay as they were.

#include <algorithm>
#include <array>
#include <bit>
#include <cstdint>
#include <fmt/format.h>

#include "dlp/decode/decoders.h"
#include "dlp/decode/hex_runs.h"
#include "dlp/decode/simd.h"

namespace egressguard::dlp::decode {
namespace {

constexpr size_t kMinRun = 16;
constexpr uint8_t kNot = simd::kNotBase64;
constexpr const std::array<uint8_t, 256>& kTable = simd::kBase64Values;

inline bool IsB64(char c) { return kTable[static_cast<uint8_t>(c)] != kNot; }

// Bit i set when p[i] is a base64 character, for 64 bytes.
inline uint64_t Mask64(const char* p, bool avx2) { return simd::Base64Mask64(p, avx2); }

// Bit j: characters j..j+15 of a block with base64 mask `m` are all base64.
uint64_t RunStarts(uint64_t m) {
  static_assert(kMinRun == 16, "RunStarts erodes by 16");
  uint64_t x = m & (m >> 1);
  x &= x >> 2;
  x &= x >> 4;
  x &= x >> 8;
  return x;
}

// Start of the first run of >= kMinRun base64 characters in d[i, n), or n when there is
// none; then *suffix is where the trailing (shorter) base64 run at the end starts.
size_t FindRun(const char* d, size_t i, size_t n, size_t* suffix, bool avx2) {
  size_t run = 0;  // base64 characters just before pos
  size_t pos = i;
  for (; pos + 64 <= n; pos += 64) {
    const uint64_t m = Mask64(d + pos, avx2);
    if (run + static_cast<size_t>(std::countr_one(m)) >= kMinRun) return pos - run;
    if (uint64_t x = RunStarts(m); x != 0) return pos + static_cast<size_t>(std::countr_zero(x));
    run = static_cast<size_t>(std::countl_one(m));
  }
  // The last < 64 bytes, on a zero-padded copy ('\0' is no base64 character): decoded
  // layers arrive in segments shorter than 64 bytes, and a byte-by-byte loop over random
  // bytes mispredicts a branch on every other one.
  if (pos < n) {
    const size_t t = n - pos;
    char block[64] = {};
    std::copy(d + pos, d + n, block);
    const uint64_t m = Mask64(block, avx2);
    if (run + static_cast<size_t>(std::countr_one(m)) >= kMinRun) return pos - run;
    if (uint64_t x = RunStarts(m); x != 0) return pos + static_cast<size_t>(std::countr_zero(x));
    // The base64 run that ends the tail (it may go on from before it).
    const auto trailing = static_cast<size_t>(std::countl_one(m << (64 - t)));
    run = trailing == t ? run + t : trailing;
  }
  *suffix = n - run;
  return n;
}

// Real base64 of 12+ bytes practically always mixes upper and lower case; identifiers,
// digit strings (card numbers!), hex hashes and dashed rules do not.
bool PlausibleRun(std::string_view first16) {
  bool upper = false, lower = false;
  for (char c : first16) {
    upper |= (c >= 'A' && c <= 'Z');
    lower |= (c >= 'a' && c <= 'z');
  }
  return upper && lower;
}

bool AllHex(std::string_view s) { return std::all_of(s.begin(), s.end(), IsHexDigit); }

OrigSpan Union(OrigSpan a, OrigSpan b) { return {std::min(a.begin, b.begin), std::max(a.end, b.end)}; }

inline void DecodeGroup(const uint8_t* v, char* out) {
  out[0] = static_cast<char>((v[0] << 2) | (v[1] >> 4));
  out[1] = static_cast<char>(((v[1] & 0xF) << 4) | (v[2] >> 2));
  out[2] = static_cast<char>(((v[2] & 0x3) << 6) | v[3]);
}

// End of the base64 stretch at d[pos, n).
inline size_t B64Extent(const char* d, size_t pos, size_t n, bool avx2) {
  size_t q = pos;
  for (; q + 64 <= n; q += 64) {
    const uint64_t m = Mask64(d + q, avx2);
    if (m != ~uint64_t{0}) return q + static_cast<size_t>(std::countr_one(m));
  }
  while (q < n && IsB64(d[q])) ++q;
  return q;
}

// Turns base64 characters into bytes, 4 -> 3, in segments of 16 groups (48 bytes), each
// mapped to the span of its 64 characters. Segments are counted from the start of the
// base64 text, so they (and their spans) come out the same however the input was
// chunked. Complete segments collect in one buffer and go to the layer together: at the
// end of each Put (Emit), when 16 KiB are waiting, and at the end of the text (Flush).
class GroupDecoder {
 public:
  GroupDecoder(Layer& out, bool avx2) : out_(out), avx2_(avx2) {}

  // s[a, b) are all base64 characters.
  void Chars(const Src& s, size_t a, size_t b) {
    const char* d = s.data();
    // Finish a group begun earlier, one character at a time.
    while (n_ > 0 && a < b) {
      v_[n_++] = kTable[static_cast<uint8_t>(d[a])];
      partial_ = Union(partial_, s.SpanOf(a, a + 1));
      ++a;
      if (n_ == 4) {
        char bytes[3];
        DecodeGroup(v_, bytes);
        Add(bytes, 3, partial_);
        n_ = 0;
        has_partial_ = false;
      }
    }
    // Whole groups in bulk, straight into the buffer; the span of each segment piece
    // is that of its characters.
    if (const size_t groups = (b - a) / 4; groups > 0) {
      const size_t at = buf_.size();
      buf_.resize(at + 3 * groups);
      simd::DecodeBase64Groups(d + a, groups, buf_.data() + at, avx2_);
      for (size_t g = 0; g < groups;) {
        const size_t take = std::min(groups - g, (kSegment - seg_bytes_) / 3);
        Extend(3 * take, s.SpanOf(a + 4 * g, a + 4 * (g + take)));
        g += take;
      }
      a += 4 * groups;
      if (seg_start_ >= kBatch) Emit();
    }
    // A partial group waits for the rest.
    if (a < b) {
      if (!has_partial_) partial_ = s.SpanOf(a, a + 1);
      has_partial_ = true;
      for (; a < b; ++a) {
        v_[n_++] = kTable[static_cast<uint8_t>(d[a])];
        partial_ = Union(partial_, s.SpanOf(a, a + 1));
      }
    }
  }

  // Hands the complete segments to the layer; the open one stays.
  void Emit() {
    if (runs_.empty()) return;
    out_.Emit(Src(buf_.data(), 0, seg_start_, runs_));
    runs_.clear();
    buf_.erase(0, seg_start_);
    seg_start_ = 0;
  }

  // End of the base64 text: 2 or 3 leftover characters still carry 1 or 2 bytes.
  void Flush() {
    if (n_ >= 2 && has_partial_) {
      const char bytes[2] = {static_cast<char>((v_[0] << 2) | (v_[1] >> 4)),
                             static_cast<char>(((v_[1] & 0xF) << 4) | (v_[2] >> 2))};
      Add(bytes, static_cast<size_t>(n_ - 1), partial_);
    }
    n_ = 0;
    has_partial_ = false;
    if (seg_bytes_ > 0) Close();
    Emit();
  }

  size_t memory_bytes() const { return buf_.capacity() + runs_.capacity() * sizeof(Run); }
  // A partial group (Flush still emits 2 or 3 leftover characters) and the open segment.
  uint64_t held_from() const {
    uint64_t h = (n_ > 0 || has_partial_) ? partial_.begin : kNothingHeld;
    if (seg_bytes_ > 0) h = std::min(h, seg_span_.begin);
    if (!runs_.empty()) h = std::min(h, runs_.front().ob);  // only between Chars and Emit
    return h;
  }

 private:
  static constexpr size_t kSegment = 48;        // bytes: 16 groups
  static constexpr size_t kBatch = 16 << 10;    // complete bytes that make Chars emit

  void Add(const char* bytes, size_t n, OrigSpan span) {
    buf_.append(bytes, n);
    Extend(n, span);
  }

  // The next n bytes of buf_ join the open segment, which closes at 48 bytes.
  void Extend(size_t n, OrigSpan span) {
    seg_span_ = seg_bytes_ == 0 ? span : Union(seg_span_, span);
    seg_bytes_ += n;
    if (seg_bytes_ >= kSegment) Close();
  }

  void Close() {
    runs_.push_back(Run{seg_start_, seg_bytes_, seg_span_.begin, seg_span_.end, false});
    seg_start_ += seg_bytes_;
    seg_bytes_ = 0;
  }

  Layer& out_;
  const bool avx2_;
  std::string buf_;        // complete segments [0, seg_start_), then the open one
  std::vector<Run> runs_;  // the complete segments
  size_t seg_start_ = 0;
  size_t seg_bytes_ = 0;
  OrigSpan seg_span_;
  uint8_t v_[4] = {};
  int n_ = 0;
  OrigSpan partial_;
  bool has_partial_ = false;
};

class Base64Body final : public Decoder {
 public:
  explicit Base64Body(Layer& out) : out_(out), avx2_(simd::UseAvx2()), groups_(out, avx2_) {}

  void Put(const Src& in) override {
    if (done_ || out_.ctx().stopped) return;
    Consume(in);
    groups_.Emit();
  }

  void Finish() override { groups_.Flush(); }
  size_t memory_bytes() const override { return sizeof(*this) + groups_.memory_bytes(); }
  // Even after padding or a bad character (done_), Finish flushes what the groups hold.
  uint64_t held_from() const override { return groups_.held_from(); }

 private:
  void Consume(const Src& in) {
    const char* d = in.data();
    size_t pos = 0;
    const size_t n = in.size();
    while (pos < n) {
      const size_t q = B64Extent(d, pos, n, avx2_);
      groups_.Chars(in, pos, q);
      if (q == n) break;
      const char c = d[q];
      if (c == '=') {
        done_ = true;  // padding ends the data; what follows is not base64 content
        return;
      }
      if (c != '\r' && c != '\n' && c != ' ' && c != '\t') {
        out_.ctx().Undecodable(in.SpanOf(q, q + 1), "invalid character in base64 body");
        done_ = true;
        return;
      }
      pos = q + 1;
    }
  }

  Layer& out_;
  const bool avx2_;
  GroupDecoder groups_;
  bool done_ = false;
};

}  // namespace

DecoderPtr MakeBase64Body(Layer& out) { return std::make_unique<Base64Body>(out); }

struct Base64Finder::State {
  State(Context& c, uint32_t d) : ctx(c), depth(d), avx2(simd::UseAvx2()) {}

  // kRun: a base64 run; kHex: a run of hex digits (hex_runs.h); kSkip: the rest of a
  // run of base64 characters that is neither.
  enum class Mode { kSearch, kRun, kHex, kSkip };

  void Put(const Src& in) {
    if (ctx.stopped) return;
    size_t pos = 0;
    const size_t n = in.size();
    if (mode == Mode::kSearch && !cand.empty()) pos = ExtendCandidate(in);
    while (pos < n) {
      switch (mode) {
        case Mode::kSearch:
          pos = Search(in, pos);
          break;
        case Mode::kRun:
          pos = RunChars(in, pos);
          break;
        case Mode::kHex:
          pos = HexChars(in, pos);
          break;
        case Mode::kSkip:
          pos = B64Extent(in.data(), pos, n, avx2);
          if (pos < n) mode = Mode::kSearch;
          break;
      }
    }
    // What this chunk completed goes on as one batch.
    if (groups) groups->Emit();
    if (alt_groups) alt_groups->Emit();
    if (hex) hex->Emit();
  }

  void End() {
    if (mode == Mode::kRun) EndRun();
    if (mode == Mode::kHex) hex->End();
    mode = Mode::kSearch;
    cand.Clear();
  }

  uint64_t HeldFrom() const {
    // A candidate that grows to 16 characters is decoded from its first character; in a
    // run, what the groups hold. Line breaks and skipped text are never emitted.
    uint64_t h = cand.orig_begin();
    if (groups) h = std::min(h, groups->held_from());
    if (hex) h = std::min(h, hex->held_from());
    if (out) h = std::min(h, out->held_from());
    if (alt_groups) h = std::min(h, alt_groups->held_from());
    if (alt_out) h = std::min(h, alt_out->held_from());
    return h;
  }

  // A candidate (< 16 characters) ended the previous chunk: continue it.
  size_t ExtendCandidate(const Src& in) {
    const char* d = in.data();
    size_t k = 0;
    while (k < in.size() && cand.size() + k < kMinRun && IsB64(d[k])) ++k;
    if (cand.size() + k < kMinRun) {
      if (k == in.size()) {
        cand.Append(in);  // still all base64, still short
        return in.size();
      }
      cand.Clear();  // too short before a non-base64 byte: not a run
      return k;
    }
    char first[kMinRun];
    std::copy(cand.bytes().begin(), cand.bytes().end(), first);
    std::copy(d, d + (kMinRun - cand.size()), first + cand.size());
    const std::string_view head(first, kMinRun);
    const bool base64 = PlausibleRun(head);
    if (!base64 && !AllHex(head)) {
      cand.Clear();
      mode = Mode::kSkip;
      return k;
    }
    MappedBuffer held = std::move(cand);
    cand.Clear();
    if (base64) {
      StartRun(head);
      RunChars(held.src(), 0);
    } else {
      StartHex();
      HexChars(held.src(), 0);
    }
    return 0;  // the chunk's characters continue the run
  }

  size_t Search(const Src& in, size_t i) {
    const char* d = in.data();
    const size_t n = in.size();
    size_t suffix = n;
    const size_t s = FindRun(d, i, n, &suffix, avx2);
    if (s == n) {
      // No run inside; a short base64 suffix may begin one in the next chunk.
      if (suffix < n) cand.Append(in.Sub(suffix, n));
      return n;
    }
    const std::string_view head(d + s, kMinRun);
    if (PlausibleRun(head)) {
      StartRun(head);
    } else if (AllHex(head)) {
      StartHex();
    } else {
      mode = Mode::kSkip;
    }
    return s;
  }

  void StartHex() {
    if (!out) out = std::make_unique<Layer>(ctx, depth);
    if (!hex) hex = std::make_unique<HexRunDecoder>(*out);
    hex->Begin();
    mode = Mode::kHex;
    line_len = 0;
    nl = 0;
  }

  // An e-mail style line break inside a run ("\r\n" or "\n" after a line of at least
  // kMinRun characters) continues it; false for any other byte.
  bool LineBreak(char c) {
    if (c == '\r' && nl == 0 && line_len >= kMinRun) {
      nl = 1;
      return true;
    }
    if (c == '\n' && (nl == 1 || (nl == 0 && line_len >= kMinRun))) {
      nl = 2;
      line_len = 0;
      return true;
    }
    return false;
  }

  // In a hex run: hex digits and line breaks as in a base64 run (xxd -p writes lines of
  // 60). A base64 character that is no hex digit ends the run and skips the rest of its
  // base64 stretch (that is no hex, and it was no base64 either); anything else ends the
  // run and is left for Search.
  size_t HexChars(const Src& in, size_t pos) {
    const char* d = in.data();
    const size_t n = in.size();
    while (pos < n) {
      const char c = d[pos];
      if (IsHexDigit(c) && nl != 1) {
        size_t q = pos + 1;
        while (q < n && IsHexDigit(d[q])) ++q;
        hex->Chars(in, pos, q);
        line_len += q - pos;
        nl = 0;
        pos = q;
        if (ctx.stopped) return n;
        continue;
      }
      if (!LineBreak(c)) {
        hex->End();
        mode = IsB64(c) && nl == 0 ? Mode::kSkip : Mode::kSearch;
        return pos;
      }
      ++pos;
    }
    return pos;
  }

  // `head`: the run's first kMinRun characters.
  void StartRun(std::string_view head) {
    if (!out) out = std::make_unique<Layer>(ctx, depth);
    if (!groups) groups = std::make_unique<GroupDecoder>(*out, avx2);
    out->BeginDocument(DocHint{});
    mode = Mode::kRun;
    line_len = 0;
    nl = 0;
    run_chars = 0;
    alt_from = PathPrefixEnd(head);
    if (alt_from != kNoAlt) {
      if (!alt_out) alt_out = std::make_unique<Layer>(ctx, depth);
      if (!alt_groups) alt_groups = std::make_unique<GroupDecoder>(*alt_out, avx2);
      alt_out->BeginDocument(DocHint{});
    }
  }

  // A value after a path or a name ("com/d/<base64>" in a URL inside JSON, "/p/<base64>",
  // "user_<base64>"): the separators are base64 characters too, so the run begins
  // before the value and decodes it out of step. When the run opens with lower-case
  // words and digits ended by '/', '_' or '-' (which base64 rarely does: about one run
  // in 30), it is decoded a second time from after the last of those separators.
  // kNoAlt when there is none, or when the second decoding would be in step anyway.
  // A separator counts only after a word: a run that merely starts with '/' is what a
  // JSON string's escaped slash ("\/") leaves of base64 in the raw bytes, and the escape
  // window below reads that whole.
  static size_t PathPrefixEnd(std::string_view head) {
    size_t end = kNoAlt;
    bool word = false;
    for (size_t i = 0; i < head.size(); ++i) {
      const char c = head[i];
      if (c == '/' || c == '_' || c == '-') {
        if (word) end = i + 1;
      } else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) {
        word = true;
      } else {
        break;
      }
    }
    return end == kNoAlt || end % 4 == 0 || end >= head.size() ? kNoAlt : end;
  }

  void EndRun() {
    groups->Flush();
    out->EndDocument();
    if (alt_from != kNoAlt) {
      alt_groups->Flush();
      alt_out->EndDocument();
      alt_from = kNoAlt;
    }
    mode = Mode::kSearch;
  }

  // In a run: consume base64 characters and e-mail style line breaks (after lines of at
  // least 16 characters); anything else ends the run and is left for Search.
  size_t RunChars(const Src& in, size_t pos) {
    const char* d = in.data();
    const size_t n = in.size();
    while (pos < n) {
      const char c = d[pos];
      if (IsB64(c) && nl != 1) {
        const size_t q = B64Extent(d, pos + 1, n, avx2);
        groups->Chars(in, pos, q);
        if (alt_from != kNoAlt) {
          const size_t skip = run_chars < alt_from ? std::min(q - pos, alt_from - run_chars) : 0;
          if (pos + skip < q) alt_groups->Chars(in, pos + skip, q);
        }
        run_chars += q - pos;
        line_len += q - pos;
        nl = 0;
        pos = q;
        if (ctx.stopped) return n;
        continue;
      }
      if (!LineBreak(c)) {
        EndRun();
        return pos;
      }
      ++pos;
    }
    return pos;
  }

  Context& ctx;
  const uint32_t depth;
  const bool avx2;
  Mode mode = Mode::kSearch;
  MappedBuffer cand;  // kSearch: < 16 base64 characters that ended the last chunk
  size_t line_len = 0;
  int nl = 0;  // 0 in a line, 1 after '\r', 2 after a line break
  std::unique_ptr<Layer> out;
  std::unique_ptr<GroupDecoder> groups;
  std::unique_ptr<HexRunDecoder> hex;
  // The second decoding of a run that opens with a path (PathPrefixEnd), from the run's
  // character alt_from on; run_chars counts the run's characters so far.
  static constexpr size_t kNoAlt = SIZE_MAX;
  size_t alt_from = kNoAlt;
  size_t run_chars = 0;
  std::unique_ptr<Layer> alt_out;
  std::unique_ptr<GroupDecoder> alt_groups;
};

Base64Finder::Base64Finder(Context& ctx, uint32_t depth) : s_(std::make_unique<State>(ctx, depth)) {}
Base64Finder::~Base64Finder() = default;
void Base64Finder::Begin() { s_->End(); }
void Base64Finder::Put(const Src& in) { s_->Put(in); }
void Base64Finder::End() { s_->End(); }
uint64_t Base64Finder::held_from() const { return s_->HeldFrom(); }
size_t Base64Finder::memory_bytes() const {
  size_t n = sizeof(State) + s_->cand.memory_bytes();
  if (s_->out) n += s_->out->memory_bytes();
  if (s_->groups) n += s_->groups->memory_bytes();
  if (s_->hex) n += s_->hex->memory_bytes();
  if (s_->alt_out) n += s_->alt_out->memory_bytes() + s_->alt_groups->memory_bytes();
  return n;
}

}  // namespace egressguard::dlp::decode
