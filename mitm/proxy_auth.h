#pragma once
// Optional proxy authentication (RFC 7235 Basic over Proxy-Authorization), off unless a
// users file is configured. The file is htpasswd-style, one `user:hash` per line, with
// hashes libcrypt verifies: yescrypt ($y$, `mkpasswd`), bcrypt ($2b$, `htpasswd -B`) or
// SHA-512-crypt ($6$, `openssl passwd -6`). Plaintext or unsalted hashes are refused at
// load. A verified credential is remembered per worker thread for a few minutes, so the
// deliberately slow hash runs once per client, not once per request.

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "absl/status/statusor.h"

namespace egressguard::mitm {

class ProxyAuth {
 public:
  static absl::StatusOr<std::shared_ptr<const ProxyAuth>> Load(const std::string& users_file, std::string realm);

  // `header` is the Proxy-Authorization value (may be empty). Returns the user name when
  // it carries valid Basic credentials, else nullopt.
  std::optional<std::string> Check(std::string_view header) const;

  // The Proxy-Authenticate challenge for a 407.
  const std::string& challenge() const { return challenge_; }
  size_t users() const { return users_.size(); }

 private:
  std::unordered_map<std::string, std::string> users_;  // user -> crypt hash
  std::string challenge_;
};

}  // namespace egressguard::mitm
