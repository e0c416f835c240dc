#pragma once
// A byte stream that is plain TCP until StartTls() puts TLS over the same socket: the
// proxy reads a client's CONNECT in plaintext, then terminates TLS on that socket.
// Errors come back as error_code (no exceptions on the data path).

#include <utility>  // before asio: its awaitable.hpp uses std::exchange

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <optional>

namespace egressguard::mitm {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;

class Stream {
 public:
  explicit Stream(tcp::socket socket) : tcp_(std::move(socket)) {}
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  asio::ssl::stream<tcp::socket>& StartTls(asio::ssl::context& ctx) {
    tls_.emplace(std::move(tcp_), ctx);
    return *tls_;
  }
  bool is_tls() const { return tls_.has_value(); }
  asio::ssl::stream<tcp::socket>& tls() { return *tls_; }
  tcp::socket& socket() { return tls_ ? tls_->next_layer() : tcp_; }

  asio::awaitable<size_t> Read(asio::mutable_buffer buf, error_code& ec) {
    if (tls_) co_return co_await tls_->async_read_some(buf, asio::redirect_error(asio::use_awaitable, ec));
    co_return co_await tcp_.async_read_some(buf, asio::redirect_error(asio::use_awaitable, ec));
  }
  asio::awaitable<void> Write(asio::const_buffer buf, error_code& ec) {
    if (tls_) {
      co_await asio::async_write(*tls_, buf, asio::redirect_error(asio::use_awaitable, ec));
    } else {
      co_await asio::async_write(tcp_, buf, asio::redirect_error(asio::use_awaitable, ec));
    }
  }
  // Ends our sending side: close_notify over TLS, FIN over TCP (a TCP half-close keeps
  // the other direction open).
  asio::awaitable<void> ShutdownSend() {
    error_code ec;
    if (tls_) {
      co_await tls_->async_shutdown(asio::redirect_error(asio::use_awaitable, ec));
    } else {
      tcp_.shutdown(tcp::socket::shutdown_send, ec);
    }
  }
  void Close() {
    error_code ec;
    socket().close(ec);
  }

 private:
  tcp::socket tcp_;
  std::optional<asio::ssl::stream<tcp::socket>> tls_;
};

}  // namespace egressguard::mitm
