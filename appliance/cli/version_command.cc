#include <grpcpp/grpcpp.h>
#include <hs/hs.h>
#include <openssl/crypto.h>
#include <sqlite3.h>

#include <google/protobuf/stubs/common.h>
#include <iostream>

#include "appliance/build_info.h"
#include "appliance/cli/command.h"

namespace egressguard::cli {

namespace {

void PrintVersion() {
  std::cout << "egressguard " << EGRESSGUARD_VERSION << "\n"
            << "  hyperscan " << hs_version() << "\n"
            << "  openssl   " << OpenSSL_version(OPENSSL_VERSION) << "\n"
            << "  grpc      " << grpc::Version() << "\n"
            << "  protobuf  " << google::protobuf::internal::VersionString(GOOGLE_PROTOBUF_VERSION) << "\n"
            << "  sqlite    " << sqlite3_libversion() << "\n";
}

}  // namespace

void RegisterVersion(CLI::App& app, Context& ctx) {
  app.add_flag_callback("--version", [] {
    PrintVersion();
    throw CLI::Success();
  }, "Print the version and the library versions it runs with, then exit");
  auto* cmd = app.add_subcommand("version", "Print the version and the Hyperscan/OpenSSL/gRPC versions");
  cmd->callback([&ctx] {
    PrintVersion();
    ctx.exit_code = kExitOk;
  });
}

}  // namespace egressguard::cli
