#pragma once
// Transport security of the store's gRPC API, shared by the server and its clients
// (reporter, rule watcher, CLI): mutual TLS off loopback, plaintext only on loopback.

#include <grpcpp/grpcpp.h>

#include <memory>
#include <set>
#include <string>

#include "absl/status/statusor.h"

namespace egressguard::store {

// PEM files. All empty: plaintext, allowed on loopback addresses only.
struct ApiTls {
  std::string cert_file;  // our certificate (chain)
  std::string key_file;   // its key
  std::string ca_file;    // the API CA that signs the peers' certificates
  bool enabled() const { return !cert_file.empty() || !key_file.empty() || !ca_file.empty(); }
};

enum class Role { kAppliance, kOfficer, kAuditor };
const char* RoleName(Role role);
// The SAN URI a client certificate carries for `role`.
std::string RoleUri(Role role);
absl::StatusOr<Role> ParseRole(const std::string& name);

// True for 127.0.0.0/8, ::1 and "localhost" (with or without a port, [v6] form too).
bool IsLoopbackAddress(const std::string& address);

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(const std::string& listen,
                                                                               const ApiTls& tls);
absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeChannel(const std::string& address, const ApiTls& tls,
                                                           const grpc::ChannelArguments& args = {});

// Who is calling: from the client certificate, or the loopback development identity.
struct Caller {
  std::string identity;     // "<CN> <SAN URI>" or "loopback <peer>"
  std::set<Role> roles;
  std::string role_names;   // for the audit trail, e.g. "officer"
};
// The console (appliance/console) calls the services over the server's in-process
// channel as its signed-in user: these metadata keys name the user and role, and the
// secret key carries InProcessSecret(), random per process and never sent off it. A
// caller that names a console user without the secret gets no role.
inline constexpr char kConsoleUserKey[] = "x-egressguard-console-user";
inline constexpr char kConsoleRoleKey[] = "x-egressguard-console-role";
inline constexpr char kConsoleSecretKey[] = "x-egressguard-console-secret";
const std::string& InProcessSecret();
Caller IdentifyCaller(const grpc::ServerContext& context);

}  // namespace egressguard::store
