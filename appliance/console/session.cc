#include "appliance/console/session.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

#include <charconv>
#include <chrono>
#include <filesystem>
#include <vector>

#include "ca/key_file.h"

namespace egressguard::console {

namespace {

constexpr size_t kKeyBytes = 32;
constexpr size_t kMaxTokenBytes = 512;  // far above any real token; bounds the parse

std::string Hex(const unsigned char* data, size_t n) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(n * 2);
  for (size_t i = 0; i < n; ++i) {
    out += kDigits[data[i] >> 4];
    out += kDigits[data[i] & 15];
  }
  return out;
}

std::vector<std::string_view> Split(std::string_view s, char sep) {
  std::vector<std::string_view> parts;
  for (;;) {
    auto at = s.find(sep);
    parts.push_back(s.substr(0, at));
    if (at == std::string_view::npos) return parts;
    s.remove_prefix(at + 1);
  }
}

std::optional<int64_t> ParseInt(std::string_view s) {
  int64_t v = 0;
  if (s.empty() || s.size() > 19) return std::nullopt;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || v < 0) return std::nullopt;
  return v;
}

bool IsHex(std::string_view s) {
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

absl::StatusOr<std::string> ReadKey(const std::string& path) {
  if (auto st = ca::CheckPrivateKeyPermissions(path); !st.ok()) return st;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return absl::NotFoundError(fmt::format("cannot read the console key {}", path));
  std::string key(kKeyBytes + 1, '\0');
  ssize_t n = ::read(fd, key.data(), key.size());
  ::close(fd);
  if (n != static_cast<ssize_t>(kKeyBytes)) {
    return absl::InvalidArgumentError(fmt::format("the console key {} is not {} bytes", path, kKeyBytes));
  }
  key.resize(kKeyBytes);
  return key;
}

}  // namespace

const char* ConsoleRoleName(ConsoleRole role) { return role == ConsoleRole::kOfficer ? "officer" : "auditor"; }

absl::StatusOr<ConsoleRole> ParseConsoleRole(std::string_view name) {
  if (name == "officer") return ConsoleRole::kOfficer;
  if (name == "auditor") return ConsoleRole::kAuditor;
  return absl::InvalidArgumentError(fmt::format("unknown console role '{}': officer or auditor", name));
}

bool ValidUserName(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                    c == '_' || c == '@' || c == '-';
    if (!ok) return false;
  }
  return true;
}

std::string ConsoleKeyPath(const std::string& dir) { return (std::filesystem::path(dir) / "console.key").string(); }

std::string RevocationPath(const std::string& dir) {
  return (std::filesystem::path(dir) / "console.revoked").string();
}

std::string DefaultConsoleDir(const std::string& database) {
  if (database.rfind("postgresql://", 0) == 0 || database.rfind("postgres://", 0) == 0 ||
      database.find('=') != std::string::npos) {  // a URI or key=value conninfo
    return "";
  }
  const std::string dir = std::filesystem::path(database).parent_path().string();
  return dir.empty() ? "." : dir;
}

absl::StatusOr<std::string> LoadConsoleKey(const std::string& path) { return ReadKey(path); }

absl::StatusOr<std::string> LoadOrCreateConsoleKey(const std::string& path) {
  // O_EXCL: two stores starting at once never end up with different keys on disk.
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    if (errno == EEXIST) return ReadKey(path);
    return absl::UnavailableError(fmt::format("cannot create the console key {}", path));
  }
  std::string key(kKeyBytes, '\0');
  const bool made = RAND_bytes(reinterpret_cast<unsigned char*>(key.data()), kKeyBytes) == 1;
  const bool written = made && ::write(fd, key.data(), key.size()) == static_cast<ssize_t>(key.size()) &&
                       ::fsync(fd) == 0;
  ::close(fd);
  if (!written) {
    ::unlink(path.c_str());
    return absl::UnavailableError(fmt::format("cannot write the console key {}", path));
  }
  return key;
}

std::string TokenSigner::NewNonce() {
  unsigned char raw[16];
  if (RAND_bytes(raw, sizeof raw) != 1) std::abort();  // no randomness: nothing safe to hand out
  return Hex(raw, sizeof raw);
}

std::string TokenSigner::Mac(std::string_view purpose, std::string_view payload) const {
  std::string input = fmt::format("{}|{}", purpose, payload);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key_.data(), static_cast<int>(key_.size()), reinterpret_cast<const unsigned char*>(input.data()),
       input.size(), mac, &len);
  return Hex(mac, len);
}

std::string TokenSigner::Make(std::string_view purpose, const TokenClaims& c) const {
  std::string payload = fmt::format("v1:{}:{}:{}:{}:{}", c.user, ConsoleRoleName(c.role), c.issued_us, c.expires_us,
                                    c.nonce);
  return payload + ":" + Mac(purpose, payload);
}

absl::StatusOr<TokenClaims> TokenSigner::Verify(std::string_view purpose, std::string_view token,
                                                int64_t now_us) const {
  if (token.size() > kMaxTokenBytes) return absl::InvalidArgumentError("token too long");
  auto parts = Split(token, ':');
  if (parts.size() != 7 || parts[0] != "v1") return absl::InvalidArgumentError("malformed token");
  const std::string_view mac = parts[6];
  const std::string_view payload = token.substr(0, token.size() - mac.size() - 1);
  const std::string want = Mac(purpose, payload);
  if (mac.size() != want.size() || CRYPTO_memcmp(mac.data(), want.data(), want.size()) != 0) {
    return absl::UnauthenticatedError("token signature does not match");
  }
  TokenClaims c;
  c.user = std::string(parts[1]);
  auto role = ParseConsoleRole(parts[2]);
  auto issued = ParseInt(parts[3]);
  auto expires = ParseInt(parts[4]);
  if (!ValidUserName(c.user) || !role.ok() || !issued || !expires || parts[5].size() != 32 || !IsHex(parts[5])) {
    return absl::InvalidArgumentError("malformed token");
  }
  c.role = *role;
  c.issued_us = *issued;
  c.expires_us = *expires;
  c.nonce = std::string(parts[5]);
  if (now_us >= c.expires_us) return absl::UnauthenticatedError("token expired");
  return c;
}

std::string TokenSigner::CsrfFor(const TokenClaims& session) const { return Mac("csrf", session.nonce); }

bool TokenSigner::CheckCsrf(const TokenClaims& session, std::string_view token) const {
  const std::string want = CsrfFor(session);
  return token.size() == want.size() && CRYPTO_memcmp(token.data(), want.data(), want.size()) == 0;
}

absl::Status AppendRevocation(const std::string& path, const std::string& user, int64_t now_us) {
  if (!ValidUserName(user)) return absl::InvalidArgumentError(fmt::format("invalid user name '{}'", user));
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) return absl::UnavailableError(fmt::format("cannot open {}", path));
  const std::string line = fmt::format("{} {}\n", user, now_us);
  const bool ok = ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size()) && ::fsync(fd) == 0;
  ::close(fd);
  return ok ? absl::OkStatus() : absl::UnavailableError(fmt::format("cannot write {}", path));
}

std::optional<std::string> CookieValue(std::string_view header, std::string_view name) {
  for (std::string_view part : Split(header, ';')) {
    while (!part.empty() && part.front() == ' ') part.remove_prefix(1);
    if (part.size() > name.size() && part.substr(0, name.size()) == name && part[name.size()] == '=') {
      return std::string(part.substr(name.size() + 1));
    }
  }
  return std::nullopt;
}

int64_t NowMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace egressguard::console
