#include "mitm/connection.h"

#include <fmt/format.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <array>

#include "mitm/alpn.h"
#include "mitm/body_relay.h"
#include "mitm/client_hello.h"
#include "mitm/hold_buffer.h"
#include "mitm/host_port.h"
#include "mitm/proxy_protocol.h"
#include "mitm/upstream_verify.h"
#include "mitm/verdict_id.h"
#include "mitm/verdict_text.h"
#include "mitm/websocket.h"

// GCC 12 misreads the sized operator delete of Asio 1.74's coroutine frame allocator as
// mismatched with its operator new in coroutine lambdas (a known false positive).
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

namespace egressguard::mitm {
namespace {

using Action = rules::v1::Action;

// Whether a decrypted stream is meant as HTTP/1: its first byte is one a request head
// may start with, or the whitespace a malformed one does (an empty line, which RFC 9112
// 2.2 lets us skip; a space or tab, which the parser refuses with 400). Anything else
// (a TLS record, binary, JSON) is a protocol the proxy does not parse. nullopt: no byte yet.
std::optional<bool> LooksLikeHttp(std::string_view bytes) {
  if (bytes.empty()) return std::nullopt;
  const char c = bytes[0];
  return c == '\r' || c == '\n' || c == ' ' || c == '\t' || http1::IsToken(std::string_view(&c, 1));
}

bool EqualsLower(std::string_view a, std::string_view lower) {
  return a.size() == lower.size() &&
         std::equal(a.begin(), a.end(), lower.begin(), [](char x, char y) { return (x >= 'A' && x <= 'Z' ? x + 32 : x) == y; });
}

// Upgrade: websocket (RFC 6455 4.2.1: the token, case-insensitive).
bool IsWebSocketUpgrade(const http1::MessageHead& head) {
  std::string_view v = head.Get("upgrade").value_or("");
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  return EqualsLower(v, "websocket");
}

std::string HtmlEscape(std::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '&': out += "&amp;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

ConnectionMode ModeOf(std::string_view mode) {
  if (mode == "bump") return ConnectionMode::kBump;
  if (mode == "splice") return ConnectionMode::kSplice;
  if (mode == "refuse") return ConnectionMode::kRefuse;
  return ConnectionMode::kPlain;
}

ConnectionOutcome OutcomeOf(const v1::Verdict& v) {
  std::string_view reason = v.reason();
  auto starts = [&](std::string_view prefix) { return reason.substr(0, prefix.size()) == prefix; };
  if (starts("upstream_cert_invalid")) return ConnectionOutcome::kUpstreamCertInvalid;
  if (starts("upstream_tls_failed")) return ConnectionOutcome::kUpstreamTlsFailed;
  if (starts("upstream_unreachable")) return ConnectionOutcome::kUpstreamUnreachable;
  if (starts("client_tls_failed")) return ConnectionOutcome::kClientTlsFailed;
  if (starts("malformed") || starts("not_tls")) return ConnectionOutcome::kMalformed;
  if (v.action() != rules::v1::BLOCK) return ConnectionOutcome::kOk;
  if (reason == "engine_unavailable") return ConnectionOutcome::kFailClosed;
  if (v.findings_size() > 0) return v.enforced() ? ConnectionOutcome::kBlocked : ConnectionOutcome::kOk;
  if (v.enforced()) return ConnectionOutcome::kRefused;
  return ConnectionOutcome::kError;
}

UpstreamVerifyFailure VerifyFailureOf(long code) {
  switch (code) {
    case X509_V_ERR_CERT_HAS_EXPIRED:
      return UpstreamVerifyFailure::kExpired;
    case X509_V_ERR_CERT_NOT_YET_VALID:
      return UpstreamVerifyFailure::kNotYetValid;
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
      return UpstreamVerifyFailure::kSelfSigned;
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
      return UpstreamVerifyFailure::kUnknownIssuer;
    case X509_V_ERR_HOSTNAME_MISMATCH:
    case X509_V_ERR_IP_ADDRESS_MISMATCH:
      return UpstreamVerifyFailure::kNameMismatch;
    case X509_V_ERR_CERT_REVOKED:
      return UpstreamVerifyFailure::kRevoked;
    case X509_V_ERR_INVALID_PURPOSE:  // OpenSSL's own TLS-server purpose check
      return UpstreamVerifyFailure::kNotServerLeaf;
    default:
      return UpstreamVerifyFailure::kOther;
  }
}

// Times and counts one message's scan; the engine stays unaware of metrics.
class CountedScan final : public dlp::MessageScan {
 public:
  CountedScan(dlp::MessageScanPtr inner, ProxyMetrics& metrics) : inner_(std::move(inner)), metrics_(metrics) {}
  ~CountedScan() override {
    metrics_.scans.fetch_add(1, std::memory_order_relaxed);
    metrics_.scan_bytes.fetch_add(bytes_, std::memory_order_relaxed);
    metrics_.scan_nanoseconds.fetch_add(static_cast<uint64_t>(spent_.count()), std::memory_order_relaxed);
  }
  CountedScan(const CountedScan&) = delete;
  CountedScan& operator=(const CountedScan&) = delete;
  void Feed(std::string_view chunk) override {
    auto start = std::chrono::steady_clock::now();
    inner_->Feed(chunk);
    spent_ += std::chrono::steady_clock::now() - start;
    bytes_ += chunk.size();
  }
  rules::v1::Action action_so_far() const override { return inner_->action_so_far(); }
  uint64_t decided_offset() const override { return inner_->decided_offset(); }
  uint64_t threshold_from() const override { return inner_->threshold_from(); }
  dlp::MessageResult Finish() override {
    auto start = std::chrono::steady_clock::now();
    auto result = inner_->Finish();
    spent_ += std::chrono::steady_clock::now() - start;
    return result;
  }

 private:
  dlp::MessageScanPtr inner_;
  ProxyMetrics& metrics_;
  uint64_t bytes_ = 0;
  std::chrono::nanoseconds spent_{0};
};

}  // namespace

struct Connection::Transaction {
  // The request parser's head: the parser is not asked for another head before the
  // transaction ends, so it stays valid (and is not copied per request).
  explicit Transaction(const http1::MessageHead& request_head) : head(request_head) {}
  const http1::MessageHead& head;
  std::string target;  // in origin-form, once known
  std::string path;    // as recorded (RecordedPath), once the URL is scanned
  std::vector<dlp::MessageResult> results;
  uint64_t bytes_out = 0;  // sent to the origin: head and body as framed
  uint64_t bytes_in = 0;
  uint64_t bytes_out_before_block = 0;  // a block after part of the request had left
  bool response_started = false;
  bool upgraded = false;
  bool websocket = false;     // a WebSocket upgrade the proxy inspects (mitm/websocket.h)
  std::string ws_offered;     // the extensions offered upstream, filtered
  ws::DeflateParams ws_params;
  std::string condition;  // a refusal that is not a rule: method_not_allowed, ...
  uint32_t response_status = 0;  // the origin's final status, once relayed
};

Connection::Connection(ProxyShared& shared, dlp::Scanner& scanner, tcp::socket socket, ListenerKind listener)
    : shared_(shared),
      scanner_(scanner),
      listener_(listener),
      id_(shared.next_connection_id.fetch_add(1)),
      client_(std::move(socket)),
      resolver_(client_.socket().get_executor()),
      timer_(client_.socket().get_executor()) {
  conn_id_ = fmt::format("{}-{}", shared_.instance_id, id_);
  error_code ec;
  auto ep = client_.socket().remote_endpoint(ec);
  if (!ec) {
    client_address_ = fmt::format("{}:{}", ep.address().to_string(), ep.port());
    client_ip_ = ParseIp(ep.address().to_string());
  }
  client_.socket().set_option(tcp::no_delay(true), ec);
  deadline_ = std::chrono::steady_clock::now() + shared_.config.header_timeout;
  shared_.counters.active.fetch_add(1);
}

Connection::~Connection() {
  // A transaction whose record was written ahead and never completed (a timeout, the
  // watchdog, a reset): closed now rather than left open until the next start.
  if (auto v = record_.Abandon("interrupted: the connection ended before the transaction completed")) {
    if (shared_.sink) shared_.sink->Submit(std::move(*v));
  }
  ConnectionMode mode = ModeOf(last_mode_.empty() ? mode_ : last_mode_);
  shared_.metrics.CountConnection(mode, outcome_);
  if (spdlog::should_log(spdlog::level::debug)) {
    spdlog::debug("conn={} client={} workload={} host={} mode={} outcome={}", conn_id_, client_address_, workload_,
                  RecordedHost(), kConnectionModeNames[Index(mode)], kConnectionOutcomeNames[Index(outcome_)]);
  }
  shared_.counters.active.fetch_sub(1);
}

void Connection::MapWorkload() {
  workload_.clear();
  const auto workloads = shared_.workloads.load(std::memory_order_acquire);
  if (workloads->empty()) return;  // no map configured: verdict.workload stays empty
  workload_ = "unmapped";
  if (!client_ip_) return;
  for (const auto& [name, cidrs] : *workloads) {
    if (std::any_of(cidrs.begin(), cidrs.end(), [&](const Cidr& c) { return c.Contains(*client_ip_); })) {
      workload_ = name;
      return;
    }
  }
}

dlp::MessageScanPtr Connection::OpenScan(const dlp::ContentHint& hint) {
  return std::make_unique<CountedScan>(scanner_.Open(engine_, hint), shared_.metrics);
}

asio::awaitable<bool> Connection::ReadProxyHeader() {
  const bool trusted_peer = client_ip_ && std::any_of(shared_.proxy_protocol_peers.begin(), shared_.proxy_protocol_peers.end(),
                                                      [&](const Cidr& c) { return c.Contains(*client_ip_); });
  if (!trusted_peer) {
    outcome_ = ConnectionOutcome::kProxyProtocolInvalid;
    spdlog::warn("conn={} peer={} refused: not a trusted PROXY protocol sender (proxy_protocol_peers)", conn_id_,
                 client_address_);
    co_return false;
  }
  while (!finished_) {
    auto r = ParseProxyHeaderV2(client_buf_);
    if (r.status == ProxyHeaderResult::Status::kMalformed) {
      outcome_ = ConnectionOutcome::kProxyProtocolInvalid;
      spdlog::warn("conn={} peer={} refused: {}", conn_id_, client_address_, r.reason);
      co_return false;
    }
    if (r.status == ProxyHeaderResult::Status::kOk) {
      client_buf_.erase(0, r.consumed);
      if (r.header.local) co_return true;  // the redirector's own connection: the peer is the client
      client_ip_ = r.header.source_ip;
      const std::string source = r.header.SourceAddress();
      client_address_ = r.header.ipv4 ? fmt::format("{}:{}", source, r.header.source_port)
                                      : fmt::format("[{}]:{}", source, r.header.source_port);
      if (!shared_.policy->ClientAllowed(*client_ip_)) {
        shared_.counters.rejected_clients.fetch_add(1);
        outcome_ = ConnectionOutcome::kClientNotAllowed;
        spdlog::warn("conn={} client={} refused: not on the client allow-list", conn_id_, client_address_);
        co_return false;
      }
      co_return true;
    }
    error_code ec;
    co_await client_.ReadSome(client_buf_, ec);
    if (ec) {
      if (!client_buf_.empty() || timed_out_) {
        outcome_ = ConnectionOutcome::kProxyProtocolInvalid;
        spdlog::warn("conn={} peer={} refused: {}", conn_id_, client_address_,
                     timed_out_ ? "no complete PROXY v2 header within the header timeout"
                                : "connection closed inside the PROXY v2 header");
      }
      co_return false;
    }
  }
  co_return false;
}

void Connection::Start() {
  auto self = shared_from_this();
  asio::co_spawn(timer_.get_executor(), [self]() { return self->RunWatchdog(); }, asio::detached);
  asio::co_spawn(timer_.get_executor(), [self]() { return self->Run(); }, asio::detached);
}

void Connection::CloseIfIdle() {
  if (idle_) Abort();
  if (on_drain_) on_drain_();
}

void Connection::Arm(std::chrono::milliseconds timeout) {
  auto next = std::chrono::steady_clock::now() + timeout;
  bool earlier = next < deadline_;
  deadline_ = next;
  if (earlier) timer_.cancel();
}

void Connection::Abort() {
  if (finished_) return;
  finished_ = true;
  client_.Close();
  if (upstream_) upstream_->Close();
  resolver_.cancel();
  timer_.cancel();
}

asio::awaitable<void> Connection::RunWatchdog() {
  auto self = shared_from_this();
  while (!finished_) {
    timer_.expires_at(deadline_);
    error_code ec;
    co_await timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (finished_) break;
    if (std::chrono::steady_clock::now() >= deadline_) {
      timed_out_ = true;
      Abort();
      break;
    }
  }
}

v1::Verdict Connection::NewVerdict(const std::string& mode) const {
  v1::Verdict v;
  v.set_id(NewVerdictId());
  auto now = std::chrono::system_clock::now().time_since_epoch();
  auto secs = std::chrono::duration_cast<std::chrono::seconds>(now);
  v.mutable_time()->set_seconds(secs.count());
  v.mutable_time()->set_nanos(static_cast<int32_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(now - secs).count()));
  v.set_appliance(shared_.config.appliance_name);
  v.set_connection_id(conn_id_);
  v.set_client_address(client_address_);
  v.set_workload(workload_);
  v.set_host(RecordedHost());
  v.set_port(port_);
  v.set_mode(mode);
  if (engine_) v.set_rule_pack_version(engine_->pack_version());
  v.set_enforced(shared_.mode() == EnforceMode::kEnforce);
  return v;
}

void Connection::ReportRefusal(std::string reason) {
  auto v = NewVerdict("refuse");
  v.set_action(rules::v1::BLOCK);
  v.set_reason(std::move(reason));
  v.set_enforced(true);
  Report(std::move(v));
}

std::string Connection::RedactForRecord(std::string_view text, bool url) const {
  dlp::EnginePtr engine = engine_ ? engine_ : (shared_.engines ? shared_.engines->Current() : nullptr);
  if (!engine || text.empty()) return url ? StripQueryValues(text) : std::string(text);
  dlp::ContentHint hint;
  hint.is_url = url;
  auto scan = scanner_.Open(engine, hint);
  scan->Feed(url ? http1::PercentDecode(text) : std::string(text));
  auto result = scan->Finish();
  return url ? RecordedPath(text, &result) : RedactSpans(text, result.spans);
}

const std::string& Connection::RecordedHost() const {
  const std::string& name = sni_.empty() ? host_ : sni_;
  if (name != recorded_host_key_ || recorded_host_.empty()) {
    recorded_host_key_ = name;
    recorded_host_ = RedactForRecord(name, false);
  }
  return recorded_host_;
}

bool Connection::Recordable(bool enforce) {
  if (!shared_.sink || shared_.sink->CanAccept()) return true;
  (enforce ? shared_.metrics.unrecordable_closed : shared_.metrics.unrecordable_open).fetch_add(1, std::memory_order_relaxed);
  // Every request meets a full spool while it lasts: one line per 10 s for the whole proxy
  // (the metric counts each), as the reporter's own alarm does.
  static std::atomic<int64_t> last_log_s{INT64_MIN / 2};
  const int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                          std::chrono::steady_clock::now().time_since_epoch()).count();
  int64_t last = last_log_s.load(std::memory_order_relaxed);
  if (now - last >= 10 && last_log_s.compare_exchange_strong(last, now)) {
    spdlog::warn("conn={} client={} the verdict spool is full: {} (logged once per 10 s; "
                 "egressguard_fail_events_total{{cause=\"verdict_unrecordable\"}} counts each)",
                 conn_id_, client_address_, enforce ? "transactions refused (503)" : "forwarded unrecorded (monitor mode)");
  }
  return !enforce;
}

bool Connection::WriteAheadRecord(v1::Verdict verdict, bool enforce) {
  return WriteAheadInto(record_, std::move(verdict), enforce);
}

bool Connection::WriteAheadInto(WriteAhead& record, v1::Verdict verdict, bool enforce) {
  if (!shared_.sink || !shared_.sink->KeepsWriteAhead()) return true;
  if (!verdict.method().empty() && !IsStandardMethod(verdict.method())) {
    verdict.set_method(RedactForRecord(verdict.method(), false));
  }
  record.Open(verdict);
  if (shared_.sink->Submit(std::move(verdict))) return true;
  record.Abandon("");  // not recorded: there is nothing to complete
  (enforce ? shared_.metrics.unrecordable_closed : shared_.metrics.unrecordable_open).fetch_add(1, std::memory_order_relaxed);
  return !enforce;
}

void Connection::Report(v1::Verdict verdict) {
  // A method is any token, digits included: one that is not a standard method is
  // recorded the way any other value is, redacted where the engine matches.
  if (!verdict.method().empty() && !IsStandardMethod(verdict.method())) {
    verdict.set_method(RedactForRecord(verdict.method(), false));
  }
  ConnectionOutcome outcome = OutcomeOf(verdict);
  // A connection is as bad as its worst transaction: a later ok one does not hide a refusal.
  if (outcome != ConnectionOutcome::kOk || outcome_ == ConnectionOutcome::kNoRequest) outcome_ = outcome;
  last_mode_ = verdict.mode();
  if (outcome != ConnectionOutcome::kOk) {
    spdlog::info("conn={} client={} host={}:{} mode={} action={} reason={}", conn_id_, client_address_, verdict.host(),
                 verdict.port(), verdict.mode(), rules::v1::Action_Name(verdict.action()), verdict.reason());
  }
  if (verdict.action() == rules::v1::BLOCK && verdict.enforced()) shared_.counters.blocked.fetch_add(1);
  // A refusal is the sink's to report (the reporter's alarm, rate-limited, and its metric).
  if (shared_.sink) shared_.sink->Submit(std::move(verdict));
}

asio::awaitable<void> Connection::WriteClient(const std::string& data) {
  error_code ec;
  co_await client_.Write(asio::buffer(data), ec);
  if (ec) Abort();
}

asio::awaitable<void> Connection::Respond(int status, const std::string& phrase, const std::string& why, bool json,
                                         const std::string& extra_headers) {
  std::string body = json ? RefusalJson(phrase, why)
                          : fmt::format("<!doctype html><html><head><title>{0} {1}</title></head><body><h1>{0} {1}</h1>"
                                        "<p>egressguard: {2}</p></body></html>\n",
                                        status, HtmlEscape(phrase), HtmlEscape(why));
  std::string response = fmt::format(
      "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\nCache-Control: no-store\r\n{}\r\n{}",
      status, phrase, json ? "application/json" : "text/html; charset=utf-8", body.size(), extra_headers, body);
  co_await WriteClient(response);
  co_await LingerClient();
}

asio::awaitable<void> Connection::LingerClient() {
  // Every answer from the proxy itself ends the connection. Closing a socket with unread
  // request bytes resets it, and the client might lose the answer; so read and discard
  // what is still in flight first (bounded in time and bytes).
  if (finished_) co_return;
  Arm(std::chrono::milliseconds(2000));
  error_code ec;
  if (!client_.is_tls()) client_.socket().shutdown(tcp::socket::shutdown_send, ec);
  std::string discard;
  size_t total = 0;
  while (!finished_ && total < (64u << 20)) {
    size_t n = co_await client_.ReadSome(discard, ec);
    if (ec) break;
    total += n;
    discard.clear();
  }
  Abort();
}

asio::awaitable<bool> Connection::ReadRequestHead(http1::Parser& parser, std::string& error) {
  while (true) {
    auto r = parser.Parse(client_buf_);
    if (r.event == http1::Event::kError) {
      error = parser.error();
      co_return false;
    }
    client_buf_.erase(0, r.consumed);
    if (r.event == http1::Event::kHeadComplete) co_return true;
    if (r.event == http1::Event::kMessageComplete || r.consumed > 0) continue;
    error_code ec;
    // Between keep-alive requests the client has just got its answer: nothing to read yet.
    co_await client_.ReadSome(client_buf_, ec, /*expect_wait=*/client_buf_.empty() && idle_);
    if (ec) {
      error = client_buf_.empty() ? "" : "connection closed inside a request head";
      co_return false;
    }
  }
}

asio::awaitable<void> Connection::Run() {
  auto self = shared_from_this();
  http1::Parser parser(http1::Parser::Kind::kRequest,
                       http1::Limits{shared_.config.max_head_bytes, shared_.config.max_header_count});
  std::string error;
  Arm(shared_.config.header_timeout);
  if (shared_.config.proxy_protocol && !co_await ReadProxyHeader()) {
    Abort();
    co_return;
  }
  MapWorkload();
  if (listener_ != ListenerKind::kExplicit) {
    co_await HandleRedirected();
    Abort();
    co_return;
  }
  if (!co_await ReadRequestHead(parser, error)) {
    if (!error.empty() && !finished_) co_await Respond(400, "Bad Request", error, false);
    Abort();
    co_return;
  }
  const auto& head = parser.head();
  if (shared_.auth && !shared_.auth->Check(head.Get("proxy-authorization").value_or(""))) {
    auto v = NewVerdict("refuse");
    v.set_method(head.method);
    v.set_action(rules::v1::BLOCK);
    v.set_reason("proxy_auth_required");
    v.set_enforced(true);
    Report(std::move(v));
    co_await Respond(407, "Proxy Authentication Required", "proxy_auth_required", true,
                     fmt::format("Proxy-Authenticate: {}\r\n", shared_.auth->challenge()));
    Abort();
    co_return;
  }
  if (head.method == "CONNECT") {
    co_await HandleConnect(head);
  } else if (head.target.size() > 7 && std::equal(head.target.begin(), head.target.begin() + 7, "http://",
                                                  [](char a, char b) { return (a | 0x20) == b; })) {
    mode_ = "plain";
    fixed_upstream_ = false;
    co_await HttpLoop(&parser);
  } else {
    co_await Respond(400, "Bad Request", "expected CONNECT host:port or an absolute http:// URL", false);
  }
  Abort();
}

asio::awaitable<bool> Connection::ConnectUpstream(const std::string& host, uint16_t port, std::string& error) {
  Arm(shared_.config.handshake_timeout);
  error_code ec;
  auto results = co_await resolver_.async_resolve(host, std::to_string(port), asio::redirect_error(asio::use_awaitable, ec));
  if (ec || finished_) {
    // The host is in the verdict (redacted); a reason never repeats it raw.
    error = fmt::format("cannot resolve the destination: {}", ec.message());
    co_return false;
  }
  tcp::socket socket(timer_.get_executor());
  co_await asio::async_connect(socket, results, asio::redirect_error(asio::use_awaitable, ec));
  if (ec || finished_) {
    error = fmt::format("cannot connect to the destination (port {}): {}", port, ec ? ec.message() : "timed out");
    co_return false;
  }
  socket.set_option(tcp::no_delay(true), ec);
  if (upstream_) upstream_->Close();
  upstream_.emplace(std::move(socket));
  co_return true;
}

asio::awaitable<void> Connection::HandleConnect(const http1::MessageHead& head) {
  auto hp = ParseHostPort(head.target, 0);
  if (!hp.ok()) {
    co_await Respond(400, "Bad Request", std::string(hp.status().message()), false);
    co_return;
  }
  host_ = hp->host;
  port_ = hp->port;
  auto decision = shared_.policy->Decide(host_, port_);
  if (decision.action == PolicyAction::kRefuse) {
    auto v = NewVerdict("refuse");
    v.set_method("CONNECT");
    v.set_action(rules::v1::BLOCK);
    v.set_reason(decision.reason);
    v.set_enforced(true);
    Report(std::move(v));
    co_await Respond(403, "Forbidden", decision.reason, true);
    co_return;
  }
  std::string error;
  if (!co_await ConnectUpstream(host_, port_, error)) {
    auto v = NewVerdict("refuse");
    v.set_method("CONNECT");
    v.set_action(rules::v1::BLOCK);
    v.set_reason("upstream_unreachable: " + error);
    Report(std::move(v));
    if (!finished_) co_await Respond(502, "Bad Gateway", error, false);
    co_return;
  }
  co_await WriteClient("HTTP/1.1 200 Connection established\r\n\r\n");
  std::string peeked = std::move(client_buf_);
  client_buf_.clear();
  co_await DispatchTls(std::move(peeked));
}

// Peeks the ClientHello ourselves: the policy needs the SNI before any TLS answer.
asio::awaitable<void> Connection::DispatchTls(std::string peeked) {
  ClientHelloResult hello;
  while (!finished_) {
    hello = ParseClientHello(peeked);
    if (hello.status != ClientHelloResult::Status::kNeedMore) break;
    error_code ec;
    co_await client_.ReadSome(peeked, ec);
    if (ec) co_return;  // client went away (or the handshake timeout fired) before a hello
  }
  if (finished_) co_return;
  if (hello.status == ClientHelloResult::Status::kMalformed ||
      (hello.status == ClientHelloResult::Status::kNotTls && shared_.config.refuse_non_tls)) {
    ReportRefusal(hello.status == ClientHelloResult::Status::kNotTls ? "not_tls" : "malformed_client_hello: " + hello.reason);
    co_return;
  }
  if (hello.status == ClientHelloResult::Status::kNotTls) {
    // Configured to pass plaintext through CONNECT: frame it as HTTP when it is, scanned.
    mode_ = "plain";
    client_buf_ = std::move(peeked);
    if (!upstream_ && !co_await ConnectRedirected(false)) co_return;
    co_await HttpLoop(nullptr);
    co_return;
  }
  sni_ = hello.info.sni;
  client_alpn_ = hello.info.alpn;
  if (auto refusal = TakeRedirectedDestination(); !refusal.empty()) {
    ReportRefusal(refusal);
    co_return;
  }
  auto decision = shared_.policy->Decide(host_, port_, sni_);
  if (decision.action == PolicyAction::kRefuse) {
    ReportRefusal(decision.reason);
    co_return;
  }
  if (!upstream_ && !co_await ConnectRedirected(decision.action == PolicyAction::kSplice)) co_return;
  if (decision.action == PolicyAction::kSplice) {
    mode_ = "splice";
    // The record before the ClientHello goes on; RawRelay's verdict completes it.
    auto v = NewVerdict(mode_);
    v.set_action(rules::v1::ALLOW);
    v.set_reason("no_decrypt");
    if (!WriteAheadRecord(std::move(v), shared_.mode() == EnforceMode::kEnforce)) {
      ReportRefusal("verdict_unrecordable");
      co_return;
    }
    error_code ec;
    co_await upstream_->Write(asio::buffer(peeked), ec);
    if (ec) co_return;
    co_await RawRelay(false, peeked.size());
    co_return;
  }
  co_await Bump(peeked);
}

asio::awaitable<void> Connection::Bump(const std::string& peeked) {
  mode_ = "bump";
  const std::string verify_name = sni_.empty() ? host_ : sni_;
  bool is_ip = ParseIp(verify_name).has_value();
  SSL* ussl = upstream_->StartTls(shared_.upstream_tls.native_handle());
  if (ussl == nullptr) {
    ReportRefusal("upstream_tls_failed: out of memory");
    co_return;
  }
  if (!is_ip) SSL_set_tlsext_host_name(ussl, verify_name.c_str());
  // The origin is offered what the client offered (of h2 and http/1.1): see mitm/alpn.h.
  if (std::string offer = AlpnOfferFor(client_alpn_); !offer.empty()) {
    SSL_set_alpn_protos(ussl, reinterpret_cast<const unsigned char*>(offer.data()), static_cast<unsigned int>(offer.size()));
  }
  // The chain is verified against the trust store by OpenSSL during the handshake, and
  // the name here is part of that verification; the result is checked below, never skipped.
  X509_VERIFY_PARAM* param = SSL_get0_param(ussl);
  // As a browser does: the name must be in the subjectAltName; a subject CN never stands in.
  X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS | X509_CHECK_FLAG_NEVER_CHECK_SUBJECT);
  int name_ok = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(param, verify_name.c_str())
                      : X509_VERIFY_PARAM_set1_host(param, verify_name.c_str(), verify_name.size());
  auto fail = [&](std::string reason) {
    auto v = NewVerdict("bump");
    v.set_action(rules::v1::BLOCK);
    v.set_reason(std::move(reason));
    Report(std::move(v));
  };
  if (name_ok != 1) {
    fail("upstream_cert_invalid: cannot set the expected name");
    co_return;
  }
  Arm(shared_.config.handshake_timeout);
  error_code ec;
  co_await upstream_->Handshake(/*server=*/false, ec);
  if (ec || finished_) {
    shared_.metrics.handshake_failures[Index(timed_out_ ? HandshakeFailure::kUpstreamTimeout : HandshakeFailure::kUpstreamError)]
        .fetch_add(1, std::memory_order_relaxed);
    fail("upstream_tls_failed: " + (timed_out_ || !ec ? std::string("timed out") : ec.message()));
    co_return;
  }
  X509* peer = SSL_get0_peer_certificate(ussl);
  long verify = SSL_get_verify_result(ussl);
  std::string bad_cert;
  if (peer == nullptr) {
    shared_.metrics.upstream_verify_failures[Index(UpstreamVerifyFailure::kNoCertificate)].fetch_add(1, std::memory_order_relaxed);
    fail("upstream_cert_invalid: no certificate presented");
    co_return;
  }
  if (verify != X509_V_OK) {
    bad_cert = X509_verify_cert_error_string(verify);
    shared_.metrics.upstream_verify_failures[Index(VerifyFailureOf(verify))].fetch_add(1, std::memory_order_relaxed);
  } else if (auto problem = ServerLeafProblem(peer, KeyUseOf(ussl)); !problem.empty()) {
    // The chain verified, but the leaf is not a TLS server certificate (a CA, wrong key usage).
    bad_cert = std::move(problem);
    shared_.metrics.upstream_verify_failures[Index(UpstreamVerifyFailure::kNotServerLeaf)].fetch_add(1, std::memory_order_relaxed);
  }
  if (!bad_cert.empty()) {
    // Never send anything on to an origin we could not verify.
    upstream_->Close();
  }

  // A bad upstream still gets a leaf, so the client can be told why in a 502 page instead
  // of a bare TLS failure. It names what the client asked for (not the origin's possibly
  // wrong names and dates), so a client that verifies us reads the page; that upgrades no
  // trust, because nothing is ever forwarded on it. It is minted from a stand-in with its
  // own fingerprint, so the leaf cache never serves it to a good connection, nor a good
  // connection's leaf to a bad one.
  ca::X509Ptr surrogate;
  if (!bad_cert.empty()) {
    surrogate = RefusalSurrogate(verify_name, std::time(nullptr));
    if (!surrogate) {
      fail("upstream_cert_invalid: " + bad_cert);
      co_return;
    }
  }
  auto leaf = shared_.minter->MintFor(surrogate ? surrogate.get() : peer, sni_);
  if (!leaf.ok()) {
    fail("mint_failed: " + std::string(leaf.status().message()));
    co_return;
  }
  leaf_ = *std::move(leaf);
  SSL* cssl = client_.StartTls(shared_.client_tls.native_handle(), peeked);
  if (cssl == nullptr || SSL_use_certificate(cssl, leaf_->cert) != 1 || SSL_use_PrivateKey(cssl, leaf_->key) != 1) {
    fail("mint_failed: leaf not usable");
    co_return;
  }
  // The client gets the origin's protocol; a refused origin's 502 page is HTTP/1.1.
  SetOriginProtocol(cssl, bad_cert.empty() ? NegotiatedProtocol(ussl) : AppProtocol::kHttp11);
  if (leaf_->chain != nullptr) {
    for (int i = 0; i < sk_X509_num(leaf_->chain); ++i) SSL_add1_chain_cert(cssl, sk_X509_value(leaf_->chain, i));
  }
  co_await client_.Handshake(/*server=*/true, ec);
  if (ec || finished_) {
    shared_.metrics.handshake_failures[Index(timed_out_ ? HandshakeFailure::kClientTimeout : HandshakeFailure::kClientError)]
        .fetch_add(1, std::memory_order_relaxed);
    auto v = NewVerdict("bump");
    v.set_action(rules::v1::ALLOW);
    v.set_reason("client_tls_failed: " + (timed_out_ || !ec ? std::string("timed out") : ec.message()));
    Report(std::move(v));
    co_return;
  }
  if (!bad_cert.empty()) {
    co_await AnswerBadUpstream(bad_cert);
    co_return;
  }
  if (NegotiatedProtocol(cssl) == AppProtocol::kH2) {
    co_await Http2Relay();
    co_return;
  }
  co_await HttpLoop(nullptr);
  if (!finished_) {
    Arm(std::chrono::milliseconds(1000));
    co_await client_.ShutdownSend();
  }
}

asio::awaitable<void> Connection::AnswerBadUpstream(const std::string& detail) {
  http1::Parser parser(http1::Parser::Kind::kRequest,
                       http1::Limits{shared_.config.max_head_bytes, shared_.config.max_header_count});
  Arm(shared_.config.header_timeout);
  std::string error;
  auto v = NewVerdict("bump");
  if (co_await ReadRequestHead(parser, error)) {
    v.set_method(parser.head().method);
    v.set_path(RedactForRecord(parser.head().target, true));
  }
  v.set_action(rules::v1::BLOCK);
  v.set_reason("upstream_cert_invalid: " + detail);
  v.set_enforced(true);
  Report(std::move(v));
  if (!finished_) {
    co_await Respond(502, "Bad Gateway", "the origin's certificate is not valid (" + detail + "); the request was not sent",
                     false);
    Arm(std::chrono::milliseconds(1000));
    co_await client_.ShutdownSend();
  }
}

asio::awaitable<void> Connection::HttpLoop(http1::Parser* first) {
  const auto& cfg = shared_.config;
  bool enforce = false;
  http1::Parser own(http1::Parser::Kind::kRequest, http1::Limits{cfg.max_head_bytes, cfg.max_header_count});
  http1::Parser& req = first ? *first : own;
  // One response parser for the connection: its header storage serves every response.
  http1::Parser resp(http1::Parser::Kind::kResponse, http1::Limits{cfg.max_head_bytes, cfg.max_header_count});
  bool have_head = first != nullptr;
  bool first_message = true;

  while (!finished_) {
    // Per transaction: an activation that changes the mode applies to the next request.
    enforce = shared_.mode() == EnforceMode::kEnforce;
    if (!have_head) {
      // A decrypted stream that is not HTTP is relayed raw, scanned per connection.
      if (first_message && fixed_upstream_) {
        Arm(cfg.header_timeout);
        while (!finished_ && !LooksLikeHttp(client_buf_).has_value()) {
          error_code ec;
          co_await client_.ReadSome(client_buf_, ec);
          if (ec) co_return;
        }
        if (finished_) co_return;
        if (!*LooksLikeHttp(client_buf_)) {
          // What the proxy cannot parse it does not relay in enforce mode, unless the
          // destination is listed for a raw relay (scanned, nothing undecided forwarded).
          if (enforce && !shared_.policy->RawRelayAllowed(host_, port_, sni_)) {
            ReportRefusal("unparsed_protocol");
            co_return;
          }
          co_await RawRelay(true, 0);
          co_return;
        }
      }
      idle_ = client_buf_.empty();
      if (idle_ && shared_.draining.load()) co_return;
      Arm(idle_ ? cfg.idle_timeout : cfg.header_timeout);
      std::string error;
      bool ok = co_await ReadRequestHead(req, error);
      idle_ = false;
      if (!ok) {
        if (!error.empty() && !finished_) {
          auto v = NewVerdict(mode_);
          v.set_action(rules::v1::BLOCK);
          v.set_reason("malformed_http: " + error);
          v.set_enforced(true);
          Report(std::move(v));
          co_await Respond(400, "Bad Request", error, false);
        }
        co_return;
      }
    }
    have_head = false;
    first_message = false;
    shared_.counters.transactions.fetch_add(1);

    Transaction tx(req.head());
    const auto& head = tx.head;
    tx.results.reserve(3);  // URL, header block, body
    auto refuse = [&](int status, const char* phrase, const std::string& condition) -> asio::awaitable<void> {
      auto v = NewVerdict(mode_);
      record_.Complete(v);  // refused after its write-ahead record (an Upgrade): that record's end
      v.set_method(head.method);
      // Refused before the URL scan: the path is scanned for the record alone.
      v.set_path(tx.path.empty() ? RedactForRecord(tx.target, true) : tx.path);
      v.set_action(rules::v1::BLOCK);
      v.set_reason(condition);
      v.set_enforced(true);
      Report(std::move(v));
      co_await Respond(status, phrase, condition, true);
    };

    // Where the request goes, and its target in origin-form.
    std::string origin_target = head.target;
    if (!fixed_upstream_) {
      std::string_view rest = std::string_view(head.target).substr(7);  // after "http://"
      size_t slash = rest.find_first_of("/?");
      std::string_view authority = rest.substr(0, slash);
      origin_target = slash == std::string_view::npos ? "/" : std::string(rest.substr(slash));
      if (!origin_target.empty() && origin_target[0] == '?') origin_target = "/" + origin_target;
      auto hp = ParseHostPort(authority, 80);
      tx.target = origin_target;
      if (!hp.ok()) {
        co_await refuse(400, "Bad Request", "bad authority in request target");
        co_return;
      }
      host_ = hp->host;
      port_ = hp->port;
      std::string key = fmt::format("{}:{}", host_, port_);
      if (key != upstream_authority_) {
        auto decision = shared_.policy->Decide(host_, port_);
        if (decision.action == PolicyAction::kRefuse) {
          co_await refuse(403, "Forbidden", decision.reason);
          co_return;
        }
        std::string error;
        upstream_buf_.clear();
        if (!co_await ConnectUpstream(host_, port_, error)) {
          auto v = NewVerdict(mode_);
          v.set_method(head.method);
          v.set_path(RedactForRecord(tx.target, true));
          v.set_action(rules::v1::BLOCK);
          v.set_reason("upstream_unreachable: " + error);
          Report(std::move(v));
          if (!finished_) co_await Respond(502, "Bad Gateway", error, false);
          co_return;
        }
        upstream_authority_ = key;
      }
    } else if (head.target.empty() || head.target[0] != '/') {
      tx.target = head.target;
      co_await refuse(400, "Bad Request", "expected an origin-form request target");
      co_return;
    }
    tx.target = origin_target;
    if (head.method == "CONNECT") {
      co_await refuse(405, "Method Not Allowed", "CONNECT inside a tunnel");
      co_return;
    }
    if (!shared_.policy->MethodAllowed(host_, port_, head.method)) {
      co_await refuse(403, "Forbidden", "method_not_allowed");
      co_return;
    }
    engine_ = shared_.engines ? shared_.engines->Current() : nullptr;
    if (!engine_ && !cfg.fail_open) {
      shared_.metrics.fail_closed.fetch_add(1, std::memory_order_relaxed);
      co_await refuse(403, "Forbidden", "engine_unavailable");
      co_return;
    }
    if (!engine_) shared_.metrics.fail_open.fetch_add(1, std::memory_order_relaxed);

    // The URL (decoded) and the header block are scanned before anything is sent on.
    dlp::MessageScanPtr body_scan;
    if (engine_) {
      dlp::ContentHint url_hint;
      url_hint.is_url = true;
      auto url_scan = OpenScan(url_hint);
      url_scan->Feed(http1::PercentDecode(origin_target));
      tx.results.push_back(url_scan->Finish());
      tx.path = RecordedPath(origin_target, &tx.results.back());
      // The header block goes to the engine in one piece: the same stream of bytes as a
      // feed per part, without the per-feed cost four times per header.
      std::string& block = header_block_;
      block.clear();
      for (const auto& h : head.headers) block.append(h.name).append(": ").append(h.value).append("\r\n");
      auto header_scan = OpenScan(dlp::ContentHint{});
      header_scan->Feed(block);
      if (block.capacity() > Stream::kKeptCapacity) std::string().swap(block);  // a large one is not kept while idle
      tx.results.push_back(header_scan->Finish());
      // A request without a body (most GETs) has nothing for a body scan to see.
      if (head.chunked || head.content_length.value_or(0) > 0) {
        dlp::ContentHint body_hint;
        body_hint.content_type = std::string(head.Get("content-type").value_or(""));
        body_hint.content_encoding = head.GetList("content-encoding");
        body_scan = OpenScan(body_hint);
      }
    }
    if (tx.path.empty()) tx.path = StripQueryValues(origin_target);  // no engine: nothing to redact with
    auto verdict = [&](const std::string& extra_reason) {
      auto v = NewVerdict(mode_);
      v.set_method(head.method);
      v.set_path(tx.path);
      v.set_bytes_out(tx.bytes_out);
      v.set_bytes_in(tx.bytes_in);
      v.set_bytes_out_before_block(tx.bytes_out_before_block);
      for (const auto& r : tx.results) {
        for (const auto& f : r.findings) *v.add_findings() = f;
      }
      Action action = Strongest(tx.results);
      std::string reason = extra_reason.empty() ? ReasonFor(tx.results, action) : extra_reason;
      if (engine_ == nullptr && extra_reason.empty()) reason = "engine_unavailable (fail open)";
      if (!tx.condition.empty()) {  // blocked by the proxy itself, not by a rule
        action = rules::v1::BLOCK;
        reason = tx.condition;
      }
      v.set_action(action);
      v.set_reason(reason);
      v.set_response_status(tx.response_status);
      return v;
    };
    auto report = [&](const std::string& extra_reason) {
      auto v = verdict(extra_reason);
      record_.Complete(v);
      Report(std::move(v));
    };
    auto block = [&]() -> asio::awaitable<void> {
      std::string why = BlockedWhy(tx.results, tx.condition);
      report("");
      co_await Respond(403, "Forbidden", why, true);
    };
    if (enforce && Strongest(tx.results) == rules::v1::BLOCK) {
      co_await block();
      co_return;
    }
    // Nothing leaves without its record: in enforce mode a transaction whose verdict the
    // spool cannot take is refused before its first byte goes upstream.
    if (!Recordable(enforce)) {
      co_await refuse(503, "Service Unavailable", "verdict_unrecordable: the verdict spool is full");
      co_return;
    }
    // Its record is written before anything can go upstream (the head leaves with the first
    // released body bytes, or at once in monitor mode).
    if (!WriteAheadRecord(verdict(""), enforce)) {
      co_await refuse(503, "Service Unavailable", "verdict_unrecordable: the verdict spool is full");
      co_return;
    }

    // A body leaves re-framed by the proxy (mitm/body_relay.h), so the Trailer field that
    // announced trailers it drops goes too.
    static const std::vector<std::string_view> kDrop = {"proxy-connection", "proxy-authorization", "trailer"};
    static const std::vector<std::string_view> kDropExpect = {"proxy-connection", "proxy-authorization", "trailer",
                                                              "expect"};
    std::string out_head = http1::SerializeRequestHead(head, origin_target, head.expect_continue ? kDropExpect : kDrop);
    bool has_body = head.chunked || head.content_length.value_or(0) > 0;
    tx.websocket = head.upgrade && head.method == "GET" && IsWebSocketUpgrade(head);
    if (tx.websocket) {
      // Only extensions the inspector can read are offered to the origin (RFC 7692
      // permessage-deflate); the rest are dropped, so nothing is negotiated unread.
      std::string offered;
      for (const auto& h : head.headers) {
        if (!EqualsLower(h.name, "sec-websocket-extensions")) continue;
        if (!offered.empty()) offered += ", ";
        offered += h.value;
      }
      tx.ws_offered = ws::FilterOfferedExtensions(offered);
      static const std::vector<std::string_view> kDropWs = {"proxy-connection", "proxy-authorization", "trailer",
                                                            "sec-websocket-extensions"};
      out_head = http1::SerializeRequestHead(head, origin_target, kDropWs);
      if (!tx.ws_offered.empty()) {
        out_head.insert(out_head.size() - 2, "Sec-WebSocket-Extensions: " + tx.ws_offered + "\r\n");
      }
    } else if (head.upgrade && enforce && !shared_.policy->RawRelayAllowed(host_, port_, sni_)) {
      // After a 101 the stream is a protocol the proxy does not parse: not relayed.
      co_await refuse(403, "Forbidden", "unparsed_protocol: Upgrade " + std::string(head.Get("upgrade").value_or("")));
      co_return;
    }
    // The proxy answers 100-continue itself: it reads (and in enforce mode holds) the body
    // before the origin sees any of it.
    if (head.expect_continue && has_body) co_await WriteClient("HTTP/1.1 100 Continue\r\n\r\n");

    // The head leaves with the first body bytes released (in enforce mode not before the
    // hold ends), then only what BodyRelay releases.
    BodyRelay body(BodyRelay::Options{head.chunked, enforce, cfg.hold_limit}, body_scan.get());
    std::string wire;  // released body bytes, framed, not sent yet
    bool head_sent = false;
    error_code ec;
    bool upstream_failed = false;
    // Sends the head (the first time) and `wire` to the origin, and empties it: what the
    // socket takes at once without a coroutine (nearly always), the rest with one.
    auto send_wire = [&]() -> asio::awaitable<void> {
      if (!head_sent) {
        wire.insert(0, out_head);  // one write: head and first body bytes in one record
        head_sent = true;
      }
      if (wire.empty() || upstream_failed) {
        wire.clear();
        co_return;
      }
      tx.bytes_out += wire.size();
      asio::const_buffer rest = asio::buffer(wire);
      error_code wec;
      if (!upstream_->WriteNow(rest, wec) && !wec) co_await upstream_->Write(rest, wec);
      if (wec) upstream_failed = true;
      wire.clear();
    };
    if (!enforce) co_await send_wire();

    bool blocked = false;
    Arm(cfg.idle_timeout);
    while (!finished_) {
      auto r = req.Parse(client_buf_);
      if (r.event == http1::Event::kError) {
        if (upstream_) upstream_->Close();
        auto v = NewVerdict(mode_);
        record_.Complete(v);
        v.set_method(head.method);
        v.set_path(tx.path);
        v.set_action(rules::v1::BLOCK);
        v.set_reason("malformed_http: " + req.error());
        v.set_bytes_out(tx.bytes_out);
        v.set_bytes_out_before_block(tx.bytes_out);
        v.set_enforced(true);
        Report(std::move(v));
        co_await Respond(400, "Bad Request", req.error(), false);
        co_return;
      }
      if (r.event == http1::Event::kBody) body.Add(r.body);
      if (r.consumed > 0) {
        client_buf_.erase(0, r.consumed);
        if (enforce && body_scan && body_scan->action_so_far() == rules::v1::BLOCK) {
          blocked = true;
          break;
        }
        body.TakeReady(&wire);
        if (body.overflowed()) {
          tx.condition = "undecided_overflow";
          blocked = true;
          break;
        }
        if (!wire.empty()) co_await send_wire();
        Arm(cfg.idle_timeout);
      }
      if (r.event == http1::Event::kMessageComplete) break;
      if (r.event == http1::Event::kNeedMore && r.consumed == 0) {
        co_await client_.ReadSome(client_buf_, ec);
        if (ec) {
          // The client left mid-request: what was forwarded stays forwarded (every byte of
          // it decided); the undecided rest never leaves.
          if (upstream_) upstream_->Close();
          report("client_aborted");
          co_return;
        }
      }
    }
    if (finished_) co_return;
    if (body_scan) tx.results.push_back(body_scan->Finish());
    if (enforce && (blocked || Strongest(tx.results) == rules::v1::BLOCK)) {
      // Part of the body went out (every byte of it decided clean): reset the origin so
      // it cannot take the truncated request as whole, and say how much had left.
      if (head_sent) upstream_->Close();
      tx.bytes_out_before_block = tx.bytes_out;
      co_await block();
      co_return;
    }
    body.TakeRest(&wire);
    co_await send_wire();

    int next = co_await RelayResponse(tx, resp) ? 1 : 0;
    if (tx.upgraded) {
      report("");
      if (tx.websocket) {
        co_await WebSocketRelay(tx.ws_params, tx.path);
      } else {
        co_await RawRelay(true, 0);
      }
      co_return;
    }
    if (!tx.condition.empty()) {  // the origin's answer was refused (RelayResponse said why)
      report("");
      co_return;
    }
    report(next == 1 || tx.response_started ? "" : "upstream_failed");
    if (next == 0 || !head.keep_alive || shared_.draining.load()) co_return;
  }
}

asio::awaitable<bool> Connection::RelayResponse(Transaction& tx, http1::Parser& resp) {
  const auto& cfg = shared_.config;
  resp.SetRequestMethod(tx.head.method);
  dlp::MessageScanPtr scan;
  int status = 0;
  // Parsed bytes at the front of upstream_buf_ not yet sent: a head and the body bytes that
  // came with it leave in one write (one TLS record, one segment), not one per event.
  size_t ready = 0;
  // Called once the `ready` bytes went out (WriteNow, or Write when the socket was full):
  // no coroutine lambda, whose frame per call showed in the per-request profile.
  auto flushed = [&]() {
    tx.response_started = true;
    tx.bytes_in += ready;
    upstream_buf_.erase(0, ready);
    ready = 0;
    Arm(cfg.idle_timeout);
  };
  Arm(cfg.idle_timeout);
  while (!finished_) {
    auto r = resp.Parse(std::string_view(upstream_buf_).substr(ready));
    if (r.event == http1::Event::kError) {
      if (ready > 0) {
        error_code ec;
        asio::const_buffer rest = asio::buffer(upstream_buf_.data(), ready);
        if (!client_.WriteNow(rest, ec)) co_await client_.Write(rest, ec);
        if (ec) co_return false;
        flushed();
      }
      if (!tx.response_started) co_await Respond(502, "Bad Gateway", "bad response from origin: " + resp.error(), false);
      co_return false;
    }
    if (r.event == http1::Event::kHeadComplete) {
      status = resp.head().status;
      if (status >= 200 || status == 101) tx.response_status = static_cast<uint32_t>(status);
      if (status == 101 && tx.websocket) {
        // The origin may only accept what was offered, and only what the inspector reads.
        auto params = ws::ParseAcceptedExtensions(resp.head().Get("sec-websocket-extensions").value_or(""), tx.ws_offered);
        if (!params.ok()) {
          tx.condition = "unparsed_protocol: " + std::string(params.status().message());
          co_await Respond(502, "Bad Gateway", "the origin's WebSocket handshake cannot be inspected: " +
                                                   std::string(params.status().message()), false);
          co_return false;
        }
        tx.ws_params = *params;
      }
      if (cfg.scan_responses && engine_ && status >= 200) {
        dlp::ContentHint hint;
        hint.content_type = std::string(resp.head().Get("content-type").value_or(""));
        hint.content_encoding = resp.head().GetList("content-encoding");
        scan = OpenScan(hint);
      }
    }
    if (r.event == http1::Event::kBody && scan) scan->Feed(r.body);
    ready += r.consumed;
    if (ready > 0 && (r.event == http1::Event::kMessageComplete || (r.event == http1::Event::kNeedMore && r.consumed == 0))) {
      error_code ec;
      asio::const_buffer rest = asio::buffer(upstream_buf_.data(), ready);
      if (!client_.WriteNow(rest, ec)) co_await client_.Write(rest, ec);
      if (ec) co_return false;
      flushed();
    }
    if (r.event == http1::Event::kMessageComplete) {
      if (status == 101 && tx.head.upgrade) {
        tx.upgraded = true;
        co_return false;
      }
      if (status >= 100 && status < 200) continue;  // interim response; the final one follows
      if (scan) {
        auto result = scan->Finish();
        // Responses are reported, never blocked: record their findings as alerts at most.
        if (result.action == rules::v1::BLOCK) result.action = rules::v1::ALERT;
        tx.results.push_back(std::move(result));
      }
      co_return resp.head().keep_alive;
    }
    if (r.event == http1::Event::kNeedMore && r.consumed == 0) {
      error_code ec;
      // The request was just sent: the first read waits for the answer without trying.
      co_await upstream_->ReadSome(upstream_buf_, ec, /*expect_wait=*/!tx.response_started && upstream_buf_.empty());
      if (ec) {
        auto end = resp.Eof();
        if (end.event == http1::Event::kMessageComplete) {
          if (scan) tx.results.push_back(scan->Finish());
          co_return false;
        }
        if (!tx.response_started && !finished_) {
          co_await Respond(502, "Bad Gateway", "the origin closed the connection without a complete response", false);
        }
        co_return false;
      }
    }
  }
  co_return false;
}

asio::awaitable<void> Connection::Pump(Stream& from, Stream& to, std::string initial, dlp::MessageScan* scan,
                                       uint64_t& counter) {
  const bool enforce = shared_.mode() == EnforceMode::kEnforce;
  std::string chunk = std::move(initial);  // ReadSome gives its storage back while the direction waits
  HoldBuffer held;  // enforce: scanned bytes the engine has not decided yet
  uint64_t fed = 0;
  size_t release = 0;  // bytes at the front of `held` being written
  // Monitor mode forwards at once; enforce mode only what the scan has decided (the
  // undecided tail waits for more bytes or for the end of the stream). Returns the bytes
  // to write now, or nullopt when the stream is blocked.
  auto admit = [&](std::string_view data) -> std::optional<std::string_view> {
    release = 0;
    if (scan == nullptr) return data;
    scan->Feed(data);
    fed += data.size();
    if (!enforce) return data;
    if (scan->action_so_far() == rules::v1::BLOCK) return std::nullopt;
    held.Append(data);
    if (fed - std::min(fed, scan->decided_offset()) > shared_.config.hold_limit) {  // cannot decide: fail closed
      raw_overflow_ = true;
      return std::nullopt;
    }
    const uint64_t sent = fed - held.size();
    const uint64_t until = std::min(dlp::HoldFrom(*scan, fed, shared_.config.hold_limit), fed);
    if (until > sent) release = static_cast<size_t>(until - sent);
    return held.view().substr(0, release);
  };
  error_code ec;
  bool first = true;
  while (!finished_) {
    if (!first || chunk.empty()) {
      chunk.clear();
      co_await from.ReadSome(chunk, ec);
    }
    first = false;
    if (ec) {
      const error_code read_ec = ec;
      // The stream ended: the held tail leaves only if the final verdict lets it.
      if (!held.empty()) {
        if (scan->Finish().action == rules::v1::BLOCK) break;
        co_await to.Write(asio::buffer(held.view().data(), held.size()), ec);
        if (ec) break;
        counter += held.size();
        held.Clear();
      }
      if (read_ec == asio::error::eof && !to.is_tls() && !from.is_tls()) {
        // TCP half-close: pass the FIN on and let the other direction finish.
        co_await to.ShutdownSend();
        co_return;
      }
      // Over TLS a close ends both directions (a TLS shutdown cannot run beside a read).
      break;
    }
    const auto out = admit(chunk);
    if (!out) break;
    if (!out->empty()) {
      co_await to.Write(asio::buffer(out->data(), out->size()), ec);
      if (ec) break;
      counter += out->size();
      Arm(shared_.config.idle_timeout);
    }
    if (release > 0) held.Drop(release);
  }
  Abort();
}

asio::awaitable<void> Connection::RawRelay(bool scan_client_bytes, uint64_t already_out) {
  auto self = shared_from_this();
  dlp::MessageScanPtr scan;
  if (scan_client_bytes) {
    if (!engine_ && shared_.engines) engine_ = shared_.engines->Current();
    if (engine_) {
      scan = OpenScan(dlp::ContentHint{});
    } else {
      shared_.metrics.fail_open.fetch_add(1, std::memory_order_relaxed);
    }
  }
  uint64_t out = already_out;
  uint64_t in = 0;
  bool other_done = false;
  asio::steady_timer done(timer_.get_executor());
  done.expires_at(std::chrono::steady_clock::time_point::max());
  std::string up_initial = std::move(upstream_buf_);
  std::string client_initial = std::move(client_buf_);
  if (!record_.open()) {
    // The stream's record before its first byte goes on (what is known: who, where).
    auto v = NewVerdict(mode_);
    v.set_bytes_out(already_out);
    v.set_action(rules::v1::ALLOW);
    if (!WriteAheadRecord(std::move(v), shared_.mode() == EnforceMode::kEnforce)) {
      ReportRefusal("verdict_unrecordable");
      Abort();
      co_return;
    }
  }
  Arm(shared_.config.idle_timeout);
  asio::co_spawn(
      timer_.get_executor(),
      [&, self]() -> asio::awaitable<void> {
        co_await Pump(*upstream_, client_, std::move(up_initial), nullptr, in);
        other_done = true;
        done.cancel();
      },
      asio::detached);
  co_await Pump(client_, *upstream_, std::move(client_initial), scan.get(), out);
  while (!other_done) {
    error_code ec;
    co_await done.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
  auto v = NewVerdict(mode_);
  record_.Complete(v);
  v.set_bytes_out(out);
  v.set_bytes_in(in);
  if (scan) {
    auto result = scan->Finish();
    for (const auto& f : result.findings) *v.add_findings() = f;
    v.set_action(result.action);
    v.set_reason(result.reason);
    if (raw_overflow_) {
      v.set_action(rules::v1::BLOCK);
      v.set_reason("undecided_overflow");
    }
    // Enforced: only decided bytes left before the block, and these are counted.
    if (result.action == rules::v1::BLOCK && v.enforced()) v.set_bytes_out_before_block(out);
  } else {
    v.set_action(rules::v1::ALLOW);
    v.set_reason(mode_ == "splice" ? "no_decrypt" : (scan_client_bytes ? "engine_unavailable (fail open)" : ""));
  }
  Report(std::move(v));
  Abort();
}

}  // namespace egressguard::mitm
