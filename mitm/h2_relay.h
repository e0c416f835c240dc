#pragma once
// HTTP/2 through the proxy, inspected per stream: one nghttp2 server session on the client
// leg, one client session on the origin leg, and per stream exactly what an HTTP/1.1
// transaction gets (authority and method policy, the decoded :path, the header block and
// the body through the DLP engine, held until decided in enforce mode, one verdict).
// Internal to mitm/.
//
// Sans I/O, like nghttp2 itself: bytes in (RecvClient/RecvUpstream), frames out
// (PullClient/PullUpstream). The connection (mitm/h2_driver.cc) owns the sockets and
// drives it from its worker's io_context; the fuzz target drives it from memory.
//
// Flow control is the backpressure: the proxy gives window back (WINDOW_UPDATE) for bytes
// that left toward the origin, and for bytes it holds until decided up to the hold limit
// per stream and proxy.h2.max_held_bytes per connection; past those the client waits. So
// per connection the proxy buffers at most the budget plus the windows it advertised (1
// MiB per stream, 16 MiB in all). A stream the budget (not its own hold) stops is failed
// closed (h2_hold_budget_exceeded) rather than left waiting on streams that may wait on it.
//
// gRPC (content-type application/grpc*): each length-prefixed message is a scan of its
// own (decompressed per grpc-encoding), held until decided and then forwarded, so client
// and bidi streaming calls are enforced message by message. A blocked call is answered
// the gRPC way: HTTP 200, grpc-status 7 (PERMISSION_DENIED), grpc-message naming the rules.

#include <nghttp2/nghttp2.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "dlp/engine.h"
#include "egressguard/v1/verdict.pb.h"
#include "mitm/proxy_config.h"
#include "mitm/proxy_metrics.h"
#include "mitm/write_ahead.h"

namespace egressguard::mitm {

class H2Relay {
 public:
  // What the relay asks of its connection.
  class Host {
   public:
    virtual ~Host() = default;
    // A stream starts: takes the current engine. False: there is none.
    virtual bool EngineReady() = 0;
    virtual dlp::MessageScanPtr OpenScan(const dlp::ContentHint& hint) = 0;
    virtual bool MethodAllowed(std::string_view method) = 0;
    // Whether a request for `authority` belongs on this connection's origin (a client may
    // coalesce other names onto one h2 connection; those get 421 and a connection of their own).
    virtual bool SameOrigin(std::string_view authority) = 0;
    virtual v1::Verdict NewVerdict() = 0;
    virtual void Report(v1::Verdict verdict) = 0;
    virtual void CountStream(StreamProtocol protocol, StreamOutcome outcome) = 0;
    virtual void CountGoaway(GoawayReason reason) = 0;
    // Whether the stream's verdict can be recorded; false: refuse it (enforce mode).
    virtual bool Recordable(bool enforce) = 0;
    // Submits `verdict` as the stream's write-ahead record (mitm/write_ahead.h), kept in
    // `record` to be completed by the stream's verdict. False: refused in enforce mode.
    virtual bool OpenRecord(WriteAhead& record, v1::Verdict verdict, bool enforce) {
      (void)record, (void)verdict, (void)enforce;
      return true;  // a host without a write-ahead sink
    }
  };

  struct Options {
    bool enforce = false;
    bool fail_open = false;       // no engine: forward unscanned (else refuse)
    bool scan_responses = false;  // response bodies reported, never blocked
    uint64_t hold_limit = 16ull << 20;
    H2Limits limits;
  };

  H2Relay(Host& host, const Options& options);
  ~H2Relay();
  H2Relay(const H2Relay&) = delete;
  H2Relay& operator=(const H2Relay&) = delete;

  // Creates both sessions and queues our SETTINGS on each leg. False: out of memory.
  bool Start();
  // Bytes read from the client / the origin. False: that leg's session failed (a protocol
  // error or abuse); what it queued (GOAWAY) may still be pulled and sent, then close.
  bool RecvClient(std::string_view bytes);
  bool RecvUpstream(std::string_view bytes);
  // The client's socket ended: streams not yet reported are, and the origin's are reset.
  void ClientGone();
  // The origin's socket ended: streams waiting for it are answered 502 (or reset when
  // their response had begun), and the client is told to go (GOAWAY) once they are done.
  void UpstreamGone();
  // The proxy is shutting down: the client is told (GOAWAY, NO_ERROR) to open no new
  // streams; the session ends once the current ones are done.
  void Drain();
  // Appends the frames to send on a leg (about `max` bytes at most; more may follow).
  void PullClient(std::string* out, size_t max);
  void PullUpstream(std::string* out, size_t max);
  // The client session is over: nothing more to read or send.
  bool client_done() const;
  bool upstream_done() const;
  // The connection ends: every stream not yet reported is, with `reason`.
  void Close(std::string_view reason);

  size_t open_streams() const { return streams_.size(); }
  // Set when the client was sent GOAWAY for abuse.
  const std::string& abuse() const { return abuse_; }

 private:
  struct Exchange;
  class TokenBucket {
   public:
    explicit TokenBucket(double rate) : rate_(rate), burst_(2 * rate), tokens_(2 * rate) {}
    bool Take();

   private:
    double rate_, burst_, tokens_;
    std::chrono::steady_clock::time_point last_ = std::chrono::steady_clock::now();
  };

  // nghttp2 callbacks, for both sessions (told apart by the session pointer).
  static int OnBeginFrame(nghttp2_session* s, const nghttp2_frame_hd* hd, void* self);
  static int OnBeginHeaders(nghttp2_session* s, const nghttp2_frame* frame, void* self);
  static int OnHeader(nghttp2_session* s, const nghttp2_frame* frame, const uint8_t* name, size_t namelen,
                      const uint8_t* value, size_t valuelen, uint8_t flags, void* self);
  static int OnFrameRecv(nghttp2_session* s, const nghttp2_frame* frame, void* self);
  static int OnDataChunk(nghttp2_session* s, uint8_t flags, int32_t stream_id, const uint8_t* data, size_t len,
                         void* self);
  static int OnFrameSend(nghttp2_session* s, const nghttp2_frame* frame, void* self);
  static int OnStreamClose(nghttp2_session* s, int32_t stream_id, uint32_t error_code, void* self);
  static ssize_t ReadToUpstream(nghttp2_session* s, int32_t stream_id, uint8_t* buf, size_t length,
                                uint32_t* data_flags, nghttp2_data_source* source, void* self);
  static ssize_t ReadToClient(nghttp2_session* s, int32_t stream_id, uint8_t* buf, size_t length,
                              uint32_t* data_flags, nghttp2_data_source* source, void* self);

  // Client leg.
  int CheckFrameRate(const nghttp2_frame_hd& hd);
  int Abuse(GoawayReason reason);
  void OnRequestHead(Exchange& x);
  void OnRequestData(Exchange& x, std::string_view data);
  void OnRequestEnd(Exchange& x);
  void FeedGrpc(Exchange& x, std::string_view data);
  // Sends released request bytes on (opening the upstream stream on the first).
  void Forward(Exchange& x);
  bool OpenUpstream(Exchange& x);
  // Enforce: the stream is stopped; the client answered (403, or grpc-status 7).
  void Block(Exchange& x, std::string condition);
  // The proxy answers the stream itself (a refusal, 502, 421).
  void Answer(Exchange& x, int status, std::string_view phrase, std::string_view why);
  void AnswerGrpc(Exchange& x, std::string_view message);
  void DropToClient(Exchange& x);
  // Origin leg.
  void OnResponseHeaders(Exchange& x, bool end_stream);
  void OnUpstreamClosed(Exchange& x, uint32_t error_code);
  // `extra`: why the stream ended short (client_reset, upstream_failed, ...), when it did.
  void Report(Exchange& x, std::string_view extra = {});
  v1::Verdict BuildVerdict(Exchange& x, std::string_view extra);
  void FinishBodyScans(Exchange& x);
  void ReleaseGrpc(Exchange& x, bool whole);
  void SubmitToClient(Exchange& x, const std::vector<std::pair<std::string, std::string>>& fields, bool end_stream);
  // After the stream's buffered bytes or its unreturned window changed: gives window back
  // for what left, and for held bytes within the hold limit and the connection budget.
  void Rebalance(Exchange& x);
  uint64_t Buffered(const Exchange& x) const;
  Exchange* ByClientId(int32_t id);
  Exchange* ByUpstreamId(int32_t id);

  Host& host_;
  const Options options_;
  nghttp2_session* client_leg_ = nullptr;  // server session: we are the client's server
  nghttp2_session* origin_leg_ = nullptr;  // client session: we are the origin's client
  std::map<int32_t, std::unique_ptr<Exchange>> streams_;  // by client stream id
  std::map<int32_t, int32_t> upstream_ids_;                // origin stream id -> client stream id
  int32_t highest_client_id_ = 0;
  uint32_t continuations_ = 0;
  uint64_t data_frames_sent_ = 0;  // to the client: WINDOW_UPDATEs are judged against them
  uint64_t window_updates_ = 0;    // from the client
  TokenBucket resets_;
  TokenBucket control_;
  std::string abuse_;
  uint64_t held_total_ = 0;  // bytes buffered across streams whose window was given back
  bool upstream_gone_ = false;
  bool goaway_sent_ = false;
};

}  // namespace egressguard::mitm
