// Choosing a document's decoder: the declared encodings and type first (checked against
// the bytes where a magic number exists), then what the first bytes look like.

#include <zlib.h>

#include <algorithm>
#include <bit>
#include <cctype>
#include <fmt/format.h>

#include "dlp/decode/decoders.h"
#include "dlp/decode/documents.h"

namespace egressguard::dlp::decode {
namespace {

constexpr size_t kSniff = 80;  // "--" + a 70-character boundary + CRLF fits
// A tar header's "ustar" magic sits at 257..262 (kContainerSniff). Holding every
// document for 263 bytes would hold short text longer for nothing, so the prefix grows
// past kSniff only while its bytes could still be a tar header: numeric fields from
// offset 100 on must be octal, so text is decided at about 100 bytes.
constexpr size_t kTarSniff = kContainerSniff;
static_assert(kTarSniff >= 263, "the tar magic ends at offset 262");

// Length of the longest prefix of b (up to kTarSniff) a ustar, GNU or v7 tar header may
// start with: name and link name anything, numeric fields octal digits, spaces and NULs
// (or base-256, flagged by the field's first byte), then "ustar" and '\0' or ' '.
size_t TarConsistentPrefix(std::string_view b) {
  static constexpr size_t kNumericFields[] = {100, 108, 116, 124, 136, 148, 156};  // field starts, then the type
  const size_t n = std::min(b.size(), kTarSniff);
  for (size_t i = 100; i < n; ++i) {
    const auto c = static_cast<unsigned char>(b[i]);
    if (i < 156) {
      size_t field = 100;
      for (size_t f : kNumericFields) {
        if (f <= i) field = f;
      }
      const bool base256 = field != 148 && (static_cast<unsigned char>(b[field]) & 0x80) != 0;
      if (!base256 && !(c >= '0' && c <= '7') && c != ' ' && c != 0) return i;
    } else if (i >= 257 && i < 262) {
      if (c != static_cast<unsigned char>("ustar"[i - 257])) return i;
    } else if (i == 262) {
      if (c != 0 && c != ' ') return i;
    }
  }
  return n;
}

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// A tar without the ustar magic (v7) is opened only when its name or type says tar and
// its first 257 bytes fit a header; the tar decoder checks the header checksum.
bool HintSaysTar(const DocHint& hint) {
  const std::string name = Lower(hint.name);
  const std::string type = Lower(hint.content_type);
  for (std::string_view t : {"application/x-tar", "application/tar", "application/x-gtar", "application/x-ustar"}) {
    if (type.rfind(t, 0) == 0) return true;
  }
  return EndsWith(name, ".tar");
}

// The name of a compressed file's content: "a.csv.gz" holds "a.csv", "x.tgz" "x.tar".
std::string DecompressedName(std::string_view name) {
  const std::string lower = Lower(name);
  for (std::string_view tarball : {".tgz", ".txz", ".tzst", ".tbz2", ".tbz", ".tlz"}) {
    if (EndsWith(lower, tarball)) return std::string(name.substr(0, name.size() - tarball.size())) + ".tar";
  }
  for (std::string_view suffix : {".gz", ".gzip", ".xz", ".zst", ".zstd", ".br", ".zz", ".bz2", ".bzip2", ".lzma"}) {
    if (EndsWith(lower, suffix)) return std::string(name.substr(0, name.size() - suffix.size()));
  }
  return std::string(name);
}

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
  // Two bytes pass by chance once in ~2,000. A trial inflate settles it, and it must
  // either end the stream or read a whole sniff prefix without an error: a short run of
  // random bytes (a 16-byte WebSocket key or nonce, base64-decoded) passes a trial of its
  // few bytes about once in 45, and was then reported as a truncated zlib stream,
  // undecodable, and blocked (1 in ~43,000 random keys). 80 random bytes pass none of
  // 3,000 trials.
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
  return r == Z_STREAM_END || ((r == Z_OK || r == Z_BUF_ERROR) && b.size() >= kSniff);
}

bool LooksLikeXz(std::string_view b) { return b.substr(0, 6) == std::string_view("\xfd" "7zXZ\0", 6); }

bool LooksLikeBzip2(std::string_view b) {
  // The stream header, then the first block's magic (pi) or, for an empty stream, the
  // end-of-stream magic (sqrt(pi)): 10 fixed bytes, never met by chance.
  return b.size() >= 10 && b.substr(0, 3) == "BZh" && b[3] >= '1' && b[3] <= '9' &&
         (b.substr(4, 6) == "\x31\x41\x59\x26\x53\x59" || b.substr(4, 6) == "\x17\x72\x45\x38\x50\x90");
}

bool LooksLikeLzmaAlone(std::string_view b) {
  // No magic, so a strict shape: the properties byte every common writer uses (0x5D: lc
  // 3, lp 0, pb 2: xz-utils, 7-Zip, Python), a dictionary size of 2^n or 2^n + 2^(n-1)
  // from 4 KiB up, an uncompressed size that is unknown (all ones) or below 2^40, and the
  // range coder's first byte, always 0. Random bytes pass about once in 10^17; binary
  // formats that start with zeros (a gRPC frame prefix) fail at the first byte.
  if (b.size() < 14 || static_cast<uint8_t>(b[0]) != 0x5D || b[13] != 0) return false;
  auto byte = [&](size_t i) { return static_cast<uint8_t>(b[i]); };
  uint32_t dict = 0;
  for (int i = 0; i < 4; ++i) dict |= static_cast<uint32_t>(byte(1 + i)) << (8 * i);
  if (dict < 4096) return false;
  const int top = 31 - std::countl_zero(dict);
  const uint32_t rest = dict - (uint32_t{1} << top);
  if (rest != 0 && rest != (uint32_t{1} << (top - 1))) return false;
  uint64_t size = 0;
  for (int i = 0; i < 8; ++i) size |= static_cast<uint64_t>(byte(5 + i)) << (8 * i);
  return size == UINT64_MAX || size < (uint64_t{1} << 40);
}

// Archive formats no decoder here reads: what they hold would pass unread.
static const char* UnreadArchiveKind(std::string_view b) {
  if (b.substr(0, 6) == "7z\xbc\xaf\x27\x1c") return "7z archive";
  if (b.substr(0, 7) == std::string_view("Rar!\x1a\x07\x00", 7) ||
      b.substr(0, 8) == std::string_view("Rar!\x1a\x07\x01\x00", 8)) {
    return "rar archive";
  }
  if (b.substr(0, 8) == std::string_view("MSCF\0\0\0\0", 8)) return "cab archive";
  return nullptr;
}

bool LooksLikeZip(std::string_view b) {
  // A local file header; an empty archive (its end record alone); a single-segment
  // archive written with the spanning marker first.
  const std::string_view sig = b.substr(0, 4);
  return sig == "PK\x03\x04" || sig == "PK\x05\x06" ||
         ((sig == "PK\x07\x08" || sig == "PK00") && b.substr(4, 4) == "PK\x03\x04");
}

bool LooksLikeTar(std::string_view b) {
  return b.size() >= 263 && TarConsistentPrefix(b) >= 263;
}

const char* ContainerKind(std::string_view b) {
  if (LooksLikeZip(b)) return "zip archive";
  if (LooksLikeGzip(b)) return "gzip stream";
  if (LooksLikeZstd(b)) return "zstd stream";
  if (LooksLikeXz(b)) return "xz stream";
  if (LooksLikeBzip2(b)) return "bzip2 stream";
  if (const char* kind = UnreadArchiveKind(b)) return kind;
  if (b.substr(0, 5) == "%PDF-") return "PDF document";
  if (LooksLikeTar(b)) return "tar archive";
  if (LooksLikeZlib(b.substr(0, kSniff))) return "zlib stream";
  return nullptr;
}

DepthLimitProbe::DepthLimitProbe(Layer& out)
    : ctx_(out.ctx()), active_(out.depth() >= out.ctx().limits.max_depth) {}

void DepthLimitProbe::Begin() {
  checked_ = !active_;
  head_.clear();
}

void DepthLimitProbe::Put(const Src& in) {
  if (checked_ || in.empty()) return;
  const OrigSpan s = in.SpanOf(0, in.size());
  if (head_.empty()) span_ = s;
  span_.begin = std::min(span_.begin, s.begin);
  span_.end = std::max(span_.end, s.end);
  head_.append(in.bytes().substr(0, kContainerSniff - head_.size()));
  if (head_.size() >= kContainerSniff) Check();
}

void DepthLimitProbe::End() {
  if (!checked_ && !head_.empty()) Check();
  checked_ = true;
  head_.clear();
  head_.shrink_to_fit();
}

void DepthLimitProbe::Check() {
  checked_ = true;
  if (const char* kind = ContainerKind(head_)) {
    ctx_.Undecodable(span_, fmt::format("{} nested deeper than the decode depth limit ({})", kind,
                                        ctx_.limits.max_depth));
  }
  head_.clear();
  head_.shrink_to_fit();
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
  size_t take = std::min(in.size(), kSniff - std::min(kSniff, sniff_.size()));
  sniff_.Append(in.Sub(0, take));
  if (sniff_.size() < kSniff) return;
  if (sniff_.size() < kTarSniff) {
    // Grows while it could still be a tar header, and stops at the same byte however
    // the input is cut: the first byte that does not fit is left out.
    std::string probe(sniff_.bytes());
    probe.append(in.bytes().substr(take, kTarSniff - sniff_.size()));
    const size_t fits = TarConsistentPrefix(probe);
    const size_t target = fits < probe.size() ? std::max(fits, kSniff) : probe.size();
    if (target > sniff_.size()) {
      const size_t more = target - sniff_.size();
      sniff_.Append(in.Sub(take, take + more));
      take += more;
    }
    if (fits == probe.size() && probe.size() < kTarSniff) return;
  }
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
  // The checks that predate the longer tar prefix see what they always saw.
  const std::string_view b80 = b.substr(0, kSniff);
  const OrigSpan where = sniff_.src().SpanOf(0, b.size());
  if (!out_) out_ = std::make_unique<Layer>(ctx_, depth_);
  if (!hint_.unsupported_encoding.empty()) {
    ctx_.Undecodable(where, fmt::format("unsupported Content-Encoding {}", hint_.unsupported_encoding));
  }
  DocHint next;
  next.content_type = hint_.content_type;
  next.is_url = hint_.is_url;
  next.name = DecompressedName(hint_.name);
  if (!hint_.encodings.empty()) {
    const Codec c = hint_.encodings.front();
    // Bytes that are recognizably another codec's are decoded as what they are, below:
    // the origin gets the bytes, whatever the label says (a gzip body sent as "br" would
    // otherwise fail to decode and pass as merely undecodable).
    const bool other = (c != Codec::kGzip && LooksLikeGzip(b)) || (c != Codec::kZstd && LooksLikeZstd(b)) ||
                       LooksLikeXz(b) || LooksLikeBzip2(b) || LooksLikeZip(b);
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
    else if (LooksLikeXz(b)) decoder_ = MakeStreamDecoder(StreamFormat::kXz, *out_, next);
    else if (LooksLikeBzip2(b)) decoder_ = MakeStreamDecoder(StreamFormat::kBzip2, *out_, next);
    // Containers before document formats: a docx or xlsx is a zip, whose members (named
    // "word/document.xml") come back here and go to ChooseDocumentDecoder.
    else if (LooksLikeZip(b)) decoder_ = MakeZip(*out_);
    else if (LooksLikeTar(b) || (HintSaysTar(hint_) && TarConsistentPrefix(b) >= 257)) decoder_ = MakeTar(*out_);
    else if (LooksLikeZlib(b80)) decoder_ = MakeDecompressor(Codec::kZlib, *out_, next);
    else if (LooksLikeLzmaAlone(b)) decoder_ = MakeStreamDecoder(StreamFormat::kLzma, *out_, next);
    else if (const char* kind = UnreadArchiveKind(b)) {
      // Not read, so not relayed as if it had been: the pack decides (undecodable blocks
      // in enforce mode by default).
      ctx_.Undecodable(where, fmt::format("{}: this format is not read", kind));
    }
  }
  if (!decoder_) decoder_ = ChooseDocumentDecoder(hint_, b, *out_);
  // UTF-16 text after the document formats, whose magic numbers (PDF, OLE) or parsers
  // (expat reads UTF-16 XML by its mark) claim their bytes first, and before mail,
  // multipart and escapes, which read ASCII and would pass UTF-16 over unread.
  if (!decoder_) decoder_ = MakeUtf16Text(hint_, b, *out_);
  if (!decoder_ && LooksLikeHtml(hint_, b80)) decoder_ = MakeHtmlText(*out_);
  if (!decoder_ && BoundaryParam(hint_.content_type).empty() &&
      (Lower(hint_.content_type).rfind("message/rfc822", 0) == 0 || EndsWith(Lower(hint_.name), ".eml") ||
       LooksLikeMailMessage(b80))) {
    decoder_ = MakeMailMessage(*out_);
  }
  if (!decoder_) {
    std::string boundary = BoundaryParam(hint_.content_type);
    if (boundary.empty()) boundary = SniffMultipartBoundary(b80);
    if (!boundary.empty()) decoder_ = MakeMultipart(*out_, std::move(boundary));
  }
  if (!decoder_) {
    // JSON escapes, %XX and HTML references are decoded, and Unicode look-alikes folded,
    // wherever they occur (not only in declared JSON, forms or HTML): a mislabelled body
    // is the exfiltration case. '+' means space only in forms.
    unsigned flags = kPercent | kBackslash | kHtmlReferences | kFoldUnicode;
    if (hint_.is_url || Lower(hint_.content_type).find("x-www-form-urlencoded") != std::string::npos ||
        LooksLikeForm(b80)) {
      flags |= kPlus;
    }
    decoder_ = MakeUnescaper(*out_, flags, /*lazy=*/true);
  }
  MappedBuffer held = std::move(sniff_);
  sniff_.Clear();
  decoder_->Put(held.src());
}

}  // namespace egressguard::dlp::decode
