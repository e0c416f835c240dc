#pragma once
// What the proxy counts, as plain atomics: mitm/ knows nothing of Prometheus; the
// appliance translates these at scrape time. Every label set is a fixed enum, so the
// number of series is bounded no matter what clients and origins do.

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace egressguard::mitm {

// How a connection was handled (the verdict's mode).
enum class ConnectionMode : size_t { kBump, kSplice, kRefuse, kPlain, kCount };
inline constexpr std::array<std::string_view, static_cast<size_t>(ConnectionMode::kCount)> kConnectionModeNames = {
    "bump", "splice", "refuse", "plain"};

// How a connection ended: the last verdict's outcome, or why there was none.
enum class ConnectionOutcome : size_t {
  kOk,                    // every transaction went through (alerts and monitor-mode findings included)
  kBlocked,               // DLP rules blocked a transaction (enforce)
  kRefused,               // policy: destination or method not allowed, CONNECT in a tunnel, ...
  kUpstreamUnreachable,
  kUpstreamCertInvalid,
  kUpstreamTlsFailed,
  kClientTlsFailed,
  kMalformed,             // bad HTTP, not TLS, bad ClientHello
  kFailClosed,            // no engine to scan with: refused
  kProxyProtocolInvalid,  // PROXY v2 header missing or malformed
  kClientNotAllowed,      // PROXY v2 source not on the client allow-list
  kError,                 // anything else the proxy gave up on (mint failure, origin failed)
  kNoRequest,             // closed or timed out before a request
  kCount
};
inline constexpr std::array<std::string_view, static_cast<size_t>(ConnectionOutcome::kCount)> kConnectionOutcomeNames = {
    "ok",        "blocked",     "refused", "upstream_unreachable", "upstream_cert_invalid", "upstream_tls_failed",
    "client_tls_failed", "malformed", "fail_closed", "proxy_protocol_invalid", "client_not_allowed", "error",
    "no_request"};

// Why an origin's certificate was refused (OpenSSL verify errors, grouped; kNotServerLeaf:
// the chain verified but the leaf is not for serving TLS, see mitm/upstream_verify.h).
enum class UpstreamVerifyFailure : size_t {
  kExpired, kNotYetValid, kSelfSigned, kUnknownIssuer, kNameMismatch, kRevoked, kNoCertificate, kNotServerLeaf, kOther,
  kCount
};
inline constexpr std::array<std::string_view, static_cast<size_t>(UpstreamVerifyFailure::kCount)>
    kUpstreamVerifyFailureNames = {"expired", "not_yet_valid", "self_signed", "unknown_issuer",
                                   "name_mismatch", "revoked", "no_certificate", "not_server_leaf", "other"};

// TLS handshakes that did not complete, by side and reason.
enum class HandshakeFailure : size_t { kClientTimeout, kClientError, kUpstreamTimeout, kUpstreamError, kCount };
inline constexpr std::array<std::string_view, static_cast<size_t>(HandshakeFailure::kCount)> kHandshakeSideNames = {
    "client", "client", "upstream", "upstream"};
inline constexpr std::array<std::string_view, static_cast<size_t>(HandshakeFailure::kCount)> kHandshakeReasonNames = {
    "timeout", "error", "timeout", "error"};

// HTTP/2 streams (and gRPC calls over them) by how they ended: allowed (forwarded and
// answered), blocked (enforced), reset (by the client or the origin), error (the origin
// failed, a malformed stream).
enum class StreamProtocol : size_t { kH2, kGrpc, kCount };
inline constexpr std::array<std::string_view, static_cast<size_t>(StreamProtocol::kCount)> kStreamProtocolNames = {
    "h2", "grpc"};
enum class StreamOutcome : size_t { kAllowed, kBlocked, kReset, kError, kCount };
inline constexpr std::array<std::string_view, static_cast<size_t>(StreamOutcome::kCount)> kStreamOutcomeNames = {
    "allowed", "blocked", "reset", "error"};

// Why the proxy sent an HTTP/2 client GOAWAY: abuse limits (ENHANCE_YOUR_CALM), or a
// connection error the client made (PROTOCOL_ERROR and the like: kProtocolError).
enum class GoawayReason : size_t {
  kRapidReset, kContinuationFlood, kHeaderListTooLarge, kTooManyStreams, kControlFlood, kWindowUpdateFlood,
  kProtocolError, kCount
};
inline constexpr std::array<std::string_view, static_cast<size_t>(GoawayReason::kCount)> kGoawayReasonNames = {
    "rapid_reset", "continuation_flood", "header_list_too_large", "too_many_streams", "control_frame_flood",
    "window_update_flood", "protocol_error"};

template <typename E>
constexpr size_t Index(E e) {
  return static_cast<size_t>(e);
}

struct ProxyMetrics {
  using Counter = std::atomic<uint64_t>;
  // [mode][outcome], counted once per connection when it ends.
  std::array<std::array<Counter, Index(ConnectionOutcome::kCount)>, Index(ConnectionMode::kCount)> connections{};
  std::array<Counter, Index(UpstreamVerifyFailure::kCount)> upstream_verify_failures{};
  std::array<Counter, Index(HandshakeFailure::kCount)> handshake_failures{};
  Counter scans{0};             // messages scanned (URL, header block, body, response, raw stream)
  Counter scan_bytes{0};        // bytes fed to the engine
  Counter scan_nanoseconds{0};  // time spent in the engine (feed + finish), worker threads summed
  Counter fail_open{0};         // transactions forwarded unscanned because no engine was there
  Counter fail_closed{0};       // transactions refused because no engine was there
  Counter unrecordable_open{0};    // monitor: forwarded although the verdict could not be recorded (spool full)
  Counter unrecordable_closed{0};  // enforce: refused (503) because the verdict could not be recorded
  // WebSocket sessions inspected, their data messages and payload bytes by direction
  // ([0] client -> upstream, [1] upstream -> client), and messages blocked.
  Counter ws_sessions{0};
  std::array<Counter, 2> ws_messages{};
  std::array<Counter, 2> ws_bytes{};
  Counter ws_blocked{0};
  std::array<std::array<Counter, Index(StreamOutcome::kCount)>, Index(StreamProtocol::kCount)> streams{};
  std::array<Counter, Index(GoawayReason::kCount)> h2_goaways{};

  void CountConnection(ConnectionMode mode, ConnectionOutcome outcome) {
    connections[Index(mode)][Index(outcome)].fetch_add(1, std::memory_order_relaxed);
  }
};

}  // namespace egressguard::mitm
