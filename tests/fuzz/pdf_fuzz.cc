// PDFs read as text (pdf.cc): the input (with a "%PDF-" header put in front when it has
// none) fed whole and in chunks gives the same text and the same reports; no segment
// below a reported hold; memory bounded. Spans are coarse (the input being read when text
// was written) and so depend on the chunking: not compared.
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

class Sink : public fuzz::CheckingSink {
 public:
  using CheckingSink::CheckingSink;
  void OnEncrypted(uint64_t b, uint64_t e, std::string_view, std::string_view what) override {
    if (b > e) std::abort();
    encrypted.emplace_back(what);
  }
  std::vector<std::string> encrypted;
};

struct Outcome {
  std::map<uint32_t, std::string> layers;
  std::vector<std::string> reasons, encrypted;
  bool operator==(const Outcome&) const = default;
};

Outcome Decode(std::string_view body, size_t chunk, const NormalizerLimits& limits) {
  Sink sink(body.size());
  Context ctx(limits, sink);
  {
    Layer out(ctx, 1);
    DecoderPtr dec = ChooseDocumentDecoder(DocHint{}, body.substr(0, 80), out);
    if (!dec) std::abort();  // "%PDF-" is always sniffed
    for (size_t at = 0; at < body.size(); at += chunk) {
      const std::string_view piece = body.substr(at, chunk);
      SinglePiece p(piece, {at, at + piece.size()}, true);
      dec->Put(p.src());
      sink.Decided(std::min(dec->held_from(), out.held_from()), at + piece.size());
      if (dec->memory_bytes() + out.memory_bytes() + ctx.codec_bytes > limits.max_memory_bytes + (2 << 20)) std::abort();
    }
    dec->Finish();
  }
  return Outcome{sink.layers, sink.reasons, sink.encrypted};
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1 || size > (64 << 10)) return 0;
  std::string body(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (body.find("%PDF-") >= 60) body.insert(0, "%PDF-1.4\n");
  NormalizerLimits limits;
  limits.max_decoded_bytes = 1 << 20;
  limits.max_memory_bytes = 4 << 20;
  limits.max_expansion_ratio = 1 + data[0] % 200;
  limits.max_depth = 1;  // the PDF's text layer alone: the escape and base64 layers under it
                         // take their ids in the order they first write, which chunking moves
  const size_t chunk = 1 + data[0] % 71;
  const Outcome whole = Decode(body, body.size() + 1, limits);
  const Outcome split = Decode(body, chunk, limits);
  // Where the decoded-size limit cuts depends on how output was grouped: not comparable.
  for (const Outcome* o : {&whole, &split}) {
    for (const auto& r : o->reasons) {
      if (r.find("limit") != std::string::npos) return 0;
    }
  }
  if (!(whole == split)) {
    for (const Outcome* o : {&whole, &split}) {
      std::fprintf(stderr, "--- %s\n", o == &whole ? "whole" : "split");
      for (const auto& [id, text] : o->layers) std::fprintf(stderr, "layer %u: [%s]\n", id, text.c_str());
      for (const auto& r : o->reasons) std::fprintf(stderr, "why: %s\n", r.c_str());
      for (const auto& e : o->encrypted) std::fprintf(stderr, "encrypted: %s\n", e.c_str());
    }
    std::abort();
  }
  return 0;
}
