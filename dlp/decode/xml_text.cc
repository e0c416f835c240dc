// XML parts of office documents (Office Open XML: docx, xlsx, pptx; OpenDocument: odt,
// ods, odp) and other XML files, read as text: the character data with the tags removed,
// parsed with expat as a stream.
//
// Layout. Text inside a paragraph-like "block" (w:p, a:p, text:p, text:h, a spreadsheet
// cell, a shared string) is joined with nothing between inline elements, so a number
// Word split into differently formatted runs reads as typed. Blocks end in '\n'; so does
// any other element outside a block (docProps, chart values, generic XML), so values in
// adjacent elements never run together. Table cells are separated by ',' in spreadsheets
// (a row reads as a CSV record, which the CSV-header detector counts) and by '\t' in
// documents; a row ends in '\n'; line breaks inside a cell become spaces so a row stays
// one line. Entities and character references are decoded by expat. In generic XML
// (a root element of no office namespace) attribute values are text too.
//
// Mapping. Expat tells where each event's bytes are in the stream (byte index and count):
// character data that is its own bytes (no reference, no line-end folding) maps exactly
// when the input bytes did; anything else maps to the bytes of the event that produced
// it (a reference, a tag, a resolved shared string to its cell). Bytes before the last
// event are done with: held_from() is the first byte after it.
//
// Safety. Expat allocates through the message's memory budget; entity declarations stop
// the parse (no internal or external entity is ever expanded), a tag over 1 MiB or
// nesting deeper than 4096 elements is undecodable, as is malformed XML (reported once;
// this document stops, the archive's other members go on).

#include <expat.h>
#include <fmt/format.h>

#include <algorithm>
#include <cstring>

#include "dlp/decode/decoders.h"
#include "dlp/decode/documents_internal.h"

namespace egressguard::dlp::decode {
namespace {

constexpr size_t kSlice = 64 << 10;        // fed to expat at most this much at a time
constexpr uint64_t kMaxToken = 1 << 20;    // markup expat must hold whole (a tag) longer than this fails
constexpr size_t kMaxDepth = 4096;         // element nesting
constexpr size_t kFlushAt = 16 << 10;      // output goes to the layer in pieces of about this size
constexpr int64_t kMaxSeps = 256;          // empty cells written as separators between two values
constexpr int64_t kMaxColumn = 1 << 20;    // column numbers are clamped here
constexpr size_t kMaxSharedString = 256 << 10;

// expat's allocator has no user pointer: the Context of the parser being called.
thread_local Context* t_alloc_ctx = nullptr;

struct AllocScope {
  explicit AllocScope(Context* c) : prev(t_alloc_ctx) { t_alloc_ctx = c; }
  ~AllocScope() { t_alloc_ctx = prev; }
  Context* prev;
};

const XML_Memory_Handling_Suite kMemory = {
    [](size_t n) { return ChargedAlloc(t_alloc_ctx, n); },
    [](void* p, size_t n) { return ChargedRealloc(t_alloc_ctx, p, n); },
    [](void* p) { ChargedFree(p); },
};

enum class Ns : uint8_t { kGeneric, kWord, kDrawing, kSheet, kOdfText, kOdfTable, kOdfOffice, kOdfOther, kOfficeOther, kManifest };

bool StartsWith(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

Ns ClassifyNs(std::string_view uri) {
  if (uri == "http://schemas.openxmlformats.org/wordprocessingml/2006/main" ||
      uri == "http://purl.oclc.org/ooxml/wordprocessingml/main") {
    return Ns::kWord;
  }
  if (uri == "http://schemas.openxmlformats.org/drawingml/2006/main" || uri == "http://purl.oclc.org/ooxml/drawingml/main") {
    return Ns::kDrawing;
  }
  if (uri == "http://schemas.openxmlformats.org/spreadsheetml/2006/main" ||
      uri == "http://purl.oclc.org/ooxml/spreadsheetml/main") {
    return Ns::kSheet;
  }
  constexpr std::string_view kOdf = "urn:oasis:names:tc:opendocument:xmlns:";
  if (StartsWith(uri, kOdf)) {
    const std::string_view rest = uri.substr(kOdf.size());
    if (rest == "text:1.0") return Ns::kOdfText;
    if (rest == "table:1.0") return Ns::kOdfTable;
    if (rest == "office:1.0") return Ns::kOdfOffice;
    if (rest == "manifest:1.0") return Ns::kManifest;
    if (rest == "meta:1.0") return Ns::kGeneric;  // metadata fields: each its own line
    return Ns::kOdfOther;
  }
  // Other office vocabularies (slides, math, markup compatibility, Word 2010+ extensions,
  // VML) carry no text of their own outside the blocks above. Charts keep cached values in
  // adjacent elements: generic, so they stay apart.
  if (StartsWith(uri, "http://schemas.openxmlformats.org/drawingml/2006/chart")) return Ns::kGeneric;
  if (StartsWith(uri, "http://schemas.openxmlformats.org/presentationml") ||
      StartsWith(uri, "http://purl.oclc.org/ooxml/presentationml") ||
      StartsWith(uri, "http://schemas.openxmlformats.org/officeDocument/2006/math") ||
      StartsWith(uri, "http://schemas.openxmlformats.org/markup-compatibility") ||
      StartsWith(uri, "http://schemas.openxmlformats.org/drawingml/") ||
      StartsWith(uri, "http://schemas.microsoft.com/office/") || StartsWith(uri, "urn:schemas-microsoft-com:")) {
    return Ns::kOfficeOther;
  }
  return Ns::kGeneric;
}

// What an element does to the text around it.
enum class Role : uint8_t {
  kInline,     // nothing (inside a block), a line break around it (outside one)
  kText,       // holds text: whitespace in it is kept
  kSkip,       // its text is not document text (formulas, phonetic guides, note marks)
  kBlock,      // paragraph: inline content joined, '\n' after
  kTable,
  kRow,
  kCell,       // a table cell (its paragraphs are blocks)
  kSheetCell,  // an xlsx cell: a cell and a block, value in <v> or <is>
  kValue,      // an xlsx <v>
  kSharedItem, // an xlsx <si>: one shared string
  kTab,
  kBreak,
  kSpaces,     // ODF <text:s text:c="n"/>
  kHyphen,
  kEncryption, // ODF manifest <manifest:encryption-data>
};

struct Elem {
  Role role;
  bool text;         // whitespace-only character data in it is content
  bool run = false;  // a Word run (<w:r>): a <w:tab> in it is a tab character, not a tab stop
};

enum Pending : uint8_t { kNone = 0, kSpace = 1, kTab = 2, kNewline = 3 };

// "uri\x01local" (expat's namespace triplet without prefix) or "local".
void SplitName(const XML_Char* name, std::string_view* uri, std::string_view* local) {
  const std::string_view n(name);
  const size_t sep = n.find('\x01');
  if (sep == std::string_view::npos) {
    *uri = {};
    *local = n;
  } else {
    *uri = n.substr(0, sep);
    *local = n.substr(sep + 1);
  }
}

// "AB12" -> 27 (0-based column), -1 when absent or not a cell reference.
int64_t ColumnOf(std::string_view ref) {
  int64_t col = 0;
  size_t i = 0;
  for (; i < ref.size() && ref[i] >= 'A' && ref[i] <= 'Z' && i < 4; ++i) col = col * 26 + (ref[i] - 'A' + 1);
  if (i == 0) return -1;
  return std::min(col - 1, kMaxColumn);
}

const char* FindAttr(const XML_Char** atts, std::string_view want_local, std::string_view want_uri = {}) {
  for (size_t i = 0; atts[i] != nullptr; i += 2) {
    std::string_view uri, local;
    SplitName(atts[i], &uri, &local);
    if (local == want_local && uri == want_uri) return atts[i + 1];
  }
  return nullptr;
}

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

bool AllSpace(std::string_view s) { return std::all_of(s.begin(), s.end(), IsSpace); }

class XmlText final : public Decoder {
 public:
  XmlText(Layer& out, XmlKind kind) : out_(out), ctx_(out.ctx()), kind_(kind) {
    DocHint text;
    text.content_type = "text/plain; charset=utf-8";
    out_.BeginDocument(text);
  }

  ~XmlText() override { FreeParser(); }

  void Put(const Src& in) override {
    if (in.empty() || failed_ || ctx_.stopped) return;
    if (parser_ == nullptr && !Create(in.SpanOf(0, in.size()))) return;
    for (size_t pos = 0; pos < in.size() && !failed_ && !ctx_.stopped; pos += kSlice) {
      const Src slice = in.Sub(pos, std::min(in.size(), pos + kSlice));
      spans_.Add(slice);
      Parse(slice.data(), slice.size(), false);
    }
    Flush();
  }

  void Finish() override {
    if (parser_ != nullptr && !failed_ && !ctx_.stopped) Parse(nullptr, 0, true);
    if (recording_) Record("\n");  // the sheet's last row ends here, whole or not
    Flush();
    out_.EndDocument();
    FreeParser();
  }

  size_t memory_bytes() const override {
    // expat's own memory is counted in Context::codec_bytes.
    return sizeof(*this) + stack_.capacity() * sizeof(Elem) + out_buf_.memory_bytes() + spans_.memory_bytes() +
           cur_string_.capacity() + tables_.capacity() * sizeof(TableCtx);
  }

  uint64_t held_from() const override {
    if (failed_ || parser_ == nullptr) return kNothingHeld;
    return std::min(spans_.held_from(), out_buf_.orig_begin());
  }

 private:
  struct TableCtx {
    bool spreadsheet = false;
    bool in_row = false;
    bool row_has_text = false;
    int64_t cell_col = -1;  // column of the cell open now (or last opened)
    int64_t out_col = 0;    // column of the last cell whose text was written
    int64_t repeat = 1;     // ODF number-columns-repeated of the open cell
  };

  bool Create(OrigSpan where) {
    AllocScope scope(&ctx_);
    parser_ = XML_ParserCreate_MM(nullptr, &kMemory, "\x01");
    if (parser_ == nullptr) {
      failed_ = true;
      ctx_.Undecodable(where, "XML parser: memory limit");
      return false;
    }
    XML_SetUserData(parser_, this);
    XML_SetElementHandler(parser_, &XmlText::OnStart, &XmlText::OnEnd);
    XML_SetCharacterDataHandler(parser_, &XmlText::OnText);
    XML_SetDefaultHandlerExpand(parser_, &XmlText::OnOther);
    XML_SetEntityDeclHandler(parser_, &XmlText::OnEntityDecl);
    XML_SetParamEntityParsing(parser_, XML_PARAM_ENTITY_PARSING_NEVER);
    return true;
  }

  void FreeParser() {
    if (parser_ == nullptr) return;
    AllocScope scope(&ctx_);
    XML_ParserFree(parser_);
    parser_ = nullptr;
  }

  void Parse(const char* data, size_t n, bool final) {
    XML_Status st;
    {
      AllocScope scope(&ctx_);
      in_parse_ = true;
      st = XML_Parse(parser_, data, static_cast<int>(n), final ? XML_TRUE : XML_FALSE);
      in_parse_ = false;
    }
    if (failed_) return;  // a handler failed it and said why
    if (st != XML_STATUS_OK) {
      const XML_Error e = XML_GetErrorCode(parser_);
      Fail(e == XML_ERROR_NO_MEMORY ? std::string("XML parser: memory limit")
                                    : fmt::format("malformed XML: {} (line {})", XML_ErrorString(e),
                                                  static_cast<uint64_t>(XML_GetCurrentLineNumber(parser_))));
      return;
    }
    spans_.Consume(event_end_);
    if (spans_.fed() - spans_.consumed() > kMaxToken) Fail("XML markup longer than 1 MiB");
  }

  void Fail(const std::string& why) {
    if (failed_) return;
    Flush();  // the text read before the fault is good text, whatever the chunking was
    failed_ = true;
    ctx_.Undecodable(spans_.whole(), why);
    if (in_parse_) XML_StopParser(parser_, XML_FALSE);
  }

  // ------------------------------------------------------------------ events

  void Event() {
    const auto idx = XML_GetCurrentByteIndex(parser_);
    const auto cnt = XML_GetCurrentByteCount(parser_);
    if (idx < 0) return;
    ev_begin_ = static_cast<uint64_t>(idx);
    ev_end_ = ev_begin_ + static_cast<uint64_t>(std::max(cnt, 0));
    event_end_ = std::max(event_end_, ev_end_);
  }

  // The original span of the current event (its bytes, or the byte it starts at).
  OrigSpan EventSpan(bool* linear = nullptr) const {
    const uint64_t fed = std::max<uint64_t>(spans_.fed(), 1);
    const uint64_t b = std::min(ev_begin_, fed - 1);
    const uint64_t e = std::clamp(ev_end_, b + 1, fed);
    return spans_.Map(b, e, linear);
  }

  static void OnOther(void* self, const XML_Char*, int) { static_cast<XmlText*>(self)->Event(); }

  static void OnEntityDecl(void* self, const XML_Char*, int, const XML_Char*, int, const XML_Char*, const XML_Char*,
                           const XML_Char*, const XML_Char*) {
    auto* t = static_cast<XmlText*>(self);
    t->Event();
    t->Fail("XML with entity declarations (not expanded)");
  }

  static void OnStart(void* self, const XML_Char* name, const XML_Char** atts) {
    static_cast<XmlText*>(self)->Start(name, atts);
  }
  static void OnEnd(void* self, const XML_Char*) { static_cast<XmlText*>(self)->End(); }
  static void OnText(void* self, const XML_Char* s, int len) {
    static_cast<XmlText*>(self)->Text(std::string_view(s, static_cast<size_t>(len)));
  }

  void Start(const XML_Char* name, const XML_Char** atts) {
    if (failed_) return;
    Event();
    if (stack_.size() >= kMaxDepth) {
      Fail(fmt::format("XML nested deeper than {} elements", kMaxDepth));
      return;
    }
    std::string_view uri, local;
    SplitName(name, &uri, &local);
    const Ns ns = ClassifyNs(uri);
    if (stack_.empty()) Root(ns, local);
    Elem el{Role::kInline, ns == Ns::kOdfText};
    switch (ns) {
      case Ns::kWord:
        if (local == "p") el.role = Role::kBlock;
        else if (local == "r") el.run = true;
        else if (local == "t" || local == "delText" || local == "instrText") el = {Role::kText, true};
        else if (local == "tbl") el.role = Role::kTable;
        else if (local == "tr") el.role = Role::kRow;
        else if (local == "tc") el.role = Role::kCell;
        else if ((local == "tab" && !stack_.empty() && stack_.back().run) || local == "ptab") el.role = Role::kTab;
        else if (local == "br" || local == "cr") el.role = Role::kBreak;
        else if (local == "noBreakHyphen") el.role = Role::kHyphen;
        break;
      case Ns::kDrawing:
        if (local == "p") el.role = Role::kBlock;
        else if (local == "t") el = {Role::kText, true};
        else if (local == "tbl") el.role = Role::kTable;
        else if (local == "tr") el.role = Role::kRow;
        else if (local == "tc") el.role = Role::kCell;
        else if (local == "br") el.role = Role::kBreak;
        break;
      case Ns::kSheet:
        if (local == "sheetData") el.role = Role::kTable;
        else if (local == "row") el.role = Role::kRow;
        else if (local == "c") el.role = Role::kSheetCell;
        else if (local == "v") el = {Role::kValue, true};
        else if (local == "t") el = {Role::kText, true};
        else if (local == "si") el.role = Role::kSharedItem;
        else if (local == "f" || local == "rPh") el.role = Role::kSkip;
        else if (local == "comment") el.role = Role::kBlock;
        break;
      case Ns::kOdfText:
        if (local == "p" || local == "h") el.role = Role::kBlock;
        else if (local == "tab") el.role = Role::kTab;
        else if (local == "line-break") el.role = Role::kBreak;
        else if (local == "s") el.role = Role::kSpaces;
        else if (local == "note-citation") el.role = Role::kSkip;
        break;
      case Ns::kOdfTable:
        if (local == "table") el.role = Role::kTable;
        else if (local == "table-row") el.role = Role::kRow;
        else if (local == "table-cell" || local == "covered-table-cell") el.role = Role::kCell;
        break;
      case Ns::kOdfOffice:
        if (local == "spreadsheet") spreadsheet_ = true;
        else if (local == "annotation") el.role = Role::kBlock;
        break;
      case Ns::kManifest:
        if (local == "encryption-data") el.role = Role::kEncryption;
        break;
      case Ns::kOdfOther:
      case Ns::kOfficeOther:
        break;
      case Ns::kGeneric:
        break;
    }
    stack_.push_back(el);
    Begin(el.role, ns, atts);
  }

  void Root(Ns ns, std::string_view local) {
    generic_ = ns == Ns::kGeneric;
    if (kind_ == XmlKind::kOdfManifest) return;
    if (ns == Ns::kSheet && (local == "worksheet" || local == "sst")) {
      spreadsheet_ = true;
      sst_ = SharedStringsFor(ctx_, out_.depth() - 1);
      if (local == "sst" && sst_ != nullptr) {
        sst_mode_ = true;
        replaying_ = !sst_->pending.empty();
        sst_->seen = true;
        // A second table in one archive replaces the first.
        const size_t kept = sst_->text.size() + 4 * sst_->ends.size();
        sst_->charged -= kept;
        ctx_.codec_bytes -= kept;
        sst_->ends.clear();
        sst_->text.clear();
        sst_->full = false;
      }
      if (local == "worksheet" && sst_ != nullptr && !sst_->seen && !sst_->pending_overflow) recording_ = true;
    }
  }

  void Begin(Role role, Ns ns, const XML_Char** atts) {
    switch (role) {
      case Role::kInline:
      case Role::kText:
      case Role::kValue:
        if (block_depth_ == 0) Break();
        if (generic_ && kind_ != XmlKind::kOdfManifest) Attributes(atts);
        break;
      case Role::kSkip:
        ++skip_depth_;
        break;
      case Role::kBlock:
        if (block_depth_ == 0) Break();
        ++block_depth_;
        break;
      case Role::kSharedItem:
        Break();
        ++block_depth_;
        cur_string_.clear();
        si_direct_ = !sst_mode_ || !replaying_ || sst_->full;
        break;
      case Role::kTable:
        Break();
        tables_.push_back(TableCtx{spreadsheet_ || ns == Ns::kSheet});
        break;
      case Role::kRow:
        if (tables_.empty()) tables_.push_back(TableCtx{spreadsheet_});
        Break();
        tables_.back().in_row = true;
        tables_.back().row_has_text = false;
        tables_.back().cell_col = -1;
        tables_.back().out_col = 0;
        break;
      case Role::kCell:
      case Role::kSheetCell: {
        if (tables_.empty()) tables_.push_back(TableCtx{spreadsheet_});
        TableCtx& t = tables_.back();
        int64_t col = -1;
        if (role == Role::kSheetCell) {
          if (const char* r = FindAttr(atts, "r")) col = ColumnOf(r);
          const char* type = FindAttr(atts, "t");
          shared_cell_ = type != nullptr && std::strcmp(type, "s") == 0;
          index_.clear();
          ++block_depth_;
        }
        if (col < 0) col = std::min(t.cell_col + 1, kMaxColumn);
        t.cell_col = col;
        t.repeat = 1;
        if (ns == Ns::kOdfTable) {
          if (const char* rep = FindAttr(atts, "number-columns-repeated", "urn:oasis:names:tc:opendocument:xmlns:table:1.0")) {
            t.repeat = std::clamp<int64_t>(std::atoll(rep), 1, kMaxColumn);
          }
        }
        ++cell_depth_;
        break;
      }
      case Role::kTab:
        if (block_depth_ > 0) Literal("\t");
        break;
      case Role::kBreak:
        Break();
        break;
      case Role::kSpaces:
        if (block_depth_ > 0) {
          const char* c = FindAttr(atts, "c", "urn:oasis:names:tc:opendocument:xmlns:text:1.0");
          const int64_t n = c != nullptr ? std::clamp<int64_t>(std::atoll(c), 1, 64) : 1;
          Literal(std::string(static_cast<size_t>(n), ' '));
        }
        break;
      case Role::kHyphen:
        if (block_depth_ > 0) Literal("-");
        break;
      case Role::kEncryption:
        if (!reported_encrypted_) {
          reported_encrypted_ = true;
          ctx_.Encrypted(EventSpan(), "password-protected OpenDocument");
        }
        break;
    }
  }

  void End() {
    if (failed_ || stack_.empty()) return;
    Event();
    const Elem el = stack_.back();
    stack_.pop_back();
    switch (el.role) {
      case Role::kInline:
      case Role::kText:
      case Role::kValue:
        if (block_depth_ == 0) Break();
        break;
      case Role::kSkip:
        --skip_depth_;
        break;
      case Role::kBlock:
        --block_depth_;
        Break();
        break;
      case Role::kSharedItem:
        --block_depth_;
        EndSharedItem();
        Break();
        break;
      case Role::kTable:
        if (!tables_.empty()) tables_.pop_back();
        Break();
        break;
      case Role::kRow:
        if (!tables_.empty()) tables_.back().in_row = false;
        Break();
        break;
      case Role::kSheetCell:
        --block_depth_;
        if (shared_cell_) ResolveSharedCell();
        shared_cell_ = false;
        [[fallthrough]];
      case Role::kCell:
        if (!tables_.empty()) {
          TableCtx& t = tables_.back();
          t.cell_col = std::min(t.cell_col + t.repeat - 1, kMaxColumn);
          t.repeat = 1;
        }
        --cell_depth_;
        break;
      default:
        break;
    }
    if (stack_.empty()) RootEnd();
  }

  void Text(std::string_view s) {
    if (failed_) return;
    Event();
    if (skip_depth_ > 0 || kind_ == XmlKind::kOdfManifest || s.empty()) return;
    const Elem& top = stack_.empty() ? Elem{Role::kInline, false} : stack_.back();
    if (shared_cell_ && top.role == Role::kValue) {
      if (index_.size() < 12) index_.append(s);
      return;
    }
    if (sst_mode_ && block_depth_ > 0 && cur_string_.size() < kMaxSharedString) {
      cur_string_.append(s.substr(0, kMaxSharedString - cur_string_.size()));
    }
    if (sst_mode_ && block_depth_ > 0 && !si_direct_) return;
    bool linear = false;
    const OrigSpan span = EventSpan(&linear);
    const bool exact = linear && ev_end_ - ev_begin_ == s.size();
    if (block_depth_ > 0 && top.text) {
      WriteText(s, span, exact);  // text content: every character counts
      return;
    }
    // Elsewhere whitespace is layout (indentation between elements): inside an office
    // paragraph it is nothing, outside one a space at most. Decided per character, so
    // however expat splits a run of text the result is the same.
    const bool layout_nothing = block_depth_ > 0 && !generic_;
    size_t i = 0;
    while (i < s.size()) {
      size_t j = i;
      const bool space = IsSpace(s[i]);
      while (j < s.size() && IsSpace(s[j]) == space) ++j;
      if (space) {
        if (!layout_nothing) pending_ = std::max<uint8_t>(pending_, kSpace);
      } else {
        WriteText(s.substr(i, j - i), exact ? OrigSpan{span.begin + i, span.begin + j} : span, exact);
      }
      i = j;
    }
  }

  // Attribute values of generic XML: each its own line.
  void Attributes(const XML_Char** atts) {
    for (size_t i = 0; atts[i] != nullptr; i += 2) {
      const std::string_view v(atts[i + 1]);
      if (v.empty() || AllSpace(v)) continue;
      Break();
      WriteText(v, EventSpan(), false);
      Break();
    }
  }

  // ------------------------------------------------------------------ output

  void Break() { pending_ = std::max<uint8_t>(pending_, cell_depth_ > 0 ? kSpace : kNewline); }

  // Separators owed before text: the pending break, and the cells since the last value.
  void Prepare(OrigSpan at) {
    std::string seps;
    TableCtx* t = cell_depth_ > 0 && !tables_.empty() ? &tables_.back() : nullptr;
    uint8_t pending = pending_;
    if (t != nullptr && t->in_row) {
      const int64_t col = std::max<int64_t>(t->cell_col, 0);
      int64_t n = 0;
      if (!t->row_has_text) {
        n = col;  // leading empty cells keep the columns aligned
      } else if (col != t->out_col) {
        n = col > t->out_col ? col - t->out_col : 1;
        pending = kNone;  // a new cell: its separator is the break
      }
      if (pending != kNone && wrote_) seps += pending == kNewline ? '\n' : pending == kTab ? '\t' : ' ';
      seps.append(static_cast<size_t>(std::min(n, kMaxSeps)), t->spreadsheet ? ',' : '\t');
      t->out_col = col;
      t->row_has_text = true;
    } else if (pending != kNone && wrote_) {
      seps += pending == kNewline ? '\n' : pending == kTab ? '\t' : ' ';
    }
    pending_ = kNone;
    if (!seps.empty()) Append(seps, at, false);
  }

  // Content text: in office parts whitespace characters are spaces (lines come from the
  // markup), so a row or paragraph stays one line.
  void WriteText(std::string_view s, OrigSpan span, bool exact) {
    // Separators map to the text's first byte: expat may hand one run of text over in
    // pieces (where the input was cut), and the mapping must not depend on that.
    const OrigSpan first = exact ? OrigSpan{span.begin, span.begin + 1} : span;
    if (!generic_ && s.find_first_of("\r\n\t") != std::string_view::npos) {
      std::string folded(s);
      std::replace_if(folded.begin(), folded.end(), [](char c) { return c == '\r' || c == '\n' || c == '\t'; }, ' ');
      Prepare(first);
      Append(folded, span, exact);
    } else {
      Prepare(first);
      Append(s, span, exact);
    }
    wrote_ = true;
  }

  // Markup that stands for characters (a tab, spaces, a hyphen).
  void Literal(std::string_view s) {
    const OrigSpan span = EventSpan();
    Prepare(span);
    Append(s, span, false);
    wrote_ = true;
  }

  void Append(std::string_view bytes, OrigSpan span, bool linear) {
    if (bytes.empty()) return;
    SinglePiece piece(bytes, span, linear);
    out_buf_.Append(piece.src());
    if (recording_) Record(bytes);
    if (out_buf_.size() >= kFlushAt) Flush();
  }

  void Flush() {
    if (out_buf_.empty()) return;
    if (!failed_) out_.Emit(out_buf_.src());
    out_buf_.Clear();
  }

  // ------------------------------------------------------------------ xlsx shared strings

  void ResolveSharedCell() {
    char* end = nullptr;
    const unsigned long long idx = std::strtoull(index_.c_str(), &end, 10);
    if (index_.empty() || end == index_.c_str() || idx > UINT32_MAX) return;
    if (sst_ != nullptr && sst_->seen && idx < sst_->count()) {
      WriteText(sst_->at(idx), EventSpan(), false);
    } else if (recording_) {
      // The cell's place in its row is written now; its text comes with the strings.
      Prepare(EventSpan());
      wrote_ = true;
      std::string ref(5, '\0');
      for (int k = 0; k < 4; ++k) ref[1 + k] = static_cast<char>((idx >> (8 * k)) & 0xff);
      Record(ref);
    }
  }

  void Record(std::string_view bytes) {
    if (sst_ == nullptr || sst_->pending_overflow) return;
    if (sst_->pending.size() + bytes.size() > SharedStrings::kMaxPendingBytes ||
        ctx_.codec_bytes + bytes.size() > ctx_.limits.max_memory_bytes) {
      sst_->pending_overflow = true;
      recording_ = false;
      return;
    }
    sst_->pending.append(bytes);
    sst_->charged += bytes.size();
    ctx_.codec_bytes += bytes.size();
  }

  void EndSharedItem() {
    if (!sst_mode_) return;
    std::replace_if(cur_string_.begin(), cur_string_.end(), [](char c) { return c == '\r' || c == '\n' || c == '\t'; }, ' ');
    if (!sst_->full) {
      if (sst_->count() >= SharedStrings::kMaxStrings || sst_->text.size() + cur_string_.size() > SharedStrings::kMaxTextBytes ||
          ctx_.codec_bytes + cur_string_.size() + 4 > ctx_.limits.max_memory_bytes) {
        sst_->full = true;
        if (!si_direct_) WriteText(cur_string_, EventSpan(), false);  // kept nowhere: written now
      } else {
        sst_->text.append(cur_string_);
        sst_->ends.push_back(static_cast<uint32_t>(sst_->text.size()));
        sst_->charged += cur_string_.size() + 4;
        ctx_.codec_bytes += cur_string_.size() + 4;
      }
    }
    cur_string_.clear();
    if (replaying_) Replay(false);
  }

  // Writes the waiting sheet rows whose strings are all known (all of them at the end).
  void Replay(bool all) {
    const std::string& p = sst_->pending;
    while (sst_->replayed < p.size()) {
      std::string row;
      size_t i = sst_->replayed;
      bool ready = true;
      while (i < p.size() && p[i] != '\n') {
        if (p[i] != '\0') {
          row += p[i++];
          continue;
        }
        if (i + 5 > p.size()) {
          i = p.size();
          break;
        }
        uint32_t idx = 0;
        for (int k = 0; k < 4; ++k) idx |= static_cast<uint32_t>(static_cast<uint8_t>(p[i + 1 + k])) << (8 * k);
        i += 5;
        if (idx < sst_->count()) {
          row.append(sst_->at(idx));
        } else if (!all && !sst_->full) {
          ready = false;
          break;
        }
      }
      if (!ready || (i >= p.size() && !all)) return;
      const OrigSpan span = EventSpan();
      Prepare(span);
      Append(row, span, false);
      wrote_ = true;
      pending_ = kNewline;
      sst_->replayed = std::min(i + 1, p.size());
    }
  }

  void RootEnd() {
    if (sst_mode_ && replaying_) Replay(true);
  }

  Layer& out_;
  Context& ctx_;
  const XmlKind kind_;
  XML_Parser parser_ = nullptr;
  StreamSpans spans_;
  MappedBuffer out_buf_;
  bool failed_ = false;
  bool in_parse_ = false;  // inside XML_Parse: a handler's failure stops the parser
  uint64_t ev_begin_ = 0, ev_end_ = 0;  // the current event's stream bytes
  uint64_t event_end_ = 0;              // end of the last event: output before it is written

  std::vector<Elem> stack_;
  std::vector<TableCtx> tables_;
  bool generic_ = true;
  bool spreadsheet_ = false;
  size_t block_depth_ = 0, cell_depth_ = 0, skip_depth_ = 0;
  uint8_t pending_ = kNone;
  bool wrote_ = false;  // some text was written in this document
  bool reported_encrypted_ = false;

  // xlsx
  std::shared_ptr<SharedStrings> sst_;  // shared with the Context (and so the archive's other parts)
  bool sst_mode_ = false;   // this part is the shared-strings table
  bool replaying_ = false;  // ... and sheets waited for it: their rows are written, not the strings
  bool si_direct_ = true;   // the open <si> is written as it is read
  bool recording_ = false;  // this sheet's output is kept for the replay
  bool shared_cell_ = false;
  std::string index_;       // digits of the open shared-string cell's <v>
  std::string cur_string_;
};

}  // namespace

DecoderPtr MakeXmlText(Layer& out, XmlKind kind) { return std::make_unique<XmlText>(out, kind); }

}  // namespace egressguard::dlp::decode
