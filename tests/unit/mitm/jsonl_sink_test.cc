// Proves the JSONL audit sink writes one parseable verdict per line from many threads at once, mode 0600.
#include "mitm/jsonl_sink.h"

#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace egressguard::mitm {
namespace {

TEST(JsonlSink, ConcurrentSubmitsGiveWholeLines) {
  char tmpl[] = "/tmp/jsonl-sink-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  std::string path = std::string(tmpl) + "/audit.jsonl";
  auto sink = JsonlSink::Open(path);
  ASSERT_TRUE(sink.ok()) << sink.status();
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) {
        v1::Verdict v;
        v.set_id(std::to_string(t * 1000 + i));
        v.set_host("example.com");
        v.set_path(std::string(1000, 'p'));
        auto* f = v.add_findings();
        f->set_rule_id("pii.credit_card");
        f->set_evidence("4111 **** **** 1111");
        EXPECT_TRUE((*sink)->Submit(v));
      }
    });
  }
  for (auto& th : threads) th.join();
  sink->reset();

  struct stat st {};
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  std::ifstream in(path);
  std::string line;
  std::set<std::string> ids;
  while (std::getline(in, line)) {
    v1::Verdict v;
    ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(line, &v).ok()) << line.substr(0, 200);
    EXPECT_EQ(v.findings(0).rule_id(), "pii.credit_card");
    ids.insert(v.id());
  }
  EXPECT_EQ(ids.size(), 800u);
  EXPECT_NE(VerdictToJsonLine(v1::Verdict{}).find('{'), std::string::npos);
  std::remove(path.c_str());
  rmdir(tmpl);
}

}  // namespace
}  // namespace egressguard::mitm
