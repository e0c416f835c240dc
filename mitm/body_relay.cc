#include "mitm/body_relay.h"

#include <algorithm>

namespace egressguard::mitm {

void AppendChunkHeader(uint64_t n, std::string* out) {
  static constexpr char kHex[] = "0123456789abcdef";
  char buf[16];
  size_t i = sizeof(buf);
  do {
    buf[--i] = kHex[n & 15];
    n >>= 4;
  } while (n != 0);
  out->append(buf + i, sizeof(buf) - i);
  out->append("\r\n");
}

BodyRelay::BodyRelay(const Options& options, dlp::MessageScan* scan) : options_(options), scan_(scan) {}

void BodyRelay::Add(std::string_view payload) {
  if (payload.empty()) return;
  if (scan_ != nullptr) scan_->Feed(payload);
  held_.Append(payload);
  fed_ += payload.size();
}

void BodyRelay::TakeReady(std::string* out) {
  if (!options_.enforce || scan_ == nullptr) {
    Release(held(), out);
    return;
  }
  if (!streaming_) {
    if (fed_ <= options_.hold_limit) return;
    streaming_ = true;  // from here on each byte leaves once the scan has decided it
  }
  // Values counted toward a bulk threshold are held too, within the hold limit.
  const uint64_t until = std::min(dlp::HoldFrom(*scan_, fed_, options_.hold_limit), fed_);
  if (until > released_) Release(until - released_, out);
}

void BodyRelay::TakeRest(std::string* out) {
  Release(held(), out);
  if (options_.chunked) out->append("0\r\n\r\n");
}

void BodyRelay::Release(uint64_t n, std::string* out) {
  if (n == 0) return;
  if (options_.chunked) AppendChunkHeader(n, out);
  out->append(held_.view().substr(0, n));
  if (options_.chunked) out->append("\r\n");
  held_.Drop(n);
  released_ += n;
}

}  // namespace egressguard::mitm
