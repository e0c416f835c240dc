// The HTTP/2 relay between an nghttp2 client and an nghttp2 origin, in memory, with the
// real engine and the shipped pack: what reaches the origin, what the client is answered,
// the verdict per stream, gRPC per message, flow control under a hold, and the abuse limits.
#include "mitm/h2_relay.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include <string>

#include "mitm/alpn.h"
#include "mitm/grpc_frames.h"
#include "tests/unit/dlp/engine_test_util.h"
#include "tests/unit/mitm/h2_test_peers.h"

namespace egressguard::mitm {
namespace {

using testing::Fields;
using testing::Frame;
using testing::GrpcMessage;
using testing::Peer;
using testing::Pump;

constexpr char kCard[] = "4539148803436467";

const dlp::EnginePtr& Engine() {
  static const dlp::EnginePtr engine = dlp::testing::CompileOrDie(dlp::testing::DefaultPack());
  return engine;
}

class Host : public H2Relay::Host {
 public:
  bool EngineReady() override { return true; }
  dlp::MessageScanPtr OpenScan(const dlp::ContentHint& hint) override { return scanner_.Open(Engine(), hint); }
  bool MethodAllowed(std::string_view method) override { return method != "DELETE"; }
  bool SameOrigin(std::string_view authority) override { return authority == "origin.test"; }
  v1::Verdict NewVerdict() override {
    v1::Verdict v;
    v.set_id("v" + std::to_string(++ids_));
    return v;
  }
  bool OpenRecord(WriteAhead& record, v1::Verdict verdict, bool enforce) override {
    if (!recordable && enforce) return false;
    record.Open(verdict);
    opened.push_back(std::move(verdict));
    return true;
  }
  void Report(v1::Verdict verdict) override { verdicts.push_back(std::move(verdict)); }
  void CountStream(StreamProtocol, StreamOutcome outcome) override { ++outcomes[Index(outcome)]; }
  void CountGoaway(GoawayReason reason) override { goaways.push_back(reason); }
  bool Recordable(bool enforce) override { return recordable || !enforce; }
  bool recordable = true;  // the verdict spool has room

  const v1::Verdict* ForStream(int32_t id) const {
    for (const auto& v : verdicts) {
      if (v.stream_id() == static_cast<uint32_t>(id)) return &v;
    }
    return nullptr;
  }

  std::vector<v1::Verdict> verdicts;
  std::vector<v1::Verdict> opened;  // write-ahead records, in the order written
  std::array<int, Index(StreamOutcome::kCount)> outcomes{};
  std::vector<GoawayReason> goaways;

 private:
  dlp::Scanner scanner_;
  int ids_ = 0;
};

Fields Post(std::string path, std::string content_type = "application/octet-stream") {
  return {{":method", "POST"}, {":scheme", "https"}, {":authority", "origin.test"}, {":path", std::move(path)},
          {"content-type", std::move(content_type)}};
}

Fields Get(std::string path) {
  return {{":method", "GET"}, {":scheme", "https"}, {":authority", "origin.test"}, {":path", std::move(path)}};
}

Fields Grpc(std::string encoding = "") {
  Fields f = Post("/pkg.Svc/Call", "application/grpc");
  f.emplace_back("te", "trailers");
  if (!encoding.empty()) f.emplace_back("grpc-encoding", encoding);
  return f;
}

std::string Gzip(std::string_view in) {
  z_stream z{};
  deflateInit2(&z, 6, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY);
  std::string out(in.size() + 64, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  deflate(&z, Z_FINISH);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

// Deterministic prose-like bytes with no digits: nothing in them is a finding, and no
// decoder (base64, hex) holds them undecided.
std::string Filler(size_t n) {
  static const char* kWords[] = {"ledger ", "balance ", "quarterly ", "report, ", "the ", "of ", "review. "};
  std::string s;
  for (size_t i = 0; s.size() < n; ++i) s += kWords[(i * 5 + i / 7) % 7];
  s.resize(n);
  return s;
}

struct Fixture {
  explicit Fixture(bool enforce = true, uint64_t hold_limit = 1 << 20, H2Limits limits = {}) {
    H2Relay::Options o;
    o.enforce = enforce;
    o.hold_limit = hold_limit;
    o.limits = limits;
    relay = std::make_unique<H2Relay>(host, o);
    EXPECT_TRUE(relay->Start());
  }
  Host host;
  std::unique_ptr<H2Relay> relay;
  Peer client{false};
  Peer origin{true};
};

TEST(H2Relay, CleanRequestsPassWithOneVerdictPerStream) {
  Fixture f;
  int32_t get = f.client.Request(Get("/a?q=1"), "");
  int32_t post = f.client.Request(Post("/upload"), Filler(100000));
  Pump(*f.relay, f.client, f.origin);
  EXPECT_EQ(f.client.streams[get].Get(":status"), "200");
  EXPECT_EQ(f.client.streams[get].body, "ok");
  EXPECT_EQ(f.client.streams[post].Get(":status"), "200");
  ASSERT_EQ(f.origin.streams.size(), 2u);
  EXPECT_EQ(f.origin.streams[3].body, Filler(100000));  // byte-exact, held whole then released
  const v1::Verdict* v = f.host.ForStream(post);
  ASSERT_NE(v, nullptr);
  EXPECT_EQ(v->protocol(), "h2");
  EXPECT_EQ(v->method(), "POST");
  EXPECT_EQ(v->action(), rules::v1::ALLOW);
  EXPECT_GE(v->bytes_out(), 100000u);
  ASSERT_NE(f.host.ForStream(get), nullptr);
  EXPECT_EQ(f.host.ForStream(get)->path(), "/a?q=");
}

TEST(H2Relay, CardInBodyIsBlockedAndNeverReachesTheOrigin) {
  Fixture f;
  int32_t id = f.client.Request(Post("/p", "application/x-www-form-urlencoded"), std::string("card=") + kCard);
  int32_t ok = f.client.Request(Get("/fine"), "");
  Pump(*f.relay, f.client, f.origin);
  EXPECT_EQ(f.client.streams[id].Get(":status"), "403");
  EXPECT_NE(f.client.streams[id].body.find("pii.credit_card"), std::string::npos);
  EXPECT_EQ(f.client.streams[id].body.find(kCard), std::string::npos);
  EXPECT_EQ(f.client.streams[ok].Get(":status"), "200");  // the other stream goes on
  ASSERT_EQ(f.origin.streams.size(), 1u);                  // only the GET was opened upstream
  EXPECT_EQ(f.origin.streams.begin()->second.Get(":path"), "/fine");
  const v1::Verdict* v = f.host.ForStream(id);
  ASSERT_NE(v, nullptr);
  EXPECT_EQ(v->action(), rules::v1::BLOCK);
  EXPECT_EQ(v->reason(), "pii.credit_card");
  EXPECT_EQ(f.host.outcomes[Index(StreamOutcome::kBlocked)], 1);
}

TEST(H2Relay, CardInPathOrHeaderIsBlockedBeforeAnythingIsSent) {
  Fixture f;
  int32_t a = f.client.Request(Get(std::string("/q?c=") + kCard), "");
  Fields h = Get("/h");
  h.emplace_back("x-card", kCard);
  int32_t b = f.client.Request(h, "");
  Pump(*f.relay, f.client, f.origin);
  EXPECT_EQ(f.client.streams[a].Get(":status"), "403");
  EXPECT_EQ(f.client.streams[b].Get(":status"), "403");
  EXPECT_TRUE(f.origin.streams.empty());
  EXPECT_EQ(f.host.ForStream(a)->path(), "/q?c=");  // never the value
}

TEST(H2Relay, AStreamWhoseVerdictCannotBeRecordedIsRefusedInEnforceMode) {
  Fixture f;
  f.host.recordable = false;
  int32_t id = f.client.Request(Post("/p"), Filler(100));
  int32_t call = f.client.Request(Grpc(), GrpcMessage("hello"));
  Pump(*f.relay, f.client, f.origin);
  EXPECT_EQ(f.client.streams[id].Get(":status"), "503");
  EXPECT_EQ(f.client.streams[call].Get("grpc-status"), "14");
  EXPECT_TRUE(f.origin.streams.empty());
  EXPECT_EQ(f.host.ForStream(id)->reason(), "verdict_unrecordable");
}

// Every stream the origin sees had its write-ahead record first, and its verdict completes
// that record (same id); a stream refused on its head never had one.
TEST(H2Relay, EveryForwardedStreamIsRecordedAheadAndCompletedUnderTheSameId) {
  Fixture f;
  int32_t get = f.client.Request(Get("/a"), "");
  int32_t post = f.client.Request(Post("/upload"), Filler(5000));
  int32_t card = f.client.Request(Post("/p", "application/x-www-form-urlencoded"), std::string("card=") + kCard);
  int32_t refused = f.client.Request(Get(std::string("/c/") + kCard), "");
  Pump(*f.relay, f.client, f.origin);
  ASSERT_EQ(f.host.opened.size(), 3u);  // get, post, card (its head was clean)
  for (int32_t id : {get, post, card}) {
    const v1::Verdict* v = f.host.ForStream(id);
    ASSERT_NE(v, nullptr);
    EXPECT_EQ(v->phase(), v1::Verdict::COMPLETE);
    bool found = false;
    for (const auto& o : f.host.opened) {
      if (o.stream_id() == static_cast<uint32_t>(id)) {
        EXPECT_EQ(o.phase(), v1::Verdict::OPEN);
        EXPECT_EQ(o.id(), v->id());
        found = true;
      }
    }
    EXPECT_TRUE(found) << id;
  }
  EXPECT_EQ(f.host.ForStream(get)->response_status(), 200u);
  EXPECT_EQ(f.host.ForStream(card)->action(), rules::v1::BLOCK);
  const v1::Verdict* r = f.host.ForStream(refused);
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->action(), rules::v1::BLOCK);
  for (const auto& o : f.host.opened) EXPECT_NE(o.id(), r->id());
}

TEST(H2Relay, MonitorModeForwardsAndReports) {
  Fixture f(/*enforce=*/false);
  int32_t id = f.client.Request(Post("/p"), std::string("card=") + kCard);
  Pump(*f.relay, f.client, f.origin);
  EXPECT_EQ(f.client.streams[id].Get(":status"), "200");
  ASSERT_EQ(f.origin.streams.size(), 1u);
  EXPECT_EQ(f.origin.streams.begin()->second.body, std::string("card=") + kCard);
  EXPECT_EQ(f.host.ForStream(id)->action(), rules::v1::BLOCK);
}

TEST(H2Relay, PolicyAndMisdirectedRequestsAreAnsweredByTheProxy) {
  Fixture f;
  Fields del = Get("/x");
  del[0].second = "DELETE";
  int32_t a = f.client.Request(del, "");
  Fields other = Get("/x");
  other[2].second = "elsewhere.test";
  int32_t b = f.client.Request(other, "");
  Pump(*f.relay, f.client, f.origin);
  EXPECT_EQ(f.client.streams[a].Get(":status"), "403");
  EXPECT_EQ(f.host.ForStream(a)->reason(), "method_not_allowed");
  EXPECT_EQ(f.client.streams[b].Get(":status"), "421");
  EXPECT_TRUE(f.origin.streams.empty());
}

TEST(H2Relay, BodyLargerThanTheHoldLimitStreamsByteExactWithinTheWindow) {
  Fixture f(/*enforce=*/true, /*hold_limit=*/64 * 1024);
  const std::string body = Filler(3 << 20);
  int32_t id = f.client.Request(Post("/big"), body);
  Pump(*f.relay, f.client, f.origin);
  EXPECT_EQ(f.client.streams[id].Get(":status"), "200");
  ASSERT_EQ(f.origin.streams.size(), 1u);
  EXPECT_EQ(f.origin.streams.begin()->second.body, body);
}

TEST(H2Relay, UploadsPastTheHoldLimitAreNotCappedByTheWindow) {
  // Held bytes are taken in up to the hold limit, whatever the 1 MiB stream window.
  Fixture f(/*enforce=*/true, /*hold_limit=*/4 << 20);
  const std::string body = Filler(10 << 20);
  int32_t id = f.client.Request(Post("/big"), body);
  Pump(*f.relay, f.client, f.origin);
  EXPECT_EQ(f.client.streams[id].Get(":status"), "200");
  EXPECT_EQ(f.origin.streams.begin()->second.body, body);
}

TEST(H2Relay, AStreamTheConnectionBudgetStopsFailsClosed) {
  H2Limits limits;
  limits.max_held_bytes = 3 << 20;
  Fixture f(/*enforce=*/true, /*hold_limit=*/2 << 20, limits);
  // Two bodies held whole (not ended, under the hold limit): the first takes 2 MiB of the
  // budget, the second cannot be held past the rest plus its window.
  int32_t a = f.client.Request(Post("/a"), Filler(2 << 20), /*end_stream=*/false);
  Pump(*f.relay, f.client, f.origin);
  int32_t b = f.client.Request(Post("/b"), Filler(2 << 20), /*end_stream=*/false);
  Pump(*f.relay, f.client, f.origin);
  EXPECT_EQ(f.client.streams[b].Get(":status"), "403");
  EXPECT_EQ(f.host.ForStream(b)->reason(), "h2_hold_budget_exceeded");
  f.client.Send(a, "", true);
  Pump(*f.relay, f.client, f.origin);
  EXPECT_EQ(f.client.streams[a].Get(":status"), "200");
  EXPECT_EQ(f.origin.streams.begin()->second.body, Filler(2 << 20));
}

TEST(H2Relay, CardPastTheHoldLimitResetsTheOriginStream) {
  Fixture f(/*enforce=*/true, /*hold_limit=*/64 * 1024);
  // The first MiB arrives (and, decided clean, starts leaving) before the card does.
  int32_t id = f.client.Request(Post("/big"), Filler(1 << 20), /*end_stream=*/false);
  Pump(*f.relay, f.client, f.origin);
  f.client.Send(id, std::string(" card ") + kCard + " " + Filler(1000), true);
  Pump(*f.relay, f.client, f.origin);
  EXPECT_EQ(f.client.streams[id].Get(":status"), "403");
  ASSERT_EQ(f.origin.streams.size(), 1u);
  const auto& got = f.origin.streams.begin()->second;
  EXPECT_EQ(got.reset, static_cast<uint32_t>(NGHTTP2_CANCEL));
  EXPECT_EQ(got.body.find(kCard), std::string::npos);
  EXPECT_EQ(got.body.find("card 4539"), std::string::npos);  // not even its first digits
  EXPECT_GT(f.host.ForStream(id)->bytes_out_before_block(), 0u);
}

TEST(H2Relay, GrpcMessageWithCardGetsPermissionDenied) {
  Fixture f;
  int32_t clean = f.client.Request(Grpc(), GrpcMessage("hello world"));
  int32_t bad = f.client.Request(Grpc(), GrpcMessage(std::string("\x0a\x10", 2) + kCard));
  Pump(*f.relay, f.client, f.origin);
  EXPECT_EQ(f.client.streams[clean].Get("grpc-status"), "0");
  EXPECT_EQ(f.client.streams[bad].Get(":status"), "200");
  EXPECT_EQ(f.client.streams[bad].Get("grpc-status"), "7");
  EXPECT_NE(f.client.streams[bad].Get("grpc-message").find("pii.credit_card"), std::string::npos);
  EXPECT_EQ(f.client.streams[bad].Get("grpc-message").find(kCard), std::string::npos);
  ASSERT_EQ(f.origin.streams.size(), 1u);
  EXPECT_EQ(f.origin.streams.begin()->second.body, GrpcMessage("hello world"));
}

TEST(H2Relay, GrpcCardSplitAcrossDataFramesIsFound) {
  Fixture f;
  // Frames of 9 bytes: the prefix and the card's digits land in different DATA frames.
  int32_t id = f.client.Request(Grpc(), GrpcMessage(std::string("pay ") + kCard + " now"), true, 9);
  Pump(*f.relay, f.client, f.origin);
  EXPECT_EQ(f.client.streams[id].Get("grpc-status"), "7");
  EXPECT_TRUE(f.origin.streams.empty());
}

TEST(H2Relay, GzipCompressedGrpcMessageIsReadThroughItsEncoding) {
  Fixture f;
  int32_t id = f.client.Request(Grpc("gzip"), GrpcMessage(Gzip(std::string("pay ") + kCard), true));
  int32_t ok = f.client.Request(Grpc("gzip"), GrpcMessage(Gzip("nothing to see"), true));
  Pump(*f.relay, f.client, f.origin);
  EXPECT_EQ(f.client.streams[id].Get("grpc-status"), "7");
  EXPECT_EQ(f.client.streams[ok].Get("grpc-status"), "0");
  ASSERT_EQ(f.origin.streams.size(), 1u);
}

TEST(H2Relay, ClientStreamingIsEnforcedPerMessage) {
  Fixture f;
  f.origin.answer_early = true;  // a bidi server answers at the head
  int32_t id = f.client.Request(Grpc(), GrpcMessage("first"), /*end_stream=*/false);
  Pump(*f.relay, f.client, f.origin);
  ASSERT_EQ(f.origin.streams.size(), 1u);
  EXPECT_EQ(f.origin.streams.begin()->second.body, GrpcMessage("first"));  // forwarded before the call ends
  f.client.Send(id, GrpcMessage("second"), false);
  Pump(*f.relay, f.client, f.origin);
  EXPECT_EQ(f.origin.streams.begin()->second.body, GrpcMessage("first") + GrpcMessage("second"));
  f.client.Send(id, GrpcMessage(std::string("third ") + kCard), false);
  Pump(*f.relay, f.client, f.origin);
  const auto& up = f.origin.streams.begin()->second;
  EXPECT_EQ(up.body.find(kCard), std::string::npos);
  EXPECT_EQ(up.reset, static_cast<uint32_t>(NGHTTP2_CANCEL));
  EXPECT_EQ(f.client.streams[id].Get("grpc-status"), "7");
  EXPECT_EQ(f.host.ForStream(id)->messages_out(), 2u);
}

TEST(H2Relay, HundredStreamsOneBlocked) {
  Fixture f;
  std::vector<int32_t> ids;
  for (int i = 0; i < 100; ++i) {
    ids.push_back(f.client.Request(Post("/s" + std::to_string(i)), i == 57 ? std::string("c=") + kCard : Filler(2000)));
  }
  Pump(*f.relay, f.client, f.origin);
  int ok = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    const std::string status = f.client.streams[ids[i]].Get(":status");
    if (i == 57) {
      EXPECT_EQ(status, "403");
    } else {
      ok += status == "200";
    }
  }
  EXPECT_EQ(ok, 99);
  EXPECT_EQ(f.origin.streams.size(), 99u);
  EXPECT_TRUE(f.host.goaways.empty());
}

TEST(H2Relay, ResponsesAreScannedWhenAskedAndNeverBlocked) {
  H2Relay::Options o;
  o.enforce = true;
  o.scan_responses = true;
  Host host;
  H2Relay relay(host, o);
  ASSERT_TRUE(relay.Start());
  Peer client(false), origin(true);
  origin.answer_body = std::string("your card ") + kCard;
  int32_t id = client.Request(Get("/account"), "");
  Pump(relay, client, origin);
  EXPECT_EQ(client.streams[id].Get(":status"), "200");
  EXPECT_EQ(client.streams[id].body, origin.answer_body);
  const v1::Verdict* v = host.ForStream(id);
  ASSERT_NE(v, nullptr);
  EXPECT_EQ(v->action(), rules::v1::ALERT);
  ASSERT_GT(v->findings_size(), 0);
}

TEST(H2Relay, DrainLetsStreamsInFlightFinishThenEnds) {
  Fixture f;
  int32_t id = f.client.Request(Post("/slow"), Filler(1000), /*end_stream=*/false);
  Pump(*f.relay, f.client, f.origin);
  f.relay->Drain();
  Pump(*f.relay, f.client, f.origin);
  EXPECT_EQ(f.client.goaway, static_cast<uint32_t>(NGHTTP2_NO_ERROR));
  EXPECT_FALSE(f.relay->client_done());  // the stream in flight goes on
  f.client.Send(id, Filler(10), true);
  Pump(*f.relay, f.client, f.origin);
  EXPECT_EQ(f.client.streams[id].Get(":status"), "200");
  EXPECT_EQ(f.origin.streams.begin()->second.body, Filler(1000) + Filler(10));
  EXPECT_TRUE(f.relay->client_done());
}

// The client's connection preface, SETTINGS and its ack: what a raw attacker sends first.
std::string Preface() {
  return std::string("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n") + Frame(NGHTTP2_SETTINGS, 0, 0, "");
}

// HPACK for a GET request, literal fields without indexing (RFC 7541 6.2.2).
std::string RequestBlock() {
  std::string b;
  auto lit = [&](std::string_view n, std::string_view v) {
    b += '\x00';
    b += static_cast<char>(n.size());
    b.append(n);
    b += static_cast<char>(v.size());
    b.append(v);
  };
  lit(":method", "GET");
  lit(":scheme", "https");
  lit(":authority", "origin.test");
  lit(":path", "/");
  return b;
}

// The error code of the GOAWAY among the frames the relay sends the client, or -1.
int64_t GoawayCode(H2Relay& relay) {
  std::string out;
  relay.PullClient(&out, SIZE_MAX);
  std::string_view in(out);
  while (in.size() >= 9) {
    const size_t len = (size_t{static_cast<uint8_t>(in[0])} << 16) | (size_t{static_cast<uint8_t>(in[1])} << 8) |
                       static_cast<uint8_t>(in[2]);
    if (in.size() < 9 + len) break;
    if (in[3] == NGHTTP2_GOAWAY && len >= 8) {
      std::string_view p = in.substr(9 + 4, 4);
      return (int64_t{static_cast<uint8_t>(p[0])} << 24) | (static_cast<uint8_t>(p[1]) << 16) |
             (static_cast<uint8_t>(p[2]) << 8) | static_cast<uint8_t>(p[3]);
    }
    in.remove_prefix(9 + len);
  }
  return -1;
}

TEST(H2Relay, RapidResetGetsGoawayEnhanceYourCalm) {
  H2Limits limits;
  limits.max_resets_per_second = 20;
  Fixture f(true, 1 << 20, limits);
  std::string attack = Preface();
  for (int32_t id = 1; id < 2 * 200; id += 2) {
    attack += Frame(NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS, id, RequestBlock());
    attack += Frame(NGHTTP2_RST_STREAM, 0, id, std::string("\0\0\0\x08", 4));
  }
  EXPECT_FALSE(f.relay->RecvClient(attack));
  ASSERT_EQ(f.host.goaways.size(), 1u);
  EXPECT_EQ(f.host.goaways[0], GoawayReason::kRapidReset);
  EXPECT_EQ(f.relay->abuse(), "rapid_reset");
  EXPECT_EQ(GoawayCode(*f.relay), NGHTTP2_ENHANCE_YOUR_CALM);
  ASSERT_FALSE(f.host.verdicts.empty());
  EXPECT_EQ(f.host.verdicts.back().reason(), "h2_abuse: rapid_reset");
}

TEST(H2Relay, ContinuationFloodGetsGoaway) {
  Fixture f;
  std::string attack = Preface() + Frame(NGHTTP2_HEADERS, 0, 1, RequestBlock());
  for (int i = 0; i < 100; ++i) attack += Frame(NGHTTP2_CONTINUATION, 0, 1, "");
  EXPECT_FALSE(f.relay->RecvClient(attack));
  ASSERT_EQ(f.host.goaways.size(), 1u);
  EXPECT_EQ(f.host.goaways[0], GoawayReason::kContinuationFlood);
  EXPECT_EQ(GoawayCode(*f.relay), NGHTTP2_ENHANCE_YOUR_CALM);
}

TEST(H2Relay, HpackBombGetsGoaway) {
  Fixture f;
  // One 4000-byte header value entered in the dynamic table, then referenced by index
  // (one byte each) until the decoded list is far past the limit.
  std::string block = RequestBlock();
  block += '\x40';  // literal with incremental indexing, new name
  block += static_cast<char>(1);
  block += 'x';
  block += '\x7f';  // value length 4000: 127 + varint
  uint32_t rest = 4000 - 127;
  while (rest >= 128) {
    block += static_cast<char>((rest & 0x7f) | 0x80);
    rest >>= 7;
  }
  block += static_cast<char>(rest);
  block.append(4000, 'v');
  for (int i = 0; i < 1000; ++i) block += '\xbe';  // indexed field 62: the entry just added
  std::string attack = Preface() + Frame(NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS | NGHTTP2_FLAG_END_STREAM, 1, block);
  EXPECT_FALSE(f.relay->RecvClient(attack));
  ASSERT_EQ(f.host.goaways.size(), 1u);
  EXPECT_EQ(f.host.goaways[0], GoawayReason::kHeaderListTooLarge);
  EXPECT_EQ(GoawayCode(*f.relay), NGHTTP2_ENHANCE_YOUR_CALM);
}

TEST(H2Relay, PingFloodGetsGoaway) {
  Fixture f;
  std::string attack = Preface();
  for (int i = 0; i < 5000; ++i) attack += Frame(NGHTTP2_PING, 0, 0, std::string(8, 'p'));
  EXPECT_FALSE(f.relay->RecvClient(attack));
  ASSERT_EQ(f.host.goaways.size(), 1u);
  EXPECT_EQ(f.host.goaways[0], GoawayReason::kControlFlood);
  EXPECT_EQ(GoawayCode(*f.relay), NGHTTP2_ENHANCE_YOUR_CALM);
}

TEST(H2Relay, TooManyStreamsGetsGoaway) {
  H2Limits limits;
  limits.max_concurrent_streams = 10;
  Fixture f(true, 1 << 20, limits);
  std::string attack = Preface();
  for (int32_t id = 1; id < 2 * 30; id += 2) attack += Frame(NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS, id, RequestBlock());
  EXPECT_FALSE(f.relay->RecvClient(attack));
  ASSERT_EQ(f.host.goaways.size(), 1u);
  EXPECT_EQ(f.host.goaways[0], GoawayReason::kTooManyStreams);
  EXPECT_EQ(GoawayCode(*f.relay), NGHTTP2_ENHANCE_YOUR_CALM);
}

TEST(H2Relay, WindowUpdateFloodGetsGoaway) {
  Fixture f;
  std::string attack = Preface();
  for (int i = 0; i < 5000; ++i) attack += Frame(NGHTTP2_WINDOW_UPDATE, 0, 0, std::string("\0\0\0\x01", 4));
  EXPECT_FALSE(f.relay->RecvClient(attack));
  ASSERT_EQ(f.host.goaways.size(), 1u);
  EXPECT_EQ(f.host.goaways[0], GoawayReason::kWindowUpdateFlood);
  EXPECT_EQ(GoawayCode(*f.relay), NGHTTP2_ENHANCE_YOUR_CALM);
}

TEST(H2Relay, BadPrefaceIsAProtocolError) {
  Fixture f;
  EXPECT_FALSE(f.relay->RecvClient("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
  ASSERT_EQ(f.host.goaways.size(), 1u);
  EXPECT_EQ(f.host.goaways[0], GoawayReason::kProtocolError);
}

TEST(H2Relay, OriginGoneAnswers502AndTellsTheClientToGo) {
  Fixture f;
  int32_t id = f.client.Request(Get("/slow"), "");
  // The request reaches the origin, which never answers: its connection drops.
  std::string c = f.client.Pull();
  f.relay->RecvClient(c);
  std::string up;
  f.relay->PullUpstream(&up, SIZE_MAX);
  f.relay->UpstreamGone();
  std::string down;
  f.relay->PullClient(&down, SIZE_MAX);
  f.client.Push(down);
  EXPECT_EQ(f.client.streams[id].Get(":status"), "502");
  EXPECT_EQ(f.client.goaway, static_cast<uint32_t>(NGHTTP2_NO_ERROR));
  EXPECT_EQ(f.host.outcomes[Index(StreamOutcome::kError)], 1);
}

}  // namespace
}  // namespace egressguard::mitm

namespace egressguard::mitm {
namespace {

TEST(GrpcMessageReader, ReadsMessagesHoweverTheBytesAreCut) {
  const std::string wire = testing::GrpcMessage("abc") + testing::GrpcMessage("") + testing::GrpcMessage("xy", true);
  for (size_t step = 1; step <= wire.size(); ++step) {
    grpc::MessageReader reader;
    std::string transcript;
    for (size_t pos = 0; pos < wire.size(); pos += step) {
      std::string_view in = std::string_view(wire).substr(pos, step);
      for (;;) {
        auto e = reader.Next(in);
        in.remove_prefix(e.consumed);
        using Kind = grpc::MessageReader::Event::Kind;
        if (e.kind == Kind::kBegin) transcript += "B" + std::to_string(e.length) + (e.compressed ? "z" : "") + ":";
        if (e.kind == Kind::kPayload) transcript.append(e.payload);
        if (e.kind == Kind::kEnd) transcript += ";";
        ASSERT_NE(e.kind, Kind::kError);
        if (e.kind == Kind::kNeedMore && in.empty()) break;
      }
    }
    EXPECT_EQ(transcript, "B3:abc;B0:;B2z:xy;") << "step " << step;
    EXPECT_TRUE(reader.at_boundary());
  }
}

TEST(GrpcMessageReader, RefusesAFlagOtherThanZeroOrOne) {
  grpc::MessageReader reader;
  auto e = reader.Next(std::string("\x02\0\0\0\x01x", 6));
  EXPECT_EQ(e.kind, grpc::MessageReader::Event::Kind::kError);
  EXPECT_TRUE(reader.failed());
}

TEST(Alpn, OffersTheOriginWhatTheClientOfferedOfH2AndHttp11) {
  EXPECT_EQ(AlpnOfferFor({"h2", "http/1.1"}), std::string("\x02h2\x08http/1.1"));
  EXPECT_EQ(AlpnOfferFor({"spdy/3", "http/1.1", "h2", "h2"}), std::string("\x08http/1.1\x02h2"));
  EXPECT_EQ(AlpnOfferFor({"h3", "acme-tls/1"}), "");
}

}  // namespace
}  // namespace egressguard::mitm
