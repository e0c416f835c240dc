#pragma once
// RFC 6455 framing and RFC 7692 permessage-deflate, one direction at a time, without I/O.
//
// After a 101 the proxy relays WebSocket frames unchanged but must scan what a person
// wrote: client frames are XOR-masked and messages may be deflated, so the raw bytes
// are noise to the scanner. FrameInspector turns one direction's wire bytes into
// message bytes (unmasked, inflated) as they stream, and refuses everything a strict
// endpoint would refuse, so no frame the scanner misread can reach the other side.
// The handshake helpers keep the negotiated extensions to what the inspector reads.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace egressguard::mitm::ws {

struct DeflateParams {  // what was negotiated (RFC 7692 §7)
  bool enabled = false;
  int client_max_window_bits = 15;  // 8..15 as negotiated; the inspector inflates with 15 whatever
                                    // these say (see FrameInspector)
  int server_max_window_bits = 15;
  bool client_no_context_takeover = false;
  bool server_no_context_takeover = false;
};

// The client's Sec-WebSocket-Extensions (all header values joined with ", "): keeps only the
// permessage-deflate offers the proxy can inspect (valid parameters, RFC 7692 §7.1) and drops
// every other extension. Returns the value to send upstream, "" when nothing is left (the
// caller then removes the header). The kept offers are re-serialized canonically (lower-case
// names, unquoted values); a header that does not parse as an extension list gives "".
std::string FilterOfferedExtensions(std::string_view offered);

// The origin's Sec-WebSocket-Extensions in its 101 ("" when absent). Accepts at most one
// permessage-deflate with valid parameters that fit what was offered (`offered` is what
// FilterOfferedExtensions returned); anything else is an error with a reason (the caller
// refuses the upgrade).
absl::StatusOr<DeflateParams> ParseAcceptedExtensions(std::string_view accepted, std::string_view offered);

struct Limits {
  uint64_t max_message_bytes = 64ull << 20;  // payload of one message, inflated (bomb guard) and on the
                                             // wire, checked from each frame header; beyond: close 1009
  uint32_t max_expansion_ratio = 100;        // inflated / compressed wire bytes of one message; beyond: 1009
  uint64_t ratio_judged_from = 1ull << 20;   // the ratio is judged once a message inflated this much (as the
                                             // decoders do): small messages, and repeats under context
                                             // takeover, legitimately compress far better
};

enum class Direction { kClientToServer, kServerToClient };

// RFC 6455 §7.4 close codes the inspector reports.
inline constexpr uint16_t kCloseProtocolError = 1002;
inline constexpr uint16_t kCloseInvalidPayload = 1007;
inline constexpr uint16_t kClosePolicyViolation = 1008;
inline constexpr uint16_t kCloseMessageTooBig = 1009;
inline constexpr uint16_t kCloseInternalError = 1011;  // zlib could not set up (memory)
inline constexpr uint16_t kCloseNoStatus = 1005;  // never on the wire: a close frame without payload

// Consumes the bytes of one direction and reports frames. Strict: a client frame that is not
// masked, a server frame that is masked, reserved bits set (RSV1 only on the first frame of a
// data message when deflate was negotiated), unknown opcodes, control frames that are
// fragmented or longer than 125 bytes, a continuation without a message, a new data frame
// inside a fragmented message, non-minimal 16/64-bit lengths or a 64-bit length with the top bit,
// invalid UTF-8 in a (complete, inflated) text message or a close reason, a close payload of 1
// byte or an invalid close code, a deflate stream that does not inflate (or does not end on a
// block boundary, or has bytes after its final block), any frame after a close frame: all are
// errors with a close code (1002 protocol error, 1007 invalid payload data, 1009 message too
// big; 1011 when zlib cannot be set up) and a short reason. After an error the inspector stays
// in error.
//
// permessage-deflate: only messages whose first frame has RSV1 are inflated, with one raw
// inflate stream per direction whose window carries over between messages unless that
// direction's sender negotiated no_context_takeover. The window is always 15 bits (see
// websocket.cc: zlib does not enforce a smaller one split-independently), so the negotiated
// max_window_bits only bound what the peers use. Every verdict is the same however the input
// is split into reads (except how many bytes were consumed before an error).
class FrameInspector {
 public:
  FrameInspector(Direction direction, const DeflateParams& params, const Limits& limits = {});
  ~FrameInspector();
  FrameInspector(FrameInspector&&) noexcept;
  FrameInspector& operator=(FrameInspector&&) noexcept;
  FrameInspector(const FrameInspector&) = delete;
  FrameInspector& operator=(const FrameInspector&) = delete;

  struct Event {
    enum Kind { kNeedMore, kFrameStart, kPayload, kFrameEnd, kError } kind = kNeedMore;
    size_t consumed = 0;  // wire bytes of the input consumed by this event
    // Of the current frame, on kFrameStart, kPayload and kFrameEnd:
    uint8_t opcode = 0;  // of this frame (0 continuation, 1 text, 2 binary, 8 close, 9 ping, 10 pong)
    bool fin = false;
    bool control = false;
    bool message_start = false;  // first frame of a data message (opcode 1 or 2)
    uint8_t message_opcode = 0;  // the data message's opcode (1 or 2) for data frames incl. continuations;
                                 // 0 for control frames
    bool compressed = false;     // the data message is permessage-deflate compressed
    uint64_t payload_length = 0;
    // kPayload: message bytes to scan: unmasked and, for a compressed message, inflated (may be
    // empty even when wire bytes were consumed; for a compressed message the last inflated bytes
    // come with the final frame's kFrameEnd via `data` there). Control frame payloads are
    // reported the same way (unmasked).
    std::string_view data;
    // kFrameEnd: the frame's last wire byte was consumed. `data` may hold final inflated bytes.
    bool message_end = false;  // the FIN frame of a data message ended (or a control frame ended)
    // kError:
    uint16_t close_code = 0;
    std::string reason;
  };

  // Call repeatedly like an HTTP parser: each call consumes a prefix of `input` (maybe none) and
  // reports one event; keep unconsumed bytes and append more. Call again until kNeedMore (which
  // consumes nothing): kPayload and kFrameEnd may consume nothing either, when inflated output
  // is still being handed out. `data` points into the input or an internal buffer valid until
  // the next call. Wire bytes are consumed only as their payload is reported (a compressed
  // frame's bytes as zlib takes them), so forwarding exactly the consumed bytes after scanning
  // each event's data never forwards unscanned message bytes beyond what the inflater holds
  // back inside a deflate symbol.
  Event Next(std::string_view input);

  // For a close frame that ended: its code (1005 when it had no payload) and reason.
  bool close_received() const { return close_received_; }
  uint16_t close_code() const { return close_code_; }
  const std::string& close_reason() const { return close_reason_; }

  bool in_error() const { return state_ == State::kError; }
  bool in_message() const { return in_message_; }  // a data message started and has not ended

 private:
  class Inflater;
  enum class State { kHeader, kPayload, kTail, kError };

  Event ParseHeader(std::string_view input);
  Event ParsePayload(std::string_view input);
  Event PayloadPlain(std::string_view input);
  Event PayloadCompressed(std::string_view input);
  Event Tail();
  Event EndFrame(std::string_view data);
  Event EndControlFrame();
  Event FrameEvent(Event::Kind kind, size_t consumed, std::string_view data) const;
  Event Fail(uint16_t code, std::string reason);
  // Accounts message bytes (unmasked or inflated) against the limits and UTF-8; false with
  // `error` set when they break a rule.
  bool AcceptMessageBytes(std::string_view data, Event* error);
  // The first n bytes of `wire` unmasked into scratch_ from the running mask offset (which the
  // caller advances by what it consumes).
  std::string_view Unmask(std::string_view wire, size_t n);

  Direction direction_;
  DeflateParams params_;
  Limits limits_;
  State state_ = State::kHeader;
  std::unique_ptr<Inflater> inflater_;  // created on the first compressed message
  std::string scratch_;                 // unmasked bytes
  std::string out_;                     // inflated bytes

  // The current frame.
  uint8_t opcode_ = 0;
  bool fin_ = false;
  bool masked_ = false;
  uint8_t mask_[4] = {0, 0, 0, 0};
  uint64_t payload_length_ = 0;
  uint64_t remaining_ = 0;  // payload wire bytes not yet consumed
  uint64_t mask_offset_ = 0;
  bool message_start_ = false;
  std::string control_payload_;  // <= 125 bytes, unmasked, for close frames

  // The current data message.
  bool in_message_ = false;
  uint8_t message_opcode_ = 0;
  bool compressed_ = false;
  bool deflate_ended_ = false;    // the message's deflate stream had its final block
  bool inflate_pending_ = false;  // the last inflate filled its output: more may come without input
  size_t tail_used_ = 0;          // of the 4 tail bytes (RFC 7692 §7.2.2)
  uint64_t message_wire_bytes_ = 0;
  uint64_t message_bytes_ = 0;  // unmasked / inflated
  uint8_t utf8_state_ = 0;      // incremental UTF-8 check of a text message

  bool close_received_ = false;
  uint16_t close_code_ = 0;
  std::string close_reason_;
  uint16_t error_code_ = 0;
  std::string error_reason_;
};

// Builds a frame (for the proxy's own close frames): FIN, opcode, payload; masked with `mask_key`
// when sent as a client (toward the origin), unmasked toward the client. The key must be
// unpredictable to the page (RFC 6455 §5.3): the caller draws it from a CSPRNG. The caller keeps
// control payloads within 125 bytes (ClosePayload does).
std::string BuildFrame(uint8_t opcode, std::string_view payload, bool masked, uint32_t mask_key = 0);
// A close frame payload: 2-byte code then a UTF-8 reason, truncated to fit 125 bytes (at a code
// point boundary; a reason that is not UTF-8 is cut at its first invalid byte). A code that may
// not be sent (1005, 1006, 1015, < 1000, ...) gives an empty payload, itself a valid close.
std::string ClosePayload(uint16_t code, std::string_view reason);

// Helpers exposed for the relay and tests.
bool IsValidCloseCode(uint16_t code);  // may appear in a close frame (RFC 6455 §7.4, IANA registry)
bool IsValidUtf8(std::string_view s);

}  // namespace egressguard::mitm::ws
