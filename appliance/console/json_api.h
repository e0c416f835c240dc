#pragma once
// /api/v1/<Service>/<Method>: the store's unary gRPC methods with JSON bodies (the
// protobuf JSON mapping of the very request and response messages). Each call goes
// through the store's own gRPC services over the in-process channel, as the signed-in
// user, so the role check, the audit of refusals and every answer are the gRPC API's
// own; nothing here decides who may do what.

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <string_view>

#include "appliance/console/session.h"

namespace egressguard::console {

struct ApiResult {
  int http_status = 200;
  std::string json;  // the response message, or {"code": "...", "message": "..."}
};

class JsonApi {
 public:
  explicit JsonApi(std::shared_ptr<grpc::Channel> in_process);

  // `service` is the short name ("VerdictQuery"), `method` the RPC ("Query").
  ApiResult Call(std::string_view service, std::string_view method, std::string_view request_json,
                 const TokenClaims& user) const;

 private:
  std::shared_ptr<grpc::Channel> channel_;
};

// The HTTP status that stands for a gRPC status code.
int HttpStatusFor(grpc::StatusCode code);
std::string ErrorJson(std::string_view code, std::string_view message);
// `text` as a JSON string literal, quotes included.
std::string JsonQuoted(std::string_view text);

}  // namespace egressguard::console
