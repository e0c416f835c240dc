#pragma once
// One client connection, from accept to close, on one worker thread. Internal to mitm/.
//
// The path: read the first request head in plaintext (CONNECT or an absolute-form
// http:// request) -> policy -> upstream TCP -> for CONNECT: peek the ClientHello ->
// policy again with the SNI -> splice (raw relay) or bump (verified upstream TLS,
// minted leaf, buffered server handshake) -> HTTP/1.1 transactions, each scanned and
// reported, or a raw scanned relay when the stream is not HTTP.
//
// Written as Asio coroutines: each step reads top to bottom; a Watchdog closes the
// sockets when the deadline armed before each step passes, which fails the pending
// operation and unwinds the coroutine.

#include <array>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ca/leaf_minter.h"
#include "dlp/engine.h"
#include "mitm/http1.h"
#include "mitm/proxy_shared.h"
#include "mitm/stream.h"
#include "mitm/write_ahead.h"

namespace egressguard::mitm {

namespace ws {
struct DeflateParams;
}

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(ProxyShared& shared, dlp::Scanner& scanner, tcp::socket socket,
             ListenerKind listener = ListenerKind::kExplicit);
  ~Connection();

  void Start();
  // Drain: closes the connection now if it is waiting between requests; an HTTP/2
  // connection is sent GOAWAY and closes once its streams are done.
  void CloseIfIdle();

 private:
  struct Transaction;
  class H2Host;  // h2_driver.cc: what an HTTP/2 relay asks of this connection

  asio::awaitable<void> Run();
  // With config.proxy_protocol: reads the PROXY v2 header; its source becomes the client.
  asio::awaitable<bool> ReadProxyHeader();
  // Looks up verdict.workload for client_ip_ (config.workloads).
  void MapWorkload();
  // A scan of the current engine_, timed and counted in shared_.metrics.
  dlp::MessageScanPtr OpenScan(const dlp::ContentHint& hint);
  asio::awaitable<void> RunWatchdog();
  void Arm(std::chrono::milliseconds timeout);
  void Abort();

  // Reads until the request parser reports a head (or an error / EOF). Returns false
  // when no head could be read; `error` says why ("" for a clean EOF).
  asio::awaitable<bool> ReadRequestHead(http1::Parser& parser, std::string& error);
  asio::awaitable<void> HandleConnect(const http1::MessageHead& head);
  // After the tunnel or redirect: peek the ClientHello, decide with its SNI, then
  // splice or bump (connecting first when a redirected connection has no upstream yet).
  asio::awaitable<void> DispatchTls(std::string peeked);
  // Transparent and SNI listeners (connection_redirect.cc): the destination comes from
  // the socket (original destination) or the ClientHello, not from a CONNECT.
  asio::awaitable<void> HandleRedirected();
  // Names host_ from the SNI on redirected connections; a non-empty result is a refusal.
  std::string TakeRedirectedDestination();
  asio::awaitable<bool> ConnectRedirected(bool splice);
  asio::awaitable<bool> ConnectUpstream(const std::string& host, uint16_t port, std::string& error);
  asio::awaitable<void> Bump(const std::string& peeked);
  asio::awaitable<void> AnswerBadUpstream(const std::string& detail);
  // Serves HTTP/1.1 transactions; `first` is a parser that already holds a head.
  asio::awaitable<void> HttpLoop(http1::Parser* first);
  // `resp`: the connection's response parser, between messages.
  asio::awaitable<bool> RelayResponse(Transaction& tx, http1::Parser& resp);
  asio::awaitable<void> RawRelay(bool scan_client_bytes, uint64_t already_out);
  // After a WebSocket 101 (websocket_relay.cc): every frame both ways through a
  // ws::FrameInspector; client messages scanned and held until decided, blocked ones
  // closed with 1008 before they reach the origin.
  asio::awaitable<void> WebSocketRelay(const ws::DeflateParams& params, const std::string& path);
  // After ALPN chose h2 on both legs (h2_driver.cc): an H2Relay between the two TLS
  // streams, each leg read and written by its own coroutine.
  asio::awaitable<void> Http2Relay();
  asio::awaitable<void> Pump(Stream& from, Stream& to, std::string initial, dlp::MessageScan* scan, uint64_t& counter);

  asio::awaitable<void> WriteClient(const std::string& data);
  asio::awaitable<void> LingerClient();
  // `extra_headers`: whole header lines, each ending in CRLF.
  asio::awaitable<void> Respond(int status, const std::string& reason_phrase, const std::string& why, bool json,
                                const std::string& extra_headers = "");
  void Report(v1::Verdict verdict);
  // Whether this transaction's verdict can be recorded (the sink has room). False only in
  // enforce mode (refuse it); monitor mode forwards it, counted as unrecorded.
  bool Recordable(bool enforce);
  // Submits `verdict` as this transaction's write-ahead record (WriteAhead) when the sink
  // keeps them; the verdict that ends the transaction completes it (record_.Complete).
  // False when the sink refused it in enforce mode: the transaction must not go on.
  bool WriteAheadRecord(v1::Verdict verdict, bool enforce);
  bool WriteAheadInto(WriteAhead& record, v1::Verdict verdict, bool enforce);  // an h2 stream's
  // A refused connection's verdict: mode "refuse", BLOCK, enforced, with `reason`.
  void ReportRefusal(std::string reason);
  v1::Verdict NewVerdict(const std::string& mode) const;
  // `text` as a record may show it: scanned with the current engine and every match
  // redacted; `url`: a request target (decoded for the scan, query values dropped).
  std::string RedactForRecord(std::string_view text, bool url) const;
  // The destination as verdicts and log lines name it (a value can be a subdomain label).
  const std::string& RecordedHost() const;

  ProxyShared& shared_;
  dlp::Scanner& scanner_;
  const ListenerKind listener_;
  std::optional<tcp::endpoint> original_dst_;  // transparent listeners
  uint64_t id_;
  std::string conn_id_;  // "<instance>-<n>": in every log line and verdict of this connection
  std::string client_address_;
  std::optional<std::array<uint8_t, 16>> client_ip_;
  std::string workload_;
  // For the metrics: what the last verdict said, counted once when the connection ends.
  std::string last_mode_;
  WriteAhead record_;  // the open transaction's write-ahead record (one at a time)
  ConnectionOutcome outcome_ = ConnectionOutcome::kNoRequest;
  bool timed_out_ = false;
  Stream client_;
  std::optional<Stream> upstream_;
  tcp::resolver resolver_;
  asio::steady_timer timer_;
  std::chrono::steady_clock::time_point deadline_;
  bool finished_ = false;
  bool idle_ = false;
  bool raw_overflow_ = false;  // a raw relay's undecided tail outgrew the hold limit
  std::function<void()> on_drain_;  // set while an HTTP/2 relay runs

  // Destination (CONNECT authority, or the forward request's host).
  std::string host_;
  uint16_t port_ = 0;
  std::string sni_;
  mutable std::string recorded_host_, recorded_host_key_;  // RecordedHost's cache
  std::vector<std::string> client_alpn_;  // the ClientHello's ALPN list
  std::string mode_ = "plain";
  bool fixed_upstream_ = true;     // CONNECT tunnel (origin-form targets) vs plain forward
  std::string upstream_authority_;  // for plain forward: the origin currently connected

  std::string client_buf_;    // client bytes read but not yet consumed
  std::string upstream_buf_;  // upstream bytes read but not yet consumed
  std::string header_block_;  // the request's header block as the engine scans it (storage reused)
  dlp::EnginePtr engine_;     // the engine this connection scans with
  ca::LeafPtr leaf_;
};

}  // namespace egressguard::mitm
