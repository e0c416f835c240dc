#include "mitm/h2_relay.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "mitm/body_relay.h"
#include "mitm/grpc_frames.h"
#include "mitm/hold_buffer.h"
#include "mitm/http1.h"
#include "mitm/verdict_text.h"

namespace egressguard::mitm {
namespace {

using Fields = std::vector<std::pair<std::string, std::string>>;

// A verdict carries at most this many findings; a long gRPC stream of messages with
// findings (monitor mode) would otherwise grow one without bound.
constexpr size_t kMaxFindings = 1000;
// The client's windows: what it may send beyond what the proxy has taken in. Held bytes
// are taken in (their window given back) up to the hold limit per stream, so the windows
// need not cover the hold; they only bound what waits unread.
constexpr uint32_t kStreamWindow = 1 << 20;
constexpr int32_t kConnectionWindow = 16 << 20;

// RFC 9113 6.5.2's size of a field: name, value and 32 bytes of overhead.
size_t FieldSize(size_t name, size_t value) { return name + value + 32; }

const std::string* Find(const Fields& fields, std::string_view name) {
  for (const auto& [n, v] : fields) {
    if (n == name) return &v;
  }
  return nullptr;
}

nghttp2_nv Nv(const std::string& name, const std::string& value) {
  return nghttp2_nv{reinterpret_cast<uint8_t*>(const_cast<char*>(name.data())),
                    reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())), name.size(), value.size(),
                    NGHTTP2_NV_FLAG_NONE};
}

std::vector<nghttp2_nv> NvList(const Fields& fields) {
  std::vector<nghttp2_nv> nva;
  nva.reserve(fields.size());
  for (const auto& [n, v] : fields) nva.push_back(Nv(n, v));
  return nva;
}

// gRPC's grpc-message is percent-encoded (PROTOCOL-HTTP2.md): bytes outside printable
// ASCII, and '%'.
std::string GrpcPercentEncode(std::string_view s) {
  static const char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (c < 0x20 || c > 0x7e || c == '%') {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

bool StartsWith(std::string_view s, std::string_view prefix) { return s.substr(0, prefix.size()) == prefix; }

// Adds one message's (or part's) result to the stream's aggregate: the strongest action,
// its deciding reasons, and the findings (bounded).
void Merge(dlp::MessageResult& into, dlp::MessageResult&& r) {
  if (r.action > into.action) {
    into.action = r.action;
    into.reason = r.reason;
  } else if (r.action == into.action && !r.reason.empty() && into.reason.find(r.reason) == std::string::npos) {
    if (!into.reason.empty()) into.reason += ',';
    into.reason += r.reason;
  }
  into.bytes_scanned += r.bytes_scanned;
  for (auto& f : r.findings) {
    if (into.findings.size() >= kMaxFindings) break;
    into.findings.push_back(std::move(f));
  }
}

}  // namespace

struct H2Relay::Exchange {
  int32_t id = 0;
  int32_t up_id = 0;     // the origin's stream, 0 before it is opened
  bool up_open = false;  // opened and not closed or reset
  // Request head.
  Fields request_fields;  // as received (pseudo-headers included), until the head is complete
  size_t header_bytes = 0;           // of the client's header block being received
  size_t response_header_bytes = 0;  // of the origin's
  std::string method, scheme, authority, path, content_type, content_encoding, grpc_encoding;
  Fields headers;  // regular fields, forwarded
  std::string record_path;  // :path as the verdict records it (RecordedPath)
  bool grpc = false;
  bool scanning = false;   // an engine scans this stream
  bool fail_open = false;  // no engine, forwarded unscanned (options.fail_open)
  bool enforce = false;   // held until decided
  std::vector<dlp::MessageResult> results;  // URL, header block, body (one aggregate for gRPC)
  // Request body.
  dlp::MessageScanPtr body_scan;
  std::unique_ptr<BodyRelay> body;
  grpc::MessageReader grpc_reader;
  std::string grpc_prefix;  // the held message's prefix, sent before its first bytes
  bool request_ended = false;
  std::string frame_data;    // the DATA frame being received, fed whole when it ends
  HoldBuffer to_upstream;    // released, not yet taken by the origin leg
  bool upstream_eof = false; // the request's end is queued behind to_upstream
  bool up_deferred = false;
  uint64_t window_owed = 0;  // client DATA bytes not yet given back as window
  uint64_t granted = 0;      // bytes buffered whose window was given back (counted in held_total_)
  uint64_t messages_out = 0;
  // Response.
  Fields response_fields;
  Fields trailers;
  bool response_started = false;  // HEADERS submitted to the client
  bool response_ended = false;    // nothing more will be queued to the client
  HoldBuffer to_client;
  bool client_deferred = false;
  dlp::MessageScanPtr response_scan;
  // Outcome.
  bool local = false;    // answered by the proxy; the origin's answer (if any) is dropped
  bool blocked = false;
  bool reported = false;
  std::string condition;  // a refusal by the proxy itself (not a rule)
  uint64_t bytes_out = 0, bytes_in = 0, bytes_out_before_block = 0;
  WriteAhead record;  // written before the origin sees the stream, completed by Report
  uint32_t response_status = 0;  // the origin's final :status, once relayed
};

bool H2Relay::TokenBucket::Take() {
  auto now = std::chrono::steady_clock::now();
  tokens_ = std::min(burst_, tokens_ + rate_ * std::chrono::duration<double>(now - last_).count());
  last_ = now;
  if (tokens_ < 1) return false;
  tokens_ -= 1;
  return true;
}

H2Relay::H2Relay(Host& host, const Options& options)
    : host_(host),
      options_(options),
      resets_(options.limits.max_resets_per_second),
      control_(options.limits.max_control_frames_per_second) {}

H2Relay::~H2Relay() {
  nghttp2_session_del(client_leg_);
  nghttp2_session_del(origin_leg_);
}

bool H2Relay::Start() {
  nghttp2_session_callbacks* cbs = nullptr;
  if (nghttp2_session_callbacks_new(&cbs) != 0) return false;
  nghttp2_session_callbacks_set_on_begin_frame_callback(cbs, OnBeginFrame);
  nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, OnBeginHeaders);
  nghttp2_session_callbacks_set_on_header_callback(cbs, OnHeader);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, OnFrameRecv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, OnDataChunk);
  nghttp2_session_callbacks_set_on_frame_send_callback(cbs, OnFrameSend);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs, OnStreamClose);
  nghttp2_option* opt = nullptr;
  if (nghttp2_option_new(&opt) != 0) {
    nghttp2_session_callbacks_del(cbs);
    return false;
  }
  // Window updates are ours: bytes are given back only once they left toward the other leg.
  nghttp2_option_set_no_auto_window_update(opt, 1);
  // nghttp2's own flood guards stay on behind ours (ours act first, and name the reason).
  const auto& lim = options_.limits;
  nghttp2_option_set_max_continuations(opt, lim.max_continuation_frames + 1);
  nghttp2_option_set_stream_reset_rate_limit(opt, 4ull * lim.max_resets_per_second + 16, 4ull * lim.max_resets_per_second + 16);
  int rv = nghttp2_session_server_new2(&client_leg_, cbs, this, opt);
  if (rv == 0) rv = nghttp2_session_client_new2(&origin_leg_, cbs, this, opt);
  nghttp2_option_del(opt);
  nghttp2_session_callbacks_del(cbs);
  if (rv != 0) return false;

  const nghttp2_settings_entry client_settings[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, lim.max_concurrent_streams},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, kStreamWindow},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, static_cast<uint32_t>(lim.max_header_list_bytes)},
      // SETTINGS_ENABLE_CONNECT_PROTOCOL is never sent: no WebSocket over h2 (RFC 8441) to miss.
  };
  const nghttp2_settings_entry origin_settings[] = {
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, lim.max_concurrent_streams},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1u << 20},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, static_cast<uint32_t>(lim.max_header_list_bytes)},
  };
  if (nghttp2_submit_settings(client_leg_, NGHTTP2_FLAG_NONE, client_settings, std::size(client_settings)) != 0 ||
      nghttp2_submit_settings(origin_leg_, NGHTTP2_FLAG_NONE, origin_settings, std::size(origin_settings)) != 0) {
    return false;
  }
  nghttp2_session_set_local_window_size(client_leg_, NGHTTP2_FLAG_NONE, 0, kConnectionWindow);
  nghttp2_session_set_local_window_size(origin_leg_, NGHTTP2_FLAG_NONE, 0, 4 << 20);
  return true;
}

// --- I/O -----------------------------------------------------------------------------

bool H2Relay::RecvClient(std::string_view bytes) {
  ssize_t rv = nghttp2_session_mem_recv(client_leg_, reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  if (rv >= 0) return true;
  if (abuse_.empty()) {
    // nghttp2 ended the session itself: a bad preface, its own flood guard.
    GoawayReason reason = rv == NGHTTP2_ERR_FLOODED ? GoawayReason::kControlFlood : GoawayReason::kProtocolError;
    host_.CountGoaway(reason);
    abuse_ = std::string(kGoawayReasonNames[Index(reason)]);
    auto v = host_.NewVerdict();
    v.set_protocol("h2");
    v.set_action(rules::v1::BLOCK);
    v.set_reason(reason == GoawayReason::kProtocolError ? std::string("malformed_http2: ") + nghttp2_strerror(static_cast<int>(rv))
                                                        : "h2_abuse: " + abuse_);
    v.set_enforced(true);
    host_.Report(std::move(v));
    nghttp2_session_terminate_session(client_leg_,
                                      reason == GoawayReason::kProtocolError ? NGHTTP2_PROTOCOL_ERROR : NGHTTP2_ENHANCE_YOUR_CALM);
  }
  return false;
}

bool H2Relay::RecvUpstream(std::string_view bytes) {
  ssize_t rv = nghttp2_session_mem_recv(origin_leg_, reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  if (rv >= 0) return true;
  UpstreamGone();
  return false;
}

void H2Relay::PullClient(std::string* out, size_t max) {
  while (out->size() < max) {
    const uint8_t* data = nullptr;
    ssize_t n = nghttp2_session_mem_send(client_leg_, &data);
    if (n <= 0) break;
    out->append(reinterpret_cast<const char*>(data), static_cast<size_t>(n));
  }
}

void H2Relay::PullUpstream(std::string* out, size_t max) {
  if (upstream_gone_) return;
  while (out->size() < max) {
    const uint8_t* data = nullptr;
    ssize_t n = nghttp2_session_mem_send(origin_leg_, &data);
    if (n <= 0) break;
    out->append(reinterpret_cast<const char*>(data), static_cast<size_t>(n));
  }
}

bool H2Relay::client_done() const {
  return nghttp2_session_want_read(client_leg_) == 0 && nghttp2_session_want_write(client_leg_) == 0;
}

bool H2Relay::upstream_done() const {
  return upstream_gone_ ||
         (nghttp2_session_want_read(origin_leg_) == 0 && nghttp2_session_want_write(origin_leg_) == 0);
}

void H2Relay::ClientGone() {
  for (auto& [id, x] : streams_) {
    if (x->up_open) nghttp2_submit_rst_stream(origin_leg_, NGHTTP2_FLAG_NONE, x->up_id, NGHTTP2_CANCEL);
    Report(*x, "client_aborted");
  }
}

void H2Relay::UpstreamGone() {
  if (upstream_gone_) return;
  upstream_gone_ = true;
  for (auto& [id, x] : streams_) {
    if (x->local || x->response_ended) continue;
    if (x->up_id != 0 || x->request_ended) {
      x->up_open = false;
      OnUpstreamClosed(*x, NGHTTP2_INTERNAL_ERROR);
    }
  }
  upstream_ids_.clear();
  Drain();
}

void H2Relay::Drain() {
  if (goaway_sent_) return;
  goaway_sent_ = true;
  nghttp2_submit_goaway(client_leg_, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(client_leg_),
                        NGHTTP2_NO_ERROR, nullptr, 0);
}

void H2Relay::Close(std::string_view reason) {
  for (auto& [id, x] : streams_) Report(*x, reason);
}

H2Relay::Exchange* H2Relay::ByClientId(int32_t id) {
  auto it = streams_.find(id);
  return it == streams_.end() ? nullptr : it->second.get();
}

H2Relay::Exchange* H2Relay::ByUpstreamId(int32_t id) {
  auto it = upstream_ids_.find(id);
  return it == upstream_ids_.end() ? nullptr : ByClientId(it->second);
}

// --- callbacks -----------------------------------------------------------------------

int H2Relay::OnBeginFrame(nghttp2_session* s, const nghttp2_frame_hd* hd, void* self) {
  auto* r = static_cast<H2Relay*>(self);
  return s == r->client_leg_ ? r->CheckFrameRate(*hd) : 0;
}

int H2Relay::CheckFrameRate(const nghttp2_frame_hd& hd) {
  if (!abuse_.empty()) return NGHTTP2_ERR_CALLBACK_FAILURE;
  const auto& lim = options_.limits;
  switch (hd.type) {
    case NGHTTP2_HEADERS:
      continuations_ = 0;
      if ((hd.stream_id & 1) == 1 && hd.stream_id > highest_client_id_ && streams_.size() >= lim.max_concurrent_streams) {
        return Abuse(GoawayReason::kTooManyStreams);
      }
      break;
    case NGHTTP2_CONTINUATION:
      if (++continuations_ > lim.max_continuation_frames) return Abuse(GoawayReason::kContinuationFlood);
      break;
    case NGHTTP2_RST_STREAM: {
      // Rapid reset (CVE-2023-44487) cancels streams the proxy is still working on; a
      // reset after the answer was complete costs nothing and is not counted.
      const Exchange* x = ByClientId(hd.stream_id);
      if ((x == nullptr || !x->response_ended) && !resets_.Take()) return Abuse(GoawayReason::kRapidReset);
      break;
    }
    case NGHTTP2_WINDOW_UPDATE:
      // A client reading a large answer sends many; judged against the DATA frames sent it
      // (as Envoy does), plus a floor.
      if (++window_updates_ > 10 * data_frames_sent_ + 2ull * lim.max_control_frames_per_second) {
        return Abuse(GoawayReason::kWindowUpdateFlood);
      }
      break;
    case NGHTTP2_PING:
    case NGHTTP2_SETTINGS:
    case NGHTTP2_PRIORITY:
      if (!control_.Take()) return Abuse(GoawayReason::kControlFlood);
      break;
    case NGHTTP2_DATA:
      if (hd.length == 0 && (hd.flags & NGHTTP2_FLAG_END_STREAM) == 0 && !control_.Take()) {
        return Abuse(GoawayReason::kControlFlood);
      }
      break;
    default:
      break;
  }
  return 0;
}

int H2Relay::Abuse(GoawayReason reason) {
  if (abuse_.empty()) {
    abuse_ = std::string(kGoawayReasonNames[Index(reason)]);
    nghttp2_session_terminate_session(client_leg_, NGHTTP2_ENHANCE_YOUR_CALM);
    host_.CountGoaway(reason);
    auto v = host_.NewVerdict();
    v.set_protocol("h2");
    v.set_action(rules::v1::BLOCK);
    v.set_reason("h2_abuse: " + abuse_);
    v.set_enforced(true);
    host_.Report(std::move(v));
  }
  return NGHTTP2_ERR_CALLBACK_FAILURE;
}

int H2Relay::OnBeginHeaders(nghttp2_session* s, const nghttp2_frame* frame, void* self) {
  auto* r = static_cast<H2Relay*>(self);
  if (s != r->client_leg_ || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
  auto x = std::make_unique<Exchange>();
  x->id = frame->hd.stream_id;
  r->highest_client_id_ = std::max(r->highest_client_id_, x->id);
  r->streams_[x->id] = std::move(x);
  return 0;
}

int H2Relay::OnHeader(nghttp2_session* s, const nghttp2_frame* frame, const uint8_t* name, size_t namelen,
                      const uint8_t* value, size_t valuelen, uint8_t, void* self) {
  auto* r = static_cast<H2Relay*>(self);
  const bool from_client = s == r->client_leg_;
  Exchange* x = from_client ? r->ByClientId(frame->hd.stream_id) : r->ByUpstreamId(frame->hd.stream_id);
  if (x == nullptr) return 0;
  size_t& total = from_client ? x->header_bytes : x->response_header_bytes;
  total += FieldSize(namelen, valuelen);
  if (total > r->options_.limits.max_header_list_bytes) {
    // An HPACK bomb decodes a few bytes into a huge list: stopped before it is kept.
    if (from_client) return r->Abuse(GoawayReason::kHeaderListTooLarge);
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;  // the origin's stream is reset; the client gets 502
  }
  Fields& into = from_client ? x->request_fields : x->response_fields;
  into.emplace_back(std::string(reinterpret_cast<const char*>(name), namelen),
                    std::string(reinterpret_cast<const char*>(value), valuelen));
  return 0;
}

int H2Relay::OnFrameRecv(nghttp2_session* s, const nghttp2_frame* frame, void* self) {
  auto* r = static_cast<H2Relay*>(self);
  const bool end_stream = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
  if (s == r->client_leg_) {
    Exchange* x = r->ByClientId(frame->hd.stream_id);
    if (x == nullptr) return 0;
    if (frame->hd.type == NGHTTP2_DATA && !x->frame_data.empty()) {
      r->OnRequestData(*x, x->frame_data);
      x->frame_data.clear();  // its storage serves the next frame
      r->Rebalance(*x);
    }
    if (frame->hd.type == NGHTTP2_HEADERS) {
      x->header_bytes = 0;
      if (frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
        x->request_ended = end_stream;
        r->OnRequestHead(*x);
      }
      // Request trailers are not forwarded (as chunked trailers are not): only their end counts.
      x->request_fields.clear();
    }
    if ((frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA) && end_stream) {
      x->request_ended = true;
      r->OnRequestEnd(*x);
    }
    return 0;
  }
  if (frame->hd.type == NGHTTP2_GOAWAY) {
    // The origin will take no new streams: neither will we, once the current ones are done.
    r->Drain();
    return 0;
  }
  Exchange* x = r->ByUpstreamId(frame->hd.stream_id);
  if (x == nullptr) return 0;
  if (frame->hd.type == NGHTTP2_HEADERS) {
    x->response_header_bytes = 0;
    r->OnResponseHeaders(*x, end_stream);
    x->response_fields.clear();
  } else if (frame->hd.type == NGHTTP2_DATA && end_stream && !x->local) {
    x->response_ended = true;
    if (x->response_scan) {
      auto result = x->response_scan->Finish();
      // Responses are reported, never blocked: their findings are alerts at most.
      if (result.action == rules::v1::BLOCK) result.action = rules::v1::ALERT;
      x->results.push_back(std::move(result));
      x->response_scan.reset();
    }
    if (x->client_deferred) {
      x->client_deferred = false;
      nghttp2_session_resume_data(r->client_leg_, x->id);
    }
  }
  return 0;
}

int H2Relay::OnDataChunk(nghttp2_session* s, uint8_t, int32_t stream_id, const uint8_t* data, size_t len, void* self) {
  auto* r = static_cast<H2Relay*>(self);
  std::string_view bytes(reinterpret_cast<const char*>(data), len);
  if (s == r->client_leg_) {
    Exchange* x = r->ByClientId(stream_id);
    if (x == nullptr) {
      nghttp2_session_consume(s, stream_id, len);
      return 0;
    }
    // Fed per frame, not per piece: a frame straddles TLS records, and a scan fed in
    // halves costs more than one fed whole.
    x->window_owed += len;
    x->frame_data.append(bytes);
    return 0;
  }
  Exchange* x = r->ByUpstreamId(stream_id);
  if (x == nullptr || x->local) {
    nghttp2_session_consume(s, stream_id, len);  // an answer nobody waits for any more
    return 0;
  }
  x->bytes_in += len;
  if (x->response_scan) x->response_scan->Feed(bytes);
  x->to_client.Append(bytes);
  if (x->client_deferred) {
    x->client_deferred = false;
    nghttp2_session_resume_data(r->client_leg_, x->id);
  }
  return 0;
}

int H2Relay::OnFrameSend(nghttp2_session* s, const nghttp2_frame* frame, void* self) {
  auto* r = static_cast<H2Relay*>(self);
  if (s == r->client_leg_ && frame->hd.type == NGHTTP2_DATA) ++r->data_frames_sent_;
  return 0;
}

int H2Relay::OnStreamClose(nghttp2_session* s, int32_t stream_id, uint32_t error_code, void* self) {
  auto* r = static_cast<H2Relay*>(self);
  if (s == r->client_leg_) {
    auto it = r->streams_.find(stream_id);
    if (it == r->streams_.end()) return 0;
    Exchange& x = *it->second;
    if (x.up_open) {
      // The client reset (or the stream failed) before the origin finished: stop it there too.
      nghttp2_submit_rst_stream(r->origin_leg_, NGHTTP2_FLAG_NONE, x.up_id, NGHTTP2_CANCEL);
    }
    if (x.up_id != 0) r->upstream_ids_.erase(x.up_id);
    r->Report(x, error_code == NGHTTP2_NO_ERROR && x.response_ended ? "" : "client_reset");
    r->held_total_ -= x.granted;
    r->streams_.erase(it);
    return 0;
  }
  Exchange* x = r->ByUpstreamId(stream_id);
  r->upstream_ids_.erase(stream_id);
  if (x == nullptr) return 0;
  x->up_open = false;
  if (!x->response_ended && !x->local) r->OnUpstreamClosed(*x, error_code);
  return 0;
}

// --- the request ---------------------------------------------------------------------

void H2Relay::OnRequestHead(Exchange& x) {
  for (auto& [name, value] : x.request_fields) {
    if (name.empty()) continue;
    if (name[0] == ':') {
      if (name == ":method") x.method = value;
      else if (name == ":scheme") x.scheme = value;
      else if (name == ":authority") x.authority = value;
      else if (name == ":path") x.path = value;
      continue;  // nghttp2 refused unknown pseudo-headers already
    }
    if (name == "content-type") x.content_type = value;
    if (name == "content-encoding") x.content_encoding = x.content_encoding.empty() ? value : x.content_encoding + ", " + value;
    if (name == "grpc-encoding") x.grpc_encoding = value;
    if (name == "host" && x.authority.empty()) x.authority = value;
    x.headers.emplace_back(std::move(name), std::move(value));
  }
  x.grpc = StartsWith(x.content_type, "application/grpc");
  x.scanning = host_.EngineReady();
  x.fail_open = !x.scanning;
  if (x.scanning) {
    // The decoded path is scanned first: even a refusal's record shows it redacted.
    dlp::ContentHint url_hint;
    url_hint.is_url = true;
    auto url_scan = host_.OpenScan(url_hint);
    url_scan->Feed(http1::PercentDecode(x.path));
    x.results.push_back(url_scan->Finish());
    x.record_path = RecordedPath(x.path, &x.results.back());
  } else {
    x.record_path = StripQueryValues(x.path);
  }
  if (x.method == "CONNECT") {
    // Extended CONNECT is never offered; a plain one would tunnel what the proxy cannot read.
    x.condition = "CONNECT inside a tunnel";
    Answer(x, 405, "Method Not Allowed", x.condition);
    Report(x);
    return;
  }
  if (!host_.SameOrigin(x.authority)) {
    // RFC 9113 9.1.1: the client retries on a connection of its own, judged by the policy.
    x.condition = "misdirected_request";
    Answer(x, 421, "Misdirected Request", "this connection serves another origin");
    Report(x);
    return;
  }
  if (!host_.MethodAllowed(x.method)) {
    x.condition = "method_not_allowed";
    Block(x, x.condition);
    return;
  }
  if (!x.scanning && !options_.fail_open) {
    x.condition = "engine_unavailable";
    Block(x, x.condition);
    return;
  }
  x.enforce = options_.enforce && x.scanning;
  if (x.scanning) {
    // The header block, like the path, is scanned before anything is sent on.
    std::string block;
    block.append(":authority: ").append(x.authority).append("\r\n");
    for (const auto& [n, v] : x.headers) block.append(n).append(": ").append(v).append("\r\n");
    auto header_scan = host_.OpenScan(dlp::ContentHint{});
    header_scan->Feed(block);
    x.results.push_back(header_scan->Finish());
    x.results.emplace_back();  // the body's aggregate (stays ALLOW and empty without one)
    if (x.enforce && Strongest(x.results) == rules::v1::BLOCK) {
      Block(x, "");
      return;
    }
  }
  // Nothing leaves without its record: the spool must have room, and takes the stream's
  // write-ahead record before the origin sees any of it.
  if (!host_.Recordable(options_.enforce) || !host_.OpenRecord(x.record, BuildVerdict(x, ""), options_.enforce)) {
    x.condition = "verdict_unrecordable";
    x.local = true;
    if (x.grpc) {
      x.response_ended = true;
      SubmitToClient(x, {{":status", "200"}, {"content-type", "application/grpc"}, {"grpc-status", "14"},
                         {"grpc-message", "egressguard: the verdict spool is full"}}, true);
    } else {
      Answer(x, 503, "Service Unavailable", "verdict_unrecordable: the verdict spool is full");
    }
    Report(x);
    return;
  }
  if (x.scanning) {
    if (!x.grpc && !x.request_ended) {
      dlp::ContentHint body_hint;
      body_hint.content_type = x.content_type;
      body_hint.content_encoding = x.content_encoding;
      x.body_scan = host_.OpenScan(body_hint);
    }
  }
  if (!x.grpc) x.body = std::make_unique<BodyRelay>(BodyRelay::Options{false, x.enforce, options_.hold_limit}, x.body_scan.get());
  if (!x.request_ended) {
    auto* expect = Find(x.headers, "expect");
    if (expect != nullptr && *expect == "100-continue") {
      // As for HTTP/1.1, the proxy invites the body itself: it reads (and holds) it before
      // the origin sees any of it.
      const std::string status = ":status", code = "100";
      nghttp2_nv nv = Nv(status, code);
      nghttp2_submit_headers(client_leg_, NGHTTP2_FLAG_NONE, x.id, nullptr, &nv, 1, nullptr);
    }
  }
  // Monitor mode sends the head on at once; enforce mode with the first decided bytes.
  if (!x.enforce && !x.request_ended) OpenUpstream(x);
}

void H2Relay::OnRequestData(Exchange& x, std::string_view data) {
  if (x.local || (x.body == nullptr && !x.grpc)) {
    return;  // answered already: read and dropped (Rebalance gives the window back)
  }
  if (x.grpc) {
    FeedGrpc(x, data);
    return;
  }
  x.body->Add(data);
  if (x.enforce && x.body_scan->action_so_far() == rules::v1::BLOCK) {
    Block(x, "");
    return;
  }
  x.body->TakeReady(x.to_upstream.tail());  // released bytes queue for the origin, copied once
  if (x.body->overflowed()) {
    Block(x, "undecided_overflow");
    return;
  }
  Forward(x);
}

void H2Relay::FeedGrpc(Exchange& x, std::string_view data) {
  for (;;) {
    auto e = x.grpc_reader.Next(data);
    data.remove_prefix(e.consumed);
    using Kind = grpc::MessageReader::Event::Kind;
    switch (e.kind) {
      case Kind::kNeedMore:
        if (data.empty()) {
          Forward(x);
          return;
        }
        break;
      case Kind::kError:
        // Not gRPC framing under a gRPC content type: nothing here can be read as messages.
        x.condition = "malformed_grpc: bad message flag";
        Block(x, x.condition);
        return;
      case Kind::kBegin: {
        dlp::ContentHint hint;
        hint.content_type = x.content_type;
        // A compressed message is read through its grpc-encoding; one without (or an
        // encoding no decoder knows) is reported undecodable by the engine.
        if (e.compressed) hint.content_encoding = x.grpc_encoding.empty() ? "unknown" : x.grpc_encoding;
        x.body_scan = x.scanning ? host_.OpenScan(hint) : nullptr;
        x.body = std::make_unique<BodyRelay>(BodyRelay::Options{false, x.enforce, options_.hold_limit}, x.body_scan.get());
        x.grpc_prefix.assign(e.prefix);
        break;
      }
      case Kind::kPayload:
        x.body->Add(e.payload);
        if (x.enforce && x.body_scan->action_so_far() == rules::v1::BLOCK) {
          Block(x, "");
          return;
        }
        ReleaseGrpc(x, false);
        if (x.body->overflowed()) {
          Block(x, "undecided_overflow");
          return;
        }
        break;
      case Kind::kEnd:
        if (x.body_scan) {
          auto result = x.body_scan->Finish();
          x.body_scan.reset();
          const bool block = x.enforce && result.action == rules::v1::BLOCK;
          Merge(x.results.back(), std::move(result));
          if (block) {
            Block(x, "");
            return;
          }
        }
        ReleaseGrpc(x, true);
        x.body.reset();
        ++x.messages_out;
        break;
    }
  }
}

void H2Relay::ReleaseGrpc(Exchange& x, bool whole) {
  std::string ready;
  if (whole) {
    x.body->TakeRest(&ready);
  } else {
    x.body->TakeReady(&ready);
  }
  if (ready.empty() && !whole) return;
  if (!x.grpc_prefix.empty()) {
    x.to_upstream.Append(x.grpc_prefix);
    x.grpc_prefix.clear();
  }
  x.to_upstream.Append(ready);
}

void H2Relay::OnRequestEnd(Exchange& x) {
  if (x.local) return;
  if (x.grpc) {
    if (!x.grpc_reader.at_boundary()) {
      x.condition = "malformed_grpc: the stream ended inside a message";
      Block(x, x.condition);
      return;
    }
  } else if (x.body != nullptr) {
    if (x.body_scan) {
      auto result = x.body_scan->Finish();
      x.body_scan.reset();
      Merge(x.results.back(), std::move(result));
      if (x.enforce && Strongest(x.results) == rules::v1::BLOCK) {
        Block(x, "");
        return;
      }
    }
    x.body->TakeRest(x.to_upstream.tail());
  }
  x.upstream_eof = true;
  Forward(x);
}

void H2Relay::Forward(Exchange& x) {
  if (x.local) return;
  if (x.up_id == 0) {
    if (x.to_upstream.empty() && !x.upstream_eof) return;
    OpenUpstream(x);
    return;
  }
  if (x.up_deferred && x.up_open) {
    x.up_deferred = false;
    nghttp2_session_resume_data(origin_leg_, x.up_id);
  }
}

bool H2Relay::OpenUpstream(Exchange& x) {
  if (x.up_id != 0 || x.local) return x.up_id != 0;
  if (upstream_gone_) {
    OnUpstreamClosed(x, NGHTTP2_REFUSED_STREAM);
    return false;
  }
  const std::string method = ":method", scheme = ":scheme", authority = ":authority", path = ":path";
  const std::string https = "https";
  std::vector<nghttp2_nv> nva = {Nv(method, x.method), Nv(scheme, x.scheme.empty() ? https : x.scheme),
                                 Nv(authority, x.authority), Nv(path, x.path)};
  x.bytes_out += x.method.size() + x.authority.size() + x.path.size();
  for (const auto& [n, v] : x.headers) {
    // Proxy credentials stay here; the proxy answered 100-continue itself.
    if (n == "proxy-authorization" || n == "expect") continue;
    nva.push_back(Nv(n, v));
    x.bytes_out += n.size() + v.size() + 4;
  }
  nghttp2_data_provider provider{};
  provider.read_callback = ReadToUpstream;
  const bool has_body = !(x.upstream_eof && x.to_upstream.empty());
  int32_t id = nghttp2_submit_request(origin_leg_, nullptr, nva.data(), nva.size(), has_body ? &provider : nullptr, nullptr);
  if (id < 0) {
    OnUpstreamClosed(x, NGHTTP2_REFUSED_STREAM);  // the origin said GOAWAY, or its stream ids ran out
    return false;
  }
  x.up_id = id;
  x.up_open = true;
  upstream_ids_[id] = x.id;
  return true;
}

ssize_t H2Relay::ReadToUpstream(nghttp2_session*, int32_t stream_id, uint8_t* buf, size_t length, uint32_t* data_flags,
                                nghttp2_data_source*, void* self) {
  auto* r = static_cast<H2Relay*>(self);
  Exchange* x = r->ByUpstreamId(stream_id);
  if (x == nullptr || x->local) {
    *data_flags |= NGHTTP2_DATA_FLAG_EOF;  // reset on its way
    return 0;
  }
  size_t n = std::min(length, x->to_upstream.size());
  std::memcpy(buf, x->to_upstream.view().data(), n);
  x->to_upstream.Drop(n);
  x->bytes_out += n;
  r->Rebalance(*x);
  if (x->to_upstream.empty()) {
    if (x->upstream_eof) {
      *data_flags |= NGHTTP2_DATA_FLAG_EOF;
    } else if (n == 0) {
      x->up_deferred = true;
      return NGHTTP2_ERR_DEFERRED;
    }
  }
  return static_cast<ssize_t>(n);
}

uint64_t H2Relay::Buffered(const Exchange& x) const {
  return x.frame_data.size() + x.to_upstream.size() + x.grpc_prefix.size() + (x.body ? x.body->held() : 0);
}

void H2Relay::Rebalance(Exchange& x) {
  const uint64_t buffered = Buffered(x);
  const uint64_t others = held_total_ - x.granted;
  auto give = [&](uint64_t n) {
    if (n == 0) return;
    x.window_owed -= n;
    nghttp2_session_consume(client_leg_, x.id, n);
  };
  // Bytes that left (sent on, or dropped) are owed no longer.
  if (x.window_owed > buffered) give(x.window_owed - buffered);
  // Held bytes are taken in up to the stream's hold limit and the connection's budget, so
  // a body can be held whole until decided whatever the window; past that, the client
  // waits for bytes to leave (backpressure).
  const uint64_t budget = options_.limits.max_held_bytes;
  const uint64_t cap = std::min<uint64_t>(options_.hold_limit, budget - std::min(budget, others));
  const uint64_t granted = buffered - x.window_owed;
  if (granted < cap) give(std::min(x.window_owed, cap - granted));
  x.granted = buffered - x.window_owed;
  held_total_ = others + x.granted;
  // The connection's budget, not the stream's own hold, stops a stream that must be held
  // further: rather than wait on streams that may wait on it, it fails closed.
  if (x.window_owed >= kStreamWindow && x.granted < options_.hold_limit && x.body != nullptr &&
      x.enforce && !x.local) {
    Block(x, "h2_hold_budget_exceeded");
  }
}

void H2Relay::FinishBodyScans(Exchange& x) {
  if (x.body_scan) {
    auto result = x.body_scan->Finish();
    x.body_scan.reset();
    if (x.results.empty()) x.results.emplace_back();
    Merge(x.results.back(), std::move(result));
  }
}

void H2Relay::Block(Exchange& x, std::string condition) {
  if (x.local) return;
  FinishBodyScans(x);
  x.blocked = true;
  x.condition = std::move(condition);
  if (x.up_open) {
    // Part of the request went out (every byte of it decided clean): the origin must not
    // take the truncated request as whole.
    nghttp2_submit_rst_stream(origin_leg_, NGHTTP2_FLAG_NONE, x.up_id, NGHTTP2_CANCEL);
    x.bytes_out_before_block = x.bytes_out;
  }
  x.to_upstream.Clear();
  x.body.reset();
  x.grpc_prefix.clear();
  Rebalance(x);
  std::string why = BlockedWhy(x.results, x.condition);
  if (x.grpc) {
    AnswerGrpc(x, why);
  } else {
    Answer(x, 403, "Forbidden", why);
  }
  // Recorded now: the client may keep the stream open long after its answer.
  Report(x);
}

void H2Relay::SubmitToClient(Exchange& x, const Fields& fields, bool end_stream) {
  auto nva = NvList(fields);
  nghttp2_data_provider provider{};
  provider.read_callback = ReadToClient;
  nghttp2_submit_response(client_leg_, x.id, nva.data(), nva.size(), end_stream ? nullptr : &provider);
  x.response_started = true;
}

void H2Relay::DropToClient(Exchange& x) {
  // Bytes the origin sent that will never be delivered still give its window back.
  if (!x.local && x.up_id != 0 && !x.to_client.empty()) nghttp2_session_consume(origin_leg_, x.up_id, x.to_client.size());
  x.to_client.Clear();
}

void H2Relay::Answer(Exchange& x, int status, std::string_view phrase, std::string_view why) {
  DropToClient(x);
  x.local = true;
  x.trailers.clear();
  x.response_ended = true;
  x.response_scan.reset();
  if (x.response_started) {
    // The origin's answer had begun: the client cannot be given another one.
    nghttp2_submit_rst_stream(client_leg_, NGHTTP2_FLAG_NONE, x.id, NGHTTP2_CANCEL);
    return;
  }
  std::string body = RefusalJson(phrase, why);
  x.to_client.Append(body);
  SubmitToClient(x,
                 {{":status", std::to_string(status)},
                  {"content-type", "application/json"},
                  {"content-length", std::to_string(body.size())},
                  {"cache-control", "no-store"}},
                 false);
  if (x.client_deferred) {
    x.client_deferred = false;
    nghttp2_session_resume_data(client_leg_, x.id);
  }
}

void H2Relay::AnswerGrpc(Exchange& x, std::string_view message) {
  DropToClient(x);
  x.local = true;
  x.response_scan.reset();
  Fields status = {{"grpc-status", "7"}, {"grpc-message", GrpcPercentEncode(message)}};  // PERMISSION_DENIED
  if (x.response_started) {
    // A streaming call already answered by the origin ends with our status in its trailers.
    x.trailers = std::move(status);
    x.response_ended = true;
    if (x.client_deferred) {
      x.client_deferred = false;
      nghttp2_session_resume_data(client_leg_, x.id);
    }
    return;
  }
  x.response_ended = true;
  Fields fields = {{":status", "200"}, {"content-type", "application/grpc"}};
  fields.insert(fields.end(), status.begin(), status.end());
  SubmitToClient(x, fields, true);  // trailers-only
}

// --- the response --------------------------------------------------------------------

void H2Relay::OnResponseHeaders(Exchange& x, bool end_stream) {
  if (x.local) return;
  const std::string* status = Find(x.response_fields, ":status");
  if (status == nullptr) {
    // Trailers (gRPC's status lives here): sent after the body.
    for (auto& f : x.response_fields) x.trailers.push_back(std::move(f));
    x.response_ended = true;
    if (x.client_deferred) {
      x.client_deferred = false;
      nghttp2_session_resume_data(client_leg_, x.id);
    }
    return;
  }
  if (!status->empty() && (*status)[0] == '1') return;  // interim; the proxy made its own 100
  x.response_status = static_cast<uint32_t>(std::strtoul(status->c_str(), nullptr, 10));
  for (const auto& [n, v] : x.response_fields) x.bytes_in += n.size() + v.size() + 4;
  if (options_.scan_responses && x.scanning) {
    dlp::ContentHint hint;
    if (auto* ct = Find(x.response_fields, "content-type")) hint.content_type = *ct;
    if (auto* ce = Find(x.response_fields, "content-encoding")) hint.content_encoding = *ce;
    x.response_scan = host_.OpenScan(hint);
  }
  x.response_ended = end_stream;
  SubmitToClient(x, x.response_fields, end_stream);
}

ssize_t H2Relay::ReadToClient(nghttp2_session*, int32_t stream_id, uint8_t* buf, size_t length, uint32_t* data_flags,
                              nghttp2_data_source*, void* self) {
  auto* r = static_cast<H2Relay*>(self);
  Exchange* x = r->ByClientId(stream_id);
  if (x == nullptr) {
    *data_flags |= NGHTTP2_DATA_FLAG_EOF;
    return 0;
  }
  size_t n = std::min(length, x->to_client.size());
  std::memcpy(buf, x->to_client.view().data(), n);
  x->to_client.Drop(n);
  // The origin may send more once what it sent has left toward the client.
  if (!x->local && x->up_id != 0 && n > 0) nghttp2_session_consume(r->origin_leg_, x->up_id, n);
  if (x->to_client.empty()) {
    if (x->response_ended) {
      *data_flags |= NGHTTP2_DATA_FLAG_EOF;
      if (!x->trailers.empty()) {
        *data_flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
        auto nva = NvList(x->trailers);
        nghttp2_submit_trailer(r->client_leg_, stream_id, nva.data(), nva.size());
      }
    } else if (n == 0) {
      x->client_deferred = true;
      return NGHTTP2_ERR_DEFERRED;
    }
  }
  return static_cast<ssize_t>(n);
}

void H2Relay::OnUpstreamClosed(Exchange& x, uint32_t error_code) {
  if (x.local || x.response_ended) return;
  x.condition.clear();
  if (x.grpc && !x.response_started) {
    // UNAVAILABLE: the client's retry policy may try again.
    x.local = true;
    x.response_ended = true;
    SubmitToClient(x,
                   {{":status", "200"},
                    {"content-type", "application/grpc"},
                    {"grpc-status", "14"},
                    {"grpc-message", "egressguard: the origin reset the stream"}},
                   true);
  } else {
    Answer(x, 502, "Bad Gateway",
           error_code == NGHTTP2_REFUSED_STREAM ? "the origin refused the stream" : "the origin reset the stream");
  }
  Report(x, "upstream_failed");
}

v1::Verdict H2Relay::BuildVerdict(Exchange& x, std::string_view extra) {
  auto v = host_.NewVerdict();
  v.set_protocol("h2");
  v.set_stream_id(static_cast<uint32_t>(x.id));
  v.set_method(x.method);
  v.set_path(x.record_path);
  v.set_bytes_out(x.bytes_out);
  v.set_bytes_in(x.bytes_in);
  v.set_bytes_out_before_block(x.bytes_out_before_block);
  if (x.grpc) {
    v.set_messages_out(x.messages_out);
  }
  size_t findings = 0;
  for (const auto& r : x.results) {
    for (const auto& f : r.findings) {
      if (findings++ >= kMaxFindings) break;
      *v.add_findings() = f;
    }
  }
  auto action = Strongest(x.results);
  std::string reason = ReasonFor(x.results, action);
  if (x.fail_open && x.condition.empty()) reason = "engine_unavailable (fail open)";
  if (!extra.empty() && reason.empty()) reason = std::string(extra);
  if (!x.condition.empty()) {  // refused by the proxy itself, not by a rule
    action = rules::v1::BLOCK;
    reason = x.condition;
  }
  if (x.blocked) v.set_enforced(true);
  v.set_action(action);
  v.set_reason(reason);
  v.set_response_status(x.response_status);
  return v;
}

void H2Relay::Report(Exchange& x, std::string_view extra) {
  if (x.reported) return;
  x.reported = true;
  auto v = BuildVerdict(x, extra);
  x.record.Complete(v);
  StreamOutcome outcome = StreamOutcome::kAllowed;
  if (x.blocked || (!x.condition.empty() && x.local)) {
    outcome = StreamOutcome::kBlocked;
  } else if (extra == "upstream_failed") {
    outcome = StreamOutcome::kError;
  } else if (!extra.empty()) {
    outcome = StreamOutcome::kReset;
  }
  host_.CountStream(x.grpc ? StreamProtocol::kGrpc : StreamProtocol::kH2, outcome);
  host_.Report(std::move(v));
}

}  // namespace egressguard::mitm
