#pragma once
// Authority parsing for CONNECT targets and Host headers ("name:443", "[::1]:8443").

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace egressguard::mitm {

struct HostPort {
  std::string host;  // lower-cased name, or an IP literal without brackets
  uint16_t port = 0;
};

// Parses "host:port" or "[v6]:port"; `default_port` is used when the port is absent
// (0 makes the port mandatory). Refuses empty hosts, bad ports and stray characters.
absl::StatusOr<HostPort> ParseHostPort(std::string_view authority, uint16_t default_port = 0);

}  // namespace egressguard::mitm
