// Proves the JSONL audit sink writes one parseable verdict per line from many threads at once, mode 0600,
// loses nothing at destruction even through a tiny queue, shows a verdict after Flush, and that its
// own JSON printer gives the bytes protobuf's MessageToJsonString gives.
#include "mitm/jsonl_sink.h"

#include <fmt/format.h>
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/message_differencer.h>
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

std::vector<std::string> ReadLines(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(in, line)) lines.push_back(line);
  return lines;
}

class JsonlSinkQueue : public ::testing::TestWithParam<size_t> {};

// The default queue, and a queue of 3 that makes submitters wait for the writer.
INSTANTIATE_TEST_SUITE_P(QueueSizes, JsonlSinkQueue, ::testing::Values(JsonlSink::kDefaultMaxQueued, size_t{3}));

TEST_P(JsonlSinkQueue, ConcurrentSubmitsGiveWholeLines) {
  char tmpl[] = "/tmp/jsonl-sink-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  std::string path = std::string(tmpl) + "/audit.jsonl";
  auto sink = JsonlSink::Open(path, GetParam());
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
  std::set<std::string> ids;
  for (const auto& line : ReadLines(path)) {
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

TEST(JsonlSink, FlushMakesEarlierVerdictsVisible) {
  char tmpl[] = "/tmp/jsonl-sink-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  std::string path = std::string(tmpl) + "/audit.jsonl";
  auto sink = JsonlSink::Open(path);
  ASSERT_TRUE(sink.ok()) << sink.status();
  for (int i = 0; i < 3; ++i) {
    v1::Verdict v;
    v.set_id(fmt::format("v{}", i));
    ASSERT_TRUE((*sink)->Submit(v));
    (*sink)->Flush();
    auto lines = ReadLines(path);
    ASSERT_EQ(lines.size(), static_cast<size_t>(i + 1));
    EXPECT_NE(lines.back().find(fmt::format("\"id\":\"v{}\"", i)), std::string::npos) << lines.back();
  }
  sink->reset();
  std::remove(path.c_str());
  rmdir(tmpl);
}

std::string ProtobufJson(const v1::Verdict& v) {
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = false;
  options.preserve_proto_field_names = true;
  std::string out;
  EXPECT_TRUE(google::protobuf::util::MessageToJsonString(v, &out, options).ok());
  return out;
}

v1::Verdict FullVerdict() {
  v1::Verdict v;
  v.set_id("7d3c2f2e-1b1a-4c55-9a0e-0123456789ab");
  v.mutable_time()->set_seconds(1795699200);
  v.mutable_time()->set_nanos(123456789);
  v.set_appliance("eg-1");
  v.set_connection_id("0a1b2c3d-42");
  v.set_client_address("[::1]:40000");
  v.set_workload("payments");
  v.set_host("api.example.com");
  v.set_port(443);
  v.set_method("POST");
  v.set_path("/p?card=&q=\"x\"\\y\t\n\x01<b>&z=\u00e9\u20ac");
  v.set_mode("bump");
  v.set_bytes_out(18446744073709551615ull);
  v.set_bytes_in(1);
  v.set_rule_pack_version("2026.11.26-3");
  for (int i = 0; i < 2; ++i) {
    auto* f = v.add_findings();
    f->set_rule_id("pii.credit_card");
    f->set_category("credit_card");
    f->set_count(static_cast<uint64_t>(i + 1));
    f->set_start(0);
    f->set_end(19);
    f->set_evidence("4111 **** **** 1111");
    f->set_fingerprint("ab12");
    f->set_action(rules::v1::BLOCK);
    f->set_severity(rules::v1::HIGH);
  }
  // Occurrences (Finding.spans), one inside an archive member.
  auto* located = v.mutable_findings(1);
  located->set_member("upload.zip!customers.csv");
  for (int i = 0; i < 3; ++i) {
    auto* span = located->add_spans();
    span->set_start(static_cast<uint64_t>(100 * i));
    span->set_end(static_cast<uint64_t>(100 * i + 19));
    span->set_evidence("4111 **** **** 1111");
    if (i > 0) span->set_member("upload.zip!customers.csv");
    if (i != 1) span->set_fingerprint("cd34");
  }
  located->set_spans_truncated(true);
  v.add_findings()->add_spans();  // a span of defaults
  v.set_action(rules::v1::BLOCK);
  v.set_reason("pii.credit_card");
  v.set_enforced(true);
  return v;
}

TEST(VerdictJson, SameBytesAsProtobuf) {
  v1::Verdict full = FullVerdict();
  EXPECT_EQ(VerdictToJsonLine(full), ProtobufJson(full));
  EXPECT_EQ(VerdictToJsonLine(v1::Verdict{}), ProtobufJson(v1::Verdict{}));
  v1::Verdict partial;
  partial.set_mode("refuse");
  partial.mutable_time();  // set, at the epoch
  partial.add_findings();  // all defaults
  partial.set_action(static_cast<rules::v1::Action>(17));  // unknown to this build
  EXPECT_EQ(VerdictToJsonLine(partial), ProtobufJson(partial));
  for (int nanos : {0, 5, 1000, 120000000, 999999999, 1000000}) {
    v1::Verdict t;
    t.mutable_time()->set_seconds(951782400 + nanos % 7);  // around 2000-02-29
    t.mutable_time()->set_nanos(nanos);
    EXPECT_EQ(VerdictToJsonLine(t), ProtobufJson(t)) << nanos;
  }
}

TEST(VerdictJson, ParsesBackToTheSameVerdict) {
  v1::Verdict full = FullVerdict();
  v1::Verdict back;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(VerdictToJsonLine(full), &back).ok());
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(full, back));
  // Bytes that are not UTF-8 still give a valid line (replaced, never copied raw).
  v1::Verdict bad;
  bad.set_reason(std::string("a\xff\xc3(b\xed\xa0\x80", 8));
  std::string line = VerdictToJsonLine(bad);
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(line, &back).ok()) << line;
  EXPECT_EQ(back.reason(), "a\xEF\xBF\xBD\xEF\xBF\xBD(b\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
}

}  // namespace
}  // namespace egressguard::mitm
