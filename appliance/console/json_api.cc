#include "appliance/console/json_api.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>
#include <google/protobuf/util/json_util.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/support/byte_buffer.h>
#include <fmt/format.h>

#include <future>

#include "appliance/store/api_tls.h"
#include "appliance/json_text.h"

namespace egressguard::console {

namespace {

namespace pb = google::protobuf;

constexpr std::string_view kPackage = "egressguard.v1";
constexpr auto kDeadline = std::chrono::seconds(60);

const char* CodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK: return "OK";
    case grpc::StatusCode::CANCELLED: return "CANCELLED";
    case grpc::StatusCode::INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED: return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND: return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS: return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED: return "PERMISSION_DENIED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED: return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION: return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED: return "ABORTED";
    case grpc::StatusCode::UNIMPLEMENTED: return "UNIMPLEMENTED";
    case grpc::StatusCode::UNAVAILABLE: return "UNAVAILABLE";
    case grpc::StatusCode::UNAUTHENTICATED: return "UNAUTHENTICATED";
    default: return "INTERNAL";
  }
}

std::string JsonString(std::string_view s) {
  std::string out = "\"";
  appliance::AppendJsonEscaped(out, s);
  return out + "\"";
}

bool IsName(std::string_view s) {
  if (s.empty() || s.size() > 64) return false;
  for (char c : s) {
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))) return false;
  }
  return true;
}

}  // namespace

int HttpStatusFor(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK: return 200;
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::OUT_OF_RANGE: return 400;
    case grpc::StatusCode::UNAUTHENTICATED: return 401;
    case grpc::StatusCode::PERMISSION_DENIED: return 403;
    case grpc::StatusCode::NOT_FOUND: return 404;
    case grpc::StatusCode::ALREADY_EXISTS:
    case grpc::StatusCode::FAILED_PRECONDITION:
    case grpc::StatusCode::ABORTED: return 409;
    case grpc::StatusCode::RESOURCE_EXHAUSTED: return 429;
    case grpc::StatusCode::UNIMPLEMENTED: return 501;
    case grpc::StatusCode::UNAVAILABLE: return 503;
    case grpc::StatusCode::DEADLINE_EXCEEDED: return 504;
    default: return 500;
  }
}

std::string JsonQuoted(std::string_view text) { return JsonString(text); }

std::string ErrorJson(std::string_view code, std::string_view message) {
  return fmt::format("{{\"code\":{},\"message\":{}}}", JsonString(code), JsonString(message));
}

JsonApi::JsonApi(std::shared_ptr<grpc::Channel> in_process) : channel_(std::move(in_process)) {}

ApiResult JsonApi::Call(std::string_view service, std::string_view method, std::string_view request_json,
                        const TokenClaims& user) const {
  auto fail = [](grpc::StatusCode code, std::string message) {
    return ApiResult{HttpStatusFor(code), ErrorJson(CodeName(code), message)};
  };
  if (!IsName(service) || !IsName(method)) return fail(grpc::StatusCode::NOT_FOUND, "no such API method");
  const pb::MethodDescriptor* m =
      pb::DescriptorPool::generated_pool()->FindMethodByName(fmt::format("{}.{}.{}", kPackage, service, method));
  // Streams (Report, WatchActive) are for appliances, not a page.
  if (m == nullptr || m->client_streaming() || m->server_streaming()) {
    return fail(grpc::StatusCode::NOT_FOUND, fmt::format("no API method {}/{}", service, method));
  }
  const pb::Message* in_proto = pb::MessageFactory::generated_factory()->GetPrototype(m->input_type());
  const pb::Message* out_proto = pb::MessageFactory::generated_factory()->GetPrototype(m->output_type());
  if (in_proto == nullptr || out_proto == nullptr) return fail(grpc::StatusCode::INTERNAL, "message type not linked");
  std::unique_ptr<pb::Message> request(in_proto->New());
  std::unique_ptr<pb::Message> response(out_proto->New());
  if (!request_json.empty()) {
    pb::util::JsonParseOptions parse;
    parse.ignore_unknown_fields = false;  // a misspelt filter must not silently mean "everything"
    auto st = pb::util::JsonStringToMessage(pb::StringPiece(request_json.data(), request_json.size()), request.get(),
                                            parse);
    if (!st.ok()) {
      return fail(grpc::StatusCode::INVALID_ARGUMENT,
                  fmt::format("request is not a valid {} in JSON: {}", m->input_type()->full_name(),
                              std::string(st.message())));
    }
  }
  std::string wire;
  if (!request->SerializeToString(&wire)) return fail(grpc::StatusCode::INTERNAL, "cannot serialize the request");
  grpc::Slice slice(wire);
  grpc::ByteBuffer in_buffer(&slice, 1), out_buffer;

  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + kDeadline);
  ctx.AddMetadata(store::kConsoleUserKey, user.user);
  ctx.AddMetadata(store::kConsoleRoleKey, ConsoleRoleName(user.role));
  ctx.AddMetadata(store::kConsoleSecretKey, store::InProcessSecret());
  grpc::GenericStub stub(channel_);
  std::promise<grpc::Status> done;
  stub.UnaryCall(&ctx, fmt::format("/{}/{}", m->service()->full_name(), m->name()), grpc::StubOptions(), &in_buffer,
                 &out_buffer, [&done](grpc::Status s) { done.set_value(std::move(s)); });
  grpc::Status status = done.get_future().get();
  if (!status.ok()) return fail(status.error_code(), status.error_message());

  std::vector<grpc::Slice> slices;
  if (!out_buffer.Dump(&slices).ok()) return fail(grpc::StatusCode::INTERNAL, "cannot read the response");
  std::string out_wire;
  for (const auto& s : slices) out_wire.append(reinterpret_cast<const char*>(s.begin()), s.size());
  if (!response->ParseFromString(out_wire)) return fail(grpc::StatusCode::INTERNAL, "cannot parse the response");
  pb::util::JsonPrintOptions print;
  print.preserve_proto_field_names = true;  // the same names `--json` prints in the CLI
  std::string json;
  if (!pb::util::MessageToJsonString(*response, &json, print).ok()) {
    return fail(grpc::StatusCode::INTERNAL, "cannot print the response");
  }
  return ApiResult{200, std::move(json)};
}

}  // namespace egressguard::console
