#include "mitm/host_port.h"

#include <cctype>
#include <charconv>

#include <fmt/format.h>

namespace egressguard::mitm {
namespace {

bool HostCharOk(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == '_';
}

}  // namespace

absl::StatusOr<HostPort> ParseHostPort(std::string_view authority, uint16_t default_port) {
  HostPort out;
  std::string_view host;
  std::string_view port;
  if (authority.empty() || authority.size() > 261) {
    return absl::InvalidArgumentError("authority is empty or longer than 261 bytes");
  }
  if (authority.front() == '[') {
    auto close = authority.find(']');
    if (close == std::string_view::npos) return absl::InvalidArgumentError("unterminated [ in authority");
    host = authority.substr(1, close - 1);
    auto rest = authority.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return absl::InvalidArgumentError("junk after ] in authority");
      port = rest.substr(1);
    }
    for (char c : host) {
      if (!std::isxdigit(static_cast<unsigned char>(c)) && c != ':' && c != '.') {
        return absl::InvalidArgumentError("bad character in IPv6 literal");
      }
    }
  } else {
    auto colon = authority.rfind(':');
    host = authority.substr(0, colon);
    if (colon != std::string_view::npos) port = authority.substr(colon + 1);
    for (char c : host) {
      if (!HostCharOk(c)) return absl::InvalidArgumentError("bad character in host name");
    }
  }
  if (host.empty()) return absl::InvalidArgumentError("empty host");
  out.host.assign(host);
  for (char& c : out.host) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));

  if (port.empty()) {
    if (default_port == 0) return absl::InvalidArgumentError("port missing");
    out.port = default_port;
    return out;
  }
  unsigned value = 0;
  auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (ec != std::errc() || ptr != port.data() + port.size() || value == 0 || value > 65535) {
    return absl::InvalidArgumentError(fmt::format("bad port '{}'", port));
  }
  out.port = static_cast<uint16_t>(value);
  return out;
}

}  // namespace egressguard::mitm
