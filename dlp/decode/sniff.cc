// Choosing a document's decoder: the declared encodings and type first (checked against
// the bytes where a magic number exists), then what the first bytes look like.

#include <zlib.h>

#include <algorithm>
#include <cctype>
#include <fmt/format.h>

#include "dlp/decode/decoders.h"
#include "dlp/decode/documents.h"

namespace egressguard::dlp::decode {
namespace {

constexpr size_t kSniff = 80;  // "--" + a 70-character boundary + CRLF fits

bool IsBoundaryChar(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         std::string_view("'()+_,-./:=?").find(c) != std::string_view::npos;
}

}  // namespace

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');  // ASCII only: no locale
  }
  return out;
}

std::string_view Trim(std::string_view s) {
  // '\r' too: header lines are split at '\n', so a CRLF line ends in '\r', which is
  // never part of a token, boundary or media type.
  auto space = [](char c) { return c == ' ' || c == '\t' || c == '\r'; };
  while (!s.empty() && space(s.front())) s.remove_prefix(1);
  while (!s.empty() && space(s.back())) s.remove_suffix(1);
  return s;
}

bool LooksLikeGzip(std::string_view b) {
  return b.size() >= 3 && static_cast<uint8_t>(b[0]) == 0x1f && static_cast<uint8_t>(b[1]) == 0x8b && b[2] == 8;
}

bool LooksLikeZstd(std::string_view b) {
  return b.size() >= 4 && static_cast<uint8_t>(b[0]) == 0x28 && static_cast<uint8_t>(b[1]) == 0xb5 &&
         static_cast<uint8_t>(b[2]) == 0x2f && static_cast<uint8_t>(b[3]) == 0xfd;
}

bool LooksLikeZlib(std::string_view b) {
  if (b.size() < 2) return false;
  const unsigned cmf = static_cast<uint8_t>(b[0]), flg = static_cast<uint8_t>(b[1]);
  if ((cmf & 0x0f) != 8 || (cmf >> 4) > 7 || (cmf * 256 + flg) % 31 != 0 || (flg & 0x20) != 0) return false;
  // Two bytes pass by chance once in ~16k; a trial inflate of the prefix settles it.
  z_stream z{};
  if (inflateInit(&z) != Z_OK) return false;
  char out[512];
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(b.data()));
  z.avail_in = static_cast<uInt>(b.size());
  int r = Z_OK;
  while (r == Z_OK && z.avail_in > 0) {
    z.next_out = reinterpret_cast<Bytef*>(out);
    z.avail_out = sizeof out;
    r = inflate(&z, Z_NO_FLUSH);
  }
  inflateEnd(&z);
  return r == Z_OK || r == Z_STREAM_END || r == Z_BUF_ERROR;
}

bool LooksLikeForm(std::string_view b) {
  // key=value[&key=value...]: a field name, '=', and no spaces, quotes or markup, which
  // is what a form body or a query string looks like and prose, JSON or HTML do not.
  size_t k = 0;
  while (k < b.size() && k < 64 &&
         (std::isalnum(static_cast<unsigned char>(b[k])) || std::string_view("_.-[]%*").find(b[k]) != std::string_view::npos)) {
    ++k;
  }
  if (k == 0 || k >= b.size() || b[k] != '=') return false;
  std::string_view rest = b;
  while (!rest.empty() && (rest.back() == '\n' || rest.back() == '\r')) rest.remove_suffix(1);
  return rest.find_first_of(" \t\r\n\"<>{}") == std::string_view::npos;
}

std::string SniffMultipartBoundary(std::string_view b) {
  if (b.substr(0, 2) != "--") return "";
  size_t e = 2;
  while (e < b.size() && e < 72 && IsBoundaryChar(b[e])) ++e;
  if (e == 2) return "";
  size_t next = e;
  if (b.substr(next, 2) == "\r\n") next += 2;
  else if (b.substr(next, 1) == "\n") next += 1;
  else return "";
  // A boundary line alone is too weak (PEM armour starts with dashes too): the part
  // headers must follow.
  if (Lower(b.substr(next, 8)) != "content-") return "";
  return std::string(b.substr(2, e - 2));
}

std::string BoundaryParam(std::string_view content_type) {
  const std::string lower = Lower(content_type);
  if (lower.rfind("multipart/", 0) != 0) return "";
  size_t k = lower.find("boundary=");
  if (k == std::string::npos) return "";
  std::string_view v = content_type.substr(k + 9);
  if (!v.empty() && v.front() == '"') {
    v.remove_prefix(1);
    v = v.substr(0, v.find('"'));
  } else {
    v = Trim(v.substr(0, v.find(';')));
  }
  if (v.empty() || v.size() > 200) return "";
  return std::string(v);
}

std::vector<Codec> ParseContentEncoding(std::string_view header, std::string* unknown) {
  std::vector<Codec> applied;
  while (!header.empty()) {
    const size_t comma = header.find(',');
    const std::string name = Lower(Trim(header.substr(0, comma)));
    header = comma == std::string_view::npos ? std::string_view() : header.substr(comma + 1);
    if (name.empty() || name == "identity") continue;
    if (name == "gzip" || name == "x-gzip") applied.push_back(Codec::kGzip);
    else if (name == "deflate") applied.push_back(Codec::kDeflate);
    else if (name == "br") applied.push_back(Codec::kBrotli);
    else if (name == "zstd") applied.push_back(Codec::kZstd);
    else if (unknown->empty()) *unknown = name;
  }
  std::reverse(applied.begin(), applied.end());  // the last applied is undone first
  return applied;
}

TransformSlot::TransformSlot(Context& ctx, uint32_t depth) : ctx_(ctx), depth_(depth) {}
TransformSlot::~TransformSlot() = default;

void TransformSlot::Begin(const DocHint& hint) {
  End();
  hint_ = hint;
  sniffing_ = true;
}

void TransformSlot::Put(const Src& in) {
  if (!sniffing_) {
    if (decoder_) decoder_->Put(in);
    return;
  }
  const size_t take = std::min(in.size(), kSniff - sniff_.size());
  sniff_.Append(in.Sub(0, take));
  if (sniff_.size() < kSniff) return;
  Decide();
  if (decoder_ && take < in.size()) decoder_->Put(in.Sub(take, in.size()));
}

void TransformSlot::End() {
  if (sniffing_ && !sniff_.empty()) Decide();
  sniffing_ = false;
  sniff_.Clear();
  if (decoder_) decoder_->Finish();
  decoder_.reset();
}

size_t TransformSlot::memory_bytes() const {
  size_t n = sizeof(*this) + sniff_.memory_bytes();
  if (decoder_) n += decoder_->memory_bytes();
  if (out_) n += out_->memory_bytes();
  return n;
}

uint64_t TransformSlot::held_from() const {
  // The prefix goes to the decoder once decided: held while sniffing.
  uint64_t h = sniff_.orig_begin();
  if (decoder_) h = std::min(h, decoder_->held_from());
  // The output layer outlives documents; once a document ends its slots are flushed and
  // hold nothing.
  if (out_) h = std::min(h, out_->held_from());
  return h;
}

void TransformSlot::Decide() {
  sniffing_ = false;
  const std::string_view b = sniff_.bytes();
  const OrigSpan where = sniff_.src().SpanOf(0, b.size());
  if (!out_) out_ = std::make_unique<Layer>(ctx_, depth_);
  if (!hint_.unsupported_encoding.empty()) {
    ctx_.Undecodable(where, fmt::format("unsupported Content-Encoding {}", hint_.unsupported_encoding));
  }
  DocHint next;
  next.content_type = hint_.content_type;
  next.is_url = hint_.is_url;
  if (!hint_.encodings.empty()) {
    const Codec c = hint_.encodings.front();
    // Bytes that are recognizably another codec's are decoded as what they are, below:
    // the origin gets the bytes, whatever the label says (a gzip body sent as "br" would
    // otherwise fail to decode and pass as merely undecodable).
    const bool other = (c != Codec::kGzip && LooksLikeGzip(b)) || (c != Codec::kZstd && LooksLikeZstd(b));
    const bool plausible =
        !other && (c == Codec::kGzip ? LooksLikeGzip(b) : c == Codec::kZstd ? LooksLikeZstd(b) : true);
    if (plausible) {
      next.encodings.assign(hint_.encodings.begin() + 1, hint_.encodings.end());
      decoder_ = MakeDecompressor(c, *out_, next);
    } else {
      ctx_.Undecodable(where, fmt::format("declared Content-Encoding {} does not match the body", CodecName(c)));
    }
  }
  if (!decoder_) {
    if (LooksLikeGzip(b)) decoder_ = MakeDecompressor(Codec::kGzip, *out_, next);
    else if (LooksLikeZstd(b)) decoder_ = MakeDecompressor(Codec::kZstd, *out_, next);
    else if (LooksLikeZlib(b)) decoder_ = MakeDecompressor(Codec::kZlib, *out_, next);
  }
  if (!decoder_) decoder_ = ChooseDocumentDecoder(hint_, b, *out_);
  if (!decoder_) {
    std::string boundary = BoundaryParam(hint_.content_type);
    if (boundary.empty()) boundary = SniffMultipartBoundary(b);
    if (!boundary.empty()) decoder_ = MakeMultipart(*out_, std::move(boundary));
  }
  if (!decoder_) {
    // JSON escapes and %XX are decoded wherever they occur (not only in declared JSON or
    // forms): a mislabelled body is the exfiltration case. '+' means space only in forms.
    unsigned flags = kPercent | kBackslash;
    if (hint_.is_url || Lower(hint_.content_type).find("x-www-form-urlencoded") != std::string::npos ||
        LooksLikeForm(b)) {
      flags |= kPlus;
    }
    decoder_ = MakeUnescaper(*out_, flags, /*lazy=*/true);
  }
  MappedBuffer held = std::move(sniff_);
  sniff_.Clear();
  decoder_->Put(held.src());
}

}  // namespace egressguard::dlp::decode
