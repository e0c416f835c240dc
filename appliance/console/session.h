#pragma once
// Console sign-in without a password store: an administrator on the store host holds
// the console key (a 0600 file beside the store database) and signs a short-lived,
// one-time login token with it (`egressguard console login`). Opening the token's URL
// trades it for a session cookie signed with the same key. Every token is
// "<fields separated by ':'>:<hex HMAC-SHA256>" whose MAC input starts with its
// purpose ("login", "session", "csrf"), so one kind can never pass for another.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace egressguard::console {

enum class ConsoleRole { kOfficer, kAuditor };
const char* ConsoleRoleName(ConsoleRole role);
absl::StatusOr<ConsoleRole> ParseConsoleRole(std::string_view name);

// A user name is 1..64 of [A-Za-z0-9._@-]: it travels in tokens, cookies and audit
// lines without quoting.
bool ValidUserName(std::string_view name);

// What a verified token says.
struct TokenClaims {
  std::string user;
  ConsoleRole role = ConsoleRole::kAuditor;
  int64_t issued_us = 0;   // microseconds since the epoch
  int64_t expires_us = 0;
  std::string nonce;       // 32 hex digits; a login's nonce is spent on first use
};

// The console's own files live in one directory (store.console_dir; for a sqlite store
// by default the database's): `console.key`, 32 random bytes, created 0600 on first use
// by the store and refused when group or others may read it; and `console.revoked`,
// the revocations `console logout` appends, one "<user> <unix microseconds>" per line.
std::string ConsoleKeyPath(const std::string& dir);
std::string RevocationPath(const std::string& dir);
// The default directory for a store database: a sqlite file's folder; "" for a
// PostgreSQL URI (its replicas must be given one they share).
std::string DefaultConsoleDir(const std::string& database);
absl::StatusOr<std::string> LoadOrCreateConsoleKey(const std::string& path);
absl::StatusOr<std::string> LoadConsoleKey(const std::string& path);

class TokenSigner {
 public:
  explicit TokenSigner(std::string key) : key_(std::move(key)) {}

  std::string MakeLogin(const TokenClaims& claims) const { return Make("login", claims); }
  std::string MakeSession(const TokenClaims& claims) const { return Make("session", claims); }
  // The anti-CSRF token of a session: bound to its nonce, so it dies with it.
  std::string CsrfFor(const TokenClaims& session) const;

  // The claims when the MAC matches and `now_us` is before the expiry; otherwise why not.
  absl::StatusOr<TokenClaims> VerifyLogin(std::string_view token, int64_t now_us) const {
    return Verify("login", token, now_us);
  }
  absl::StatusOr<TokenClaims> VerifySession(std::string_view token, int64_t now_us) const {
    return Verify("session", token, now_us);
  }
  bool CheckCsrf(const TokenClaims& session, std::string_view token) const;

  static std::string NewNonce();

 private:
  std::string Make(std::string_view purpose, const TokenClaims& claims) const;
  absl::StatusOr<TokenClaims> Verify(std::string_view purpose, std::string_view token, int64_t now_us) const;
  std::string Mac(std::string_view purpose, std::string_view payload) const;

  std::string key_;
};

// Appends a revocation line for `user` at `now_us` (creates the file 0600).
absl::Status AppendRevocation(const std::string& path, const std::string& user, int64_t now_us);

// The value of cookie `name` in a Cookie header; nullopt when absent.
std::optional<std::string> CookieValue(std::string_view header, std::string_view name);

int64_t NowMicros();

}  // namespace egressguard::console
