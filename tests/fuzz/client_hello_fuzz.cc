// Fuzzes the ClientHello parser: any bytes, any prefix; results must be consistent across prefixes.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "mitm/client_hello.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using egressguard::mitm::ClientHelloResult;
  using egressguard::mitm::ParseClientHello;
  std::string_view input(reinterpret_cast<const char*>(data), size);
  auto full = ParseClientHello(input);
  if (full.status == ClientHelloResult::Status::kParsed) {
    if (full.info.record_bytes > size) std::abort();
    // The hello is complete within record_bytes: parsing just that prefix agrees.
    auto exact = ParseClientHello(input.substr(0, full.info.record_bytes));
    if (exact.status != ClientHelloResult::Status::kParsed || exact.info.sni != full.info.sni) std::abort();
  }
  // A prefix of a stream never yields a different final answer than "need more" or the same kind.
  if (size > 1) {
    auto half = ParseClientHello(input.substr(0, size / 2));
    if (half.status == ClientHelloResult::Status::kParsed && full.status != ClientHelloResult::Status::kParsed) {
      std::abort();
    }
  }
  return 0;
}
