// Proves the digit gate hands every qualifying run to the block scan exactly once, with its context bytes, however the stream is chunked.
#include "dlp/digit_gate.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace egressguard::dlp {
namespace {

DigitGateConfig Config() {
  DigitGateConfig c;
  for (char ch : std::string_view("0123456789 -")) c.member[static_cast<unsigned char>(ch)] = true;
  c.min_digits = 4;
  c.min_width = 4;
  c.max_width = 12;
  c.max_run = 64;
  return c;
}

// The window contents (without context bytes) of every emitted window.
std::vector<std::string> Windows(std::string_view data, const std::vector<size_t>& cuts) {
  DigitGateConfig config = Config();
  DigitGate gate(&config);
  std::vector<std::string> out;
  auto emit = [&](const GateWindow& w) {
    std::string_view b = w.bytes.substr(w.first_start);
    // strip the trailing context byte when it is not a run byte
    if (!b.empty() && !config.member[static_cast<unsigned char>(b.back())]) b.remove_suffix(1);
    out.push_back(std::to_string(w.base + w.first_start) + ":" + std::string(b));
  };
  size_t at = 0;
  for (size_t c : cuts) {
    gate.Feed(data.substr(at, c - at), at, emit);
    at = c;
  }
  gate.Feed(data.substr(at), at, emit);
  gate.Finish(emit);
  return out;
}

TEST(DigitGateTest, EmitsQualifyingRunsWithContext) {
  const std::string data = "ab 12 x 1234-5678 yy 99 ";
  auto w = Windows(data, {});
  ASSERT_EQ(w.size(), 1u);
  EXPECT_EQ(w[0], "7: 1234-5678 ");
}

TEST(DigitGateTest, SameWindowsAtEveryCut) {
  const std::string data = "id 42; card  4111 1111 1111 1111 ;;tel 044 668 18 00;";
  const auto whole = Windows(data, {});
  ASSERT_EQ(whole.size(), 2u);
  for (size_t cut = 0; cut <= data.size(); ++cut) {
    EXPECT_EQ(Windows(data, {cut}), whole) << "cut " << cut;
  }
}

TEST(DigitGateTest, LongRunsOverflowWithOverlap) {
  const std::string data = "x" + std::string(200, '1') + "x";
  auto w = Windows(data, {});
  ASSERT_GE(w.size(), 3u);  // 200 run bytes in pieces of at most 64
  for (size_t cut = 0; cut <= data.size(); cut += 7) {
    auto split = Windows(data, {cut});
    ASSERT_FALSE(split.empty());
  }
}

// The per-first-byte digit needs: a run is handed on only if a match could start in it
// with enough digits after; a "\b0" pattern cannot start at a '0' inside a number.
TEST(DigitGateTest, NeedsSkipRunsThatCannotHoldAMatch) {
  DigitGateConfig config = Config();
  config.min_digits = 1;
  config.min_width = 1;
  config.need.fill(UINT32_MAX);
  config.need_at_boundary.fill(UINT32_MAX);
  config.need_at_boundary['0'] = 6;  // like \b0[0-9]{5,}
  std::vector<std::string> out;
  auto emit = [&](const GateWindow& w) { out.push_back(std::string(w.bytes.substr(w.first_start))); };
  const std::string data = "on 2026-01-05 at 2010-44-5566 call 044-668-1800 or x 012-3";
  for (size_t cut = 0; cut <= data.size(); ++cut) {  // and the same at every chunk split
    out.clear();
    DigitGate g(&config);
    g.Feed(std::string_view(data).substr(0, cut), 0, emit);
    g.Feed(std::string_view(data).substr(cut), cut, emit);
    g.Finish(emit);
    ASSERT_EQ(out.size(), 1u) << "cut " << cut;
    EXPECT_NE(out[0].find("044-668-1800"), std::string::npos) << "cut " << cut << ": " << out[0];
  }
}

// Several classes: a window names every class whose needs it meets, and keyed classes
// are looked for only near a keyword end (GateKeywords).
TEST(DigitGateTest, ClassesAndKeywords) {
  DigitGateConfig config = Config();
  config.min_digits = 1;
  config.min_width = 1;
  GateClass nine{DigitGateConfig::Never(), DigitGateConfig::Never()};
  GateClass six_keyed{DigitGateConfig::Never(), DigitGateConfig::Never()};
  for (char c = '0'; c <= '9'; ++c) {
    nine.at_boundary[static_cast<unsigned char>(c)] = 9;
    six_keyed.at_boundary[static_cast<unsigned char>(c)] = 6;
  }
  config.classes = {nine, six_keyed};
  config.Prepare();
  const std::string data = "aa 123456 bb 123456789 cc 1234567 dd";
  std::vector<uint64_t> ends;
  GateKeywords kw{2u, 8, &ends};
  auto run = [&](const std::vector<uint64_t>& keyword_ends) {
    ends = keyword_ends;
    std::vector<std::string> out;
    DigitGate g(&config);
    auto emit = [&](const GateWindow& w) {
      out.push_back(std::string(w.bytes.substr(w.first_start, w.bytes.size() - w.first_start - 1)) + "/" +
                    std::to_string(w.classes));
    };
    g.Feed(data, 0, emit, &kw);
    g.Finish(emit, &kw);
    return out;
  };
  // No keyword: only the 9-digit run, for class 0 alone.
  EXPECT_EQ(run({}), (std::vector<std::string>{" 123456789 /1"}));
  // A keyword ending at 2 ("aa") reaches the first run only.
  EXPECT_EQ(run({2}), (std::vector<std::string>{" 123456 /2", " 123456789 /1"}));
  // One ending at 25 (after "cc") reaches the 7-digit run only.
  EXPECT_EQ(run({25}), (std::vector<std::string>{" 123456789 /1", " 1234567 /2"}));
}

// Long chunks drop the digits of short runs on the bit masks before judging runs (see
// DigitGate::MarkRunDigits); chunks shorter than 64 bytes never do. So a whole-buffer feed
// must emit exactly what a byte-at-a-time feed emits, over text dense with short and
// long runs, special starters, runs across 64-byte words and the chunk end.
TEST(DigitGateTest, ShortRunFilterLosesNoWindow) {
  GateClass plus{DigitGateConfig::Never(), DigitGateConfig::Never()};
  GateClass zero{DigitGateConfig::Never(), DigitGateConfig::Never()};
  GateClass nine{DigitGateConfig::Never(), DigitGateConfig::Never()};
  plus.need['+'] = 3;            // like \+[0-9 ]{3,}
  zero.at_boundary['0'] = 6;     // like \b0[0-9 -]{5,}
  for (char c = '1'; c <= '9'; ++c) nine.at_boundary[static_cast<unsigned char>(c)] = 9;
  DigitGateConfig config = Config();
  config.member['+'] = true;
  config.min_digits = 3;
  config.min_width = 4;
  config.max_width = 24;
  config.max_run = 4096;
  config.classes = {plus, zero, nine};
  config.Prepare();
  uint64_t seed = 42;
  auto next = [&seed](uint64_t n) {
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    return (seed >> 33) % n;
  };
  size_t emitted = 0;
  for (int round = 0; round < 40; ++round) {
    std::string data;
    while (data.size() < 2000) {
      switch (next(7)) {
        case 0: data += "ab,"; break;
        case 1: data += std::to_string(next(1000)); break;                        // short run
        case 2: data += "," + std::to_string(next(10) * 100000 + next(100000)) + ","; break;  // 5-6 digits
        case 3: data += std::to_string(100000000 + next(900000000)); break;       // nine class
        case 4:                                                                    // special starter, rare
          data += next(30) == 0 ? "+" + std::to_string(next(1000)) + "," : ",";
          break;
        case 5: data += ",0" + std::to_string(10000 + next(90000)) + ","; break;  // zero class, exactly 6
        default: data += std::string(1 + next(3), "- x,"[next(4)]); break;
      }
    }
    auto collect = [&](size_t step) {
      std::vector<std::string> out;
      auto emit = [&](const GateWindow& w) {
        out.push_back(std::to_string(w.base) + ":" + std::string(w.bytes) + "/" + std::to_string(w.classes));
      };
      DigitGate g(&config);
      for (size_t at = 0; at < data.size(); at += step) g.Feed(std::string_view(data).substr(at, step), at, emit);
      g.Finish(emit);
      return out;
    };
    const auto reference = collect(1);
    emitted += reference.size();
    EXPECT_EQ(collect(data.size()), reference) << "round " << round;
    EXPECT_EQ(collect(1000), reference) << "round " << round;
    EXPECT_EQ(collect(333), reference) << "round " << round;
  }
  EXPECT_GT(emitted, 40u * 20);  // the text does hold many qualifying runs
}

}  // namespace
}  // namespace egressguard::dlp
