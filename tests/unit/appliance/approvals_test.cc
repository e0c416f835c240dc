// Proves four-eyes approval kept in the audit trail: the proposer cannot approve their own change, a second officer's approval applies it exactly once, and a proposal past its expiry is no longer pending and cannot be approved.
#include <gtest/gtest.h>

#include "appliance/store/approvals.h"
#include "appliance/store/store.h"
#include "store_test_util.h"

namespace egressguard::store {
namespace {

using testing::TempDir;

constexpr int64_t kStart = 1'800'000'000'000'000;  // microseconds since the epoch

class ApprovalsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = Store::Open({dir_.File("s.db"), 2, nullptr});
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = std::move(*s);
    approvals_ = std::make_unique<Approvals>(*store_, std::chrono::seconds(3600), [this] { return now_; });
  }

  // Counts applications instead of activating: what is applied is the store's job.
  std::function<absl::StatusOr<v1::PackInfo>(const v1::Proposal&)> Apply() {
    return [this](const v1::Proposal& p) -> absl::StatusOr<v1::PackInfo> {
      ++applied_;
      v1::PackInfo info;
      info.set_version(p.version());
      return info;
    };
  }

  TempDir dir_;
  StorePtr store_;
  std::unique_ptr<Approvals> approvals_;
  int64_t now_ = kStart;
  int applied_ = 0;
};

TEST_F(ApprovalsTest, OwnProposalIsRefusedSecondOfficerAppliesOnce) {
  auto p = approvals_->Propose(v1::Proposal::ACTIVATE, "2.0", v1::ENFORCE, "alice", "officer", "new cards\nid=forged");
  ASSERT_TRUE(p.ok()) << p.status();
  auto pending = approvals_->Pending();
  ASSERT_TRUE(pending.ok());
  ASSERT_EQ(pending->size(), 1u);
  EXPECT_EQ((*pending)[0].proposer(), "alice");
  EXPECT_EQ((*pending)[0].mode(), v1::ENFORCE);
  EXPECT_EQ((*pending)[0].id(), p->id());
  EXPECT_EQ((*pending)[0].reason(), "new cards id=forged");  // a newline cannot start a field

  auto own = approvals_->Approve("2.0", "alice", "officer", "", Apply());
  EXPECT_EQ(own.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(applied_, 0);

  auto other = approvals_->Approve("2.0", "bob", "officer", "checked", Apply());
  ASSERT_TRUE(other.ok()) << other.status();
  EXPECT_EQ(applied_, 1);
  EXPECT_TRUE(approvals_->Pending()->empty());
  EXPECT_EQ(approvals_->Approve("2.0", "carol", "officer", "", Apply()).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(applied_, 1);
}

TEST_F(ApprovalsTest, ExpiredProposalIsNotPendingAndCannotBeApproved) {
  ASSERT_TRUE(approvals_->Propose(v1::Proposal::ROLLBACK, "1.0", v1::PACK_MODE_UNSPECIFIED, "alice", "officer", "bad")
                  .ok());
  now_ += 3599LL * 1'000'000;
  EXPECT_EQ(approvals_->Pending()->size(), 1u);
  now_ += 2LL * 1'000'000;
  EXPECT_TRUE(approvals_->Pending()->empty());
  EXPECT_EQ(approvals_->Approve("1.0", "bob", "officer", "", Apply()).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(applied_, 0);
}

TEST_F(ApprovalsTest, ApplyFailureRecordsNoApproval) {
  ASSERT_TRUE(approvals_->Propose(v1::Proposal::ACTIVATE, "3.0", v1::MONITOR, "alice", "officer", "r").ok());
  auto failed = approvals_->Approve("3.0", "bob", "officer", "", [](const v1::Proposal&) -> absl::StatusOr<v1::PackInfo> {
    return absl::NotFoundError("no such pack");
  });
  EXPECT_EQ(failed.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(approvals_->Pending()->size(), 1u);  // still waiting: nothing was applied
}

TEST(ApprovalsIdentity, LoopbackCallersCountAsOnePerson) {
  EXPECT_TRUE(Approvals::SamePerson("loopback ipv4:127.0.0.1:40000", "loopback ipv4:127.0.0.1:40001"));
  EXPECT_FALSE(Approvals::SamePerson("console:alice", "console:bob"));
  EXPECT_TRUE(Approvals::SamePerson("console:alice", "console:alice"));
}

}  // namespace
}  // namespace egressguard::store
