#pragma once
// What the officer CLI commands (rules push..., verdicts, audit) share: the
// --store/--cert/--key/--ca flags, the channel they make, and error printing.

#include <CLI/CLI.hpp>
#include <google/protobuf/message.h>
#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "appliance/store/api_tls.h"

namespace egressguard::cli {

struct StoreClientFlags {
  std::string store = "127.0.0.1:7443";
  store::ApiTls tls;
  int timeout_s = 30;
};

void AddStoreClientFlags(CLI::App& cmd, StoreClientFlags& flags);
// Null (and a message on stderr) when the flags cannot make a channel.
std::shared_ptr<grpc::Channel> OpenStoreChannel(const StoreClientFlags& flags);
void SetDeadline(grpc::ClientContext& ctx, const StoreClientFlags& flags);
// Prints "egressguard <what>: <code>: <message>" and returns kExitError.
int PrintRpcError(const std::string& what, const grpc::Status& status);
// The subcommand `name` of `app` (registered by its owner), or a new one.
CLI::App* FindOrAddSubcommand(CLI::App& app, const std::string& name, const std::string& description);
// The protobuf JSON mapping with the .proto's snake_case names (what --json prints).
std::string ToJson(const google::protobuf::Message& message);

}  // namespace egressguard::cli
