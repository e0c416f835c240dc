#include "appliance/store/api_tls.h"

#include <fmt/format.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <fstream>
#include <optional>
#include <sstream>

namespace egressguard::store {

namespace {

constexpr std::string_view kRolePrefix = "spiffe://egressguard/role/";

absl::StatusOr<std::string> ReadPem(const std::string& path, const char* what) {
  if (path.empty()) return absl::InvalidArgumentError(fmt::format("TLS needs {} (all of cert, key and CA)", what));
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(fmt::format("cannot read {} {}", what, path));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (ss.str().find("-----BEGIN ") == std::string::npos) {
    return absl::InvalidArgumentError(fmt::format("{} {} is not PEM", what, path));
  }
  return ss.str();
}

// "host:port" -> host, handling "[v6]:port".
std::string HostPart(const std::string& address) {
  std::string a = address;
  for (const char* scheme : {"dns:///", "ipv4:", "ipv6:"}) {
    if (a.rfind(scheme, 0) == 0) a = a.substr(std::string_view(scheme).size());
  }
  if (!a.empty() && a.front() == '[') {
    auto close = a.find(']');
    return close == std::string::npos ? a : a.substr(1, close - 1);
  }
  auto colon = a.rfind(':');
  if (colon != std::string::npos && a.find(':') == colon) return a.substr(0, colon);
  return a;
}

}  // namespace

const char* RoleName(Role role) {
  switch (role) {
    case Role::kAppliance: return "appliance";
    case Role::kOfficer: return "officer";
    case Role::kAuditor: return "auditor";
  }
  return "?";
}

std::string RoleUri(Role role) { return std::string(kRolePrefix) + RoleName(role); }

absl::StatusOr<Role> ParseRole(const std::string& name) {
  for (Role r : {Role::kAppliance, Role::kOfficer, Role::kAuditor}) {
    if (name == RoleName(r)) return r;
  }
  return absl::InvalidArgumentError(fmt::format("unknown role '{}': appliance, officer or auditor", name));
}

bool IsLoopbackAddress(const std::string& address) {
  std::string host = HostPart(address);
  return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(const std::string& listen,
                                                                               const ApiTls& tls) {
  if (!tls.enabled()) {
    if (!IsLoopbackAddress(listen)) {
      return absl::InvalidArgumentError(fmt::format(
          "refusing to serve plaintext on {}: it is not a loopback address; pass --tls-cert, --tls-key and "
          "--client-ca (clients must present a certificate from that CA)",
          listen));
    }
    return grpc::InsecureServerCredentials();
  }
  auto cert = ReadPem(tls.cert_file, "a certificate");
  if (!cert.ok()) return cert.status();
  auto key = ReadPem(tls.key_file, "a key");
  if (!key.ok()) return key.status();
  auto ca = ReadPem(tls.ca_file, "a client CA");
  if (!ca.ok()) return ca.status();
  grpc::SslServerCredentialsOptions opts(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  opts.pem_root_certs = *ca;
  opts.pem_key_cert_pairs.push_back({*key, *cert});
  return grpc::SslServerCredentials(opts);
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeChannel(const std::string& address, const ApiTls& tls,
                                                           const grpc::ChannelArguments& args) {
  if (address.empty()) return absl::InvalidArgumentError("no store address given (--store HOST:PORT)");
  if (!tls.enabled()) {
    if (!IsLoopbackAddress(address)) {
      return absl::InvalidArgumentError(fmt::format(
          "refusing to talk plaintext to {}: it is not a loopback address; pass --cert, --key and --ca", address));
    }
    return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
  }
  auto cert = ReadPem(tls.cert_file, "a certificate");
  if (!cert.ok()) return cert.status();
  auto key = ReadPem(tls.key_file, "a key");
  if (!key.ok()) return key.status();
  auto ca = ReadPem(tls.ca_file, "a CA");
  if (!ca.ok()) return ca.status();
  grpc::SslCredentialsOptions opts;
  opts.pem_root_certs = *ca;
  opts.pem_private_key = *key;
  opts.pem_cert_chain = *cert;
  return grpc::CreateCustomChannel(address, grpc::SslCredentials(opts), args);
}

const std::string& InProcessSecret() {
  static const std::string secret = [] {
    unsigned char raw[32];
    if (RAND_bytes(raw, sizeof raw) != 1) std::abort();  // no randomness: no secret worth the name
    std::string hex;
    for (unsigned char b : raw) hex += fmt::format("{:02x}", b);
    return hex;
  }();
  return secret;
}

Caller IdentifyCaller(const grpc::ServerContext& context) {
  Caller c;
  auto auth = context.auth_context();
  const auto& md = context.client_metadata();
  auto text = [&md](const char* key) -> std::optional<std::string> {
    auto it = md.find(key);
    if (it == md.end()) return std::nullopt;
    return std::string(it->second.data(), it->second.size());
  };
  auto user = text(kConsoleUserKey);
  auto secret = text(kConsoleSecretKey);
  if (user || secret) {
    // The console, calling over the in-process channel, proves it with the process's
    // secret; anyone else naming a console user gets no role at all.
    const std::string& want = InProcessSecret();
    const bool genuine = secret && secret->size() == want.size() &&
                         CRYPTO_memcmp(secret->data(), want.data(), want.size()) == 0;
    auto role = ParseRole(text(kConsoleRoleKey).value_or(""));
    if (!genuine || !user || user->empty() || !role.ok() || *role == Role::kAppliance) {
      c.identity = "forged console caller " + context.peer();
      c.role_names = "none";
      return c;
    }
    c.identity = "console:" + *user;
    c.roles = {*role};
    c.role_names = RoleName(*role);
    return c;
  }
  if (!auth || !auth->IsPeerAuthenticated()) {
    // Plaintext is only ever served on loopback (MakeServerCredentials): the embedded
    // development default, where every local caller has every role.
    c.identity = "loopback " + context.peer();
    c.roles = {Role::kAppliance, Role::kOfficer, Role::kAuditor};
    c.role_names = "loopback-dev";
    return c;
  }
  std::string cn, uri;
  for (auto it = auth->begin(); it != auth->end(); ++it) {
    const auto& [name, value] = *it;
    std::string v(value.data(), value.size());
    if (std::string(name.data(), name.size()) == "x509_common_name") cn = v;
    if (v.rfind(kRolePrefix, 0) == 0) {
      auto role = ParseRole(v.substr(kRolePrefix.size()));
      if (role.ok() && !c.roles.count(*role)) {
        c.roles.insert(*role);
        uri = v;
      }
    }
  }
  for (Role r : c.roles) c.role_names += (c.role_names.empty() ? "" : ",") + std::string(RoleName(r));
  if (c.role_names.empty()) c.role_names = "none";
  c.identity = fmt::format("{} {}", cn.empty() ? "(no CN)" : cn, uri.empty() ? "(no role URI)" : uri);
  return c;
}

}  // namespace egressguard::store
