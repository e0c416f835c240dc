// Fuzzes the HTTP/1.1 parser: feeding the same bytes in one piece or in small pieces gives the same messages
// (heads with all their fields, and bodies).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

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
  return 0;
}
