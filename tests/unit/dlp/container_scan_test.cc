// The engine's view of containers: findings inside archive members name the member
// (nested ones joined by '!'), keep exact original offsets where the member is stored,
// count a member CSV's rows toward bulk_pii, and report encrypted members as
// `encrypted_content`. The archives here are written by a small ZIP writer over zlib
// (the decoder tests and the integration tests use Python's zipfile and Office
// writers); it writes what zipfile writes: local headers, data, a central directory.

#include <gtest/gtest.h>
#include <zlib.h>

#include <cstdint>
#include <string>
#include <vector>

#include "tests/unit/dlp/engine_test_util.h"

namespace egressguard::dlp {
namespace {

using testing::CompileOrDie;
using testing::DefaultPack;
using testing::Describe;
using testing::FindCategory;
using testing::ScanSplit;
using testing::ScanWhole;

void Put16(std::string& s, uint16_t v) {
  s.push_back(static_cast<char>(v & 0xff));
  s.push_back(static_cast<char>(v >> 8));
}
void Put32(std::string& s, uint32_t v) {
  Put16(s, static_cast<uint16_t>(v & 0xffff));
  Put16(s, static_cast<uint16_t>(v >> 16));
}

std::string RawDeflate(const std::string& in) {
  z_stream z{};
  EXPECT_EQ(deflateInit2(&z, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
  std::string out(deflateBound(&z, in.size()), '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&z, Z_FINISH), Z_STREAM_END);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

struct Member {
  std::string name, data;
  bool deflate = false;
  bool encrypted = false;  // flag bit 0 only: the data is not really encrypted
};

// Returns the archive and, per member, the offset of its data in it.
std::string Zip(const std::vector<Member>& members, std::vector<size_t>* data_at = nullptr) {
  std::string out, central;
  for (const Member& m : members) {
    const std::string body = m.deflate ? RawDeflate(m.data) : m.data;
    const uint32_t crc = static_cast<uint32_t>(
        crc32(0, reinterpret_cast<const Bytef*>(m.data.data()), static_cast<uInt>(m.data.size())));
    const uint16_t flags = m.encrypted ? 1 : 0;
    const uint16_t method = m.deflate ? 8 : 0;
    const size_t local_at = out.size();
    Put32(out, 0x04034b50);
    Put16(out, 20);
    Put16(out, flags);
    Put16(out, method);
    Put32(out, 0);  // time, date
    Put32(out, crc);
    Put32(out, static_cast<uint32_t>(body.size()));
    Put32(out, static_cast<uint32_t>(m.data.size()));
    Put16(out, static_cast<uint16_t>(m.name.size()));
    Put16(out, 0);
    out += m.name;
    if (data_at) data_at->push_back(out.size());
    out += body;
    Put32(central, 0x02014b50);
    Put16(central, 20);
    Put16(central, 20);
    Put16(central, flags);
    Put16(central, method);
    Put32(central, 0);
    Put32(central, crc);
    Put32(central, static_cast<uint32_t>(body.size()));
    Put32(central, static_cast<uint32_t>(m.data.size()));
    Put16(central, static_cast<uint16_t>(m.name.size()));
    Put16(central, 0);
    Put16(central, 0);
    Put16(central, 0);
    Put16(central, 0);
    Put32(central, 0);
    Put32(central, static_cast<uint32_t>(local_at));
    central += m.name;
  }
  const size_t cd_at = out.size();
  out += central;
  Put32(out, 0x06054b50);
  Put16(out, 0);
  Put16(out, 0);
  Put16(out, static_cast<uint16_t>(members.size()));
  Put16(out, static_cast<uint16_t>(members.size()));
  Put32(out, static_cast<uint32_t>(central.size()));
  Put32(out, static_cast<uint32_t>(cd_at));
  Put16(out, 0);
  return out;
}

constexpr const char* kCard = "4111 1111 1111 1111";

class ContainerScanTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { engine_ = new EnginePtr(CompileOrDie(DefaultPack())); }
  static void TearDownTestSuite() {
    delete engine_;
    engine_ = nullptr;
  }
  static const EnginePtr& engine() { return *engine_; }
  static EnginePtr* engine_;
};
EnginePtr* ContainerScanTest::engine_ = nullptr;

TEST_F(ContainerScanTest, StoredMemberIsNamedWithExactOffsets) {
  const std::string csv = std::string("id,note\n1,pay with ") + kCard + "\n";
  std::vector<size_t> data_at;
  const std::string zip = Zip({{"readme.txt", "nothing here\n"}, {"customers.csv", csv}}, &data_at);
  const MessageResult r = ScanWhole(engine(), zip, {"application/zip", "", false});
  const v1::Finding* card = FindCategory(r, "credit_card");
  ASSERT_NE(card, nullptr) << Describe(r);
  EXPECT_EQ(card->member(), "customers.csv");
  const size_t at = data_at[1] + csv.find(kCard);
  EXPECT_EQ(card->start(), at);
  EXPECT_EQ(card->end(), at + std::string(kCard).size());
}

TEST_F(ContainerScanTest, DeflatedMemberIsNamedAndSpansItsBytes) {
  const std::string csv = std::string("id,note\n1,pay with ") + kCard + "\n";
  std::vector<size_t> data_at;
  const std::string zip = Zip({{"a/b/customers.csv", csv, /*deflate=*/true}}, &data_at);
  // Chunked like a TLS stream: the member is still found and named.
  const MessageResult r = ScanSplit(engine(), zip, {7, 30, 31, 64, 90});
  const v1::Finding* card = FindCategory(r, "credit_card");
  ASSERT_NE(card, nullptr) << Describe(r);
  EXPECT_EQ(card->member(), "a/b/customers.csv");
  EXPECT_GE(card->start(), data_at[0] - 1);  // within the compressed member's bytes
  EXPECT_LE(card->end(), zip.size());
}

TEST_F(ContainerScanTest, NestedArchivesJoinMemberNames) {
  const std::string inner = Zip({{"a.csv", std::string("x,") + kCard + "\n", true}});
  const std::string outer = Zip({{"docs/inner.zip", inner}});
  const MessageResult r = ScanWhole(engine(), outer);
  const v1::Finding* card = FindCategory(r, "credit_card");
  ASSERT_NE(card, nullptr) << Describe(r);
  EXPECT_EQ(card->member(), "docs/inner.zip!a.csv");
}

TEST_F(ContainerScanTest, MemberCsvRowsCountTowardBulk) {
  // Values that validate as nothing: only the header says the columns are PII.
  std::string csv = "name,email,iban\n";
  for (int i = 0; i < 60; ++i) csv += "Customer " + std::to_string(i) + ",unknown,pending\n";
  const std::string zip = Zip({{"export/customers.csv", csv, true}});
  const MessageResult r = ScanWhole(engine(), zip);
  const v1::Finding* bulk = FindCategory(r, "bulk_pii");
  ASSERT_NE(bulk, nullptr) << Describe(r);
  EXPECT_EQ(bulk->count(), 60u);
  EXPECT_EQ(bulk->member(), "export/customers.csv");
  EXPECT_EQ(r.action, rules::v1::BLOCK);
  // The same rows outside any header-bearing member stay below the threshold.
  const std::string two = Zip({{"a.csv", "name,email\nx,y\n"}, {"b.txt", csv.substr(csv.find('\n') + 1)}});
  const MessageResult r2 = ScanWhole(engine(), two);
  EXPECT_EQ(FindCategory(r2, "bulk_pii"), nullptr) << Describe(r2);
}

TEST_F(ContainerScanTest, EncryptedMemberIsReportedNotPassedSilently) {
  const std::string zip = Zip({{"secret.csv", std::string(64, 'q'), false, /*encrypted=*/true}});
  const MessageResult r = ScanWhole(engine(), zip);
  const v1::Finding* enc = FindCategory(r, "encrypted_content");
  ASSERT_NE(enc, nullptr) << Describe(r);
  EXPECT_EQ(enc->member(), "secret.csv");
  EXPECT_EQ(enc->count(), 1u);
  EXPECT_LT(enc->start(), enc->end());
}

TEST_F(ContainerScanTest, StreamMatchesAfterAnEarlierMemberKeepTheirOffsets) {
  // The Hyperscan stream of a decoded layer restarts at every document end; e-mail
  // addresses (stream patterns) in a later member were once placed at the restarted
  // stream's offsets, read from the wrong bytes and dropped by the validator.
  std::string csv = "name,email\n";
  for (int i = 0; i < 30; ++i) csv += "Customer " + std::to_string(i) + ",user" + std::to_string(i) + "@acme-corp.ch\n";
  for (const bool deflate : {false, true}) {
    const std::string zip = Zip({{"readme.txt", "see the attached export\n", deflate}, {"customers.csv", csv, deflate}});
    const MessageResult r = ScanSplit(engine(), zip, {100, 101, 400});
    const v1::Finding* mail = FindCategory(r, "email");
    ASSERT_NE(mail, nullptr) << Describe(r);
    EXPECT_EQ(mail->count(), 30u) << Describe(r);
    EXPECT_EQ(mail->member(), "customers.csv");
  }
}

// Finding.spans: each occurrence inside a member names it; a stored member keeps exact
// offsets (its bytes are also seen raw: one occurrence each, not two); a deflated one
// spans its compressed bytes, one occurrence per distinct value.
TEST_F(ContainerScanTest, SpansNameTheirMembers) {
  const std::string second = "5555-5555-5555-4444";
  const std::string csv = std::string("id,note\n1,pay with ") + kCard + "\n2,and with " + second + "\n";
  std::vector<size_t> data_at;
  const std::string zip =
      Zip({{"readme.txt", std::string("outside: ") + kCard + "\n"}, {"customers.csv", csv}}, &data_at);
  const MessageResult r = ScanSplit(engine(), zip, {40, 41, 97});
  const v1::Finding* card = FindCategory(r, "credit_card");
  ASSERT_NE(card, nullptr) << Describe(r);
  ASSERT_EQ(card->spans_size(), 3) << Describe(r);
  EXPECT_EQ(card->spans(0).member(), "readme.txt");
  EXPECT_EQ(card->spans(0).start(), data_at[0] + 9);
  EXPECT_EQ(card->spans(1).member(), "customers.csv");
  EXPECT_EQ(card->spans(1).start(), data_at[1] + csv.find(kCard));
  EXPECT_EQ(card->spans(1).end(), data_at[1] + csv.find(kCard) + std::string(kCard).size());
  EXPECT_EQ(card->spans(2).member(), "customers.csv");
  EXPECT_EQ(card->spans(2).start(), data_at[1] + csv.find(second));

  const std::string deflated = Zip({{"a/b/customers.csv", csv, /*deflate=*/true}}, &data_at);
  const MessageResult d = ScanWhole(engine(), deflated);
  const v1::Finding* dc = FindCategory(d, "credit_card");
  ASSERT_NE(dc, nullptr) << Describe(d);
  ASSERT_EQ(dc->spans_size(), 2) << Describe(d);
  for (const auto& s : dc->spans()) {
    EXPECT_EQ(s.member(), "a/b/customers.csv");
    EXPECT_GE(s.start(), data_at[0] - 1);
    EXPECT_LE(s.end(), deflated.size());
  }
}

}  // namespace
}  // namespace egressguard::dlp
