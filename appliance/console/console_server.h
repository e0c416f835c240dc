#pragma once
// The officers' web console: HTTPS on its own listener and thread pool, serving the
// pages (embedded in the binary, see static_files.h), Chart.js and Bootstrap from
// Debian's /usr/share/javascript, the sign-in (/login?t=<one-time token>), and the
// JSON API (json_api.h). Every response carries a strict Content-Security-Policy;
// every POST needs the session's CSRF token and a same-origin Origin.

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace egressguard::store {
class Store;
}

namespace egressguard::console {

struct ConsoleOptions {
  std::string listen = "127.0.0.1:8443";  // ADDR:PORT; port 0 picks one (tests)
  std::string cert_chain_pem;             // the server certificate, then its chain
  std::string key_pem;
  std::string state_dir;                  // where console.key and console.revoked live
  std::string vendor_dir = "/usr/share/javascript";
  std::chrono::seconds session_ttl{8 * 3600};
  size_t max_body_bytes = 4 << 20;        // a rule pack with its rules fits many times
  size_t max_header_bytes = 16 * 1024;
  std::chrono::milliseconds timeout{15000};  // per read, write or handshake
  size_t max_connections = 64;
  int threads = 2;
};

class ConsoleServer {
 public:
  // `in_process` reaches the store's gRPC services (StoreServer::InProcessChannel);
  // `store` takes the console's own audit entries (sign-in, sign-out).
  static absl::StatusOr<std::unique_ptr<ConsoleServer>> Start(const ConsoleOptions& options,
                                                              std::shared_ptr<grpc::Channel> in_process,
                                                              store::Store& store);
  ~ConsoleServer();
  ConsoleServer(const ConsoleServer&) = delete;
  ConsoleServer& operator=(const ConsoleServer&) = delete;

  void Stop();  // idempotent; joins the threads
  uint16_t port() const;
  std::string address() const;  // "127.0.0.1:8443"

 private:
  struct Impl;
  explicit ConsoleServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};
using ConsoleServerPtr = std::unique_ptr<ConsoleServer>;

}  // namespace egressguard::console
