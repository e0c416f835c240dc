#include "dlp/fingerprint.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <cstdlib>
#include <memory>

namespace egressguard::dlp {

namespace {

constexpr size_t kBlock = 64;  // SHA-256 block size

struct MdCtxDeleter {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};

// SHA-256 fetched once: HMAC(EVP_sha256(), ...) looks the algorithm up in the provider
// on every call, several times the cost of hashing a short value.
const EVP_MD* Sha256() {
  static EVP_MD* const md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  return md;
}

bool Hash(EVP_MD_CTX* ctx, std::string_view a, std::string_view b, unsigned char* out) {
  unsigned int len = 0;
  return EVP_DigestInit_ex2(ctx, Sha256(), nullptr) == 1 && EVP_DigestUpdate(ctx, a.data(), a.size()) == 1 &&
         EVP_DigestUpdate(ctx, b.data(), b.size()) == 1 && EVP_DigestFinal_ex(ctx, out, &len) == 1 && len == 32;
}

}  // namespace

// HMAC (RFC 2104) over SHA-256.
Digest HmacSha256(std::string_view key, std::string_view data) {
  thread_local std::unique_ptr<EVP_MD_CTX, MdCtxDeleter> ctx(EVP_MD_CTX_new());
  Digest out{};
  if (Sha256() == nullptr || ctx == nullptr) std::abort();  // no SHA-256: no safe fingerprints
  unsigned char k[kBlock] = {};
  if (key.size() > kBlock) {
    if (!Hash(ctx.get(), key, {}, k)) std::abort();
  } else {
    std::copy(key.begin(), key.end(), k);
  }
  char pad[kBlock];
  for (size_t i = 0; i < kBlock; ++i) pad[i] = static_cast<char>(k[i] ^ 0x36);
  unsigned char inner[32];
  if (!Hash(ctx.get(), std::string_view(pad, kBlock), data, inner)) std::abort();
  for (size_t i = 0; i < kBlock; ++i) pad[i] = static_cast<char>(k[i] ^ 0x5c);
  if (!Hash(ctx.get(), std::string_view(pad, kBlock), std::string_view(reinterpret_cast<const char*>(inner), 32),
            out.data())) {
    std::abort();
  }
  return out;
}

std::string HexDigest(const Digest& d) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string s;
  s.reserve(d.size() * 2);
  for (uint8_t b : d) {
    s.push_back(kHex[b >> 4]);
    s.push_back(kHex[b & 15]);
  }
  return s;
}

std::string RandomKey() {
  std::string key(32, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(key.data()), static_cast<int>(key.size())) != 1) {
    std::abort();  // no randomness means no safe process: refuse to go on
  }
  return key;
}

}  // namespace egressguard::dlp
