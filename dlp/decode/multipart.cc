// multipart/* bodies (RFC 2046): split at the boundary, each part one document of the
// output layer, decoded by its own Content-Transfer-Encoding and typed by its own
// Content-Type (which the output layer's transform slot then uses as a hint).

#include <algorithm>
#include <fmt/format.h>

#include "dlp/decode/decoders.h"

namespace egressguard::dlp::decode {
namespace {

constexpr size_t kSlice = 4096;         // input is buffered at most this much at a time
constexpr size_t kMaxHeaders = 16 << 10;
constexpr size_t kMaxBoundaryLine = 1024;

constexpr size_t kMaxFileName = 255;

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// The parameters of a header value ("form-data; name=\"f\"; filename=\"a.zip\""),
// quoted strings unquoted; f(lower-cased name, value) for each.
template <typename F>
void ForEachParam(std::string_view v, F&& f) {
  size_t i = v.find(';');
  while (i != std::string_view::npos && i < v.size()) {
    ++i;  // past ';'
    const size_t eq = v.find('=', i);
    if (eq == std::string_view::npos) return;
    const size_t next = v.find(';', i);
    if (next < eq) {  // a parameter without a value
      i = next;
      continue;
    }
    const std::string key = Lower(Trim(v.substr(i, eq - i)));
    size_t j = eq + 1;
    while (j < v.size() && (v[j] == ' ' || v[j] == '\t')) ++j;
    std::string value;
    if (j < v.size() && v[j] == '"') {
      for (++j; j < v.size() && v[j] != '"'; ++j) {
        // Only \" and \\ are taken as escapes: browsers send other backslashes as they are.
        if (v[j] == '\\' && j + 1 < v.size() && (v[j + 1] == '"' || v[j + 1] == '\\')) ++j;
        value += v[j];
      }
      i = v.find(';', j);
    } else {
      const size_t semi = v.find(';', j);
      value = std::string(Trim(v.substr(j, semi == std::string_view::npos ? std::string_view::npos : semi - j)));
      i = semi;
    }
    f(key, value);
  }
}

// RFC 5987 ext-value: charset'language'percent-encoded. The bytes are kept as sent
// (UTF-8 in practice): the name is for sniffing and for reports.
std::string ExtValue(std::string_view v) {
  const size_t q1 = v.find('\'');
  const size_t q2 = q1 == std::string_view::npos ? q1 : v.find('\'', q1 + 1);
  if (q2 == std::string_view::npos) return "";
  std::string out;
  for (size_t i = q2 + 1; i < v.size(); ++i) {
    if (v[i] == '%' && i + 2 < v.size() && HexValue(v[i + 1]) >= 0 && HexValue(v[i + 2]) >= 0) {
      out += static_cast<char>(HexValue(v[i + 1]) * 16 + HexValue(v[i + 2]));
      i += 2;
    } else {
      out += v[i];
    }
  }
  return out;
}

// Only the last path component: old browsers send "C:\\Users\\me\\customers.zip".
std::string BaseName(std::string_view name) {
  const size_t slash = name.find_last_of("/\\");
  if (slash != std::string_view::npos) name.remove_prefix(slash + 1);
  std::string out(name.substr(0, kMaxFileName));
  for (char& c : out) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  }
  return out;
}

// A part's file name: Content-Disposition filename* (RFC 6266) over filename, else the
// Content-Type name parameter mail clients send.
std::string PartFileName(std::string_view disposition, std::string_view content_type) {
  std::string plain, extended, type_name;
  ForEachParam(disposition, [&](const std::string& key, const std::string& value) {
    if (key == "filename") plain = value;
    if (key == "filename*") extended = ExtValue(value);
  });
  ForEachParam(content_type, [&](const std::string& key, const std::string& value) {
    if (key == "name") type_name = value;
  });
  if (!extended.empty()) return BaseName(extended);
  if (!plain.empty()) return BaseName(plain);
  return BaseName(type_name);
}

DocHint ParsePartHeaders(std::string_view block) {
  DocHint hint;
  std::string_view disposition;
  while (!block.empty()) {
    const size_t nl = block.find('\n');
    const std::string_view line = block.substr(0, nl);
    block = nl == std::string_view::npos ? std::string_view() : block.substr(nl + 1);
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    const std::string name = Lower(Trim(line.substr(0, colon)));
    const std::string_view value = Trim(line.substr(colon + 1));
    if (name == "content-type") hint.content_type = std::string(value);
    if (name == "content-transfer-encoding") hint.transfer_encoding = Lower(value);
    if (name == "content-disposition") disposition = value;
    if (name == "content-encoding") {
      std::string unknown;
      hint.encodings = ParseContentEncoding(value, &unknown);
    }
  }
  hint.name = PartFileName(disposition, hint.content_type);
  return hint;
}

// A part with no transfer encoding: the raw layer already holds its bytes, so they only
// go to the output layer's children (which may find gzip, JSON, base64 in it).
class Identity final : public Decoder {
 public:
  explicit Identity(Layer& out) : out_(out) {}
  void Put(const Src& in) override { out_.Emit(in, /*to_sink=*/false); }
  void Finish() override {}
  size_t memory_bytes() const override { return sizeof(*this); }
  uint64_t held_from() const override { return kNothingHeld; }  // passes bytes on at once

 private:
  Layer& out_;
};

// The decoder a part's (or a message's) Content-Transfer-Encoding calls for.
DecoderPtr TransferDecoder(const std::string& transfer_encoding, Layer& out) {
  if (transfer_encoding == "base64") return MakeBase64Body(out);
  if (transfer_encoding == "quoted-printable") return MakeUnescaper(out, kQuotedPrintable, /*lazy=*/false);
  return std::make_unique<Identity>(out);
}

class Multipart final : public Decoder {
 public:
  Multipart(Layer& out, std::string boundary)
      : out_(out), ctx_(out.ctx()), delim_("--" + boundary), body_delim_("\n--" + boundary) {}

  void Put(const Src& in) override {
    if (!started_ && !in.empty()) {
      started_ = true;
      start_ = in.SpanOf(0, 1).begin;
    }
    for (size_t pos = 0; pos < in.size() && !failed_ && !ctx_.stopped; pos += kSlice) {
      const Src slice = in.Sub(pos, std::min(in.size(), pos + kSlice));
      last_end_ = std::max(last_end_, slice.SpanOf(0, slice.size()).end);
      buf_.Append(slice);
      Parse();
    }
  }

  void Finish() override {
    if (!failed_ && !ctx_.stopped && started_) {
      if (state_ == State::kBody) {
        part_->Put(buf_.src());
        EndPart();
      } else if (state_ == State::kAfterDelim || state_ == State::kHeaders) {
        EndPart();
      }
      if (state_ == State::kPreamble) {
        ctx_.Undecodable({start_, last_end_}, "multipart body without its boundary");
      } else if (state_ != State::kEpilogue) {
        ctx_.Undecodable({start_, last_end_}, "multipart body ends without its closing boundary");
      }
    } else if (part_open_) {
      EndPart();
    }
    buf_.Clear();
  }

  size_t memory_bytes() const override {
    return sizeof(*this) + buf_.memory_bytes() + (part_ ? part_->memory_bytes() : 0);
  }

  uint64_t held_from() const override {
    if (failed_) return kNothingHeld;  // nothing more is parsed or emitted
    uint64_t h = part_ ? part_->held_from() : kNothingHeld;
    switch (state_) {
      case State::kPreamble:
      case State::kEpilogue:
        // The preamble look-behind is at most a delimiter prefix and the byte before it:
        // if a delimiter follows, both are dropped, else they are preamble. Neither is
        // ever decoded.
        return h;
      case State::kAfterDelim:
      case State::kHeaders:
        // Boundary line and unfinished part headers: not emitted themselves, held anyway
        // (cheap: only until the headers end) so a part's headers never leave ahead of
        // the first bytes of its body.
      case State::kBody:
        // The look-behind for "\r\n--boundary": body bytes unless a delimiter follows.
        return std::min(h, buf_.orig_begin());
    }
    return h;
  }

 private:
  enum class State { kPreamble, kAfterDelim, kHeaders, kBody, kEpilogue };

  void Parse() {
    while (!failed_ && !ctx_.stopped) {
      const std::string_view b = buf_.bytes();
      switch (state_) {
        case State::kPreamble: {
          // A delimiter starts a line: at the very start of the body or after '\n'.
          auto at_line_start = [&](size_t i) { return i == 0 ? !preamble_dropped_ : b[i - 1] == '\n'; };
          size_t idx = b.find(delim_);
          while (idx != std::string_view::npos && !at_line_start(idx)) idx = b.find(delim_, idx + 1);
          if (idx == std::string_view::npos) {
            // Keep a possible delimiter prefix and the byte before it.
            if (b.size() > delim_.size() + 1) {
              buf_.DropFront(b.size() - delim_.size() - 1);
              preamble_dropped_ = true;
            }
            return;
          }
          buf_.DropFront(idx + delim_.size());
          state_ = State::kAfterDelim;
          break;
        }
        case State::kAfterDelim: {
          if (b.size() < 2) return;
          if (b.substr(0, 2) == "--") {
            state_ = State::kEpilogue;
            break;
          }
          // Judged by where the line ends, not by how much is buffered: the same for
          // any chunking.
          const size_t nl = b.find('\n');
          if ((nl == std::string_view::npos ? b.size() : nl) > kMaxBoundaryLine) {
            Fail("multipart boundary line too long");
            return;
          }
          if (nl == std::string_view::npos) return;
          buf_.DropFront(nl + 1);
          state_ = State::kHeaders;
          break;
        }
        case State::kHeaders: {
          size_t end = std::string_view::npos;
          if (b.substr(0, 2) == "\r\n") end = 2;
          else if (b.substr(0, 1) == "\n") end = 1;
          else {
            const size_t crlf = b.find("\n\r\n"), lf = b.find("\n\n");
            if (crlf != std::string_view::npos) end = crlf + 3;
            if (lf != std::string_view::npos && (end == std::string_view::npos || lf + 2 < end)) end = lf + 2;
          }
          if ((end == std::string_view::npos ? b.size() : end) > kMaxHeaders) {
            Fail("multipart part headers too long");
            return;
          }
          if (end == std::string_view::npos) return;
          const DocHint hint = ParsePartHeaders(b.substr(0, end));
          buf_.DropFront(end);
          StartPart(hint);
          state_ = State::kBody;
          break;
        }
        case State::kBody: {
          const size_t idx = b.find(body_delim_);
          if (idx == std::string_view::npos) {
            // Keep what could be the start of "\r\n--boundary".
            const size_t keep = body_delim_.size() + 1;
            if (b.size() > keep) {
              part_->Put(buf_.src().Sub(0, b.size() - keep));
              buf_.DropFront(b.size() - keep);
            }
            return;
          }
          const size_t body_end = (idx > 0 && b[idx - 1] == '\r') ? idx - 1 : idx;
          part_->Put(buf_.src().Sub(0, body_end));
          EndPart();
          buf_.DropFront(idx + body_delim_.size());
          state_ = State::kAfterDelim;
          break;
        }
        case State::kEpilogue:
          buf_.Clear();
          return;
      }
    }
  }

  void StartPart(const DocHint& hint) {
    DocHint content = hint;
    content.transfer_encoding.clear();
    out_.BeginDocument(content);
    part_open_ = true;
    part_ = TransferDecoder(hint.transfer_encoding, out_);
  }

  void EndPart() {
    if (!part_open_) return;
    part_->Finish();
    part_.reset();
    out_.EndDocument();
    part_open_ = false;
  }

  void Fail(const char* why) {
    failed_ = true;
    ctx_.Undecodable({start_, last_end_}, why);
    EndPart();
  }

  Layer& out_;
  Context& ctx_;
  const std::string delim_, body_delim_;
  State state_ = State::kPreamble;
  MappedBuffer buf_;
  DecoderPtr part_;
  bool part_open_ = false, started_ = false, failed_ = false;
  bool preamble_dropped_ = false;  // preamble bytes were discarded: buffer start is not body start
  uint64_t start_ = 0, last_end_ = 0;
};


// An Internet message (RFC 5322 + MIME): an .eml upload, a message/rfc822 part, the raw
// message a mail API is sent. Its header block says how the body is typed and encoded:
// a multipart body is split into its parts as above; a single-part body is decoded by its
// Content-Transfer-Encoding (quoted-printable's soft line breaks and =40, base64) into
// one document typed by its Content-Type. Without the header block's end within
// kMaxHeaders, the message is read as it is (the raw layer holds it; its children still
// look at it).
class MailMessage final : public Decoder {
 public:
  explicit MailMessage(Layer& out) : out_(out), ctx_(out.ctx()) {}

  void Put(const Src& in) override {
    if (body_) {
      body_->Put(in);
      return;
    }
    for (size_t pos = 0; pos < in.size() && !body_ && !ctx_.stopped; pos += kSlice) {
      buf_.Append(in.Sub(pos, std::min(in.size(), pos + kSlice)));
      ParseHeaders(/*final=*/false);
      if (body_ && pos + kSlice < in.size()) body_->Put(in.Sub(pos + kSlice, in.size()));
    }
  }

  void Finish() override {
    if (!body_) ParseHeaders(/*final=*/true);
    if (body_) body_->Finish();
    body_.reset();
    if (document_open_) out_.EndDocument();
    document_open_ = false;
    buf_.Clear();
  }

  size_t memory_bytes() const override {
    return sizeof(*this) + buf_.memory_bytes() + (body_ ? body_->memory_bytes() : 0);
  }

  uint64_t held_from() const override {
    // Unfinished headers are held (only until the block ends) so they never leave ahead
    // of the body they describe.
    return body_ ? body_->held_from() : buf_.orig_begin();
  }

 private:
  void ParseHeaders(bool final) {
    const std::string_view b = buf_.bytes();
    size_t end = std::string_view::npos;
    const size_t crlf = b.find("\n\r\n"), lf = b.find("\n\n");
    if (crlf != std::string_view::npos) end = crlf + 3;
    if (lf != std::string_view::npos && (end == std::string_view::npos || lf + 2 < end)) end = lf + 2;
    if (end != std::string_view::npos && end <= kMaxHeaders) {
      const DocHint hint = ParsePartHeaders(b.substr(0, end));
      const Src body = buf_.src().Sub(end, b.size());
      if (const std::string boundary = BoundaryParam(hint.content_type); !boundary.empty()) {
        body_ = MakeMultipart(out_, boundary);  // each part its own document
      } else {
        DocHint content = hint;
        content.transfer_encoding.clear();
        out_.BeginDocument(content);
        document_open_ = true;
        body_ = TransferDecoder(hint.transfer_encoding, out_);
      }
      body_->Put(body);
      buf_.Clear();
      return;
    }
    if (b.size() > kMaxHeaders || final) {  // no header block: the bytes as they are
      out_.BeginDocument(DocHint{});
      document_open_ = true;
      body_ = std::make_unique<Identity>(out_);
      body_->Put(buf_.src());
      buf_.Clear();
    }
  }

  Layer& out_;
  Context& ctx_;
  MappedBuffer buf_;
  DecoderPtr body_;
  bool document_open_ = false;
};
}  // namespace

DecoderPtr MakeMultipart(Layer& out, std::string boundary) {
  return std::make_unique<Multipart>(out, std::move(boundary));
}

DecoderPtr MakeMailMessage(Layer& out) { return std::make_unique<MailMessage>(out); }

bool LooksLikeMailMessage(std::string_view b) {
  // The first line is a header field that opens messages, as mail clients, servers and
  // mail APIs write them; a body that merely contains "From:" somewhere is not one.
  static constexpr std::string_view kOpening[] = {
      "return-path", "received", "delivered-to", "from", "to", "cc", "bcc", "subject", "date", "message-id",
      "mime-version", "reply-to", "sender", "dkim-signature", "arc-seal", "authentication-results",
      "x-mailer", "x-originating-ip", "content-type"};
  const size_t colon = b.find(':');
  if (colon == std::string_view::npos || colon == 0 || colon > 32) return false;
  const std::string name = Lower(b.substr(0, colon));
  if (name.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-") != std::string::npos) return false;
  return std::find(std::begin(kOpening), std::end(kOpening), name) != std::end(kOpening);
}

}  // namespace egressguard::dlp::decode
