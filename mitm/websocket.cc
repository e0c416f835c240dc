#include "mitm/websocket.h"

#define ZLIB_CONST  // next_in is const: zlib never writes through it
#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "fmt/format.h"

namespace egressguard::mitm::ws {
namespace {

constexpr size_t kMaxControlPayload = 125;
// Wire bytes unmasked per event and inflated bytes handed out per event: bounds the memory
// of a connection whatever the frame size or compression ratio.
constexpr size_t kChunk = 16 * 1024;
// RFC 7692 §7.2.2: the sender removed this empty stored block's tail; the receiver puts it back.
constexpr uint8_t kDeflateTail[4] = {0x00, 0x00, 0xff, 0xff};

// ---------------------------------------------------------------------------------------------
// UTF-8 (RFC 3629), incrementally: the state says what the next byte must be, so a code point
// split across frames or reads is checked as if it were whole. Overlongs, surrogates and code
// points above U+10FFFF are refused, as RFC 6455 §8.1 requires of text messages.

enum Utf8State : uint8_t {
  kUtf8Accept = 0,
  kUtf8Need1,      // one continuation byte 80..BF
  kUtf8Need2,      // two
  kUtf8Need3,      // three
  kUtf8AfterE0,    // A0..BF (no overlong 3-byte form), then one
  kUtf8AfterED,    // 80..9F (no surrogates), then one
  kUtf8AfterF0,    // 90..BF (no overlong 4-byte form), then two
  kUtf8AfterF4,    // 80..8F (nothing above U+10FFFF), then two
  kUtf8Reject = 0xff,
};

uint8_t Utf8Byte(uint8_t state, uint8_t b) {
  auto in = [b](uint8_t lo, uint8_t hi) { return b >= lo && b <= hi; };
  switch (state) {
    case kUtf8Accept:
      if (b < 0x80) return kUtf8Accept;
      if (in(0xc2, 0xdf)) return kUtf8Need1;
      if (b == 0xe0) return kUtf8AfterE0;
      if (b == 0xed) return kUtf8AfterED;
      if (in(0xe1, 0xef)) return kUtf8Need2;
      if (b == 0xf0) return kUtf8AfterF0;
      if (b == 0xf4) return kUtf8AfterF4;
      if (in(0xf1, 0xf3)) return kUtf8Need3;
      return kUtf8Reject;
    case kUtf8Need1: return in(0x80, 0xbf) ? kUtf8Accept : kUtf8Reject;
    case kUtf8Need2: return in(0x80, 0xbf) ? kUtf8Need1 : kUtf8Reject;
    case kUtf8Need3: return in(0x80, 0xbf) ? kUtf8Need2 : kUtf8Reject;
    case kUtf8AfterE0: return in(0xa0, 0xbf) ? kUtf8Need1 : kUtf8Reject;
    case kUtf8AfterED: return in(0x80, 0x9f) ? kUtf8Need1 : kUtf8Reject;
    case kUtf8AfterF0: return in(0x90, 0xbf) ? kUtf8Need2 : kUtf8Reject;
    case kUtf8AfterF4: return in(0x80, 0x8f) ? kUtf8Need2 : kUtf8Reject;
    default: return kUtf8Reject;
  }
}

uint8_t Utf8Feed(uint8_t state, std::string_view s) {
  size_t i = 0;
  while (i < s.size() && state != kUtf8Reject) {
    if (state == kUtf8Accept) {  // ASCII runs, eight bytes at a time
      while (i + 8 <= s.size()) {
        uint64_t w;
        std::memcpy(&w, s.data() + i, 8);
        if (w & 0x8080808080808080ull) break;
        i += 8;
      }
      if (i == s.size()) break;
    }
    state = Utf8Byte(state, static_cast<uint8_t>(s[i++]));
  }
  return state;
}

// ---------------------------------------------------------------------------------------------
// Sec-WebSocket-Extensions (RFC 6455 §9.1): extension-list = 1#( token *( ";" param ) ),
// param = token [ "=" ( token / quoted-string ) ], a quoted value being a token once unquoted.

struct ExtensionParam {
  std::string name;  // lower-case
  std::optional<std::string> value;
};

struct Extension {
  std::string name;  // lower-case
  std::vector<ExtensionParam> params;
};

bool IsTchar(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

bool IsToken(std::string_view s) { return !s.empty() && std::all_of(s.begin(), s.end(), IsTchar); }

char Lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

size_t SkipOws(std::string_view s, size_t i) {
  while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) ++i;
  return i;
}

bool ParseToken(std::string_view s, size_t* i, std::string* out, bool lower) {
  const size_t start = *i;
  while (*i < s.size() && IsTchar(s[*i])) ++*i;
  if (*i == start) return false;
  out->assign(s.substr(start, *i - start));
  if (lower) std::transform(out->begin(), out->end(), out->begin(), Lower);
  return true;
}

bool ParseQuoted(std::string_view s, size_t* i, std::string* out) {
  ++*i;  // the opening quote
  out->clear();
  while (*i < s.size()) {
    const char c = s[(*i)++];
    if (c == '"') return IsToken(*out);
    if (c == '\\') {
      if (*i == s.size()) return false;
      out->push_back(s[(*i)++]);
    } else {
      out->push_back(c);
    }
  }
  return false;
}

// The whole list, or nullopt when any part of it does not parse (then no element boundary
// can be trusted either). Empty list elements are allowed, as in every HTTP list.
std::optional<std::vector<Extension>> ParseExtensionList(std::string_view s) {
  std::vector<Extension> list;
  size_t i = 0;
  while (true) {
    i = SkipOws(s, i);
    if (i == s.size()) return list;
    if (s[i] == ',') {
      ++i;
      continue;
    }
    Extension e;
    if (!ParseToken(s, &i, &e.name, true)) return std::nullopt;
    while (true) {
      i = SkipOws(s, i);
      if (i == s.size() || s[i] != ';') break;
      i = SkipOws(s, i + 1);
      ExtensionParam p;
      if (!ParseToken(s, &i, &p.name, true)) return std::nullopt;
      i = SkipOws(s, i);
      if (i < s.size() && s[i] == '=') {
        i = SkipOws(s, i + 1);
        std::string v;
        if (i < s.size() && s[i] == '"' ? !ParseQuoted(s, &i, &v) : !ParseToken(s, &i, &v, false)) return std::nullopt;
        p.value = std::move(v);
      }
      e.params.push_back(std::move(p));
    }
    if (i < s.size() && s[i] != ',') return std::nullopt;
    list.push_back(std::move(e));
  }
}

constexpr std::string_view kPermessageDeflate = "permessage-deflate";

// permessage-deflate's parameters (RFC 7692 §7.1), as an offer or a response states them.
struct DeflateOffer {
  bool server_no_context_takeover = false;
  bool client_no_context_takeover = false;
  std::optional<int> server_max_window_bits;
  bool client_max_window_bits = false;  // present (an offer may leave the value out)
  std::optional<int> client_max_window_bits_value;
};

// 8..15 written as a decimal without leading zeros (RFC 7692 §7.1.2).
std::optional<int> WindowBits(std::string_view v) {
  if (v.empty() || v.size() > 2 || v[0] == '0') return std::nullopt;
  int n = 0;
  for (char c : v) {
    if (c < '0' || c > '9') return std::nullopt;
    n = n * 10 + (c - '0');
  }
  if (n < 8 || n > 15) return std::nullopt;
  return n;
}

// Unknown or repeated parameters and bad values make the offer (or response) invalid: a server
// must decline such an offer (§7.1), so the proxy may not pass it on as something it can read.
absl::StatusOr<DeflateOffer> ValidateDeflate(const Extension& e, bool response) {
  DeflateOffer o;
  std::vector<std::string_view> seen;
  for (const auto& p : e.params) {
    if (std::find(seen.begin(), seen.end(), p.name) != seen.end()) {
      return absl::InvalidArgumentError(fmt::format("permessage-deflate parameter {} repeated", p.name));
    }
    seen.push_back(p.name);
    if (p.name == "server_no_context_takeover" || p.name == "client_no_context_takeover") {
      if (p.value) return absl::InvalidArgumentError(fmt::format("permessage-deflate {} takes no value", p.name));
      (p.name[0] == 's' ? o.server_no_context_takeover : o.client_no_context_takeover) = true;
    } else if (p.name == "server_max_window_bits" || p.name == "client_max_window_bits") {
      const bool client = p.name[0] == 'c';
      if (!p.value && !(client && !response)) {  // only a client offer may leave the value out
        return absl::InvalidArgumentError(fmt::format("permessage-deflate {} needs a value", p.name));
      }
      std::optional<int> bits;
      if (p.value && !(bits = WindowBits(*p.value))) {
        return absl::InvalidArgumentError(fmt::format("permessage-deflate {}={} is not 8..15", p.name, *p.value));
      }
      if (client) {
        o.client_max_window_bits = true;
        o.client_max_window_bits_value = bits;
      } else {
        o.server_max_window_bits = bits;
      }
    } else {
      return absl::InvalidArgumentError(fmt::format("unknown permessage-deflate parameter {}", p.name));
    }
  }
  return o;
}

// Whether a response may accept this offer (RFC 7692 §7.1.1, §7.1.2): what the client asked of
// the server is granted, and the server limits the client only where the client allowed it.
bool Fits(const DeflateOffer& offer, const DeflateOffer& response) {
  if (offer.server_no_context_takeover && !response.server_no_context_takeover) return false;
  if (offer.server_max_window_bits &&
      (!response.server_max_window_bits || *response.server_max_window_bits > *offer.server_max_window_bits)) {
    return false;
  }
  if (response.client_max_window_bits) {
    if (!offer.client_max_window_bits) return false;
    if (offer.client_max_window_bits_value &&
        *response.client_max_window_bits_value > *offer.client_max_window_bits_value) {
      return false;
    }
  }
  return true;
}

std::string SerializeDeflate(const Extension& e) {
  std::string out(kPermessageDeflate);
  for (const auto& p : e.params) {
    out += "; " + p.name;
    if (p.value) out += "=" + *p.value;
  }
  return out;
}

// The inflate window is always the largest, whatever was negotiated. zlib checks a distance
// against the output it still holds, not against the window size asked for: with a smaller
// window, a sender that exceeds its negotiated window would inflate or fail depending on how
// its bytes were split into reads, and the verdict would follow TCP segmentation. With 15 bits
// every distance a conforming sender can use inflates the same way at any split; a peer that
// negotiated 8 and compresses with 9 (zlib's raw deflate cannot make 8) is covered too. Cost:
// a 32 KiB window per compressing direction.
constexpr int kInflateWindowBits = 15;

void PutBigEndian(std::string* out, uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

}  // namespace

// ---------------------------------------------------------------------------------------------

std::string FilterOfferedExtensions(std::string_view offered) {
  const auto list = ParseExtensionList(offered);
  if (!list) return "";
  std::vector<std::string> kept;
  for (const auto& e : *list) {
    if (e.name != kPermessageDeflate || !ValidateDeflate(e, /*response=*/false).ok()) continue;
    std::string s = SerializeDeflate(e);
    if (std::find(kept.begin(), kept.end(), s) == kept.end()) kept.push_back(std::move(s));
  }
  std::string out;
  for (const auto& s : kept) out += (out.empty() ? "" : ", ") + s;
  return out;
}

absl::StatusOr<DeflateParams> ParseAcceptedExtensions(std::string_view accepted, std::string_view offered) {
  const auto list = ParseExtensionList(accepted);
  if (!list) return absl::InvalidArgumentError("Sec-WebSocket-Extensions of the 101 does not parse");
  if (list->empty()) return DeflateParams{};
  for (const auto& e : *list) {
    if (e.name != kPermessageDeflate) {
      return absl::InvalidArgumentError(fmt::format("the origin accepted extension {}, which was not offered", e.name));
    }
  }
  if (list->size() > 1) return absl::InvalidArgumentError("the origin accepted permessage-deflate more than once");
  auto response = ValidateDeflate(list->front(), /*response=*/true);
  if (!response.ok()) return response.status();

  const auto offers = ParseExtensionList(offered);
  bool any_offer = false;
  for (const auto& e : offers ? *offers : std::vector<Extension>{}) {
    if (e.name != kPermessageDeflate) continue;
    const auto offer = ValidateDeflate(e, /*response=*/false);
    if (!offer.ok()) continue;
    any_offer = true;
    if (!Fits(*offer, *response)) continue;
    DeflateParams p;
    p.enabled = true;
    // Without a value the sender may use the largest window (RFC 7692 §7.1.2).
    p.client_max_window_bits = response->client_max_window_bits_value.value_or(15);
    p.server_max_window_bits = response->server_max_window_bits.value_or(15);
    p.client_no_context_takeover = response->client_no_context_takeover;
    p.server_no_context_takeover = response->server_no_context_takeover;
    return p;
  }
  if (!any_offer) return absl::InvalidArgumentError("the origin accepted permessage-deflate, which was not offered");
  return absl::InvalidArgumentError(
      fmt::format("the origin's \"{}\" fits no permessage-deflate offer", SerializeDeflate(list->front())));
}

// ---------------------------------------------------------------------------------------------
// One direction's raw inflate stream, kept across messages for context takeover.

class FrameInspector::Inflater {
 public:
  static std::unique_ptr<Inflater> Create(int window_bits) {
    std::unique_ptr<Inflater> inf(new Inflater);
    if (inflateInit2(&inf->z_, -window_bits) != Z_OK) return nullptr;
    inf->initialized_ = true;
    return inf;
  }
  ~Inflater() {
    if (initialized_) inflateEnd(&z_);
  }
  Inflater(const Inflater&) = delete;
  Inflater& operator=(const Inflater&) = delete;

  struct Result {
    size_t used = 0;      // input bytes taken
    size_t produced = 0;  // output bytes written
    bool ended = false;   // the final block (BFINAL) ended
    bool at_block_boundary = false;
    const char* error = nullptr;
  };

  Result Inflate(const uint8_t* in, size_t n, char* out, size_t cap) {
    z_.next_in = in;
    z_.avail_in = static_cast<uInt>(n);
    z_.next_out = reinterpret_cast<Bytef*>(out);
    z_.avail_out = static_cast<uInt>(cap);
    const int rc = inflate(&z_, Z_SYNC_FLUSH);
    Result r;
    r.used = n - z_.avail_in;
    r.produced = cap - z_.avail_out;
    r.ended = rc == Z_STREAM_END;
    // data_type bit 128: inflate stopped right after a block ended (zlib.h, inflate()).
    r.at_block_boundary = (z_.data_type & 128) != 0;
    if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR) r.error = z_.msg ? z_.msg : "zlib error";
    return r;
  }

  // After a compressed message. Without context takeover the next message starts with an empty
  // window; with it the window carries over, even past a final block (RFC 7692 §7.2.2: the
  // receiver decompresses each message with the window of the last one).
  bool EndMessage(bool keep_context, bool ended) {
    if (!keep_context) return inflateReset(&z_) == Z_OK;
    if (!ended) return true;
    std::string window(32 * 1024, '\0');
    uInt length = static_cast<uInt>(window.size());
    if (inflateGetDictionary(&z_, reinterpret_cast<Bytef*>(window.data()), &length) != Z_OK) return false;
    if (inflateReset(&z_) != Z_OK) return false;
    return length == 0 || inflateSetDictionary(&z_, reinterpret_cast<const Bytef*>(window.data()), length) == Z_OK;
  }

 private:
  Inflater() = default;
  z_stream z_{};
  bool initialized_ = false;
};

// ---------------------------------------------------------------------------------------------

FrameInspector::FrameInspector(Direction direction, const DeflateParams& params, const Limits& limits)
    : direction_(direction), params_(params), limits_(limits) {}
FrameInspector::~FrameInspector() = default;
FrameInspector::FrameInspector(FrameInspector&&) noexcept = default;
FrameInspector& FrameInspector::operator=(FrameInspector&&) noexcept = default;

FrameInspector::Event FrameInspector::Next(std::string_view input) {
  switch (state_) {
    case State::kHeader: return ParseHeader(input);
    case State::kPayload: return ParsePayload(input);
    case State::kTail: return Tail();
    case State::kError: break;
  }
  Event e;
  e.kind = Event::kError;
  e.close_code = error_code_;
  e.reason = error_reason_;
  return e;
}

FrameInspector::Event FrameInspector::Fail(uint16_t code, std::string reason) {
  state_ = State::kError;
  error_code_ = code;
  error_reason_ = std::move(reason);
  return Next({});
}

FrameInspector::Event FrameInspector::FrameEvent(Event::Kind kind, size_t consumed, std::string_view data) const {
  Event e;
  e.kind = kind;
  e.consumed = consumed;
  e.opcode = opcode_;
  e.fin = fin_;
  e.control = opcode_ >= 8;
  e.message_start = message_start_;
  e.message_opcode = e.control ? 0 : message_opcode_;
  e.compressed = !e.control && compressed_;
  e.payload_length = payload_length_;
  e.data = data;
  return e;
}

FrameInspector::Event FrameInspector::ParseHeader(std::string_view input) {
  if (close_received_ && !input.empty()) return Fail(kCloseProtocolError, "frame after a close frame");
  if (input.size() < 2) return Event{};
  const auto b0 = static_cast<uint8_t>(input[0]);
  const auto b1 = static_cast<uint8_t>(input[1]);
  const bool fin = b0 & 0x80;
  const bool rsv1 = b0 & 0x40;
  const uint8_t opcode = b0 & 0x0f;
  const bool masked = b1 & 0x80;
  const uint8_t length7 = b1 & 0x7f;
  const bool control = opcode >= 8;

  // Every check that needs only the first two bytes comes first, so the verdict on a frame
  // does not depend on how its header was split across reads.
  if (b0 & 0x30) return Fail(kCloseProtocolError, "reserved bits RSV2/RSV3 set");
  if ((opcode > 2 && opcode < 8) || opcode > 10) {
    return Fail(kCloseProtocolError, fmt::format("unknown opcode {}", opcode));
  }
  if (control) {
    if (!fin) return Fail(kCloseProtocolError, "fragmented control frame");
    if (length7 > kMaxControlPayload) return Fail(kCloseProtocolError, "control frame longer than 125 bytes");
    if (rsv1) return Fail(kCloseProtocolError, "RSV1 set on a control frame");
  } else if (opcode == 0) {
    if (!in_message_) return Fail(kCloseProtocolError, "continuation frame without a message");
    if (rsv1) return Fail(kCloseProtocolError, "RSV1 set on a continuation frame");
  } else {
    if (in_message_) return Fail(kCloseProtocolError, "new data frame inside a fragmented message");
    if (rsv1 && !params_.enabled) return Fail(kCloseProtocolError, "RSV1 set without permessage-deflate");
  }
  // RFC 6455 §5.1: clients mask every frame, servers none.
  if (direction_ == Direction::kClientToServer && !masked) return Fail(kCloseProtocolError, "client frame not masked");
  if (direction_ == Direction::kServerToClient && masked) return Fail(kCloseProtocolError, "server frame masked");

  const size_t length_bytes = length7 == 126 ? 2 : length7 == 127 ? 8 : 0;
  const size_t header_bytes = 2 + length_bytes + (masked ? 4 : 0);
  if (input.size() < header_bytes) return Event{};
  uint64_t length = length7;
  if (length_bytes) {
    length = 0;
    for (size_t i = 0; i < length_bytes; ++i) length = (length << 8) | static_cast<uint8_t>(input[2 + i]);
    // RFC 6455 §5.2: the minimal number of bytes must be used, and the 64-bit form's top bit is 0.
    if (length_bytes == 2 && length < 126) return Fail(kCloseProtocolError, "non-minimal 16-bit length");
    if (length_bytes == 8 && (length >> 63)) return Fail(kCloseProtocolError, "64-bit length with the top bit set");
    if (length_bytes == 8 && length <= 0xffff) return Fail(kCloseProtocolError, "non-minimal 64-bit length");
  }
  if (!control) {
    const bool starts = opcode != 0;
    const uint64_t so_far = starts ? 0 : message_wire_bytes_;  // the earlier frames, all consumed
    if (length > limits_.max_message_bytes || so_far > limits_.max_message_bytes - length) {
      return Fail(kCloseMessageTooBig, fmt::format("message longer than {} bytes", limits_.max_message_bytes));
    }
    if (!starts && compressed_ && deflate_ended_ && length > 0) {
      return Fail(kCloseInvalidPayload, "bytes after the final deflate block");
    }
    if (starts && rsv1 && !inflater_ && !(inflater_ = Inflater::Create(kInflateWindowBits))) {
      return Fail(kCloseInternalError, "inflater init failed");
    }
    if (starts) {
      in_message_ = true;
      message_opcode_ = opcode;
      compressed_ = rsv1;
      deflate_ended_ = false;
      inflate_pending_ = false;
      message_wire_bytes_ = 0;
      message_bytes_ = 0;
      utf8_state_ = kUtf8Accept;
    }
  }
  opcode_ = opcode;
  fin_ = fin;
  masked_ = masked;
  if (masked) std::memcpy(mask_, input.data() + 2 + length_bytes, 4);
  payload_length_ = length;
  remaining_ = length;
  mask_offset_ = 0;
  message_start_ = opcode == 1 || opcode == 2;
  control_payload_.clear();
  state_ = State::kPayload;
  return FrameEvent(Event::kFrameStart, header_bytes, {});
}

std::string_view FrameInspector::Unmask(std::string_view wire, size_t n) {
  if (scratch_.size() < n) scratch_.resize(std::max(n, kChunk));  // grows once, never shrinks
  uint8_t key[8];
  for (size_t i = 0; i < 8; ++i) key[i] = mask_[(mask_offset_ + i) & 3];
  uint64_t key8;
  std::memcpy(&key8, key, 8);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {  // i stays a multiple of 4, so the rotated key lines up
    uint64_t w;
    std::memcpy(&w, wire.data() + i, 8);
    w ^= key8;
    std::memcpy(scratch_.data() + i, &w, 8);
  }
  for (; i < n; ++i) scratch_[i] = static_cast<char>(wire[i] ^ key[i & 3]);
  return std::string_view(scratch_.data(), n);
}

FrameInspector::Event FrameInspector::ParsePayload(std::string_view input) {
  if (compressed_ && opcode_ < 8) return PayloadCompressed(input);
  if (remaining_ == 0) return opcode_ >= 8 ? EndControlFrame() : EndFrame({});
  if (input.empty()) return Event{};
  return PayloadPlain(input);
}

FrameInspector::Event FrameInspector::PayloadPlain(std::string_view input) {
  size_t n = static_cast<size_t>(std::min<uint64_t>(remaining_, input.size()));
  std::string_view data = input.substr(0, n);
  if (masked_) {
    n = std::min(n, kChunk);
    data = Unmask(input, n);
  }
  mask_offset_ += n;
  remaining_ -= n;
  if (opcode_ >= 8) {
    control_payload_.append(data);
  } else {
    message_wire_bytes_ += n;
    Event error;
    if (!AcceptMessageBytes(data, &error)) return error;
  }
  return FrameEvent(Event::kPayload, n, data);
}

// Wire bytes are taken only as far as zlib takes them, and the inflated output per event is
// bounded: a small frame may inflate to megabytes, handed out over several events.
FrameInspector::Event FrameInspector::PayloadCompressed(std::string_view input) {
  if (deflate_ended_ && remaining_ > 0) return Fail(kCloseInvalidPayload, "bytes after the final deflate block");
  const size_t n = deflate_ended_ ? 0 : static_cast<size_t>(std::min<uint64_t>({remaining_, input.size(), kChunk}));
  if (n == 0 && !inflate_pending_) {
    if (remaining_ > 0) return Event{};
    if (fin_ && !deflate_ended_) {
      state_ = State::kTail;
      tail_used_ = 0;
      return Tail();
    }
    return EndFrame({});
  }
  const uint8_t* in = reinterpret_cast<const uint8_t*>(input.data());
  if (masked_ && n > 0) in = reinterpret_cast<const uint8_t*>(Unmask(input, n).data());
  out_.resize(kChunk);
  const auto r = inflater_->Inflate(in, n, out_.data(), out_.size());
  if (r.error) return Fail(kCloseInvalidPayload, fmt::format("permessage-deflate data does not inflate: {}", r.error));
  mask_offset_ += r.used;
  remaining_ -= r.used;
  message_wire_bytes_ += r.used;
  inflate_pending_ = !r.ended && r.produced == out_.size();
  deflate_ended_ = deflate_ended_ || r.ended;
  const std::string_view data(out_.data(), r.produced);
  Event error;
  if (!AcceptMessageBytes(data, &error)) return error;
  return FrameEvent(Event::kPayload, r.used, data);
}

// The end of a compressed message: the 4 tail bytes the sender removed go in, and the deflate
// data must then stop right after a block, as a compliant sender's sync flush leaves it.
FrameInspector::Event FrameInspector::Tail() {
  out_.resize(kChunk);
  const size_t n = sizeof(kDeflateTail) - tail_used_;
  const auto r = inflater_->Inflate(kDeflateTail + tail_used_, n, out_.data(), out_.size());
  if (r.error) return Fail(kCloseInvalidPayload, fmt::format("permessage-deflate data does not inflate: {}", r.error));
  tail_used_ += r.used;
  deflate_ended_ = deflate_ended_ || r.ended;
  const std::string_view data(out_.data(), r.produced);
  Event error;
  if (!AcceptMessageBytes(data, &error)) return error;
  if (!r.ended && r.produced == out_.size()) return FrameEvent(Event::kPayload, 0, data);  // more to come
  if (!r.ended && (tail_used_ != sizeof(kDeflateTail) || !r.at_block_boundary)) {
    return Fail(kCloseInvalidPayload, "permessage-deflate message does not end on a deflate block boundary");
  }
  state_ = State::kPayload;
  return EndFrame(data);
}

FrameInspector::Event FrameInspector::EndFrame(std::string_view data) {
  Event e = FrameEvent(Event::kFrameEnd, 0, data);
  state_ = State::kHeader;
  if (!fin_) return e;
  if (message_opcode_ == 1 && utf8_state_ != kUtf8Accept) {
    return Fail(kCloseInvalidPayload, "text message ends inside a UTF-8 sequence");
  }
  if (compressed_) {
    const bool keep = !(direction_ == Direction::kClientToServer ? params_.client_no_context_takeover
                                                                 : params_.server_no_context_takeover);
    if (!inflater_->EndMessage(keep, deflate_ended_)) return Fail(kCloseInternalError, "inflater reset failed");
  }
  in_message_ = false;
  e.message_end = true;
  return e;
}

FrameInspector::Event FrameInspector::EndControlFrame() {
  if (opcode_ == 8) {
    if (control_payload_.size() == 1) return Fail(kCloseProtocolError, "close frame payload of 1 byte");
    uint16_t code = kCloseNoStatus;
    std::string_view reason;
    if (control_payload_.size() >= 2) {
      code = static_cast<uint16_t>(static_cast<uint8_t>(control_payload_[0]) << 8 |
                                   static_cast<uint8_t>(control_payload_[1]));
      if (!IsValidCloseCode(code)) return Fail(kCloseProtocolError, fmt::format("invalid close code {}", code));
      reason = std::string_view(control_payload_).substr(2);
      if (!IsValidUtf8(reason)) return Fail(kCloseInvalidPayload, "close reason is not UTF-8");
    }
    close_received_ = true;
    close_code_ = code;
    close_reason_ = std::string(reason);
  }
  Event e = FrameEvent(Event::kFrameEnd, 0, {});
  e.message_end = true;
  state_ = State::kHeader;
  return e;
}

bool FrameInspector::AcceptMessageBytes(std::string_view data, Event* error) {
  message_bytes_ += data.size();
  if (message_bytes_ > limits_.max_message_bytes) {
    *error = Fail(kCloseMessageTooBig, fmt::format("message inflates beyond {} bytes", limits_.max_message_bytes));
    return false;
  }
  if (compressed_ && limits_.max_expansion_ratio > 0 && message_bytes_ >= limits_.ratio_judged_from &&
      message_bytes_ / limits_.max_expansion_ratio > message_wire_bytes_) {
    *error = Fail(kCloseMessageTooBig,
                  fmt::format("message inflates more than {} times its size", limits_.max_expansion_ratio));
    return false;
  }
  if (message_opcode_ == 1 && (utf8_state_ = Utf8Feed(utf8_state_, data)) == kUtf8Reject) {
    *error = Fail(kCloseInvalidPayload, "text message is not UTF-8");
    return false;
  }
  return true;
}

// ---------------------------------------------------------------------------------------------

bool IsValidCloseCode(uint16_t code) {
  // 1004-1006 and 1015 are reserved or only reported locally; 1016-2999 are unassigned
  // protocol codes; 1012-1014 are registered with IANA and sent by common servers.
  if (code >= 3000 && code <= 4999) return true;
  return code >= 1000 && code <= 1014 && code != 1004 && code != 1005 && code != 1006;
}

bool IsValidUtf8(std::string_view s) { return Utf8Feed(kUtf8Accept, s) == kUtf8Accept; }

std::string BuildFrame(uint8_t opcode, std::string_view payload, bool masked, uint32_t mask_key) {
  std::string f;
  f.reserve(14 + payload.size());
  f.push_back(static_cast<char>(0x80 | (opcode & 0x0f)));
  const uint8_t mask_bit = masked ? 0x80 : 0;
  if (payload.size() < 126) {
    f.push_back(static_cast<char>(mask_bit | payload.size()));
  } else if (payload.size() <= 0xffff) {
    f.push_back(static_cast<char>(mask_bit | 126));
    PutBigEndian(&f, payload.size(), 2);
  } else {
    f.push_back(static_cast<char>(mask_bit | 127));
    PutBigEndian(&f, payload.size(), 8);
  }
  if (!masked) return f.append(payload);
  PutBigEndian(&f, mask_key, 4);
  const size_t at = f.size();
  f.append(payload);
  for (size_t i = 0; i < payload.size(); ++i) f[at + i] = static_cast<char>(f[at + i] ^ f[at - 4 + (i & 3)]);
  return f;
}

std::string ClosePayload(uint16_t code, std::string_view reason) {
  if (!IsValidCloseCode(code)) return "";
  std::string out;
  PutBigEndian(&out, code, 2);
  // The longest prefix that is whole UTF-8 and fits.
  size_t keep = 0;
  uint8_t state = kUtf8Accept;
  for (size_t i = 0; i < reason.size() && i < kMaxControlPayload - 2; ++i) {
    state = Utf8Byte(state, static_cast<uint8_t>(reason[i]));
    if (state == kUtf8Reject) break;
    if (state == kUtf8Accept) keep = i + 1;
  }
  return out.append(reason.substr(0, keep));
}

}  // namespace egressguard::mitm::ws
