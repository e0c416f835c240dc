#pragma once
// The admin listener: GET /metrics (Prometheus text format), /healthz (the process
// answers: 200 "ok") and /readyz (200 "ready" only when every readiness check passes,
// else 503 with one reason per line). It runs on its own thread and io_context, so a
// slow or hostile scraper never touches a proxy worker; requests are size- and
// time-bounded, connections are capped.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace egressguard::admin {

struct AdminOptions {
  std::string listen = "127.0.0.1:9090";  // ADDR:PORT, "[v6]:PORT"; port 0 picks one (tests)
  size_t max_request_bytes = 8 * 1024;     // request line + headers (+ body, which GETs do not have)
  std::chrono::milliseconds timeout{5000}; // per request, read and write
  size_t max_connections = 32;
};

struct ReadyCheck {
  std::string name;
  std::function<std::string()> problem;  // "" when fine, else why not ready
  // Ready, but worth saying (e.g. serving a cached rule pack): "" when nothing to say.
  std::function<std::string()> note = {};
};

struct AdminHandlers {
  std::function<std::string()> metrics;  // text exposition; empty: /metrics is 404
  std::vector<ReadyCheck> ready;
};

class AdminServer {
 public:
  static absl::StatusOr<std::unique_ptr<AdminServer>> Start(const AdminOptions& options, AdminHandlers handlers);
  ~AdminServer();
  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;

  void Stop();  // idempotent; joins the thread
  uint16_t port() const;
  std::string address() const;  // "127.0.0.1:9090"

 private:
  struct Impl;
  explicit AdminServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Splits "ADDR:PORT" / "[v6]:PORT"; false when it is not one.
bool SplitHostPort(const std::string& text, std::string& host, uint16_t& port);

}  // namespace egressguard::admin
