// Fuzzes the HTTP/1.1 parser: feeding the same bytes in one piece or in small pieces gives the same messages
// (heads with all their fields, and bodies); and the request body relay: the bytes it emits are exactly the
// payload the scan was fed plus framing it generated (no chunk extension or trailer byte of the input), and in
// enforce mode nothing past the scan's decided offset leaves before the verdict.
#include <cstddef>
#include <cstdint>
#include <algorithm>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mitm/body_relay.h"
#include "mitm/http1.h"

namespace {

using egressguard::mitm::http1::Event;
using egressguard::mitm::http1::Parser;

// Returns a transcript of events and bodies; `step` bytes are made available at a time.
std::string Transcript(Parser::Kind kind, std::string_view input, size_t step) {
  Parser p(kind);
  p.SetRequestMethod("GET");
  std::string buf;
  std::string out;
  size_t fed = 0;
  for (int guard = 0; guard < 1000000; ++guard) {
    auto r = p.Parse(buf);
    if (r.consumed > buf.size()) std::abort();
    if (r.event == Event::kBody) {
      if (r.body.size() > r.consumed) std::abort();
      out += "B" + std::string(r.body);
    }
    if (r.event == Event::kHeadComplete) {
      out += "H" + p.head().method + p.head().target + std::to_string(p.head().status);
      // Every header, so a field left over from an earlier message of the stream shows.
      for (const auto& h : p.head().headers) out += "\n" + h.name + ":" + h.value;
    }
    if (r.event == Event::kMessageComplete) out += "M";
    if (r.event == Event::kError) return out + "E";
    buf.erase(0, r.consumed);
    bool progressed = r.consumed > 0 || r.event == Event::kHeadComplete || r.event == Event::kMessageComplete;
    if (!progressed) {
      if (fed == input.size()) break;
      size_t n = std::min(step, input.size() - fed);
      buf.append(input.substr(fed, n));
      fed += n;
    }
  }
  return out;
}

// A scan that records what it is fed and decides a fuzzer-chosen amount: a test double,
// since the driver links no Hyperscan and the relay's contract holds for any scan.
class RecordingScan final : public egressguard::dlp::MessageScan {
 public:
  explicit RecordingScan(unsigned lag) : lag_(lag) {}
  void Feed(std::string_view chunk) override { fed_.append(chunk); }
  egressguard::rules::v1::Action action_so_far() const override { return egressguard::rules::v1::ALLOW; }
  uint64_t decided_offset() const override { return fed_.size() > lag_ ? fed_.size() - lag_ : 0; }
  uint64_t threshold_from() const override { return UINT64_MAX; }
  egressguard::dlp::MessageResult Finish() override { return {}; }
  const std::string& fed() const { return fed_; }

 private:
  unsigned lag_;
  std::string fed_;
};

// Accepts only the relay's own framing; returns false on anything else.
bool Dechunk(std::string_view wire, std::string* out) {
  while (true) {
    const size_t crlf = wire.find("\r\n");
    if (crlf == std::string_view::npos || crlf == 0 || crlf > 16) return false;
    uint64_t n = 0;
    for (char c : wire.substr(0, crlf)) {
      const int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
      if (v < 0) return false;
      n = n * 16 + static_cast<uint64_t>(v);
    }
    wire.remove_prefix(crlf + 2);
    if (n == 0) return wire == "\r\n";
    if (wire.size() < n + 2 || wire.substr(n, 2) != "\r\n") return false;
    out->append(wire.substr(0, n));
    wire.remove_prefix(n + 2);
  }
}

// Relays every request body of `input` and checks what leaves.
void CheckRelay(std::string_view input, size_t step, bool enforce, unsigned lag, uint64_t hold) {
  using egressguard::mitm::BodyRelay;
  Parser p(Parser::Kind::kRequest);
  std::string buf;
  size_t fed = 0;
  std::optional<RecordingScan> scan;
  std::optional<BodyRelay> relay;
  std::string payload, wire;
  bool chunked = false;
  for (int guard = 0; guard < 1000000; ++guard) {
    auto r = p.Parse(buf);
    if (r.event == Event::kError) return;
    if (r.event == Event::kHeadComplete) {
      chunked = p.head().chunked;
      scan.emplace(lag);
      relay.emplace(BodyRelay::Options{chunked, enforce, hold}, &*scan);
      payload.clear();
      wire.clear();
    }
    if (r.event == Event::kBody && relay) {
      payload.append(r.body);
      relay->Add(r.body);
      relay->TakeReady(&wire);
      std::string released;
      if (!chunked) released = wire;
      else if (!wire.empty() && !Dechunk(std::string(wire) + "0\r\n\r\n", &released)) std::abort();
      // Enforce: nothing before the hold ended, and never past the decided offset.
      if (enforce && released.size() > 0 && payload.size() <= hold) std::abort();
      if (enforce && released.size() > scan->decided_offset()) std::abort();
    }
    if (r.event == Event::kMessageComplete && relay) {
      relay->TakeRest(&wire);
      if (scan->fed() != payload) std::abort();
      std::string body;
      if (chunked ? !Dechunk(wire, &body) : (body = wire, false)) std::abort();
      if (body != payload) std::abort();
      relay.reset();
    }
    buf.erase(0, r.consumed);
    bool progressed = r.consumed > 0 || r.event == Event::kHeadComplete || r.event == Event::kMessageComplete;
    if (!progressed) {
      if (fed == input.size()) break;
      size_t n = std::min(step, input.size() - fed);
      buf.append(input.substr(fed, n));
      fed += n;
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  size_t step = 1 + data[0] % 17;
  std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);
  for (auto kind : {Parser::Kind::kRequest, Parser::Kind::kResponse}) {
    std::string whole = Transcript(kind, input, input.size() + 1);
    std::string pieces = Transcript(kind, input, step);
    // Bodies may be split differently; compare with the body markers removed.
    auto strip = [](std::string s) {
      std::string o;
      for (char c : s) {
        if (c != 'B') o += c;
      }
      return o;
    };
    if (strip(whole) != strip(pieces)) std::abort();
  }
  CheckRelay(input, step, /*enforce=*/(data[0] & 0x80) != 0, /*lag=*/data[0] % 23, /*hold=*/data[0] % 5 * 7);
  return 0;
}
