#pragma once
// One YAML config file for `egressguard run|proxy|store` (appliance/CONFIG.md lists
// every key). Values come from three layers, later ones winning: the built-in
// defaults of the command, the file, and the flags given on the command line.
// The file is checked as a whole: every unknown key, wrong type or bad value is
// reported with its line and column, so an operator fixes them in one pass.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "mitm/proxy_config.h"

namespace egressguard::config {

// The commands read the same file but differ in a few built-in defaults
// (e.g. `run` allows *:443 and serves admin on 127.0.0.1:9090).
enum class Command { kProxy, kStore, kRun };

struct TlsFiles {
  std::string cert;
  std::string key;
  std::string ca;
  bool operator==(const TlsFiles&) const = default;
};

struct Workload {
  std::string workload;
  std::vector<std::string> cidrs;
  bool operator==(const Workload&) const = default;
};

struct ProxySection {
  std::string listen = "127.0.0.1:3128";
  int workers = 0;
  uint16_t transparent_port = 0;  // extra listener for REDIRECT/TPROXY traffic; 0: off
  bool transparent_tproxy = false;
  uint16_t sni_port = 0;  // extra listener that takes the destination from the SNI; 0: off
  uint16_t sni_upstream_port = 443;
  std::string auth_users_file;  // proxy authentication (user:hash lines); "": off
  std::string auth_realm = "egressguard";
  std::string mode = "monitor";  // run: mode of the default pack on first start
  std::vector<std::string> allow;
  std::vector<std::string> no_decrypt;
  std::vector<std::string> raw_relay;
  std::vector<std::string> client_cidrs = {"127.0.0.0/8", "::1/128"};
  std::string upstream_ca;
  bool upstream_ca_only = false;
  bool fail_open = false;
  bool scan_responses = false;
  bool allow_non_tls = false;
  uint64_t hold_limit = 16ull << 20;
  std::string audit_log;
  // limits
  uint64_t max_connections = 10000;
  uint64_t max_head_bytes = 64 * 1024;
  uint64_t max_header_count = 100;
  uint64_t relay_buffer_bytes = 64 * 1024;
  // HTTP/2 client-leg limits (mitm::H2Limits)
  uint64_t h2_max_concurrent_streams = 100;
  uint64_t h2_max_header_list_bytes = 64 * 1024;
  uint64_t h2_max_continuation_frames = 32;
  uint64_t h2_max_resets_per_second = 100;
  uint64_t h2_max_control_frames_per_second = 1000;
  uint64_t h2_max_held_bytes = 64ull << 20;
  // timeouts (milliseconds)
  int64_t header_timeout_ms = 10000;
  int64_t handshake_timeout_ms = 10000;
  int64_t idle_timeout_ms = 60000;
  int64_t drain_timeout_ms = 10000;
  bool proxy_protocol = false;
  std::vector<std::string> proxy_protocol_peers;  // redirectors trusted to send the header
  std::vector<Workload> workloads;
  bool operator==(const ProxySection&) const = default;
};

struct CaSection {
  std::string cert;
  std::string key;
  bool operator==(const CaSection&) const = default;
};

// Bound of rules.max_finding_spans: occurrences located per finding (Finding.spans).
inline constexpr uint32_t kMaxFindingSpans = 256;

struct RulesSection {
  std::string pack;  // empty: the shipped pack
  bool disabled = false;
  std::string fingerprint_key;
  uint32_t max_finding_spans = 16;  // dlp::EngineOptions::max_finding_spans; 0..kMaxFindingSpans
  // Store: officers who must agree before a pack is activated or rolled back (1 or 2),
  // and how long a proposal waits for the second one.
  int64_t approvals_required = 1;
  int64_t approval_ttl_minutes = 24 * 60;
  bool operator==(const RulesSection&) const = default;
};

// Bounds of the reporter keys (the config file and the flags check the same ranges).
inline constexpr uint64_t kMaxSpoolRows = 1'000'000'000;
inline constexpr uint64_t kMaxSpoolBytes = 1ull << 40;
inline constexpr int64_t kMinReconnectBackoffMs = 100;
inline constexpr int64_t kMaxReconnectBackoffMs = 120'000;

struct ReporterSection {
  std::string store;  // empty: no store (local rules)
  std::string spool = "egressguard-spool.db";
  // The spool's bounds: verdicts, and their serialized bytes. Submit refuses beyond
  // either; /readyz goes not ready at 90% of either while the store is unreachable.
  uint64_t spool_max_rows = 1'000'000;
  uint64_t spool_max_bytes = 1ull << 30;
  // Longest wait between two attempts to reach the store (gRPC reconnect backoff and
  // the reporter's and rule watcher's retry loops).
  int64_t reconnect_backoff_max_ms = 2000;
  TlsFiles tls;
  bool operator==(const ReporterSection&) const = default;
};

struct StoreSection {
  std::string listen = "127.0.0.1:7443";
  std::string db;
  TlsFiles tls;  // ca: the API CA whose client certificates carry the roles
  int64_t retention_days = 0;
  std::string console_listen;  // ADDR:PORT of the officers' web console (HTTPS); empty: off
  std::string console_dir;     // console.key, console.revoked; empty: the sqlite file's folder
  bool operator==(const StoreSection&) const = default;
};

struct AdminSection {
  std::string listen;  // ADDR:PORT of /metrics, /healthz, /readyz; empty: off
  bool operator==(const AdminSection&) const = default;
};

struct LogSection {
  std::string level = "info";   // trace|debug|info|warn|error
  std::string format = "text";  // text|json
  bool operator==(const LogSection&) const = default;
};

struct Config {
  std::string home;  // run: state directory (empty: $EGRESSGUARD_HOME or the XDG default)
  ProxySection proxy;
  CaSection ca;
  RulesSection rules;
  ReporterSection reporter;
  StoreSection store;
  AdminSection admin;
  LogSection log;
  bool operator==(const Config&) const = default;
};

Config Defaults(Command command);

struct Problem {
  int line = 0;    // 1-based; 0 when the position is unknown
  int column = 0;  // 1-based
  std::string reason;
};

struct ParseResult {
  Config config;
  std::vector<Problem> problems;  // empty: config is valid
};

// Reads YAML text over `base`: keys the text leaves out keep base's values.
ParseResult Parse(std::string_view yaml, const Config& base);

// "FILE:LINE:COL: reason" lines, one per problem.
std::string FormatProblems(std::string_view file, const std::vector<Problem>& problems);

// Reads and checks FILE; the error message holds every problem as FormatProblems does.
absl::StatusOr<Config> LoadFile(const std::string& path, const Config& base);

// The whole default config of `command` as commented YAML that Parse accepts.
std::string DefaultsYaml(Command command);

// Value checks shared by the loader and the commands (flags go through them too).
struct ListenAddress {
  std::string address;  // IP literal, without brackets
  uint16_t port = 0;
};
// "ADDR:PORT" or "[v6]:PORT" with an IP literal address (port 0: any free port).
absl::StatusOr<ListenAddress> ParseListen(std::string_view text);
absl::Status CheckLogLevel(std::string_view level);
absl::Status CheckLogFormat(std::string_view format);
absl::Status CheckMode(std::string_view mode);

// The proxy's settings (listen, policy lists, limits, timeouts, workloads).
absl::StatusOr<mitm::ProxyConfig> ToProxyConfig(const Config& config);
mitm::PolicyConfig ToPolicyConfig(const Config& config);

}  // namespace egressguard::config
