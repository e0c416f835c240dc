// PDF read as text, as a stream: the text its content streams show.
//
// The file is read front to back without the cross-reference table (which is at the end):
// each "N G obj" ... "endobj" is looked at as it passes. A stream ("stream" ... "endstream",
// found by its end keyword rather than its /Length, which may be an indirect object not
// seen yet) is decoded through its filters when they are ones text comes in (FlateDecode,
// ASCII85Decode, ASCIIHexDecode, or none) and skipped otherwise (images, font programs,
// object and cross-reference streams). A decoded stream that is a CMap is kept as a
// glyph-code -> Unicode table; any other is read as a content stream: the strings shown by
// Tj, TJ, ' and " are text, a TJ kern wider than 200/1000 em is a space, and ET, T*, ', ",
// and a Td/TD/Tm to another line end a line.
//
// Fonts. A string's bytes are glyph codes of the font chosen by Tf. When the font has a
// /ToUnicode CMap (subset TrueType and CID fonts, as LibreOffice, cairo or reportlab's TTF
// support write them) the codes are mapped through it; a simple font without one is read
// as Latin-1 (the standard 14 fonts reportlab uses: WinAnsi, which matches on the ASCII
// range), a CID font without one gives nothing. Fonts are found by resource name: a
// "/Name N 0 R" pair anywhere in the file maps the name to object N (writers keep these
// names unique per file; a file that reuses a name for two fonts on two pages is read
// with the last one). Writers that put the fonts after the pages (LibreOffice, cairo)
// show text whose font is not known yet: strings that are readable as Latin-1 are written
// at once, the others (glyph ids) wait, bounded, and are written when their CMap arrives.
//
// Encryption. An encryption dictionary (/Filter /Standard with /O and /U) or a trailer or
// cross-reference stream naming /Encrypt makes the file "encrypted PDF" (reported once);
// its streams are then not decoded. A stream that fails to inflate is undecodable, but that
// is reported at the end, only if the file did not turn out to be encrypted (reportlab and
// others put /Encrypt in the trailer, after the streams).
//
// Mapping. Text maps to the original span of the input being read when it was written,
// from where the content parser's unfinished token or operands began (coarse).

#include <zlib.h>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <unordered_map>

#include "dlp/decode/decoders.h"
#include "dlp/decode/documents_internal.h"
#include "dlp/decode/utf8.h"

namespace egressguard::dlp::decode {
namespace {

constexpr size_t kMaxObjectText = 64 << 10;   // an object's dictionary kept for a look
constexpr size_t kMaxCmapText = 512 << 10;     // a CMap stream kept to be parsed at its end
constexpr size_t kMaxOperandBytes = 256 << 10; // strings waiting for their operator
constexpr size_t kMaxToken = 256;              // a name, number or operator
constexpr size_t kMaxCmapEntries = 1 << 16;    // all CMaps of the file together
constexpr size_t kCmapEntryBytes = 64;         // what one entry costs, charged to the memory budget
constexpr size_t kMaxDeferredBytes = 256 << 10; // text waiting for its font
constexpr size_t kMaxFontNames = 4096;
constexpr size_t kInflateChunk = 16 << 10;
constexpr size_t kFlushAt = 16 << 10;
constexpr uint64_t kBombMinOutput = 1 << 20;
constexpr double kKernSpace = -200;            // TJ adjustment (1/1000 em) read as a space

bool IsWhite(unsigned char c) { return c == 0 || c == 9 || c == 10 || c == 12 || c == 13 || c == 32; }
bool IsDelim(unsigned char c) {
  return c == '(' || c == ')' || c == '<' || c == '>' || c == '[' || c == ']' || c == '{' || c == '}' || c == '/' ||
         c == '%';
}
int HexVal(unsigned char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// UTF-16BE (a CMap destination) -> UTF-8; unpaired surrogates are dropped.
std::string Utf16BeToUtf8(std::string_view b) {
  std::string out;
  for (size_t i = 0; i + 1 < b.size(); i += 2) {
    uint32_t u = (static_cast<uint8_t>(b[i]) << 8) | static_cast<uint8_t>(b[i + 1]);
    if (u >= 0xD800 && u < 0xDC00 && i + 3 < b.size()) {
      const uint32_t lo = (static_cast<uint8_t>(b[i + 2]) << 8) | static_cast<uint8_t>(b[i + 3]);
      if (lo >= 0xDC00 && lo < 0xE000) {
        AppendUtf8(&out, 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00));
        i += 2;
        continue;
      }
    }
    if (u >= 0xD800 && u < 0xE000) continue;
    if (u != 0) AppendUtf8(&out, u);
  }
  return out;
}

// Latin-1 -> UTF-8, for simple fonts without a CMap.
std::string Latin1ToUtf8(std::string_view b) {
  std::string out;
  out.reserve(b.size());
  for (unsigned char c : b) {
    if (c < 0x20 && c != '\t') continue;
    AppendUtf8(&out, c);
  }
  return out;
}

// Bytes that read the same in any simple font: printable ASCII. Glyph ids of subset and
// CID fonts are mostly control characters or past 0x7F, where encodings differ.
bool PrintableAscii(std::string_view b) {
  return std::all_of(b.begin(), b.end(), [](char ch) {
    const auto c = static_cast<unsigned char>(ch);
    return (c >= 0x20 && c < 0x7F) || c == '\t' || c == '\n' || c == '\r';
  });
}

// ------------------------------------------------------------------ dictionary text

// Tokens of PDF object syntax, enough to read dictionaries and CMaps: names ("/F1"),
// numbers and keywords, literal and hex strings (decoded bytes), and the delimiters
// "<<", ">>", "[", "]".
struct Tok {
  enum Kind { kName, kWord, kString, kHex, kOpen, kClose, kArrOpen, kArrClose, kEnd } kind = kEnd;
  std::string text;
};

class Lexer {
 public:
  explicit Lexer(std::string_view s) : s_(s) {}

  Tok Next() {
    Tok t;
    while (i_ < s_.size()) {
      const auto c = static_cast<unsigned char>(s_[i_]);
      if (IsWhite(c)) {
        ++i_;
      } else if (c == '%') {
        while (i_ < s_.size() && s_[i_] != '\n' && s_[i_] != '\r') ++i_;
      } else {
        break;
      }
    }
    if (i_ >= s_.size()) return t;
    const auto c = static_cast<unsigned char>(s_[i_]);
    if (c == '<' && i_ + 1 < s_.size() && s_[i_ + 1] == '<') {
      i_ += 2;
      t.kind = Tok::kOpen;
    } else if (c == '>' && i_ + 1 < s_.size() && s_[i_ + 1] == '>') {
      i_ += 2;
      t.kind = Tok::kClose;
    } else if (c == '[') {
      ++i_;
      t.kind = Tok::kArrOpen;
    } else if (c == ']') {
      ++i_;
      t.kind = Tok::kArrClose;
    } else if (c == '<') {
      t.kind = Tok::kHex;
      ++i_;
      int hi = -1;
      while (i_ < s_.size() && s_[i_] != '>') {
        const int v = HexVal(static_cast<unsigned char>(s_[i_++]));
        if (v < 0) continue;
        if (hi < 0) {
          hi = v;
        } else {
          t.text.push_back(static_cast<char>(hi * 16 + v));
          hi = -1;
        }
      }
      if (hi >= 0) t.text.push_back(static_cast<char>(hi * 16));
      ++i_;
    } else if (c == '(') {
      t.kind = Tok::kString;
      ++i_;
      int depth = 1;
      while (i_ < s_.size()) {
        const char d = s_[i_++];
        if (d == '\\' && i_ < s_.size()) {
          t.text.push_back(s_[i_++]);  // dictionaries: the escape's exact meaning is not needed
        } else if (d == '(') {
          ++depth;
          t.text.push_back(d);
        } else if (d == ')') {
          if (--depth == 0) break;
          t.text.push_back(d);
        } else {
          t.text.push_back(d);
        }
      }
    } else {
      t.kind = c == '/' ? Tok::kName : Tok::kWord;
      if (c == '/') ++i_;
      while (i_ < s_.size() && !IsWhite(static_cast<unsigned char>(s_[i_])) &&
             !IsDelim(static_cast<unsigned char>(s_[i_]))) {
        t.text.push_back(s_[i_++]);
      }
      if (t.kind == Tok::kWord && t.text.empty()) {
        ++i_;  // a stray ')' or '>'
        t.text = "?";
      }
    }
    return t;
  }

 private:
  std::string_view s_;
  size_t i_ = 0;
};

bool IsInteger(const std::string& s) {
  return !s.empty() && s.size() <= 10 && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// What a stream's or object's dictionary says that matters here.
struct DictFacts {
  std::vector<std::string> filters;
  std::string type, subtype;
  bool predictor = false;        // /DecodeParms with a /Predictor: images, xref streams
  bool font_program = false;     // /Length1, /Length2, /Length3: an embedded font
  bool encrypt_ref = false;      // /Encrypt (trailer, xref stream)
  bool encryption_dict = false;  // /Filter /Standard ... /O ... /U: the encryption dictionary
  uint32_t to_unicode = 0;       // /ToUnicode N 0 R
  bool font = false;
  std::vector<std::pair<std::string, uint32_t>> name_refs;  // "/Key N G R" pairs
};

DictFacts ReadDict(std::string_view text) {
  DictFacts f;
  Lexer lx(text);
  // A sliding window of the last four tokens is enough for "/Key N G R" and "/Key /Value".
  std::vector<Tok> w;
  bool has_o = false, has_u = false, standard = false;
  std::string key;  // the last name seen at the start of an entry
  int filter_array = 0;
  for (Tok t = lx.Next(); t.kind != Tok::kEnd; t = lx.Next()) {
    if (filter_array == 1) {
      if (t.kind == Tok::kName) f.filters.push_back(t.text);
      if (t.kind == Tok::kArrClose) filter_array = 2;
    }
    if (!w.empty() && w.back().kind == Tok::kName) {
      const std::string& k = w.back().text;
      if (k == "Filter") {
        if (t.kind == Tok::kName) {
          f.filters.push_back(t.text);
          if (t.text == "Standard") standard = true;
        } else if (t.kind == Tok::kArrOpen && filter_array == 0) {
          filter_array = 1;
        }
      } else if (k == "Type" && t.kind == Tok::kName && f.type.empty()) {
        f.type = t.text;
      } else if (k == "Subtype" && t.kind == Tok::kName && f.subtype.empty()) {
        f.subtype = t.text;
      }
    }
    if (t.kind == Tok::kName) {
      if (t.text == "Predictor") f.predictor = true;
      if (t.text == "Length1" || t.text == "Length2" || t.text == "Length3") f.font_program = true;
      if (t.text == "Encrypt") f.encrypt_ref = true;
      if (t.text == "O") has_o = true;
      if (t.text == "U") has_u = true;
      if (t.text == "BaseFont" || t.text == "FontDescriptor" || t.text == "DescendantFonts") f.font = true;
    }
    if (t.kind == Tok::kWord && t.text == "R" && w.size() >= 3 && w[w.size() - 3].kind == Tok::kName &&
        IsInteger(w[w.size() - 2].text) && IsInteger(w[w.size() - 1].text)) {
      const std::string& name = w[w.size() - 3].text;
      const uint32_t obj = static_cast<uint32_t>(std::stoul(w[w.size() - 2].text));
      if (name == "ToUnicode") f.to_unicode = obj;
      f.name_refs.emplace_back(name, obj);
    }
    w.push_back(std::move(t));
    if (w.size() > 4) w.erase(w.begin());
  }
  if (f.type == "Font") f.font = true;
  f.encryption_dict = standard && has_o && has_u;
  return f;
}

// ------------------------------------------------------------------ CMaps

struct CMap {
  size_t code_len = 1;  // bytes per glyph code
  std::unordered_map<uint32_t, std::string> map;
};

// beginbfchar / beginbfrange of a ToUnicode CMap. Returns the entries added.
size_t ParseCMap(std::string_view text, CMap* cm, size_t budget) {
  Lexer lx(text);
  std::vector<Tok> ops;
  enum { kNone, kSpace, kChar, kRange } section = kNone;
  size_t added = 0, min_len = 0;
  auto code_of = [](const std::string& b) {
    uint32_t v = 0;
    for (size_t i = 0; i < b.size() && i < 4; ++i) v = (v << 8) | static_cast<uint8_t>(b[i]);
    return v;
  };
  for (Tok t = lx.Next(); t.kind != Tok::kEnd && added < budget; t = lx.Next()) {
    if (t.kind == Tok::kWord) {
      if (t.text == "begincodespacerange") section = kSpace;
      else if (t.text == "beginbfchar") section = kChar;
      else if (t.text == "beginbfrange") section = kRange;
      else if (t.text.rfind("end", 0) == 0) section = kNone;
      ops.clear();
      continue;
    }
    if (section == kNone) continue;
    if (section == kRange && t.kind == Tok::kArrOpen) {
      // <lo> <hi> [<dst0> <dst1> ...]
      std::vector<std::string> dsts;
      for (Tok a = lx.Next(); a.kind != Tok::kEnd && a.kind != Tok::kArrClose; a = lx.Next()) {
        if (a.kind == Tok::kHex) dsts.push_back(a.text);
      }
      if (ops.size() >= 2) {
        const uint32_t lo = code_of(ops[ops.size() - 2].text), hi = code_of(ops[ops.size() - 1].text);
        for (uint32_t c = lo, k = 0; c <= hi && k < dsts.size() && added < budget; ++c, ++k) {
          cm->map[c] = Utf16BeToUtf8(dsts[k]);
          ++added;
        }
      }
      ops.clear();
      continue;
    }
    if (t.kind != Tok::kHex && t.kind != Tok::kName) continue;
    ops.push_back(std::move(t));
    if (section == kSpace && ops.size() == 2) {
      cm->code_len = std::clamp<size_t>(ops[0].text.size(), 1, 4);
      ops.clear();
    } else if (section == kChar && ops.size() == 2) {
      if (ops[0].kind == Tok::kHex && ops[1].kind == Tok::kHex) {
        if (min_len == 0 || ops[0].text.size() < min_len) min_len = ops[0].text.size();
        cm->map[code_of(ops[0].text)] = Utf16BeToUtf8(ops[1].text);
        ++added;
      }
      ops.clear();
    } else if (section == kRange && ops.size() == 3) {
      if (ops[0].kind == Tok::kHex && ops[1].kind == Tok::kHex && ops[2].kind == Tok::kHex && !ops[2].text.empty()) {
        const uint32_t lo = code_of(ops[0].text), hi = code_of(ops[1].text);
        if (min_len == 0 || ops[0].text.size() < min_len) min_len = ops[0].text.size();
        std::string dst = ops[2].text;
        for (uint32_t c = lo; c <= hi && added < budget; ++c) {
          cm->map[c] = Utf16BeToUtf8(dst);
          ++added;
          // The next code maps to the destination's last byte plus one.
          auto& last = reinterpret_cast<unsigned char&>(dst.back());
          ++last;
          if (c == UINT32_MAX) break;
        }
      }
      ops.clear();
    }
  }
  return added;
}

// ------------------------------------------------------------------ the decoder

class PdfText final : public Decoder {
 public:
  explicit PdfText(Layer& out) : out_(out), ctx_(out.ctx()) {
    DocHint text;
    text.content_type = "text/plain; charset=utf-8";
    out_.BeginDocument(text);
  }

  ~PdfText() override {
    EndInflate();
    ctx_.codec_bytes -= std::min(ctx_.codec_bytes, cmap_charged_);
  }

  void Put(const Src& in) override {
    if (in.empty() || ctx_.stopped || done_) return;
    if (!started_) {
      started_ = true;
      first_ = in.SpanOf(0, 1).begin;
    }
    constexpr size_t kPiece = 64 << 10;
    for (size_t pos = 0; pos < in.size() && !ctx_.stopped && !done_; pos += kPiece) {
      const size_t end = std::min(in.size(), pos + kPiece);
      piece_ = in.SpanOf(pos, end);
      last_end_ = std::max(last_end_, piece_.end);
      const bool held_before = hold_ != kNothingHeld;
      const uint64_t hold_at_start = hold_;
      Scan(in.bytes().substr(pos, end - pos));
      Flush();
      // Unfinished state (a token, operands, a possible "endstream") holds output that is
      // still to come: from the piece where it began.
      if (!HasPendingState()) hold_ = kNothingHeld;
      else hold_ = held_before ? hold_at_start : piece_.begin;
    }
  }

  void Finish() override {
    if (started_ && !done_ && !ctx_.stopped) {
      if (in_stream_) {
        StreamFailed("PDF ends inside a stream");
        EndStream();
      }
      if (!encrypted_ && corrupt_) ctx_.Undecodable(corrupt_span_, corrupt_why_);
    }
    Flush();
    out_.EndDocument();
    EndInflate();
    done_ = true;
  }

  size_t memory_bytes() const override {
    size_t n = sizeof(*this) + obj_.capacity() + cmap_text_.capacity() + pending_sniff_.capacity() +
               carry_.capacity() + operand_bytes_ + out_buf_.memory_bytes() + deferred_bytes_ + tok_.capacity() +
               str_.capacity() + font_names_.size() * 64;  // CMaps: in Context::codec_bytes
    if (inflate_live_) n += kInflateChunk;
    return n;
  }

  uint64_t held_from() const override { return done_ ? kNothingHeld : std::min(hold_, out_buf_.orig_begin()); }

 private:
  struct Operand {
    enum Kind { kNumber, kName, kString, kArray } kind = kNumber;
    double number = 0;
    std::string bytes;                                // kName, kString
    std::vector<std::pair<bool, std::string>> parts;  // kArray: (is string, bytes or number text)
  };

  // ---------------------------------------------------------------- file level

  void Scan(std::string_view b) {
    size_t i = 0;
    while (i < b.size() && !done_ && !ctx_.stopped) {
      if (in_stream_) {
        i += StreamData(b.substr(i));
        continue;
      }
      if (after_stream_kw_) {
        // "stream" CR LF: the LF is not data.
        after_stream_kw_ = false;
        if (b[i] == '\n') ++i;
        BeginStream();
        continue;
      }
      const auto c = static_cast<unsigned char>(b[i]);
      if (top_string_ > 0) {
        // A literal string outside streams (a /Title): skipped, so a keyword in it is text.
        if (top_escape_) top_escape_ = false;
        else if (c == '\\') top_escape_ = true;
        else if (c == '(') ++top_string_;
        else if (c == ')') --top_string_;
        KeepObj(b[i++]);
        continue;
      }
      if (top_comment_) {
        if (c == '\n' || c == '\r') top_comment_ = false;
        ++i;
        continue;
      }
      if (!IsWhite(c) && !IsDelim(c)) {
        if (top_tok_.size() < 32) top_tok_.push_back(static_cast<char>(c));
        KeepObj(b[i++]);
        continue;
      }
      if (!top_tok_.empty()) TopToken();
      top_name_ = c == '/';
      if (c == '(') top_string_ = 1;
      if (c == '%') top_comment_ = true;
      KeepObj(b[i++]);
      if (stream_kw_) {
        // The keyword's end of line was this byte: CR may be followed by LF.
        stream_kw_ = false;
        if (c == '\r') after_stream_kw_ = true;
        else BeginStream();
      }
    }
  }

  void KeepObj(char c) {
    if ((in_obj_ || in_trailer_) && obj_.size() < kMaxObjectText) obj_.push_back(c);
  }

  void TopToken() {
    std::string tok = std::move(top_tok_);
    top_tok_.clear();
    if (top_name_) {
      // A name ("/Type") is never a keyword.
      tok.insert(tok.begin(), '/');
    } else if (tok == "obj") {
      // "N G obj"
      if (IsInteger(tok2_) && IsInteger(tok1_)) cur_obj_ = static_cast<uint32_t>(std::stoul(tok2_));
      in_obj_ = true;
      in_trailer_ = false;
      obj_.clear();
    } else if (tok == "endobj") {
      if (in_obj_) Object();
      in_obj_ = false;
      obj_.clear();
    } else if (tok == "stream") {
      stream_facts_ = ReadDict(obj_);
      obj_.clear();
      stream_kw_ = true;
    } else if (tok == "trailer") {
      in_trailer_ = true;
      in_obj_ = false;
      obj_.clear();
    } else if (tok == "startxref") {
      if (in_trailer_ && ReadDict(obj_).encrypt_ref) Encrypted();
      in_trailer_ = false;
      obj_.clear();
    }
    tok2_ = std::move(tok1_);
    tok1_ = std::move(tok);
  }

  // What a dictionary teaches about fonts: resource names and font objects.
  void Learn(const DictFacts& f) {
    bool learned = false;
    for (const auto& [name, obj] : f.name_refs) {
      if (font_names_.size() >= kMaxFontNames && font_names_.count(name) == 0) continue;
      font_names_[name] = obj;
      learned = true;
    }
    if (f.font) {
      Font& font = fonts_[cur_obj_];
      font.seen = true;
      font.to_unicode = f.to_unicode;
      font.cid = f.subtype == "Type0";
      learned = true;
    }
    if (learned && !deferred_.empty()) ReleaseDeferred();
  }

  void Object() {
    const DictFacts f = ReadDict(obj_);
    if (f.encryption_dict) Encrypted();
    Learn(f);
  }

  void Encrypted() {
    if (encrypted_) return;
    encrypted_ = true;
    ctx_.Encrypted({first_, last_end_}, "encrypted PDF");
  }

  // ---------------------------------------------------------------- streams

  void BeginStream() {
    in_stream_ = true;
    carry_.clear();
    const DictFacts& f = stream_facts_;
    mode_ = Mode::kSkip;
    chain_.clear();
    Learn(f);  // a form's or page's inline /Resources
    if (encrypted_ || f.encryption_dict) return;
    if (f.type == "XRef") {
      if (f.encrypt_ref) Encrypted();
      return;
    }
    if (f.type == "ObjStm" || f.subtype == "Image" ||
        f.type == "Metadata" || f.font_program || f.predictor || f.subtype == "Type1C" ||
        f.subtype == "CIDFontType0C" || f.subtype == "OpenType" || f.type == "EmbeddedFile") {
      return;
    }
    for (const std::string& name : f.filters) {
      if (name == "FlateDecode" || name == "Fl") chain_.push_back(Filter::kFlate);
      else if (name == "ASCII85Decode" || name == "A85") chain_.push_back(Filter::kA85);
      else if (name == "ASCIIHexDecode" || name == "AHx") chain_.push_back(Filter::kHex);
      else return;  // images (DCT, JPX, CCITT, JBIG2), LZW, RunLength, Crypt: no text here
    }
    mode_ = Mode::kSniff;
    stream_obj_ = cur_obj_;
    a85_n_ = 0;
    a85_done_ = hex_done_ = false;
    hex_hi_ = -1;
    pending_sniff_.clear();
    cmap_text_.clear();
    stream_in_ = stream_out_ = 0;
    stream_failed_ = false;
    if (std::find(chain_.begin(), chain_.end(), Filter::kFlate) != chain_.end()) StartInflate();
    ResetContent();
  }

  // Stream bytes up to "endstream"; returns how many of b were used. The last bytes of a
  // piece that may begin the keyword wait in carry_ for the next piece.
  size_t StreamData(std::string_view b) {
    static constexpr std::string_view kEnd = "endstream";
    if (!carry_.empty()) {
      if (b.size() < kEnd.size() - 1) {
        // A short piece: carry and piece are looked at together.
        std::string t = carry_ + std::string(b);
        carry_.clear();
        const size_t at = t.find(kEnd);
        if (at != std::string::npos) {
          Data(std::string_view(t).substr(0, at));
          EndStream();
          return at + kEnd.size() - (t.size() - b.size());
        }
        const size_t keep = KeywordPrefixAtEnd(t);
        Data(std::string_view(t).substr(0, t.size() - keep));
        carry_ = t.substr(t.size() - keep);
        return b.size();
      }
      const std::string joined = carry_ + std::string(b.substr(0, kEnd.size() - 1));
      const size_t at = joined.find(kEnd);
      if (at != std::string::npos && at < carry_.size()) {
        Data(std::string_view(carry_).substr(0, at));
        const size_t used = at + kEnd.size() - carry_.size();
        carry_.clear();
        EndStream();
        return used;
      }
      const std::string old = std::move(carry_);
      carry_.clear();
      Data(old);
    }
    const size_t at = b.find(kEnd);
    if (at != std::string_view::npos) {
      Data(b.substr(0, at));
      EndStream();
      return at + kEnd.size();
    }
    const size_t keep = KeywordPrefixAtEnd(b);
    Data(b.substr(0, b.size() - keep));
    carry_ = std::string(b.substr(b.size() - keep));
    return b.size();
  }

  // Length of the longest end of b that "endstream" starts with (shorter than the keyword).
  static size_t KeywordPrefixAtEnd(std::string_view b) {
    static constexpr std::string_view kEnd = "endstream";
    for (size_t k = std::min(b.size(), kEnd.size() - 1); k > 0; --k) {
      if (b.substr(b.size() - k) == kEnd.substr(0, k)) return k;
    }
    return 0;
  }

  void EndStream() {
    in_stream_ = false;
    carry_.clear();
    if (mode_ == Mode::kSkip) return;
    if (!stream_failed_) {
      FinishFilters();
      if (mode_ == Mode::kSniff) Decide();
      if (mode_ == Mode::kCmap) {
        CMap& cm = cmaps_[stream_obj_];
        // Entries are charged to the message's memory budget: a file of huge CMaps gets
        // as many as fit, the rest of its glyphs read as nothing.
        const size_t room = ctx_.limits.max_memory_bytes > ctx_.codec_bytes
                                ? (ctx_.limits.max_memory_bytes - ctx_.codec_bytes) / kCmapEntryBytes
                                : 0;
        const size_t budget = std::min(room, kMaxCmapEntries > cmap_entries_ ? kMaxCmapEntries - cmap_entries_ : 0);
        const size_t added = ParseCMap(cmap_text_, &cm, budget);
        cmap_entries_ += added;
        cmap_charged_ += added * kCmapEntryBytes;
        ctx_.codec_bytes += added * kCmapEntryBytes;
        cmap_text_.clear();
        cmap_text_.shrink_to_fit();
        if (!deferred_.empty()) ReleaseDeferred();
      } else if (mode_ == Mode::kContent) {
        ContentEnd();
      }
    }
    EndInflate();
    mode_ = Mode::kSkip;
  }

  enum class Filter { kFlate, kA85, kHex };
  enum class Mode { kSkip, kSniff, kCmap, kContent };

  // Raw stream bytes through the filter chain.
  void Data(std::string_view b) {
    if (mode_ == Mode::kSkip || stream_failed_ || b.empty()) return;
    stream_in_ += b.size();
    Stage(0, b);
  }

  void Stage(size_t k, std::string_view b) {
    if (stream_failed_ || b.empty() || ctx_.stopped) return;
    if (k == chain_.size()) {
      Decoded(b);
      return;
    }
    switch (chain_[k]) {
      case Filter::kA85: {
        // What decoded before a bad character goes on first, as it would have had the
        // input been cut there.
        std::string out;
        const bool ok = A85(b, &out);
        Stage(k + 1, out);
        if (!ok) StreamFailed("corrupt ASCII85 data in a PDF stream");
        break;
      }
      case Filter::kHex: {
        std::string out;
        for (unsigned char c : b) {
          if (hex_done_) break;
          if (c == '>') {
            hex_done_ = true;
            break;
          }
          const int v = HexVal(c);
          if (v < 0) continue;
          if (hex_hi_ < 0) {
            hex_hi_ = v;
          } else {
            out.push_back(static_cast<char>(hex_hi_ * 16 + v));
            hex_hi_ = -1;
          }
        }
        Stage(k + 1, out);
        break;
      }
      case Filter::kFlate:
        Inflate(k, b);
        break;
    }
  }

  // ASCII85 (PDF 7.4.3) into *out; false at a character or group that cannot be.
  bool A85(std::string_view b, std::string* out) {
    auto flush_group = [&](int n) {
      // n chars (2..5) of a group: padded with 'u', n - 1 bytes out.
      for (int j = n; j < 5; ++j) a85_[j] = 'u' - '!';
      uint64_t v = 0;
      for (int j = 0; j < 5; ++j) v = v * 85 + a85_[j];
      if (v > UINT32_MAX) return false;
      for (int j = 0; j < n - 1; ++j) out->push_back(static_cast<char>((v >> (24 - 8 * j)) & 0xff));
      return true;
    };
    for (unsigned char c : b) {
      if (a85_done_) return true;
      if (IsWhite(c)) continue;
      if (c == '~') {
        a85_done_ = true;
        const bool ok = a85_n_ <= 1 || flush_group(a85_n_);
        a85_n_ = 0;
        return ok;
      }
      if (c == 'z' && a85_n_ == 0) {
        out->append(4, '\0');
        continue;
      }
      if (c < '!' || c > 'u') return false;
      a85_[a85_n_++] = static_cast<uint8_t>(c - '!');
      if (a85_n_ == 5) {
        a85_n_ = 0;
        if (!flush_group(5)) return false;
      }
    }
    return true;
  }

  void StartInflate() {
    z_ = {};
    z_.zalloc = [](voidpf o, uInt items, uInt size) -> voidpf {
      return ChargedAlloc(static_cast<Context*>(o), static_cast<size_t>(items) * size);
    };
    z_.zfree = [](voidpf, voidpf p) { ChargedFree(p); };
    z_.opaque = &ctx_;
    if (inflateInit(&z_) != Z_OK) {
      StreamFailed("PDF stream: memory limit");
      return;
    }
    inflate_live_ = true;
    inflate_ended_ = false;
    if (!zbuf_) zbuf_.reset(new char[kInflateChunk]);
  }

  void EndInflate() {
    if (inflate_live_) inflateEnd(&z_);
    inflate_live_ = false;
  }

  void Inflate(size_t k, std::string_view b) {
    if (!inflate_live_ || inflate_ended_) return;  // data after the end of the zlib stream: ignored
    z_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(b.data()));
    z_.avail_in = static_cast<uInt>(b.size());
    while (!stream_failed_ && !ctx_.stopped) {
      z_.next_out = reinterpret_cast<Bytef*>(zbuf_.get());
      z_.avail_out = kInflateChunk;
      const int r = inflate(&z_, Z_NO_FLUSH);
      const size_t produced = kInflateChunk - z_.avail_out;
      if (r == Z_MEM_ERROR) {
        StreamFailed("PDF stream: memory limit");
        return;
      }
      if (r != Z_OK && r != Z_STREAM_END && r != Z_BUF_ERROR) {
        StreamFailed(fmt::format("corrupt FlateDecode stream in PDF object {}: {}", stream_obj_,
                                 z_.msg ? z_.msg : "corrupt data"));
        return;
      }
      stream_out_ += produced;
      if (stream_out_ >= kBombMinOutput && stream_out_ / ctx_.limits.max_expansion_ratio > stream_in_) {
        StreamFailed(fmt::format("PDF stream expands more than {}x (decompression bomb)", ctx_.limits.max_expansion_ratio));
        return;
      }
      if (produced > 0) Stage(k + 1, std::string_view(zbuf_.get(), produced));
      if (r == Z_STREAM_END) {
        inflate_ended_ = true;
        return;
      }
      if (z_.avail_in == 0 && z_.avail_out > 0) return;
      if (r == Z_BUF_ERROR) return;
    }
  }

  void FinishFilters() {
    // A trailing partial ASCII85 group without "~>".
    if (std::find(chain_.begin(), chain_.end(), Filter::kA85) != chain_.end() && !a85_done_ && a85_n_ > 1) {
      std::string out;
      const bool ok = A85("~>", &out);
      auto it = std::find(chain_.begin(), chain_.end(), Filter::kA85);
      Stage(static_cast<size_t>(it - chain_.begin()) + 1, out);
      if (!ok) StreamFailed("corrupt ASCII85 data in a PDF stream");
    }
  }

  void StreamFailed(const std::string& why) {
    stream_failed_ = true;
    if (!corrupt_) {
      corrupt_ = true;
      corrupt_span_ = {first_, piece_.end};
      corrupt_why_ = why;
    }
  }

  // Decoded stream bytes: a CMap or a content stream, told apart by the first bytes.
  void Decoded(std::string_view b) {
    if (mode_ == Mode::kSniff) {
      pending_sniff_.append(b);
      if (pending_sniff_.size() >= kSniff) Decide();
      return;
    }
    if (mode_ == Mode::kCmap) {
      if (cmap_text_.size() + b.size() <= kMaxCmapText) cmap_text_.append(b);
      return;
    }
    if (mode_ == Mode::kContent) Content(b);
  }

  // A CMap says so in its first lines; exactly the first kSniff bytes are looked at, so
  // the answer does not depend on how the stream arrived.
  static constexpr size_t kSniff = 1024;

  void Decide() {
    const std::string_view head = std::string_view(pending_sniff_).substr(0, kSniff);
    const bool cmap = head.find("begincmap") != std::string_view::npos || head.find("/CIDInit") != std::string_view::npos;
    mode_ = cmap ? Mode::kCmap : Mode::kContent;
    const std::string held = std::move(pending_sniff_);
    pending_sniff_.clear();
    Decoded(held);
  }

  // ---------------------------------------------------------------- content streams

  void ResetContent() {
    lex_ = Lex::kNormal;
    tok_.clear();
    str_.clear();
    operands_.clear();
    operand_bytes_ = 0;
    array_depth_ = 0;
    array_.clear();
  }

  enum class Lex { kNormal, kComment, kString, kHex, kToken, kLt, kGt, kInlineImage };

  void Content(std::string_view b) {
    for (size_t i = 0; i < b.size(); ++i) {
      const auto c = static_cast<unsigned char>(b[i]);
      switch (lex_) {
        case Lex::kInlineImage:
          // Binary image data up to whitespace "EI" whitespace.
          ei_ = static_cast<uint32_t>((ei_ << 8) | c);
          if (IsWhite(static_cast<unsigned char>((ei_ >> 24) & 0xff)) && ((ei_ >> 16) & 0xff) == 'E' &&
              ((ei_ >> 8) & 0xff) == 'I' && (IsWhite(c) || IsDelim(c))) {
            lex_ = Lex::kNormal;
          }
          break;
        case Lex::kComment:
          if (c == '\n' || c == '\r') lex_ = Lex::kNormal;
          break;
        case Lex::kString:
          StringByte(c);
          break;
        case Lex::kHex:
          if (c == '>') {
            if (hex_str_hi_ >= 0) str_.push_back(static_cast<char>(hex_str_hi_ * 16));
            lex_ = Lex::kNormal;
            PushString();
          } else if (const int v = HexVal(c); v >= 0) {
            if (hex_str_hi_ < 0) {
              hex_str_hi_ = v;
            } else {
              str_.push_back(static_cast<char>(hex_str_hi_ * 16 + v));
              hex_str_hi_ = -1;
              if (str_.size() >= kMaxOperandBytes) PushString();
            }
          }
          break;
        case Lex::kLt:
          if (c == '<') {
            lex_ = Lex::kNormal;  // a dictionary (marked-content properties): its entries are operands
          } else {
            lex_ = Lex::kHex;
            str_.clear();
            hex_str_hi_ = -1;
            --i;  // this byte is the first of the hex string
          }
          break;
        case Lex::kGt:
          lex_ = Lex::kNormal;
          if (c != '>') --i;
          break;
        case Lex::kToken:
          if (IsWhite(c) || IsDelim(c)) {
            lex_ = Lex::kNormal;
            EndToken();
            if (lex_ == Lex::kInlineImage) {
              ei_ = c;
              break;
            }
            --i;
          } else if (tok_.size() < kMaxToken) {
            tok_.push_back(static_cast<char>(c));
          }
          break;
        case Lex::kNormal:
          if (IsWhite(c)) break;
          if (c == '%') {
            lex_ = Lex::kComment;
          } else if (c == '(') {
            lex_ = Lex::kString;
            str_.clear();
            str_depth_ = 1;
            esc_ = 0;
          } else if (c == '<') {
            lex_ = Lex::kLt;
          } else if (c == '>') {
            lex_ = Lex::kGt;
          } else if (c == '[') {
            if (array_depth_++ == 0) array_.clear();
          } else if (c == ']') {
            if (array_depth_ > 0 && --array_depth_ == 0) PushArray();
          } else if (c == '{' || c == '}' || c == ')') {
            // PostScript calculator braces, a stray ')': nothing to read
          } else {
            lex_ = Lex::kToken;
            tok_.assign(1, static_cast<char>(c));
          }
          break;
      }
    }
  }

  void StringByte(unsigned char c) {
    if (esc_ == 1) {
      esc_ = 0;
      switch (c) {
        case 'n': str_.push_back('\n'); break;
        case 'r': str_.push_back('\r'); break;
        case 't': str_.push_back('\t'); break;
        case 'b': str_.push_back('\b'); break;
        case 'f': str_.push_back('\f'); break;
        case '\r': esc_ = 5; break;  // line continuation; an LF may follow
        case '\n': break;
        default:
          if (c >= '0' && c <= '7') {
            octal_ = c - '0';
            esc_ = 2;
          } else {
            str_.push_back(static_cast<char>(c));
          }
      }
      return;
    }
    if (esc_ >= 2 && esc_ <= 3) {
      if (c >= '0' && c <= '7') {
        octal_ = octal_ * 8 + (c - '0');
        if (++esc_ == 4) {
          str_.push_back(static_cast<char>(octal_ & 0xff));
          esc_ = 0;
        }
        return;
      }
      str_.push_back(static_cast<char>(octal_ & 0xff));
      esc_ = 0;
    } else if (esc_ == 4) {
      esc_ = 0;
    } else if (esc_ == 5) {
      esc_ = 0;
      if (c == '\n') return;
    }
    if (c == '\\') {
      esc_ = 1;
    } else if (c == '(') {
      ++str_depth_;
      str_.push_back('(');
    } else if (c == ')') {
      if (--str_depth_ == 0) {
        lex_ = Lex::kNormal;
        PushString();
        return;
      }
      str_.push_back(')');
    } else {
      str_.push_back(static_cast<char>(c));
    }
    if (str_.size() >= kMaxOperandBytes) {
      // A string this long is shown in pieces rather than kept whole.
      ShowBytes(str_);
      str_.clear();
    }
  }

  void PushString() {
    if (array_depth_ > 0) {
      operand_bytes_ += str_.size();
      array_.emplace_back(true, std::move(str_));
    } else {
      Operand o;
      o.kind = Operand::kString;
      operand_bytes_ += str_.size();
      o.bytes = std::move(str_);
      PushOperand(std::move(o));
    }
    str_.clear();
    if (operand_bytes_ > kMaxOperandBytes) {
      // Strings without their operator yet, more than a page holds: shown now, so text
      // cannot be hidden by piling operands up.
      for (const auto& o : operands_) {
        if (o.kind == Operand::kString) ShowBytes(o.bytes);
      }
      for (const auto& [is_str, bytes] : array_) {
        if (is_str) ShowBytes(bytes);
      }
      operands_.clear();
      array_.clear();
      operand_bytes_ = 0;
    }
  }

  void PushArray() {
    Operand o;
    o.kind = Operand::kArray;
    o.parts = std::move(array_);
    array_.clear();
    PushOperand(std::move(o));
  }

  void PushOperand(Operand o) {
    if (operands_.size() >= 16) {
      if (operands_.front().kind == Operand::kString) operand_bytes_ -= operands_.front().bytes.size();
      operands_.erase(operands_.begin());
    }
    operands_.push_back(std::move(o));
  }

  void EndToken() {
    std::string tok = std::move(tok_);
    tok_.clear();
    if (tok.empty()) return;
    if (tok[0] == '/') {
      if (array_depth_ > 0) return;
      Operand o;
      o.kind = Operand::kName;
      o.bytes = tok.substr(1);
      PushOperand(std::move(o));
      return;
    }
    const char c = tok[0];
    if ((c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.') {
      const double v = std::strtod(tok.c_str(), nullptr);
      if (array_depth_ > 0) {
        array_.emplace_back(false, tok);
      } else {
        Operand o;
        o.kind = Operand::kNumber;
        o.number = std::isfinite(v) ? v : 0;
        PushOperand(std::move(o));
      }
      return;
    }
    if (array_depth_ > 0) return;  // "true", "null" in an array
    Operator(tok);
  }

  double Num(size_t from_end) const {
    if (operands_.size() < from_end) return 0;
    const Operand& o = operands_[operands_.size() - from_end];
    return o.kind == Operand::kNumber ? o.number : 0;
  }

  void Operator(const std::string& op) {
    if (op == "Tj" || op == "'" || op == "\"") {
      if (op != "Tj") Sep(kNewline);
      if (!operands_.empty() && operands_.back().kind == Operand::kString) ShowBytes(operands_.back().bytes);
    } else if (op == "TJ") {
      if (!operands_.empty() && operands_.back().kind == Operand::kArray) {
        for (const auto& [is_str, bytes] : operands_.back().parts) {
          if (is_str) ShowBytes(bytes);
          else if (std::strtod(bytes.c_str(), nullptr) < kKernSpace) Sep(kSpace);
        }
      }
    } else if (op == "Tf") {
      for (auto it = operands_.rbegin(); it != operands_.rend(); ++it) {
        if (it->kind == Operand::kName) {
          font_ = it->bytes;
          break;
        }
      }
    } else if (op == "Td" || op == "TD") {
      Sep(Num(1) != 0 ? kNewline : kSpace);
    } else if (op == "Tm") {
      const double y = Num(1);
      Sep(have_y_ && y == last_y_ ? kSpace : kNewline);
      last_y_ = y;
      have_y_ = true;
    } else if (op == "T*" || op == "ET") {
      Sep(kNewline);
    } else if (op == "BT") {
      have_y_ = false;
    } else if (op == "ID") {
      lex_ = Lex::kInlineImage;
    }
    operands_.clear();
    operand_bytes_ = 0;
  }

  void ContentEnd() {
    if (lex_ == Lex::kToken) EndToken();
    ResetContent();
    Sep(kNewline);
  }

  bool HasPendingState() const {
    if (in_stream_ && !carry_.empty()) return true;
    if (mode_ != Mode::kContent && mode_ != Mode::kSniff) return false;
    return !pending_sniff_.empty() || lex_ != Lex::kNormal || !operands_.empty() || array_depth_ > 0 || a85_n_ > 0;
  }

  // ---------------------------------------------------------------- fonts and text

  struct Font {
    bool seen = false;
    bool cid = false;
    uint32_t to_unicode = 0;
  };

  enum class FontState { kUnknown, kCmap, kSimple, kCidWithoutCmap };

  FontState Resolve(const std::string& name, const CMap** cm) const {
    const auto n = font_names_.find(name);
    if (n == font_names_.end()) return FontState::kUnknown;
    const auto f = fonts_.find(n->second);
    if (f == fonts_.end() || !f->second.seen) return FontState::kUnknown;
    if (f->second.to_unicode != 0) {
      const auto c = cmaps_.find(f->second.to_unicode);
      if (c == cmaps_.end()) return FontState::kUnknown;
      *cm = &c->second;
      return FontState::kCmap;
    }
    return f->second.cid ? FontState::kCidWithoutCmap : FontState::kSimple;
  }

  static std::string Map(const CMap& cm, std::string_view codes) {
    std::string out;
    for (size_t i = 0; i + cm.code_len <= codes.size(); i += cm.code_len) {
      uint32_t code = 0;
      for (size_t k = 0; k < cm.code_len; ++k) code = (code << 8) | static_cast<uint8_t>(codes[i + k]);
      const auto it = cm.map.find(code);
      if (it != cm.map.end()) out += it->second;
    }
    return out;
  }

  void ShowBytes(std::string_view codes) {
    if (codes.empty()) return;
    const CMap* cm = nullptr;
    switch (Resolve(font_, &cm)) {
      case FontState::kCmap:
        Write(Map(*cm, codes));
        return;
      case FontState::kSimple:
        Write(Latin1ToUtf8(codes));
        return;
      case FontState::kCidWithoutCmap:
        return;
      case FontState::kUnknown:
        break;
    }
    if (PrintableAscii(codes)) {
      Write(Latin1ToUtf8(codes));
      return;
    }
    // Glyph ids of a font not seen yet: kept until its CMap comes.
    if (deferred_bytes_ + codes.size() + font_.size() > kMaxDeferredBytes) return;
    deferred_bytes_ += codes.size() + font_.size();
    deferred_.push_back(Deferred{font_, std::string(codes), pending_});
    pending_ = kNone;
  }

  void ReleaseDeferred() {
    std::vector<Deferred> keep;
    for (Deferred& d : deferred_) {
      const CMap* cm = nullptr;
      const FontState st = Resolve(d.font, &cm);
      if (st == FontState::kUnknown) {
        keep.push_back(std::move(d));
        continue;
      }
      deferred_bytes_ -= d.codes.size() + d.font.size();
      Sep(d.sep);
      if (st == FontState::kCmap) Write(Map(*cm, d.codes));
      else if (st == FontState::kSimple) Write(Latin1ToUtf8(d.codes));
    }
    deferred_ = std::move(keep);
    if (!deferred_.empty()) Sep(kNewline);
  }

  enum Pending : uint8_t { kNone = 0, kSpace = 1, kNewline = 2 };

  void Sep(uint8_t s) { pending_ = std::max(pending_, s); }

  void Write(const std::string& text) {
    if (text.empty()) return;
    std::string s;
    if (pending_ != kNone && wrote_) s += pending_ == kNewline ? '\n' : ' ';
    pending_ = kNone;
    s += text;
    const OrigSpan span{std::min(hold_, piece_.begin), piece_.end};
    SinglePiece piece(s, span, false);
    out_buf_.Append(piece.src());
    wrote_ = true;
    if (out_buf_.size() >= kFlushAt) Flush();
  }

  void Flush() {
    if (out_buf_.empty()) return;
    out_.Emit(out_buf_.src());
    out_buf_.Clear();
  }

  struct Deferred {
    std::string font;
    std::string codes;
    uint8_t sep;
  };

  Layer& out_;
  Context& ctx_;
  bool started_ = false, done_ = false;
  uint64_t first_ = 0, last_end_ = 0;
  OrigSpan piece_;                 // the input being read now
  uint64_t hold_ = kNothingHeld;   // where unfinished state began
  MappedBuffer out_buf_;

  // file level
  std::string top_tok_;
  std::string tok1_, tok2_;  // the two tokens before the current one
  bool top_name_ = false;    // the current token follows '/'
  bool stream_kw_ = false;   // "stream" just ended: its end-of-line byte is next
  int top_string_ = 0;
  bool top_escape_ = false, top_comment_ = false;
  bool in_obj_ = false, in_trailer_ = false;
  std::string obj_;
  uint32_t cur_obj_ = 0;
  bool after_stream_kw_ = false;
  bool encrypted_ = false;
  bool corrupt_ = false;
  OrigSpan corrupt_span_;
  std::string corrupt_why_;

  // stream level
  bool in_stream_ = false;
  DictFacts stream_facts_;
  uint32_t stream_obj_ = 0;
  std::string carry_;
  Mode mode_ = Mode::kSkip;
  std::vector<Filter> chain_;
  bool stream_failed_ = false;
  uint64_t stream_in_ = 0, stream_out_ = 0;
  z_stream z_{};
  bool inflate_live_ = false, inflate_ended_ = false;
  std::unique_ptr<char[]> zbuf_;
  uint8_t a85_[5] = {};
  int a85_n_ = 0;
  bool a85_done_ = false, hex_done_ = false;
  int hex_hi_ = -1;
  std::string pending_sniff_, cmap_text_;

  // content level
  Lex lex_ = Lex::kNormal;
  std::string tok_, str_;
  int str_depth_ = 0, esc_ = 0, octal_ = 0, hex_str_hi_ = -1;
  uint32_t ei_ = 0;
  std::vector<Operand> operands_;
  size_t operand_bytes_ = 0;
  int array_depth_ = 0;
  std::vector<std::pair<bool, std::string>> array_;
  std::string font_;
  double last_y_ = 0;
  bool have_y_ = false;
  uint8_t pending_ = kNone;
  bool wrote_ = false;

  // fonts
  std::map<std::string, uint32_t> font_names_;
  std::unordered_map<uint32_t, Font> fonts_;
  std::unordered_map<uint32_t, CMap> cmaps_;
  size_t cmap_entries_ = 0;
  size_t cmap_charged_ = 0;  // bytes of Context::codec_bytes that are this file's CMaps
  std::vector<Deferred> deferred_;
  size_t deferred_bytes_ = 0;
};

}  // namespace

DecoderPtr MakePdfText(Layer& out) { return std::make_unique<PdfText>(out); }

}  // namespace egressguard::dlp::decode
