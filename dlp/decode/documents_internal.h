#pragma once
// Shared by the document decoders (documents.cc, xml_text.cc, pdf.cc): their factories,
// the allocator that charges library memory (expat, zlib) to the message's budget, the
// original-span bookkeeping of a byte stream fed in pieces, and the xlsx shared-strings
// table a workbook's members share.

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "dlp/decode/layer.h"

namespace egressguard::dlp::decode {

// ---------------------------------------------------------------- factories

// What an XML document is read for. kText: its text (office or generic XML: told apart by
// the root element's namespace, see xml_text.cc). kOdfManifest: an OpenDocument
// package's manifest, read only for the encryption it declares.
enum class XmlKind { kText, kOdfManifest };

// XML with the tags removed (see xml_text.cc).
DecoderPtr MakeXmlText(Layer& out, XmlKind kind);
// Text shown by a PDF's content streams (see pdf.cc).
DecoderPtr MakePdfText(Layer& out);

// ---------------------------------------------------------------- spans

// Where the bytes of a stream fed in pieces came from: stream offset -> original span,
// for the part of the stream a parser may still report events in. Runs are kept from the
// first byte not yet consumed; consuming drops them.
class StreamSpans {
 public:
  // Appends `in` (the next in.size() bytes of the stream).
  void Add(const Src& in);
  // Stream bytes before `pos` will produce no more output.
  void Consume(uint64_t pos);
  // The original span of stream bytes [a, b), a < b; *linear when byte i maps exactly to
  // original byte span.begin + (i - a). Bytes already consumed map to the oldest span kept.
  OrigSpan Map(uint64_t a, uint64_t b, bool* linear = nullptr) const;
  // Smallest original offset of a byte not yet consumed (kNothingHeld when none).
  uint64_t held_from() const;
  uint64_t fed() const { return fed_; }
  uint64_t consumed() const { return consumed_; }
  size_t memory_bytes() const { return runs_.size() * sizeof(Run); }
  // Span of everything fed so far, for reports about the whole stream.
  OrigSpan whole() const { return {first_, last_end_}; }

 private:
  std::deque<Run> runs_;  // Run::pos is a stream offset
  uint64_t fed_ = 0, consumed_ = 0;
  uint64_t first_ = 0, last_end_ = 0;
  bool any_ = false;
};

// ---------------------------------------------------------------- xlsx shared strings

// An xlsx stores each distinct text once, in xl/sharedStrings.xml, and its sheets refer to
// it by index. Excel and most writers put that part AFTER the sheets, so a sheet read as it
// streams has only indices: its rows are kept (bounded) and replayed with their text when
// the strings arrive. One table per archive, kept on the Context (decoders live for one
// member only) by the depth of the layer the archive's members are in.
struct SharedStrings {
  static constexpr size_t kMaxStrings = 100000;
  static constexpr size_t kMaxTextBytes = 4 << 20;
  static constexpr size_t kMaxPendingBytes = 1 << 20;

  std::string archive;           // path of the archive the table belongs to ("" at top level)
  std::vector<uint32_t> ends;    // string i is text[i ? ends[i-1] : 0, ends[i])
  std::string text;
  bool seen = false;             // a shared-strings part began: sheets resolve from here on
  bool full = false;             // strings past the bound are not kept
  // Sheet output written before the strings were seen: literal bytes, and a reference as
  // '\0' + 4 bytes little-endian index ('\0' is no XML character); rows end in '\n'.
  std::string pending;
  size_t replayed = 0;           // bytes of `pending` already replayed
  bool pending_overflow = false;
  size_t charged = 0;            // bytes charged to Context::codec_bytes, given back when it goes
  Context* ctx = nullptr;

  SharedStrings() = default;
  SharedStrings(const SharedStrings&) = delete;
  SharedStrings& operator=(const SharedStrings&) = delete;
  ~SharedStrings() {
    if (ctx != nullptr) ctx->codec_bytes -= std::min(ctx->codec_bytes, charged);
  }

  size_t count() const { return ends.size(); }
  std::string_view at(size_t i) const {
    const size_t b = i == 0 ? 0 : ends[i - 1];
    return std::string_view(text).substr(b, ends[i] - b);
  }
};

// The table of the archive whose members are decoded into the layer at `member_depth`
// (made or replaced when it belongs to another archive); nullptr when not in an archive.
std::shared_ptr<SharedStrings> SharedStringsFor(Context& ctx, uint32_t member_depth);
// A new package begins at `member_depth`: its tables start empty.
void DropSharedStrings(Context& ctx, uint32_t member_depth);

}  // namespace egressguard::dlp::decode
