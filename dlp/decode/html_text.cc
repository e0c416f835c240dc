// HTML documents read as text (see decoders.h: MakeHtmlText). Why: a value split by
// inline markup ("<b>4539</b> <i>1488</i> ...", what a rich-text editor writes when part
// of a number is formatted, or what a person does to hide it) matches no pattern in the
// raw bytes, and an HTML table (a report exported from a web application, an e-mail with
// a table pasted in) is a customer table that the CSV header detector would not see.
//
// Layout. Inline elements (b, i, span, font, a, ...; Outlook's o:p) and comments are
// removed with nothing in their place, so text split by them reads as written. Other
// elements end a line. Inside a table a row is a line and its cells are separated by ','
// (a row reads as a CSV record), line breaks inside a cell are spaces, and each table is
// a document of its own, so its header row is its first line. Whitespace between two
// tags that are not both inline is dropped (indentation). Attribute values (an input's
// value, an href) go to a second layer of the same depth, a line each, so escapes in
// them are still decoded below and they split neither a line of text nor a row; each
// layer's output follows the input's order. Character references are left for the
// unescaper of the output layers.
//
// No tree is built and nothing is held but a tag name's first characters and the
// whitespace since the last tag: tags and comments of any length cost no memory. A
// document that is not really HTML only loses the bytes it puts between '<' and '>'
// from this view; the raw layer above still scans every byte.
//
// Mapping: every text and attribute byte keeps its exact span; separators map to the
// tag that made them.

#include <algorithm>
#include <array>
#include <string>
#include <string_view>

#include "dlp/decode/decoders.h"

namespace egressguard::dlp::decode {
namespace {

constexpr size_t kMaxName = 16;  // longer tag names are no known element: block
constexpr size_t kFlushAt = 16 << 10;

char LowerAscii(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; }
bool IsAlpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f'; }

bool IsInline(std::string_view name) {
  static constexpr std::array<std::string_view, 37> kInline = {
      "a",    "abbr", "b",     "bdi",    "bdo",   "big",  "cite", "code", "data", "del",  "dfn",  "em",   "font",
      "i",    "ins",  "kbd",   "label",  "mark",  "nobr", "o:p",  "q",    "s",    "samp", "small", "span", "strike",
      "strong", "sub", "sup",  "time",   "tt",    "u",    "var",  "wbr",  "ruby", "rt",   "rp"};
  return std::find(kInline.begin(), kInline.end(), name) != kInline.end();
}

class HtmlText final : public Decoder {
 public:
  explicit HtmlText(Layer& out) : out_(out), attrs_out_(out.ctx(), out.depth()) {
    out_.BeginDocument(DocHint{});
    attrs_out_.BeginDocument(DocHint{});
  }

  void Put(const Src& in) override {
    const char* d = in.data();
    const size_t n = in.size();
    size_t text_from = 0;  // kText: the start of the text run being read
    for (size_t i = 0; i < n; ++i) {
      const char c = d[i];
      switch (state_) {
        case State::kText:
          if (c == '<') {
            Text(in, text_from, i);
            lt_span_ = in.SpanOf(i, i + 1);
            state_ = State::kLt;
          }
          break;
        case State::kLt:
          if (IsAlpha(c)) {
            StartTag(c, false);
          } else if (c == '/') {
            state_ = State::kEndTag;
          } else if (c == '!') {
            state_ = State::kBang;
          } else if (c == '?') {
            state_ = State::kSkip;
          } else {
            // A '<' that opens nothing is text.
            Text(SinglePiece("<", lt_span_, true).src(), 0, 1);
            state_ = State::kText;
            text_from = i;
            --i;
          }
          break;
        case State::kEndTag:
          if (IsAlpha(c)) {
            StartTag(c, true);
          } else {
            state_ = c == '>' ? State::kText : State::kSkip;
            text_from = i + 1;
          }
          break;
        case State::kName:
          if (IsAlpha(c) || (c >= '0' && c <= '9') || c == ':' || c == '-') {
            if (name_.size() < kMaxName + 1) name_ += LowerAscii(c);
          } else {
            EndName(in.SpanOf(i, i + 1));
            state_ = State::kAttrs;
            --i;  // the attribute reader sees this byte
          }
          break;
        case State::kAttrs:
          if (c == '>') {
            state_ = State::kText;
            text_from = i + 1;
          } else if (c == '"' || c == '\'') {
            quote_ = c;
            state_ = State::kValue;
            text_from = i + 1;
          }
          break;
        case State::kValue:
          if (c == quote_) {
            Attribute(in, text_from, i);
            Piece(&attrs_, '\n', in.SpanOf(i, i + 1));
            state_ = State::kAttrs;
          }
          break;
        case State::kBang:
          state_ = c == '-' ? State::kBangDash : c == '>' ? State::kText : State::kSkip;
          text_from = i + 1;
          break;
        case State::kBangDash:
          state_ = c == '-' ? State::kComment : c == '>' ? State::kText : State::kSkip;
          dashes_ = 0;
          text_from = i + 1;
          break;
        case State::kComment:
          if (c == '>' && dashes_ >= 2) {
            state_ = State::kText;
            text_from = i + 1;
          }
          dashes_ = c == '-' ? dashes_ + 1 : 0;
          break;
        case State::kSkip:
          if (c == '>') {
            Block(in.SpanOf(i, i + 1));
            state_ = State::kText;
            text_from = i + 1;
          }
          break;
      }
    }
    if (state_ == State::kText) Text(in, text_from, n);
    if (state_ == State::kValue) Attribute(in, text_from, n);
    Flush();
  }

  void Finish() override {
    pending_ws_.Clear();
    state_ = State::kText;  // a '<' or a tag cut off at the end is dropped
    Flush();
    attrs_out_.EndDocument();
    out_.EndDocument();
  }

  size_t memory_bytes() const override {
    return sizeof(*this) + buf_.memory_bytes() + pending_ws_.memory_bytes() + attrs_.memory_bytes() +
           name_.capacity() + attrs_out_.memory_bytes();
  }
  uint64_t held_from() const override {
    // The attribute layer is this decoder's own (out_ answers for itself).
    uint64_t h = std::min({pending_ws_.orig_begin(), buf_.orig_begin(), attrs_.orig_begin(), attrs_out_.held_from()});
    // A '<' may still come out as text, and a tag's separator maps to the tag.
    if (state_ == State::kLt || state_ == State::kEndTag || state_ == State::kName) h = std::min(h, lt_span_.begin);
    return h;
  }

 private:
  enum class State { kText, kLt, kEndTag, kName, kAttrs, kValue, kBang, kBangDash, kComment, kSkip };

  void StartTag(char c, bool end) {
    name_.assign(1, LowerAscii(c));
    end_tag_ = end;
    state_ = State::kName;
  }

  // The tag's name is complete: what it does to the text around it.
  void EndName(OrigSpan at) {
    const OrigSpan span{std::min(lt_span_.begin, at.begin), at.end};
    if (name_.size() <= kMaxName && IsInline(name_)) {
      // Text on both sides joins; whitespace before the tag stays (it is inside a line).
      return;
    }
    pending_ws_.Clear();
    if (name_ == "table") {
      // Each table its own document, so its header row is a first line.
      tables_ = end_tag_ ? std::max(0, tables_ - 1) : tables_ + 1;
      Flush();
      out_.EndDocument();
      out_.BeginDocument(DocHint{});
      last_ = '\n';
      return;
    }
    if (tables_ > 0 && !end_tag_ && (name_ == "td" || name_ == "th")) {
      if (last_ != '\n') Separator(',', span);
      return;
    }
    if (tables_ > 0 && (name_ == "td" || name_ == "th")) return;  // the cell's end: the next says
    if (tables_ > 0 && name_ != "tr") {
      // A paragraph or line break inside a cell: a space, if text follows in the cell
      // (the row stays one line).
      if (last_ != '\n' && last_ != ',') Piece(&pending_ws_, ' ', span);
      return;
    }
    Block(span);
  }

  void Block(OrigSpan span) {
    pending_ws_.Clear();
    if (last_ != '\n') Separator('\n', span);
  }

  static void Piece(MappedBuffer* to, char c, OrigSpan span) {
    const char b[1] = {c};
    to->Append(SinglePiece(std::string_view(b, 1), span, false).src());
  }

  void Separator(char c, OrigSpan span) {
    Piece(&buf_, c, span);
    last_ = c;
  }

  // Text bytes s[a, b): whitespace-only stretches wait for what follows them.
  void Text(const Src& s, size_t a, size_t b) {
    if (a >= b) return;
    const std::string_view t = s.bytes().substr(a, b - a);
    const size_t first = static_cast<size_t>(std::find_if_not(t.begin(), t.end(), IsSpace) - t.begin());
    if (first == t.size()) {
      pending_ws_.Append(s.Sub(a, b));
      return;
    }
    if (!pending_ws_.empty()) {
      Append(pending_ws_.src());
      pending_ws_.Clear();
    }
    const size_t last = t.size() - static_cast<size_t>(std::find_if_not(t.rbegin(), t.rend(), IsSpace) - t.rbegin());
    Append(s.Sub(a, a + last));
    if (last < t.size()) pending_ws_.Append(s.Sub(a + last, b));
  }

  void Attribute(const Src& s, size_t a, size_t b) {
    if (a < b) attrs_.Append(s.Sub(a, b));
  }

  void Append(const Src& s) {
    const size_t at = buf_.size();
    buf_.Append(s);
    // A table row is one line.
    if (tables_ > 0) {
      buf_.ReplaceBytes('\n', ' ', at);
      buf_.ReplaceBytes('\r', ' ', at);
    }
    last_ = s.bytes().back();
    if (tables_ > 0 && (last_ == '\n' || last_ == '\r')) last_ = ' ';
    if (buf_.size() >= kFlushAt) Flush();
  }

  void Flush() {
    if (!buf_.empty()) {
      out_.Emit(buf_.src());
      buf_.Clear();
    }
    if (!attrs_.empty()) {
      attrs_out_.Emit(attrs_.src());
      attrs_.Clear();
    }
  }

  Layer& out_;
  State state_ = State::kText;
  std::string name_;
  bool end_tag_ = false;

  char quote_ = '"';
  int dashes_ = 0;
  int tables_ = 0;  // open <table> elements
  char last_ = '\n';
  OrigSpan lt_span_;
  MappedBuffer buf_;         // output not yet emitted (emitted at the end of each Put)
  MappedBuffer pending_ws_;  // whitespace since the last tag or text
  MappedBuffer attrs_;       // attribute values not yet emitted, each ending in '\n'
  Layer attrs_out_;          // where they go: a layer of out_'s depth
};

}  // namespace

bool LooksLikeHtml(const DocHint& hint, std::string_view sniff) {
  const std::string type = Lower(hint.content_type);
  if (type.rfind("text/html", 0) == 0 || type.rfind("application/xhtml", 0) == 0) return true;
  const std::string name = Lower(hint.name);
  for (std::string_view ext : {".html", ".htm", ".xhtml"}) {
    if (name.size() > ext.size() && name.compare(name.size() - ext.size(), ext.size(), ext) == 0) return true;
  }
  std::string_view b = sniff;
  if (b.substr(0, 3) == "\xEF\xBB\xBF") b.remove_prefix(3);
  while (!b.empty() && IsSpace(b.front())) b.remove_prefix(1);
  const std::string head = Lower(b.substr(0, 16));
  for (std::string_view start : {"<!doctype html", "<html", "<head", "<body", "<table", "<div", "<meta", "<title",
                                 "<p>", "<p ", "<span", "<font", "<br"}) {
    if (head.rfind(start, 0) == 0) return true;
  }
  return false;
}

DecoderPtr MakeHtmlText(Layer& out) { return std::make_unique<HtmlText>(out); }

}  // namespace egressguard::dlp::decode
