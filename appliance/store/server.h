#pragma once
// The compliance store as a gRPC server: VerdictIngest, VerdictQuery, RuleAdmin and
// Audit over one Store, plus grpc.health.v1 and server reflection. Runs alone
// (`egressguard store`) or inside `egressguard run` beside the proxy.

#include <chrono>
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
// Scores a pack against labelled samples (RuleAdmin.Test) with the engine appliances
// run; the store itself does not link the engine.
using PackTester =
    std::function<absl::StatusOr<v1::TestPackResponse>(const rules::v1::RulePack&, const v1::TestPackRequest&)>;

struct StoreServerOptions {
  std::string listen = "127.0.0.1:0";
  std::string db_path;
  ApiTls tls;                 // empty: plaintext, loopback only
  int retention_days = 0;     // 0: keep everything
  PackCompileCheck compile_check;
  PackTester pack_tester;  // empty: RuleAdmin.Test answers UNIMPLEMENTED
  // Four-eyes: with 2, Activate and Rollback only propose; a second, different
  // officer's Approve carries the change out, within `approval_ttl`.
  int approvals_required = 1;
  std::chrono::seconds approval_ttl{24 * 3600};
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
  // A channel to these services inside this process (the console's way in; callers
  // are identified by the console metadata keys, see api_tls.h).
  std::shared_ptr<grpc::Channel> InProcessChannel();
  void Wait();                      // blocks until Stop()
  void Stop();                      // idempotent; in-flight calls are cancelled after a grace period

 private:
  struct Impl;
  explicit StoreServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};
using StoreServerPtr = std::unique_ptr<StoreServer>;

}  // namespace egressguard::store
