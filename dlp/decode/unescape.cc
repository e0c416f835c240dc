// Escape decoding (percent, '+', JSON backslash, quoted-printable, HTML character
// references) and the folding of Unicode look-alikes a pattern would not match (no-break
// and other spaces, dashes, fullwidth digits, zero-width characters) as one streaming
// decoder. Plain text costs one memchr per trigger character; in lazy mode only windows
// of kContext bytes around escapes are emitted, since the raw layer holds the rest.

#include <algorithm>
#include <array>
#include <bit>
#include <cstring>

#include "dlp/decode/decoders.h"
#include "dlp/decode/simd.h"
#include "dlp/decode/utf8.h"

namespace egressguard::dlp::decode {
namespace {

constexpr size_t kContext = 256;  // literal bytes kept before and emitted after an escape
constexpr size_t kMaxEscape = 20; // "\uD83D\uDE00", "&NonBreakingSpace;"

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

int Hex4(const char* p) {
  int v = 0;
  for (int i = 0; i < 4; ++i) {
    const int h = HexValue(p[i]);
    if (h < 0) return -1;
    v = v * 16 + h;
  }
  return v;
}

// What a code point is scanned as. Rich-text editors and copied web text put no-break
// spaces (U+00A0, &nbsp;) and thin or narrow spaces between the groups of a card or IBAN,
// dashes other than '-' into ids, fullwidth digits come from East Asian input methods,
// and zero-width characters are the usual way to break a value up for a filter: none of
// them changes what a person reads, so they are read as the ASCII they stand for (or as
// nothing). kNone: scanned as it is.
constexpr uint32_t kNone = 0xFFFFFFFF, kDrop = 0xFFFFFFFE;
uint32_t Fold(uint32_t cp) {
  if (cp == 0xA0 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x202F || cp == 0x205F || cp == 0x3000) return ' ';
  if ((cp >= 0x2010 && cp <= 0x2015) || cp == 0x2212 || cp == 0xFE63 || cp == 0xFF0D) return '-';
  if (cp >= 0xFF10 && cp <= 0xFF19) return '0' + (cp - 0xFF10);
  if (cp == 0xAD || (cp >= 0x200B && cp <= 0x200D) || cp == 0x2060 || cp == 0xFEFF) return kDrop;
  return kNone;
}

// HTML named references that matter for the values scanned: spaces and the characters
// of e-mail addresses and URLs (others are left as text).
uint32_t NamedReference(std::string_view name) {
  static constexpr std::pair<std::string_view, uint32_t> kNames[] = {
      {"nbsp", 0xA0}, {"NonBreakingSpace", 0xA0}, {"ensp", 0x2002}, {"emsp", 0x2003}, {"thinsp", 0x2009},
      {"amp", '&'},   {"lt", '<'},     {"gt", '>'},        {"quot", '"'},     {"apos", '\''},
      {"commat", '@'}, {"period", '.'}, {"hyphen", '-'},   {"dash", 0x2010},   {"ndash", 0x2013},
      {"mdash", 0x2014}, {"minus", 0x2212}, {"plus", '+'},  {"lowbar", '_'},    {"sol", '/'},
      {"colon", ':'}, {"num", '#'},    {"shy", 0xAD},       {"zwsp", 0x200B},  {"ZeroWidthSpace", 0x200B},
  };
  for (const auto& [n, cp] : kNames) {
    if (n == name) return cp;
  }
  return kNone;
}

enum class EscKind { kEscape, kLiteral, kNeedMore };
struct Esc {
  EscKind kind = EscKind::kLiteral;
  size_t consumed = 1;
  size_t len = 0;
  char out[4] = {};
};

// Decodes the escape starting at p[0] (a trigger character). `final`: no more input
// will come, so a short escape is literal text rather than "need more".
Esc ParseEscape(const char* p, size_t avail, bool final) {
  Esc e;
  auto need = [&](size_t n) {
    if (avail >= n) return false;
    e.kind = final ? EscKind::kLiteral : EscKind::kNeedMore;
    e.consumed = 1;
    return true;
  };
  auto one = [&](char c, size_t consumed) {
    e.kind = EscKind::kEscape;
    e.consumed = consumed;
    e.out[0] = c;
    e.len = 1;
  };
  // A code point as it is scanned: folded, dropped or encoded as UTF-8.
  auto code_point = [&](uint32_t cp, size_t consumed) {
    e.kind = EscKind::kEscape;
    e.consumed = consumed;
    const uint32_t f = Fold(cp);
    if (f == kDrop) return;
    if (f != kNone) {
      e.out[0] = static_cast<char>(f);
      e.len = 1;
      return;
    }
    e.len = EncodeUtf8(cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF) ? 0xFFFD : cp, e.out);
  };
  const auto cont = [&](size_t i) { return (static_cast<uint8_t>(p[i]) & 0xC0) == 0x80; };
  switch (p[0]) {
    case '&': {
      // &name; &#NNN; &#xHHH; ending within kMaxEscape bytes. Anything else ("a=1&b=2",
      // "AT&T") is text.
      size_t end = 1;
      while (end < avail && end < kMaxEscape && p[end] != ';' && p[end] != '&' && p[end] != '<' &&
             static_cast<uint8_t>(p[end]) > ' ') {
        ++end;
      }
      if (end >= avail && end < kMaxEscape) {
        if (!final) e.kind = EscKind::kNeedMore;
        return e;
      }
      if (end >= avail || p[end] != ';' || end < 3) return e;
      const std::string_view body(p + 1, end - 1);
      uint32_t cp = kNone;
      if (body[0] == '#') {
        const bool hex = body.size() > 1 && (body[1] == 'x' || body[1] == 'X');
        const std::string_view digits = body.substr(hex ? 2 : 1);
        if (digits.empty() || digits.size() > 8) return e;
        uint64_t v = 0;
        for (char c : digits) {
          const int d = hex ? HexValue(c) : (c >= '0' && c <= '9' ? c - '0' : -1);
          if (d < 0) return e;
          v = v * (hex ? 16 : 10) + static_cast<unsigned>(d);
        }
        cp = v > 0x10FFFF ? 0xFFFD : static_cast<uint32_t>(v);
      } else {
        cp = NamedReference(body);
        if (cp == kNone) return e;
      }
      code_point(cp, end + 1);
      return e;
    }
    case '\xC2':  // U+0080..U+00BF: the no-break space and the soft hyphen
      if (need(2)) return e;
      if (static_cast<uint8_t>(p[1]) == 0xA0 || static_cast<uint8_t>(p[1]) == 0xAD) {
        code_point(static_cast<uint8_t>(p[1]), 2);
      }
      return e;
    case '\xE2':  // U+2000..U+2FFF: spaces, dashes, zero-width characters, minus
    case '\xE3':  // U+3000..U+3FFF: the ideographic space
    case '\xEF': {  // U+F000..U+FFFF: fullwidth forms, the byte order mark
      if (need(3)) return e;
      if (!cont(1) || !cont(2)) return e;
      const uint32_t cp = ((static_cast<uint8_t>(p[0]) & 0x0Fu) << 12) | ((static_cast<uint8_t>(p[1]) & 0x3Fu) << 6) |
                          (static_cast<uint8_t>(p[2]) & 0x3Fu);
      if (Fold(cp) != kNone) code_point(cp, 3);
      return e;
    }
    case '+':
      one(' ', 1);
      return e;
    case '%':
      if (need(3)) return e;
      if (HexValue(p[1]) >= 0 && HexValue(p[2]) >= 0) one(static_cast<char>(HexValue(p[1]) * 16 + HexValue(p[2])), 3);
      return e;
    case '=':
      if (need(2)) return e;
      if (p[1] == '\n') {
        e.kind = EscKind::kEscape;  // soft line break: decodes to nothing
        e.consumed = 2;
        return e;
      }
      if (need(3)) return e;
      if (p[1] == '\r' && p[2] == '\n') {
        e.kind = EscKind::kEscape;
        e.consumed = 3;
      } else if (HexValue(p[1]) >= 0 && HexValue(p[2]) >= 0) {
        one(static_cast<char>(HexValue(p[1]) * 16 + HexValue(p[2])), 3);
      }
      return e;
    case '\\': {
      if (need(2)) return e;
      static constexpr std::string_view kFrom = "\"\\/bfnrt", kTo = "\"\\/\b\f\n\r\t";
      if (const size_t k = kFrom.find(p[1]); k != std::string_view::npos) {
        one(kTo[k], 2);
        return e;
      }
      if (p[1] != 'u') return e;
      if (need(6)) return e;
      const int cp = Hex4(p + 2);
      if (cp < 0) return e;
      uint32_t code = static_cast<uint32_t>(cp);
      e.kind = EscKind::kEscape;
      e.consumed = 6;
      if (code >= 0xD800 && code <= 0xDBFF) {
        if (need(12)) {
          if (e.kind == EscKind::kNeedMore) return e;
          e.kind = EscKind::kEscape;  // final and lone: replacement character below
          e.consumed = 6;
          code = 0xFFFD;
        } else {
          const int lo = (p[6] == '\\' && p[7] == 'u') ? Hex4(p + 8) : -1;
          if (lo >= 0xDC00 && lo <= 0xDFFF) {
            code = 0x10000 + ((code - 0xD800) << 10) + (static_cast<uint32_t>(lo) - 0xDC00);
            e.consumed = 12;
          } else {
            code = 0xFFFD;
          }
        }
      } else if (code >= 0xDC00 && code <= 0xDFFF) {
        code = 0xFFFD;
      }
      code_point(code, e.consumed);
      return e;
    }
    default:
      return e;
  }
}

class Unescaper final : public Decoder {
 public:
  Unescaper(Layer& out, unsigned flags, bool lazy)
      : out_(out), coal_(out), lazy_(lazy), avx2_(simd::UseAvx2()) {
    if (flags & kPercent) triggers_.Add('%');
    if (flags & kPlus) triggers_.Add('+');
    if (flags & kBackslash) triggers_.Add('\\');
    if (flags & kQuotedPrintable) triggers_.Add('=');
    if (flags & kHtmlReferences) triggers_.Add('&');
    if (flags & kFoldUnicode) {
      for (uint8_t c : {0xC2, 0xE2, 0xE3, 0xEF}) triggers_.Add(c);
    }
  }

  void Put(const Src& in) override {
    if (in.empty() || out_.ctx().stopped) return;
    size_t skip = 0;
    if (!partial_.empty()) {
      // An escape began in an earlier chunk: finish it over the joined bytes.
      const size_t old = partial_.size();
      partial_.Append(in.Sub(0, std::min(in.size(), 2 * kMaxEscape)));
      MappedBuffer work = std::move(partial_);
      partial_.Clear();
      bool incomplete = false;
      const size_t pos = Process(work.src(), old, false, &incomplete);
      if (incomplete) {
        work.DropFront(pos);
        partial_ = std::move(work);
        return;
      }
      skip = pos - old;
    }
    const Src rest = in.Sub(skip, in.size());
    bool incomplete = false;
    const size_t pos = Process(rest, rest.size(), false, &incomplete);
    if (incomplete) partial_.Append(rest.Sub(pos, rest.size()));
  }

  void Finish() override {
    if (!partial_.empty() && !out_.ctx().stopped) {
      MappedBuffer work = std::move(partial_);
      bool incomplete = false;
      Process(work.src(), work.size(), true, &incomplete);
    }
    partial_.Clear();
    coal_.Flush();
    if (active_) out_.EndDocument();
    active_ = false;
    tail_.Clear();
  }

  size_t memory_bytes() const override {
    return sizeof(*this) + partial_.memory_bytes() + tail_.memory_bytes() + coal_.memory_bytes();
  }

  // A cut escape, decoded escapes not flushed yet and (lazy) the literal tail that the
  // next escape would emit as its before-context. Literals older than the tail are never
  // emitted; literals after an escape go out as they arrive.
  uint64_t held_from() const override {
    return std::min({partial_.orig_begin(), tail_.orig_begin(), coal_.held_from()});
  }

 private:
  // Handles units from s until one ends at or past stop_at; returns where it stopped.
  size_t Process(const Src& s, size_t stop_at, bool final, bool* incomplete) {
    const char* d = s.data();
    const size_t n = s.size();
    // Trigger bytes found 64 at a time (one table lookup per byte for all of them, where
    // a memchr per trigger cost a pass each and a minimum per step): the block's mask is
    // kept while the escapes in it are handled.
    size_t blk = 0;
    uint64_t blk_mask = 0;
    bool have_blk = false;
    auto next_trigger = [&](size_t from) {
      while (from < n) {
        if (!have_blk || from < blk || from >= blk + 64) {
          blk = from;
          have_blk = true;
          const size_t len = std::min<size_t>(64, n - from);
          if (len == 64) {
            blk_mask = simd::ByteSetMask64(d + from, triggers_, avx2_);
          } else {
            char tail[64] = {};
            std::memcpy(tail, d + from, len);
            blk_mask = simd::ByteSetMask64(tail, triggers_, avx2_) & ((uint64_t{1} << len) - 1);
          }
        }
        const uint64_t m = blk_mask >> (from - blk);
        if (m != 0) return from + static_cast<size_t>(std::countr_zero(m));
        from = blk + 64;
      }
      return n;
    };
    size_t pos = 0;
    while (pos < n && pos < stop_at) {
      const size_t t = next_trigger(pos);
      if (t > pos) {
        Literal(s, pos, t);
        pos = t;
        continue;
      }
      const Esc e = ParseEscape(d + pos, n - pos, final);
      if (e.kind == EscKind::kNeedMore) {
        *incomplete = true;
        FlushLiterals(s);
        SettleTail(s);
        return pos;
      }
      if (e.kind == EscKind::kLiteral) {
        Literal(s, pos, pos + 1);
        pos += 1;
        continue;
      }
      Escape(s, std::string_view(e.out, e.len), s.SpanOf(pos, pos + e.consumed));
      pos += e.consumed;
    }
    FlushLiterals(s);
    SettleTail(s);
    return pos;
  }

  // Literals that go out inside a lazy window are contiguous bytes of `s` until an escape
  // or the window's end (at most kContext of them): they leave as one linear piece
  // [lit_a_, lit_b_), not one per trigger byte that was no escape, and so cost the layer
  // below one Emit. (A non-lazy unescaper emits each piece as it comes: its pieces can be
  // as long as the input, and the decoded-size limit drops the piece that crosses it.)
  void AddLiterals(size_t a, size_t b) {
    if (a == b) return;
    if (!lit_) {
      lit_ = true;
      lit_a_ = a;
    }
    lit_b_ = b;
  }

  void FlushLiterals(const Src& s) {
    if (!lit_) return;
    lit_ = false;
    coal_.AddLinear(s.Sub(lit_a_, lit_b_));
  }

  void Literal(const Src& s, size_t a, size_t b) {
    if (!lazy_) {
      coal_.AddLinear(s.Sub(a, b));
      return;
    }
    if (active_) {
      const size_t emit = std::min(b - a, kContext - quiet_);
      AddLiterals(a, a + emit);
      quiet_ += emit;
      a += emit;
      if (a == b) return;
      FlushLiterals(s);
      coal_.Flush();
      out_.EndDocument();
      active_ = false;
    }
    // Outside a window, literals only join the tail. They are contiguous bytes of `s`
    // (an escape would have opened a window), so the tail's newest part is kept as the
    // range [pend_a_, pend_b_) of `s` and copied into tail_ only when an escape needs it
    // or `s` ends (SettleTail): on text or binary bytes without escapes this is O(1) per
    // literal instead of a copy of every byte.
    if (!pend_) {
      pend_ = true;
      pend_a_ = a;
    }
    pend_b_ = b;
  }

  // The pending literal range joins tail_: tail_ becomes the last kContext bytes of what
  // it held and the range, exactly as appending the literals one by one made it.
  void SettleTail(const Src& s) {
    if (!pend_) return;
    pend_ = false;
    if (pend_b_ - pend_a_ >= kContext) {
      tail_.Clear();
      tail_.Append(s.Sub(pend_b_ - kContext, pend_b_));
    } else {
      tail_.Append(s.Sub(pend_a_, pend_b_));
      if (tail_.size() > kContext) tail_.DropFront(tail_.size() - kContext);
    }
  }

  void Escape(const Src& s, std::string_view bytes, OrigSpan span) {
    FlushLiterals(s);
    if (lazy_ && !active_) {
      SettleTail(s);
      out_.BeginDocument(DocHint{});
      active_ = true;
      coal_.AddLinear(tail_.src());
      tail_.Clear();
    }
    quiet_ = 0;
    if (!bytes.empty()) coal_.Add(bytes, span);
  }

  Layer& out_;
  Coalescer coal_;
  const bool lazy_;
  const bool avx2_;
  simd::ByteSet triggers_;
  MappedBuffer partial_;  // an escape cut by the chunk boundary
  MappedBuffer tail_;     // lazy: the last kContext literal bytes, not emitted yet
  bool active_ = false;   // lazy: inside an emitted window
  size_t quiet_ = 0;      // lazy: literal bytes emitted since the last escape
  // lazy, outside a window: literals of the Src being processed not yet in tail_
  bool pend_ = false;
  size_t pend_a_ = 0, pend_b_ = 0;
  // lazy, inside a window: literals of the Src being processed not yet handed to coal_
  bool lit_ = false;
  size_t lit_a_ = 0, lit_b_ = 0;
};

}  // namespace

DecoderPtr MakeUnescaper(Layer& out, unsigned flags, bool lazy) {
  return std::make_unique<Unescaper>(out, flags, lazy);
}

}  // namespace egressguard::dlp::decode
