// Transparent and SNI listeners: the client did not ask the proxy for a destination, so
// it comes from the socket (the address the client dialled before iptables/nftables
// REDIRECT or TPROXY sent it here) or from the ClientHello's SNI. Everything after that
// (policy with the SNI, splice, bump with a verified upstream) is the CONNECT path.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "mitm/connection.h"
#include "mitm/original_dst.h"

namespace egressguard::mitm {

asio::awaitable<void> Connection::HandleRedirected() {
  Arm(shared_.config.handshake_timeout);
  if (listener_ == ListenerKind::kTransparent) {
    auto dst = OriginalDestination(client_.socket(), shared_.config.transparent_tproxy ? RedirectKind::kTproxy
                                                                                       : RedirectKind::kNat);
    error_code ec;
    auto local = Unmapped(client_.socket().local_endpoint(ec));
    std::string refusal;
    if (!dst.ok()) {
      refusal = fmt::format("no_original_destination: {}", std::string(dst.status().message()));
    } else if (!ec && *dst == local) {
      // Dialled the transparent port directly: relaying to "ourselves" would loop.
      refusal = "no_original_destination: connected to the transparent listener directly";
    }
    if (!refusal.empty()) {
      ReportRefusal(refusal);
      co_return;
    }
    original_dst_ = *dst;
    host_ = dst->address().to_string();
    port_ = dst->port();
  } else {
    port_ = shared_.config.sni_upstream_port;
  }
  std::string peeked = std::move(client_buf_);
  client_buf_.clear();
  co_await DispatchTls(std::move(peeked));
}

std::string Connection::TakeRedirectedDestination() {
  switch (listener_) {
    case ListenerKind::kExplicit:
      return "";
    case ListenerKind::kSni:
      if (sni_.empty()) return "no_sni: the SNI listener needs a server name in the ClientHello";
      host_ = sni_;
      return "";
    case ListenerKind::kTransparent:
      // The policy judges the name the client asked for; the upstream certificate is
      // verified against it (bump), and a splice checks that the name resolves to the
      // address the client dialled, so a forged SNI cannot smuggle traffic elsewhere.
      if (!sni_.empty()) host_ = sni_;
      return "";
  }
  return "";
}

asio::awaitable<bool> Connection::ConnectRedirected(bool splice) {
  std::string error;
  if (original_dst_) {
    const std::string address = original_dst_->address().to_string();
    if (splice && !sni_.empty()) {
      Arm(shared_.config.handshake_timeout);
      error_code ec;
      auto results = co_await resolver_.async_resolve(sni_, std::to_string(port_),
                                                      asio::redirect_error(asio::use_awaitable, ec));
      bool matches = false;
      if (!ec) {
        for (const auto& r : results) matches = matches || r.endpoint().address() == original_dst_->address();
      }
      if (!matches) {
        ReportRefusal(fmt::format("sni_mismatch: {} does not resolve to {}", RecordedHost(), address));
        co_return false;
      }
    }
    if (co_await ConnectUpstream(address, original_dst_->port(), error)) co_return true;
  } else if (co_await ConnectUpstream(host_, port_, error)) {
    co_return true;
  }
  auto v = NewVerdict("refuse");
  v.set_action(rules::v1::BLOCK);
  v.set_reason("upstream_unreachable: " + error);
  Report(std::move(v));
  co_return false;
}

}  // namespace egressguard::mitm
