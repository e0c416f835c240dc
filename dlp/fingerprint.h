#pragma once
// Keyed fingerprints of matched values: the same value correlates across verdicts
// without being stored. HMAC-SHA256 via OpenSSL.

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace egressguard::dlp {

using Digest = std::array<uint8_t, 32>;

Digest HmacSha256(std::string_view key, std::string_view data);
std::string HexDigest(const Digest& d);
// 32 random bytes (OpenSSL RAND_bytes) for a process-local key.
std::string RandomKey();

}  // namespace egressguard::dlp
