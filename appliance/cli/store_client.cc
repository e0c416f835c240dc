#include "appliance/cli/store_client.h"

#include <google/protobuf/util/json_util.h>

#include <iostream>

#include "appliance/cli/command.h"

namespace egressguard::cli {

void AddStoreClientFlags(CLI::App& cmd, StoreClientFlags& flags) {
  cmd.add_option("--store", flags.store, "Compliance store address HOST:PORT")->capture_default_str();
  cmd.add_option("--cert", flags.tls.cert_file, "Client certificate (PEM) issued by `egressguard ca issue-client`");
  cmd.add_option("--key", flags.tls.key_file, "Its private key (PEM)");
  cmd.add_option("--ca", flags.tls.ca_file, "The API CA certificate that signed the store's certificate (PEM)");
  cmd.add_option("--timeout", flags.timeout_s, "Seconds to wait for the store")->capture_default_str();
}

std::shared_ptr<grpc::Channel> OpenStoreChannel(const StoreClientFlags& flags) {
  auto channel = store::MakeChannel(flags.store, flags.tls);
  if (!channel.ok()) {
    std::cerr << "egressguard: " << channel.status().message() << "\n";
    return nullptr;
  }
  return *channel;
}

void SetDeadline(grpc::ClientContext& ctx, const StoreClientFlags& flags) {
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(flags.timeout_s));
}

int PrintRpcError(const std::string& what, const grpc::Status& status) {
  static const char* kNames[] = {"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
                                 "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
                                 "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
                                 "UNAUTHENTICATED"};
  int code = static_cast<int>(status.error_code());
  const char* name = code >= 0 && code < 17 ? kNames[code] : "?";
  std::cerr << "egressguard " << what << ": " << name << ": " << status.error_message() << "\n";
  return kExitError;
}

CLI::App* FindOrAddSubcommand(CLI::App& app, const std::string& name, const std::string& description) {
  auto found = app.get_subcommands([&name](const CLI::App* sub) { return sub->get_name() == name; });
  if (!found.empty()) return found.front();
  auto* cmd = app.add_subcommand(name, description);
  cmd->require_subcommand(1);
  return cmd;
}

std::string ToJson(const google::protobuf::Message& message) {
  std::string out;
  google::protobuf::util::JsonPrintOptions o;
  o.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(message, &out, o);
  return out;
}

}  // namespace egressguard::cli
