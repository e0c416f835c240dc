// Finding.spans: every counted occurrence of a rule's values is located (exact original
// offsets, redacted evidence, the member it lies in), up to the engine's
// max_finding_spans per finding, whatever the chunking; the same bytes seen through two
// layers are one occurrence.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "dlp/engine.h"
#include "dlp/redact.h"
#include "tests/unit/dlp/engine_test_util.h"

namespace egressguard::dlp {
namespace {

using testing::CompileOrDie;
using testing::DefaultPack;
using testing::Describe;
using testing::FindCategory;
using testing::ScanSplit;
using testing::ScanWhole;

const EnginePtr& DefaultEngine() {
  static const EnginePtr* engine = new EnginePtr(CompileOrDie(DefaultPack()));
  return *engine;
}

std::string SpansOf(const v1::Finding& f) {
  std::string out;
  for (const auto& s : f.spans()) {
    out += std::to_string(s.start()) + "-" + std::to_string(s.end()) + " " + s.evidence() + " [" + s.member() + "] " +
           s.fingerprint() + "\n";
  }
  return out + (f.spans_truncated() ? "(truncated)\n" : "");
}

// Three Luhn-valid cards, written three ways, at offsets the test knows.
struct Planted {
  std::string msg;
  std::vector<std::string> values;
  std::vector<size_t> at;
};

Planted ThreeCards() {
  Planted p;
  p.values = {"4111 1111 1111 1111", "5555-5555-5555-4444", "378282246310005"};
  p.msg = "order 1182\npaid with ";
  for (size_t i = 0; i < p.values.size(); ++i) {
    p.at.push_back(p.msg.size());
    p.msg += p.values[i];
    p.msg += i + 1 < p.values.size() ? "\nthen again with a second card, number " : "\nend of note\n";
  }
  return p;
}

TEST(FindingSpansTest, EveryOccurrenceLocatedWithExactOffsets) {
  const Planted p = ThreeCards();
  const MessageResult r = ScanWhole(DefaultEngine(), p.msg);
  const v1::Finding* f = FindCategory(r, "credit_card");
  ASSERT_NE(f, nullptr) << Describe(r);
  EXPECT_EQ(f->count(), 3u);
  ASSERT_EQ(f->spans_size(), 3) << SpansOf(*f);
  EXPECT_FALSE(f->spans_truncated());
  for (int i = 0; i < 3; ++i) {
    const auto& s = f->spans(i);
    EXPECT_EQ(s.start(), p.at[static_cast<size_t>(i)]) << SpansOf(*f);
    EXPECT_EQ(s.end(), p.at[static_cast<size_t>(i)] + p.values[static_cast<size_t>(i)].size()) << SpansOf(*f);
    EXPECT_EQ(s.evidence(), Redact("credit_card", p.values[static_cast<size_t>(i)]));
    EXPECT_EQ(s.member(), "");
  }
  // The finding's own first occurrence is the first span.
  EXPECT_EQ(f->start(), f->spans(0).start());
  EXPECT_EQ(f->end(), f->spans(0).end());
  EXPECT_EQ(f->evidence(), f->spans(0).evidence());
}

TEST(FindingSpansTest, EvidenceNeverCarriesTheRawValue) {
  const Planted p = ThreeCards();
  const std::string ssn = "536-90-4399";
  const std::string mail = "jane.doe@acme-corp.ch";
  const std::string msg = p.msg + "employee ssn " + ssn + " mail " + mail + "\n";
  const MessageResult r = ScanWhole(DefaultEngine(), msg);
  ASSERT_NE(FindCategory(r, "credit_card"), nullptr) << Describe(r);
  ASSERT_NE(FindCategory(r, "us_ssn"), nullptr) << Describe(r);
  ASSERT_NE(FindCategory(r, "email"), nullptr) << Describe(r);
  std::vector<std::string> raw = p.values;
  raw.push_back(ssn);
  raw.push_back(mail);
  raw.push_back("4111111111111111");
  raw.push_back("5555555555554444");
  for (const auto& f : r.findings) {
    for (const auto& s : f.spans()) {
      EXPECT_EQ(s.evidence(), Redact(f.category(), msg.substr(s.start(), s.end() - s.start())));
      for (const auto& v : raw) {
        EXPECT_EQ(s.evidence().find(v), std::string::npos) << f.category() << ": " << s.evidence();
        EXPECT_EQ(s.SerializeAsString().find(v), std::string::npos) << f.category();
      }
    }
  }
}

TEST(FindingSpansTest, RepeatsAreOccurrencesCountStaysDistinct) {
  const std::string card = "4111 1111 1111 1111";
  std::string msg;
  std::vector<size_t> at;
  for (int i = 0; i < 4; ++i) {
    msg += "line " + std::to_string(i) + ": card ";
    at.push_back(msg.size());
    msg += card + "\n";
  }
  const MessageResult r = ScanWhole(DefaultEngine(), msg);
  const v1::Finding* f = FindCategory(r, "credit_card");
  ASSERT_NE(f, nullptr) << Describe(r);
  EXPECT_EQ(f->count(), 1u);  // distinct values, as before
  ASSERT_EQ(f->spans_size(), 4) << SpansOf(*f);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(f->spans(i).start(), at[static_cast<size_t>(i)]);
}

TEST(FindingSpansTest, SameBytesThroughTwoLayersAreOneOccurrence) {
  // A JSON string is scanned raw and JSON-decoded; a percent-encoded form field raw
  // (no match) and decoded.
  const std::string card = "4111 1111 1111 1111";
  const std::string json = R"({"a":")" + card + R"(","b":"x","c":")" + card + R"("})";
  const MessageResult r = ScanWhole(DefaultEngine(), json, ContentHint{"application/json", "", false});
  const v1::Finding* f = FindCategory(r, "credit_card");
  ASSERT_NE(f, nullptr) << Describe(r);
  ASSERT_EQ(f->spans_size(), 2) << SpansOf(*f);
  EXPECT_EQ(f->spans(0).start(), json.find(card));
  EXPECT_EQ(f->spans(1).start(), json.rfind(card));

  const std::string form = "user=jane&mail=jane.doe%40acme-corp.ch&x=1";
  const MessageResult rf = ScanWhole(DefaultEngine(), form, ContentHint{"application/x-www-form-urlencoded", "", false});
  const v1::Finding* m = FindCategory(rf, "email");
  ASSERT_NE(m, nullptr) << Describe(rf);
  ASSERT_EQ(m->spans_size(), 1) << SpansOf(*m);
  EXPECT_EQ(m->spans(0).start(), form.find("jane.doe"));
  EXPECT_EQ(m->spans(0).end(), form.find("&x=1"));
}

TEST(FindingSpansTest, SameSpansAtEveryChunkBoundary) {
  const Planted p = ThreeCards();
  const MessageResult whole = ScanWhole(DefaultEngine(), p.msg);
  const v1::Finding* f = FindCategory(whole, "credit_card");
  ASSERT_NE(f, nullptr);
  const std::string want = SpansOf(*f);
  for (size_t cut = 0; cut <= p.msg.size(); ++cut) {
    const MessageResult r = ScanSplit(DefaultEngine(), p.msg, {cut, cut + 7});
    const v1::Finding* g = FindCategory(r, "credit_card");
    ASSERT_NE(g, nullptr) << "cut " << cut;
    ASSERT_EQ(SpansOf(*g), want) << "cut " << cut;
  }
}

std::string ManyMails(int n, std::vector<size_t>* at) {
  std::string msg;
  for (int i = 0; i < n; ++i) {
    msg += "to: ";
    at->push_back(msg.size());
    msg += "user" + std::to_string(i) + "@example-corp.ch\n";
  }
  return msg;
}

TEST(FindingSpansTest, LimitRespectedAndTruncationSaid) {
  std::vector<size_t> at;
  const std::string msg = ManyMails(20, &at);
  {
    const MessageResult r = ScanWhole(DefaultEngine(), msg);  // default: 16
    const v1::Finding* f = FindCategory(r, "email");
    ASSERT_NE(f, nullptr) << Describe(r);
    EXPECT_EQ(f->count(), 20u);
    ASSERT_EQ(f->spans_size(), 16);
    EXPECT_TRUE(f->spans_truncated());
    for (int i = 0; i < 16; ++i) EXPECT_EQ(f->spans(i).start(), at[static_cast<size_t>(i)]);  // the first 16
  }
  for (uint32_t limit : {0u, 1u, 5u, 20u, 100u}) {
    EngineOptions o;
    o.max_finding_spans = limit;
    const EnginePtr engine = CompileOrDie(DefaultPack(), o);
    const MessageResult r = ScanWhole(engine, msg);
    const v1::Finding* f = FindCategory(r, "email");
    ASSERT_NE(f, nullptr) << Describe(r);
    EXPECT_EQ(f->count(), 20u);
    EXPECT_EQ(static_cast<uint32_t>(f->spans_size()), std::min(limit, 20u)) << "limit " << limit;
    EXPECT_EQ(f->spans_truncated(), limit > 0 && limit < 20) << "limit " << limit;  // 0: none asked for
    EXPECT_EQ(f->start(), at[0]);  // the finding itself is unchanged
  }
}

TEST(FindingSpansTest, FingerprintsPerOccurrence) {
  EngineOptions o;
  o.fingerprint_key = "test-key-0123456789";
  const EnginePtr engine = CompileOrDie(DefaultPack(), o);
  const std::string msg = "a 4111 1111 1111 1111 b 5555555555554444 c 4111-1111-1111-1111 d\n";
  const MessageResult r = ScanWhole(engine, msg);
  const v1::Finding* f = FindCategory(r, "credit_card");
  ASSERT_NE(f, nullptr) << Describe(r);
  ASSERT_EQ(f->spans_size(), 3) << SpansOf(*f);
  EXPECT_EQ(f->spans(0).fingerprint(), f->fingerprint());
  EXPECT_EQ(f->spans(0).fingerprint(), f->spans(2).fingerprint());  // the same card, normalized
  EXPECT_NE(f->spans(0).fingerprint(), f->spans(1).fingerprint());
  EXPECT_EQ(f->spans(1).fingerprint().size(), 64u);
}

TEST(FindingSpansTest, AggregateFindingsCarryNone) {
  std::vector<size_t> at;
  const std::string msg = ManyMails(60, &at);  // 60 records of people: past min_records (50)
  const MessageResult r = ScanWhole(DefaultEngine(), msg);
  const v1::Finding* bulk = FindCategory(r, "bulk_pii");
  ASSERT_NE(bulk, nullptr) << Describe(r);
  EXPECT_EQ(bulk->spans_size(), 0);
}

TEST(FindingSpansTest, PooledScanStartsWithNoSpans) {
  Scanner scanner;
  const Planted p = ThreeCards();
  for (int round = 0; round < 3; ++round) {
    auto scan = scanner.Open(DefaultEngine(), {});
    scan->Feed(round == 1 ? std::string_view("nothing to see here\n") : std::string_view(p.msg));
    const MessageResult r = scan->Finish();
    const v1::Finding* f = FindCategory(r, "credit_card");
    if (round == 1) {
      EXPECT_EQ(f, nullptr);
    } else {
      ASSERT_NE(f, nullptr);
      EXPECT_EQ(f->spans_size(), 3) << "round " << round << "\n" << SpansOf(*f);
    }
  }
}

}  // namespace
}  // namespace egressguard::dlp
