#include "mitm/grpc_frames.h"

#include <algorithm>

namespace egressguard::mitm::grpc {

MessageReader::Event MessageReader::Next(std::string_view input) {
  Event e;
  switch (state_) {
    case State::kError:
      e.kind = Event::Kind::kError;
      return e;
    case State::kEnd:
      state_ = State::kPrefix;
      e.kind = Event::Kind::kEnd;
      return e;
    case State::kPrefix: {
      size_t take = std::min(kPrefixBytes - prefix_len_, input.size());
      std::copy_n(input.data(), take, prefix_ + prefix_len_);
      prefix_len_ += take;
      e.consumed = take;
      if (prefix_len_ < kPrefixBytes) return e;  // kNeedMore
      auto flag = static_cast<uint8_t>(prefix_[0]);
      if (flag > 1) {
        state_ = State::kError;
        e.kind = Event::Kind::kError;
        return e;
      }
      e.kind = Event::Kind::kBegin;
      e.compressed = flag == 1;
      e.length = (uint32_t{static_cast<uint8_t>(prefix_[1])} << 24) | (uint32_t{static_cast<uint8_t>(prefix_[2])} << 16) |
                 (uint32_t{static_cast<uint8_t>(prefix_[3])} << 8) | uint32_t{static_cast<uint8_t>(prefix_[4])};
      e.prefix = std::string_view(prefix_, kPrefixBytes);
      prefix_len_ = 0;
      remaining_ = e.length;
      state_ = remaining_ == 0 ? State::kEnd : State::kPayload;
      return e;
    }
    case State::kPayload: {
      size_t take = std::min<size_t>(remaining_, input.size());
      if (take == 0) return e;  // kNeedMore
      e.kind = Event::Kind::kPayload;
      e.payload = input.substr(0, take);
      e.consumed = take;
      remaining_ -= static_cast<uint32_t>(take);
      if (remaining_ == 0) state_ = State::kEnd;
      return e;
    }
  }
  return e;
}

}  // namespace egressguard::mitm::grpc
