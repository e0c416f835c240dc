// Proves rule packs are pushed as immutable drafts with author and reason, activated in a mode, rolled back, diffed, and that every change lands in the audit trail.
#include <gtest/gtest.h>

#include "appliance/store/store.h"
#include "store_backends.h"
#include "store_test_util.h"

namespace egressguard::store {
namespace {

using testing::TempDir;

rules::v1::RulePack Pack(const std::string& version, const std::string& pattern) {
  rules::v1::RulePack p;
  p.set_name("test");
  p.set_version(version);
  auto* r = p.add_rules();
  r->set_id("cc.visa");
  r->set_category("credit_card");
  r->add_patterns(pattern);
  r->set_action(rules::v1::BLOCK);
  r->set_enabled(true);
  return p;
}

// On sqlite and on PostgreSQL (store_backends.h).
class StorePacks : public ::testing::TestWithParam<testing::StoreBackend> {};
INSTANTIATE_TEST_SUITE_P(Backends, StorePacks,
                         ::testing::Values(testing::StoreBackend::kSqlite, testing::StoreBackend::kPostgres),
                         testing::StoreBackendName);

TEST_P(StorePacks, PushActivateRollbackDiffAndAudit) {
  TempDir dir;
  testing::StoreDatabase db(GetParam(), dir);
  EGRESSGUARD_REQUIRE_DATABASE(db);
  auto s = Store::Open({db.database(), 2, nullptr});
  ASSERT_TRUE(s.ok()) << s.status();
  Store& store = **s;
  AuditEntry officer{"alice spiffe://egressguard/role/officer", "officer", "m", "", true};

  EXPECT_EQ(store.GetPack("").status().code(), absl::StatusCode::kNotFound);
  auto p1 = store.PushPack(Pack("1.0", "4[0-9]{15}"), officer.actor, "initial");
  ASSERT_TRUE(p1.ok()) << p1.status();
  EXPECT_EQ(p1->state(), v1::DRAFT);
  EXPECT_EQ(p1->author(), officer.actor);
  EXPECT_EQ(store.PushPack(Pack("1.0", "x"), officer.actor, "again").status().code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(store.PushPack(Pack("1.1", "x"), officer.actor, "").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store.PushPack(Pack("bad version!", "x"), officer.actor, "r").status().code(),
            absl::StatusCode::kInvalidArgument);

  const uint64_t gen0 = store.active_generation();
  auto a1 = store.ActivatePack("1.0", v1::MONITOR, officer, "start");
  ASSERT_TRUE(a1.ok()) << a1.status();
  EXPECT_EQ(a1->state(), v1::ACTIVE);
  EXPECT_GT(store.active_generation(), gen0);
  EXPECT_FALSE(store.ActivatePack("9.9", v1::ENFORCE, officer, "").ok());
  EXPECT_FALSE(store.ActivatePack("1.0", v1::PACK_MODE_UNSPECIFIED, officer, "").ok());

  auto rp2 = Pack("2.0", "4[0-9]{12}(?:[0-9]{3})?");
  auto* extra = rp2.add_rules();
  *extra = rp2.rules(0);
  extra->set_id("cc.new");
  ASSERT_TRUE(store.PushPack(rp2, officer.actor, "wider").ok());
  ASSERT_TRUE(store.ActivatePack("2.0", v1::ENFORCE, officer, "go").ok());
  auto active = store.Active();
  ASSERT_TRUE(active.ok());
  EXPECT_EQ(active->info().version(), "2.0");
  EXPECT_EQ(active->info().mode(), v1::ENFORCE);
  EXPECT_EQ(active->pack().rules_size(), 2);

  auto diff = store.DiffPacks("1.0", "2.0");
  ASSERT_TRUE(diff.ok());
  ASSERT_EQ(diff->changes_size(), 2);
  EXPECT_EQ(diff->changes(0).rule_id(), "cc.new");
  EXPECT_EQ(diff->changes(0).kind(), v1::RuleChange::ADDED);
  EXPECT_EQ(diff->changes(1).rule_id(), "cc.visa");
  EXPECT_EQ(diff->changes(1).kind(), v1::RuleChange::CHANGED);
  ASSERT_EQ(diff->changes(1).fields_size(), 1);
  EXPECT_EQ(diff->changes(1).fields(0), "patterns");
  ASSERT_EQ(diff->pack_fields_size(), 1);
  EXPECT_EQ(diff->pack_fields(0), "version");

  auto rb = store.RollbackPack("", officer, "too wide");
  ASSERT_TRUE(rb.ok()) << rb.status();
  EXPECT_EQ(rb->version(), "1.0");
  EXPECT_EQ(rb->mode(), v1::MONITOR);
  // Nothing before 1.0: a second rollback has nowhere to go.
  EXPECT_EQ(store.RollbackPack("", officer, "again").status().code(), absl::StatusCode::kFailedPrecondition);

  auto list = store.ListPacks();
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->packs_size(), 2);
  for (const auto& p : list->packs()) {
    EXPECT_EQ(p.state(), p.version() == "1.0" ? v1::ACTIVE : v1::INACTIVE) << p.version();
  }

  auto audit = store.ListAudit({});
  ASSERT_TRUE(audit.ok());
  std::vector<std::string> details;
  for (const auto& r : audit->records()) details.push_back(r.detail());
  ASSERT_EQ(details.size(), 5u);  // push, activate, push, activate, rollback
  EXPECT_NE(details[0].find("pushed rule pack 1.0"), std::string::npos);
  EXPECT_NE(details[4].find("rolled back from 2.0 to rule pack 1.0"), std::string::npos);
  EXPECT_EQ(audit->records(4).actor(), officer.actor);
}

// The shipped pack carries message-level rules without patterns (bulk_pii, undecodable,
// encrypted_content): the store takes them, and still refuses any other rule without one.
TEST(StorePackShape, MessageLevelRulesNeedNoPatterns) {
  rules::v1::RulePack p = Pack("1.0", "4[0-9]{15}");
  for (const char* category : {"bulk_pii", "undecodable", "encrypted_content"}) {
    auto* r = p.add_rules();
    r->set_id(std::string("msg.") + category);
    r->set_category(category);
    r->set_action(rules::v1::BLOCK);
  }
  EXPECT_TRUE(CheckPackShape(p).empty()) << CheckPackShape(p).front();
  p.mutable_rules(1)->set_category("encrypted");
  ASSERT_EQ(CheckPackShape(p).size(), 1u);
  EXPECT_EQ(CheckPackShape(p).front(), "rule msg.bulk_pii: at least one pattern is required");
}

}  // namespace
}  // namespace egressguard::store
