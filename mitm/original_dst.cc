#include "mitm/original_dst.h"

#include <fmt/format.h>
#include <linux/netfilter_ipv4.h>
#include <linux/netfilter_ipv6/ip6_tables.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

namespace egressguard::mitm {

tcp::endpoint Unmapped(const tcp::endpoint& e) {
  const auto a = e.address();
  if (a.is_v6() && a.to_v6().is_v4_mapped()) {
    return tcp::endpoint(asio::ip::make_address_v4(asio::ip::v4_mapped, a.to_v6()), e.port());
  }
  return e;
}

absl::StatusOr<tcp::endpoint> OriginalDestination(tcp::socket& socket, RedirectKind kind) {
  error_code ec;
  tcp::endpoint local = Unmapped(socket.local_endpoint(ec));
  if (ec) return absl::UnavailableError(fmt::format("local address: {}", ec.message()));
  if (kind == RedirectKind::kTproxy) return local;

  sockaddr_storage addr{};
  socklen_t len = sizeof(addr);
  // A dual-stack listener's IPv4 clients (v4-mapped) have IPv4 conntrack entries.
  const bool v6 = local.address().is_v6();
  int rc = v6 ? getsockopt(socket.native_handle(), SOL_IPV6, IP6T_SO_ORIGINAL_DST, &addr, &len)
              : getsockopt(socket.native_handle(), SOL_IP, SO_ORIGINAL_DST, &addr, &len);
  if (rc != 0) {
    // ENOENT: no conntrack entry, i.e. the client connected to the listener directly.
    return absl::FailedPreconditionError(
        fmt::format("no original destination (not a redirected connection?): {}", std::strerror(errno)));
  }
  if (addr.ss_family == AF_INET && len >= sizeof(sockaddr_in)) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&addr);
    return tcp::endpoint(asio::ip::address_v4(ntohl(in->sin_addr.s_addr)), ntohs(in->sin_port));
  }
  if (addr.ss_family == AF_INET6 && len >= sizeof(sockaddr_in6)) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&addr);
    asio::ip::address_v6::bytes_type bytes;
    std::memcpy(bytes.data(), in6->sin6_addr.s6_addr, bytes.size());
    return tcp::endpoint(asio::ip::address_v6(bytes, in6->sin6_scope_id), ntohs(in6->sin6_port));
  }
  return absl::InternalError(fmt::format("original destination of unknown family {}", addr.ss_family));
}

absl::Status SetTransparent(tcp::acceptor& acceptor, const tcp& protocol) {
  const int one = 1;
  const bool v6 = protocol == tcp::v6();
  int rc = v6 ? setsockopt(acceptor.native_handle(), SOL_IPV6, IPV6_TRANSPARENT, &one, sizeof(one))
              : setsockopt(acceptor.native_handle(), SOL_IP, IP_TRANSPARENT, &one, sizeof(one));
  if (rc != 0) {
    return absl::PermissionDeniedError(
        fmt::format("cannot set IP_TRANSPARENT for TPROXY (needs CAP_NET_ADMIN): {}", std::strerror(errno)));
  }
  return absl::OkStatus();
}

}  // namespace egressguard::mitm
