// Proves the reporter's spool keeps every appended verdict across a reopen (as after a crash), removes only acked rows, and refuses beyond its bound.
#include <gtest/gtest.h>

#include <fstream>
#include <map>

#include "appliance/reporter/spool.h"
#include "store_test_util.h"

namespace egressguard::reporter {
namespace {

using testing::MakeVerdict;
using testing::TempDir;

TEST(Spool, SurvivesReopenAndRemovesOnlyAcked) {
  TempDir dir;
  SpoolOptions o;
  o.path = dir.File("spool.db");
  {
    auto spool = Spool::Open(o);
    ASSERT_TRUE(spool.ok()) << spool.status();
    for (int i = 0; i < 20; ++i) ASSERT_TRUE((*spool)->Append(MakeVerdict("v" + std::to_string(i), i, "h")).ok());
    auto batch = (*spool)->Peek(0, 5);
    ASSERT_TRUE(batch.ok());
    ASSERT_EQ(batch->size(), 5u);
    ASSERT_TRUE((*spool)->Remove({(*batch)[0].seq, (*batch)[1].seq}).ok());
    EXPECT_EQ((*spool)->size(), 18u);
    // No close, no checkpoint: the object is dropped as a killed process would leave it.
  }
  auto spool = Spool::Open(o);
  ASSERT_TRUE(spool.ok());
  EXPECT_EQ((*spool)->size(), 18u);
  auto all = (*spool)->Peek(0, 100);
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 18u);
  EXPECT_EQ(all->front().verdict.id(), "v2");
  EXPECT_EQ(all->back().verdict.id(), "v19");
  EXPECT_EQ(all->back().verdict.findings_size(), 0);
  EXPECT_EQ(all->back().verdict.host(), "h");
}

TEST(Spool, RefusesBeyondItsBound) {
  TempDir dir;
  SpoolOptions o;
  o.path = dir.File("spool.db");
  o.max_rows = 3;
  auto spool = Spool::Open(o);
  ASSERT_TRUE(spool.ok());
  for (int i = 0; i < 3; ++i) ASSERT_TRUE((*spool)->Append(MakeVerdict(std::to_string(i), i, "h")).ok());
  EXPECT_EQ((*spool)->Append(MakeVerdict("x", 9, "h")).code(), absl::StatusCode::kResourceExhausted);
  auto first = (*spool)->Peek(0, 1);
  ASSERT_TRUE(first.ok());
  ASSERT_TRUE((*spool)->Remove({first->front().seq}).ok());
  EXPECT_TRUE((*spool)->Append(MakeVerdict("x", 9, "h")).ok());
}

v1::Verdict Open(const std::string& id) {
  auto v = MakeVerdict(id, 1, "h");
  v.set_phase(v1::Verdict::OPEN);
  return v;
}

v1::Verdict Completed(const std::string& id) {
  auto v = MakeVerdict(id, 1, "h");
  v.set_response_status(201);
  return v;
}

std::vector<v1::Verdict> PeekAll(Spool& spool) {
  auto all = spool.Peek(0, 1000);
  EXPECT_TRUE(all.ok()) << all.status();
  std::vector<v1::Verdict> out;
  if (all.ok()) {
    for (auto& sv : *all) out.push_back(std::move(sv.verdict));
  }
  return out;
}

// A write-ahead record is never handed out; its completion takes its place, in the counts too.
TEST(Spool, AnOpenRecordWaitsForItsCompletionAndCountsOnce) {
  TempDir dir;
  SpoolOptions o;
  o.path = dir.File("spool.db");
  auto spool = Spool::Open(o);
  ASSERT_TRUE(spool.ok()) << spool.status();
  ASSERT_TRUE((*spool)->Append(Open("a")).ok());
  EXPECT_EQ((*spool)->size(), 1u);
  EXPECT_FALSE((*spool)->HasSendable());
  EXPECT_TRUE(PeekAll(**spool).empty());  // moved into the table, still not sendable
  ASSERT_TRUE((*spool)->Append(Open("b")).ok());
  ASSERT_TRUE((*spool)->Append(Completed("a")).ok());  // a: record in the table, completion in the intake
  ASSERT_TRUE((*spool)->Append(Completed("b")).ok());  // b: both in the intake
  EXPECT_EQ((*spool)->size(), 2u);
  EXPECT_TRUE((*spool)->HasSendable());
  auto all = PeekAll(**spool);
  ASSERT_EQ(all.size(), 2u);
  for (const auto& v : all) {
    EXPECT_EQ(v.phase(), v1::Verdict::COMPLETE);
    EXPECT_EQ(v.response_status(), 201u);
  }
  EXPECT_EQ((*spool)->size(), 2u);
}

// What a killed process left open is closed as INTERRUPTED by the next one, whether it was
// still in the intake or already in the table; completed ones are sent as they are.
TEST(Spool, TheNextProcessClosesOpenRecordsAsInterrupted) {
  TempDir dir;
  SpoolOptions o;
  o.path = dir.File("spool.db");
  {
    auto spool = Spool::Open(o);
    ASSERT_TRUE(spool.ok()) << spool.status();
    ASSERT_TRUE((*spool)->Append(Open("in-table")).ok());
    EXPECT_TRUE(PeekAll(**spool).empty());
    ASSERT_TRUE((*spool)->Append(Open("in-intake")).ok());
    ASSERT_TRUE((*spool)->Append(Open("done")).ok());
    ASSERT_TRUE((*spool)->Append(Completed("done")).ok());
    // Dropped as a killed process leaves it: no further Peek.
  }
  auto spool = Spool::Open(o);
  ASSERT_TRUE(spool.ok()) << spool.status();
  EXPECT_EQ((*spool)->interrupted_at_open(), 2u);
  EXPECT_EQ((*spool)->size(), 3u);
  std::map<std::string, v1::Verdict> by_id;
  for (auto& v : PeekAll(**spool)) by_id[v.id()] = v;
  ASSERT_EQ(by_id.size(), 3u);
  EXPECT_EQ(by_id["done"].phase(), v1::Verdict::COMPLETE);
  for (const char* id : {"in-table", "in-intake"}) {
    EXPECT_EQ(by_id[id].phase(), v1::Verdict::INTERRUPTED) << id;
    EXPECT_NE(by_id[id].reason().find("interrupted"), std::string::npos) << id;
  }
}

TEST(Spool, OneProcessAtATime) {
  TempDir dir;
  SpoolOptions o;
  o.path = dir.File("spool.db");
  auto first = Spool::Open(o);
  ASSERT_TRUE(first.ok());
  auto second = Spool::Open(o);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(second.status().message().find("in use by another process"), std::string::npos);
}

// A full spool refuses new records, never the completion of one it took: that transaction
// was let through on the strength of its record.
TEST(Spool, ACompletionIsNeverRefused) {
  TempDir dir;
  SpoolOptions o;
  o.path = dir.File("spool.db");
  o.max_rows = 1;
  auto spool = Spool::Open(o);
  ASSERT_TRUE(spool.ok());
  ASSERT_TRUE((*spool)->Append(Open("a")).ok());
  EXPECT_FALSE((*spool)->HasRoom());
  EXPECT_EQ((*spool)->Append(Open("b")).code(), absl::StatusCode::kResourceExhausted);
  ASSERT_TRUE((*spool)->Append(Completed("a")).ok());
  EXPECT_EQ(PeekAll(**spool).size(), 1u);
}

// A record cut short (a power loss mid-write) ends the replay; the whole ones before it stay.
TEST(Spool, ATornIntakeTailIsDropped) {
  TempDir dir;
  SpoolOptions o;
  o.path = dir.File("spool.db");
  {
    auto spool = Spool::Open(o);
    ASSERT_TRUE(spool.ok());
    for (const char* id : {"x", "y", "z"}) ASSERT_TRUE((*spool)->Append(Completed(id)).ok());
  }
  {
    std::ofstream tail(o.path + ".intake", std::ios::app | std::ios::binary);
    tail.write("\x40\x00\x00\x00\x01\x02\x03\x04partial", 15);
  }
  auto spool = Spool::Open(o);
  ASSERT_TRUE(spool.ok()) << spool.status();
  auto all = PeekAll(**spool);
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].id(), "x");
  EXPECT_EQ(all[2].id(), "z");
  EXPECT_EQ((*spool)->size(), 3u);
}

}  // namespace
}  // namespace egressguard::reporter
