#pragma once
// The decoders a Layer can run, by kind. Each writes into the Layer given to it; the ones
// that find separate documents in their input (base64 runs, escape windows, multipart
// parts, compressed streams) frame them with out.BeginDocument / out.EndDocument.

#include <cstdint>
#include <string>
#include <string_view>

#include "dlp/decode/layer.h"

namespace egressguard::dlp::decode {

// Escape decoding. kPercent: %XX; kPlus: '+' is a space (forms, URL queries); kBackslash:
// JSON string escapes incl. \uXXXX surrogate pairs; kQuotedPrintable: =XX and soft breaks;
// kHtmlReferences: &#NNN; &#xHH; and the named references of spaces, dashes and address
// characters (&nbsp; &commat; ...); kFoldUnicode: no-break and other Unicode spaces, dashes
// and fullwidth digits read as their ASCII, zero-width characters and soft hyphens as
// nothing (so does every reference or \u escape that decodes to one of them).
enum EscapeFlags : unsigned {
  kPercent = 1,
  kPlus = 2,
  kBackslash = 4,
  kQuotedPrintable = 8,
  kHtmlReferences = 16,
  kFoldUnicode = 32,
};

// lazy: only windows of text around escapes are emitted (the raw layer already holds the
// rest), each window one document; otherwise the whole input is one unframed output.
DecoderPtr MakeUnescaper(Layer& out, unsigned flags, bool lazy);

// HTML (html_text.cc): the text with its tags removed, inline elements with nothing in
// their place (a number split by <b>...</b> reads whole), each table a document whose
// rows are lines of comma-separated cells; attribute values a line each in a second
// layer of the same depth.
// Framed. LooksLikeHtml: by Content-Type, file name or the first tag.
bool LooksLikeHtml(const DocHint& hint, std::string_view sniff);
DecoderPtr MakeHtmlText(Layer& out);

// A whole body in base64 (Content-Transfer-Encoding: base64): whitespace skipped. Unframed.
DecoderPtr MakeBase64Body(Layer& out);

// A compressed stream, framed as one document carrying out_hint.
DecoderPtr MakeDecompressor(Codec codec, Layer& out, const DocHint& out_hint);

// multipart/* split by boundary; each part one document, decoded by its own headers.
DecoderPtr MakeMultipart(Layer& out, std::string boundary);
// An Internet message (.eml, message/rfc822): its body decoded as its headers say (a
// multipart body split into parts; quoted-printable or base64 undone).
DecoderPtr MakeMailMessage(Layer& out);
// Whether a document's first bytes open an Internet message ("Received:", "From:", ...).
bool LooksLikeMailMessage(std::string_view b);

// Archives (zip.cc, tar.cc): streamed from their member headers; each member one
// document of `out` named by its path (DocHint.name) and entered as a container member
// (Context::EnterMember), so findings name it.
DecoderPtr MakeZip(Layer& out);
DecoderPtr MakeTar(Layer& out);

// A compressed file that is no HTTP content coding (stream_decoder.cc): .xz and the
// legacy .lzma through liblzma, .bz2 through libbz2. Framed as one document carrying
// out_hint.
enum class StreamFormat { kXz, kLzma, kBzip2 };
DecoderPtr MakeStreamDecoder(StreamFormat format, Layer& out, const DocHint& out_hint);

// UTF-16 text (utf16.cc), transcoded to UTF-8 as one document carrying the hint's
// content type (its charset dropped), each character mapped to its code unit(s):
// nullptr unless the document is UTF-16 by its byte-order mark, by a charset=utf-16(le|be)
// label its bytes agree with, or by its first code units being mostly ASCII with NUL
// high bytes. Binary and UTF-8 text are never taken for it.
DecoderPtr MakeUtf16Text(const DocHint& hint, std::string_view sniff, Layer& out);
bool LooksLikeUtf16(const DocHint& hint, std::string_view sniff);
// One run of UTF-16LE text found inside a binary file (a compound file's streams), framed
// as one document of `out` and transcoded as MakeUtf16Text's.
DecoderPtr MakeUtf16LeRun(Layer& out);

// Where the depth limit stops decoding, a container or compressed stream inside a
// document would pass unread: a decoder writing into a layer at limits.max_depth (which
// has no child slots) shows each document's first bytes to one of these, which reports
// such a document as undecodable. Holds nothing: it only looks.
class DepthLimitProbe {
 public:
  explicit DepthLimitProbe(Layer& out);
  void Begin();
  void Put(const Src& in);
  void End();
  size_t memory_bytes() const { return sizeof(*this) + head_.capacity(); }

 private:
  void Check();

  Context& ctx_;
  const bool active_;
  bool checked_ = true;
  std::string head_;
  OrigSpan span_;
};

// Base64 runs (>= 16 characters, standard or URL-safe, padded or not, e-mail style line
// wrapped) found anywhere in a layer; each run one document of the finder's own layer.
// A run of hex digits base64 would not take (one letter case, or digits only) is read as
// hex instead (hex_runs.h), from 32 digits on.
class Base64Finder {
 public:
  Base64Finder(Context& ctx, uint32_t depth);
  ~Base64Finder();
  void Begin();
  void Put(const Src& in);
  void End();
  size_t memory_bytes() const;
  // A short candidate that may still grow into a run, a run's partial group and
  // unflushed bytes, and what the finder's own layer holds.
  uint64_t held_from() const;

 private:
  struct State;
  std::unique_ptr<State> s_;
};

// Chooses each document's decoder from its hint and its first bytes, then feeds it.
class TransformSlot {
 public:
  TransformSlot(Context& ctx, uint32_t depth);
  ~TransformSlot();
  void Begin(const DocHint& hint);
  void Put(const Src& in);
  void End();
  size_t memory_bytes() const;
  // The undecided sniff prefix, the decoder's own state and what its output layer holds.
  uint64_t held_from() const;
  const Layer* output() const { return out_.get(); }

 private:
  void Decide();

  Context& ctx_;
  const uint32_t depth_;  // of the output layer
  DocHint hint_;
  MappedBuffer sniff_;
  bool sniffing_ = false;
  DecoderPtr decoder_;
  std::unique_ptr<Layer> out_;
};

// Header text helpers (sniff.cc), shared by the sniffer and multipart part headers.
std::string Lower(std::string_view s);      // ASCII lower case
std::string_view Trim(std::string_view s);  // drops ' ', '\t' and '\r' at both ends

// Sniffing helpers (sniff.cc).
bool LooksLikeGzip(std::string_view b);
bool LooksLikeZstd(std::string_view b);
bool LooksLikeZlib(std::string_view b);  // header check plus a trial inflate
bool LooksLikeXz(std::string_view b);
bool LooksLikeBzip2(std::string_view b);      // "BZh1".."BZh9" and a block or end magic
bool LooksLikeLzmaAlone(std::string_view b);  // the header of a .lzma file from a common writer
bool LooksLikeZip(std::string_view b);  // a local file header or an empty archive
bool LooksLikeTar(std::string_view b);  // "ustar" at offset 257
// The kind of container or compressed stream the first bytes are ("zip", "gzip", ...),
// or nullptr: what DepthLimitProbe reports. Knows more formats than are decoded.
const char* ContainerKind(std::string_view b);
// Bytes needed to tell every kind ContainerKind knows (the tar magic ends at 262).
inline constexpr size_t kContainerSniff = 263;
// key=value&... with no spaces: a form body or query string sent under another label.
bool LooksLikeForm(std::string_view b);
// "--boundary\r\n" at the start of a body: the boundary, or "".
std::string SniffMultipartBoundary(std::string_view b);
// boundary= parameter of a multipart/* content type, or "".
std::string BoundaryParam(std::string_view content_type);
// "gzip, br" -> decoders to run, outermost first ({kBrotli, kGzip}); unknown names go to *unknown.
std::vector<Codec> ParseContentEncoding(std::string_view header, std::string* unknown);
const char* CodecName(Codec c);

}  // namespace egressguard::dlp::decode
