#pragma once
// Helpers shared by the store tests: a fresh database path and verdict builders.

#include <google/protobuf/util/time_util.h>

#include <filesystem>
#include <string>

#include "egressguard/v1/verdict.pb.h"

namespace egressguard::testing {

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "egressguard-store-XXXXXX").string();
    path_ = ::mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string File(const std::string& name) const { return (std::filesystem::path(path_) / name).string(); }

 private:
  std::string path_;
};

inline v1::Verdict MakeVerdict(const std::string& id, int64_t time_s, const std::string& host,
                               const std::string& category = "", rules::v1::Action action = rules::v1::ALLOW) {
  v1::Verdict v;
  v.set_id(id);
  *v.mutable_time() = google::protobuf::util::TimeUtil::SecondsToTimestamp(time_s);
  v.set_appliance("app-1");
  v.set_client_address("10.0.0.7");
  v.set_workload("ns/payments");
  v.set_host(host);
  v.set_port(443);
  v.set_method("POST");
  v.set_path("/upload");
  v.set_bytes_out(1000);
  v.set_bytes_in(200);
  v.set_rule_pack_version("2026.11.1");
  v.set_action(action);
  if (!category.empty()) {
    auto* f = v.add_findings();
    f->set_rule_id(category + ".rule");
    f->set_category(category);
    f->set_count(1);
    f->set_evidence("4111 **** **** 1111");
  }
  return v;
}

// Problems other than the rollup comparison's: a row edited or deleted in the verdicts
// also changes what the hourly rollups rebuild to, which Verify reports beside it.
template <class VerifyResponse>
int NonRollupProblems(const VerifyResponse& r) {
  int n = 0;
  for (const auto& p : r.problems()) n += p.kind() != "rollup";
  return n;
}
template <class VerifyResponse>
bool HasRollupProblem(const VerifyResponse& r) {
  return NonRollupProblems(r) != r.problems_size();
}

}  // namespace egressguard::testing
