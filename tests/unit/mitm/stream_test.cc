// Proves the OpenSSL-on-socket Stream over real loopback TLS: the server replays the
// ClientHello it peeked in plaintext, 1 MiB crosses each way at once on one connection
// (a reader and a writer on each side's SSL), a close_notify reads as eof on the other
// side, and a read that has to wait gives a large empty buffer back first.
#include "mitm/stream.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include <string>

// GCC 12 misreads the sized operator delete of Asio 1.74's coroutine frame allocator as
// mismatched with its operator new in coroutines (a known false positive).
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

namespace egressguard::mitm {
namespace {

// A server context with a fresh self-signed P-256 certificate (this test checks the
// transport; certificate checks belong to the proxy's integration tests).
SSL_CTX* NewServerContext() {
  EVP_PKEY* key = EVP_EC_gen("P-256");
  X509* cert = X509_new();
  X509_set_version(cert, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
  X509_gmtime_adj(X509_getm_notBefore(cert), -60);
  X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
  X509_set_pubkey(cert, key);
  X509_NAME* name = X509_get_subject_name(cert);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("stream-test"), -1, -1, 0);
  X509_set_issuer_name(cert, name);
  X509_sign(cert, key, EVP_sha256());
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  SSL_CTX_use_certificate(ctx, cert);
  SSL_CTX_use_PrivateKey(ctx, key);
  X509_free(cert);
  EVP_PKEY_free(key);
  return ctx;
}

std::string Pattern(size_t size, char salt) {
  std::string s(size, '\0');
  for (size_t i = 0; i < size; ++i) s[i] = static_cast<char>((i * 131 + static_cast<size_t>(salt)) % 251);
  return s;
}

// Writes `data` in 100 KiB pieces while the other coroutine on the stream reads.
asio::awaitable<void> WriteAll(Stream& s, const std::string& data, error_code& ec) {
  for (size_t off = 0; off < data.size() && !ec; off += 100 * 1024) {
    co_await s.Write(asio::buffer(data.data() + off, std::min<size_t>(100 * 1024, data.size() - off)), ec);
  }
}

asio::awaitable<void> ReadExactly(Stream& s, size_t size, std::string& out, error_code& ec) {
  while (out.size() < size && !ec) co_await s.ReadSome(out, ec);
}

TEST(Stream, TlsBothWaysAtOnceWithPeekedHello) {
  asio::io_context io(1);
  tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  SSL_CTX* server_ctx = NewServerContext();
  SSL_CTX* client_ctx = SSL_CTX_new(TLS_client_method());
  const std::string up = Pattern(1 << 20, 'u');
  const std::string down = Pattern(1 << 20, 'd');
  std::string server_got, client_got;
  error_code server_hs, client_hs, server_end;
  bool server_done = false, client_done = false;

  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        Stream s(co_await acceptor.async_accept(asio::use_awaitable));
        // Peek the whole first record in plaintext, as the proxy does with a ClientHello.
        std::string peeked;
        error_code ec;
        auto record_end = [&] {
          return size_t{5} + (size_t{static_cast<unsigned char>(peeked[3])} << 8) +
                 size_t{static_cast<unsigned char>(peeked[4])};
        };
        while (!ec && (peeked.size() < 5 || peeked.size() < record_end())) co_await s.ReadSome(peeked, ec);
        EXPECT_EQ(peeked[0], 0x16) << "a TLS handshake record";
        s.StartTls(server_ctx, peeked);
        co_await s.Handshake(/*server=*/true, server_hs);
        if (server_hs) co_return;
        error_code rec, wec;
        bool reader_done = false;
        asio::co_spawn(
            io,
            [&]() -> asio::awaitable<void> {
              co_await ReadExactly(s, up.size(), server_got, rec);
              reader_done = true;
            },
            asio::detached);
        co_await WriteAll(s, down, wec);
        EXPECT_FALSE(wec) << wec.message();
        asio::steady_timer t(io);
        while (!reader_done) {
          t.expires_after(std::chrono::milliseconds(1));
          co_await t.async_wait(asio::use_awaitable);
        }
        EXPECT_FALSE(rec) << rec.message();
        std::string rest;
        co_await s.ReadSome(rest, server_end);  // the client's close_notify
        co_await s.ShutdownSend();
        server_done = true;
      },
      asio::detached);

  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        tcp::socket sock(io);
        co_await sock.async_connect(acceptor.local_endpoint(), asio::use_awaitable);
        Stream c(std::move(sock));
        c.StartTls(client_ctx);
        co_await c.Handshake(/*server=*/false, client_hs);
        if (client_hs) co_return;
        error_code rec, wec;
        bool reader_done = false;
        asio::co_spawn(
            io,
            [&]() -> asio::awaitable<void> {
              co_await ReadExactly(c, down.size(), client_got, rec);
              reader_done = true;
            },
            asio::detached);
        co_await WriteAll(c, up, wec);
        EXPECT_FALSE(wec) << wec.message();
        asio::steady_timer t(io);
        while (!reader_done) {
          t.expires_after(std::chrono::milliseconds(1));
          co_await t.async_wait(asio::use_awaitable);
        }
        EXPECT_FALSE(rec) << rec.message();
        co_await c.ShutdownSend();  // close_notify, then drain until the server's
        client_done = true;
      },
      asio::detached);

  io.run_for(std::chrono::seconds(30));
  EXPECT_FALSE(server_hs) << server_hs.message();
  EXPECT_FALSE(client_hs) << client_hs.message();
  EXPECT_TRUE(server_done);
  EXPECT_TRUE(client_done);
  EXPECT_TRUE(server_got == up) << "upload differs, " << server_got.size() << " bytes";
  EXPECT_TRUE(client_got == down) << "download differs, " << client_got.size() << " bytes";
  EXPECT_EQ(server_end, asio::error::eof) << server_end.message();
  SSL_CTX_free(server_ctx);
  SSL_CTX_free(client_ctx);
}

TEST(Stream, WaitingReadGivesALargeEmptyBufferBack) {
  asio::io_context io(1);
  tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  tcp::socket writer(io);
  writer.connect(acceptor.local_endpoint());
  Stream reader(acceptor.accept());
  std::string dst;
  dst.reserve(64 * 1024);
  size_t got = 0;
  error_code ec;
  asio::co_spawn(
      io, [&]() -> asio::awaitable<void> { got = co_await reader.ReadSome(dst, ec); }, asio::detached);
  asio::steady_timer later(io, std::chrono::milliseconds(50));
  later.async_wait([&](error_code) { asio::write(writer, asio::buffer(std::string("hello"))); });
  io.run_for(std::chrono::seconds(10));
  EXPECT_FALSE(ec) << ec.message();
  EXPECT_EQ(got, 5u);
  EXPECT_EQ(dst, "hello");
  EXPECT_LT(dst.capacity(), Stream::kKeptCapacity);
  writer.close();
  dst.clear();
  io.restart();
  asio::co_spawn(
      io, [&]() -> asio::awaitable<void> { got = co_await reader.ReadSome(dst, ec); }, asio::detached);
  io.run_for(std::chrono::seconds(10));
  EXPECT_EQ(ec, asio::error::eof);
  EXPECT_EQ(got, 0u);
}

}  // namespace
}  // namespace egressguard::mitm
