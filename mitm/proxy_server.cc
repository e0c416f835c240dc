#include "mitm/proxy_server.h"

#include <fmt/format.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <sys/socket.h>

#include <thread>

#include "mitm/alpn.h"
#include "mitm/connection.h"
#include "mitm/original_dst.h"
#include "mitm/proxy_shared.h"
#include "mitm/stream.h"

namespace egressguard::mitm {
namespace {

using ReusePort = asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;

std::string OpenSslError() {
  unsigned long e = ERR_get_error();
  char buf[256];
  ERR_error_string_n(e, buf, sizeof(buf));
  return buf;
}


absl::StatusOr<std::shared_ptr<const WorkloadMap>> ParseWorkloads(
    const std::vector<ProxyConfig::WorkloadCidrs>& mappings) {
  auto map = std::make_shared<WorkloadMap>();
  for (const auto& w : mappings) {
    if (w.workload.empty()) return absl::InvalidArgumentError("a workload mapping needs a name");
    std::vector<Cidr> cidrs;
    for (const auto& text : w.cidrs) {
      auto cidr = Cidr::Parse(text);
      if (!cidr.ok()) {
        return absl::InvalidArgumentError(
            fmt::format("workload {}: {}", w.workload, std::string(cidr.status().message())));
      }
      cidrs.push_back(*cidr);
    }
    if (cidrs.empty()) return absl::InvalidArgumentError(fmt::format("workload {} has no CIDR", w.workload));
    map->emplace_back(w.workload, std::move(cidrs));
  }
  return std::shared_ptr<const WorkloadMap>(std::move(map));
}

}  // namespace

class Worker {
 public:
  explicit Worker(ProxyShared& shared) : shared_(shared) {}

  // Adds a listener; returns its bound port (the first worker picks it when `endpoint`
  // says 0, the others join it with SO_REUSEPORT).
  absl::StatusOr<uint16_t> Bind(const tcp::endpoint& endpoint, ListenerKind kind) {
    auto& l = listeners_.emplace_back(std::make_unique<Listener>(io_, kind));
    error_code ec;
    l->acceptor.open(endpoint.protocol(), ec);
    if (!ec) l->acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) l->acceptor.set_option(ReusePort(true), ec);
    if (!ec && kind == ListenerKind::kTransparent && shared_.config.transparent_tproxy) {
      if (auto st = SetTransparent(l->acceptor, endpoint.protocol()); !st.ok()) return st;
    }
    if (!ec) l->acceptor.bind(endpoint, ec);
    if (!ec) l->acceptor.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      return absl::UnavailableError(
          fmt::format("cannot listen on {}:{}: {}", endpoint.address().to_string(), endpoint.port(), ec.message()));
    }
    return l->acceptor.local_endpoint(ec).port();
  }

  void Run() {
    for (auto& l : listeners_) asio::co_spawn(io_, Accept(*l), asio::detached);
    thread_ = std::thread([this] { io_.run(); });
  }

  // Stops accepting and closes connections idle between requests.
  void BeginDrain() {
    asio::post(io_, [this] {
      error_code ec;
      for (auto& l : listeners_) l->acceptor.close(ec);
      for (auto& weak : connections_) {
        if (auto c = weak.lock()) c->CloseIfIdle();
      }
    });
  }
  void Stop() {
    io_.stop();
    if (thread_.joinable()) thread_.join();
  }

 private:
  struct Listener {
    Listener(asio::io_context& io, ListenerKind k) : acceptor(io), kind(k) {}
    tcp::acceptor acceptor;
    ListenerKind kind;
  };

  asio::awaitable<void> Accept(Listener& listener) {
    tcp::acceptor& acceptor = listener.acceptor;
    asio::steady_timer backoff(io_);
    while (acceptor.is_open()) {
      error_code ec;
      tcp::socket socket = co_await acceptor.async_accept(asio::redirect_error(asio::use_awaitable, ec));
      if (!acceptor.is_open() || ec == asio::error::operation_aborted) break;
      if (ec) {
        // Out of descriptors and the like: back off briefly instead of spinning.
        backoff.expires_after(std::chrono::milliseconds(50));
        co_await backoff.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        continue;
      }
      shared_.counters.accepted.fetch_add(1);
      auto remote = socket.remote_endpoint(ec);
      if (ec || !shared_.policy->ClientAllowed(remote.address().to_string())) {
        shared_.counters.rejected_clients.fetch_add(1);
        socket.close(ec);
        continue;
      }
      if (shared_.counters.active.load() >= shared_.config.max_connections) {
        shared_.counters.rejected_limit.fetch_add(1);
        socket.close(ec);
        continue;
      }
      auto connection = std::make_shared<Connection>(shared_, scanner_, std::move(socket), listener.kind);
      connection->Start();
      if (++accepted_ % 256 == 0) {
        std::erase_if(connections_, [](const auto& w) { return w.expired(); });
      }
      connections_.push_back(connection);
    }
  }

  ProxyShared& shared_;
  // Declared before io_: connections destroyed with io_'s handlers still use the scanner.
  dlp::Scanner scanner_;
  asio::io_context io_{1};
  std::vector<std::unique_ptr<Listener>> listeners_;
  std::vector<std::weak_ptr<Connection>> connections_;
  uint64_t accepted_ = 0;
  std::thread thread_;
};

struct ProxyServer::Impl {
  ProxyShared shared;
  std::vector<std::unique_ptr<Worker>> workers;
  bool running = false;
};

ProxyServer::ProxyServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

ProxyServer::~ProxyServer() { Stop(); }

absl::StatusOr<std::unique_ptr<ProxyServer>> ProxyServer::Create(ProxyConfig config, ProxyDependencies deps) {
  if (!deps.minter) return absl::InvalidArgumentError("the proxy needs a leaf minter (the cluster CA)");
  if (!deps.engines) deps.engines = std::make_shared<dlp::EngineHolder>();
  auto policy = Policy::Create(config.policy);
  if (!policy.ok()) return policy.status();
  if (config.upstream_ca_only && config.upstream_ca_file.empty()) {
    return absl::InvalidArgumentError("--upstream-ca-only needs --upstream-ca FILE");
  }
  if (config.hold_limit == 0) return absl::InvalidArgumentError("the hold limit must be at least 1 byte");
  std::shared_ptr<const ProxyAuth> auth;
  if (!config.auth_users_file.empty()) {
    auto loaded = ProxyAuth::Load(config.auth_users_file, config.auth_realm);
    if (!loaded.ok()) return loaded.status();
    auth = *std::move(loaded);
  }

  auto impl = std::make_unique<Impl>();
  ProxyShared& s = impl->shared;
  s.config = std::move(config);
  s.policy.Swap(*std::move(policy));
  s.minter = std::move(deps.minter);
  s.engines = std::move(deps.engines);
  s.sink = std::move(deps.sink);
  s.mode_source = std::move(deps.mode_source);
  s.auth = std::move(auth);
  auto workloads = ParseWorkloads(s.config.workloads);
  if (!workloads.ok()) return workloads.status();
  s.workloads.store(*std::move(workloads));
  if (s.config.proxy_protocol && s.config.proxy_protocol_peers.empty()) {
    return absl::InvalidArgumentError(
        "proxy_protocol needs proxy_protocol_peers: the CIDRs of the redirectors trusted to state client addresses");
  }
  for (const auto& text : s.config.proxy_protocol_peers) {
    auto cidr = Cidr::Parse(text);
    if (!cidr.ok()) {
      return absl::InvalidArgumentError(fmt::format("proxy_protocol_peers: {}", std::string(cidr.status().message())));
    }
    s.proxy_protocol_peers.push_back(*cidr);
  }
  uint32_t instance = 0;
  if (RAND_bytes(reinterpret_cast<unsigned char*>(&instance), sizeof(instance)) != 1) {
    return absl::InternalError("no randomness for the connection id prefix: " + OpenSslError());
  }
  s.instance_id = fmt::format("{:08x}", instance);

  // Upstream side: TLS 1.2+, the system store unless told otherwise, plus the bundle.
  SSL_CTX* up = s.upstream_tls.native_handle();
  SSL_CTX_set_min_proto_version(up, TLS1_2_VERSION);
  if (!s.config.upstream_ca_only && SSL_CTX_set_default_verify_paths(up) != 1) {
    return absl::InternalError("cannot load the system trust store: " + OpenSslError());
  }
  if (!s.config.upstream_ca_file.empty() &&
      SSL_CTX_load_verify_locations(up, s.config.upstream_ca_file.c_str(), nullptr) != 1) {
    return absl::InvalidArgumentError(
        fmt::format("cannot load --upstream-ca {}: {}", s.config.upstream_ca_file, OpenSslError()));
  }
  // Verification runs during the handshake and its result is checked by the connection
  // (SSL_get_verify_result) so a bad certificate can be answered with a 502, not masked.
  SSL_CTX_set_verify(up, SSL_VERIFY_NONE, nullptr);
  static const unsigned char kAlpn[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
  SSL_CTX_set_alpn_protos(up, kAlpn, sizeof(kAlpn));

  // Client side: the leaf is set per connection; tickets stay on (OpenSSL's default).
  SSL_CTX* down = s.client_tls.native_handle();
  SSL_CTX_set_min_proto_version(down, TLS1_2_VERSION);
  SSL_CTX_set_alpn_select_cb(down, SelectClientAlpn, nullptr);
  static const unsigned char kSessionContext[] = "egressguard";
  SSL_CTX_set_session_id_context(down, kSessionContext, sizeof(kSessionContext) - 1);
  SSL_CTX_clear_options(down, SSL_OP_NO_TICKET);

  return std::unique_ptr<ProxyServer>(new ProxyServer(std::move(impl)));
}

absl::Status ProxyServer::Reload(const PolicyConfig& policy, const std::vector<ProxyConfig::WorkloadCidrs>& workloads) {
  auto next = Policy::Create(policy);
  if (!next.ok()) return next.status();
  auto map = ParseWorkloads(workloads);
  if (!map.ok()) return map.status();
  // Both checked before either is swapped: a bad file changes nothing.
  impl_->shared.policy.Swap(*std::move(next));
  impl_->shared.workloads.store(*std::move(map));
  return absl::OkStatus();
}

absl::Status ProxyServer::Start() {
  if (impl_->running) return absl::FailedPreconditionError("already started");
  auto& s = impl_->shared;
  error_code ec;
  auto address = asio::ip::make_address(s.config.listen_address, ec);
  if (ec) return absl::InvalidArgumentError(fmt::format("bad listen address '{}'", s.config.listen_address));
  int workers = s.config.workers > 0 ? s.config.workers : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  uint16_t port = s.config.listen_port;
  uint16_t transparent_port = s.config.transparent_port;
  uint16_t sni_port = s.config.sni_port;
  for (int i = 0; i < workers; ++i) {
    auto w = std::make_unique<Worker>(s);
    auto bound = w->Bind(tcp::endpoint(address, port), ListenerKind::kExplicit);
    if (!bound.ok()) return bound.status();
    port = *bound;
    if (s.config.transparent_port != 0) {
      bound = w->Bind(tcp::endpoint(address, transparent_port), ListenerKind::kTransparent);
      if (!bound.ok()) return bound.status();
      transparent_port = *bound;
    }
    if (s.config.sni_port != 0) {
      bound = w->Bind(tcp::endpoint(address, sni_port), ListenerKind::kSni);
      if (!bound.ok()) return bound.status();
      sni_port = *bound;
    }
    impl_->workers.push_back(std::move(w));
  }
  port_ = port;
  for (auto& w : impl_->workers) w->Run();
  impl_->running = true;
  return absl::OkStatus();
}

void ProxyServer::Stop() {
  if (!impl_ || !impl_->running) return;
  impl_->running = false;
  auto& s = impl_->shared;
  s.draining.store(true);
  for (auto& w : impl_->workers) w->BeginDrain();
  auto deadline = std::chrono::steady_clock::now() + s.config.drain_timeout;
  while (s.counters.active.load() > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  for (auto& w : impl_->workers) w->Stop();
  impl_->workers.clear();
}

ProxyStats ProxyServer::stats() const {
  const auto& c = impl_->shared.counters;
  return ProxyStats{c.accepted.load(), c.rejected_clients.load(), c.rejected_limit.load(),
                    c.active.load(),   c.transactions.load(),     c.blocked.load()};
}

const ProxyMetrics& ProxyServer::metrics() const { return impl_->shared.metrics; }

}  // namespace egressguard::mitm
