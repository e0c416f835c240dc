#include "mitm/stream.h"

#include <openssl/err.h>
#include <sys/socket.h>

#include <array>
#include <boost/asio/ssl/error.hpp>
#include <cerrno>
#include <climits>
#include <cstring>

// GCC 12 misreads the sized operator delete of Asio 1.74's coroutine frame allocator as
// mismatched with its operator new in coroutines (a known false positive).
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

namespace egressguard::mitm {

// What the TLS layer reads and writes through: the socket, after the peeked prefix.
// The descriptor is cleared on Close() so a late OpenSSL call can never touch a
// descriptor number the kernel has handed to another connection.
struct SocketBio {
  int fd = -1;
  std::string bytes;
  size_t offset = 0;
};

namespace {

enum class Want { kNone, kRead, kWrite };

bool WouldBlock(int err) { return err == EAGAIN || err == EWOULDBLOCK || err == EINTR; }

// Empties this thread's OpenSSL error queue before an SSL call, so SSL_get_error sees only
// that call's errors. ERR_clear_error resets all sixteen slots every time (~800
// instructions, twice per request and stream); the queue is almost always empty already.
void ClearSslErrors() {
  if (ERR_peek_error() != 0) ERR_clear_error();
}

int BioWrite(BIO* bio, const char* data, int size) {
  auto* state = static_cast<SocketBio*>(BIO_get_data(bio));
  BIO_clear_retry_flags(bio);
  ssize_t n = ::send(state->fd, data, static_cast<size_t>(size), MSG_NOSIGNAL);
  if (n >= 0) return static_cast<int>(n);
  if (WouldBlock(errno)) BIO_set_retry_write(bio);
  return -1;
}

int BioRead(BIO* bio, char* out, int size) {
  auto* state = static_cast<SocketBio*>(BIO_get_data(bio));
  BIO_clear_retry_flags(bio);
  if (size <= 0) return 0;
  if (state->offset < state->bytes.size()) {
    size_t n = std::min(static_cast<size_t>(size), state->bytes.size() - state->offset);
    std::memcpy(out, state->bytes.data() + state->offset, n);
    state->offset += n;
    if (state->offset == state->bytes.size()) {
      std::string().swap(state->bytes);
      state->offset = 0;
    }
    return static_cast<int>(n);
  }
  ssize_t n = ::recv(state->fd, out, static_cast<size_t>(size), 0);
  if (n >= 0) return static_cast<int>(n);
  if (WouldBlock(errno)) BIO_set_retry_read(bio);
  return -1;
}

long BioCtrl(BIO*, int cmd, long, void*) { return cmd == BIO_CTRL_FLUSH ? 1 : 0; }

int BioCreate(BIO* bio) {
  BIO_set_init(bio, 1);
  return 1;
}

const BIO_METHOD* SocketMethod() {
  static const BIO_METHOD* method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "egressguard socket");
    BIO_meth_set_write(m, BioWrite);
    BIO_meth_set_read(m, BioRead);
    BIO_meth_set_ctrl(m, BioCtrl);
    BIO_meth_set_create(m, BioCreate);
    return m;
  }();
  return method;
}

// Turns a failed OpenSSL call into what to wait for, or into `ec`.
Want Classify(SSL* ssl, int rc, int saved_errno, error_code& ec) {
  switch (SSL_get_error(ssl, rc)) {
    case SSL_ERROR_WANT_READ:
      return Want::kRead;
    case SSL_ERROR_WANT_WRITE:
      return Want::kWrite;
    case SSL_ERROR_ZERO_RETURN:
      ec = asio::error::eof;
      return Want::kNone;
    case SSL_ERROR_SYSCALL:
      if (ERR_peek_error() == 0) {
        ec = saved_errno != 0 ? error_code(saved_errno, asio::error::get_system_category())
                              : error_code(asio::ssl::error::stream_truncated);
        return Want::kNone;
      }
      [[fallthrough]];
    default: {
      unsigned long e = ERR_get_error();
      if (ERR_GET_REASON(e) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
        ec = asio::ssl::error::stream_truncated;
      } else {
        ec = error_code(static_cast<int>(e), asio::error::get_ssl_category());
      }
      if (!ec) ec = asio::ssl::error::stream_truncated;
      ERR_clear_error();
      return Want::kNone;
    }
  }
}

// One non-waiting read into a per-thread buffer, appended to `dst`. Synchronous, so the
// buffer is never held across a suspension and one per thread serves every connection.
size_t ReadAvailable(int fd, SSL* ssl, std::string& dst, error_code& ec, Want& want) {
  thread_local std::array<char, Stream::kReadChunk> scratch;
  want = Want::kNone;
  if (ssl == nullptr) {
    ssize_t n = ::recv(fd, scratch.data(), scratch.size(), 0);
    if (n > 0) {
      dst.append(scratch.data(), static_cast<size_t>(n));
      return static_cast<size_t>(n);
    }
    if (n == 0) {
      ec = asio::error::eof;
    } else if (WouldBlock(errno)) {
      want = Want::kRead;
    } else {
      ec = error_code(errno, asio::error::get_system_category());
    }
    return 0;
  }
  ClearSslErrors();
  errno = 0;
  int n = SSL_read(ssl, scratch.data(), static_cast<int>(scratch.size()));
  if (n > 0) {
    dst.append(scratch.data(), static_cast<size_t>(n));
    return static_cast<size_t>(n);
  }
  want = Classify(ssl, n, errno, ec);
  return 0;
}

// One pass of writing without waiting: Want::kNone when done (all written, or ec set),
// else what to wait for, with data/left advanced past what was written.
Want WriteSome(SSL* ssl, int fd, const char*& data, size_t& left, error_code& ec) {
  while (left > 0) {
    if (ssl != nullptr) {
      ClearSslErrors();
      errno = 0;
      int n = SSL_write(ssl, data, static_cast<int>(std::min<size_t>(left, INT_MAX)));
      if (n > 0) {
        data += n;
        left -= static_cast<size_t>(n);
        continue;
      }
      return Classify(ssl, n, errno, ec);
    }
    ssize_t n = ::send(fd, data, left, MSG_NOSIGNAL);
    if (n > 0) {
      data += n;
      left -= static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && WouldBlock(errno)) return Want::kWrite;
    ec = n < 0 ? error_code(errno, asio::error::get_system_category()) : error_code(asio::error::eof);
    return Want::kNone;
  }
  return Want::kNone;
}

}  // namespace

Stream::Stream(tcp::socket socket) : socket_(std::move(socket)) {
  error_code ec;
  socket_.non_blocking(true, ec);
}

Stream::~Stream() {
  if (ssl_ != nullptr) SSL_free(ssl_);
}

SSL* Stream::StartTls(SSL_CTX* ctx, std::string prefix) {
  bio_ = std::make_unique<SocketBio>();
  bio_->fd = socket_.native_handle();
  bio_->bytes = std::move(prefix);
  ssl_ = SSL_new(ctx);
  if (ssl_ == nullptr) return nullptr;
  BIO* bio = BIO_new(SocketMethod());
  BIO_set_data(bio, bio_.get());
  SSL_set_bio(ssl_, bio, bio);
  SSL_set_mode(ssl_, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
  // One recv takes whatever records have arrived, instead of two per record (header, body).
  SSL_set_read_ahead(ssl_, 1);
  return ssl_;
}

asio::awaitable<void> Stream::Handshake(bool server, error_code& ec) {
  ec.clear();
  if (ssl_ == nullptr) {
    ec = asio::error::no_memory;
    co_return;
  }
  if (server) {
    SSL_set_accept_state(ssl_);
  } else {
    SSL_set_connect_state(ssl_);
  }
  while (true) {
    ClearSslErrors();
    errno = 0;
    int rc = SSL_do_handshake(ssl_);
    if (rc == 1) co_return;
    Want want = Classify(ssl_, rc, errno, ec);
    if (want == Want::kNone) co_return;
    co_await socket_.async_wait(want == Want::kRead ? tcp::socket::wait_read : tcp::socket::wait_write,
                                asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return;
  }
}

asio::awaitable<size_t> Stream::ReadSome(std::string& dst, error_code& ec, bool expect_wait) {
  // Bytes TLS already holds (decrypted, read ahead, or peeked) never wait for the socket.
  bool buffered = ssl_ != nullptr && (SSL_has_pending(ssl_) || bio_->offset < bio_->bytes.size());
  bool skip_try = expect_wait && !buffered;
  while (true) {
    ec.clear();
    Want want = Want::kRead;
    size_t n = 0;
    if (!skip_try) n = ReadAvailable(socket_.native_handle(), ssl_, dst, ec, want);
    skip_try = false;
    if (n > 0 || want == Want::kNone) co_return n;
    // A large buffer is not kept through a wait that may last the whole idle timeout; a
    // small one (a typical request head) is, saving an allocation per keep-alive request.
    if (dst.empty() && dst.capacity() > kKeptCapacity) std::string().swap(dst);
    co_await socket_.async_wait(want == Want::kRead ? tcp::socket::wait_read : tcp::socket::wait_write,
                                asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return 0;
  }
}

bool Stream::WriteNow(asio::const_buffer& buf, error_code& ec) {
  ec.clear();
  const char* data = static_cast<const char*>(buf.data());
  size_t left = buf.size();
  const bool done = WriteSome(ssl_, socket_.native_handle(), data, left, ec) == Want::kNone;
  buf = asio::const_buffer(data, left);
  return done;
}

asio::awaitable<void> Stream::Write(asio::const_buffer buf, error_code& ec) {
  ec.clear();
  const char* data = static_cast<const char*>(buf.data());
  size_t left = buf.size();
  while (true) {
    Want want = WriteSome(ssl_, socket_.native_handle(), data, left, ec);
    if (want == Want::kNone) co_return;
    co_await socket_.async_wait(want == Want::kRead ? tcp::socket::wait_read : tcp::socket::wait_write,
                                asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return;
  }
}

asio::awaitable<void> Stream::ShutdownSend() {
  error_code ec;
  if (ssl_ == nullptr) {
    socket_.shutdown(tcp::socket::shutdown_send, ec);
    co_return;
  }
  while (true) {
    ClearSslErrors();
    errno = 0;
    int rc = SSL_shutdown(ssl_);
    if (rc == 1) co_return;  // the peer's close_notify had come already
    if (rc == 0) break;
    Want want = Classify(ssl_, rc, errno, ec);
    if (want == Want::kNone) co_return;
    co_await socket_.async_wait(want == Want::kRead ? tcp::socket::wait_read : tcp::socket::wait_write,
                                asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return;
  }
  std::string discard;
  size_t total = 0;
  while (total < (64u << 20)) {
    size_t n = co_await ReadSome(discard, ec);
    if (ec) break;
    total += n;
    discard.clear();
  }
}

void Stream::Close() {
  if (bio_) bio_->fd = -1;
  error_code ec;
  socket_.close(ec);
}

}  // namespace egressguard::mitm
