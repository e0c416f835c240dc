#pragma once
// The appliance's gRPC channel to the compliance store (reporter and rule watcher):
// store::MakeChannel's transport security (mutual TLS, plaintext on loopback only) plus
// a bounded reconnect backoff. gRPC's default backs off up to 120 s between connection
// attempts, so after a long store outage the appliance could stay disconnected for
// minutes after the store is back while the spool keeps growing; with these arguments
// the next attempt is at most `max_backoff` (plus gRPC's 20% jitter) away.

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "appliance/store/api_tls.h"

namespace egressguard::reporter {

// Bounds of reporter.reconnect_backoff_max_ms (the config, the flag, the options).
inline constexpr std::chrono::milliseconds kMinReconnectBackoff{100};
inline constexpr std::chrono::milliseconds kMaxReconnectBackoff{120'000};
inline constexpr std::chrono::milliseconds kDefaultReconnectBackoff{2000};

// GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS = min(1 s, max_backoff);
// GRPC_ARG_MAX_RECONNECT_BACKOFF_MS = max_backoff;
// GRPC_ARG_MIN_RECONNECT_BACKOFF_MS (in gRPC core: the least time one connection attempt,
// TCP + TLS, is given) = max_backoff clamped to 5..20 s, so a slow handshake is not cut
// short over and over.
grpc::ChannelArguments ReconnectArguments(std::chrono::milliseconds max_backoff);

// INVALID_ARGUMENT for a backoff outside kMinReconnectBackoff..kMaxReconnectBackoff, or
// what store::MakeChannel refuses (plaintext off loopback, unreadable PEM files).
absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeStoreChannel(const std::string& address, const store::ApiTls& tls,
                                                                std::chrono::milliseconds max_backoff);

// The pause of a retry loop (reporter, rule watcher) after a failed stream: up to
// `pause`, but over as soon as the channel reconnects (it was not READY when the pause
// began), so the next stream starts within moments of the store answering again rather
// than after the rest of our own backoff. When the channel was READY (the store
// answered and the stream failed anyway) the whole pause is kept. `stopping` is polled
// every 100 ms.
void PauseBeforeRetry(grpc::Channel& channel, std::chrono::milliseconds pause, const std::function<bool()>& stopping);

}  // namespace egressguard::reporter
