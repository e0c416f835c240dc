// Fuzzes the WebSocket frame inspector: the same bytes fed whole, byte by byte and in small pieces give the
// same transcript (frame starts and ends, message bytes concatenated, the error and its close code), in both
// directions, with and without permessage-deflate; it never crashes, consumes no more than it is given and
// hands out bounded pieces. Frames made by BuildFrame/ClosePayload parse back to their payload, and the
// extension-offer filter is idempotent.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "mitm/websocket.h"

namespace {

namespace ws = egressguard::mitm::ws;
using Event = ws::FrameInspector::Event;

constexpr size_t kPieceBound = 16 * 1024;  // websocket.cc kChunk

// The inspector's report, with message bytes concatenated between structural events: where the
// input was cut changes how bytes are grouped into events, never what is reported. The bytes of
// a frame cut short by an error are left out, since how many were reported before it depends on
// the cut.
std::string Transcript(ws::Direction dir, const ws::DeflateParams& params, const ws::Limits& limits,
                       std::string_view input, size_t step) {
  ws::FrameInspector in(dir, params, limits);
  std::string buf;
  std::string out;
  std::string pending;  // message bytes since the last structural event
  size_t fed = 0;
  while (true) {
    const size_t n = std::min(step, input.size() - fed);
    buf.append(input.substr(fed, n));
    fed += n;
    while (true) {
      const Event ev = in.Next(buf);
      if (ev.consumed > buf.size()) std::abort();
      // Unmasked, uncompressed payload may point straight into the input; anything else is bounded.
      if (ev.data.size() > kPieceBound && ev.data.size() > buf.size()) std::abort();
      if (ev.kind == Event::kError) {
        if (ev.consumed != 0 || ev.close_code == 0 || ev.reason.empty()) std::abort();
        return out + "X" + std::to_string(ev.close_code);
      }
      if (ev.kind == Event::kNeedMore) {
        if (ev.consumed != 0) std::abort();
        break;
      }
      pending.append(ev.data);
      if (ev.kind == Event::kFrameStart) {
        out += "S" + std::to_string(ev.opcode) + (ev.fin ? "f" : "") + (ev.compressed ? "z" : "") + ":" +
               std::to_string(ev.payload_length);
      }
      if (ev.kind == Event::kFrameEnd) {
        out += "[" + pending + "]E" + (ev.message_end ? "e" : "");
        pending.clear();
        if (ev.opcode == 8 && (!in.close_received() || in.close_code() < 1000)) std::abort();
      }
      buf.erase(0, ev.consumed);
    }
    if (fed == input.size()) return out;
  }
}

// Feeds one frame whole and returns the concatenated payload; aborts unless it parses as one
// complete frame.
std::string ParseOne(ws::FrameInspector& in, std::string_view wire) {
  std::string payload;
  bool ended = false;
  while (true) {
    const Event ev = in.Next(wire);
    if (ev.kind == Event::kError) std::abort();
    if (ev.kind == Event::kNeedMore) break;
    payload.append(ev.data);
    ended = ended || ev.kind == Event::kFrameEnd;
    wire.remove_prefix(ev.consumed);
  }
  if (!ended || !wire.empty()) std::abort();
  return payload;
}

void CheckBuildFrame(std::string_view data, uint32_t key) {
  for (const bool masked : {true, false}) {
    const auto dir = masked ? ws::Direction::kClientToServer : ws::Direction::kServerToClient;
    ws::FrameInspector in(dir, {});
    if (ParseOne(in, ws::BuildFrame(2, data, masked, key)) != data) std::abort();
    const std::string_view ping = data.substr(0, 125);
    if (ParseOne(in, ws::BuildFrame(9, ping, masked, key)) != ping) std::abort();
    const uint16_t code = static_cast<uint16_t>(key);
    const std::string close = ws::ClosePayload(code, data);
    if (close.size() > 125) std::abort();
    if (ParseOne(in, ws::BuildFrame(8, close, masked, key)) != close) std::abort();
    if (!in.close_received()) std::abort();
    if (ws::IsValidCloseCode(code)) {
      if (in.close_code() != code || in.close_reason() != close.substr(2)) std::abort();
      if (data.substr(0, in.close_reason().size()) != in.close_reason()) std::abort();
    } else if (in.close_code() != ws::kCloseNoStatus) {
      std::abort();
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const uint8_t flags = data[0];
  const size_t step = 1 + data[1] % 13;
  const std::string_view wire(reinterpret_cast<const char*>(data) + 2, size - 2);

  ws::Limits limits;
  limits.max_message_bytes = 1 << 20;  // keeps runs fast; the limit path is exercised too
  limits.max_expansion_ratio = 0;      // judged on wire bytes consumed so far, which depends on the cut
  for (const auto dir : {ws::Direction::kClientToServer, ws::Direction::kServerToClient}) {
    for (const bool deflate : {false, true}) {
      ws::DeflateParams params;
      params.enabled = deflate;
      params.client_no_context_takeover = flags & 1;
      params.server_no_context_takeover = flags & 2;
      params.client_max_window_bits = 8 + (flags >> 4) % 8;
      params.server_max_window_bits = 8 + (flags >> 1) % 8;
      const std::string whole = Transcript(dir, params, limits, wire, wire.size() + 1);
      if (Transcript(dir, params, limits, wire, step) != whole) std::abort();
      if (Transcript(dir, params, limits, wire, 1) != whole) std::abort();
    }
  }
  // The ratio guard on its own, for crashes only.
  ws::Limits ratio;
  ratio.max_message_bytes = 1 << 20;
  ratio.max_expansion_ratio = 4;
  ratio.ratio_judged_from = 64;
  ws::DeflateParams params;
  params.enabled = true;
  Transcript(flags & 4 ? ws::Direction::kClientToServer : ws::Direction::kServerToClient, params, ratio, wire, step);

  uint32_t key = 0;
  for (size_t i = 0; i < 4 && i < wire.size(); ++i) key = key << 8 | static_cast<uint8_t>(wire[i]);
  CheckBuildFrame(wire, key);

  const std::string filtered = ws::FilterOfferedExtensions(wire);
  if (ws::FilterOfferedExtensions(filtered) != filtered) std::abort();
  (void)ws::ParseAcceptedExtensions(wire, filtered);
  return 0;
}
