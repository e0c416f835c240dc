#pragma once
// Every setting of the proxy, as plain data: the CLI, a YAML config file and
// `egressguard run` fill this same struct, then hand it to mitm::ProxyServer.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "mitm/policy.h"

namespace egressguard::mitm {

enum class EnforceMode { kMonitor, kEnforce };

// How a listener learns the destination: from a CONNECT/absolute URL (explicit), from
// the socket's original destination after an iptables/nftables REDIRECT or TPROXY
// (transparent), or from the ClientHello's SNI and a fixed port (sni).
enum class ListenerKind { kExplicit, kTransparent, kSni };

// HTTP/2 on the client leg: limits against the known attacks (rapid reset, CONTINUATION
// flood, HPACK bombs, stream and control-frame floods). Past one, the connection gets
// GOAWAY(ENHANCE_YOUR_CALM) and a verdict; other connections are not affected.
struct H2Limits {
  uint32_t max_concurrent_streams = 100;        // SETTINGS_MAX_CONCURRENT_STREAMS; opening more is abuse
  size_t max_header_list_bytes = 64 * 1024;      // decoded header block (RFC 9113 6.5.2 sizing)
  uint32_t max_continuation_frames = 32;         // CONTINUATION frames after one HEADERS
  uint32_t max_resets_per_second = 100;          // client RST_STREAMs (token bucket, burst 2x)
  uint32_t max_control_frames_per_second = 1000; // PING, SETTINGS, PRIORITY, empty DATA (burst 2x);
                                                 // WINDOW_UPDATEs: 10 per DATA frame sent, plus 2x this
  uint64_t max_held_bytes = 64ull << 20;         // request bytes held (or queued) per connection
};

struct ProxyConfig {
  std::string listen_address = "127.0.0.1";
  uint16_t listen_port = 3128;  // 0: pick a free port (tests)
  int workers = 0;              // 0: one per core
  // Extra listeners on listen_address; 0 = off (ports are not shared with listen_port).
  uint16_t transparent_port = 0;
  bool transparent_tproxy = false;  // TPROXY (IP_TRANSPARENT, local address = destination) instead of REDIRECT
  uint16_t sni_port = 0;
  uint16_t sni_upstream_port = 443;  // SNI listener: the origin port it connects to

  // Upstream trust: the system store plus `upstream_ca_file`, or only the file.
  std::string upstream_ca_file;
  bool upstream_ca_only = false;

  PolicyConfig policy;
  // Proxy authentication (explicit listener): off when empty. See mitm/proxy_auth.h.
  std::string auth_users_file;
  std::string auth_realm = "egressguard";
  EnforceMode mode = EnforceMode::kMonitor;
  bool fail_open = false;          // scan impossible (no rules): forward anyway (default: refuse)
  bool scan_responses = false;     // response bodies too (reported, never blocked)
  bool refuse_non_tls = true;      // non-TLS bytes after CONNECT: refuse (else relay raw, scanned)
  uint64_t hold_limit = 16ull << 20;  // enforce: request body held until scanned, up to this

  // Limits.
  size_t max_connections = 10000;
  size_t max_head_bytes = 64 * 1024;
  size_t max_header_count = 100;
  size_t relay_buffer_bytes = 64 * 1024;  // per direction; reads pause until it drains
  H2Limits h2;

  // Timeouts.
  std::chrono::milliseconds header_timeout{10000};     // whole request head, incl. CONNECT
  std::chrono::milliseconds handshake_timeout{10000};  // ClientHello, upstream connect + TLS, client TLS
  std::chrono::milliseconds idle_timeout{60000};       // no byte either way
  std::chrono::milliseconds drain_timeout{10000};      // SIGTERM: in-flight transactions finish

  std::string appliance_name;  // verdict.appliance

  // Per-workload accounting: the client's identity (verdict.workload) is the first
  // mapping whose CIDRs contain the client address; with proxy_protocol, the address
  // is the one a node-local redirector sends in a PROXY protocol v2 header.
  struct WorkloadCidrs {
    std::string workload;
    std::vector<std::string> cidrs;
  };
  std::vector<WorkloadCidrs> workloads;
  bool proxy_protocol = false;  // every connection starts with a PROXY v2 header (else refused)
  // Socket peers allowed to send that header (the node-local redirectors); required with
  // proxy_protocol, since whoever sends it chooses the client address that is judged.
  std::vector<std::string> proxy_protocol_peers;
};

}  // namespace egressguard::mitm
