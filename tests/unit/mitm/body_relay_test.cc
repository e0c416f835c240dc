// Proves the body relay forwards exactly the payload the scan was fed, framed by itself (no chunk extension or trailer leaves), holds a body up to the hold limit, and past it releases only what the real engine has decided, so a card at the end of a large body never leaves before its verdict.
#include "mitm/body_relay.h"

#include <gtest/gtest.h>

#include <random>
#include <string>

#include "mitm/http1.h"
#include "tests/unit/dlp/engine_test_util.h"

namespace egressguard::mitm {
namespace {

const dlp::EnginePtr& Engine() {
  static const dlp::EnginePtr engine = dlp::testing::CompileOrDie(dlp::testing::DefaultPack());
  return engine;
}

// De-chunks what the relay emitted, accepting only the framing it writes itself:
// "<lower-case hex>\r\n<data>\r\n" and a bare "0\r\n\r\n" at the end. Empty on misframing.
std::optional<std::string> Dechunk(std::string_view wire) {
  std::string out;
  while (true) {
    const size_t crlf = wire.find("\r\n");
    if (crlf == std::string_view::npos || crlf == 0) return std::nullopt;
    uint64_t n = 0;
    for (char c : wire.substr(0, crlf)) {
      const int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
      if (v < 0) return std::nullopt;
      n = n * 16 + static_cast<uint64_t>(v);
    }
    wire.remove_prefix(crlf + 2);
    if (n == 0) return wire == "\r\n" ? std::optional<std::string>(out) : std::nullopt;
    if (wire.size() < n + 2 || wire.substr(n, 2) != "\r\n") return std::nullopt;
    out.append(wire.substr(0, n));
    wire.remove_prefix(n + 2);
  }
}

// Parses `request` with the real parser, relays its body, returns the wire bytes sent.
std::string Relay(std::string_view request, bool enforce, uint64_t hold_limit, std::string* scanned_payload,
                  rules::v1::Action* verdict = nullptr) {
  http1::Parser parser(http1::Parser::Kind::kRequest);
  dlp::Scanner scanner;
  std::string buf(request), wire;
  dlp::MessageScanPtr scan;
  std::optional<BodyRelay> relay;
  while (true) {
    auto r = parser.Parse(buf);
    EXPECT_NE(r.event, http1::Event::kError) << parser.error();
    if (r.event == http1::Event::kError) return "";
    if (r.event == http1::Event::kHeadComplete) {
      scan = scanner.Open(Engine(), dlp::ContentHint{});
      relay.emplace(BodyRelay::Options{parser.head().chunked, enforce, hold_limit}, scan.get());
    }
    if (r.event == http1::Event::kBody) {
      scanned_payload->append(r.body);
      relay->Add(r.body);
      relay->TakeReady(&wire);
    }
    buf.erase(0, r.consumed);
    if (r.event == http1::Event::kMessageComplete) break;
  }
  const auto result = scan->Finish();
  if (verdict) *verdict = result.action;
  if (result.action != rules::v1::BLOCK || !enforce) relay->TakeRest(&wire);
  return wire;
}

TEST(BodyRelayTest, ChunkExtensionsAndTrailersNeverLeave) {
  const std::string req =
      "POST /u HTTP/1.1\r\nHost: o\r\nTransfer-Encoding: chunked\r\n\r\n"
      "5;note=\"4539 1488 0343 6467\"\r\nhello\r\n6;x=y\r\n world\r\n0\r\nX-Note: 4539 1488 0343 6467\r\n\r\n";
  std::string payload;
  const std::string wire = Relay(req, /*enforce=*/false, 1 << 20, &payload);
  EXPECT_EQ(payload, "hello world");
  EXPECT_EQ(wire.find("4539"), std::string::npos) << wire;
  EXPECT_EQ(wire.find(';'), std::string::npos) << wire;
  auto body = Dechunk(wire);
  ASSERT_TRUE(body.has_value()) << wire;
  EXPECT_EQ(*body, payload);
}

TEST(BodyRelayTest, AContentLengthBodyLeavesAsItsPayload) {
  const std::string req = "POST /u HTTP/1.1\r\nHost: o\r\nContent-Length: 11\r\n\r\nhello world";
  std::string payload;
  EXPECT_EQ(Relay(req, true, 1 << 20, &payload), "hello world");
  EXPECT_EQ(payload, "hello world");
}

TEST(BodyRelayTest, EnforceHoldsEverythingUpToTheHoldLimit) {
  dlp::Scanner scanner;
  auto scan = scanner.Open(Engine(), dlp::ContentHint{});
  BodyRelay relay(BodyRelay::Options{false, true, 1000}, scan.get());
  std::string wire;
  relay.Add(std::string(1000, 'a'));
  relay.TakeReady(&wire);
  EXPECT_TRUE(wire.empty());
  EXPECT_EQ(relay.held(), 1000u);
  relay.Add(std::string(60000, 'b'));
  relay.TakeReady(&wire);
  EXPECT_GT(wire.size(), 30000u) << "past the hold limit, decided bytes leave";
  EXPECT_EQ(relay.released(), wire.size());
  EXPECT_LE(relay.released(), scan->decided_offset());
}

TEST(BodyRelayTest, MonitorModeReleasesAtOnce) {
  dlp::Scanner scanner;
  auto scan = scanner.Open(Engine(), dlp::ContentHint{});
  BodyRelay relay(BodyRelay::Options{true, false, 1 << 20}, scan.get());
  std::string wire;
  relay.Add("card 4539 1488 0343 6467");
  relay.TakeReady(&wire);
  EXPECT_EQ(wire, "18\r\ncard 4539 1488 0343 6467\r\n");
}

// A card at the very end of a body past the hold limit, cut at every offset of the card:
// what left before the verdict never holds a byte of it, and the verdict blocks.
TEST(BodyRelayTest, ACardAtTheEndOfAStreamedBodyNeverLeaves) {
  const std::string card = "4539 1488 0343 6467";
  std::mt19937 rng(1);
  std::string filler;
  while (filler.size() < 200000) filler += "{\"id\":" + std::to_string(rng() % 100000) + ",\"note\":\"ok\"},";
  const std::string body = filler + card;
  for (size_t cut = 0; cut <= card.size(); ++cut) {
    for (bool chunked : {false, true}) {
      dlp::Scanner scanner;
      auto scan = scanner.Open(Engine(), dlp::ContentHint{});
      BodyRelay relay(BodyRelay::Options{chunked, true, 65536}, scan.get());
      std::string wire;
      const size_t split = filler.size() + cut;
      for (size_t at = 0; at < split; at += 16384) {
        relay.Add(std::string_view(body).substr(at, std::min<size_t>(16384, split - at)));
        relay.TakeReady(&wire);
      }
      relay.Add(std::string_view(body).substr(split));
      if (scan->action_so_far() != rules::v1::BLOCK) relay.TakeReady(&wire);
      EXPECT_EQ(scan->Finish().action, rules::v1::BLOCK);
      EXPECT_GT(relay.released(), 100000u);
      EXPECT_LE(relay.released(), filler.size()) << "cut " << cut;
      EXPECT_EQ(wire.find("4539"), std::string::npos) << "cut " << cut;
    }
  }
}

}  // namespace
}  // namespace egressguard::mitm
