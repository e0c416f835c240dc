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

struct ProxyConfig {
  std::string listen_address = "127.0.0.1";
  uint16_t listen_port = 3128;  // 0: pick a free port (tests)
  int workers = 0;              // 0: one per core

  // Upstream trust: the system store plus `upstream_ca_file`, or only the file.
  std::string upstream_ca_file;
  bool upstream_ca_only = false;

  PolicyConfig policy;
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
};

}  // namespace egressguard::mitm
