#pragma once
// Egress policy: which destinations may be reached (allow-list of domains with
// wildcards, CIDRs, ports and methods), which are relayed without decryption
// (no-decrypt list), and which clients may use the proxy at all (source CIDRs, so the
// proxy is never open). Built once from strings, then shared read-only by workers.
//
// Rule syntax (one string per rule):  PATTERN[:PORTS][@METHODS]
//   PATTERN  "example.com", "*.example.com" (subdomains only), "*" (any), an IP literal,
//            or a CIDR; IPv6 in brackets: "[2001:db8::/32]:443"
//   PORTS    comma-separated ports, e.g. "443,8443" (absent: any port)
//   METHODS  comma-separated HTTP methods, e.g. "GET,HEAD" (absent: any method)

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace egressguard::mitm {

struct Cidr {
  std::array<uint8_t, 16> address{};  // IPv4 stored v4-mapped (::ffff:a.b.c.d)
  int prefix_bits = 0;                 // over the 128-bit form
  static absl::StatusOr<Cidr> Parse(std::string_view text);  // "10.0.0.0/8", "::1", "1.2.3.4"
  bool Contains(const std::array<uint8_t, 16>& ip) const;
};

// Parses an IPv4 or IPv6 literal (no brackets) into the 128-bit form.
std::optional<std::array<uint8_t, 16>> ParseIp(std::string_view text);

struct PolicyRule {
  std::string host_pattern;      // lower-case name pattern; empty when `cidr` is set
  std::optional<Cidr> cidr;
  std::vector<uint16_t> ports;   // empty: any
  std::vector<std::string> methods;  // upper-case; empty: any
  static absl::StatusOr<PolicyRule> Parse(std::string_view text);
  bool Matches(std::string_view host, uint16_t port) const;
};

struct PolicyConfig {
  std::vector<std::string> allow;       // egress allow-list; empty refuses every destination
  std::vector<std::string> no_decrypt;  // destinations relayed untouched (splice)
  // Destinations whose decrypted stream may be relayed raw in enforce mode when it is not
  // a protocol the proxy parses (scanned, nothing undecided forwarded); elsewhere such a
  // stream is refused as unparsed_protocol.
  std::vector<std::string> raw_relay;
  std::vector<std::string> client_cidrs = {"127.0.0.0/8", "::1/128"};  // who may connect
};

enum class PolicyAction { kBump, kSplice, kRefuse };

struct PolicyDecision {
  PolicyAction action = PolicyAction::kRefuse;
  std::string reason;  // "destination_not_allowed", "no_decrypt", ... (verdict reason)
};

class Policy;
using PolicyPtr = std::shared_ptr<const Policy>;

class Policy {
 public:
  static absl::StatusOr<PolicyPtr> Create(const PolicyConfig& config);

  // Decides a TLS destination. `host` is the CONNECT/original destination (name or IP);
  // `sni` the ClientHello's server name (may be empty). Both must be allowed.
  PolicyDecision Decide(std::string_view host, uint16_t port, std::string_view sni = {}) const;
  // Whether `method` may be sent to host:port (after Decide allowed the destination).
  bool MethodAllowed(std::string_view host, uint16_t port, std::string_view method) const;
  // Whether a decrypted stream to host:port (or the SNI) may be relayed raw (raw_relay).
  bool RawRelayAllowed(std::string_view host, uint16_t port, std::string_view sni = {}) const;
  bool ClientAllowed(const std::array<uint8_t, 16>& client_ip) const;
  bool ClientAllowed(std::string_view client_ip) const;

 private:
  Policy() = default;
  std::vector<PolicyRule> allow_;
  std::vector<PolicyRule> no_decrypt_;
  std::vector<PolicyRule> raw_relay_;
  std::vector<Cidr> clients_;
};

}  // namespace egressguard::mitm
