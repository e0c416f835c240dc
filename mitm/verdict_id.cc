#include "mitm/verdict_id.h"

#include <openssl/rand.h>

#include <array>
#include <atomic>
#include <cstring>
#include <random>

namespace egressguard::mitm {

std::string FormatUuid7(uint64_t unix_ms, uint64_t rand_a12, uint64_t rand_b62) {
  const uint64_t hi = ((unix_ms & 0xffffffffffffULL) << 16) | 0x7000ULL | (rand_a12 & 0x0fffULL);
  const uint64_t lo = 0x8000000000000000ULL | (rand_b62 & 0x3fffffffffffffffULL);
  // Written digit by digit: one id per verdict, and fmt's format-string parsing cost
  // more than the rest of the id.
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(36, '-');
  size_t pos = 0;
  auto put = [&](uint64_t bits, int nibbles) {
    for (int i = nibbles - 1; i >= 0; --i) out[pos++] = kHex[(bits >> (4 * i)) & 0xf];
  };
  put(hi >> 32, 8);
  ++pos;
  put((hi >> 16) & 0xffff, 4);
  ++pos;
  put(hi & 0xffff, 4);
  ++pos;
  put(lo >> 48, 4);
  ++pos;
  put(lo & 0xffffffffffffULL, 12);
  return out;
}

std::string NewVerdictId() {
  // Random bytes drawn 1 KiB at a time per thread: each RAND_bytes call also checks
  // for a fork (a getpid(2)), which showed at ten thousand verdicts a second.
  // egressguard never forks, so a drawn pool is never shared by two processes.
  thread_local std::array<unsigned char, 1024> pool{};
  thread_local size_t used = pool.size();
  uint64_t a = 0, b = 0;
  if (used + 16 > pool.size() && RAND_bytes(pool.data(), static_cast<int>(pool.size())) == 1) used = 0;
  if (used + 16 <= pool.size()) {
    std::memcpy(&a, pool.data() + used, 8);
    std::memcpy(&b, pool.data() + used + 8, 8);
    used += 16;
  } else {
    // The DRBG could not be seeded. Equal ids would make the store drop all but one
    // verdict as retries, so never fall back to a constant.
    static std::atomic<uint64_t> counter{0};
    std::random_device rd;
    a = (uint64_t{rd()} << 32) | rd();
    b = ((uint64_t{rd()} << 32) | rd()) ^ counter.fetch_add(1, std::memory_order_relaxed);
  }
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::system_clock::now().time_since_epoch());
  return FormatUuid7(static_cast<uint64_t>(ms.count()), a, b);
}

}  // namespace egressguard::mitm
