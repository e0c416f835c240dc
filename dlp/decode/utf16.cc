// UTF-16 text (Excel's "Unicode Text" export, PowerShell's Out-File, Notepad's "Unicode")
// transcoded to UTF-8, so that the text, its CSV/TSV records and whatever is nested in it
// are scanned as the same text in UTF-8 is. In UTF-16 every ASCII character is followed
// (LE) or preceded (BE) by a NUL byte, so no pattern written for text matches the raw
// bytes: without this decoder a UTF-16 customer table passes unread.
//
// Detection (SniffUtf16) is strict, because a document taken for UTF-16 is not offered to
// the decoders after this one (mail, multipart, escapes): a byte-order mark, a charset
// label, or BOM-less text that is mostly ASCII with the NUL high bytes to show it; in
// every case the first code units must be text (no control characters but whitespace, no
// unpaired surrogate), which random bytes, images, archives and UTF-8 text never are.
//
// Spans. A UTF-8 character maps to the code unit(s) it came from, 2 or 4 original bytes,
// so an output byte cannot map linearly. One coarse run per character would be exact but
// costs the scanner a segment per character; so output runs are words: a run of ASCII
// letters and digits and non-ASCII characters (at most kMaxWord bytes) maps to the code
// units of the word, and every other character (space, punctuation, delimiters, line
// ends) is a run of its own. A finding that starts and ends on word boundaries, which
// cards, e-mail addresses, IBANs and names do, gets the exact original span. A word is
// held until the character after it shows where it ends, and cut after kMaxWord bytes
// (by content, not by where reads end), so output and spans do not depend on chunking.

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "dlp/decode/decoders.h"
#include "dlp/decode/utf8.h"

namespace egressguard::dlp::decode {
namespace {

constexpr size_t kMaxWord = 64;         // output bytes in one word run
constexpr size_t kFlushBytes = 4096;    // output buffered before an Emit
constexpr size_t kSniffUnits = 64;      // code units looked at for BOM-less detection
constexpr size_t kMinSniffUnits = 8;    // fewer: too little to tell BOM-less text

bool IsHighSurrogate(uint32_t u) { return u >= 0xD800 && u <= 0xDBFF; }
bool IsLowSurrogate(uint32_t u) { return u >= 0xDC00 && u <= 0xDFFF; }

uint32_t UnitAt(std::string_view b, size_t i, bool big_endian) {
  const auto lo = static_cast<uint8_t>(b[i + (big_endian ? 1 : 0)]);
  const auto hi = static_cast<uint8_t>(b[i + (big_endian ? 0 : 1)]);
  return (static_cast<uint32_t>(hi) << 8) | lo;
}

// What the code units at the start of b (up to kSniffUnits) say when read in one byte
// order: whether all are text, and how many are printable ASCII or ASCII whitespace.
struct UnitStats {
  bool text = true;
  size_t units = 0;
  size_t ascii = 0;
};

UnitStats Stats(std::string_view b, bool big_endian) {
  UnitStats s;
  const size_t n = std::min(b.size() / 2, kSniffUnits);
  s.units = n;
  for (size_t k = 0; k < n; ++k) {
    const uint32_t u = UnitAt(b, 2 * k, big_endian);
    if (u == '\t' || u == '\n' || u == '\r' || u == '\f' || (u >= 0x20 && u < 0x7F)) {
      ++s.ascii;
      continue;
    }
    // Controls (C0, DEL, C1) are not in text; U+0000 least of all (binary's zero fill).
    // Nor are noncharacters, and private-use characters hardly: one code unit in ten of
    // random bytes is private-use, so refusing them makes chance text rarer still.
    if (u < 0x20 || (u >= 0x7F && u < 0xA0) || u == 0xFFFE || u == 0xFFFF || (u >= 0xE000 && u <= 0xF8FF)) {
      s.text = false;
      return s;
    }
    if (IsHighSurrogate(u)) {
      // A pair cut by the end of the look, but not by the end of b, is fine.
      if (k + 1 == n) {
        if (2 * (k + 1) + 2 > b.size()) continue;
        if (IsLowSurrogate(UnitAt(b, 2 * (k + 1), big_endian))) continue;
        s.text = false;
        return s;
      }
      if (!IsLowSurrogate(UnitAt(b, 2 * (k + 1), big_endian))) {
        s.text = false;
        return s;
      }
      ++k;
      continue;
    }
    if (IsLowSurrogate(u)) {
      s.text = false;
      return s;
    }
  }
  return s;
}

// The charset parameter of a content type, lower case, quotes removed; "" when none.
std::string Charset(std::string_view content_type) {
  const std::string lower = Lower(content_type);
  size_t k = lower.find("charset=");
  if (k == std::string::npos) return "";
  std::string_view v = std::string_view(lower).substr(k + 8);
  v = Trim(v.substr(0, v.find(';')));
  if (!v.empty() && v.front() == '"') v.remove_prefix(1);
  if (!v.empty() && v.back() == '"') v.remove_suffix(1);
  return std::string(Trim(v));
}

// The content type with its charset parameter removed: the output is UTF-8, and a label
// left on it would be a claim about bytes it no longer describes.
std::string WithoutCharset(std::string_view content_type) {
  const std::string lower = Lower(content_type);
  const size_t k = lower.find("charset=");
  if (k == std::string::npos) return std::string(content_type);
  size_t begin = lower.rfind(';', k);
  if (begin == std::string::npos) begin = k;
  size_t end = lower.find(';', k);
  if (end == std::string::npos) end = lower.size();
  std::string out(content_type.substr(0, begin));
  out.append(content_type.substr(end));
  return std::string(Trim(out));
}

struct Utf16Sniff {
  bool utf16 = false;
  bool big_endian = false;
};

Utf16Sniff SniffUtf16(const DocHint& hint, std::string_view b) {
  Utf16Sniff r;
  // Byte-order mark. FF FE 00 00 opens UTF-32LE, which this is not.
  const bool bom_le = b.substr(0, 2) == "\xFF\xFE" && b.substr(2, 2) != std::string_view("\0\0", 2);
  const bool bom_be = b.substr(0, 2) == "\xFE\xFF";
  if (bom_le || bom_be) {
    // A mark alone is two bytes of chance (once in 32,768 random documents): what follows
    // must be text too, which 47 random units are about once in 700 (a surrogate out of
    // pair, a control or a private-use unit is all but certain among them); so one random
    // document in ~24 million is read as UTF-16, at no cost: no other decoder reads random
    // bytes, and the raw layer is scanned either way. A mark and nothing more is text.
    r.utf16 = Stats(b.substr(2), bom_be).text;
    r.big_endian = bom_be;
    return r;
  }
  const UnitStats le = Stats(b, false), be = Stats(b, true);
  const std::string charset = Charset(hint.content_type);
  if (charset == "utf-16" || charset == "utf-16le" || charset == "utf-16be" || charset == "utf16" ||
      charset == "utf16le" || charset == "utf16be") {
    // The label is never trusted over the bytes: a body sent as charset=utf-16 that is
    // ASCII (a form with %XX escapes) would otherwise be transcoded to CJK nonsense and
    // its escapes left undecoded. So the bytes must be text in the labelled order and
    // hold at least one ASCII character, whose NUL byte ASCII and UTF-8 text never have.
    // An unmarked "utf-16" is big-endian (RFC 2781) unless its NULs say otherwise.
    bool big = charset.ends_with("be");
    if (!charset.ends_with("le") && !big) big = !(le.ascii > be.ascii);
    const UnitStats& s = big ? be : le;
    r.utf16 = s.text && s.ascii > 0;
    r.big_endian = big;
    return r;
  }
  // No mark, no label: at least kMinSniffUnits code units, all text, at least half of
  // them ASCII (a NUL in every other byte). The NULs decide the byte order: ASCII read in
  // the wrong order is U+xx00, never ASCII.
  for (const bool big : {false, true}) {
    const UnitStats& s = big ? be : le;
    if (s.units >= kMinSniffUnits && s.text && 2 * s.ascii >= s.units) {
      r.utf16 = true;
      r.big_endian = big;
      return r;
    }
  }
  return r;
}

OrigSpan Union(OrigSpan a, OrigSpan b) { return {std::min(a.begin, b.begin), std::max(a.end, b.end)}; }

class Utf16Text final : public Decoder {
 public:
  Utf16Text(Layer& out, bool big_endian, const DocHint& out_hint) : out_(out), big_(big_endian) {
    out_.BeginDocument(out_hint);
  }

  void Put(const Src& in) override {
    if (in.empty() || out_.ctx().stopped) return;
    const std::string_view b = in.bytes();
    size_t i = 0;
    if (has_byte_) {  // a code unit cut by the last read
      const char pair[2] = {byte_, b[0]};
      has_byte_ = false;
      Unit(UnitAt(std::string_view(pair, 2), 0, big_), Union(byte_span_, in.SpanOf(0, 1)));
      i = 1;
    }
    for (; i + 2 <= b.size(); i += 2) {
      Unit(UnitAt(b, i, big_), in.SpanOf(i, i + 2));
      if (out_buf_.size() >= kFlushBytes) {
        Flush();
        if (out_.ctx().stopped) return;
      }
    }
    if (i < b.size()) {
      has_byte_ = true;
      byte_ = b[i];
      byte_span_ = in.SpanOf(i, i + 1);
    }
    Flush();
  }

  void Finish() override {
    if (!out_.ctx().stopped) {
      // A high surrogate with no low one after it is a character lost: U+FFFD keeps its
      // place. An odd last byte is half a code unit, no character: it is dropped, not
      // reported as undecodable (which would block the message in enforce mode for one
      // byte that can carry nothing, and that the raw layer has scanned already).
      if (has_high_) Char(0xFFFD, high_span_);
      has_high_ = false;
      CloseWord();
      Flush();
    }
    has_byte_ = false;
    out_.EndDocument();
  }

  size_t memory_bytes() const override {
    return sizeof(*this) + out_buf_.capacity() + runs_.capacity() * sizeof(Run) + word_.capacity();
  }

  // A cut code unit, a high surrogate waiting for its pair and the open word: each is
  // output still to come, mapped at or after its own span's begin.
  uint64_t held_from() const override {
    uint64_t h = kNothingHeld;
    if (has_byte_) h = std::min(h, byte_span_.begin);
    if (has_high_) h = std::min(h, high_span_.begin);
    if (!word_.empty()) h = std::min(h, word_span_.begin);
    return h;
  }

 private:
  void Unit(uint32_t u, OrigSpan span) {
    if (has_high_) {
      has_high_ = false;
      if (IsLowSurrogate(u)) {
        Char(0x10000 + ((high_ - 0xD800) << 10) + (u - 0xDC00), Union(high_span_, span));
        return;
      }
      Char(0xFFFD, high_span_);  // unpaired: the unit after it is read on its own
    }
    if (IsHighSurrogate(u)) {
      has_high_ = true;
      high_ = u;
      high_span_ = span;
      return;
    }
    if (IsLowSurrogate(u)) {
      Char(0xFFFD, span);
      return;
    }
    // The byte-order mark opens the text; it is not part of it.
    if (u == 0xFEFF && !seen_unit_) {
      seen_unit_ = true;
      return;
    }
    Char(u, span);
  }

  void Char(uint32_t cp, OrigSpan span) {
    seen_unit_ = true;
    char enc[4];
    const size_t n = EncodeUtf8(cp, enc);
    const bool word = cp >= 0x80 || (cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z');
    if (!word) {
      CloseWord();
      AddRun(std::string_view(enc, n), span);
      return;
    }
    if (word_.size() + n > kMaxWord) CloseWord();
    word_span_ = word_.empty() ? span : Union(word_span_, span);
    word_.append(enc, n);
  }

  void CloseWord() {
    if (word_.empty()) return;
    AddRun(word_, word_span_);
    word_.clear();
  }

  void AddRun(std::string_view bytes, OrigSpan span) {
    runs_.push_back(Run{out_buf_.size(), bytes.size(), span.begin, span.end, false});
    out_buf_.append(bytes);
  }

  void Flush() {
    if (out_buf_.empty()) return;
    out_.Emit(Src(out_buf_.data(), 0, out_buf_.size(), runs_));
    out_buf_.clear();
    runs_.clear();
  }

  Layer& out_;
  const bool big_;
  bool seen_unit_ = false;  // a code unit was read (a later U+FEFF is text)
  bool has_byte_ = false;   // the first byte of a unit the last read cut
  char byte_ = 0;
  OrigSpan byte_span_;
  bool has_high_ = false;   // a high surrogate waiting for the low one
  uint32_t high_ = 0;
  OrigSpan high_span_;
  std::string word_;        // the open word, not yet a run
  OrigSpan word_span_;
  std::string out_buf_;     // closed runs not yet emitted
  std::vector<Run> runs_;
};

}  // namespace

DecoderPtr MakeUtf16Text(const DocHint& hint, std::string_view sniff, Layer& out) {
  const Utf16Sniff s = SniffUtf16(hint, sniff);
  if (!s.utf16) return nullptr;
  DocHint next;
  next.content_type = WithoutCharset(hint.content_type);
  next.is_url = hint.is_url;
  // The name is not passed on: it would choose by what the file was (a BOM-less UTF-16
  // "data.xml" is XML declared encoding="UTF-16"), and expat refuses that declaration on
  // the UTF-8 it now is, as undecodable. The text is read as text: tags and values.
  // (A UTF-16 XML with its mark never comes here: expat reads it itself.)
  return std::make_unique<Utf16Text>(out, s.big_endian, next);
}

bool LooksLikeUtf16(const DocHint& hint, std::string_view sniff) { return SniffUtf16(hint, sniff).utf16; }

DecoderPtr MakeUtf16LeRun(Layer& out) { return std::make_unique<Utf16Text>(out, false, DocHint{}); }

}  // namespace egressguard::dlp::decode
