// Proves the engine finds each category exactly as in one buffer whatever the chunking, and applies validators, exclusions, context, min_count, bulk_pii, offsets, hot swap and compile errors as specified.
#include <gtest/gtest.h>
#include <zlib.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <random>
#include <regex>
#include <set>

#include "dlp/engine.h"
#include "dlp/engine_holder.h"
#include "dlp/validators.h"
#include "tests/unit/dlp/engine_test_util.h"

namespace egressguard::dlp {
namespace {

using testing::CompileOrDie;
using testing::DefaultPack;
using testing::Describe;
using testing::FindCategory;
using testing::MakePack;
using testing::MakeRule;
using testing::ScanSplit;
using testing::ScanWhole;

// A ghp_ token with a correct CRC32 checksum (base62, GitHub's alphabet, 6 chars).
std::string GithubToken() {
  const std::string body = "a7Kq2ZpX9mBv4TnR8sLw3YcF6hJd1E";
  uLong crc = crc32(0L, reinterpret_cast<const Bytef*>(body.data()), static_cast<uInt>(body.size()));
  static constexpr char kB62[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
  std::string sum(6, '0');
  for (int i = 5; i >= 0; --i) {
    sum[static_cast<size_t>(i)] = kB62[crc % 62];
    crc /= 62;
  }
  return "ghp_" + body + sum;
}

struct Sample {
  std::string category;
  std::string text;
};

std::vector<Sample> CategorySamples() {
  return {
      {"credit_card", R"({"order":1182,"card":"4111 1111 1111 1111","exp":"12/27"})"},
      {"credit_card", "pan=5555555555554444&cvc=123"},
      {"iban", "Beneficiary IBAN: CH93 0076 2011 6238 5295 7, thanks"},
      {"iban", R"({"iban":"DE89370400440532013000"})"},
      {"ahv", "AHV-Nr. 756.9217.0769.85 (Versicherter)"},
      {"us_ssn", "employee ssn 536-90-4399 on file"},
      {"uk_nino", "national insurance number: AB 12 34 56 C"},
      {"de_steuer_id", "Steuer-ID 86095742719"},
      {"email", "From: Jane Doe <jane.doe@acme-corp.ch>\r\n"},
      {"phone", "call me at +41 44 668 18 00 tomorrow"},
      {"aws_access_key", "aws_access_key_id = AKIA2E3X7PQRS4TUVWXY\n"},
      {"private_key",
       "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj\n"},
      {"jwt",
       "Authorization: Bearer "
       "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4ifQ.abc\r\n"},
      {"github_token", "token=" + GithubToken() + "&x=1"},
      {"db_dump", "COPY public.customers (id, email) FROM stdin;\n1\tanna@bluewin.ch\n\\.\n"},
      {"db_schema", "--\n-- PostgreSQL database dump\n--\n\nSET statement_timeout = 0;\n"},
  };
}

class DefaultPackTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { engine_ = new EnginePtr(CompileOrDie(DefaultPack())); }
  static void TearDownTestSuite() { delete engine_; }
  static const EnginePtr& engine() { return *engine_; }
  static EnginePtr* engine_;
};
EnginePtr* DefaultPackTest::engine_ = nullptr;

TEST_F(DefaultPackTest, EverySampleFoundAtEveryChunkBoundary) {
  ASSERT_NE(engine(), nullptr);
  for (const auto& s : CategorySamples()) {
    const MessageResult whole = ScanWhole(engine(), s.text);
    ASSERT_NE(FindCategory(whole, s.category), nullptr) << s.category << ": " << s.text << " -> " << Describe(whole);
    const std::string expected = Describe(whole);
    for (size_t cut = 0; cut <= s.text.size(); ++cut) {
      ASSERT_EQ(Describe(ScanSplit(engine(), s.text, {cut})), expected) << s.category << " split at " << cut;
    }
    // and byte by byte
    std::vector<size_t> every(s.text.size());
    for (size_t i = 0; i < every.size(); ++i) every[i] = i;
    ASSERT_EQ(Describe(ScanSplit(engine(), s.text, every)), expected) << s.category << " byte by byte";
  }
}

TEST_F(DefaultPackTest, OffsetsPointIntoTheOriginalBytes) {
  const std::string card = "4111 1111 1111 1111";
  const std::string msg = R"({"note":"pay","card":")" + card + R"("})";
  const MessageResult r = ScanWhole(engine(), msg);
  const v1::Finding* f = FindCategory(r, "credit_card");
  ASSERT_NE(f, nullptr) << Describe(r);
  EXPECT_EQ(f->start(), msg.find(card));
  EXPECT_EQ(f->end(), msg.find(card) + card.size());
  EXPECT_EQ(f->evidence().find("1111 1111 1111"), std::string::npos) << "evidence must be redacted: " << f->evidence();
  EXPECT_EQ(f->fingerprint().size(), 64u);
  EXPECT_EQ(r.action, rules::v1::BLOCK);
  EXPECT_EQ(r.reason, "pii.credit_card");
}

TEST_F(DefaultPackTest, ValidatorsDropLookalikes) {
  // Luhn-invalid card, bad IBAN check digits, UUID, timestamp, order id, hex hash.
  const std::string msg =
      R"({"card":"4111 1111 1111 1112","iban":"CH94 0076 2011 6238 5295 7",)"
      R"("id":"123e4567-e89b-12d3-a456-426614174000","ts":"2026-11-26T09:31:22.123456Z",)"
      R"("order":"40512345678901234","sha":"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"})";
  const MessageResult r = ScanWhole(engine(), msg);
  EXPECT_TRUE(r.findings.empty()) << Describe(r);
  EXPECT_EQ(r.action, rules::v1::ALLOW);
}

TEST_F(DefaultPackTest, ExclusionsDropPublishedValues) {
  const MessageResult r = ScanWhole(engine(), "key AKIAIOSFODNN7EXAMPLE mail bob@example.com and AKIAABCDEFGHIEXAMPLE");
  EXPECT_TRUE(r.findings.empty()) << Describe(r);
}

TEST_F(DefaultPackTest, RequiredContextKeyword) {
  EXPECT_EQ(FindCategory(ScanWhole(engine(), "ref 536904399 shipped"), "us_ssn"), nullptr);
  EXPECT_NE(FindCategory(ScanWhole(engine(), "SSN: 536904399"), "us_ssn"), nullptr);
}

TEST_F(DefaultPackTest, BoostRaisesSeverity) {
  const MessageResult plain_r = ScanWhole(engine(), "x 4111111111111111 y");
  const MessageResult boosted_r = ScanWhole(engine(), "credit card 4111111111111111 y");
  const auto* plain = FindCategory(plain_r, "credit_card");
  const auto* boosted = FindCategory(boosted_r, "credit_card");
  ASSERT_NE(plain, nullptr);
  ASSERT_NE(boosted, nullptr);
  EXPECT_EQ(static_cast<int>(boosted->severity()), static_cast<int>(plain->severity()) + 1);
}

TEST_F(DefaultPackTest, MinCountCountsMatches) {
  auto tuples = [](int n) {
    std::string s = "INSERT INTO `t` VALUES ";
    for (int i = 0; i < n; ++i) s += (i ? ",(" : "(") + std::to_string(i) + ",'x')";
    return s + ";\n";
  };
  EXPECT_EQ(FindCategory(ScanWhole(engine(), tuples(50)), "db_dump"), nullptr);  // 49 separators
  const std::string big = tuples(51);
  const MessageResult r = ScanWhole(engine(), big);
  const v1::Finding* f = FindCategory(r, "db_dump");
  ASSERT_NE(f, nullptr) << Describe(r);
  EXPECT_EQ(f->count(), 50u);
  EXPECT_EQ(f->start(), 0u);  // a dump spans the whole message
  EXPECT_EQ(f->end(), big.size());
}

std::string Emails(int n, int distinct) {
  std::string s = "[";
  for (int i = 0; i < n; ++i) s += R"({"mail":"user)" + std::to_string(i % distinct) + R"(@corp-mail.ch"},)";
  return s + "]";
}

TEST_F(DefaultPackTest, BulkPiiCountsDistinctValuesWhereThePackAsks) {
  // The default pack counts records (50); a pack or deployment that wants a distinct
  // value count sets bulk_pii_threshold, and it still decides.
  EXPECT_EQ(FindCategory(ScanWhole(engine(), Emails(25, 25)), "bulk_pii"), nullptr);
  EngineOptions options;
  options.bulk_pii_threshold = 25;
  const EnginePtr by_values = CompileOrDie(DefaultPack(), options);
  EXPECT_EQ(FindCategory(ScanWhole(by_values, Emails(24, 24)), "bulk_pii"), nullptr);
  EXPECT_EQ(FindCategory(ScanWhole(by_values, Emails(100, 24)), "bulk_pii"), nullptr);  // duplicates count once
  const std::string msg = Emails(25, 25);
  const MessageResult r = ScanWhole(by_values, msg);
  const v1::Finding* f = FindCategory(r, "bulk_pii");
  ASSERT_NE(f, nullptr) << Describe(r);
  EXPECT_EQ(f->count(), 25u);
  EXPECT_EQ(f->evidence(), "25 distinct PII values");
  EXPECT_EQ(f->start(), 0u);
  EXPECT_EQ(f->end(), msg.size());
  EXPECT_EQ(FindCategory(r, "email")->count(), 25u);
  EXPECT_EQ(r.action, rules::v1::BLOCK);
}

TEST_F(DefaultPackTest, BulkPiiFromCsvHeader) {
  auto csv = [](int rows) {
    std::string s = "id;customer_email;signup\n";
    for (int i = 0; i < rows; ++i) s += std::to_string(i) + ";redacted;2026-01-01\n";
    return s;
  };
  EXPECT_EQ(FindCategory(ScanWhole(engine(), csv(49)), "bulk_pii"), nullptr);
  const MessageResult r = ScanWhole(engine(), csv(50));
  const v1::Finding* f = FindCategory(r, "bulk_pii");
  ASSERT_NE(f, nullptr) << Describe(r);
  EXPECT_EQ(f->count(), 50u);
  EXPECT_EQ(f->evidence(), "CSV with 50 records of people: customer_email");
  // a header without PII columns is just a table
  EXPECT_EQ(FindCategory(ScanWhole(engine(), "id,sku,qty\n" + std::string(30, '\n') + "1,a,2\n"), "bulk_pii"),
            nullptr);
}

TEST_F(DefaultPackTest, StreamStateFitsOneKilobyte) { EXPECT_LE(engine()->stream_state_bytes(), 1024u); }

TEST(EngineTest, CustomSuppressContext) {
  auto rule = MakeRule("t.num", "order", {"ORD-[0-9]{6}"});
  rule.mutable_context()->add_keywords("test");
  rule.mutable_context()->set_window_before(10);
  rule.mutable_context()->set_window_after(10);
  rule.mutable_context()->set_effect(rules::v1::Context::SUPPRESS);
  auto engine = CompileOrDie(MakePack({rule}));
  EXPECT_EQ(ScanWhole(engine, "real ORD-123456 here").findings.size(), 1u);
  EXPECT_TRUE(ScanWhole(engine, "TEST: ORD-123456 here").findings.empty());
  EXPECT_TRUE(ScanWhole(engine, "ORD-123456 (a Test)").findings.empty());
  // keyword beyond the window does not count
  EXPECT_EQ(ScanWhole(engine, "test.............. ORD-123456").findings.size(), 1u);
}

TEST(EngineTest, BadPatternNamesRuleAndReason) {
  auto engine = Engine::Compile(MakePack({MakeRule("ok.rule", "x", {"abc"}), MakeRule("bad.rule", "x", {"a(b"})}), {});
  ASSERT_FALSE(engine.ok());
  const std::string msg(engine.status().message());
  EXPECT_NE(msg.find("bad.rule"), std::string::npos) << msg;
  EXPECT_NE(msg.find("Hyperscan"), std::string::npos) << msg;
  EXPECT_NE(msg.find("parenthes"), std::string::npos) << msg;  // Hyperscan's own reason
}

TEST(EngineTest, UnknownValidatorRefused) {
  auto engine = Engine::Compile(MakePack({MakeRule("r", "x", {"abc"}, "no_such_validator")}), {});
  ASSERT_FALSE(engine.ok());
  EXPECT_NE(std::string(engine.status().message()).find("no_such_validator"), std::string::npos);
}

TEST(EngineTest, HotSwapOldScanFinishesOnOldEngine) {
  EngineHolder holder(CompileOrDie(MakePack({MakeRule("old.rule", "a", {"alpha[0-9]{3}"})})));
  Scanner scanner;
  auto old_scan = scanner.Open(holder.Current(), {});
  old_scan->Feed("xx alpha1");
  holder.Swap(CompileOrDie(MakePack({MakeRule("new.rule", "b", {"beta[0-9]{3}", "gamma[a-z]{40}"})})));
  auto new_scan = scanner.Open(holder.Current(), {});  // grows the shared scratch
  new_scan->Feed("beta777 alpha123");
  old_scan->Feed("23 beta777");
  MessageResult old_r = old_scan->Finish();
  MessageResult new_r = new_scan->Finish();
  ASSERT_EQ(old_r.findings.size(), 1u) << Describe(old_r);
  EXPECT_EQ(old_r.findings[0].rule_id(), "old.rule");
  ASSERT_EQ(new_r.findings.size(), 1u) << Describe(new_r);
  EXPECT_EQ(new_r.findings[0].rule_id(), "new.rule");
}

TEST(EngineTest, NoEngineFailsClosed) {
  Scanner scanner;
  auto scan = scanner.Open(nullptr, {});
  scan->Feed("anything");
  EXPECT_EQ(scan->action_so_far(), rules::v1::BLOCK);
  EXPECT_EQ(scan->Finish().reason, "engine_unavailable");
}

TEST(EngineTest, ActionSoFarRisesBeforeFinish) {
  auto engine = CompileOrDie(MakePack({MakeRule("b", "secret", {"TOPSECRET"}, "", rules::v1::BLOCK)}));
  Scanner scanner;
  auto scan = scanner.Open(engine, {});
  scan->Feed("hello ");
  EXPECT_EQ(scan->action_so_far(), rules::v1::ALLOW);
  scan->Feed(std::string("TOPSECRET") + std::string(2000, ' '));
  EXPECT_EQ(scan->action_so_far(), rules::v1::BLOCK);
  EXPECT_EQ(scan->Finish().action, rules::v1::BLOCK);
}

// The digit gate against a reference: random runs of digits and separators, long
// enough to overflow the gate's run buffer, scanned whole and in random chunks; every
// distinct \b-delimited value must be counted and the first start must agree.
TEST(EngineTest, DigitGateMatchesReferenceOnLongRuns) {
  auto engine = CompileOrDie(MakePack({MakeRule("ssn.like", "x", {R"(\b[0-9]{3}-[0-9]{2}-[0-9]{4}\b)"})}));
  std::mt19937 rng(42);
  const std::string alphabet = "0123456789--- ";
  const std::regex ref(R"(\b[0-9]{3}-[0-9]{2}-[0-9]{4}\b)");
  for (int round = 0; round < 20; ++round) {
    std::string data;
    const size_t len = 5000 + rng() % 10000;
    for (size_t i = 0; i < len; ++i) {
      data.push_back(rng() % 500 == 0 ? 'x' : alphabet[rng() % alphabet.size()]);
    }
    // plant values at random places, including around the 4 KiB run buffer size
    for (int k = 0; k < 5; ++k) {
      size_t at = k == 0 ? 4090 : rng() % (len - 20);
      data.replace(at, 13, " 123-45-678" + std::to_string(k) + " ");
    }
    std::set<std::string> distinct;
    size_t first = std::string::npos;
    for (auto it = std::sregex_iterator(data.begin(), data.end(), ref); it != std::sregex_iterator(); ++it) {
      distinct.insert(it->str());
      first = std::min(first, static_cast<size_t>(it->position()));
    }
    std::vector<size_t> cuts;
    for (size_t at = rng() % 700; at < data.size(); at += 1 + rng() % 700) cuts.push_back(at);
    for (const auto& r : {ScanWhole(engine, data), ScanSplit(engine, data, cuts)}) {
      ASSERT_EQ(r.findings.size(), 1u) << "round " << round;
      EXPECT_EQ(r.findings[0].count(), distinct.size()) << "round " << round;
      EXPECT_EQ(r.findings[0].start(), first) << "round " << round;
    }
  }
}

// A rule that REQUIRES a keyword before a digit-only match is scanned only where the
// stream saw one of its keywords (the keyed gate classes). Against a reference that
// checks every match's 24-byte before-window itself, with the keyword and the value cut
// apart at every byte, and with keywords far enough away not to count.
TEST(EngineTest, KeyedDigitRulesMatchReferenceAtEverySplit) {
  auto keyed = MakeRule("acct", "account", {R"(\b[1-9][0-9]{7}\b)"});
  keyed.mutable_context()->add_keywords("Konto");
  keyed.mutable_context()->add_keywords("acct#");
  keyed.mutable_context()->set_window_before(24);
  keyed.mutable_context()->set_effect(rules::v1::Context::REQUIRE);
  auto free_rule = MakeRule("ssn.like", "x", {R"(\b[0-9]{3}-[0-9]{2}-[0-9]{4}\b)"});
  auto engine = CompileOrDie(MakePack({keyed, free_rule}));
  const std::regex value(R"(\b[1-9][0-9]{7}\b)");
  auto reference = [&](const std::string& data) {
    std::set<std::string> distinct;
    std::string lower = data;
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    for (auto it = std::sregex_iterator(data.begin(), data.end(), value); it != std::sregex_iterator(); ++it) {
      const size_t at = static_cast<size_t>(it->position());
      const std::string before = lower.substr(at - std::min<size_t>(at, 24), std::min<size_t>(at, 24));
      if (before.find("konto") != std::string::npos || before.find("acct#") != std::string::npos) {
        distinct.insert(it->str());
      }
    }
    return distinct.size();
  };
  const std::vector<std::string> samples = {
      "KONTO: 12345678 and again 87654321",
      "acct# 2345678901 no; acct#23456789 yes; 123-45-6789",
      "konto                          34567890 too far",
      "x 45678901 konto 56789012 and 1234567890123 and 0konto67890123",
  };
  for (const auto& data : samples) {
    const size_t want = reference(data);
    for (size_t cut = 0; cut <= data.size(); ++cut) {
      const auto r = ScanSplit(engine, data, {cut});
      const auto* f = FindCategory(r, "account");
      EXPECT_EQ(f ? f->count() : 0u, want) << data << " cut " << cut << ": " << Describe(r);
    }
  }
}

// Variable-width gated matches in digit runs far longer than the gate's run buffer:
// the result must not depend on where the chunks are cut.
TEST(EngineTest, LongDigitRunsChunkInvariant) {
  auto engine = CompileOrDie(MakePack({MakeRule("groups", "x", {"[1-9][0-9]{3}(?: [0-9]{4}){1,4}"})}));
  std::mt19937 rng(7);
  for (int round = 0; round < 10; ++round) {
    std::string data;
    const size_t len = 9000 + rng() % 9000;
    while (data.size() < len) {
      data += std::to_string(1000 + rng() % 9000);
      data += rng() % 7 == 0 ? "  " : " ";
    }
    const std::string whole = Describe(ScanWhole(engine, data));
    for (int k = 0; k < 5; ++k) {
      std::vector<size_t> cuts;
      for (size_t at = rng() % 2000; at < data.size(); at += 1 + rng() % 2000) cuts.push_back(at);
      ASSERT_EQ(Describe(ScanSplit(engine, data, cuts)), whole) << "round " << round;
    }
  }
}

TEST(EngineTest, DistinctValuesCountOnceAcrossSeparators) {
  auto engine = CompileOrDie(MakePack({MakeRule("cc", "credit_card", {"[0-9]{4}(?:[ -]?[0-9]{4}){3}"}, "credit_card")}));
  const MessageResult r = ScanWhole(engine, "4111111111111111 / 4111 1111 1111 1111 / 4111-1111-1111-1111");
  ASSERT_EQ(r.findings.size(), 1u) << Describe(r);
  EXPECT_EQ(r.findings[0].count(), 1u);
  EXPECT_EQ(r.findings[0].start(), 0u);
}

}  // namespace
}  // namespace egressguard::dlp

namespace egressguard::dlp {
namespace {

std::string Base64(std::string_view in) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    uint32_t v = (static_cast<uint8_t>(in[i]) << 16) | (static_cast<uint8_t>(in[i + 1]) << 8) | static_cast<uint8_t>(in[i + 2]);
    for (int s = 18; s >= 0; s -= 6) out.push_back(kAlphabet[(v >> s) & 63]);
  }
  if (i < in.size()) {
    uint32_t v = static_cast<uint8_t>(in[i]) << 16;
    if (i + 1 < in.size()) v |= static_cast<uint8_t>(in[i + 1]) << 8;
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.push_back(i + 1 < in.size() ? kAlphabet[(v >> 6) & 63] : '=');
    out.push_back('=');
  }
  return out;
}

class DecodedLayersTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { engine_ = new EnginePtr(testing::CompileOrDie(testing::DefaultPack())); }
  static void TearDownTestSuite() { delete engine_; }
  static const EnginePtr& engine() { return *engine_; }
  static EnginePtr* engine_;
};
EnginePtr* DecodedLayersTest::engine_ = nullptr;

TEST_F(DecodedLayersTest, Base64ValueMapsToEncodedSpan) {
  const std::string blob = Base64("customer card 4111 1111 1111 1111 exp 12/27, thanks");
  const std::string msg = R"({"attachment":")" + blob + R"(","n":1})";
  const MessageResult whole = testing::ScanWhole(engine(), msg, ContentHint{"application/json", "", false});
  const v1::Finding* f = testing::FindCategory(whole, "credit_card");
  ASSERT_NE(f, nullptr) << testing::Describe(whole);
  EXPECT_GE(f->start(), msg.find(blob));
  EXPECT_LE(f->end(), msg.find(blob) + blob.size());
  EXPECT_LT(f->start(), f->end());
  for (size_t cut = 0; cut <= msg.size(); cut += 3) {
    ASSERT_EQ(testing::Describe(testing::ScanSplit(engine(), msg, {cut}, ContentHint{"application/json", "", false})),
              testing::Describe(whole))
        << "cut " << cut;
  }
}

TEST_F(DecodedLayersTest, PercentEncodedEmailInForm) {
  const std::string msg = "user=jane&mail=jane.doe%40acme-corp.ch&x=1";
  const MessageResult r =
      testing::ScanWhole(engine(), msg, ContentHint{"application/x-www-form-urlencoded", "", false});
  const v1::Finding* f = testing::FindCategory(r, "email");
  ASSERT_NE(f, nullptr) << testing::Describe(r);
  EXPECT_EQ(f->start(), msg.find("jane.doe"));
  EXPECT_EQ(f->end(), msg.find("&x=1"));
}

TEST_F(DecodedLayersTest, SameValueRawAndDecodedCountsOnce) {
  const std::string card = "4111 1111 1111 1111";
  const std::string msg = "raw " + card + " b64 " + Base64("card " + card + " end") + " done";
  const MessageResult r = testing::ScanWhole(engine(), msg);
  const v1::Finding* f = testing::FindCategory(r, "credit_card");
  ASSERT_NE(f, nullptr) << testing::Describe(r);
  EXPECT_EQ(f->count(), 1u);
  EXPECT_EQ(f->start(), msg.find(card));
}

// What cannot be read does not leave: the shipped pack's `undecodable` rule blocks.
TEST_F(DecodedLayersTest, CorruptGzipIsUndecodableAndBlocks) {
  const std::string msg = std::string("\x1f\x8b\x08\x00", 4) + std::string(200, '\x55');
  const MessageResult r = testing::ScanWhole(engine(), msg, ContentHint{"application/json", "gzip", false});
  const v1::Finding* f = testing::FindCategory(r, "undecodable");
  ASSERT_NE(f, nullptr) << testing::Describe(r);
  EXPECT_EQ(f->rule_id(), "content.undecodable");
  EXPECT_EQ(f->action(), rules::v1::BLOCK);
  EXPECT_EQ(r.action, rules::v1::BLOCK);

  // A pack without an `undecodable` rule falls back to EngineOptions::undecodable_action
  // (alert unless set).
  rules::v1::RulePack without = testing::DefaultPack();
  for (int i = without.rules_size() - 1; i >= 0; --i) {
    if (without.rules(i).category() == "undecodable") without.mutable_rules()->DeleteSubrange(i, 1);
  }
  ASSERT_EQ(without.rules_size() + 1, testing::DefaultPack().rules_size());
  const MessageResult fallback =
      testing::ScanWhole(testing::CompileOrDie(without), msg, ContentHint{"application/json", "gzip", false});
  const v1::Finding* g = testing::FindCategory(fallback, "undecodable");
  ASSERT_NE(g, nullptr) << testing::Describe(fallback);
  EXPECT_EQ(g->action(), rules::v1::ALERT);
  EngineOptions strict;
  strict.undecodable_action = rules::v1::BLOCK;
  const MessageResult set = testing::ScanWhole(testing::CompileOrDie(without, strict), msg,
                                               ContentHint{"application/json", "gzip", false});
  EXPECT_EQ(set.action, rules::v1::BLOCK);
}

// The decoded-size limit grows with the message: a large base64 attachment is read to its
// end (a value at its end found), while a bomb's expansion still stops it as undecodable.
TEST(DecodedSizeLimit, GrowsWithTheInputSoTranscodingIsReadToTheEnd) {
  EngineOptions o;
  o.max_decoded_bytes = 1 << 20;  // small, so that a few MiB pass it
  const EnginePtr engine = CompileOrDie(DefaultPack(), o);
  std::mt19937 rng(7);
  std::string payload(3 << 20, '\0');
  for (auto& c : payload) c = static_cast<char>('a' + rng() % 26);
  payload += " card 4539 1488 0343 6467 at the end";
  const std::string body = Base64(payload);
  const MessageResult read = ScanWhole(engine, body);
  EXPECT_EQ(FindCategory(read, "undecodable"), nullptr) << Describe(read);
  EXPECT_NE(FindCategory(read, "credit_card"), nullptr) << Describe(read);

  o.decoded_bytes_per_input_byte = 0;  // the fixed limit of before
  const MessageResult fixed = ScanWhole(CompileOrDie(DefaultPack(), o), body);
  EXPECT_NE(FindCategory(fixed, "undecodable"), nullptr) << Describe(fixed);

  // 64 MiB of zeros gzipped is ~64 KiB: far past 1 MiB + 8 bytes per input byte.
  std::string zeros(64 << 20, '\0');
  z_stream z{};
  deflateInit2(&z, 9, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY);
  std::string gz(deflateBound(&z, zeros.size()), '\0');
  z.next_in = reinterpret_cast<Bytef*>(zeros.data());
  z.avail_in = static_cast<uInt>(zeros.size());
  z.next_out = reinterpret_cast<Bytef*>(gz.data());
  z.avail_out = static_cast<uInt>(gz.size());
  ASSERT_EQ(deflate(&z, Z_FINISH), Z_STREAM_END);
  gz.resize(z.total_out);
  deflateEnd(&z);
  o.decoded_bytes_per_input_byte = 8;
  o.max_expansion_ratio = 1u << 30;  // leave the bomb to the size limit alone
  const MessageResult bomb = ScanWhole(CompileOrDie(DefaultPack(), o), gz, ContentHint{"text/plain", "gzip", false});
  const v1::Finding* u = FindCategory(bomb, "undecodable");
  ASSERT_NE(u, nullptr) << Describe(bomb);
}

}  // namespace
}  // namespace egressguard::dlp

namespace egressguard::dlp {
namespace {

std::string ReadFile(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// A Scanner reuses finished scans for its next messages: nothing of one message may
// reach the next, whether it finished, was abandoned half-way (an open digit run, a
// pending match, a decoder mid-document), or ran while another scan was open.
TEST(EngineTest, PooledScansMatchFreshOnes) {
  EngineOptions options;
  options.fingerprint_key = "pool-test";
  const EnginePtr engine = CompileOrDie(DefaultPack(), options);
  std::vector<std::filesystem::path> files;
  for (const auto& e : std::filesystem::recursive_directory_iterator(std::string(EGRESSGUARD_TEST_DATA_DIR) +
                                                                     "/corpus")) {
    if (e.is_regular_file() && e.path().extension() != ".expect" && e.path().extension() != ".md") {
      files.push_back(e.path());
    }
  }
  std::sort(files.begin(), files.end());
  ASSERT_GE(files.size(), 100u);
  Scanner scanner;
  size_t with_findings = 0;
  for (size_t i = 0; i < files.size(); ++i) {
    const std::string data = ReadFile(files[i]);
    ContentHint hint;
    hint.is_url = i % 7 == 3;
    if (i % 3 == 1) {  // abandoned: state left in the middle of a message
      auto abandoned = scanner.Open(engine, {});
      abandoned->Feed(std::string_view(data).substr(0, data.size() / 2));
      abandoned->Feed("card 4111 1111 1111");
    }
    auto other = scanner.Open(engine, {});  // open alongside, finished after
    other->Feed("IBAN CH93 0076 2011 6238 5295 7");
    auto scan = scanner.Open(engine, hint);
    for (size_t at = 0; at < data.size(); at += 1000) scan->Feed(std::string_view(data).substr(at, 1000));
    const MessageResult pooled = scan->Finish();
    const MessageResult fresh = ScanWhole(engine, data, hint);
    EXPECT_EQ(Describe(pooled), Describe(fresh)) << files[i];
    if (!fresh.findings.empty()) ++with_findings;
    EXPECT_EQ(Describe(other->Finish()), Describe(ScanWhole(engine, "IBAN CH93 0076 2011 6238 5295 7")));
  }
  EXPECT_GE(with_findings, 50u);
  // The tail of an abandoned card number must not complete one in the next message.
  {
    auto abandoned = scanner.Open(engine, {});
    abandoned->Feed("card 4111 1111 1111");
  }
  auto next = scanner.Open(engine, {});
  next->Feed(" 1111 end");
  EXPECT_TRUE(next->Finish().findings.empty());
  // Nor may an abandoned digit run swallow the start of the next message's number.
  {
    auto abandoned = scanner.Open(engine, {});
    abandoned->Feed("order 12 34");
  }
  auto card = scanner.Open(engine, {});
  card->Feed("4111 1111 1111 1111 end");
  const MessageResult r = card->Finish();
  EXPECT_NE(FindCategory(r, "credit_card"), nullptr) << Describe(r);
}

// Parked scans hold their engine; the first scan of a swapped-in engine lets it go.
TEST(EngineTest, PooledScansReleaseASwappedOutEngine) {
  Scanner scanner;
  std::weak_ptr<const Engine> old_weak;
  {
    EnginePtr old_engine = CompileOrDie(MakePack({MakeRule("old.rule", "a", {"alpha[0-9]{3}"})}));
    old_weak = old_engine;
    scanner.Open(old_engine, {})->Feed("alpha123");
  }
  EXPECT_FALSE(old_weak.expired());
  EnginePtr new_engine = CompileOrDie(MakePack({MakeRule("new.rule", "b", {"beta[0-9]{3}"})}));
  auto scan = scanner.Open(new_engine, {});
  EXPECT_TRUE(old_weak.expired());
  scan->Feed("alpha123 beta123");
  const MessageResult r = scan->Finish();
  ASSERT_EQ(r.findings.size(), 1u) << Describe(r);
  EXPECT_EQ(r.findings[0].rule_id(), "new.rule");
}

}  // namespace
}  // namespace egressguard::dlp
