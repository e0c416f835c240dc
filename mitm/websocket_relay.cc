// The WebSocket session of a Connection, after the 101 (see Connection::WebSocketRelay).
//
// Client to origin, every frame goes through a ws::FrameInspector; a data message's
// payload (unmasked, inflated) is one DLP scan. The wire bytes are held in order: in
// enforce mode a message is held until it is scanned (up to the hold limit; past it, a
// prefix of its wire bytes leaves once the scan has decided all the payload that prefix
// carries, dlp::HoldFrom: the inspector consumes wire bytes only as it reports their
// payload, inflated ones as zlib takes them), so a blocked message never reaches the
// origin. Control frames (ping, pong, close) are scanned too,
// since their payloads carry bytes. Origin to client, frames are checked and relayed as
// they come, and scanned with scan_responses (reported, never blocked).
//
// Only the client direction writes to the origin and, once the origin direction has
// stopped, to the client: two coroutines never write to one TLS stream at once.

#include <fmt/format.h>
#include <openssl/rand.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <deque>

#include "mitm/connection.h"
#include "mitm/hold_buffer.h"
#include "mitm/websocket.h"

// GCC 12 misreads the sized operator delete of Asio 1.74's coroutine frame allocator as
// mismatched with its operator new in coroutine lambdas (a known false positive).
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

namespace egressguard::mitm {
namespace {

using Action = rules::v1::Action;
constexpr uint8_t kOpClose = 8;

// The findings of every message of a session merged per rule (counts added), so a chatty
// application reports once per connection, not once per message.
class FindingTally {
 public:
  void Add(const dlp::MessageResult& r, bool report_only) {
    for (v1::Finding f : r.findings) {
      if (report_only && f.action() == rules::v1::BLOCK) f.set_action(rules::v1::ALERT);
      action_ = std::max(action_, f.action());
      auto it = std::find_if(findings_.begin(), findings_.end(),
                             [&](const v1::Finding& g) { return g.rule_id() == f.rule_id(); });
      if (it == findings_.end()) {
        f.set_start(0);  // offsets are per message: meaningless for the session
        f.set_end(0);
        f.clear_spans();  // so are the occurrences' offsets
        f.set_spans_truncated(false);
        findings_.push_back(std::move(f));
      } else {
        it->set_count(it->count() + f.count());
      }
    }
  }
  void Fill(v1::Verdict* v) const {
    std::string reason;
    for (const auto& f : findings_) {
      *v->add_findings() = f;
      if (f.action() == action_ && action_ != rules::v1::ALLOW) reason += (reason.empty() ? "" : ",") + f.rule_id();
    }
    v->set_action(action_);
    v->set_reason(reason);
  }

 private:
  std::vector<v1::Finding> findings_;
  Action action_ = rules::v1::ALLOW;
};

uint32_t RandomMask() {
  uint32_t m = 0;
  if (RAND_bytes(reinterpret_cast<unsigned char*>(&m), sizeof(m)) != 1) m = 0x5a5a5a5a;
  return m;
}

dlp::ContentHint HintFor(uint8_t message_opcode) {
  dlp::ContentHint hint;
  if (message_opcode == 1) hint.content_type = "text/plain; charset=utf-8";  // binary: sniffed
  return hint;
}

}  // namespace

asio::awaitable<void> Connection::WebSocketRelay(const ws::DeflateParams& params, const std::string& path) {
  auto self = shared_from_this();
  const auto& cfg = shared_.config;
  const bool enforce = shared_.mode() == EnforceMode::kEnforce;
  shared_.metrics.ws_sessions.fetch_add(1, std::memory_order_relaxed);
  if (!engine_ && shared_.engines) engine_ = shared_.engines->Current();
  if (!engine_) shared_.metrics.fail_open.fetch_add(1, std::memory_order_relaxed);

  FindingTally tally;
  uint64_t bytes_out = 0, bytes_in = 0, messages_out = 0, messages_in = 0;
  std::string problem;          // why the session was cut short ("" for a clean close)
  std::string close_to_client;  // a close frame the client gets once the origin side stopped
  bool client_side_closing = false;
  bool other_done = false;
  asio::steady_timer done(timer_.get_executor());
  done.expires_at(std::chrono::steady_clock::time_point::max());
  {
    // The session's record before its first message can leave (its messages are each
    // held until decided; the session verdict completes this record when it closes).
    auto v = NewVerdict(mode_);
    v.set_protocol("websocket");
    v.set_method("GET");
    v.set_path(path);
    v.set_action(rules::v1::ALLOW);
    if (!WriteAheadRecord(std::move(v), enforce)) {
      ReportRefusal("verdict_unrecordable");
      Abort();
      co_return;
    }
  }
  Arm(cfg.idle_timeout);

  // Origin -> client.
  asio::co_spawn(
      timer_.get_executor(),
      [&, self]() -> asio::awaitable<void> {
        ws::FrameInspector in(ws::Direction::kServerToClient, params);
        std::string buf = std::move(upstream_buf_);
        dlp::MessageScanPtr scan;
        size_t ready = 0;  // inspected bytes at the front of buf not written yet
        error_code ec;
        while (!finished_) {
          auto ev = in.Next(std::string_view(buf).substr(ready));
          if (ev.kind == ws::FrameInspector::Event::kError) {
            if (problem.empty()) problem = fmt::format("websocket_protocol_error (origin): {}", ev.reason);
            close_to_client = ws::BuildFrame(kOpClose, ws::ClosePayload(ev.close_code, ev.reason), false);
            break;
          }
          if (ev.kind == ws::FrameInspector::Event::kFrameStart && ev.message_start) {
            ++messages_in;
            shared_.metrics.ws_messages[1].fetch_add(1, std::memory_order_relaxed);
            if (cfg.scan_responses && engine_) scan = OpenScan(HintFor(ev.message_opcode));
          }
          if (scan && !ev.data.empty() && !ev.control) scan->Feed(ev.data);
          if (ev.kind == ws::FrameInspector::Event::kFrameEnd && ev.message_end && !ev.control && scan) {
            tally.Add(scan->Finish(), /*report_only=*/true);
            scan.reset();
          }
          ready += ev.consumed;
          if (ev.kind != ws::FrameInspector::Event::kNeedMore || ev.consumed > 0) continue;
          if (ready > 0) {
            co_await client_.Write(asio::buffer(buf.data(), ready), ec);
            if (ec) break;
            bytes_in += ready;
            shared_.metrics.ws_bytes[1].fetch_add(ready, std::memory_order_relaxed);
            buf.erase(0, ready);
            ready = 0;
            Arm(cfg.idle_timeout);
          }
          co_await upstream_->ReadSome(buf, ec);
          if (ec) break;
        }
        other_done = true;
        done.cancel();
        // The origin is gone: so is the session, unless the client side is closing it
        // itself and still has a close frame to send.
        if (!client_side_closing) {
          if (!close_to_client.empty()) {
            error_code wec;
            co_await client_.Write(asio::buffer(close_to_client), wec);
          }
          Abort();
        }
      },
      asio::detached);

  // Client -> origin.
  struct Mark {
    size_t wire_end;  // a prefix of `held`...
    uint64_t need;    // ...carries the current message's payload up to here
  };
  ws::FrameInspector in(ws::Direction::kClientToServer, params);
  std::string buf = std::move(client_buf_);
  HoldBuffer held;          // inspected frames not forwarded yet, in order
  std::deque<Mark> frames;  // points where `held` may be cut, in order
  dlp::MessageScanPtr scan, control_scan;
  uint64_t fed = 0;            // payload of the current message fed to `scan`
  uint64_t message_sent = 0;   // wire bytes of the current message forwarded
  bool in_message = false;
  uint16_t close_code = 0;     // set: the session ends with this close to both sides
  std::string close_reason;
  dlp::MessageResult blocked_result;
  error_code ec;
  // The held prefix that may leave: all of it in monitor mode or between messages; in
  // enforce mode inside a message, up to the last cut whose payload the scan has decided,
  // once the message outgrew the hold limit.
  auto releasable = [&]() -> size_t {
    uint64_t allowed = UINT64_MAX;
    if (enforce && in_message && scan) {
      if (fed <= cfg.hold_limit) return 0;  // the whole message is held until it is scanned
      allowed = dlp::HoldFrom(*scan, fed, cfg.hold_limit);
    }
    size_t n = 0;
    while (!frames.empty() && frames.front().need <= allowed) {
      n = frames.front().wire_end;
      frames.pop_front();
    }
    for (auto& f : frames) f.wire_end -= n;
    return n;
  };
  auto block = [&](const dlp::MessageResult& r) {
    close_code = 1008;
    close_reason = r.reason.empty() ? "blocked by data-loss-prevention rules" : r.reason;
    blocked_result = r;
  };
  while (!finished_ && close_code == 0) {
    auto ev = in.Next(buf);
    if (ev.kind == ws::FrameInspector::Event::kError) {
      if (!enforce) {
        // Monitor mode relays what it cannot read, recorded as uninspected.
        problem = fmt::format("websocket_protocol_error (client, uninspected): {}", ev.reason);
        held.Append(buf);
        buf.clear();
        frames.clear();
        frames.push_back(Mark{held.size(), 0});
        in_message = false;
        if (size_t n = releasable(); n > 0) {
          co_await upstream_->Write(asio::buffer(held.view().data(), n), ec);
          held.Clear();
        }
        while (!finished_ && !ec) {
          buf.clear();
          co_await client_.ReadSome(buf, ec);
          if (!ec) co_await upstream_->Write(asio::buffer(buf), ec);
        }
        break;
      }
      problem = fmt::format("websocket_protocol_error (client): {}", ev.reason);
      close_code = ev.close_code;
      close_reason = ev.reason;
      break;
    }
    if (ev.kind == ws::FrameInspector::Event::kFrameStart) {
      if (ev.control) {
        control_scan = engine_ ? OpenScan(dlp::ContentHint{}) : nullptr;
      } else if (ev.message_start) {
        ++messages_out;
        shared_.metrics.ws_messages[0].fetch_add(1, std::memory_order_relaxed);
        scan = engine_ ? OpenScan(HintFor(ev.message_opcode)) : nullptr;
        fed = 0;
        message_sent = 0;
        in_message = true;
      }
    }
    if (!ev.data.empty()) {
      if (ev.control) {
        if (control_scan) control_scan->Feed(ev.data);
      } else if (scan) {
        scan->Feed(ev.data);
        fed += ev.data.size();
      }
    }
    held.Append(std::string_view(buf).substr(0, ev.consumed));
    buf.erase(0, ev.consumed);
    // A cut after every event of a data frame (its payload so far is known); a control
    // frame is cut only whole, after its own scan.
    if (!ev.control && ev.consumed > 0) frames.push_back(Mark{held.size(), in_message ? fed : 0});
    if (ev.kind == ws::FrameInspector::Event::kFrameEnd) {
      if (ev.control) {
        frames.push_back(Mark{held.size(), in_message ? fed : 0});
        if (control_scan) {
          auto r = control_scan->Finish();
          tally.Add(r, false);
          control_scan.reset();
          if (enforce && r.action == rules::v1::BLOCK) block(r);
        }
      } else {
        if (ev.message_end) {
          frames.push_back(Mark{held.size(), 0});  // leaves once the verdict is in (below)
          in_message = false;
          if (scan) {
            auto r = scan->Finish();
            tally.Add(r, false);
            scan.reset();
            if (enforce && r.action == rules::v1::BLOCK) block(r);
          }
        }
      }
    }
    if (enforce && close_code == 0 && scan && scan->action_so_far() == rules::v1::BLOCK) {
      auto r = scan->Finish();
      tally.Add(r, false);
      block(r);
    }
    if (close_code != 0) break;
    if (size_t n = releasable(); n > 0) {
      co_await upstream_->Write(asio::buffer(held.view().data(), n), ec);
      if (ec) break;
      held.Drop(n);
      bytes_out += n;
      message_sent += in_message ? n : 0;
      shared_.metrics.ws_bytes[0].fetch_add(n, std::memory_order_relaxed);
      Arm(cfg.idle_timeout);
    }
    if (enforce && in_message && scan && fed > cfg.hold_limit &&
        fed - std::min(fed, scan->decided_offset()) > cfg.hold_limit) {
      // A scan that cannot decide past the hold limit: fail closed.
      close_code = 1009;
      close_reason = "message too large to inspect";
      problem = "undecided_overflow";
      break;
    }
    if (ev.kind == ws::FrameInspector::Event::kNeedMore && ev.consumed == 0) {
      co_await client_.ReadSome(buf, ec);
      if (ec) break;  // the client left: what it had not finished never leaves
    }
  }

  if (close_code != 0 && !finished_) {
    if (close_code == 1008) {
      // The blocked message's own verdict, at once.
      shared_.metrics.ws_blocked.fetch_add(1, std::memory_order_relaxed);
      auto v = NewVerdict(mode_);
      v.set_protocol("websocket");
      v.set_method("GET");
      v.set_path(path);
      v.set_messages_out(1);
      for (const auto& f : blocked_result.findings) *v.add_findings() = f;
      v.set_action(rules::v1::BLOCK);
      v.set_reason(blocked_result.reason);
      v.set_bytes_out(message_sent);
      v.set_bytes_out_before_block(message_sent);
      Report(std::move(v));
    }
    // The origin gets a close for the session, the message never; then the client learns
    // why. When part of the message went out (past the hold limit) the origin may be
    // inside a frame, where a close frame would read as payload: it gets the connection
    // closed instead.
    client_side_closing = true;
    error_code wec;
    if (message_sent == 0) {
      co_await upstream_->Write(
          asio::buffer(ws::BuildFrame(kOpClose, ws::ClosePayload(close_code, close_reason), true, RandomMask())), wec);
    }
    upstream_->Close();
    while (!other_done) {
      error_code tec;
      co_await done.async_wait(asio::redirect_error(asio::use_awaitable, tec));
    }
    if (!finished_) {
      co_await client_.Write(asio::buffer(ws::BuildFrame(kOpClose, ws::ClosePayload(close_code, close_reason), false)),
                             wec);
    }
  }
  Abort();
  while (!other_done) {
    error_code tec;
    co_await done.async_wait(asio::redirect_error(asio::use_awaitable, tec));
  }

  // The session's verdict: every message's findings, merged.
  auto v = NewVerdict(mode_);
  record_.Complete(v);
  v.set_protocol("websocket");
  v.set_method("GET");
  v.set_path(path);
  v.set_bytes_out(bytes_out);
  v.set_bytes_in(bytes_in);
  v.set_messages_out(messages_out);
  v.set_messages_in(messages_in);
  tally.Fill(&v);
  if (!problem.empty()) {
    if (enforce) v.set_action(rules::v1::BLOCK);
    v.set_reason(v.reason().empty() ? problem : v.reason() + "," + problem);
  }
  if (close_code == 1008) v.set_bytes_out_before_block(bytes_out);
  Report(std::move(v));
}

}  // namespace egressguard::mitm
