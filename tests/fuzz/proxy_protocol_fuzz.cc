// Fuzzes the PROXY v2 header parser: any bytes, any prefix. A parsed header lies within the
// input and the size bound; its prefixes need more; a refusal stays a refusal as bytes arrive.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "mitm/proxy_protocol.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using egressguard::mitm::ParseProxyHeaderV2;
  using Status = egressguard::mitm::ProxyHeaderResult::Status;
  std::string_view input(reinterpret_cast<const char*>(data), size);
  auto full = ParseProxyHeaderV2(input, 512);
  if (full.status == Status::kOk) {
    if (full.consumed < 16 || full.consumed > size || full.consumed > 512) std::abort();
    auto exact = ParseProxyHeaderV2(input.substr(0, full.consumed), 512);
    if (exact.status != Status::kOk || exact.consumed != full.consumed ||
        exact.header.SourceAddress() != full.header.SourceAddress()) {
      std::abort();
    }
    if (ParseProxyHeaderV2(input.substr(0, full.consumed - 1), 512).status != Status::kNeedMore) std::abort();
  }
  if (full.status == Status::kMalformed) {
    if (full.reason.empty()) std::abort();
    std::string more(input);
    more.append(64, '\0');
    if (ParseProxyHeaderV2(more, 512).status != Status::kMalformed) std::abort();
  }
  return 0;
}
