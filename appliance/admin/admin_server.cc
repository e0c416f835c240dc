#include "appliance/admin/admin_server.h"

#include <utility>  // before asio: its awaitable.hpp uses std::exchange

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <cstdlib>
#include <thread>

// GCC 12 misreads the sized operator delete of Asio 1.74's coroutine frame allocator as
// mismatched with its operator new in coroutine lambdas (a known false positive).
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

namespace egressguard::admin {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

bool SplitHostPort(const std::string& text, std::string& host, uint16_t& port) {
  auto colon = text.rfind(':');
  if (colon == std::string::npos) return false;
  host = text.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  char* end = nullptr;
  unsigned long p = std::strtoul(text.c_str() + colon + 1, &end, 10);
  if (end == text.c_str() + colon + 1 || *end != '\0' || p > 65535) return false;
  port = static_cast<uint16_t>(p);
  return !host.empty();
}

struct AdminServer::Impl {
  AdminOptions options;
  AdminHandlers handlers;
  asio::io_context io{1};
  tcp::acceptor acceptor{io};
  std::thread thread;
  std::atomic<size_t> open_connections{0};
  bool running = false;

  using Response = http::response<http::string_body>;

  Response Answer(const http::request<http::string_body>& req) {
    auto reply = [&](http::status status, std::string body, std::string type = "text/plain; charset=utf-8") {
      Response res{status, req.version()};
      res.set(http::field::content_type, type);
      res.set(http::field::cache_control, "no-store");
      res.keep_alive(req.keep_alive());
      res.body() = std::move(body);
      res.prepare_payload();
      return res;
    };
    beast::string_view target = req.target();
    auto path = std::string(target.substr(0, target.find('?')));
    const bool known = path == "/metrics" || path == "/healthz" || path == "/readyz";
    if (!known || (path == "/metrics" && !handlers.metrics)) return reply(http::status::not_found, "not found\n");
    if (req.method() != http::verb::get && req.method() != http::verb::head) {
      auto res = reply(http::status::method_not_allowed, "only GET and HEAD\n");
      res.set(http::field::allow, "GET, HEAD");
      return res;
    }
    if (path == "/healthz") return reply(http::status::ok, "ok\n");
    if (path == "/readyz") {
      std::string problems;
      for (const auto& check : handlers.ready) {
        std::string why = check.problem ? check.problem() : std::string();
        if (!why.empty()) problems += fmt::format("{}: {}\n", check.name, why);
      }
      if (!problems.empty()) return reply(http::status::service_unavailable, problems);
      std::string body = "ready\n";
      for (const auto& check : handlers.ready) {
        std::string note = check.note ? check.note() : std::string();
        if (!note.empty()) body += fmt::format("{}: {}\n", check.name, note);
      }
      return reply(http::status::ok, body);
    }
    return reply(http::status::ok, handlers.metrics(), "text/plain; version=0.0.4; charset=utf-8");
  }

  asio::awaitable<void> Serve(tcp::socket socket) {
    beast::tcp_stream stream(std::move(socket));
    beast::flat_buffer buffer(options.max_request_bytes);
    for (;;) {
      http::request_parser<http::string_body> parser;
      parser.header_limit(static_cast<std::uint32_t>(options.max_request_bytes));
      parser.body_limit(options.max_request_bytes);
      stream.expires_after(options.timeout);
      beast::error_code ec;
      co_await http::async_read(stream, buffer, parser, asio::redirect_error(asio::use_awaitable, ec));
      if (ec == http::error::end_of_stream || ec == beast::error::timeout || ec == asio::error::connection_reset ||
          ec == asio::error::operation_aborted) {
        break;
      }
      Response res;
      bool keep_alive = false;
      if (ec) {
        // Unparseable or over the size bound: say so once, then close.
        res = Response{http::status::bad_request, 11};
        res.set(http::field::content_type, "text/plain; charset=utf-8");
        res.body() = fmt::format("bad request: {}\n", ec.message());
        res.keep_alive(false);
        res.prepare_payload();
      } else {
        const auto& req = parser.get();
        res = Answer(req);
        if (req.method() == http::verb::head) {
          auto length = res.body().size();
          res.body().clear();
          res.content_length(length);
        }
        keep_alive = res.keep_alive();
      }
      stream.expires_after(options.timeout);
      co_await http::async_write(stream, res, asio::redirect_error(asio::use_awaitable, ec));
      if (ec || !keep_alive) break;
    }
    beast::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream.close();
    open_connections.fetch_sub(1);
  }

  asio::awaitable<void> Accept() {
    asio::steady_timer backoff(io);
    while (acceptor.is_open()) {
      beast::error_code ec;
      tcp::socket socket = co_await acceptor.async_accept(asio::redirect_error(asio::use_awaitable, ec));
      if (!acceptor.is_open() || ec == asio::error::operation_aborted) break;
      if (ec) {
        backoff.expires_after(std::chrono::milliseconds(50));
        co_await backoff.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        continue;
      }
      if (open_connections.load() >= options.max_connections) {
        socket.close(ec);
        continue;
      }
      open_connections.fetch_add(1);
      asio::co_spawn(io, Serve(std::move(socket)), asio::detached);
    }
  }
};

AdminServer::AdminServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

AdminServer::~AdminServer() { Stop(); }

absl::StatusOr<std::unique_ptr<AdminServer>> AdminServer::Start(const AdminOptions& options, AdminHandlers handlers) {
  std::string host;
  uint16_t port = 0;
  if (!SplitHostPort(options.listen, host, port)) {
    return absl::InvalidArgumentError(fmt::format("admin listen address wants ADDR:PORT, got '{}'", options.listen));
  }
  if (options.max_request_bytes == 0 || options.max_connections == 0) {
    return absl::InvalidArgumentError("admin request size and connection limits must be at least 1");
  }
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->handlers = std::move(handlers);
  beast::error_code ec;
  auto address = asio::ip::make_address(host, ec);
  if (ec) return absl::InvalidArgumentError(fmt::format("admin listen address '{}' is not an IP address", host));
  tcp::endpoint endpoint(address, port);
  impl->acceptor.open(endpoint.protocol(), ec);
  if (!ec) impl->acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) impl->acceptor.bind(endpoint, ec);
  if (!ec) impl->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return absl::UnavailableError(fmt::format("cannot listen on {} (admin): {}", options.listen, ec.message()));
  asio::co_spawn(impl->io, impl->Accept(), asio::detached);
  impl->thread = std::thread([io = &impl->io] { io->run(); });
  impl->running = true;
  return std::unique_ptr<AdminServer>(new AdminServer(std::move(impl)));
}

void AdminServer::Stop() {
  if (!impl_ || !impl_->running) return;
  impl_->running = false;
  impl_->io.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
  beast::error_code ec;
  impl_->acceptor.close(ec);
}

uint16_t AdminServer::port() const {
  beast::error_code ec;
  return impl_->acceptor.local_endpoint(ec).port();
}

std::string AdminServer::address() const {
  beast::error_code ec;
  auto ep = impl_->acceptor.local_endpoint(ec);
  if (ep.address().is_v6()) return fmt::format("[{}]:{}", ep.address().to_string(), ep.port());
  return fmt::format("{}:{}", ep.address().to_string(), ep.port());
}

}  // namespace egressguard::admin
