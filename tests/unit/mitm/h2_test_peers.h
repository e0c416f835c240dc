#pragma once
// In-memory HTTP/2 peers around an H2Relay, for the relay's tests and its fuzz target: a
// client (an nghttp2 client session) on one side, an origin (an nghttp2 server session
// that records what reached it and answers) on the other, and a host with the real
// engine and the shipped pack. Bytes move between them in memory until all are quiet.

#include <nghttp2/nghttp2.h>

#include <cstring>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mitm/h2_relay.h"

namespace egressguard::mitm::testing {

using Fields = std::vector<std::pair<std::string, std::string>>;

// Frames by hand, for what a well-behaved nghttp2 client will not send.
inline std::string Frame(uint8_t type, uint8_t flags, int32_t stream_id, std::string_view payload) {
  std::string f;
  f += static_cast<char>((payload.size() >> 16) & 0xff);
  f += static_cast<char>((payload.size() >> 8) & 0xff);
  f += static_cast<char>(payload.size() & 0xff);
  f += static_cast<char>(type);
  f += static_cast<char>(flags);
  f += static_cast<char>((stream_id >> 24) & 0x7f);
  f += static_cast<char>((stream_id >> 16) & 0xff);
  f += static_cast<char>((stream_id >> 8) & 0xff);
  f += static_cast<char>(stream_id & 0xff);
  f.append(payload);
  return f;
}

// A gRPC message: flag, 4-byte length, bytes.
inline std::string GrpcMessage(std::string_view bytes, bool compressed = false) {
  std::string m;
  m += static_cast<char>(compressed ? 1 : 0);
  const auto n = static_cast<uint32_t>(bytes.size());
  m += static_cast<char>(n >> 24);
  m += static_cast<char>((n >> 16) & 0xff);
  m += static_cast<char>((n >> 8) & 0xff);
  m += static_cast<char>(n & 0xff);
  m.append(bytes);
  return m;
}

struct PeerStream {
  Fields headers;   // as received (responses: the final head; requests: the request head)
  Fields trailers;
  std::string body;
  bool ended = false;
  uint32_t reset = 0;  // RST_STREAM error code received (0: none)
  bool closed = false;
  bool head_done = false;  // a final head arrived; later fields are trailers
  std::string Get(std::string_view name) const {
    for (const auto& [n, v] : headers) {
      if (n == name) return v;
    }
    for (const auto& [n, v] : trailers) {
      if (n == name) return v;
    }
    return "";
  }
};

// One nghttp2 session playing a client or an origin; records every stream.
class Peer {
 public:
  explicit Peer(bool server) : server_(server) {
    nghttp2_session_callbacks* cbs = nullptr;
    nghttp2_session_callbacks_new(&cbs);
    nghttp2_session_callbacks_set_on_header_callback(cbs, OnHeader);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, OnData);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, OnFrame);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, OnClose);
    if (server) {
      nghttp2_session_server_new(&s_, cbs, this);
    } else {
      nghttp2_session_client_new(&s_, cbs, this);
    }
    nghttp2_session_callbacks_del(cbs);
    nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 1000},
                                   {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1 << 20}};
    nghttp2_submit_settings(s_, NGHTTP2_FLAG_NONE, iv, 2);
  }
  ~Peer() { nghttp2_session_del(s_); }
  Peer(const Peer&) = delete;
  Peer& operator=(const Peer&) = delete;

  nghttp2_session* session() { return s_; }

  // Client: a request; `body` leaves in DATA frames of at most `frame` bytes.
  int32_t Request(const Fields& fields, std::string body, bool end_stream = true, size_t frame = 16384) {
    std::vector<nghttp2_nv> nva;
    for (const auto& [n, v] : fields) nva.push_back(Nv(n, v));
    auto out = std::make_unique<Outgoing>();
    out->data = std::move(body);
    out->frame = frame;
    out->end = end_stream;
    nghttp2_data_provider prd{};
    prd.source.ptr = out.get();
    prd.read_callback = Read;
    const bool no_body = out->data.empty() && end_stream;
    int32_t id = nghttp2_submit_request(s_, nullptr, nva.data(), nva.size(), no_body ? nullptr : &prd, nullptr);
    outgoing_[id] = std::move(out);
    return id;
  }
  // Client: more body on an open request (a streaming call); `end` ends it.
  void Send(int32_t id, std::string_view more, bool end) {
    auto& out = *outgoing_[id];
    out.data.append(more);
    out.end = end;
    nghttp2_session_resume_data(s_, id);
  }

  // Bytes this peer wants to send.
  std::string Pull() {
    std::string out;
    for (;;) {
      const uint8_t* d = nullptr;
      ssize_t n = nghttp2_session_mem_send(s_, &d);
      if (n <= 0) break;
      out.append(reinterpret_cast<const char*>(d), static_cast<size_t>(n));
    }
    return out;
  }
  void Push(std::string_view bytes) {
    if (bytes.empty()) return;
    ssize_t rv = nghttp2_session_mem_recv(s_, reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
    if (rv < 0) failed = true;
  }

  std::map<int32_t, PeerStream> streams;
  uint32_t goaway = UINT32_MAX;  // error code of a GOAWAY received
  bool failed = false;
  // Origin: how it answers a request once its body ended (default: 200 "ok"; gRPC: an
  // empty message and grpc-status 0).
  bool answer_early = false;  // answer at the request head (bidi), not at its end
  std::string answer_body = "ok";

 private:
  struct Outgoing {
    std::string data;
    size_t pos = 0;
    size_t frame = 16384;
    bool end = true;
  };
  static nghttp2_nv Nv(const std::string& n, const std::string& v) {
    return nghttp2_nv{reinterpret_cast<uint8_t*>(const_cast<char*>(n.data())),
                      reinterpret_cast<uint8_t*>(const_cast<char*>(v.data())), n.size(), v.size(), NGHTTP2_NV_FLAG_NONE};
  }
  static ssize_t Read(nghttp2_session*, int32_t, uint8_t* buf, size_t length, uint32_t* flags,
                      nghttp2_data_source* src, void*) {
    auto* o = static_cast<Outgoing*>(src->ptr);
    size_t n = std::min({length, o->frame, o->data.size() - o->pos});
    std::memcpy(buf, o->data.data() + o->pos, n);
    o->pos += n;
    if (o->pos == o->data.size()) {
      if (o->end) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
      } else if (n == 0) {
        return NGHTTP2_ERR_DEFERRED;
      }
    }
    return static_cast<ssize_t>(n);
  }
  static int OnHeader(nghttp2_session*, const nghttp2_frame* f, const uint8_t* n, size_t nl, const uint8_t* v, size_t vl,
                      uint8_t, void* self) {
    auto& st = static_cast<Peer*>(self)->streams[f->hd.stream_id];
    std::pair<std::string, std::string> field(std::string(reinterpret_cast<const char*>(n), nl),
                                              std::string(reinterpret_cast<const char*>(v), vl));
    (st.head_done ? st.trailers : st.headers).push_back(std::move(field));
    return 0;
  }
  static int OnData(nghttp2_session*, uint8_t, int32_t id, const uint8_t* d, size_t len, void* self) {
    static_cast<Peer*>(self)->streams[id].body.append(reinterpret_cast<const char*>(d), len);
    return 0;
  }
  static int OnFrame(nghttp2_session* s, const nghttp2_frame* f, void* self) {
    auto* p = static_cast<Peer*>(self);
    if (f->hd.type == NGHTTP2_GOAWAY) p->goaway = f->goaway.error_code;
    if (f->hd.type == NGHTTP2_RST_STREAM) p->streams[f->hd.stream_id].reset = f->rst_stream.error_code;
    // END_STREAM shares its bit with SETTINGS' and PING's ACK: only HEADERS and DATA end streams.
    const bool end = (f->hd.type == NGHTTP2_HEADERS || f->hd.type == NGHTTP2_DATA) &&
                     (f->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    if (f->hd.type == NGHTTP2_HEADERS) {
      auto& st = p->streams[f->hd.stream_id];
      if (!st.head_done && !st.Get(":status").empty() && st.Get(":status")[0] == '1') {
        st.headers.clear();  // an interim response; the final one follows
      } else {
        st.head_done = true;
      }
    }
    if (end) p->streams[f->hd.stream_id].ended = true;
    if (!p->server_) return 0;
    const bool head = f->hd.type == NGHTTP2_HEADERS && f->headers.cat == NGHTTP2_HCAT_REQUEST;
    if ((p->answer_early && head) || (!p->answer_early && end)) p->Answer(s, f->hd.stream_id);
    return 0;
  }
  static int OnClose(nghttp2_session*, int32_t id, uint32_t, void* self) {
    static_cast<Peer*>(self)->streams[id].closed = true;
    return 0;
  }
  void Answer(nghttp2_session* s, int32_t id) {
    auto& st = streams[id];
    const bool grpc = st.Get("content-type").rfind("application/grpc", 0) == 0;
    static const std::string kStatus = ":status", k200 = "200", kType = "content-type", kGrpc = "application/grpc",
                             kText = "text/plain", kGrpcStatus = "grpc-status", kZero = "0";
    std::vector<nghttp2_nv> head = {Nv(kStatus, k200), Nv(kType, grpc ? kGrpc : kText)};
    auto out = std::make_unique<Outgoing>();
    // A server answering at the head (bidi) keeps its answer open: the call is not over.
    out->data = answer_early ? "" : grpc ? GrpcMessage("") : answer_body;
    out->end = !grpc && !answer_early;
    nghttp2_data_provider prd{};
    prd.source.ptr = out.get();
    prd.read_callback = Read;
    nghttp2_submit_response(s, id, head.data(), head.size(), &prd);
    if (grpc && !answer_early) {
      std::vector<nghttp2_nv> trailers = {Nv(kGrpcStatus, kZero)};
      nghttp2_submit_trailer(s, id, trailers.data(), trailers.size());
    }
    answers_.push_back(std::move(out));
  }

  bool server_;
  nghttp2_session* s_ = nullptr;
  std::map<int32_t, std::unique_ptr<Outgoing>> outgoing_;
  std::vector<std::unique_ptr<Outgoing>> answers_;
};

// Moves bytes client <-> relay <-> origin until nothing moves. Raw bytes for the relay's
// client leg may be injected with `extra`.
inline void Pump(H2Relay& relay, Peer& client, Peer& origin, std::string_view extra = {}, bool* client_ok = nullptr) {
  bool ok = true;
  std::string injected(extra);
  for (int round = 0; round < 100000; ++round) {
    std::string c = client.Pull();
    c += injected;
    injected.clear();
    if (!c.empty() && ok) ok = relay.RecvClient(c);
    std::string up;
    relay.PullUpstream(&up, SIZE_MAX);
    origin.Push(up);
    std::string o = origin.Pull();
    if (!o.empty()) relay.RecvUpstream(o);
    std::string down;
    relay.PullClient(&down, SIZE_MAX);
    client.Push(down);
    if (c.empty() && up.empty() && o.empty() && down.empty()) break;
  }
  if (client_ok != nullptr) *client_ok = ok;
}

}  // namespace egressguard::mitm::testing
