#pragma once
// The compliance store as a gRPC server: VerdictIngest, VerdictQuery, RuleAdmin and
// Audit over one Store, plus grpc.health.v1 and server reflection. Runs alone
// (`egressguard store`) or inside `egressguard run` beside the proxy.

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "appliance/store/api_tls.h"
#include "appliance/store/store.h"

namespace egressguard::store {

// Compiles a pack the way appliances will (dlp::Engine::Compile) and returns the
// problems; empty means it compiles. Push and Validate refuse what fails it.
using PackCompileCheck = std::function<std::vector<std::string>(const rules::v1::RulePack&)>;

struct StoreServerOptions {
  std::string listen = "127.0.0.1:0";
  std::string db_path;
  ApiTls tls;                 // empty: plaintext, loopback only
  int retention_days = 0;     // 0: keep everything
  PackCompileCheck compile_check;
};

class StoreServer {
 public:
  static absl::StatusOr<std::unique_ptr<StoreServer>> Start(const StoreServerOptions& options);
  ~StoreServer();
  StoreServer(const StoreServer&) = delete;
  StoreServer& operator=(const StoreServer&) = delete;

  int port() const;                 // the bound port (useful with :0)
  std::string address() const;      // host:port to give clients
  Store& store();
  void Wait();                      // blocks until Stop()
  void Stop();                      // idempotent; in-flight calls are cancelled after a grace period

 private:
  struct Impl;
  explicit StoreServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};
using StoreServerPtr = std::unique_ptr<StoreServer>;

}  // namespace egressguard::store
