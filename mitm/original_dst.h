#pragma once
// Where a transparently redirected connection was going. With iptables/nftables
// REDIRECT (or DNAT) the kernel's conntrack entry remembers it (SO_ORIGINAL_DST,
// IP6T_SO_ORIGINAL_DST); with TPROXY the socket itself is bound to it, so the local
// address is the original destination.

#include "absl/status/statusor.h"
#include "mitm/stream.h"

namespace egressguard::mitm {

enum class RedirectKind { kNat, kTproxy };

// IPv4 for a v4-mapped IPv6 endpoint (dual-stack listeners); others unchanged.
tcp::endpoint Unmapped(const tcp::endpoint& e);

// The destination the client dialled; always unmapped.
absl::StatusOr<tcp::endpoint> OriginalDestination(tcp::socket& socket, RedirectKind kind);

// IP_TRANSPARENT / IPV6_TRANSPARENT on a listener, so TPROXY can hand it connections
// addressed to other hosts (needs CAP_NET_ADMIN).
absl::Status SetTransparent(tcp::acceptor& acceptor, const tcp& protocol);

}  // namespace egressguard::mitm
