// Proves the decided offset never passes a byte of a value the engine is still deciding: for random bodies with one planted blocking value (raw, percent-, JSON- or base64-encoded) cut at random points, every offset reported before the block lies at or before the value's first encoded byte, it never goes back, and clean text is decided to within a bounded tail.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "dlp/engine.h"
#include "tests/unit/dlp/engine_test_util.h"

namespace egressguard::dlp {
namespace {

using testing::CompileOrDie;
using testing::DefaultPack;

const EnginePtr& Engine() {
  static const EnginePtr engine = CompileOrDie(DefaultPack());
  return engine;
}

// Values the shipped pack blocks on their own (no threshold), after the context a rule
// needs (the context is not the value: it may leave).
struct Value {
  std::string context;
  std::string value;
};
const std::vector<Value>& Values() {
  static const std::vector<Value> v = {
      {"", "4539 1488 0343 6467"},
      {"", "4539148803436467"},
      {"", "5425-2334-3010-9903"},
      {"", "CH93 0076 2011 6238 5295 7"},
      {"", "DE89370400440532013000"},
      {"AHV ", "756.9217.0769.85"},
      {"", "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n-----END PRIVATE KEY-----"},
      {"aws_access_key_id = ", "AKIA2E3X7PQRS4TUVWXY"},
  };
  return v;
}

// Filler that looks like what is uploaded: JSON records and log lines with numbers,
// dates, ids and e-mail-free text (digit runs keep the gate busy).
std::string Filler(std::mt19937& rng, size_t n) {
  static const char* kWords[] = {"order", "status", "shipped", "total", "amount", "note", "customer", "region",
                                 "warehouse", "zurich", "basel", "pending", "item", "qty", "ref"};
  std::string out;
  std::uniform_int_distribution<int> word(0, 14), num(0, 999999), kind(0, 3);
  while (out.size() < n) {
    switch (kind(rng)) {
      case 0: out += "{\"" + std::string(kWords[word(rng)]) + "\":" + std::to_string(num(rng)) + "},"; break;
      case 1: out += "2026-12-07T05:" + std::to_string(num(rng) % 60) + " INFO " + kWords[word(rng)] + " id=" + std::to_string(num(rng)) + "\n"; break;
      case 2: out += std::string(kWords[word(rng)]) + " " + kWords[word(rng)] + " "; break;
      default: out += "ref " + std::to_string(num(rng)) + "-" + std::to_string(num(rng) % 100) + " "; break;
    }
  }
  out.resize(n);
  return out;
}

std::string Base64(std::string_view in) {
  static constexpr char kA[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 3 <= in.size(); i += 3) {
    uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8) | uint8_t(in[i + 2]);
    for (int k = 18; k >= 0; k -= 6) out += kA[(v >> k) & 63];
  }
  if (i + 1 == in.size()) {
    uint32_t v = uint8_t(in[i]) << 16;
    out += kA[(v >> 18) & 63];
    out += kA[(v >> 12) & 63];
    out += "==";
  } else if (i + 2 == in.size()) {
    uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8);
    out += kA[(v >> 18) & 63];
    out += kA[(v >> 12) & 63];
    out += kA[(v >> 6) & 63];
    out += '=';
  }
  return out;
}

struct Planted {
  std::string body;
  ContentHint hint;
  size_t value_begin = 0;  // first original byte that encodes the value
};

// One body: filler, the value encoded one way, filler.
Planted Plant(std::mt19937& rng, const Value& planted, int encoding) {
  const std::string value = planted.context + planted.value;
  const size_t ctx = planted.context.size();
  Planted p;
  const size_t before = std::uniform_int_distribution<size_t>(0, 60000)(rng);
  const size_t after = std::uniform_int_distribution<size_t>(0, 3000)(rng);
  std::string head = Filler(rng, before);
  std::string tail = Filler(rng, after);
  switch (encoding) {
    case 0:  // raw text
      p.body = head + "\nnote: " + value + " |\n" + tail;  // apart from the filler's numbers
      p.value_begin = head.size() + 7 + ctx;
      break;
    case 1: {  // a form field, every byte of the value percent-encoded
      p.hint.content_type = "application/x-www-form-urlencoded";
      std::string enc;
      for (unsigned char c : value) {
        static constexpr char kHex[] = "0123456789ABCDEF";
        enc += '%';
        enc += kHex[c >> 4];
        enc += kHex[c & 15];
      }
      p.body = "a=" + std::to_string(before) + "&note=" + enc + "&b=2";
      p.value_begin = p.body.find("&note=") + 6 + 3 * ctx;
      break;
    }
    case 2: {  // JSON, digits as \u escapes
      p.hint.content_type = "application/json";
      std::string enc;
      for (char c : value) {
        if (c >= '0' && c <= '9') {
          enc += "\\u003";
          enc += c;
        } else if (c == '\n') {
          enc += "\\n";
        } else {
          enc += c;
        }
      }
      std::replace(head.begin(), head.end(), '"', '\'');
      std::replace(tail.begin(), tail.end(), '"', '\'');
      p.body = "{\"filler\":\"" + head + "\",\"note\":\"" + enc + "\",\"tail\":\"" + tail + "\"}";
      p.value_begin = p.body.find("\"note\":\"") + 8 + ctx;  // no digit in a context
      break;
    }
    default: {  // a base64 attachment in JSON holding the value
      p.hint.content_type = "application/json";
      const std::string doc = "attachment text " + value + " end of attachment";
      const std::string b64 = Base64(doc);
      const size_t pos = std::string("attachment text ").size() + ctx;
      const std::string prefix = "{\"name\":\"report.txt\",\"data\":\"";
      p.body = prefix + b64 + "\",\"filler\":" + std::to_string(before) + "}";
      p.value_begin = prefix.size() + (pos / 3) * 4;
      break;
    }
  }
  return p;
}

std::vector<size_t> Cuts(std::mt19937& rng, size_t n) {
  std::vector<size_t> cuts;
  std::uniform_int_distribution<int> mode(0, 2);
  size_t at = 0;
  while (at < n) {
    size_t step;
    switch (mode(rng)) {
      case 0: step = std::uniform_int_distribution<size_t>(1, 16)(rng); break;
      case 1: step = std::uniform_int_distribution<size_t>(1, 700)(rng); break;
      default: step = std::uniform_int_distribution<size_t>(1, 20000)(rng); break;
    }
    at = std::min(n, at + step);
    cuts.push_back(at);
  }
  return cuts;
}

TEST(DecidedOffsetTest, NoPlantedValueLiesBeforeTheOffsetReportedWhileItWasPending) {
  std::mt19937 rng(20261207);
  Scanner scanner;
  int cases = 0;
  for (int round = 0; round < 6; ++round) {
    for (size_t vi = 0; vi < Values().size(); ++vi) {
      for (int enc = 0; enc < 4; ++enc) {
        const Planted p = Plant(rng, Values()[vi], enc);
        auto scan = scanner.Open(Engine(), p.hint);
        uint64_t last = 0;
        size_t at = 0;
        bool blocked = false;
        for (size_t cut : Cuts(rng, p.body.size())) {
          scan->Feed(std::string_view(p.body).substr(at, cut - at));
          at = cut;
          if (scan->action_so_far() == rules::v1::BLOCK) {
            blocked = true;
            break;  // the proxy stops here: nothing more leaves
          }
          const uint64_t d = scan->decided_offset();
          ASSERT_LE(d, at);
          ASSERT_GE(d, last) << "the decided offset went back: value " << vi << " encoding " << enc << " after " << at
                             << " of " << p.body.size();
          last = d;
          ASSERT_LE(d, p.value_begin) << "value " << vi << " encoding " << enc << ": decided past the value's first byte"
                                      << " after " << at << " of " << p.body.size() << " bytes";
        }
        const MessageResult r = scan->Finish();
        EXPECT_TRUE(blocked || r.action == rules::v1::BLOCK)
            << "value " << vi << " encoding " << enc << " was not found: " << testing::Describe(r);
        EXPECT_EQ(scan->decided_offset(), at) << "after Finish everything fed is decided";
        ++cases;
      }
    }
  }
  EXPECT_EQ(cases, 6 * 8 * 4);
}

// Clean text is decided up to a bounded tail, so a streamed upload is held back by a
// small amount, not by its size.
TEST(DecidedOffsetTest, CleanTextIsDecidedToWithinABoundedTail) {
  std::mt19937 rng(7);
  Scanner scanner;
  for (const char* type : {"text/plain", "application/json", "application/x-www-form-urlencoded"}) {
    ContentHint hint;
    hint.content_type = type;
    auto scan = scanner.Open(Engine(), hint);
    const std::string body = Filler(rng, 4 << 20);
    uint64_t worst = 0;
    size_t at = 0;
    for (size_t cut : Cuts(rng, body.size())) {
      scan->Feed(std::string_view(body).substr(at, cut - at));
      at = cut;
      const uint64_t d = scan->decided_offset();
      if (at > (64u << 10)) worst = std::max<uint64_t>(worst, at - d);
    }
    EXPECT_LE(worst, 20u << 10) << type << ": held back " << worst << " bytes";
    RecordProperty(std::string("worst_lag_") + type, std::to_string(worst));
    EXPECT_EQ(scan->Finish().action, rules::v1::ALLOW);
  }
}

// An e-mail or JSON attachment: base64 of binary data in 76-character lines (one long
// base64 run whose decoded bytes are random) is decided as it streams too.
TEST(DecidedOffsetTest, ABase64AttachmentIsDecidedToWithinABoundedTail) {
  std::mt19937 rng(11);
  std::string raw(3 << 20, '\0');
  for (char& c : raw) c = static_cast<char>(rng());
  const std::string b64 = Base64(raw);
  std::string body;
  for (size_t at = 0; at < b64.size(); at += 76) body.append(b64, at, 76).append("\r\n");
  Scanner scanner;
  for (const char* type : {"text/plain", "application/octet-stream", "application/json"}) {
    ContentHint hint;
    hint.content_type = type;
    auto scan = scanner.Open(Engine(), hint);
    uint64_t worst = 0;
    size_t at = 0;
    for (size_t cut : Cuts(rng, body.size())) {
      scan->Feed(std::string_view(body).substr(at, cut - at));
      at = cut;
      const uint64_t d = scan->decided_offset();
      if (at > (64u << 10)) worst = std::max<uint64_t>(worst, at - d);
    }
    EXPECT_LE(worst, 64u << 10) << type << ": held back " << worst << " bytes";
    RecordProperty(std::string("worst_lag_base64_") + type, std::to_string(worst));
    scan->Finish();
  }
  // Past the decoded-size limit decoding stops (an `undecodable` finding): the decoded
  // layers' open documents end there and hold nothing back.
  EngineOptions small;
  small.max_decoded_bytes = 1 << 20;
  small.decoded_bytes_per_input_byte = 0;  // a fixed limit, so that this body passes it
  const EnginePtr limited = CompileOrDie(DefaultPack(), small);
  auto scan = scanner.Open(limited, ContentHint{});
  uint64_t worst = 0;
  size_t at = 0;
  for (size_t cut : Cuts(rng, body.size())) {
    scan->Feed(std::string_view(body).substr(at, cut - at));
    at = cut;
    if (at > (2u << 20)) worst = std::max<uint64_t>(worst, at - scan->decided_offset());
  }
  EXPECT_LE(worst, 64u << 10) << "past the decode limit: held back " << worst << " bytes";
  EXPECT_NE(testing::FindCategory(scan->Finish(), "undecodable"), nullptr);
}

// A value counted toward a blocking threshold is reported, so a caller can hold it.
TEST(DecidedOffsetTest, ThresholdFromNamesTheFirstCountedValue) {
  Scanner scanner;
  auto scan = scanner.Open(Engine(), ContentHint{});
  const std::string lead(5000, 'x');
  scan->Feed(lead + " reach me at jane.doe@acme-corp.ch or later " + std::string(3000, 'y'));
  EXPECT_EQ(scan->threshold_from(), lead.size() + 13);
  EXPECT_EQ(HoldFrom(*scan, lead.size() + 100, 1000), std::min<uint64_t>(scan->decided_offset(), lead.size() + 13));
  EXPECT_EQ(HoldFrom(*scan, 1u << 20, 1000), std::min<uint64_t>(scan->decided_offset(), (1u << 20) - 1000));
}

}  // namespace
}  // namespace egressguard::dlp
