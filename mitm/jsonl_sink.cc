#include "mitm/jsonl_sink.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <google/protobuf/util/json_util.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace egressguard::mitm {

std::string VerdictToJsonLine(const v1::Verdict& verdict) {
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = false;
  options.preserve_proto_field_names = true;
  std::string out;
  auto status = google::protobuf::util::MessageToJsonString(verdict, &out, options);
  if (!status.ok()) return "{\"error\":\"verdict not serializable\"}";
  return out;
}

absl::StatusOr<std::shared_ptr<JsonlSink>> JsonlSink::Open(const std::string& path) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return absl::InvalidArgumentError(fmt::format("cannot open audit log {}: {}", path, std::strerror(errno)));
  std::FILE* f = ::fdopen(fd, "a");
  if (f == nullptr) {
    ::close(fd);
    return absl::InternalError(fmt::format("fdopen {}: {}", path, std::strerror(errno)));
  }
  return std::shared_ptr<JsonlSink>(new JsonlSink(f));
}

JsonlSink::~JsonlSink() { std::fclose(file_); }

bool JsonlSink::Submit(v1::Verdict verdict) {
  // Evidence is redacted by the engine; fingerprints are keyed HMACs. Nothing else in a
  // verdict is matched content, so the record is written as is.
  std::string line = VerdictToJsonLine(verdict);
  line.push_back('\n');
  std::lock_guard lock(mu_);
  bool ok = std::fwrite(line.data(), 1, line.size(), file_) == line.size();
  // Flushed per line so `tail -f` and tests see each verdict as it is decided.
  ok = std::fflush(file_) == 0 && ok;
  return ok;
}

}  // namespace egressguard::mitm
