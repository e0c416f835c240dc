#pragma once
// gRPC's length-prefixed messages (gRPC over HTTP/2: a 1-byte compressed flag, a 4-byte
// big-endian length, then the message) read incrementally from a stream's DATA, however
// the frames split them. Internal to mitm/.

#include <cstdint>
#include <string>
#include <string_view>

namespace egressguard::mitm::grpc {

// The 5-byte prefix of every message.
inline constexpr size_t kPrefixBytes = 5;

class MessageReader {
 public:
  struct Event {
    enum class Kind { kNeedMore, kBegin, kPayload, kEnd, kError } kind = Kind::kNeedMore;
    size_t consumed = 0;        // input bytes this event used
    std::string_view payload;   // kPayload: message bytes (a view into the input)
    bool compressed = false;    // kBegin
    uint32_t length = 0;        // kBegin
    std::string_view prefix;    // kBegin: the 5 prefix bytes as received
  };

  // Call repeatedly with the unconsumed rest of the input, until kNeedMore. A message of
  // length 0 is kBegin then kEnd with no payload. kError: a flag byte other than 0 or 1
  // (the stream is not gRPC framing); the reader stays in error.
  Event Next(std::string_view input);
  // True between messages (no prefix byte of the next one read yet).
  bool at_boundary() const { return state_ == State::kPrefix && prefix_len_ == 0; }
  bool failed() const { return state_ == State::kError; }

 private:
  enum class State { kPrefix, kPayload, kEnd, kError };
  State state_ = State::kPrefix;
  char prefix_[kPrefixBytes] = {};
  size_t prefix_len_ = 0;
  uint32_t remaining_ = 0;
};

}  // namespace egressguard::mitm::grpc
