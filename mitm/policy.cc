#include "mitm/policy.h"

#include <arpa/inet.h>
#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cstring>

namespace egressguard::mitm {
namespace {

std::string ToLower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

std::string ToUpper(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  }
  return out;
}

bool NameCharOk(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_';
}

// "*.example.com" matches any name strictly below example.com; "*" matches anything.
bool NameMatches(std::string_view pattern, std::string_view host) {
  if (pattern == "*") return true;
  if (pattern.size() > 2 && pattern.substr(0, 2) == "*.") {
    std::string_view suffix = pattern.substr(1);  // ".example.com"
    return host.size() > suffix.size() && host.substr(host.size() - suffix.size()) == suffix;
  }
  return host == pattern;
}

std::vector<std::string_view> Split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  size_t start = 0;
  while (true) {
    size_t p = s.find(sep, start);
    out.push_back(s.substr(start, p == std::string_view::npos ? std::string_view::npos : p - start));
    if (p == std::string_view::npos) break;
    start = p + 1;
  }
  return out;
}

}  // namespace

std::optional<std::array<uint8_t, 16>> ParseIp(std::string_view text) {
  if (text.empty() || text.size() > 45) return std::nullopt;
  std::string s(text);
  std::array<uint8_t, 16> out{};
  in_addr v4{};
  if (inet_pton(AF_INET, s.c_str(), &v4) == 1) {
    out[10] = 0xff;
    out[11] = 0xff;
    std::memcpy(out.data() + 12, &v4, 4);
    return out;
  }
  in6_addr v6{};
  if (inet_pton(AF_INET6, s.c_str(), &v6) == 1) {
    std::memcpy(out.data(), &v6, 16);
    return out;
  }
  return std::nullopt;
}

absl::StatusOr<Cidr> Cidr::Parse(std::string_view text) {
  Cidr c;
  auto slash = text.find('/');
  auto ip = ParseIp(text.substr(0, slash));
  if (!ip) return absl::InvalidArgumentError(fmt::format("'{}' is not an IP address or CIDR", text));
  c.address = *ip;
  bool v4 = text.substr(0, slash).find(':') == std::string_view::npos;
  int max_bits = v4 ? 32 : 128;
  int bits = max_bits;
  if (slash != std::string_view::npos) {
    auto p = text.substr(slash + 1);
    auto [ptr, ec] = std::from_chars(p.data(), p.data() + p.size(), bits);
    if (ec != std::errc() || ptr != p.data() + p.size() || bits < 0 || bits > max_bits) {
      return absl::InvalidArgumentError(fmt::format("bad prefix length in '{}'", text));
    }
  }
  c.prefix_bits = v4 ? bits + 96 : bits;
  // Clear host bits so Contains can compare masked values.
  for (int i = 0; i < 16; ++i) {
    int keep = std::clamp(c.prefix_bits - i * 8, 0, 8);
    c.address[i] &= static_cast<uint8_t>(0xff00 >> keep);
  }
  return c;
}

bool Cidr::Contains(const std::array<uint8_t, 16>& ip) const {
  for (int i = 0; i < 16; ++i) {
    int keep = std::clamp(prefix_bits - i * 8, 0, 8);
    if (keep == 0) break;
    uint8_t mask = static_cast<uint8_t>(0xff00 >> keep);
    if ((ip[i] & mask) != address[i]) return false;
  }
  return true;
}

absl::StatusOr<PolicyRule> PolicyRule::Parse(std::string_view text) {
  PolicyRule rule;
  std::string_view rest = text;
  if (auto at = rest.find('@'); at != std::string_view::npos) {
    for (auto m : Split(rest.substr(at + 1), ',')) {
      if (m.empty()) return absl::InvalidArgumentError(fmt::format("empty method in rule '{}'", text));
      for (char c : m) {
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '-')) {
          return absl::InvalidArgumentError(fmt::format("bad method '{}' in rule '{}'", m, text));
        }
      }
      rule.methods.push_back(ToUpper(m));
    }
    rest = rest.substr(0, at);
  }
  std::string_view pattern;
  std::string_view ports;
  if (!rest.empty() && rest.front() == '[') {
    auto close = rest.find(']');
    if (close == std::string_view::npos) return absl::InvalidArgumentError(fmt::format("unterminated [ in rule '{}'", text));
    pattern = rest.substr(1, close - 1);
    auto after = rest.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return absl::InvalidArgumentError(fmt::format("junk after ] in rule '{}'", text));
      ports = after.substr(1);
      if (ports.empty()) return absl::InvalidArgumentError(fmt::format("empty port list in rule '{}'", text));
    }
  } else {
    auto colon = rest.find(':');
    pattern = rest.substr(0, colon);
    if (colon != std::string_view::npos) {
      ports = rest.substr(colon + 1);
      if (ports.empty()) return absl::InvalidArgumentError(fmt::format("empty port list in rule '{}'", text));
    }
  }
  if (pattern.empty()) return absl::InvalidArgumentError(fmt::format("empty destination in rule '{}'", text));
  for (auto p : ports.empty() ? std::vector<std::string_view>{} : Split(ports, ',')) {
    unsigned v = 0;
    auto [ptr, ec] = std::from_chars(p.data(), p.data() + p.size(), v);
    if (p.empty() || ec != std::errc() || ptr != p.data() + p.size() || v == 0 || v > 65535) {
      return absl::InvalidArgumentError(fmt::format("bad port '{}' in rule '{}'", p, text));
    }
    rule.ports.push_back(static_cast<uint16_t>(v));
  }
  bool looks_ip = pattern.find('/') != std::string_view::npos || ParseIp(pattern).has_value();
  if (looks_ip) {
    auto cidr = Cidr::Parse(pattern);
    if (!cidr.ok()) return cidr.status();
    rule.cidr = *cidr;
    return rule;
  }
  std::string lower = ToLower(pattern);
  std::string_view name = lower;
  if (name != "*") {
    if (name.size() > 2 && name.substr(0, 2) == "*.") name.remove_prefix(2);
    if (name.empty() || !std::all_of(name.begin(), name.end(), NameCharOk) || name.find('*') != std::string_view::npos) {
      return absl::InvalidArgumentError(fmt::format("bad domain pattern '{}' (use name, *.name or *)", pattern));
    }
  }
  rule.host_pattern = std::move(lower);
  return rule;
}

bool PolicyRule::Matches(std::string_view host, uint16_t port) const {
  if (!ports.empty() && std::find(ports.begin(), ports.end(), port) == ports.end()) return false;
  std::string h = ToLower(host);
  auto ip = ParseIp(h);
  if (cidr) return ip && cidr->Contains(*ip);
  if (host_pattern == "*") return true;
  if (ip) return false;  // name patterns never match IP literals
  return NameMatches(host_pattern, h);
}

absl::StatusOr<PolicyPtr> Policy::Create(const PolicyConfig& config) {
  std::shared_ptr<Policy> p(new Policy());
  for (const auto& s : config.allow) {
    auto r = PolicyRule::Parse(s);
    if (!r.ok()) return absl::InvalidArgumentError(fmt::format("--allow: {}", std::string(r.status().message())));
    p->allow_.push_back(*std::move(r));
  }
  for (const auto& s : config.no_decrypt) {
    auto r = PolicyRule::Parse(s);
    if (!r.ok()) return absl::InvalidArgumentError(fmt::format("--no-decrypt: {}", std::string(r.status().message())));
    if (!r->methods.empty()) return absl::InvalidArgumentError(fmt::format("--no-decrypt '{}': methods cannot apply to undecrypted traffic", s));
    p->no_decrypt_.push_back(*std::move(r));
  }
  for (const auto& s : config.raw_relay) {
    auto r = PolicyRule::Parse(s);
    if (!r.ok()) return absl::InvalidArgumentError(fmt::format("--raw-relay: {}", std::string(r.status().message())));
    if (!r->methods.empty()) return absl::InvalidArgumentError(fmt::format("--raw-relay '{}': methods cannot apply to a stream that is not HTTP", s));
    p->raw_relay_.push_back(*std::move(r));
  }
  for (const auto& s : config.client_cidrs) {
    auto c = Cidr::Parse(s);
    if (!c.ok()) return absl::InvalidArgumentError(fmt::format("--client-cidr: {}", std::string(c.status().message())));
    p->clients_.push_back(*c);
  }
  return PolicyPtr(std::move(p));
}

PolicyDecision Policy::Decide(std::string_view host, uint16_t port, std::string_view sni) const {
  auto allowed = [&](std::string_view h) {
    return std::any_of(allow_.begin(), allow_.end(), [&](const PolicyRule& r) { return r.Matches(h, port); });
  };
  if (!allowed(host)) return {PolicyAction::kRefuse, "destination_not_allowed"};
  if (!sni.empty() && ToLower(sni) != ToLower(host) && !allowed(sni)) {
    return {PolicyAction::kRefuse, "destination_not_allowed"};
  }
  auto splice = [&](std::string_view h) {
    return std::any_of(no_decrypt_.begin(), no_decrypt_.end(), [&](const PolicyRule& r) { return r.Matches(h, port); });
  };
  if (splice(host) || (!sni.empty() && splice(sni))) return {PolicyAction::kSplice, "no_decrypt"};
  return {PolicyAction::kBump, ""};
}

bool Policy::RawRelayAllowed(std::string_view host, uint16_t port, std::string_view sni) const {
  auto listed = [&](std::string_view h) {
    return std::any_of(raw_relay_.begin(), raw_relay_.end(), [&](const PolicyRule& r) { return r.Matches(h, port); });
  };
  return listed(host) || (!sni.empty() && listed(sni));
}

bool Policy::MethodAllowed(std::string_view host, uint16_t port, std::string_view method) const {
  std::string m = ToUpper(method);
  for (const auto& r : allow_) {
    if (!r.Matches(host, port)) continue;
    if (r.methods.empty() || std::find(r.methods.begin(), r.methods.end(), m) != r.methods.end()) return true;
  }
  return false;
}

bool Policy::ClientAllowed(const std::array<uint8_t, 16>& ip) const {
  return std::any_of(clients_.begin(), clients_.end(), [&](const Cidr& c) { return c.Contains(ip); });
}

bool Policy::ClientAllowed(std::string_view ip) const {
  auto parsed = ParseIp(ip);
  return parsed && ClientAllowed(*parsed);
}

}  // namespace egressguard::mitm
