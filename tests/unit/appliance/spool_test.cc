// Proves the reporter's spool keeps every appended verdict across a reopen (as after a crash), removes only acked rows, and refuses beyond its bound.
#include <gtest/gtest.h>

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

}  // namespace
}  // namespace egressguard::reporter
