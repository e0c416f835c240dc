// Connection::Http2Relay: drives an H2Relay (mitm/h2_relay.h) between the client's and
// the origin's TLS streams. Four coroutines on the connection's worker: a reader and a
// writer per leg (Stream allows one of each at once). Readers feed the relay; writers
// send what it has queued and sleep on a timer that any state change cancels.

#include <spdlog/spdlog.h>

#include "mitm/connection.h"
#include "mitm/h2_relay.h"
#include "mitm/host_port.h"

#pragma GCC diagnostic ignored "-Wmismatched-new-delete"  // see connection.cc

namespace egressguard::mitm {
namespace {

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

// Bytes a writer takes from the relay per write: a few TLS records.
constexpr size_t kWriteBatch = 64 * 1024;

}  // namespace

class Connection::H2Host : public H2Relay::Host {
 public:
  explicit H2Host(Connection& c) : c_(c) {}

  bool EngineReady() override {
    c_.engine_ = c_.shared_.engines ? c_.shared_.engines->Current() : nullptr;
    if (!c_.engine_) {
      auto& counter = c_.shared_.config.fail_open ? c_.shared_.metrics.fail_open : c_.shared_.metrics.fail_closed;
      counter.fetch_add(1, std::memory_order_relaxed);
    }
    return c_.engine_ != nullptr;
  }
  dlp::MessageScanPtr OpenScan(const dlp::ContentHint& hint) override { return c_.OpenScan(hint); }
  bool MethodAllowed(std::string_view method) override {
    return c_.shared_.policy->MethodAllowed(c_.host_, c_.port_, std::string(method));
  }
  bool SameOrigin(std::string_view authority) override {
    if (authority.empty()) return true;
    auto hp = ParseHostPort(authority, c_.port_);
    if (!hp.ok()) return false;
    const std::string& name = c_.sni_.empty() ? c_.host_ : c_.sni_;
    return EqualsIgnoreCase(hp->host, name) && hp->port == c_.port_;
  }
  v1::Verdict NewVerdict() override { return c_.NewVerdict(c_.mode_); }
  void Report(v1::Verdict verdict) override {
    c_.shared_.counters.transactions.fetch_add(verdict.stream_id() != 0 ? 1 : 0, std::memory_order_relaxed);
    c_.Report(std::move(verdict));
  }
  void CountStream(StreamProtocol protocol, StreamOutcome outcome) override {
    c_.shared_.metrics.streams[Index(protocol)][Index(outcome)].fetch_add(1, std::memory_order_relaxed);
  }
  bool Recordable(bool enforce) override { return c_.Recordable(enforce); }
  bool OpenRecord(WriteAhead& record, v1::Verdict verdict, bool enforce) override {
    return c_.WriteAheadInto(record, std::move(verdict), enforce);
  }
  void CountGoaway(GoawayReason reason) override {
    c_.shared_.metrics.h2_goaways[Index(reason)].fetch_add(1, std::memory_order_relaxed);
    spdlog::warn("conn={} client={} host={}:{} h2 GOAWAY: {}", c_.conn_id_, c_.client_address_, c_.host_, c_.port_,
                 kGoawayReasonNames[Index(reason)]);
  }

 private:
  Connection& c_;
};

asio::awaitable<void> Connection::Http2Relay() {
  auto self = shared_from_this();
  const auto& cfg = shared_.config;
  H2Host host(*this);
  H2Relay::Options options;
  options.enforce = shared_.mode() == EnforceMode::kEnforce;
  options.fail_open = cfg.fail_open;
  options.scan_responses = cfg.scan_responses;
  options.hold_limit = cfg.hold_limit;
  options.limits = cfg.h2;
  H2Relay relay(host, options);
  if (!relay.Start()) {
    ReportRefusal("h2_failed: out of memory");
    co_return;
  }
  // Bytes that arrived with the handshake's last records.
  if (!client_buf_.empty()) {
    relay.RecvClient(client_buf_);
    client_buf_.clear();
  }

  auto executor = timer_.get_executor();
  asio::steady_timer wake_client(executor), wake_upstream(executor), all_done(executor);
  for (auto* t : {&wake_client, &wake_upstream, &all_done}) t->expires_at(std::chrono::steady_clock::time_point::max());
  bool done = false;
  int running = 0;
  auto wake = [&] {
    wake_client.cancel();
    wake_upstream.cancel();
  };
  auto finish = [&] {
    if (done) return;
    done = true;
    wake();
    Abort();  // both sockets closed: pending reads and writes end
  };

  // A leg's socket failed or ended: without the client the connection is over; without the
  // origin, the relay answers what waited for it and tells the client to go.
  auto leg_gone = [&](bool client_leg) {
    if (client_leg) {
      relay.ClientGone();
      finish();
    } else {
      relay.UpstreamGone();
      wake();
    }
  };
  // One leg's reader: bytes into the relay until EOF, an error or the relay refuses them.
  auto reader = [&](bool client_leg) -> asio::awaitable<void> {
    Stream& from = client_leg ? client_ : *upstream_;
    std::string buf;
    while (!done) {
      buf.clear();
      error_code ec;
      co_await from.ReadSome(buf, ec);
      if (done) break;
      if (ec) {
        leg_gone(client_leg);
        break;
      }
      Arm(cfg.idle_timeout);
      bool ok = client_leg ? relay.RecvClient(buf) : relay.RecvUpstream(buf);
      wake();
      if (!ok) {
        // The session failed (abuse, a protocol error): its GOAWAY is flushed by the
        // writer, and the connection closes after it (or after this grace).
        if (client_leg) Arm(std::chrono::milliseconds(1000));
        break;
      }
    }
  };
  // One leg's writer: what the relay queued, until the leg is over.
  auto writer = [&](bool client_leg) -> asio::awaitable<void> {
    Stream& to = client_leg ? client_ : *upstream_;
    asio::steady_timer& wake_me = client_leg ? wake_client : wake_upstream;
    std::string out;
    while (!done) {
      out.clear();
      if (client_leg) {
        relay.PullClient(&out, kWriteBatch);
      } else {
        relay.PullUpstream(&out, kWriteBatch);
      }
      if (!out.empty()) {
        error_code ec;
        asio::const_buffer rest = asio::buffer(out);
        if (!to.WriteNow(rest, ec) && !ec) co_await to.Write(rest, ec);
        if (done) break;
        if (ec) {
          leg_gone(client_leg);
          break;
        }
        wake();  // taking bytes gave window back to the other leg
        continue;
      }
      if (client_leg && relay.client_done()) {
        finish();
        break;
      }
      if (!client_leg && relay.upstream_done()) break;
      error_code ec;
      co_await wake_me.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
  };
  auto spawn = [&](auto make) {
    ++running;
    asio::co_spawn(
        executor,
        [&, self, make]() -> asio::awaitable<void> {
          co_await make();
          if (--running == 0) all_done.cancel();
        },
        asio::detached);
  };
  on_drain_ = [&] {
    relay.Drain();
    wake();
  };
  if (shared_.draining.load()) on_drain_();
  Arm(cfg.idle_timeout);
  spawn([&] { return reader(false); });
  spawn([&] { return writer(true); });
  spawn([&] { return writer(false); });
  co_await reader(true);
  // The client's reader is done; the writers may still flush a GOAWAY (bounded by Arm).
  while (running > 0) {
    if (!done && relay.client_done()) finish();
    error_code ec;
    all_done.expires_after(std::chrono::milliseconds(50));
    co_await all_done.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (finished_) finish();
  }
  on_drain_ = nullptr;
  relay.Close(relay.abuse().empty() ? "connection_closed" : "h2_abuse");
  finish();
}

}  // namespace egressguard::mitm
