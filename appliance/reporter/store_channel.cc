#include "appliance/reporter/store_channel.h"

#include <fmt/format.h>
#include <grpcpp/security/credentials.h>

#include <algorithm>

namespace egressguard::reporter {

grpc::ChannelArguments ReconnectArguments(std::chrono::milliseconds max_backoff) {
  using std::chrono::milliseconds;
  const auto max = std::clamp(max_backoff, kMinReconnectBackoff, kMaxReconnectBackoff);
  const auto initial = std::min(max, milliseconds(1000));
  const auto min_connect = std::clamp(max, milliseconds(5000), milliseconds(20'000));
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, static_cast<int>(initial.count()));
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, static_cast<int>(min_connect.count()));
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, static_cast<int>(max.count()));
  return args;
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeStoreChannel(const std::string& address, const store::ApiTls& tls,
                                                                std::chrono::milliseconds max_backoff) {
  if (max_backoff < kMinReconnectBackoff || max_backoff > kMaxReconnectBackoff) {
    return absl::InvalidArgumentError(fmt::format("reconnect backoff must be between {} and {} ms, got {}",
                                                  kMinReconnectBackoff.count(), kMaxReconnectBackoff.count(),
                                                  max_backoff.count()));
  }
  return store::MakeChannel(address, tls, ReconnectArguments(max_backoff));
}

void PauseBeforeRetry(grpc::Channel& channel, std::chrono::milliseconds pause, const std::function<bool()>& stopping) {
  using Clock = std::chrono::system_clock;  // gRPC deadlines are system_clock time points
  const auto end = Clock::now() + pause;
  const bool was_ready = channel.GetState(false) == GRPC_CHANNEL_READY;
  while (!stopping()) {
    const auto now = Clock::now();
    if (now >= end) return;
    // try_to_connect: an IDLE channel starts connecting (gRPC's own backoff paces it).
    const grpc_connectivity_state state = channel.GetState(true);
    if (!was_ready && state == GRPC_CHANNEL_READY) return;
    channel.WaitForStateChange(state, std::min(end, now + std::chrono::milliseconds(100)));
  }
}

}  // namespace egressguard::reporter
