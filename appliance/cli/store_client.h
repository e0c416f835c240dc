#pragma once
// What the officer CLI commands (rules push..., verdicts, audit) share: the
// --store/--cert/--key/--ca flags, the channel they make, and error printing.

#include <CLI/CLI.hpp>
#include <google/protobuf/message.h>
#include <grpcpp/grpcpp.h>

#include <iostream>
#include <memory>
#include <string>

#include "appliance/cli/command.h"
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

// One unary call to the store: a channel from the flags, a `Service` stub, the
// deadline, then `call(stub, ctx)` (which returns the grpc::Status). Returns kExitOk,
// or prints "egressguard <what>: CODE: message" and returns kExitError.
// With `more`: `call` runs again (fresh context, same connection) while it succeeds
// and `more()` is true; for paged queries.
template <class Service, class Call, class More>
int CallStore(const StoreClientFlags& flags, const std::string& what, Call&& call, More&& more) {
  auto channel = OpenStoreChannel(flags);
  if (!channel) return kExitError;
  auto stub = Service::NewStub(channel);
  do {
    grpc::ClientContext ctx;
    SetDeadline(ctx, flags);
    const grpc::Status status = call(*stub, ctx);
    if (!status.ok()) return PrintRpcError(what, status);
  } while (more());
  return kExitOk;
}

template <class Service, class Call>
int CallStore(const StoreClientFlags& flags, const std::string& what, Call&& call) {
  return CallStore<Service>(flags, what, std::forward<Call>(call), [] { return false; });
}

// --json prints the message; otherwise `print_text` prints it for people.
template <class PrintText>
void PrintResult(bool json, const google::protobuf::Message& message, PrintText&& print_text) {
  if (json) {
    std::cout << ToJson(message) << "\n";
  } else {
    print_text();
  }
}

}  // namespace egressguard::cli
