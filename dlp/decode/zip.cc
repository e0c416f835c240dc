// Zip archives (PKWARE APPNOTE 6.3), streamed from the local file headers: a body is
// inspected as it passes and the central directory at its end is never needed. Written
// here rather than with a library because the Debian ones (libzip, minizip, libarchive's
// seekable reader) want the central directory first, i.e. the whole body held.
//
// Each member is one document of the output layer, named by its path and entered as a
// container member, so findings say "customers.zip!a.csv". Stored members are passed on
// as views of the input (exact offsets where the input is linear); compressed ones
// (deflate, bzip2, LZMA: the methods zip writers use) go through their StreamCodec
// (stream_codec.h) and map coarsely, like compress.cc's Decompressor. Member names,
// extra fields and the central directory are not emitted: they are bytes of the layer
// the archive came from, which is scanned already (raw, or decoded and emitted).
//
// Where a member's data ends: its compressed size, or with a data descriptor (flag bit 3,
// sizes unknown up front) the end of the deflate stream, or for stored data the
// descriptor signature whose sizes match the bytes before it. Encrypted members are
// reported (Context::Encrypted) and skipped; other methods are undecodable and
// skipped; when such a member's size is unknown, the rest of the archive cannot be
// found and is reported so.

#include <fmt/format.h>

#include <algorithm>
#include <memory>
#include <utility>

#include "dlp/decode/decoders.h"
#include "dlp/decode/stream_codec.h"

namespace egressguard::dlp::decode {
namespace {

constexpr size_t kLocalFixed = 30, kCentralFixed = 46, kEndFixed = 22, kEnd64Fixed = 12;
constexpr size_t kLocatorFixed = 20, kSignatureFixed = 6, kSigLen = 4;
constexpr size_t kMaxName = 1024;   // a longer member name is cut: it names, it does not prove
constexpr size_t kMaxExtraKept = 32;  // the zip64 and AES extra fields are shorter
// Longest data descriptor (signature, CRC, two 8-byte sizes) and the record signature
// that must follow it.
constexpr size_t kLook = 4 + 4 + 16 + 4;
constexpr size_t kOutChunk = 16 << 10;
constexpr uint64_t kBombMinOutput = 1 << 20;  // as compress.cc
constexpr size_t kMaxMemberReports = 16;      // per archive; the first ones flag it already
constexpr uint32_t kNoSize = 0xffffffff;      // a 32-bit size field whose value is in the zip64 extra
constexpr std::string_view kDescriptorSig("PK\x07\x08", 4);

uint64_t Le(std::string_view b, size_t at, size_t width) {
  uint64_t v = 0;
  for (size_t i = width; i > 0; --i) v = (v << 8) | static_cast<uint8_t>(b[at + i - 1]);
  return v;
}

enum class Rec { kLocal, kCentral, kEnd, kEnd64, kLocator64, kSignature, kDescriptor, kSpanned, kNone };

Rec RecordOf(std::string_view sig) {
  if (sig.size() < 4 || sig.substr(0, 2) != "PK") return Rec::kNone;
  const uint16_t kind = static_cast<uint16_t>(Le(sig, 2, 2));
  switch (kind) {
    case 0x0403: return Rec::kLocal;
    case 0x0201: return Rec::kCentral;
    case 0x0605: return Rec::kEnd;
    case 0x0606: return Rec::kEnd64;
    case 0x0706: return Rec::kLocator64;
    case 0x0505: return Rec::kSignature;
    case 0x0807: return Rec::kDescriptor;
    case 0x3030: return Rec::kSpanned;  // "PK00": a split archive that fit one segment
    default: return Rec::kNone;
  }
}

// What may follow a member's data and its descriptor.
bool StartsRecord(std::string_view b) {
  const Rec r = RecordOf(b);
  return r == Rec::kLocal || r == Rec::kCentral || r == Rec::kEnd || r == Rec::kEnd64 || r == Rec::kSignature;
}

const char* MethodName(uint16_t m) {
  switch (m) {
    case 0: return "stored";
    case 1: return "shrink";
    case 2: case 3: case 4: case 5: return "reduce";
    case 6: return "implode";
    case 8: return "deflate";
    case 9: return "deflate64";
    case 10: return "PKWARE imploding";
    case 12: return "bzip2";
    case 14: return "lzma";
    case 18: return "IBM TERSE";
    case 19: return "IBM LZ77";
    case 93: return "zstd";
    case 94: return "mp3";
    case 95: return "xz";
    case 96: return "jpeg";
    case 97: return "wavpack";
    case 98: return "ppmd";
    default: return "unknown";
  }
}

// Names go into finding reports and logs: control characters become '?'.
std::string MemberName(std::string_view raw) {
  std::string name(raw.substr(0, kMaxName));
  for (char& c : name) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  }
  return name;
}

// Length of the data descriptor at the start of d for a member of csize compressed and
// usize uncompressed bytes, or 0 when none fits: signature optional unless need_sig, sizes
// 4 or 8 bytes wide (zip64; tried first when the header had a zip64 extra field), and a
// record signature right after it, unless d ends first at the end of the input.
size_t DescriptorLength(std::string_view d, uint64_t csize, uint64_t usize, bool need_sig, bool wide_first,
                        bool at_end) {
  for (const bool sig : {true, false}) {
    if (!sig && need_sig) break;
    if (sig && RecordOf(d) != Rec::kDescriptor) continue;
    const size_t sizes_at = (sig ? 4 : 0) + 4;  // past the CRC
    for (const bool wide : {wide_first, !wide_first}) {
      const size_t w = wide ? 8 : 4;
      const size_t len = sizes_at + 2 * w;
      if (d.size() < len) continue;
      const uint64_t mask = wide ? ~uint64_t{0} : uint64_t{0xffffffff};
      if (Le(d, sizes_at, w) != (csize & mask) || Le(d, sizes_at + w, w) != (usize & mask)) continue;
      const std::string_view next = d.substr(len, kSigLen);
      if (next.size() == kSigLen ? StartsRecord(next) : at_end) return len;
    }
  }
  return 0;
}

class Zip final : public Decoder {
 public:
  explicit Zip(Layer& out) : out_(out), ctx_(out.ctx()), depth_(out.depth()), probe_(out) { ExpectRecord(); }

  // Not closing the member here: without Finish the tree is being torn down, and the
  // output layer (its owner's, declared after the decoder) is gone already.
  ~Zip() override = default;

  void Put(const Src& in) override {
    if (in.empty() || Stopped()) return;
    if (!started_) {
      started_ = true;
      start_ = in.SpanOf(0, 1).begin;
    }
    last_end_ = std::max(last_end_, in.SpanOf(0, in.size()).end);
    Drive(in);
  }

  void Finish() override {
    if (started_ && !Stopped()) {
      // Decisions that waited for bytes after them: the input has no more.
      if (state_ == St::kStoredScan) {
        StoredScan(Src(), 0, /*at_end=*/true);
      } else if (state_ == St::kGather && gather_ == G::kDescriptor && !hdr_.empty()) {
        OnDescriptor(/*at_end=*/true);
      }
    }
    if (started_ && !Stopped()) {
      const bool complete = after_end_ && state_ == St::kGather && gather_ == G::kSignature && hdr_.empty();
      if (state_ == St::kSkip && then_ == Then::kEncrypted) ReportEncrypted();
      if (!complete) {
        Fail(after_end_ ? "data after the end of the zip archive" : "truncated zip archive");
      }
    }
    CloseMember();
    inflate_.reset();
    codec_ = nullptr;
    other_codec_.reset();
    out_buf_.reset();
  }

  size_t memory_bytes() const override {
    return sizeof(*this) + hdr_.memory_bytes() + tail_.memory_bytes() + name_.capacity() + probe_.memory_bytes() +
           (out_buf_ ? kOutChunk : 0);
  }

  // Header bytes are never emitted and stored data goes out at once: held are only the
  // look-behind of stored data that may still turn out to be a data descriptor, and a
  // deflated member's input not yet fully turned into output (its spans start there).
  uint64_t held_from() const override {
    if (Stopped()) return kNothingHeld;
    uint64_t h = tail_.orig_begin();
    if (state_ == St::kInflate && inflating_) h = std::min(h, reflected_);
    return h;
  }

 private:
  // kGather collects a fixed-size record (which one: gather_) into hdr_; the others
  // consume member data or skip bytes.
  enum class St { kGather, kName, kSkip, kStored, kStoredScan, kInflate, kFailed };
  // The fixed-size parts kGather collects: a record signature, then the record.
  enum class G { kSignature, kLocal, kExtraField, kDescriptor, kCentral, kEnd, kEnd64, kLocator64, kDigitalSig };
  // What to do once a kSkip is done.
  enum class Then { kRecord, kExtra, kMemberDone, kEncrypted, kArchiveEnd };

  bool Stopped() const { return failed_ || ctx_.stopped; }

  void Drive(const Src& in) {
    size_t pos = 0;
    while (pos < in.size() && !Stopped()) {
      switch (state_) {
        case St::kGather: pos = Gather(in, pos); break;
        case St::kName: pos = Name(in, pos); break;
        case St::kSkip: pos = Skip(in, pos); break;
        case St::kStored: pos = Stored(in, pos); break;
        case St::kStoredScan: pos = StoredScan(in, pos, false); break;
        case St::kInflate: pos = Inflate(in, pos); break;
        case St::kFailed: return;
      }
    }
  }

  // ---- fixed-size records ----

  void Need(G what, size_t n) {
    state_ = St::kGather;
    gather_ = what;
    need_ = n;
  }

  // The next record: its 4-byte signature first.
  void ExpectRecord() {
    hdr_.Clear();
    Need(G::kSignature, kSigLen);
  }

  size_t Gather(const Src& in, size_t pos) {
    if (hdr_.empty()) record_begin_ = in.SpanOf(pos, pos + 1).begin;
    const size_t take = std::min(need_ - hdr_.size(), in.size() - pos);
    hdr_.Append(in.Sub(pos, pos + take));
    if (hdr_.size() == need_) Gathered();
    return pos + take;
  }

  void Gathered() {
    const std::string_view b = hdr_.bytes();
    switch (gather_) {
      case G::kSignature: OnSignature(b); return;
      case G::kLocal: OnLocalHeader(b); return;
      case G::kExtraField: ExtraGathered(); return;
      case G::kDescriptor: OnDescriptor(/*at_end=*/false); return;
      case G::kCentral:
        // Names, extra fields and comments of the directory: bytes of the parent layer.
        Skip(Le(b, 28, 2) + Le(b, 30, 2) + Le(b, 32, 2), Then::kRecord);
        return;
      case G::kEnd: Skip(Le(b, 20, 2), Then::kArchiveEnd); return;
      case G::kEnd64: Skip(Le(b, 4, 8), Then::kRecord); return;
      case G::kLocator64: ExpectRecord(); return;
      case G::kDigitalSig: Skip(Le(b, 4, 2), Then::kRecord); return;
    }
  }

  void OnSignature(std::string_view sig) {
    const Rec r = RecordOf(sig);
    if (after_end_) {
      // A second archive appended to the first is still read (it would otherwise pass
      // unread), reported once; anything else ends the inspection.
      if (r != Rec::kLocal) {
        Fail("data after the end of the zip archive", /*report=*/!trailing_reported_);
        return;
      }
      if (!trailing_reported_) ctx_.Undecodable({record_begin_, last_end_}, "data after the end of the zip archive");
      trailing_reported_ = true;
      after_end_ = in_directory_ = false;
    }
    const bool first = !seen_record_;
    seen_record_ = true;
    switch (r) {
      case Rec::kLocal:
        if (in_directory_) {
          Fail("corrupt zip archive: a local file header inside the central directory");
          return;
        }
        Need(G::kLocal, kLocalFixed);
        return;
      case Rec::kCentral: in_directory_ = true; Need(G::kCentral, kCentralFixed); return;
      case Rec::kEnd: Need(G::kEnd, kEndFixed); return;
      case Rec::kEnd64: in_directory_ = true; Need(G::kEnd64, kEnd64Fixed); return;
      case Rec::kLocator64: in_directory_ = true; Need(G::kLocator64, kLocatorFixed); return;
      case Rec::kSignature: in_directory_ = true; Need(G::kDigitalSig, kSignatureFixed); return;
      case Rec::kDescriptor:
      case Rec::kSpanned:
        if (first) {  // the split-archive marker at the very start
          ExpectRecord();
          return;
        }
        [[fallthrough]];
      case Rec::kNone:
        Fail(fmt::format("corrupt zip archive: no record signature at a record boundary ({:02x} {:02x} {:02x} {:02x})",
                         static_cast<uint8_t>(sig[0]), static_cast<uint8_t>(sig[1]), static_cast<uint8_t>(sig[2]),
                         static_cast<uint8_t>(sig[3])));
        return;
    }
  }

  void OnLocalHeader(std::string_view h) {
    member_begin_ = record_begin_;
    flags_ = static_cast<uint16_t>(Le(h, 6, 2));
    method_ = static_cast<uint16_t>(Le(h, 8, 2));
    csize_ = Le(h, 18, 4);
    usize_ = Le(h, 22, 4);
    name_left_ = Le(h, 26, 2);
    extra_left_ = Le(h, 28, 2);
    zip64_ = aes_ = false;
    name_.clear();
    hdr_.Clear();
    state_ = St::kName;
    if (name_left_ == 0) StartExtra();
  }

  size_t Name(const Src& in, size_t pos) {
    const size_t take = static_cast<size_t>(std::min<uint64_t>(name_left_, in.size() - pos));
    if (name_.size() < kMaxName) name_.append(in.bytes().substr(pos, std::min(take, kMaxName - name_.size())));
    name_left_ -= take;
    if (name_left_ == 0) StartExtra();
    return pos + take;
  }

  // Extra field records (id, length, data); only zip64 sizes (0x0001) and WinZip AES
  // (0x9901) matter. A malformed tail (zipalign pads with zeros) is skipped.
  void StartExtra() {
    hdr_.Clear();
    if (extra_left_ == 0) {
      HeaderDone();
    } else if (extra_left_ < 4) {
      Skip(std::exchange(extra_left_, 0), Then::kExtra);
    } else {
      Need(G::kExtraField, 4);  // its id and length first (extra_stage_ 0), then its data
      extra_stage_ = 0;
    }
  }

  void ExtraGathered() {
    const std::string_view b = hdr_.bytes();
    if (extra_stage_ == 0) {
      extra_id_ = static_cast<uint16_t>(Le(b, 0, 2));
      extra_left_ -= 4;
      const uint64_t len = std::min<uint64_t>(Le(b, 2, 2), extra_left_);
      hdr_.Clear();
      if ((extra_id_ == 0x0001 || extra_id_ == 0x9901) && len > 0) {
        extra_stage_ = 1;
        extra_rest_ = len - std::min<uint64_t>(len, kMaxExtraKept);
        need_ = static_cast<size_t>(std::min<uint64_t>(len, kMaxExtraKept));
        return;
      }
      extra_left_ -= len;
      Skip(len, Then::kExtra);
      return;
    }
    if (extra_id_ == 0x0001) {
      // Local header rule: both sizes present, uncompressed first; only the fields whose
      // 32-bit value is 0xffffffff take them. Shorter records hold the marked ones in order.
      zip64_ = true;
      if (b.size() >= 16) {
        if (usize_ == kNoSize) usize_ = Le(b, 0, 8);
        if (csize_ == kNoSize) csize_ = Le(b, 8, 8);
      } else if (b.size() >= 8) {
        if (usize_ == kNoSize) usize_ = Le(b, 0, 8);
        else if (csize_ == kNoSize) csize_ = Le(b, 0, 8);
      }
    } else {
      aes_ = true;
    }
    extra_left_ -= b.size() + extra_rest_;
    hdr_.Clear();
    Skip(extra_rest_, Then::kExtra);
  }

  void HeaderDone() {
    hdr_.Clear();
    const bool descriptor = (flags_ & 0x0008) != 0;
    // Bit 0 traditional or AES encryption, bit 6 strong encryption, bit 13 a masked
    // local header (central directory encryption): no readable data either way.
    const bool encrypted = (flags_ & 0x0001) || (flags_ & 0x0040) || (flags_ & 0x2000) || method_ == 99 || aes_;
    descriptor_ = descriptor;
    // With a descriptor the header's sizes are meant to be zero, but writers that can
    // seek back (Info-ZIP to a file) fill them in. Data that is decoded is measured
    // (stream end, descriptor scan); data that is skipped can only go by them.
    const bool size_known = !descriptor || (csize_ != 0 && csize_ != kNoSize);
    member_current_ = true;
    if (encrypted) {
      if (!size_known) {
        // The size is in the descriptor after data that cannot be read: the next
        // header cannot be found.
        Named([&] { ctx_.Encrypted({member_begin_, last_end_}, "encrypted zip member"); });
        Fail("encrypted zip member of unknown size: the rest of the archive cannot be read");
        return;
      }
      Skip(csize_, Then::kEncrypted);
      return;
    }
    if (method_ != 0 && method_ != 8 && method_ != 12 && method_ != 14) {
      if (!size_known) {
        Fail(fmt::format("zip member compressed with unsupported method {} ({}) and of unknown size: the rest of "
                         "the archive cannot be read",
                         method_, MethodName(method_)));
        return;
      }
      MemberUndecodable(fmt::format("zip member compressed with unsupported method {} ({})", method_, MethodName(method_)));
      Skip(csize_, Then::kMemberDone);
      return;
    }
    if (!descriptor && csize_ == 0) {  // a directory or an empty file
      member_current_ = false;
      ExpectRecord();
      return;
    }
    member_in_ = member_out_ = 0;
    if (method_ == 0) {
      left_ = csize_;
      state_ = descriptor ? St::kStoredScan : St::kStored;
      return;
    }
    if (!StartInflate(size_known)) return;
    left_ = descriptor ? UINT64_MAX : csize_;
    state_ = St::kInflate;
  }

  // ---- skipping ----

  void Skip(uint64_t n, Then then) {
    skip_left_ = n;
    then_ = then;
    state_ = St::kSkip;
    if (n == 0) SkipDone();
  }

  size_t Skip(const Src& in, size_t pos) {
    const size_t take = static_cast<size_t>(std::min<uint64_t>(skip_left_, in.size() - pos));
    skip_left_ -= take;
    if (take > 0) skip_end_ = std::max(skip_end_, in.SpanOf(pos, pos + take).end);
    if (skip_left_ == 0) SkipDone();
    return pos + take;
  }

  void SkipDone() {
    switch (then_) {
      case Then::kRecord: ExpectRecord(); return;
      case Then::kExtra: StartExtra(); return;
      case Then::kEncrypted:
        ReportEncrypted();
        [[fallthrough]];
      case Then::kMemberDone:
        CloseMember();
        if (descriptor_) {
          // Skipped by the header's sizes: its descriptor must repeat them.
          member_in_ = csize_;
          member_out_ = usize_;
          hdr_.Clear();
          Need(G::kDescriptor, kLook);
          return;
        }
        ExpectRecord();
        return;
      case Then::kArchiveEnd:
        after_end_ = true;
        in_directory_ = false;
        ExpectRecord();
        return;
    }
  }

  void ReportEncrypted() {
    Named([&] { ctx_.Encrypted({member_begin_, std::max(skip_end_, member_begin_)}, "encrypted zip member"); });
  }

  // ---- member data ----

  // The member is entered (Context::EnterMember) only while its data is emitted or a
  // report about it is made: a layer at the members' depth not decoded from them (the
  // parent layer's base64 runs) takes whatever member is open when it emits.
  void EnsureEntered() {
    if (!member_current_ || member_entered_) return;
    ctx_.EnterMember(out_, name_.empty() ? std::string("(unnamed)") : MemberName(name_));
    member_entered_ = true;
  }

  void LeaveMember() {
    if (!member_entered_) return;
    ctx_.LeaveMember(out_);
    member_entered_ = false;
  }

  // Makes a report about the current member, named by it.
  template <typename F>
  void Named(F&& report) {
    EnsureEntered();
    report();
    if (!doc_open_) LeaveMember();
  }

  void EmitData(const Src& s) {
    if (s.empty()) return;
    EnsureEntered();
    if (!doc_open_) {
      DocHint hint;
      hint.name = MemberName(name_);
      out_.BeginDocument(hint);
      probe_.Begin();
      doc_open_ = true;
    }
    probe_.Put(s);
    out_.Emit(s);
  }

  void CloseMember() {
    if (doc_open_) {
      probe_.End();
      out_.EndDocument();
      doc_open_ = false;
    }
    LeaveMember();
    member_current_ = false;
  }

  size_t Stored(const Src& in, size_t pos) {
    const size_t take = static_cast<size_t>(std::min<uint64_t>(left_, in.size() - pos));
    EmitData(in.Sub(pos, pos + take));
    left_ -= take;
    if (left_ == 0) {
      CloseMember();
      ExpectRecord();
    }
    return pos + take;
  }

  // Stored data of unknown size: it ends at a descriptor signature whose sizes count the
  // bytes before it. The last bytes that may still start one (fewer than kLook after
  // them) wait in tail_; everything before goes out at once.
  size_t StoredScan(const Src& in, size_t pos, bool at_end) {
    const Src rest = in.Sub(pos, in.size());
    if (!tail_.empty()) {
      if (rest.size() < kLook || at_end) {
        // A short read: scan it together with the tail (both under 2 * kLook bytes).
        MappedBuffer joined = std::move(tail_);
        tail_.Clear();
        joined.Append(rest);
        ScanStored(joined.src(), at_end, /*replay=*/true);
        return in.size();
      }
      // Every signature that starts in the tail has kLook bytes after it here.
      const size_t t = tail_.size();
      std::string head(tail_.bytes());
      head.append(rest.bytes().substr(0, kLook));
      for (size_t p = head.find(kDescriptorSig); p < t; p = head.find(kDescriptorSig, p + 1)) {
        const size_t len = DescriptorLength(std::string_view(head).substr(p), member_in_ + p, member_in_ + p,
                                            /*need_sig=*/true, zip64_, false);
        if (len == 0) continue;
        EmitStored(tail_.src().Sub(0, p));
        // Bytes after the descriptor still in the tail start the next record.
        MappedBuffer next;
        if (p + len < t) next.Append(tail_.src().Sub(p + len, t));
        tail_.Clear();
        StoredDone();
        if (!next.empty()) Drive(next.src());
        return pos + (p + len > t ? p + len - t : 0);
      }
      EmitStored(tail_.src());
      tail_.Clear();
    }
    return pos + ScanStored(rest, at_end, /*replay=*/false);
  }

  // Scans view for the descriptor ending the member. Returns the bytes of view used: up
  // to the descriptor's end, or all (what may still start one kept in tail_). With
  // replay, view is a private copy: the bytes after the descriptor are driven on here.
  size_t ScanStored(const Src& view, bool at_end, bool replay) {
    const std::string_view b = view.bytes();
    for (size_t p = b.find(kDescriptorSig); p != std::string_view::npos; p = b.find(kDescriptorSig, p + 1)) {
      if (b.size() - p < kLook && !at_end) break;
      const size_t len = DescriptorLength(b.substr(p), member_in_ + p, member_in_ + p, true, zip64_, at_end);
      if (len == 0) continue;
      EmitStored(view.Sub(0, p));
      StoredDone();
      if (!replay) return p + len;
      if (p + len < b.size()) {
        MappedBuffer next;
        next.Append(view.Sub(p + len, b.size()));
        Drive(next.src());
      }
      return b.size();
    }
    if (at_end) {
      EmitStored(view);
      MemberUndecodable("truncated zip member: stored data without its data descriptor");
      return b.size();
    }
    const size_t keep = b.size() > kLook - 1 ? b.size() - (kLook - 1) : 0;
    EmitStored(view.Sub(0, keep));
    tail_.Append(view.Sub(keep, b.size()));
    return b.size();
  }

  void EmitStored(const Src& s) {
    member_in_ += s.size();
    EmitData(s);
  }

  void StoredDone() {
    CloseMember();
    ExpectRecord();
  }

  // Deflate keeps one inflater for all members (reset between them); bzip2 and LZMA
  // members, rare, get a codec each.
  bool StartInflate(bool size_known) {
    std::string why;
    if (method_ == 8) {
      if (inflate_ && !inflate_->Reset()) inflate_.reset();
      if (!inflate_) inflate_ = MakeRawInflateCodec(ctx_, &why);
      codec_ = inflate_.get();
    } else {
      other_codec_ = method_ == 12 ? MakeBzip2Codec(ctx_, /*concatenated=*/false, &why)
                                   : MakeZipLzmaCodec(ctx_, size_known ? usize_ : UINT64_MAX,
                                                      (flags_ & 0x0002) != 0 || !size_known, &why);
      codec_ = other_codec_.get();
    }
    if (!codec_) {
      Fail(fmt::format("zip member: {} decoder: {}", MethodName(method_), why));
      return false;
    }
    if (!out_buf_) out_buf_ = std::make_unique<char[]>(kOutChunk);
    inflating_ = false;
    return true;
  }

  size_t Inflate(const Src& in, size_t pos) {
    if (!inflating_) {
      inflating_ = true;
      reflected_ = in.SpanOf(pos, pos + 1).begin;
      in_end_ = reflected_;
    }
    const size_t limit = pos + static_cast<size_t>(std::min<uint64_t>(left_, in.size() - pos));
    const auto* data = reinterpret_cast<const uint8_t*>(in.data());
    // Output also comes from the input taken in by this call: where that input maps
    // coarsely (a member of a deflated member) its span starts before reflected_, and
    // output spans must cover it, or they could shrink to nothing.
    call_begin_ = pos < limit ? in.SpanOf(pos, pos + 1).begin : reflected_;
    const char* method = MethodName(method_);
    while (!Stopped()) {
      const StreamCodec::Result r = codec_->Code(data + pos, limit - pos, reinterpret_cast<uint8_t*>(out_buf_.get()),
                                                 kOutChunk, /*finish=*/false);
      pos += r.used;
      member_in_ += r.used;
      archive_in_ += r.used;
      if (left_ != UINT64_MAX) left_ -= r.used;
      if (r.used > 0) in_end_ = std::max(in_end_, in.SpanOf(0, pos).end);
      if (r.produced > 0 && !InflateOutput(r.produced)) return in.size();
      const bool end = r.status == StreamCodec::Status::kEnd;
      const bool stalled = r.status == StreamCodec::Status::kOk && pos == limit && r.produced < kOutChunk;
      if (r.status != StreamCodec::Status::kError && (stalled || end)) reflected_ = in_end_;
      if (r.status == StreamCodec::Status::kError) {
        inflating_ = false;
        if (descriptor_) {
          Fail(fmt::format("corrupt {} data in a zip member of unknown size ({}): the rest of the archive "
                           "cannot be read",
                           method, r.error));
        } else {
          MemberUndecodable(fmt::format("corrupt {} data in zip member: {}", method, r.error));
          Skip(left_, Then::kMemberDone);
        }
        return pos;
      }
      if (end) {
        inflating_ = false;
        InflateEnded();
        return pos;
      }
      if (stalled) break;
    }
    if (!Stopped() && left_ == 0) {
      inflating_ = false;
      MemberUndecodable(fmt::format("truncated {} data in zip member", method));
      CloseMember();
      ExpectRecord();
    }
    return pos;
  }

  bool InflateOutput(size_t produced) {
    member_out_ += produced;
    archive_out_ += produced;
    const uint64_t ratio = ctx_.limits.max_expansion_ratio;
    // Per member, and over all the archive's deflated members: a thousand members of
    // 1 KiB inflating to 512 KiB each are one bomb, though none reaches kBombMinOutput.
    const bool member_bomb = member_out_ >= kBombMinOutput && member_out_ / ratio > member_in_;
    const bool archive_bomb = archive_out_ >= kBombMinOutput && archive_out_ / ratio > archive_in_;
    if (member_bomb || archive_bomb) {
      inflating_ = false;
      Fail(fmt::format("zip member inflates more than {}x (decompression bomb)", ratio));
      return false;
    }
    SinglePiece piece(std::string_view(out_buf_.get(), produced), {std::min(reflected_, call_begin_), in_end_}, false);
    EmitData(piece.src());
    return !Stopped();
  }

  void InflateEnded() {
    CloseMember();
    if (descriptor_) {
      hdr_.Clear();
      Need(G::kDescriptor, kLook);
    } else if (left_ > 0) {
      Undecodable({member_begin_, last_end_}, fmt::format("data after the end of the {} stream of zip member {}",
                                                          MethodName(method_), MemberName(name_)));
      Skip(left_, Then::kRecord);
    } else {
      ExpectRecord();
    }
  }

  void OnDescriptor(bool at_end) {
    const std::string_view d = hdr_.bytes();
    const size_t len = DescriptorLength(d, member_in_, member_out_, /*need_sig=*/false, zip64_, at_end);
    if (len == 0) {
      if (at_end) {
        Fail("truncated zip archive");
        return;
      }
      Fail(fmt::format("corrupt zip archive: the data descriptor of member {} does not match its data",
                       MemberName(name_)));
      return;
    }
    // kLook bytes were gathered: those after the descriptor start the next record.
    MappedBuffer next;
    if (len < d.size()) next.Append(hdr_.src().Sub(len, d.size()));
    ExpectRecord();
    if (!next.empty()) Drive(next.src());
  }

  // ---- reports ----

  // A member-level problem: named by the member (entered), the archive goes on.
  void MemberUndecodable(const std::string& why) {
    if (member_reports_ >= kMaxMemberReports) return;
    ++member_reports_;
    Named([&] { ctx_.Undecodable({member_begin_, last_end_}, why); });
  }

  void Undecodable(OrigSpan where, const std::string& why) {
    if (member_reports_ >= kMaxMemberReports) return;
    ++member_reports_;
    ctx_.Undecodable(where, why);
  }

  // The archive cannot be read on: reported once (named by the open member, if any),
  // nothing more is parsed.
  void Fail(const std::string& why, bool report = true) {
    if (failed_) return;
    failed_ = true;
    state_ = St::kFailed;
    if (report) Named([&] { ctx_.Undecodable({start_, last_end_}, why); });
    CloseMember();
    tail_.Clear();
    hdr_.Clear();
  }

  Layer& out_;
  Context& ctx_;
  const uint32_t depth_;
  DepthLimitProbe probe_;

  St state_ = St::kGather;
  G gather_ = G::kSignature;
  size_t need_ = 0;
  MappedBuffer hdr_;     // the record being gathered
  MappedBuffer tail_;    // stored data that may start a descriptor
  Then then_ = Then::kRecord;
  uint64_t skip_left_ = 0, skip_end_ = 0;

  // The member being read.
  uint16_t flags_ = 0, method_ = 0, extra_id_ = 0;
  uint64_t csize_ = 0, usize_ = 0, left_ = 0;
  uint64_t name_left_ = 0, extra_left_ = 0, extra_rest_ = 0;
  int extra_stage_ = 0;
  bool zip64_ = false, aes_ = false, descriptor_ = false;
  std::string name_;
  bool member_current_ = false;  // a member's header was read, its data not finished
  bool member_entered_ = false, doc_open_ = false;
  uint64_t member_in_ = 0, member_out_ = 0;
  uint64_t archive_in_ = 0, archive_out_ = 0;  // over all deflated members

  // Inflation.
  std::unique_ptr<StreamCodec> inflate_;      // deflate, kept across members
  std::unique_ptr<StreamCodec> other_codec_;  // this member's bzip2 or LZMA codec
  StreamCodec* codec_ = nullptr;              // the member's codec: one of the two
  bool inflating_ = false;
  std::unique_ptr<char[]> out_buf_;
  uint64_t reflected_ = 0, in_end_ = 0;
  uint64_t call_begin_ = 0;  // original start of the input the running Inflate call takes

  bool started_ = false, failed_ = false, seen_record_ = false;
  bool in_directory_ = false, after_end_ = false, trailing_reported_ = false;
  size_t member_reports_ = 0;
  uint64_t start_ = 0, last_end_ = 0, record_begin_ = 0, member_begin_ = 0;
};

}  // namespace

DecoderPtr MakeZip(Layer& out) { return std::make_unique<Zip>(out); }

}  // namespace egressguard::dlp::decode
