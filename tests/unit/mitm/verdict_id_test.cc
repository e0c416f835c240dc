#include "mitm/verdict_id.h"

#include <gtest/gtest.h>

#include <chrono>
#include <regex>
#include <set>
#include <string>

namespace egressguard::mitm {
namespace {

TEST(VerdictId, IsAVersion7UuidLedByTheCurrentMillisecond) {
  const auto before = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch()).count();
  const std::string id = NewVerdictId();
  const auto after = std::chrono::duration_cast<std::chrono::milliseconds>(
                         std::chrono::system_clock::now().time_since_epoch()).count();
  ASSERT_TRUE(std::regex_match(id, std::regex("[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")))
      << id;
  const int64_t ms = std::stoll(id.substr(0, 8) + id.substr(9, 4), nullptr, 16);
  EXPECT_GE(ms, before);
  EXPECT_LE(ms, after);
}

TEST(VerdictId, FormatsTheRfc9562Layout) {
  // RFC 9562 appendix A.6's example: 2022-02-22 14:22:22 UTC, 0x17F22E279B0 ms.
  EXPECT_EQ(FormatUuid7(0x17F22E279B0ULL, 0xCC3, 0x18C4DC0C0C07398FULL), "017f22e2-79b0-7cc3-98c4-dc0c0c07398f");
  // Bits beyond each field's width are dropped, not spilled into the next field.
  EXPECT_EQ(FormatUuid7(0xFFFF000000000001ULL, 0xFFFF, ~0ULL), "00000000-0001-7fff-bfff-ffffffffffff");
}

TEST(VerdictId, SortsByTimeAndNeverRepeats) {
  std::set<std::string> seen;
  std::string last;
  for (int i = 0; i < 10000; ++i) {
    std::string id = NewVerdictId();
    EXPECT_GE(id.substr(0, 13), last.substr(0, std::min<size_t>(13, last.size())));  // the time prefix never goes back
    last = id;
    EXPECT_TRUE(seen.insert(std::move(id)).second);
  }
}

}  // namespace
}  // namespace egressguard::mitm
