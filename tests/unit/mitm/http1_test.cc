// Proves the strict HTTP/1.1 parser frames requests/responses byte-exactly and refuses every ambiguous framing listed in the issue.
#include "mitm/http1.h"

#include <gtest/gtest.h>

#include <string>

namespace egressguard::mitm::http1 {
namespace {

struct Parsed {
  std::vector<MessageHead> heads;
  std::vector<std::string> bodies;
  std::string error;
  size_t consumed = 0;
};

// Feeds `wire` in pieces of `step` bytes, like TCP reads, keeping unconsumed bytes.
Parsed Drive(Parser::Kind kind, const std::string& wire, size_t step, const std::string& request_method = "GET",
           bool eof = false) {
  Parser p(kind);
  p.SetRequestMethod(request_method);
  Parsed out;
  std::string buf;
  size_t fed = 0;
  std::string body;
  while (true) {
    if (fed < wire.size()) {
      buf += wire.substr(fed, step);
      fed = std::min(wire.size(), fed + step);
    }
    bool progressed = true;
    while (progressed) {
      auto r = p.Parse(buf);
      if (r.event == Event::kBody) body.append(r.body);  // points into buf: copy before erasing
      out.consumed += r.consumed;
      buf.erase(0, r.consumed);
      progressed = r.consumed > 0 || r.event == Event::kHeadComplete || r.event == Event::kMessageComplete;
      if (r.event == Event::kError) {
        out.error = p.error();
        return out;
      }
      if (r.event == Event::kHeadComplete) out.heads.push_back(p.head());
      if (r.event == Event::kMessageComplete) {
        out.bodies.push_back(body);
        body.clear();
      }
      if (r.event == Event::kNeedMore && r.consumed == 0) progressed = false;
    }
    if (fed >= wire.size()) break;
  }
  if (eof) {
    auto r = p.Eof();
    if (r.event == Event::kError) out.error = p.error();
    if (r.event == Event::kMessageComplete) out.bodies.push_back(body);
  }
  return out;
}

TEST(Http1, ContentLengthAndChunkedPipelinedAtEverySplit) {
  std::string wire =
      "POST /upload?x=1 HTTP/1.1\r\nHost: a.example\r\nContent-Length: 5\r\n\r\nhello"
      "POST /c HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\n\r\n"
      "3;ext=1\r\nabc\r\n0A\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n"
      "GET / HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n";
  for (size_t step : {1u, 2u, 7u, 1000u}) {
    auto r = Drive(Parser::Kind::kRequest, wire, step);
    ASSERT_EQ(r.error, "") << "step " << step;
    ASSERT_EQ(r.heads.size(), 3u);
    EXPECT_EQ(r.heads[0].method, "POST");
    EXPECT_EQ(r.heads[0].target, "/upload?x=1");
    EXPECT_EQ(r.heads[0].content_length, 5u);
    EXPECT_TRUE(r.heads[1].chunked);
    EXPECT_FALSE(r.heads[2].keep_alive);
    EXPECT_EQ(r.bodies, (std::vector<std::string>{"hello", "abc0123456789", ""}));
    EXPECT_EQ(r.consumed, wire.size());
  }
}

TEST(Http1, ExpectContinueUpgradeAndHttp10) {
  auto r = Drive(Parser::Kind::kRequest,
               "PUT /x HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nz", 1000);
  ASSERT_EQ(r.error, "");
  EXPECT_TRUE(r.heads[0].expect_continue);
  r = Drive(Parser::Kind::kRequest, "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", 5);
  ASSERT_EQ(r.error, "");
  EXPECT_TRUE(r.heads[0].upgrade);
  r = Drive(Parser::Kind::kRequest, "GET / HTTP/1.0\r\n\r\n", 3);
  ASSERT_EQ(r.error, "");
  EXPECT_FALSE(r.heads[0].keep_alive);
}

TEST(Http1, ResponsesFollowRequestMethodAndStatus) {
  auto r = Drive(Parser::Kind::kResponse, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", 4, "HEAD");
  ASSERT_EQ(r.error, "");
  EXPECT_EQ(r.bodies, (std::vector<std::string>{""}));
  r = Drive(Parser::Kind::kResponse, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n", 3);
  ASSERT_EQ(r.error, "");
  ASSERT_EQ(r.heads.size(), 2u);
  EXPECT_EQ(r.heads[1].status, 204);
  r = Drive(Parser::Kind::kResponse, "HTTP/1.0 200 OK\r\n\r\nuntil close", 4, "GET", /*eof=*/true);
  ASSERT_EQ(r.error, "");
  EXPECT_EQ(r.bodies, (std::vector<std::string>{"until close"}));
  r = Drive(Parser::Kind::kResponse, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", 4, "GET", /*eof=*/true);
  EXPECT_NE(r.error, "");
}

struct BadCase {
  const char* name;
  const char* wire;
};

TEST(Http1, RefusesAmbiguousFraming) {
  const BadCase cases[] = {
      {"CL+TE", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"},
      {"differing CL", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n"},
      {"CL list", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3, 4\r\n\r\n"},
      {"signed CL", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +3\r\n\r\n"},
      {"TE not chunked", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n"},
      {"TE chunked twice", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"},
      {"TE in 1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"},
      {"bad chunk size", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nxyz\r\n"},
      {"chunk size overflow", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\n"},
      {"chunk without CRLF", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1\r\naXX"},
      {"space in chunk size", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1 \r\na\r\n"},
      {"obs-fold", "GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n  continued\r\n\r\n"},
      {"bare CR", "GET / HTTP/1.1\r\nHost: h\rX: y\r\n\r\n"},
      {"bare LF", "GET / HTTP/1.1\nHost: h\r\n\r\n"},
      {"space before colon", "GET / HTTP/1.1\r\nHost : h\r\n\r\n"},
      {"invalid method", "G(T / HTTP/1.1\r\nHost: h\r\n\r\n"},
      {"double space", "GET  / HTTP/1.1\r\nHost: h\r\n\r\n"},
      {"no host", "GET / HTTP/1.1\r\n\r\n"},
      {"two hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"},
      {"HTTP/2 line", "GET / HTTP/2.0\r\nHost: h\r\n\r\n"},
      {"NUL in header", "GET / HTTP/1.1\r\nHost: h\r\nX: a\x01z\r\n\r\n"},
  };
  for (const auto& c : cases) {
    auto r = Drive(Parser::Kind::kRequest, c.wire, 1000);
    EXPECT_NE(r.error, "") << c.name;
  }
}

// The head scan finds bare CR, bare LF and NUL however reads split the head, and names
// the first of them, as a byte-by-byte scan does.
TEST(Http1, HeadControlBytesAtEverySplit) {
  using namespace std::string_literals;
  const struct {
    std::string wire;
    const char* error;
  } cases[] = {
      {"GET / HTTP/1.1\r\nHost: h\rX: y\r\n\r\n"s, "bare CR in message head"},
      {"GET / HTTP/1.1\r\nHost: h\r\r\n\r\n"s, "bare CR in message head"},
      {"GET / HTTP/1.1\nHost: h\r\n\r\n"s, "bare LF in message head"},
      {"GET / HTTP/1.1\r\nHost: h\r\n\n"s, "bare LF in message head"},
      {"GET / HTTP/1.1\r\nHost: h\r\nX: a\0\rz\r\n\r\n"s, "NUL byte in message head"},
      {"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\0z\r\n\r\n"s, "bare CR in message head"},
  };
  for (const auto& c : cases) {
    for (size_t step = 1; step <= c.wire.size(); ++step) {
      EXPECT_EQ(Drive(Parser::Kind::kRequest, c.wire, step).error, c.error) << c.wire << " step " << step;
    }
  }
}

// A parser reused across keep-alive messages reuses its header storage, never its headers.
TEST(Http1, NextHeadHasOnlyItsOwnHeaders) {
  Parser p(Parser::Kind::kRequest);
  std::string first = "GET /a HTTP/1.1\r\nHost: h\r\nX-One: 1\r\nX-Two: 2\r\n\r\n";
  ASSERT_EQ(p.Parse(first).event, Event::kHeadComplete);
  ASSERT_EQ(p.head().headers.size(), 3u);
  ASSERT_EQ(p.Parse("").event, Event::kMessageComplete);
  ASSERT_EQ(p.Parse("GET /b HTTP/1.1\r\nhost: g\r\n\r\n").event, Event::kHeadComplete);
  ASSERT_EQ(p.head().headers.size(), 1u);
  EXPECT_EQ(p.head().headers[0].name, "host");
  EXPECT_EQ(p.head().headers[0].value, "g");
  EXPECT_EQ(p.head().target, "/b");
  EXPECT_FALSE(p.head().Get("x-one").has_value());
}

TEST(Http1, LimitsHeadSizeAndHeaderCount) {
  std::string big = "GET / HTTP/1.1\r\nHost: h\r\nX: " + std::string(70000, 'a') + "\r\n\r\n";
  EXPECT_NE(Drive(Parser::Kind::kRequest, big, 4096).error, "");
  std::string many = "GET / HTTP/1.1\r\nHost: h\r\n";
  for (int i = 0; i < 150; ++i) many += "X-" + std::to_string(i) + ": v\r\n";
  many += "\r\n";
  EXPECT_NE(Drive(Parser::Kind::kRequest, many, 4096).error, "");
}

TEST(Http1, SerializeRequestHeadDropsHopByHop) {
  MessageHead h;
  h.method = "GET";
  h.headers = {{"Host", "a"}, {"Proxy-Connection", "keep-alive"}, {"X", "1"}};
  EXPECT_EQ(SerializeRequestHead(h, "/p", {"proxy-connection"}), "GET /p HTTP/1.1\r\nHost: a\r\nX: 1\r\n\r\n");
}

TEST(Http1, PercentDecode) {
  EXPECT_EQ(PercentDecode("/a%20b?c=4111%2D1111+x%zz%4"), "/a b?c=4111-1111 x%zz%4");
}

}  // namespace
}  // namespace egressguard::mitm::http1

namespace egressguard::mitm::http1 {
namespace {

// Repeated list headers are read as a recipient that merges them reads them (RFC 9110 5.3).
TEST(Http1GetList, JoinsEveryLineOfAListHeader) {
  Parser p(Parser::Kind::kRequest);
  const std::string req =
      "POST /x HTTP/1.1\r\nHost: a\r\nContent-Encoding: deflate\r\nContent-Length: 0\r\ncontent-encoding: gzip\r\n\r\n";
  auto r = p.Parse(req);
  ASSERT_EQ(r.event, Event::kHeadComplete) << p.error();
  EXPECT_EQ(p.head().GetList("content-encoding"), "deflate, gzip");
  EXPECT_EQ(p.head().GetList("x-absent"), "");
}

}  // namespace
}  // namespace egressguard::mitm::http1
