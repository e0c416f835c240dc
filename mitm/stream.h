#pragma once
// A byte stream that is plain TCP until StartTls() puts TLS over the same socket: the
// proxy reads a client's CONNECT in plaintext, then terminates TLS on that socket.
// Errors come back as error_code (no exceptions on the data path).
//
// TLS runs OpenSSL directly on the non-blocking socket (no asio::ssl::stream): Asio's
// stream keeps two 17 KiB buffers and a 2 x 17 KiB BIO pair per connection for its whole
// life, while here an idle stream holds no buffer at all. Reads wait for readiness with
// no buffer and then read synchronously; OpenSSL's own record buffers are released
// while idle (SSL_MODE_RELEASE_BUFFERS).
//
// One reader and one writer may be active at once (the raw relay reads one direction
// while writing the other), as with OpenSSL's non-blocking interleaving; never two
// readers or two writers.

#include <utility>  // before asio: its awaitable.hpp uses std::exchange

#include <openssl/ssl.h>

#include <boost/asio.hpp>
#include <memory>
#include <string>

namespace egressguard::mitm {

struct SocketBio;  // stream.cc: what OpenSSL reads and writes through

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;

class Stream {
 public:
  // Bytes one ReadSome appends at most.
  static constexpr size_t kReadChunk = 16 * 1024;
  // An empty buffer up to this capacity is kept while waiting (see ReadSome).
  static constexpr size_t kKeptCapacity = 1024;

  explicit Stream(tcp::socket socket);
  ~Stream();
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  // Puts TLS (from `ctx`) over the socket; `prefix` holds bytes already read from the
  // socket (a peeked ClientHello) that TLS consumes first. Returns the SSL for per-
  // connection settings (names, certificates) before Handshake.
  SSL* StartTls(SSL_CTX* ctx, std::string prefix = {});
  bool is_tls() const { return ssl_ != nullptr; }
  SSL* ssl() const { return ssl_; }
  tcp::socket& socket() { return socket_; }

  asio::awaitable<void> Handshake(bool server, error_code& ec);
  // Appends what is available (up to kReadChunk bytes, at least one) to `dst`. While it
  // waits for data it holds no buffer, and an empty `dst` over kKeptCapacity gives its
  // storage back, so an idle connection costs little more than its objects. A TLS close_notify or a TCP FIN is eof.
  // `expect_wait`: the caller knows the peer has not answered yet (a request just sent,
  // a response just delivered), so no read is tried before waiting for readiness.
  asio::awaitable<size_t> ReadSome(std::string& dst, error_code& ec, bool expect_wait = false);
  asio::awaitable<void> Write(asio::const_buffer buf, error_code& ec);
  // Writes what the socket takes now, without waiting (and without a coroutine frame):
  // true when done, all written or failed (ec); false when the socket is full, with
  // `buf` advanced to the rest, for Write. Most writes of the HTTP loop finish here.
  bool WriteNow(asio::const_buffer& buf, error_code& ec);
  // Ends our sending side: over TLS a close_notify, after which the peer's remaining
  // bytes are read and dropped until it closes (bounded by the caller's watchdog), so
  // closing never resets a connection whose answer the peer has not read yet; over TCP a
  // FIN (a TCP half-close keeps the other direction open).
  asio::awaitable<void> ShutdownSend();
  void Close();

 private:
  // One attempt at reading without waiting: > 0 bytes, 0 with ec = would_block, or an error.
  size_t TryRead(char* out, size_t size, error_code& ec);

  tcp::socket socket_;
  SSL* ssl_ = nullptr;
  std::unique_ptr<SocketBio> bio_;  // with TLS: the socket, after the peeked prefix
};

}  // namespace egressguard::mitm
