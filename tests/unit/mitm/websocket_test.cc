// Proves the WebSocket inspector turns either direction's wire bytes into the exact message bytes (unmasked, inflated with every window size and context-takeover mode) however the bytes are split, refuses every framing and payload rule of RFC 6455 / RFC 7692 with the right close code, and that the handshake helpers pass on only permessage-deflate offers it can read.
#include "mitm/websocket.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <utility>
#include <vector>

namespace egressguard::mitm::ws {
namespace {

using Event = FrameInspector::Event;
constexpr auto kC2S = Direction::kClientToServer;
constexpr auto kS2C = Direction::kServerToClient;
constexpr uint8_t kCont = 0, kText = 1, kBinary = 2, kClose = 8, kPing = 9, kPong = 10;
constexpr size_t kPieceBound = 16 * 1024;  // the inspector's per-event bound (websocket.cc kChunk)

// ---------------------------------------------------------------------------------------------
// A reference encoder, independent of BuildFrame: every header bit and length form settable.

struct RefFrame {
  uint8_t opcode = kText;
  std::string payload;
  bool fin = true;
  bool rsv1 = false, rsv2 = false, rsv3 = false;
  bool masked = true;
  uint32_t key = 0x37fa213d;
  enum Form { kMinimal, k16, k64 } form = kMinimal;
  bool top_bit = false;  // sets bit 63 of a 64-bit length
};

std::string Encode(const RefFrame& f) {
  std::string out;
  out.push_back(static_cast<char>((f.fin ? 0x80 : 0) | (f.rsv1 ? 0x40 : 0) | (f.rsv2 ? 0x20 : 0) |
                                  (f.rsv3 ? 0x10 : 0) | f.opcode));
  const uint64_t n = f.payload.size();
  auto form = f.form;
  if (form == RefFrame::kMinimal) form = n < 126 ? RefFrame::kMinimal : n <= 0xffff ? RefFrame::k16 : RefFrame::k64;
  const char mask_bit = f.masked ? static_cast<char>(0x80) : 0;
  if (form == RefFrame::kMinimal) {
    out.push_back(static_cast<char>(mask_bit | static_cast<char>(n)));
  } else if (form == RefFrame::k16) {
    out.push_back(static_cast<char>(mask_bit | 126));
    out.push_back(static_cast<char>(n >> 8));
    out.push_back(static_cast<char>(n));
  } else {
    out.push_back(static_cast<char>(mask_bit | 127));
    const uint64_t v = n | (f.top_bit ? 1ull << 63 : 0);
    for (int i = 7; i >= 0; --i) out.push_back(static_cast<char>(v >> (8 * i)));
  }
  if (!f.masked) return out + f.payload;
  const uint8_t k[4] = {static_cast<uint8_t>(f.key >> 24), static_cast<uint8_t>(f.key >> 16),
                        static_cast<uint8_t>(f.key >> 8), static_cast<uint8_t>(f.key)};
  out.append(reinterpret_cast<const char*>(k), 4);
  for (size_t i = 0; i < f.payload.size(); ++i) out.push_back(static_cast<char>(f.payload[i] ^ k[i % 4]));
  return out;
}

// A sender's permessage-deflate compressor (RFC 7692 §7.2.1): raw deflate, sync flush, the
// trailing 00 00 ff ff removed; with no context takeover the window is emptied per message.
class RefDeflater {
 public:
  RefDeflater(int window_bits, bool context_takeover) : takeover_(context_takeover) {
    EXPECT_EQ(deflateInit2(&z_, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -window_bits, 8, Z_DEFAULT_STRATEGY), Z_OK);
  }
  ~RefDeflater() { deflateEnd(&z_); }
  RefDeflater(const RefDeflater&) = delete;
  RefDeflater& operator=(const RefDeflater&) = delete;

  std::string Compress(std::string_view msg, bool strip_tail = true) {
    std::string out = Run(msg, Z_SYNC_FLUSH);
    // zlib makes nothing of a flush right after a flush; RFC 7692 §7.2.3 sends an empty
    // message as one empty stored block.
    if (out.empty() && msg.empty()) out.assign("\x00\x00\x00\xff\xff", 5);
    EXPECT_GE(out.size(), 4u);
    EXPECT_EQ(out.substr(out.size() - 4), std::string("\x00\x00\xff\xff", 4));
    if (strip_tail) out.resize(out.size() - 4);
    if (!takeover_) deflateReset(&z_);
    return out;
  }
  // A message ended with a final block (BFINAL), as the examples of RFC 7692 §7.2.3 allow; the stream restarts.
  std::string CompressFinal(std::string_view msg) {
    std::string out = Run(msg, Z_FINISH);
    deflateReset(&z_);
    return out;
  }
  z_stream* stream() { return &z_; }

 private:
  std::string Run(std::string_view msg, int flush) {
    std::string out;
    z_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(msg.data()));
    z_.avail_in = static_cast<uInt>(msg.size());
    while (true) {
      char buf[4096];
      z_.next_out = reinterpret_cast<Bytef*>(buf);
      z_.avail_out = sizeof(buf);
      const int rc = deflate(&z_, flush);
      EXPECT_TRUE(rc == Z_OK || rc == Z_STREAM_END || rc == Z_BUF_ERROR) << rc;
      out.append(buf, sizeof(buf) - z_.avail_out);
      if (rc == Z_STREAM_END || (flush != Z_FINISH && z_.avail_out != 0)) return out;
    }
  }
  z_stream z_{};
  bool takeover_;
};

// Message text that compresses, repeats across messages and splits multi-byte code points.
std::string Text(int seed, size_t n) {
  static const char* const kWords[] = {"card 4111 1111 1111 1111", "IBAN CH93 0076 2011 6238 5295 7", "Grüße",
                                       "日本語のテキスト", "emoji 😀🎉", "lorem", "ipsum", "dolor", "€"};
  std::mt19937 rng(static_cast<uint32_t>(seed));
  std::string s;
  while (s.size() < n) {
    s += kWords[rng() % (sizeof(kWords) / sizeof(kWords[0]))];
    s += ' ';
  }
  return s;
}

// Exactly n bytes of whole UTF-8.
std::string TextOfSize(int seed, size_t n) {
  std::string s = Text(seed, n).substr(0, n);
  while (!IsValidUtf8(s)) s.pop_back();
  return s.append(n - s.size(), '.');
}

std::string Binary(int seed, size_t n) {
  std::mt19937 rng(static_cast<uint32_t>(seed));
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

// ---------------------------------------------------------------------------------------------
// The driver: feeds wire bytes in pieces like socket reads, keeps unconsumed bytes, and records
// what the inspector reported. Event order is checked as it goes.

struct Transcript {
  std::vector<std::pair<int, std::string>> messages;  // message opcode, bytes
  std::vector<std::pair<int, std::string>> controls;  // opcode, payload
  std::string structure;                              // frame starts and ends, errors
  uint16_t error = 0;
  std::string reason;
  size_t consumed = 0;
  size_t largest_data = 0;
  size_t largest_payload_consumed = 0;

  bool operator==(const Transcript& o) const {
    // Before an error, how much was consumed depends on where the input was cut.
    return messages == o.messages && controls == o.controls && structure == o.structure && error == o.error &&
           (error != 0 || consumed == o.consumed);
  }
};

Transcript Drive(Direction dir, const DeflateParams& params, std::string_view wire, const std::vector<size_t>& pieces,
          const Limits& limits = {}) {
  FrameInspector in(dir, params, limits);
  Transcript r;
  std::string buf;
  size_t fed = 0;
  size_t piece = 0;
  bool in_frame = false;
  uint8_t frame_opcode = 0;
  std::string message, control;
  // Returns false after an error.
  auto pump = [&]() {
    for (int guard = 0; guard < 10000000; ++guard) {
      Event ev = in.Next(buf);
      if (ev.consumed > buf.size()) {
        ADD_FAILURE() << "consumed more than given";
        return false;
      }
      r.largest_data = std::max(r.largest_data, ev.data.size());
      switch (ev.kind) {
        case Event::kNeedMore:
          EXPECT_EQ(ev.consumed, 0u);
          return true;
        case Event::kError:
          EXPECT_EQ(ev.consumed, 0u);
          r.error = ev.close_code;
          r.reason = ev.reason;
          r.structure += "X" + std::to_string(ev.close_code);
          return false;
        case Event::kFrameStart:
          EXPECT_FALSE(in_frame) << "frame start inside a frame";
          in_frame = true;
          frame_opcode = ev.opcode;
          EXPECT_EQ(ev.control, ev.opcode >= 8);
          if (!ev.control) {
            EXPECT_TRUE(ev.message_opcode == kText || ev.message_opcode == kBinary);
          }
          EXPECT_EQ(ev.message_start, ev.opcode == kText || ev.opcode == kBinary);
          r.structure += "S" + std::to_string(ev.opcode) + (ev.fin ? "f" : "") + (ev.message_start ? "m" : "") +
                         (ev.compressed ? "z" : "");
          break;
        case Event::kPayload:
        case Event::kFrameEnd:
          EXPECT_TRUE(in_frame) << "payload outside a frame";
          EXPECT_EQ(ev.opcode, frame_opcode);
          (ev.control ? control : message).append(ev.data);
          if (ev.kind == Event::kPayload) {
            r.largest_payload_consumed = std::max(r.largest_payload_consumed, ev.consumed);
            break;
          }
          EXPECT_EQ(ev.consumed, 0u);
          in_frame = false;
          r.structure += ev.message_end ? "Ee" : "E";
          if (ev.control) {
            EXPECT_TRUE(ev.message_end);
            r.controls.emplace_back(ev.opcode, std::move(control));
            control.clear();
          } else if (ev.message_end) {
            r.messages.emplace_back(ev.message_opcode, std::move(message));
            message.clear();
          }
          break;
      }
      r.consumed += ev.consumed;
      buf.erase(0, ev.consumed);
    }
    ADD_FAILURE() << "no progress";
    return false;
  };
  do {
    const size_t n = std::min(pieces[piece++ % pieces.size()], wire.size() - fed);
    buf.append(wire.substr(fed, n));
    fed += n;
    if (!pump()) return r;
  } while (fed < wire.size());
  return r;
}

// Whole, byte by byte, two pieces split at every byte (or, for a large input, near both ends),
// and random chunkings.
std::vector<std::vector<size_t>> Chunkings(size_t n, uint32_t seed) {
  std::vector<std::vector<size_t>> out = {{std::max<size_t>(n, 1)}, {1}};
  for (size_t k = 1; k < n; ++k) {
    if (n <= 4096 || k < 80 || n - k < 80) out.push_back({k, n - k});
  }
  std::mt19937 rng(seed);
  for (int i = 0; i < 20; ++i) {
    std::vector<size_t> sizes;
    const size_t scale = std::vector<size_t>{3, 17, 300, 5000, 40000}[rng() % 5];
    for (int j = 0; j < 64; ++j) sizes.push_back(1 + rng() % scale);
    out.push_back(sizes);
  }
  return out;
}

// The reference run is the whole input; every other chunking must report the same.
Transcript DriveAllChunkings(Direction dir, const DeflateParams& params, const std::string& wire,
                      const Limits& limits = {}) {
  const auto chunkings = Chunkings(wire.size(), static_cast<uint32_t>(wire.size()));
  const Transcript whole = Drive(dir, params, wire, chunkings[0], limits);
  for (size_t i = 1; i < chunkings.size(); ++i) {
    const Transcript r = Drive(dir, params, wire, chunkings[i], limits);
    if (!(r == whole)) {
      ADD_FAILURE() << "chunking " << i << " (first piece " << chunkings[i][0] << ") differs: " << r.structure
                    << " vs " << whole.structure << " / " << r.reason;
      break;
    }
  }
  return whole;
}

DeflateParams Deflate(int client_bits = 15, int server_bits = 15, bool client_nct = false, bool server_nct = false) {
  DeflateParams p;
  p.enabled = true;
  p.client_max_window_bits = client_bits;
  p.server_max_window_bits = server_bits;
  p.client_no_context_takeover = client_nct;
  p.server_no_context_takeover = server_nct;
  return p;
}

RefFrame Frame(uint8_t opcode, std::string payload, bool fin = true, Direction dir = kC2S) {
  RefFrame f;
  f.opcode = opcode;
  f.payload = std::move(payload);
  f.fin = fin;
  f.masked = dir == kC2S;
  return f;
}

// Expects `wire` refused with `code` whichever way it is split.
void ExpectRefused(Direction dir, const DeflateParams& params, const std::string& wire, uint16_t code,
                   const Limits& limits = {}) {
  const Transcript r = DriveAllChunkings(dir, params, wire, limits);
  EXPECT_EQ(r.error, code) << r.structure << " " << r.reason;
  EXPECT_FALSE(r.reason.empty());
}

using Messages = std::vector<std::pair<int, std::string>>;

// Compares message lists without printing megabytes: says where they first differ.
testing::AssertionResult Same(const Messages& got, const Messages& want) {
  for (size_t i = 0; i < std::min(got.size(), want.size()); ++i) {
    if (got[i] == want[i]) continue;
    size_t at = 0;
    while (at < std::min(got[i].second.size(), want[i].second.size()) && got[i].second[at] == want[i].second[at]) ++at;
    return testing::AssertionFailure() << "message " << i << ": opcode " << got[i].first << " vs " << want[i].first
                                       << ", " << got[i].second.size() << " vs " << want[i].second.size()
                                       << " bytes, first difference at " << at;
  }
  if (got.size() != want.size()) {
    return testing::AssertionFailure() << got.size() << " messages instead of " << want.size();
  }
  return testing::AssertionSuccess();
}

// Feeds `wire` whole to `in` until it needs more or fails; returns the last event.
Event Consume(FrameInspector& in, std::string_view wire) {
  while (true) {
    Event ev = in.Next(wire);
    if (ev.kind == Event::kNeedMore || ev.kind == Event::kError) return ev;
    wire.remove_prefix(ev.consumed);
  }
}

// ---------------------------------------------------------------------------------------------
// Round trips.

// Proves masked client frames with 7-, 16- and 64-bit lengths (every boundary size) unmask to the original bytes, and unmasked server frames pass as they are, however the bytes are split.
TEST(WebSocketFraming, EveryLengthFormRoundTripsInBothDirections) {
  for (Direction dir : {kC2S, kS2C}) {
    std::string wire;
    Messages want;
    int seed = 0;
    for (size_t n : {0, 1, 5, 125, 126, 127, 1000, 65535, 65536, 70001}) {
      for (uint8_t op : {kText, kBinary}) {
        RefFrame f = Frame(op, op == kText ? TextOfSize(seed, n) : Binary(seed, n), true, dir);
        f.key = 0x01020304u * static_cast<uint32_t>(++seed);
        wire += Encode(f);
        want.emplace_back(f.opcode, f.payload);
      }
    }
    const Transcript r = DriveAllChunkings(dir, {}, wire);
    EXPECT_EQ(r.error, 0) << r.reason;
    EXPECT_TRUE(Same(r.messages, want));
    EXPECT_EQ(r.consumed, wire.size());
  }
}

// Proves a fragmented text message, with a ping and a pong between its fragments and a code point split across two fragments, comes out whole, with the control payloads apart and the events in wire order.
TEST(WebSocketFraming, FragmentedMessageWithInterleavedControlFrames) {
  const std::string text = "card 4111 1111 1111 1111 €uro";
  const size_t euro = text.find("€");
  std::string wire = Encode(Frame(kText, text.substr(0, 9), false));
  wire += Encode(Frame(kPing, "are you there"));
  wire += Encode(Frame(kCont, text.substr(9, euro + 1 - 9), false));  // ends after the first byte of the €
  wire += Encode(Frame(kCont, "", false));
  wire += Encode(Frame(kPong, ""));
  wire += Encode(Frame(kCont, text.substr(euro + 1)));
  wire += Encode(Frame(kBinary, std::string("\xff\x00\xfe", 3), false));
  wire += Encode(Frame(kCont, "bin"));
  const Transcript r = DriveAllChunkings(kC2S, {}, wire);
  EXPECT_EQ(r.error, 0) << r.reason;
  EXPECT_TRUE(Same(r.messages, (Messages{{kText, text}, {kBinary, std::string("\xff\x00\xfe", 3) + "bin"}})));
  EXPECT_EQ(r.controls, (Messages{{kPing, "are you there"}, {kPong, ""}}));
  EXPECT_EQ(r.structure, "S1mE" "S9fEe" "S0E" "S0E" "S10fEe" "S0fEe" "S2mE" "S0fEe");
}

// Proves permessage-deflate messages inflate exactly for every window size 9..15, with and without context takeover, in both directions: single-frame, repeated (so takeover is used), fragmented with a ping inside, and empty, at every split.
TEST(WebSocketDeflate, EveryWindowSizeAndContextTakeoverRoundTrips) {
  for (Direction dir : {kC2S, kS2C}) {
    for (int bits = 9; bits <= 15; ++bits) {
      for (bool takeover : {true, false}) {
        SCOPED_TRACE(testing::Message() << "dir " << (dir == kC2S ? "c2s" : "s2c") << " bits " << bits
                                        << " takeover " << takeover);
        const DeflateParams params = dir == kC2S ? Deflate(bits, 15, !takeover, false)
                                                 : Deflate(15, bits, false, !takeover);
        RefDeflater z(bits, takeover);
        const std::string m1 = Text(bits, 700);
        const std::string m3 = Text(bits + 100, 900);
        std::string wire;
        RefFrame f = Frame(kText, z.Compress(m1), true, dir);
        f.rsv1 = true;
        wire += Encode(f);
        f.payload = z.Compress(m1);  // the same again: with takeover, mostly back-references
        wire += Encode(f);
        const std::string c3 = z.Compress(m3);
        RefFrame a = Frame(kText, c3.substr(0, c3.size() / 3), false, dir);
        a.rsv1 = true;
        wire += Encode(a);
        wire += Encode(Frame(kPing, "p", true, dir));
        wire += Encode(Frame(kCont, c3.substr(c3.size() / 3, c3.size() / 3), false, dir));
        wire += Encode(Frame(kCont, c3.substr(2 * (c3.size() / 3)), true, dir));
        RefFrame empty = Frame(kBinary, z.Compress(""), true, dir);
        empty.rsv1 = true;
        wire += Encode(empty);
        wire += Encode(Frame(kText, "plain between compressed", true, dir));
        f.payload = z.Compress(m3);
        wire += Encode(f);
        const Transcript r = DriveAllChunkings(dir, params, wire);
        EXPECT_EQ(r.error, 0) << r.reason;
        EXPECT_TRUE(Same(r.messages, (Messages{{kText, m1}, {kText, m1}, {kText, m3}, {kBinary, ""},
                                        {kText, "plain between compressed"}, {kText, m3}})));
        EXPECT_EQ(r.controls, (Messages{{kPing, "p"}}));
        EXPECT_EQ(r.consumed, wire.size());
      }
    }
  }
}

// Proves a message compressed with context takeover does not inflate when the inspector was told there is none (the window matters), so the negotiated mode is really the one used.
TEST(WebSocketDeflate, ContextTakeoverModeIsTheNegotiatedOne) {
  RefDeflater z(15, /*context_takeover=*/true);
  const std::string m = Text(7, 2000);
  RefFrame f = Frame(kText, z.Compress(m));
  f.rsv1 = true;
  std::string wire = Encode(f);
  f.payload = z.Compress(m);
  wire += Encode(f);
  EXPECT_TRUE(Same(Drive(kC2S, Deflate(15, 15, false, false), wire, {wire.size()}).messages, {{kText, m}, {kText, m}}));
  const Transcript r = Drive(kC2S, Deflate(15, 15, /*client_nct=*/true, false), wire, {wire.size()});
  EXPECT_EQ(r.error, kCloseInvalidPayload) << r.reason;
}

// Proves the verdict on a message does not depend on the negotiated window: one whose distances exceed what its sender negotiated (9 bits) inflates the same at every split, rather than failing only when a read boundary falls inside it.
TEST(WebSocketDeflate, WindowBeyondTheNegotiatedOneInflatesAtEverySplit) {
  const std::string m = Binary(1, 1000) + Binary(1, 1000);  // the repeat is 1000 bytes back: > 2^9
  for (Direction dir : {kC2S, kS2C}) {
    RefDeflater z(15, true);
    RefFrame f = Frame(kBinary, z.Compress(m), true, dir);
    f.rsv1 = true;
    const Transcript r = DriveAllChunkings(dir, Deflate(9, 9), Encode(f));
    EXPECT_EQ(r.error, 0) << r.reason;
    EXPECT_TRUE(Same(r.messages, {{kBinary, m}}));
  }
}

// Proves a window of 8 negotiated by a zlib peer (which really compresses with 9 bits) is inflated.
TEST(WebSocketDeflate, WindowBits8IsInflatedAs9) {
  RefDeflater z(9, true);
  const std::string m = Binary(3, 100) + Binary(3, 100) + Text(1, 3000);
  RefFrame f = Frame(kBinary, z.Compress(m));
  f.rsv1 = true;
  const std::string wire = Encode(f);
  const Transcript r = DriveAllChunkings(kC2S, Deflate(8, 8), wire);
  EXPECT_EQ(r.error, 0) << r.reason;
  EXPECT_TRUE(Same(r.messages, (Messages{{kBinary, m}})));
}

// Proves a message ended with a final deflate block is accepted and, under context takeover, the next message still inflates against its window (RFC 7692 §7.2.2).
TEST(WebSocketDeflate, FinalBlockKeepsTheWindowForTheNextMessage) {
  const std::string m1 = Text(11, 3000);
  const std::string m2 = m1.substr(100, 2000) + "new";
  RefDeflater first(15, true);
  RefFrame f = Frame(kText, first.CompressFinal(m1), true, kS2C);
  f.rsv1 = true;
  std::string wire = Encode(f);
  RefDeflater second(15, true);  // continues from m1's window, as a takeover sender would
  ASSERT_EQ(deflateSetDictionary(second.stream(), reinterpret_cast<const Bytef*>(m1.data()),
                                 static_cast<uInt>(m1.size())), Z_OK);
  f.payload = second.Compress(m2);
  wire += Encode(f);
  const Transcript r = DriveAllChunkings(kS2C, Deflate(), wire);
  EXPECT_EQ(r.error, 0) << r.reason;
  EXPECT_TRUE(Same(r.messages, (Messages{{kText, m1}, {kText, m2}})));
}

// Proves a compressed message inflating to megabytes is handed out in bounded pieces, with its wire bytes consumed only as they inflate (no whole-message buffer), and the same at any split.
TEST(WebSocketDeflate, LargeMessageInflatesInBoundedPieces) {
  const std::string m = Text(5, 3 << 20);
  RefDeflater z(15, true);
  RefFrame f = Frame(kText, z.Compress(m));
  f.rsv1 = true;
  const std::string wire = Encode(f);
  ASSERT_LT(wire.size(), m.size() / 4);
  for (const auto& pieces : {std::vector<size_t>{wire.size()}, std::vector<size_t>{1}, std::vector<size_t>{4093}}) {
    const Transcript r = Drive(kC2S, Deflate(), wire, pieces);
    EXPECT_EQ(r.error, 0) << r.reason;
    ASSERT_EQ(r.messages.size(), 1u);
    EXPECT_TRUE(r.messages[0].second == m);
    EXPECT_LE(r.largest_data, kPieceBound);
    EXPECT_LE(r.largest_payload_consumed, kPieceBound);
  }
}

// Proves a 16 MiB frame is reported as its bytes arrive, in pieces no larger than the per-event bound, before the frame is complete.
TEST(WebSocketStreaming, LargeFrameIsReportedAsItArrives) {
  RefFrame f = Frame(kBinary, Binary(9, 16 << 20));
  const std::string wire = Encode(f);
  FrameInspector in(kC2S, {});
  std::string_view rest(wire);
  Event ev = in.Next(rest.substr(0, 20));  // header (14 bytes) and 6 payload bytes
  ASSERT_EQ(ev.kind, Event::kFrameStart);
  EXPECT_EQ(ev.consumed, 14u);
  EXPECT_EQ(ev.payload_length, 16u << 20);
  rest.remove_prefix(ev.consumed);
  ev = in.Next(rest.substr(0, 6));
  ASSERT_EQ(ev.kind, Event::kPayload);
  EXPECT_EQ(ev.data, f.payload.substr(0, 6));
  rest.remove_prefix(ev.consumed);
  EXPECT_EQ(in.Next(rest.substr(0, 0)).kind, Event::kNeedMore);
  std::string got = f.payload.substr(0, 6);
  while (true) {
    ev = in.Next(rest);
    if (ev.kind != Event::kPayload) break;
    EXPECT_LE(ev.consumed, kPieceBound);
    got.append(ev.data);
    rest.remove_prefix(ev.consumed);
  }
  EXPECT_EQ(ev.kind, Event::kFrameEnd);
  EXPECT_TRUE(ev.message_end);
  EXPECT_TRUE(got == f.payload);
  EXPECT_TRUE(rest.empty());
}

// Proves frames built by BuildFrame, masked or not and of every length form, parse back to their payload, and close payloads are cut to 125 bytes at a code point boundary.
TEST(WebSocketBuild, BuildFrameAndClosePayloadParseBack) {
  for (size_t n : {0, 1, 125, 126, 65535, 65536}) {
    const std::string payload = Binary(static_cast<int>(n), n);
    for (bool masked : {true, false}) {
      const std::string wire = BuildFrame(kBinary, payload, masked, 0xdeadbeef);
      const Transcript r = Drive(masked ? kC2S : kS2C, {}, wire, {wire.size()});
      EXPECT_EQ(r.error, 0) << r.reason;
      EXPECT_TRUE(Same(r.messages, (Messages{{kBinary, payload}})));
      EXPECT_EQ(wire.size(), payload.size() + (n < 126 ? 2 : n <= 0xffff ? 4 : 10) + (masked ? 4 : 0));
    }
  }
  std::string reason(120, 'x');
  reason += "日本";  // 6 bytes: only the whole first character fits into 123
  const std::string close = ClosePayload(1008, reason);
  EXPECT_EQ(close.size(), 2 + 120 + 3u);
  EXPECT_EQ(close.substr(0, 2), "\x03\xf0");
  EXPECT_TRUE(IsValidUtf8(close.substr(2)));
  FrameInspector in(kS2C, {});
  EXPECT_EQ(Consume(in, BuildFrame(kClose, close, false)).kind, Event::kNeedMore);
  EXPECT_TRUE(in.close_received());
  EXPECT_EQ(in.close_code(), 1008);
  EXPECT_EQ(in.close_reason(), close.substr(2));
  EXPECT_EQ(ClosePayload(1005, "x"), "");
  EXPECT_EQ(ClosePayload(1000, std::string("ok\xff", 3)), std::string("\x03\xe8ok", 4));
}

// ---------------------------------------------------------------------------------------------
// Strictness: every rule, with its close code.

// Proves a client frame without a mask and a server frame with one are protocol errors.
TEST(WebSocketStrict, MaskingMustFitTheDirection) {
  ExpectRefused(kC2S, {}, Encode(Frame(kText, "hi", true, kS2C)), kCloseProtocolError);
  ExpectRefused(kS2C, {}, Encode(Frame(kText, "hi", true, kC2S)), kCloseProtocolError);
}

// Proves reserved bits are refused: RSV2/RSV3 always, RSV1 without deflate, on a continuation and on a control frame.
TEST(WebSocketStrict, ReservedBits) {
  for (bool deflate : {false, true}) {
    const DeflateParams p = deflate ? Deflate() : DeflateParams{};
    RefFrame f = Frame(kText, "hi");
    f.rsv2 = true;
    ExpectRefused(kC2S, p, Encode(f), kCloseProtocolError);
    f.rsv2 = false;
    f.rsv3 = true;
    ExpectRefused(kC2S, p, Encode(f), kCloseProtocolError);
    RefFrame ping = Frame(kPing, "");
    ping.rsv1 = true;
    ExpectRefused(kC2S, p, Encode(ping), kCloseProtocolError);
    RefFrame cont = Frame(kCont, "x");
    cont.rsv1 = true;
    ExpectRefused(kC2S, p, Encode(Frame(kBinary, "x", false)) + Encode(cont), kCloseProtocolError);
  }
  RefFrame f = Frame(kText, "hi");
  f.rsv1 = true;
  ExpectRefused(kC2S, {}, Encode(f), kCloseProtocolError);
}

// Proves opcodes 3-7 and 11-15 are refused.
TEST(WebSocketStrict, UnknownOpcodes) {
  for (uint8_t op : {3, 4, 5, 6, 7, 11, 12, 13, 14, 15}) {
    ExpectRefused(kC2S, {}, Encode(Frame(op, "")), kCloseProtocolError);
  }
}

// Proves a fragmented control frame and one longer than 125 bytes are refused, while 125 bytes pass.
TEST(WebSocketStrict, ControlFrames) {
  ExpectRefused(kC2S, {}, Encode(Frame(kPing, "x", false)), kCloseProtocolError);
  ExpectRefused(kC2S, {}, Encode(Frame(kPong, std::string(126, 'x'))), kCloseProtocolError);
  RefFrame long_form = Frame(kPing, "x");  // a small length written in the 16-bit form is refused too
  long_form.form = RefFrame::k16;
  ExpectRefused(kC2S, {}, Encode(long_form), kCloseProtocolError);
  const Transcript ok = DriveAllChunkings(kC2S, {}, Encode(Frame(kPing, std::string(125, 'x'))));
  EXPECT_EQ(ok.error, 0) << ok.reason;
  EXPECT_EQ(ok.controls, (Messages{{kPing, std::string(125, 'x')}}));
}

// Proves a continuation without a message and a new data frame inside a fragmented message are refused.
TEST(WebSocketStrict, FragmentationOrder) {
  ExpectRefused(kC2S, {}, Encode(Frame(kCont, "x")), kCloseProtocolError);
  ExpectRefused(kC2S, {}, Encode(Frame(kText, "a")) + Encode(Frame(kCont, "x")), kCloseProtocolError);
  ExpectRefused(kC2S, {}, Encode(Frame(kText, "a", false)) + Encode(Frame(kBinary, "b")), kCloseProtocolError);
  ExpectRefused(kC2S, {}, Encode(Frame(kText, "a", false)) + Encode(Frame(kText, "b")), kCloseProtocolError);
}

// Proves non-minimal 16- and 64-bit lengths and a 64-bit length with the top bit are refused, and the 64-bit bound is checked from the header alone.
TEST(WebSocketStrict, LengthEncoding) {
  RefFrame f = Frame(kBinary, std::string(125, 'x'));
  f.form = RefFrame::k16;
  ExpectRefused(kC2S, {}, Encode(f), kCloseProtocolError);
  f.payload = std::string(65535, 'x');
  f.form = RefFrame::k64;
  ExpectRefused(kC2S, {}, Encode(f), kCloseProtocolError);
  f.payload = "";
  f.form = RefFrame::k64;
  f.top_bit = true;
  ExpectRefused(kC2S, {}, Encode(f), kCloseProtocolError);
  // A header claiming 2^62 bytes is refused before any payload arrives.
  std::string huge = "\x82\xff";
  huge += std::string("\x40\x00\x00\x00\x00\x00\x00\x00", 8) + "mask";
  ExpectRefused(kC2S, {}, huge, kCloseMessageTooBig);
}

// Proves invalid UTF-8 in a text message is refused with 1007 (overlong, surrogate, beyond U+10FFFF, stray continuation, truncated at the end, also when compressed), while binary messages and valid text split mid-code-point pass.
TEST(WebSocketStrict, TextMustBeUtf8) {
  for (std::string bad : {"\xc0\x80", "\xe0\x80\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xf8\x88\x80\x80\x80",
                          "ok\x80", "\xff", "ab\xe2\x82"}) {
    SCOPED_TRACE(testing::Message() << testing::PrintToString(bad));
    ExpectRefused(kC2S, {}, Encode(Frame(kText, bad)), kCloseInvalidPayload);
    ExpectRefused(kC2S, {}, Encode(Frame(kText, bad.substr(0, 1), false)) + Encode(Frame(kCont, bad.substr(1))),
                  kCloseInvalidPayload);
    RefDeflater z(15, true);
    RefFrame f = Frame(kText, z.Compress(Text(1, 300) + bad));
    f.rsv1 = true;
    ExpectRefused(kC2S, Deflate(), Encode(f), kCloseInvalidPayload);
    EXPECT_EQ(DriveAllChunkings(kC2S, {}, Encode(Frame(kBinary, bad))).error, 0);
  }
  const std::string emoji = "😀";
  const Transcript r = DriveAllChunkings(
      kC2S, {}, Encode(Frame(kText, emoji.substr(0, 1), false)) + Encode(Frame(kCont, emoji.substr(1, 2), false)) +
                    Encode(Frame(kCont, emoji.substr(3))));
  EXPECT_EQ(r.error, 0) << r.reason;
  EXPECT_TRUE(Same(r.messages, (Messages{{kText, emoji}})));
}

// Proves close frames: no payload is 1005, a code and a reason are reported, a 1-byte payload and reserved or unassigned codes are 1002, a reason that is not UTF-8 is 1007, and nothing may follow a close.
TEST(WebSocketStrict, CloseFrames) {
  const Transcript empty = DriveAllChunkings(kS2C, {}, Encode(Frame(kClose, "", true, kS2C)));
  EXPECT_EQ(empty.error, 0);
  FrameInspector in(kC2S, {});
  EXPECT_EQ(Consume(in, Encode(Frame(kClose, std::string("\x0f\xa0", 2) + "bye"))).kind, Event::kNeedMore);
  EXPECT_TRUE(in.close_received());
  EXPECT_EQ(in.close_code(), 4000);
  EXPECT_EQ(in.close_reason(), "bye");
  FrameInspector none(kC2S, {});
  EXPECT_EQ(Consume(none, Encode(Frame(kClose, ""))).kind, Event::kNeedMore);
  EXPECT_EQ(none.close_code(), kCloseNoStatus);

  ExpectRefused(kC2S, {}, Encode(Frame(kClose, "\x03")), kCloseProtocolError);
  for (int code : {0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535}) {
    const std::string payload = {static_cast<char>(code >> 8), static_cast<char>(code & 0xff)};
    ExpectRefused(kC2S, {}, Encode(Frame(kClose, payload)), kCloseProtocolError);
  }
  for (int code : {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4999}) {
    const std::string payload = {static_cast<char>(code >> 8), static_cast<char>(code & 0xff)};
    EXPECT_EQ(DriveAllChunkings(kC2S, {}, Encode(Frame(kClose, payload))).error, 0) << code;
  }
  ExpectRefused(kC2S, {}, Encode(Frame(kClose, std::string("\x03\xe8\xc3", 3))), kCloseInvalidPayload);
  ExpectRefused(kC2S, {}, Encode(Frame(kClose, "\x03\xe8")) + Encode(Frame(kPing, "")), kCloseProtocolError);
}

// Proves deflate data that does not inflate, that leaves the tail unstripped (so it does not end on a block boundary), or that has bytes after its final block is refused with 1007.
TEST(WebSocketStrict, DeflateStreamMustInflate) {
  RefFrame f = Frame(kText, "\xff\xff\xff\xff");  // BTYPE 11: a reserved block type
  f.rsv1 = true;
  ExpectRefused(kC2S, Deflate(), Encode(f), kCloseInvalidPayload);
  RefDeflater z(15, false);
  f.payload = z.Compress("hello hello hello", /*strip_tail=*/false);
  ExpectRefused(kC2S, Deflate(), Encode(f), kCloseInvalidPayload);
  f.payload = z.CompressFinal("hello hello hello") + "x";
  ExpectRefused(kC2S, Deflate(), Encode(f), kCloseInvalidPayload);
  f.payload = "";  // no payload at all: the tail alone is no complete block (an empty message is 0x00)
  ExpectRefused(kC2S, Deflate(), Encode(f), kCloseInvalidPayload);
  RefFrame first = Frame(kText, z.CompressFinal("hello hello hello"), false);
  first.rsv1 = true;
  ExpectRefused(kC2S, Deflate(), Encode(first) + Encode(Frame(kCont, "x")), kCloseInvalidPayload);
}

// Proves the message size and the expansion ratio are bounded: an oversized frame or fragment sum is refused from its header, an inflating message once it exceeds the limit or the ratio, all with 1009.
TEST(WebSocketStrict, MessageLimits) {
  Limits small;
  small.max_message_bytes = 1000;
  ExpectRefused(kC2S, {}, Encode(Frame(kBinary, std::string(1001, 'x'))), kCloseMessageTooBig, small);
  EXPECT_EQ(DriveAllChunkings(kC2S, {}, Encode(Frame(kBinary, std::string(1000, 'x'))), small).error, 0);
  ExpectRefused(kC2S, {}, Encode(Frame(kBinary, std::string(600, 'x'), false)) + Encode(Frame(kCont, std::string(401, 'x'))),
                kCloseMessageTooBig, small);
  // Control frames do not count towards a message.
  EXPECT_EQ(DriveAllChunkings(kC2S, {},
                              Encode(Frame(kBinary, std::string(900, 'x'), false)) + Encode(Frame(kPing, std::string(125, 'p'))) +
                                  Encode(Frame(kCont, std::string(100, 'x'))),
                              small)
                .error,
            0);
  RefDeflater z(15, true);
  RefFrame f = Frame(kText, z.Compress(std::string(1001, 'a')));
  f.rsv1 = true;
  ExpectRefused(kC2S, Deflate(), Encode(f), kCloseMessageTooBig, small);

  // A bomb: 20 MiB of zeros in about 20 KiB, far beyond the default ratio of 100.
  RefDeflater bomb(15, true);
  RefFrame b = Frame(kBinary, bomb.Compress(std::string(20 << 20, '\0')));
  b.rsv1 = true;
  const Transcript r = Drive(kC2S, Deflate(), Encode(b), {1 << 20});
  EXPECT_EQ(r.error, kCloseMessageTooBig) << r.reason;
  Limits ratio;
  ratio.max_expansion_ratio = 2000;  // the same message within a laxer ratio inflates whole
  EXPECT_EQ(Drive(kC2S, Deflate(), Encode(b), {1 << 20}, ratio).error, 0);
}

// Proves that after an error the inspector keeps reporting it, whatever comes next.
TEST(WebSocketStrict, ErrorIsSticky) {
  FrameInspector in(kC2S, {});
  const std::string bad = Encode(Frame(kText, "x", true, kS2C));
  Event ev = in.Next(bad);
  ASSERT_EQ(ev.kind, Event::kError);
  EXPECT_EQ(ev.close_code, kCloseProtocolError);
  const std::string good = Encode(Frame(kText, "x"));
  ev = in.Next(good);
  EXPECT_EQ(ev.kind, Event::kError);
  EXPECT_EQ(ev.consumed, 0u);
  EXPECT_EQ(ev.close_code, kCloseProtocolError);
  EXPECT_TRUE(in.in_error());
}

// ---------------------------------------------------------------------------------------------
// Extension negotiation.

// Proves browser offers pass on canonicalized, unknown extensions are stripped, and a header that does not parse leaves nothing.
TEST(WebSocketExtensions, OffersKeepOnlyReadablePermessageDeflate) {
  EXPECT_EQ(FilterOfferedExtensions("permessage-deflate; client_max_window_bits"),
            "permessage-deflate; client_max_window_bits");
  EXPECT_EQ(FilterOfferedExtensions("permessage-deflate"), "permessage-deflate");
  EXPECT_EQ(FilterOfferedExtensions("x-webkit-deflate-frame"), "");
  EXPECT_EQ(FilterOfferedExtensions("foo, permessage-deflate; server_no_context_takeover, x-webkit-deflate-frame"),
            "permessage-deflate; server_no_context_takeover");
  EXPECT_EQ(FilterOfferedExtensions("Permessage-Deflate ;Client_Max_Window_Bits=\"10\" ; server_max_window_bits=8"),
            "permessage-deflate; client_max_window_bits=10; server_max_window_bits=8");
  EXPECT_EQ(FilterOfferedExtensions(
                "permessage-deflate; client_no_context_takeover; server_no_context_takeover; "
                "client_max_window_bits=15; server_max_window_bits=9, permessage-deflate; client_max_window_bits"),
            "permessage-deflate; client_no_context_takeover; server_no_context_takeover; "
            "client_max_window_bits=15; server_max_window_bits=9, permessage-deflate; client_max_window_bits");
  EXPECT_EQ(FilterOfferedExtensions("foo; bar=\"a,b\", permessage-deflate"), "");  // "a,b" is no token
  EXPECT_EQ(FilterOfferedExtensions("foo; bar=\"baz\", permessage-deflate"), "permessage-deflate");
  EXPECT_EQ(FilterOfferedExtensions(" , permessage-deflate ,, "), "permessage-deflate");
  EXPECT_EQ(FilterOfferedExtensions("permessage-deflate, permessage-deflate"), "permessage-deflate");
  EXPECT_EQ(FilterOfferedExtensions(""), "");
  for (const char* garbage : {"permessage-deflate;", "permessage-deflate; =1", "\"permessage-deflate\"",
                              "permessage-deflate; client_max_window_bits=\"10", "permessage-deflate foo",
                              "permessage-deflate; a=b=c", "permessage-deflate; client_max_window_bits="}) {
    EXPECT_EQ(FilterOfferedExtensions(garbage), "") << garbage;
  }
}

// Proves offers with parameter values outside RFC 7692, unknown or repeated parameters are dropped while the valid offers beside them stay.
TEST(WebSocketExtensions, InvalidOffersAreDropped) {
  for (const char* bad : {"server_max_window_bits", "server_max_window_bits=7", "server_max_window_bits=16",
                          "client_max_window_bits=08", "client_max_window_bits=abc",
                          "client_no_context_takeover=1", "server_no_context_takeover=\"x\"", "foo",
                          "foo=1", "client_max_window_bits; client_max_window_bits",
                          "server_no_context_takeover; server_no_context_takeover",
                          "client_max_window_bits=10; client_max_window_bits=11"}) {
    const std::string offer = std::string("permessage-deflate; ") + bad;
    EXPECT_EQ(FilterOfferedExtensions(offer), "") << offer;
    EXPECT_EQ(FilterOfferedExtensions(offer + ", permessage-deflate; client_max_window_bits"),
              "permessage-deflate; client_max_window_bits")
        << offer;
  }
}

// Proves the origin's answer is accepted when it fits an offer and gives the negotiated parameters.
TEST(WebSocketExtensions, FittingResponsesGiveTheNegotiatedParameters) {
  auto p = ParseAcceptedExtensions("", "permessage-deflate; client_max_window_bits");
  ASSERT_TRUE(p.ok());
  EXPECT_FALSE(p->enabled);
  p = ParseAcceptedExtensions("permessage-deflate", "permessage-deflate; client_max_window_bits");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_TRUE(p->enabled);
  EXPECT_EQ(p->client_max_window_bits, 15);
  EXPECT_EQ(p->server_max_window_bits, 15);
  EXPECT_FALSE(p->client_no_context_takeover);
  EXPECT_FALSE(p->server_no_context_takeover);
  p = ParseAcceptedExtensions(
      "permessage-deflate; server_no_context_takeover; client_no_context_takeover; client_max_window_bits=10; "
      "server_max_window_bits=12",
      "permessage-deflate; client_max_window_bits");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->client_max_window_bits, 10);
  EXPECT_EQ(p->server_max_window_bits, 12);
  EXPECT_TRUE(p->client_no_context_takeover);
  EXPECT_TRUE(p->server_no_context_takeover);
  // The second offer is the one accepted.
  p = ParseAcceptedExtensions("permessage-deflate; server_max_window_bits=11",
                              "permessage-deflate; server_max_window_bits=10, permessage-deflate");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->server_max_window_bits, 11);
  p = ParseAcceptedExtensions("Permessage-Deflate; Client_Max_Window_Bits=\"9\"",
                              "permessage-deflate; client_max_window_bits=9");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->client_max_window_bits, 9);
}

// Proves answers that do not fit what was offered, are not permessage-deflate, repeat it or do not parse are refused with a reason.
TEST(WebSocketExtensions, MisfittingResponsesAreRefused) {
  const std::string browser = "permessage-deflate; client_max_window_bits";
  for (const auto& [accepted, offered] : std::vector<std::pair<std::string, std::string>>{
           {"permessage-deflate", ""},
           {"x-webkit-deflate-frame", browser},
           {"permessage-deflate, permessage-deflate", browser},
           {"permessage-deflate, foo", browser},
           {"permessage-deflate; client_max_window_bits", browser},  // a response needs a value
           {"permessage-deflate; client_max_window_bits=10", "permessage-deflate"},
           {"permessage-deflate; client_max_window_bits=12", "permessage-deflate; client_max_window_bits=10"},
           {"permessage-deflate; server_max_window_bits=12", "permessage-deflate; server_max_window_bits=10"},
           {"permessage-deflate", "permessage-deflate; server_max_window_bits=10"},
           {"permessage-deflate", "permessage-deflate; server_no_context_takeover"},
           {"permessage-deflate; server_max_window_bits=16", browser},
           {"permessage-deflate; foo", browser},
           {"permessage-deflate; server_no_context_takeover; server_no_context_takeover", browser},
           {"permessage-deflate;", browser},
       }) {
    const auto p = ParseAcceptedExtensions(accepted, offered);
    EXPECT_FALSE(p.ok()) << accepted << " / " << offered;
    if (!p.ok()) {
      EXPECT_FALSE(p.status().message().empty());
    }
  }
}

// Proves the UTF-8 check and the close-code table on their own, including the boundaries.
TEST(WebSocketHelpers, Utf8AndCloseCodes) {
  EXPECT_TRUE(IsValidUtf8(""));
  EXPECT_TRUE(IsValidUtf8("plain ascii that is longer than eight bytes"));
  EXPECT_TRUE(IsValidUtf8("\x7f\xc2\x80\xdf\xbf\xe0\xa0\x80\xed\x9f\xbf\xee\x80\x80\xef\xbf\xbf"));
  EXPECT_TRUE(IsValidUtf8("\xf0\x90\x80\x80\xf4\x8f\xbf\xbf"));
  for (const char* bad : {"\xc1\xbf", "\xe0\x9f\xbf", "\xed\xbf\xbf", "\xf0\x8f\xbf\xbf", "\xf4\x90\x80\x80",
                          "\xf5\x80\x80\x80", "\xc2", "\xc2\xc2", "abcdefgh\x80"}) {
    EXPECT_FALSE(IsValidUtf8(bad)) << testing::PrintToString(std::string(bad));
  }
  EXPECT_TRUE(IsValidCloseCode(1000));
  EXPECT_FALSE(IsValidCloseCode(1005));
  EXPECT_TRUE(IsValidCloseCode(4999));
  EXPECT_FALSE(IsValidCloseCode(5000));
}

}  // namespace
}  // namespace egressguard::mitm::ws
