#include "mitm/proxy_auth.h"

#include <crypt.h>
#include <fmt/format.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include <array>
#include <chrono>
#include <fstream>
#include <optional>

namespace egressguard::mitm {
namespace {

constexpr size_t kMaxUsersFileBytes = 1 << 20;
constexpr size_t kMaxHeaderBytes = 4096;
constexpr auto kRememberFor = std::chrono::minutes(5);
constexpr size_t kRememberedPerWorker = 4096;

bool StrongHash(std::string_view hash) {
  for (std::string_view prefix : {"$y$", "$gy$", "$2b$", "$2y$", "$6$", "$7$"}) {
    if (hash.substr(0, prefix.size()) == prefix) return true;
  }
  return false;
}

std::optional<std::string> DecodeBase64(std::string_view in) {
  if (in.empty() || in.size() % 4 != 0 || in.size() > kMaxHeaderBytes) return std::nullopt;
  std::string out(in.size() / 4 * 3, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()), reinterpret_cast<const unsigned char*>(in.data()),
                          static_cast<int>(in.size()));
  if (n < 0) return std::nullopt;
  size_t pad = (in.back() == '=') + (in.size() > 1 && in[in.size() - 2] == '=');
  out.resize(static_cast<size_t>(n) - pad);
  return out;
}

// Verified credentials, per worker thread: key is SHA-256 of the header value and the
// users object (so a reloaded file starts fresh), value the user and when it expires.
struct Remembered {
  std::string user;
  std::chrono::steady_clock::time_point until;
};
thread_local std::unordered_map<std::string, Remembered> tls_remembered;

std::string CacheKey(const void* owner, std::string_view header) {
  std::array<unsigned char, SHA256_DIGEST_LENGTH> md{};
  SHA256(reinterpret_cast<const unsigned char*>(header.data()), header.size(), md.data());
  return fmt::format("{}:{}", owner, std::string_view(reinterpret_cast<const char*>(md.data()), md.size()));
}

}  // namespace

absl::StatusOr<std::shared_ptr<const ProxyAuth>> ProxyAuth::Load(const std::string& users_file, std::string realm) {
  std::ifstream in(users_file);
  if (!in) return absl::NotFoundError(fmt::format("proxy auth users file {}: cannot open", users_file));
  auto auth = std::make_shared<ProxyAuth>();
  std::string line;
  size_t total = 0;
  for (int number = 1; std::getline(in, line); ++number) {
    total += line.size() + 1;
    if (total > kMaxUsersFileBytes) {
      return absl::InvalidArgumentError(fmt::format("{}: larger than {} bytes", users_file, kMaxUsersFileBytes));
    }
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || line[0] == '#') continue;
    auto colon = line.find(':');
    if (colon == 0 || colon == std::string::npos) {
      return absl::InvalidArgumentError(fmt::format("{}:{}: expected user:hash", users_file, number));
    }
    std::string user = line.substr(0, colon);
    std::string hash = line.substr(colon + 1);
    if (!StrongHash(hash)) {
      return absl::InvalidArgumentError(fmt::format(
          "{}:{}: user {}: the hash must be yescrypt ($y$), bcrypt ($2b$) or SHA-512-crypt ($6$); "
          "make one with `openssl passwd -6` or `mkpasswd`",
          users_file, number, user));
    }
    if (!auth->users_.emplace(std::move(user), std::move(hash)).second) {
      return absl::InvalidArgumentError(fmt::format("{}:{}: duplicate user", users_file, number));
    }
  }
  if (auth->users_.empty()) return absl::InvalidArgumentError(fmt::format("{}: no users", users_file));
  std::string quoted;
  for (char c : realm) {
    if (c == '"' || c == '\\') quoted += '\\';
    if (static_cast<unsigned char>(c) >= 0x20 && c != 0x7f) quoted += c;
  }
  auth->challenge_ = fmt::format("Basic realm=\"{}\", charset=\"UTF-8\"", quoted);
  return std::shared_ptr<const ProxyAuth>(std::move(auth));
}

std::optional<std::string> ProxyAuth::Check(std::string_view header) const {
  if (header.size() > kMaxHeaderBytes) return std::nullopt;
  constexpr std::string_view kBasic = "basic ";
  if (header.size() <= kBasic.size() || header[kBasic.size() - 1] != ' ') return std::nullopt;
  for (size_t i = 0; i + 1 < kBasic.size(); ++i) {
    if ((header[i] | 0x20) != kBasic[i]) return std::nullopt;
  }
  std::string_view token = header.substr(kBasic.size());
  while (!token.empty() && token.front() == ' ') token.remove_prefix(1);
  while (!token.empty() && token.back() == ' ') token.remove_suffix(1);

  const auto now = std::chrono::steady_clock::now();
  const std::string key = CacheKey(this, token);
  if (auto it = tls_remembered.find(key); it != tls_remembered.end()) {
    if (it->second.until > now) return it->second.user;
    tls_remembered.erase(it);
  }
  auto decoded = DecodeBase64(token);
  if (!decoded) return std::nullopt;
  auto colon = decoded->find(':');
  if (colon == std::string::npos) return std::nullopt;
  std::string user = decoded->substr(0, colon);
  std::string password = decoded->substr(colon + 1);
  OPENSSL_cleanse(decoded->data(), decoded->size());
  auto it = users_.find(user);
  // An unknown user costs no hash; the timing difference reveals only that the name is
  // not configured, which Basic auth over a cluster-internal hop accepts.
  bool ok = false;
  if (it != users_.end()) {
    crypt_data data{};
    const char* out = crypt_r(password.c_str(), it->second.c_str(), &data);
    ok = out != nullptr && out[0] != '*' && std::string_view(out).size() == it->second.size() &&
         CRYPTO_memcmp(out, it->second.data(), it->second.size()) == 0;
    OPENSSL_cleanse(&data, sizeof(data));
  }
  OPENSSL_cleanse(password.data(), password.size());
  if (!ok) return std::nullopt;
  if (tls_remembered.size() >= kRememberedPerWorker) tls_remembered.clear();
  tls_remembered[key] = Remembered{user, now + kRememberFor};
  return user;
}

}  // namespace egressguard::mitm
