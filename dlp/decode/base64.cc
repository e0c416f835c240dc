// Base64: runs found anywhere in a layer (Base64Finder) and whole bodies in base64
// (multipart Content-Transfer-Encoding). Plain text is skipped 16 bytes at a time: a run
// of >= 16 base64 characters must cover every 16th position, so one look per 16 bytes
// rules out most of ordinary prose.

#include <algorithm>
#include <array>
#include <bit>
#include <fmt/format.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "dlp/decode/decoders.h"

namespace egressguard::dlp::decode {
namespace {

constexpr size_t kMinRun = 16;
constexpr uint8_t kNot = 0xFF;

// Standard and URL-safe alphabets in one table: a run may use either.
constexpr std::array<uint8_t, 256> MakeTable() {
  std::array<uint8_t, 256> t{};
  for (auto& v : t) v = kNot;
  for (int i = 0; i < 26; ++i) {
    t['A' + i] = static_cast<uint8_t>(i);
    t['a' + i] = static_cast<uint8_t>(26 + i);
  }
  for (int i = 0; i < 10; ++i) t['0' + i] = static_cast<uint8_t>(52 + i);
  t['+'] = t['-'] = 62;
  t['/'] = t['_'] = 63;
  return t;
}
constexpr std::array<uint8_t, 256> kTable = MakeTable();

inline bool IsB64(char c) { return kTable[static_cast<uint8_t>(c)] != kNot; }

// Bit i set when p[i] is a base64 character, for 64 bytes.
inline uint64_t Mask64(const char* p) {
#if defined(__SSE2__)
  auto in_range = [](__m128i v, char lo, char hi) {
    return _mm_and_si128(_mm_cmpgt_epi8(v, _mm_set1_epi8(static_cast<char>(lo - 1))),
                         _mm_cmpgt_epi8(_mm_set1_epi8(static_cast<char>(hi + 1)), v));
  };
  uint64_t mask = 0;
  for (int k = 0; k < 4; ++k) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16 * k));
    __m128i ok = in_range(_mm_or_si128(v, _mm_set1_epi8(0x20)), 'a', 'z');  // either case
    ok = _mm_or_si128(ok, in_range(v, '0', '9'));
    ok = _mm_or_si128(ok, _mm_cmpeq_epi8(v, _mm_set1_epi8('+')));
    ok = _mm_or_si128(ok, _mm_cmpeq_epi8(v, _mm_set1_epi8('/')));
    ok = _mm_or_si128(ok, _mm_cmpeq_epi8(v, _mm_set1_epi8('-')));
    ok = _mm_or_si128(ok, _mm_cmpeq_epi8(v, _mm_set1_epi8('_')));
    mask |= static_cast<uint64_t>(static_cast<uint16_t>(_mm_movemask_epi8(ok))) << (16 * k);
  }
  return mask;
#else
  uint64_t mask = 0;
  for (int k = 0; k < 64; ++k) mask |= static_cast<uint64_t>(IsB64(p[k])) << k;
  return mask;
#endif
}

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
size_t FindRun(const char* d, size_t i, size_t n, size_t* suffix) {
  size_t run = 0;  // base64 characters just before pos
  size_t pos = i;
  for (; pos + 64 <= n; pos += 64) {
    const uint64_t m = Mask64(d + pos);
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
    const uint64_t m = Mask64(block);
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

OrigSpan Union(OrigSpan a, OrigSpan b) { return {std::min(a.begin, b.begin), std::max(a.end, b.end)}; }

inline void DecodeGroup(const uint8_t* v, char* out) {
  out[0] = static_cast<char>((v[0] << 2) | (v[1] >> 4));
  out[1] = static_cast<char>(((v[1] & 0xF) << 4) | (v[2] >> 2));
  out[2] = static_cast<char>(((v[2] & 0x3) << 6) | v[3]);
}

// Length of the base64 stretch at d[pos, n).
inline size_t B64Extent(const char* d, size_t pos, size_t n) {
  size_t q = pos;
  for (; q + 64 <= n; q += 64) {
    const uint64_t m = Mask64(d + q);
    if (m != ~uint64_t{0}) return q + static_cast<size_t>(std::countr_one(m));
  }
  while (q < n && IsB64(d[q])) ++q;
  return q;
}

// Turns base64 characters into bytes, 4 -> 3, each group mapped to the span of its
// characters; 16 groups make one segment.
class GroupDecoder {
 public:
  explicit GroupDecoder(Layer& out) : coal_(out, 48) {}

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
        coal_.Add(std::string_view(bytes, 3), partial_);
        n_ = 0;
        has_partial_ = false;
      }
    }
    // Whole groups in bulk, up to the coalescer's segment boundary each time, so the
    // segments (and their spans) come out the same however the input was chunked.
    while (b - a >= 4) {
      const size_t room = (48 - coal_.pending()) / 3;
      const size_t groups = std::min((b - a) / 4, room == 0 ? size_t{1} : room);
      char bytes[48];
      for (size_t g = 0; g < groups; ++g) {
        uint8_t v[4];
        for (int k = 0; k < 4; ++k) v[k] = kTable[static_cast<uint8_t>(d[a + 4 * g + static_cast<size_t>(k)])];
        DecodeGroup(v, bytes + 3 * g);
      }
      coal_.Add(std::string_view(bytes, 3 * groups), s.SpanOf(a, a + 4 * groups));
      a += 4 * groups;
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

  // End of the base64 text: 2 or 3 leftover characters still carry 1 or 2 bytes.
  void Flush() {
    if (n_ >= 2 && has_partial_) {
      const char bytes[2] = {static_cast<char>((v_[0] << 2) | (v_[1] >> 4)),
                             static_cast<char>(((v_[1] & 0xF) << 4) | (v_[2] >> 2))};
      coal_.Add(std::string_view(bytes, n_ - 1), partial_);
    }
    n_ = 0;
    has_partial_ = false;
    coal_.Flush();
  }

  size_t memory_bytes() const { return coal_.memory_bytes(); }
  // A partial group (Flush still emits 2 or 3 leftover characters) and unflushed groups.
  uint64_t held_from() const {
    const uint64_t partial = (n_ > 0 || has_partial_) ? partial_.begin : kNothingHeld;
    return std::min(partial, coal_.held_from());
  }

 private:
  Coalescer coal_;
  uint8_t v_[4] = {};
  int n_ = 0;
  OrigSpan partial_;
  bool has_partial_ = false;
};

class Base64Body final : public Decoder {
 public:
  explicit Base64Body(Layer& out) : out_(out), groups_(out) {}

  void Put(const Src& in) override {
    if (done_ || out_.ctx().stopped) return;
    const char* d = in.data();
    size_t pos = 0;
    const size_t n = in.size();
    while (pos < n) {
      const size_t q = B64Extent(d, pos, n);
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

  void Finish() override { groups_.Flush(); }
  size_t memory_bytes() const override { return sizeof(*this) + groups_.memory_bytes(); }
  // Even after padding or a bad character (done_), Finish flushes what the groups hold.
  uint64_t held_from() const override { return groups_.held_from(); }

 private:
  Layer& out_;
  GroupDecoder groups_;
  bool done_ = false;
};

}  // namespace

DecoderPtr MakeBase64Body(Layer& out) { return std::make_unique<Base64Body>(out); }

struct Base64Finder::State {
  State(Context& c, uint32_t d) : ctx(c), depth(d) {}

  enum class Mode { kSearch, kRun, kSkip };

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
        case Mode::kSkip:
          pos = B64Extent(in.data(), pos, n);
          if (pos < n) mode = Mode::kSearch;
          break;
      }
    }
  }

  void End() {
    if (mode == Mode::kRun) EndRun();
    mode = Mode::kSearch;
    cand.Clear();
  }

  uint64_t HeldFrom() const {
    // A candidate that grows to 16 characters is decoded from its first character; in a
    // run, what the groups hold. Line breaks and skipped text are never emitted.
    uint64_t h = cand.orig_begin();
    if (groups) h = std::min(h, groups->held_from());
    if (out) h = std::min(h, out->held_from());
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
    if (!PlausibleRun(std::string_view(first, kMinRun))) {
      cand.Clear();
      mode = Mode::kSkip;
      return k;
    }
    StartRun();
    MappedBuffer held = std::move(cand);
    cand.Clear();
    RunChars(held.src(), 0);
    return 0;  // the chunk's characters continue the run
  }

  size_t Search(const Src& in, size_t i) {
    const char* d = in.data();
    const size_t n = in.size();
    size_t suffix = n;
    const size_t s = FindRun(d, i, n, &suffix);
    if (s == n) {
      // No run inside; a short base64 suffix may begin one in the next chunk.
      if (suffix < n) cand.Append(in.Sub(suffix, n));
      return n;
    }
    if (PlausibleRun(std::string_view(d + s, kMinRun))) {
      StartRun();
    } else {
      mode = Mode::kSkip;
    }
    return s;
  }

  void StartRun() {
    if (!out) {
      out = std::make_unique<Layer>(ctx, depth);
      groups = std::make_unique<GroupDecoder>(*out);
    }
    out->BeginDocument(DocHint{});
    mode = Mode::kRun;
    line_len = 0;
    nl = 0;
  }

  void EndRun() {
    groups->Flush();
    out->EndDocument();
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
        const size_t q = B64Extent(d, pos + 1, n);
        groups->Chars(in, pos, q);
        line_len += q - pos;
        nl = 0;
        pos = q;
        if (ctx.stopped) return n;
        continue;
      }
      if (c == '\r' && nl == 0 && line_len >= kMinRun) {
        nl = 1;
      } else if (c == '\n' && (nl == 1 || (nl == 0 && line_len >= kMinRun))) {
        nl = 2;
        line_len = 0;
      } else {
        EndRun();
        return pos;
      }
      ++pos;
    }
    return pos;
  }

  Context& ctx;
  const uint32_t depth;
  Mode mode = Mode::kSearch;
  MappedBuffer cand;  // kSearch: < 16 base64 characters that ended the last chunk
  size_t line_len = 0;
  int nl = 0;  // 0 in a line, 1 after '\r', 2 after a line break
  std::unique_ptr<Layer> out;
  std::unique_ptr<GroupDecoder> groups;
};

Base64Finder::Base64Finder(Context& ctx, uint32_t depth) : s_(std::make_unique<State>(ctx, depth)) {}
Base64Finder::~Base64Finder() = default;
void Base64Finder::Begin() { s_->End(); }
void Base64Finder::Put(const Src& in) { s_->Put(in); }
void Base64Finder::End() { s_->End(); }
uint64_t Base64Finder::held_from() const { return s_->HeldFrom(); }
size_t Base64Finder::memory_bytes() const {
  size_t n = sizeof(State) + s_->cand.memory_bytes();
  if (s_->out) n += s_->out->memory_bytes() + s_->groups->memory_bytes();
  return n;
}

}  // namespace egressguard::dlp::decode
