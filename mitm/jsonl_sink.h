#pragma once
// JsonlSink: appends each verdict to an audit log as one JSON object per line (the
// protobuf JSON mapping of egressguard.v1.Verdict, proto field names). Thread-safe.
// Verdicts carry only redacted evidence and keyed fingerprints (the engine's contract)
// and paths without query values (the proxy's), so the log never holds raw matched data.

#include <cstdio>
#include <mutex>
#include <string>

#include "absl/status/statusor.h"
#include "mitm/verdict_sink.h"

namespace egressguard::mitm {

class JsonlSink final : public VerdictSink {
 public:
  // Opens (creates, appends to) `path` with mode 0600.
  static absl::StatusOr<std::shared_ptr<JsonlSink>> Open(const std::string& path);
  ~JsonlSink() override;
  JsonlSink(const JsonlSink&) = delete;
  JsonlSink& operator=(const JsonlSink&) = delete;

  // VerdictSink
  bool Submit(v1::Verdict verdict) override;

 private:
  explicit JsonlSink(std::FILE* file) : file_(file) {}
  std::mutex mu_;
  std::FILE* file_;
};

// One line of JSON for `verdict` (no trailing newline); exposed for tests and the CLI.
std::string VerdictToJsonLine(const v1::Verdict& verdict);

}  // namespace egressguard::mitm
