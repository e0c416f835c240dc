// UTF-16 text (dlp/decode/utf16.cc), driven directly (its sniff given the whole input, so
// whether it is taken does not hang on the Normalizer's sniff length): when the sniff
// takes the input, the output must be exactly a plain whole-buffer transcoding (a mark
// dropped, U+FFFD for each unpaired surrogate, an odd last byte dropped), the same bytes
// and the same per-byte spans for one buffer and for reads of 1..64 bytes, every byte's
// span covering its character's code units, and no segment starting below a hold
// reported after an earlier read. Byte 0 picks a mark, a charset label and the read size.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "decode_fuzz_common.h"
#include "dlp/decode/decoders.h"

using namespace egressguard::dlp::decode;

namespace {

struct Out {
  std::string text;
  std::vector<std::pair<uint64_t, uint64_t>> spans;  // per output byte
};

class Sink : public SegmentSink {
 public:
  explicit Sink(uint64_t size) : size_(size) {}
  void OnSegment(const DecodedSegment& s) override {
    if (s.bytes.empty() || s.orig_begin >= s.orig_end || s.orig_end > size_) std::abort();
    if (s.linear) std::abort();  // two bytes a character: never linear
    if (s.orig_begin < decided) std::abort();
    out.text.append(s.bytes);
    for (size_t i = 0; i < s.bytes.size(); ++i) out.spans.emplace_back(s.orig_begin, s.orig_end);
  }
  void OnUndecodable(uint64_t, uint64_t, std::string_view) override { std::abort(); }  // never reports
  uint64_t decided = 0;
  Out out;

 private:
  uint64_t size_;
};

void Utf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// The plain transcoding, and each output byte's code units [begin, end).
Out Reference(std::string_view b, bool big) {
  Out o;
  const size_t n = b.size() / 2;
  auto unit = [&](size_t k) {
    const auto x = static_cast<uint8_t>(b[2 * k]), y = static_cast<uint8_t>(b[2 * k + 1]);
    return big ? (uint32_t{x} << 8 | y) : (uint32_t{y} << 8 | x);
  };
  auto emit = [&](uint32_t cp, uint64_t from, uint64_t to) {
    const size_t before = o.text.size();
    Utf8(cp, &o.text);
    for (size_t i = before; i < o.text.size(); ++i) o.spans.emplace_back(from, to);
  };
  for (size_t k = 0; k < n; ++k) {
    const uint32_t u = unit(k);
    if (k == 0 && u == 0xFEFF) continue;
    if (u >= 0xD800 && u <= 0xDBFF && k + 1 < n && unit(k + 1) >= 0xDC00 && unit(k + 1) <= 0xDFFF) {
      emit(0x10000 + ((u - 0xD800) << 10) + (unit(k + 1) - 0xDC00), 2 * k, 2 * k + 4);
      ++k;
    } else if (u >= 0xD800 && u <= 0xDFFF) {
      emit(0xFFFD, 2 * k, 2 * k + 2);
    } else {
      emit(u, 2 * k, 2 * k + 2);
    }
  }
  return o;
}

Out Transcode(const DocHint& hint, std::string_view body, size_t chunk) {
  NormalizerLimits limits;
  limits.max_depth = 1;  // the output layer has no decoders of its own
  limits.max_decoded_bytes = 1 << 20;
  Sink sink(body.size());
  Context ctx(limits, sink);
  Layer out(ctx, 1);
  DecoderPtr d = MakeUtf16Text(hint, body, out);
  if (!d) std::abort();
  for (size_t at = 0; at < body.size(); at += chunk) {
    const size_t n = std::min(chunk, body.size() - at);
    SinglePiece piece(body.substr(at, n), {at, at + n}, true);
    d->Put(piece.src());
    // What the proxy could forward now: nothing below the hold, nothing not yet read.
    sink.decided = std::max(sink.decided, std::min<uint64_t>(d->held_from(), at + n));
  }
  d->Finish();
  return sink.out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1 || size > (8 << 10)) return 0;
  const uint8_t mode = data[0];
  std::string body;
  if ((mode & 3) == 1) body = "\xFF\xFE";
  if ((mode & 3) == 2) body = "\xFE\xFF";
  body.append(reinterpret_cast<const char*>(data) + 1, size - 1);
  static const char* kLabels[] = {"", "text/plain; charset=utf-16", "text/csv; charset=UTF-16LE",
                                  "text/plain; charset=\"utf-16be\""};
  DocHint hint;
  hint.content_type = kLabels[(mode >> 2) & 3];
  if (!LooksLikeUtf16(hint, body)) return 0;
  const size_t chunk = 1 + (mode >> 4) * 4 % 64;
  const Out whole = Transcode(hint, body, body.size() + 1);
  const Out split = Transcode(hint, body, chunk);
  if (whole.text != split.text || whole.spans != split.spans) std::abort();
  // Which byte order was taken is the decoder's to say: one of the two references.
  bool matched = false;
  for (const bool big : {false, true}) {
    const Out ref = Reference(body, big);
    if (ref.text != whole.text) continue;
    matched = true;
    for (size_t i = 0; i < ref.spans.size(); ++i) {
      // A byte's span is its word's: it covers the character's code units.
      if (whole.spans[i].first > ref.spans[i].first || whole.spans[i].second < ref.spans[i].second) std::abort();
    }
  }
  if (!matched) std::abort();
  return 0;
}
