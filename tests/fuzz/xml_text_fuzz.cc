// Office and generic XML parts read as text (xml_text.cc), as a zip's members reach it: up
// to three documents (split at "\0\0"), each named by a byte (document, sheet, shared
// strings, manifest, generic XML, ...) and entered as a container member, so an xlsx's
// shared strings and sheets meet in either order. Fed whole and in chunks: each document
// gives the same text, the same per-byte spans (the mapping follows expat's byte
// positions, not the chunking) and the same reports (a malformed one: the same text up to
// where it stops); no segment below a reported hold; memory bounded.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "decode_fuzz_common.h"
#include "dlp/decode/documents.h"
#include "dlp/decode/layer.h"

using namespace egressguard::dlp::decode;

namespace {

constexpr const char* kNames[] = {"word/document.xml",   "xl/worksheets/sheet1.xml", "xl/sharedStrings.xml",
                                  "content.xml",         "META-INF/manifest.xml",    "export/data.xml",
                                  "docProps/core.xml",   "ppt/slides/slide1.xml",    "styles.xml",
                                  "[Content_Types].xml", "xl/comments1.xml",         "notes.txt"};

class Sink : public fuzz::CheckingSink {
 public:
  using CheckingSink::CheckingSink;
  void OnEncrypted(uint64_t b, uint64_t e, std::string_view member, std::string_view what) override {
    if (b > e) std::abort();
    encrypted.push_back(std::string(member) + ":" + std::string(what));
  }
  std::vector<std::string> encrypted;
};

// What each document gave: its text with the span of every byte, and its reports.
struct DocOutcome {
  std::string text;
  std::vector<std::pair<uint64_t, uint64_t>> spans;
  std::vector<std::string> reasons, encrypted;
  bool malformed = false;
  bool pdf = false;  // a PDF member (sniffed by its bytes): its spans are coarse, by chunk
};

std::vector<DocOutcome> Decode(const std::vector<std::pair<std::string, std::string_view>>& docs, size_t total,
                               size_t chunk) {
  Sink sink(total, /*keep_spans=*/true);
  NormalizerLimits limits;
  limits.max_decoded_bytes = 1 << 20;
  limits.max_memory_bytes = 4 << 20;
  limits.max_depth = 1;  // the document's text layer alone: no escape or base64 layers under it
  Context ctx(limits, sink);
  std::vector<DocOutcome> outs;
  uint64_t base = 0;
  Layer archive(ctx, 0);  // stands for the archive the documents are members of
  for (const auto& [name, body] : docs) {
    // A layer per document, so each one's text is told apart (the shared strings of an
    // xlsx live on the Context and carry over, as between an archive's members).
    sink.layers.clear();
    sink.spans_by_layer.clear();
    sink.reasons.clear();
    sink.encrypted.clear();
    {
      Layer out(ctx, 1);
      ctx.EnterMember(archive, name);
      DocHint hint;
      hint.name = name;
      DecoderPtr dec = ChooseDocumentDecoder(hint, body.substr(0, 80), out);
      if (dec) {
        for (size_t at = 0; at < body.size(); at += chunk) {
          const std::string_view piece = body.substr(at, chunk);
          SinglePiece p(piece, {base + at, base + at + piece.size()}, true);
          dec->Put(p.src());
          sink.Decided(std::min(dec->held_from(), out.held_from()), base + at + piece.size());
          if (dec->memory_bytes() + out.memory_bytes() + ctx.codec_bytes > limits.max_memory_bytes + (1 << 20)) {
            std::abort();
          }
        }
        dec->Finish();
      }
      ctx.LeaveMember(archive);
    }
    if (sink.layers.size() > 1) std::abort();
    DocOutcome o;
    if (!sink.layers.empty()) {
      o.text = sink.layers.begin()->second;
      o.spans = sink.spans_by_layer.begin()->second;
    }
    o.reasons = sink.reasons;
    o.encrypted = sink.encrypted;
    o.pdf = body.substr(0, 80).find("%PDF-") != std::string_view::npos;
    // Which of its messages expat gives for one fault can depend on where its input was
    // cut ("junk after document element" or "invalid token"): the line it names does not.
    for (std::string& r : o.reasons) {
      const size_t a = r.find("malformed XML: "), b = r.find(" (line");
      if (a != std::string::npos) o.malformed = true;
      if (a != std::string::npos && b != std::string::npos && b > a) r.erase(a + 13, b - a - 13);
    }
    outs.push_back(std::move(o));
    base += body.size() + 2;
  }
  return outs;
}

bool IsPrefix(const DocOutcome& a, const DocOutcome& b) {
  return a.text.size() <= b.text.size() && b.text.compare(0, a.text.size(), a.text) == 0 &&
         std::equal(a.spans.begin(), a.spans.end(), b.spans.begin());
}

bool Same(const DocOutcome& a, const DocOutcome& b) {
  if (a.reasons != b.reasons || a.encrypted != b.encrypted) return false;
  // Expat reports the character data before a fault in the same run of text only when it
  // was cut there: a malformed document's text may stop a little earlier whole.
  if (a.malformed) return IsPrefix(a, b) || IsPrefix(b, a);
  return a.text == b.text && (a.pdf || a.spans == b.spans);
}

void Dump(const char* what, const std::vector<DocOutcome>& outs) {
  for (size_t d = 0; d < outs.size(); ++d) {
    std::fprintf(stderr, "--- %s doc %zu: [%s]\n", what, d, outs[d].text.c_str());
    for (const auto& r : outs[d].reasons) std::fprintf(stderr, "why: %s\n", r.c_str());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2 || size > (64 << 10)) return 0;
  const std::string_view in(reinterpret_cast<const char*>(data) + 2, size - 2);
  std::vector<std::pair<std::string, std::string_view>> docs;
  size_t from = 0;
  for (int k = 0; k < 3 && from <= in.size(); ++k) {
    size_t sep = in.find(std::string_view("\0\0", 2), from);
    if (k == 2 || sep == std::string_view::npos) sep = in.size();
    const uint8_t pick = k == 0 ? data[0] : static_cast<uint8_t>(data[0] >> (3 * k)) ^ data[1];
    docs.emplace_back(kNames[pick % std::size(kNames)], in.substr(from, sep - from));
    from = sep + 2;
  }
  const size_t chunk = 1 + data[1] % 61;
  const auto whole = Decode(docs, in.size() + 8, in.size() + 1);
  const auto split = Decode(docs, in.size() + 8, chunk);
  for (size_t d = 0; d < whole.size(); ++d) {
    if (!Same(whole[d], split[d])) {
      Dump("whole", whole);
      Dump("split", split);
      std::fprintf(stderr, "document %zu differs\n", d);
      std::abort();
    }
  }
  return 0;
}
