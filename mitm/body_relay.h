#pragma once
// What of a request body may leave, and in what framing. Internal to mitm/.
//
// The proxy never forwards the body's wire bytes: it forwards the payload the scan was
// fed, framed by itself. A Content-Length body leaves as the payload; a chunked one as
// chunks the relay writes (so chunk extensions and trailer fields, which the scan does
// not read, never leave) and its own terminating chunk. What leaves when:
//  - monitor mode (or no scan): everything, at once;
//  - enforce mode: nothing while the body fits the hold limit; past it, only the payload
//    the scan has decided (dlp::HoldFrom), so no byte of a value the engine may still
//    find goes out; the rest after the scan's final verdict, or never.
// The held tail is bounded by what the engine leaves undecided plus the threshold hold
// (see dlp::HoldFrom), not by the body's size.

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>

#include "dlp/engine.h"
#include "mitm/hold_buffer.h"

namespace egressguard::mitm {

class BodyRelay {
 public:
  struct Options {
    bool chunked = false;       // re-frame as chunks (else the payload leaves as it is)
    bool enforce = false;       // hold what the scan has not decided
    uint64_t hold_limit = 0;    // enforce: the whole body is held up to this many bytes
  };
  // `scan` may be null (no engine, fail open): then nothing is held.
  BodyRelay(const Options& options, dlp::MessageScan* scan);

  // The next payload bytes (de-chunked), in order: fed to the scan and kept until they
  // may leave.
  void Add(std::string_view payload);
  // Appends to `out` the wire bytes that may leave now (maybe none).
  void TakeReady(std::string* out);
  // The body ended and its verdict lets it go: appends every byte still held and, for a
  // chunked body, the terminating chunk.
  void TakeRest(std::string* out);

  uint64_t fed() const { return fed_; }
  // Payload bytes released so far (the framing not counted).
  uint64_t released() const { return released_; }
  // Bytes held back now.
  uint64_t held() const { return fed_ - released_; }
  // Enforce, past the hold limit: the bytes the scan has not decided outgrew the hold
  // limit too (a scan that cannot decide, e.g. a decoder pinned to the start of a long
  // document). The caller fails closed rather than hold without bound or let undecided
  // bytes go. (Values held for a threshold are bounded by the hold limit on their own.)
  bool overflowed() const {
    return streaming_ && scan_ != nullptr && fed_ - std::min(fed_, scan_->decided_offset()) > options_.hold_limit;
  }

 private:
  void Release(uint64_t n, std::string* out);

  const Options options_;
  dlp::MessageScan* scan_;
  HoldBuffer held_;  // payload [released_, fed_)
  uint64_t fed_ = 0;
  uint64_t released_ = 0;
  bool streaming_ = false;  // enforce: past the hold limit
};

// Chunked framing of `n` payload bytes: "<hex size>\r\n" (the data and "\r\n" follow).
void AppendChunkHeader(uint64_t n, std::string* out);

}  // namespace egressguard::mitm
