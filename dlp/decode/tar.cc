// tar archives (POSIX ustar and pax, GNU, v7), streamed header by header. Written here
// rather than with libarchive: the format is 512-byte blocks with a checksummed header,
// and reading it as a stream that emits member data as views of the input (exact
// offsets, nothing held) is less code than adapting a pull-model reader.
//
// Each member with data is one document of the output layer named by its path and
// entered as a container member. The member path is the pax "path" record if any, else a
// GNU long name ('L'), else a global pax "path", else the header's prefix/name; its size
// the pax "size" (files over 8 GiB) or the header's octal or base-256 field. Which entry
// types carry data follows Python's tarfile: regular files, GNU sparse files and unknown
// types do; links, directories, devices and FIFOs do not, whatever their size field says.
// Header checksums are verified; a bad one is undecodable and ends the inspection.

#include <fmt/format.h>

#include <algorithm>
#include <memory>

#include "dlp/decode/decoders.h"

namespace egressguard::dlp::decode {
namespace {

constexpr size_t kBlock = 512;
constexpr size_t kMaxName = 1024;   // a longer path is cut: it names, it does not prove
constexpr size_t kMaxPaxKey = 64;   // longer keys are none we read
constexpr size_t kMaxPaxLenDigits = 20;
constexpr uint64_t kMaxSize = uint64_t{1} << 62;

std::string_view Field(std::string_view h, size_t at, size_t len) {
  std::string_view f = h.substr(at, len);
  return f.substr(0, f.find('\0'));
}

// An octal field (spaces around, NUL-terminated) or GNU base-256 (leading 0x80; 0xff,
// negative, is refused). False when malformed.
bool Number(std::string_view h, size_t at, size_t len, uint64_t* out) {
  const auto lead = static_cast<uint8_t>(h[at]);
  if (lead == 0x80 || lead == 0xff) {
    if (lead == 0xff) return false;
    uint64_t v = 0;
    for (size_t i = at + 1; i < at + len; ++i) {
      if (v > (kMaxSize >> 8)) return false;
      v = (v << 8) | static_cast<uint8_t>(h[i]);
    }
    *out = v;
    return true;
  }
  std::string_view f = Trim(Field(h, at, len));
  uint64_t v = 0;
  for (char c : f) {
    if (c < '0' || c > '7' || v > (kMaxSize >> 3)) return false;
    v = v * 8 + static_cast<uint64_t>(c - '0');
  }
  *out = v;
  return true;
}

// The stored checksum against the header summed with its checksum field as spaces,
// unsigned (POSIX) or signed (some old writers).
bool ChecksumOk(std::string_view h) {
  uint64_t stored = 0;
  if (Trim(Field(h, 148, 8)).empty() || !Number(h, 148, 8, &stored)) return false;
  int64_t sum_unsigned = 0, sum_signed = 0;
  for (size_t i = 0; i < kBlock; ++i) {
    const char c = (i >= 148 && i < 156) ? ' ' : h[i];
    sum_unsigned += static_cast<uint8_t>(c);
    sum_signed += static_cast<int8_t>(c);
  }
  return static_cast<int64_t>(stored) == sum_unsigned || static_cast<int64_t>(stored) == sum_signed;
}

bool AllZero(std::string_view b) { return b.find_first_not_of('\0') == std::string_view::npos; }

std::string Printable(std::string_view raw) {
  std::string name(raw.substr(0, kMaxName));
  for (char& c : name) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  }
  return name;
}

// pax extended header records ("%d %s=%s\n", the length counting the whole record),
// parsed as they stream by: only "path" and "size" are kept.
class PaxParser {
 public:
  void Reset() {
    stage_ = Stage::kLen;
    len_ = digits_ = left_ = 0;
    key_.clear();
    value_.clear();
    bad_ = false;
  }

  // False once malformed.
  bool Feed(std::string_view b) {
    for (char c : b) {
      if (bad_) return false;
      switch (stage_) {
        case Stage::kLen:
          if (c == ' ' && digits_ > 0) {
            if (len_ <= digits_ + 1) return Bad();
            left_ = len_ - digits_ - 1;
            stage_ = Stage::kKey;
          } else if (c >= '0' && c <= '9' && digits_ < kMaxPaxLenDigits) {
            len_ = len_ * 10 + static_cast<uint64_t>(c - '0');
            ++digits_;
          } else {
            return Bad();
          }
          continue;
        case Stage::kKey:
          --left_;
          if (c == '=') {
            stage_ = Stage::kValue;
          } else if (key_.size() <= kMaxPaxKey) {
            key_ += c;
          }
          if (left_ == 0) {
            if (stage_ != Stage::kValue) return Bad();
            Record();
          }
          continue;
        case Stage::kValue:
          --left_;
          if (left_ == 0) {
            if (c != '\n') return Bad();
            Record();
          } else if ((key_ == "path" && value_.size() < kMaxName) || (key_ == "size" && value_.size() < 32)) {
            value_ += c;
          }
          continue;
      }
    }
    return !bad_;
  }

  // The data ended: a record cut short is malformed.
  bool Done() const { return !bad_ && stage_ == Stage::kLen && digits_ == 0; }

  bool has_path = false, has_size = false, size_ok = true;
  std::string path;
  uint64_t size = 0;

 private:
  enum class Stage { kLen, kKey, kValue };

  bool Bad() {
    bad_ = true;
    return false;
  }

  void Record() {
    if (key_ == "path") {
      has_path = !value_.empty();
      path = value_;
    } else if (key_ == "size") {
      has_size = true;
      uint64_t v = 0;
      size_ok = !value_.empty();
      for (char c : value_) {
        if (c < '0' || c > '9' || v > kMaxSize / 10) size_ok = false;
        else v = v * 10 + static_cast<uint64_t>(c - '0');
      }
      size = v;
    }
    stage_ = Stage::kLen;
    len_ = digits_ = 0;
    key_.clear();
    value_.clear();
  }

  Stage stage_ = Stage::kLen;
  uint64_t len_ = 0, digits_ = 0, left_ = 0;
  std::string key_, value_;
  bool bad_ = false;
};

struct PaxValues {
  bool has_path = false, has_size = false;
  std::string path;
  uint64_t size = 0;
  void Take(const PaxParser& p) {
    if (p.has_path) {
      has_path = true;
      path = p.path;
    }
    if (p.has_size) {
      has_size = true;
      size = p.size;
    }
  }
  void Clear() { *this = PaxValues(); }
};

class Tar final : public Decoder {
 public:
  explicit Tar(Layer& out) : out_(out), ctx_(out.ctx()), depth_(out.depth()), probe_(out) {}

  void Put(const Src& in) override {
    if (in.empty() || Stopped()) return;
    if (!started_) {
      started_ = true;
      start_ = in.SpanOf(0, 1).begin;
    }
    last_end_ = std::max(last_end_, in.SpanOf(0, in.size()).end);
    size_t pos = 0;
    while (pos < in.size() && !Stopped()) {
      switch (state_) {
        case St::kHeader: pos = Header(in, pos); break;
        case St::kData: pos = Data(in, pos); break;
        case St::kMeta: pos = MetaBytes(in, pos); break;
        case St::kSkip: pos = SkipBytes(in, pos); break;
      }
    }
  }

  void Finish() override {
    if (started_ && !Stopped()) {
      // Missing end-of-archive blocks are tolerated (every member was read whole); a
      // cut member or header is not.
      const bool at_boundary = state_ == St::kHeader && (hdr_.empty() || (ended_ && AllZero(hdr_)));
      if (!at_boundary) Fail(ended_ ? "data after the end of the tar archive" : "truncated tar archive");
    }
    CloseMember();
  }

  size_t memory_bytes() const override {
    return sizeof(*this) + hdr_.capacity() + long_name_.capacity() + pax_.path.size() + global_.path.size() +
           probe_.memory_bytes();
  }

  // Member data goes out as views of the input at once; headers are never emitted.
  uint64_t held_from() const override { return kNothingHeld; }

 private:
  enum class St { kHeader, kData, kMeta, kSkip };
  enum class Meta { kLongName, kPax, kGlobalPax, kIgnored };

  bool Stopped() const { return failed_ || ctx_.stopped; }

  size_t Header(const Src& in, size_t pos) {
    if (hdr_.empty()) header_begin_ = in.SpanOf(pos, pos + 1).begin;
    const size_t take = std::min(kBlock - hdr_.size(), in.size() - pos);
    hdr_.append(in.bytes().substr(pos, take));
    if (hdr_.size() == kBlock) OnHeader();
    return pos + take;
  }

  void OnHeader() {
    const std::string h = std::move(hdr_);
    hdr_.clear();
    if (AllZero(h)) {
      // Two zero blocks end the archive; the writer's blocking pads with more.
      if (++zero_blocks_ >= 2) ended_ = true;
      return;
    }
    if (ended_ && !trailing_reported_) {
      // A second archive after the first (cat a.tar b.tar) is still read, reported once.
      trailing_reported_ = true;
      ctx_.Undecodable({header_begin_, last_end_}, "data after the end of the tar archive");
    }
    zero_blocks_ = 0;
    if (!ChecksumOk(h)) {
      Fail(ended_ ? "data after the end of the tar archive" : "corrupt tar archive: header checksum mismatch", !ended_);
      return;
    }
    ended_ = false;
    uint64_t size = 0;
    if (!Number(h, 124, 12, &size)) {
      Fail("corrupt tar archive: bad size field");
      return;
    }
    const char type = h[156];
    switch (type) {
      case 'L': StartMeta(Meta::kLongName, size); return;
      case 'x':
      case 'X':  // Solaris' pre-POSIX name for it
        StartMeta(Meta::kPax, size);
        return;
      case 'g': StartMeta(Meta::kGlobalPax, size); return;
      case 'K': StartMeta(Meta::kIgnored, size); return;  // a long link target: not content
      default: break;
    }
    if (pax_.has_size) size = pax_.size;
    else if (global_.has_size) size = global_.size;
    std::string name;
    if (pax_.has_path) name = pax_.path;
    else if (have_long_name_) name = long_name_;
    else if (global_.has_path) name = global_.path;
    else name = HeaderName(h);
    pax_.Clear();
    long_name_.clear();
    have_long_name_ = false;
    if (type == 'S' && h[482] != 0) {
      // Old GNU sparse: the map continues in extension blocks before the data.
      Fail("GNU sparse tar member with an extended sparse map is not supported");
      return;
    }
    const bool data = type == '0' || type == '\0' || type == '7' || type == 'S' ||
                      std::string_view("123456").find(type) == std::string_view::npos;
    if (!data || size == 0) {
      ExpectHeader();
      return;
    }
    name_ = Printable(name.empty() ? "(unnamed)" : name);
    member_current_ = true;
    left_ = size;
    pad_ = (kBlock - size % kBlock) % kBlock;
    state_ = St::kData;
  }

  static std::string HeaderName(std::string_view h) {
    std::string name(Field(h, 0, 100));
    // POSIX ustar splits long paths into prefix/name; GNU's "ustar  " keeps other data there.
    if (h.substr(257, 6) == std::string_view("ustar\0", 6)) {
      const std::string_view prefix = Field(h, 345, 155);
      if (!prefix.empty()) name = std::string(prefix) + "/" + name;
    }
    return name;
  }

  void ExpectHeader() {
    hdr_.clear();
    state_ = St::kHeader;
  }

  size_t Data(const Src& in, size_t pos) {
    const size_t take = static_cast<size_t>(std::min<uint64_t>(left_, in.size() - pos));
    const Src s = in.Sub(pos, pos + take);
    // Entered only from its first byte: a layer at the members' depth not decoded from
    // them (the parent layer's base64 runs) takes whatever member is open when it emits.
    EnsureEntered();
    if (!doc_open_) {
      DocHint hint;
      hint.name = name_;
      out_.BeginDocument(hint);
      probe_.Begin();
      doc_open_ = true;
    }
    probe_.Put(s);
    out_.Emit(s);
    left_ -= take;
    if (left_ == 0) {
      CloseMember();
      Skip(pad_);
    }
    return pos + take;
  }

  void EnsureEntered() {
    if (!member_current_ || member_entered_) return;
    ctx_.EnterMember(out_, name_);
    member_entered_ = true;
  }

  void CloseMember() {
    if (doc_open_) {
      probe_.End();
      out_.EndDocument();
      doc_open_ = false;
    }
    if (member_entered_) {
      ctx_.LeaveMember(out_);
      member_entered_ = false;
    }
    member_current_ = false;
  }

  void StartMeta(Meta kind, uint64_t size) {
    meta_ = kind;
    left_ = size;
    pad_ = (kBlock - size % kBlock) % kBlock;
    parser_.Reset();
    if (kind == Meta::kLongName) {
      long_name_.clear();
      have_long_name_ = true;
    }
    state_ = St::kMeta;
    if (size == 0) MetaDone();
  }

  size_t MetaBytes(const Src& in, size_t pos) {
    const size_t take = static_cast<size_t>(std::min<uint64_t>(left_, in.size() - pos));
    const std::string_view b = in.bytes().substr(pos, take);
    switch (meta_) {
      case Meta::kLongName:
        if (long_name_.size() < kMaxName) long_name_.append(b.substr(0, kMaxName - long_name_.size()));
        break;
      case Meta::kPax:
      case Meta::kGlobalPax:
        if (!parser_.Feed(b)) {
          Fail("corrupt tar archive: malformed pax extended header");
          return in.size();
        }
        break;
      case Meta::kIgnored:
        break;
    }
    left_ -= take;
    if (left_ == 0) MetaDone();
    return pos + take;
  }

  void MetaDone() {
    if (meta_ == Meta::kLongName) {
      // NUL-terminated inside its data.
      long_name_.resize(std::min(long_name_.size(), long_name_.find('\0')));
    } else if (meta_ == Meta::kPax || meta_ == Meta::kGlobalPax) {
      if (!parser_.Done() || !parser_.size_ok) {
        Fail("corrupt tar archive: malformed pax extended header");
        return;
      }
      (meta_ == Meta::kPax ? pax_ : global_).Take(parser_);
    }
    Skip(pad_);
  }

  void Skip(uint64_t n) {
    skip_left_ = n;
    state_ = St::kSkip;
    if (n == 0) ExpectHeader();
  }

  size_t SkipBytes(const Src& in, size_t pos) {
    const size_t take = static_cast<size_t>(std::min<uint64_t>(skip_left_, in.size() - pos));
    skip_left_ -= take;
    if (skip_left_ == 0) ExpectHeader();
    return pos + take;
  }

  void Fail(const std::string& why, bool report = true) {
    if (failed_) return;
    failed_ = true;
    if (report) {
      EnsureEntered();  // a member cut short is named
      ctx_.Undecodable({start_, last_end_}, why);
    }
    CloseMember();
  }

  Layer& out_;
  Context& ctx_;
  const uint32_t depth_;
  DepthLimitProbe probe_;
  St state_ = St::kHeader;
  std::string hdr_;
  Meta meta_ = Meta::kIgnored;
  PaxParser parser_;
  PaxValues pax_, global_;
  std::string long_name_, name_;
  bool have_long_name_ = false;
  uint64_t left_ = 0, pad_ = 0, skip_left_ = 0;
  int zero_blocks_ = 0;
  bool started_ = false, failed_ = false, ended_ = false, trailing_reported_ = false;
  bool member_current_ = false, member_entered_ = false, doc_open_ = false;
  uint64_t start_ = 0, last_end_ = 0, header_begin_ = 0;
};

}  // namespace

DecoderPtr MakeTar(Layer& out) { return std::make_unique<Tar>(out); }

}  // namespace egressguard::dlp::decode
