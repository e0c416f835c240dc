// Which documents are read as text, and the pieces the document decoders share.
//
// By the bytes: "%PDF-" is a PDF wherever it comes from (a raw upload, a multipart part,
// an archive member); an OLE compound file (D0 CF 11 E0 A1 B1 1A E1) is scanned for the
// "EncryptedPackage" stream of a password-protected Office Open XML file, and its UTF-16
// text is read (see CfbScan). By name and
// bytes: an archive member or uploaded file whose name says XML (or whose bytes start with
// an XML declaration) and whose bytes start like XML is read by the XML decoder, except
// package plumbing that carries no user text (content types, relationships, themes, Word
// styles and settings, slide masters). An unnamed body is left to the escape decoder even
// when it is XML (SOAP and the like carry their values in the clear already).

#include <algorithm>
#include <cstring>

#include "dlp/decode/decoders.h"
#include "dlp/decode/documents.h"
#include "dlp/decode/documents_internal.h"

namespace egressguard::dlp::decode {
namespace {

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

bool LooksLikePdf(std::string_view b) { return b.find("%PDF-") != std::string_view::npos; }

constexpr char kCfbMagic[] = "\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1";

bool LooksLikeCfb(std::string_view b) { return b.size() >= 8 && std::memcmp(b.data(), kCfbMagic, 8) == 0; }

// '<' after an optional byte-order mark and whitespace, then a name, '?' or '!'; or a
// UTF-16 '<' after its byte-order mark.
bool LooksLikeXml(std::string_view b) {
  if (b.substr(0, 4) == std::string_view("\xFF\xFE<\0", 4) || b.substr(0, 4) == std::string_view("\xFE\xFF\0<", 4)) {
    return true;
  }
  if (b.substr(0, 3) == "\xEF\xBB\xBF") b.remove_prefix(3);
  while (!b.empty() && (b.front() == ' ' || b.front() == '\t' || b.front() == '\r' || b.front() == '\n')) b.remove_prefix(1);
  if (b.size() < 2 || b[0] != '<') return false;
  const unsigned char c = static_cast<unsigned char>(b[1]);
  return c == '?' || c == '!' || c == '_' || c == ':' || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c >= 0x80;
}

bool HasXmlDeclaration(std::string_view b) {
  if (b.substr(0, 3) == "\xEF\xBB\xBF") b.remove_prefix(3);
  return b.substr(0, 5) == "<?xml";
}

// Names of XML files: office parts and the XML formats people keep data in.
bool XmlName(std::string_view lower) {
  for (std::string_view ext : {".xml", ".fodt", ".fods", ".fodp", ".svg", ".kml", ".gpx", ".plist", ".xlf", ".vml"}) {
    if (EndsWith(lower, ext)) return true;
  }
  return false;
}

// Package parts with no user text: read them and nothing is found that the raw member
// layer does not show already.
bool PlumbingPart(std::string_view lower) {
  if (lower == "[content_types].xml" || EndsWith(lower, ".rels") || lower.find("/theme/") != std::string_view::npos) {
    return true;
  }
  for (std::string_view p : {"word/styles.xml", "word/styleswitheffects.xml", "word/settings.xml", "word/websettings.xml",
                             "word/fonttable.xml", "word/numbering.xml", "xl/styles.xml", "xl/calcchain.xml",
                             "ppt/presprops.xml", "ppt/viewprops.xml", "ppt/tablestyles.xml", "settings.xml"}) {
    if (lower == p) return true;
  }
  for (std::string_view p : {"ppt/slidelayouts/", "ppt/slidemasters/", "ppt/notesmasters/", "ppt/handoutmasters/",
                             "customxml/itemprops"}) {
    if (lower.substr(0, p.size()) == p) return true;
  }
  return false;
}

// The stream a password-protected OOXML file keeps the encrypted package in (MS-OFFCRYPTO
// 2.3.4.4) is found by its directory entry, which the compound file keeps in 128-byte
// entries in sectors of 512 or 4096 bytes, after a header of one sector: every entry is at
// a file offset that is a multiple of 128. Checking each 128-byte record for the entry's
// name, name length and type finds it wherever the directory lies without following the
// FAT, in one pass and 128 bytes of memory.
//
// Unencrypted compound files (.doc, .xls, .ppt, Outlook's .msg) keep much of their text as
// UTF-16LE: a .msg's subject, body and recipients, a .doc's text where it is not 8-bit,
// an .xls's non-Latin-1 strings. Their record formats are not parsed, but their streams'
// text is read the way `strings -el` does: every run of at least kMinUnits code units of
// text, at even or at odd offsets, is transcoded as one document. (Their 8-bit text is already read
// by the layer's binary filter.) A stream fragmented over non-adjacent sectors splits a
// run where the sector ends: a value that straddles a sector boundary of a fragmented
// stream can be missed, which a parser following the FAT would not do.
class CfbScan final : public Decoder {
 public:
  explicit CfbScan(Layer& out) : ctx_(out.ctx()), out_(out) {}

  void Put(const Src& in) override {
    Utf16Runs(in);
    size_t pos = 0;
    while (pos < in.size() && !found_) {
      const size_t take = std::min(in.size() - pos, kRecord - fill_);
      if (fill_ == 0) rec_begin_ = in.SpanOf(pos, pos + 1).begin;
      std::memcpy(rec_ + fill_, in.data() + pos, take);
      fill_ += take;
      pos += take;
      if (fill_ < kRecord) return;
      fill_ = 0;
      if (IsEncryptedPackageEntry()) {
        found_ = true;
        ctx_.Encrypted({rec_begin_, in.SpanOf(pos - 1, pos).end}, "password-protected Office document");
      }
    }
  }
  void Finish() override {
    EndRun();
    for (Runs& r : runs_) r.pending.Clear();
    last_.Clear();
  }
  size_t memory_bytes() const override {
    size_t m = sizeof(*this) + last_.memory_bytes() + (run_ ? run_->memory_bytes() : 0);
    for (const Runs& r : runs_) m += r.pending.memory_bytes();
    return m;
  }
  // The units of a run not yet long enough to be one, the last byte (the first of a
  // unit), and what the open run holds.
  uint64_t held_from() const override {
    uint64_t h = last_.orig_begin();
    for (const Runs& r : runs_) h = std::min(h, r.pending.orig_begin());
    if (run_) h = std::min(h, run_->held_from());
    return h;
  }

 private:
  static constexpr size_t kRecord = 128;
  static constexpr size_t kMinUnits = 6;  // shorter runs are the file's own names and numbers

  // Text a person wrote: whitespace, ASCII, Latin-1 and Latin Extended-A letters, general
  // punctuation (dashes, quotes, no-break spaces) and the euro sign. Binary data seldom
  // forms six of these in a row: most of them need a high byte of 0 or 1.
  static bool TextUnit(uint32_t u) {
    return (u >= 0x20 && u < 0x7F) || u == '\t' || u == '\n' || u == '\r' || (u >= 0xA0 && u <= 0x17F) ||
           (u >= 0x2000 && u <= 0x206F) || u == 0x20AC;
  }

  // Code units are read at every offset, of both parities, since records put strings at
  // odd offsets too (an .xls string's header is 3 bytes). One run is open at a time: while
  // it is, units of the other parity start nothing (inside UTF-16 text they are halves of
  // two characters). So runs go out in the order of their offsets, whatever the reads.
  struct Runs {
    MappedBuffer pending;  // units of a run not yet kMinUnits long
    size_t units = 0;      // ... how many
  };

  void Utf16Runs(const Src& in) {
    const auto* d = reinterpret_cast<const uint8_t*>(in.data());
    const size_t n = in.size();
    if (n == 0) return;
    if (!last_.empty()) {  // the unit that starts with the last read's last byte
      MappedBuffer unit = std::move(last_);
      last_.Clear();
      unit.Append(in.Sub(0, 1));
      const auto* b = reinterpret_cast<const uint8_t*>(unit.src().data());
      Unit((seen_ - 1) % 2, b[0] | (b[1] << 8), unit.src());
    }
    size_t batch = 0, batch_end = 0;  // units of the open run not handed on yet: in[batch, batch_end)
    for (size_t i = 0; i + 1 < n; ++i) {
      const unsigned parity = (seen_ + i) % 2;
      if (run_ && parity != run_parity_) continue;  // the other parity starts nothing now
      const uint32_t u = d[i] | (d[i + 1] << 8);
      if (run_ && TextUnit(u)) {  // the common case in a run: handed on in one piece
        if (batch_end != i) batch = i;
        batch_end = i + 2;
        continue;
      }
      if (run_ && batch_end > batch) run_->Put(in.Sub(batch, batch_end));
      batch = batch_end = 0;
      Unit(parity, u, in.Sub(i, i + 2));
    }
    if (run_ && batch_end > batch) run_->Put(in.Sub(batch, batch_end));
    last_.Append(in.Sub(n - 1, n));
    seen_ += n;
  }

  void Unit(unsigned parity, uint32_t u, const Src& bytes) {
    if (run_ && parity != run_parity_) return;  // the other parity starts nothing now
    Runs& r = runs_[parity];
    if (!TextUnit(u)) {
      if (run_ && run_parity_ == parity) EndRun();
      r.pending.Clear();
      r.units = 0;
      return;
    }
    if (run_) {
      run_->Put(bytes);
      return;
    }
    r.pending.Append(bytes);
    if (++r.units < kMinUnits) return;
    run_ = MakeUtf16LeRun(out_);
    run_parity_ = parity;
    run_->Put(r.pending.src());
    for (Runs& each : runs_) {
      each.pending.Clear();
      each.units = 0;
    }
  }

  void EndRun() {
    if (!run_) return;
    run_->Finish();
    run_.reset();
  }

  bool IsEncryptedPackageEntry() const {
    static constexpr char kName[] = "EncryptedPackage";
    constexpr size_t kChars = sizeof kName - 1;
    const auto* r = reinterpret_cast<const uint8_t*>(rec_);
    const unsigned name_bytes = r[64] | (r[65] << 8);
    if (name_bytes != (kChars + 1) * 2 || r[66] != 2) return false;  // 2: a stream
    for (size_t i = 0; i < kChars; ++i) {
      if (r[2 * i] != static_cast<uint8_t>(kName[i]) || r[2 * i + 1] != 0) return false;
    }
    return r[2 * kChars] == 0 && r[2 * kChars + 1] == 0;
  }

  Context& ctx_;
  Layer& out_;
  char rec_[kRecord];
  size_t fill_ = 0;
  uint64_t rec_begin_ = 0;
  bool found_ = false;
  Runs runs_[2];           // run candidates at even and at odd offsets
  DecoderPtr run_;         // the open run's transcoder
  unsigned run_parity_ = 0;
  MappedBuffer last_;      // the last byte read: the first of the next unit
  uint64_t seen_ = 0;      // bytes read
};

}  // namespace

DecoderPtr ChooseDocumentDecoder(const DocHint& hint, std::string_view sniff, Layer& out) {
  const std::string name = Lower(hint.name);
  // A package's first member (OOXML's content types, ODF's mimetype) starts a new one: the
  // shared strings of the one before it are no longer this archive's.
  if (out.depth() >= 1 && (name == "[content_types].xml" || name == "mimetype")) {
    DropSharedStrings(out.ctx(), out.depth() - 1);
  }
  if (LooksLikePdf(sniff)) return MakePdfText(out);
  if (LooksLikeCfb(sniff)) return std::make_unique<CfbScan>(out);
  if (name.empty() || !LooksLikeXml(sniff)) return nullptr;
  if (name == "meta-inf/manifest.xml") return MakeXmlText(out, XmlKind::kOdfManifest);
  if (PlumbingPart(name)) return nullptr;
  if (XmlName(name) || HasXmlDeclaration(sniff)) return MakeXmlText(out, XmlKind::kText);
  return nullptr;
}

// ---------------------------------------------------------------- StreamSpans

void StreamSpans::Add(const Src& in) {
  in.ForEachRun([this](std::string_view bytes, OrigSpan span, bool linear) {
    first_ = any_ ? std::min(first_, span.begin) : span.begin;
    last_end_ = any_ ? std::max(last_end_, span.end) : span.end;
    any_ = true;
    if (!runs_.empty()) {
      Run& last = runs_.back();
      const bool contiguous_linear = linear && last.linear && last.oe == span.begin;
      const bool same_coarse = !linear && !last.linear && last.ob == span.begin && last.oe == span.end;
      if (contiguous_linear || same_coarse) {
        last.len += bytes.size();
        last.oe = span.end;
        fed_ += bytes.size();
        return;
      }
    }
    runs_.push_back(Run{static_cast<size_t>(fed_), bytes.size(), span.begin, span.end, linear});
    fed_ += bytes.size();
  });
}

void StreamSpans::Consume(uint64_t pos) {
  consumed_ = std::max(consumed_, std::min(pos, fed_));
  // The last run stays: events at the very end (a closing tag completed by Finish) map to it.
  while (runs_.size() > 1 && runs_.front().pos + runs_.front().len <= consumed_) runs_.pop_front();
}

OrigSpan StreamSpans::Map(uint64_t a, uint64_t b, bool* linear) const {
  if (linear != nullptr) *linear = false;
  if (runs_.empty()) return {first_, last_end_};
  auto run_of = [this](uint64_t p) {
    auto it = std::upper_bound(runs_.begin(), runs_.end(), p, [](uint64_t v, const Run& r) { return v < r.pos; });
    return it == runs_.begin() ? it : it - 1;
  };
  const auto first = run_of(a), last = run_of(b - 1);
  OrigSpan s{UINT64_MAX, 0};
  for (auto it = first; it <= last; ++it) {
    uint64_t rb = it->ob, re = it->oe;
    if (it->linear) {
      if (a > it->pos) rb = it->ob + std::min<uint64_t>(a - it->pos, it->len - 1);
      if (b < it->pos + it->len) re = it->ob + std::max<uint64_t>(b - it->pos, 1);
    }
    s.begin = std::min(s.begin, rb);
    s.end = std::max(s.end, re);
  }
  if (linear != nullptr) {
    *linear = first == last && first->linear && a >= first->pos && b <= first->pos + first->len;
  }
  return s;
}

uint64_t StreamSpans::held_from() const {
  if (consumed_ >= fed_ || runs_.empty()) return kNothingHeld;
  uint64_t h = kNothingHeld;
  for (const Run& r : runs_) {
    if (r.pos + r.len <= consumed_) continue;
    h = std::min(h, r.linear && consumed_ > r.pos ? r.ob + (consumed_ - r.pos) : r.ob);
  }
  return h;
}

// ---------------------------------------------------------------- shared strings

std::shared_ptr<SharedStrings> SharedStringsFor(Context& ctx, uint32_t member_depth) {
  if (ctx.MemberAt(member_depth).empty()) return nullptr;  // not in an archive: no sibling parts
  const std::string archive = member_depth >= 1 ? ctx.MemberAt(member_depth - 1) : std::string();
  for (auto& [depth, table] : ctx.shared_strings) {
    if (depth != member_depth) continue;
    if (table->archive == archive) return table;
    DropSharedStrings(ctx, member_depth);
    break;
  }
  auto table = std::make_shared<SharedStrings>();
  table->archive = archive;
  table->ctx = &ctx;
  ctx.shared_strings.emplace_back(member_depth, table);
  return table;
}

void DropSharedStrings(Context& ctx, uint32_t member_depth) {
  auto& v = ctx.shared_strings;
  for (auto it = v.begin(); it != v.end();) {
    if (it->first >= member_depth) {
      it = v.erase(it);  // its memory is given back when the last decoder using it is done
    } else {
      ++it;
    }
  }
}

}  // namespace egressguard::dlp::decode
