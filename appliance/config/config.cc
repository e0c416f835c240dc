#include "appliance/config/config.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <yaml-cpp/yaml.h>

#include <charconv>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <set>
#include <sstream>

#include "mitm/policy.h"
#include "rules/yaml_document.h"

namespace egressguard::config {
namespace {

// Walks the YAML tree once, writing each known key into the Config and collecting a
// Problem (with the node's position) for everything it cannot accept.
class Reader {
 public:
  explicit Reader(std::vector<Problem>& problems) : problems_(problems) {}

  void Add(const YAML::Mark& mark, std::string reason) {
    problems_.push_back(Problem{mark.line >= 0 ? mark.line + 1 : 0, mark.column >= 0 ? mark.column + 1 : 0,
                                std::move(reason)});
  }

  using Handler = std::function<void(const YAML::Node&, const std::string& path)>;
  using Table = std::vector<std::pair<std::string, Handler>>;

  // A mapping whose keys must come from `table`; `path` names it in messages.
  void Map(const YAML::Node& node, const std::string& path, const Table& table) {
    if (node.IsNull()) return;
    if (!node.IsMap()) {
      Add(node.Mark(), fmt::format("{} must be a mapping of keys", path.empty() ? "the config" : path));
      return;
    }
    std::set<std::string> seen;
    for (auto it = node.begin(); it != node.end(); ++it) {
      // By value: yaml-cpp's operator-> yields a temporary pair, so a reference would dangle.
      const YAML::Node key = it->first;
      const YAML::Node value = it->second;
      if (!key.IsScalar()) {
        Add(key.Mark(), "keys must be plain names");
        continue;
      }
      const std::string name = key.Scalar();
      const std::string full = path.empty() ? name : path + "." + name;
      if (!seen.insert(name).second) {
        Add(key.Mark(), fmt::format("duplicate key '{}'", full));
        continue;
      }
      const Handler* handler = nullptr;
      for (const auto& [known, h] : table) {
        if (known == name) handler = &h;
      }
      if (!handler) {
        std::vector<std::string> names;
        for (const auto& entry : table) names.push_back(entry.first);
        Add(key.Mark(), fmt::format("unknown key '{}' (known in {}: {})", full, path.empty() ? "the top level" : path,
                                    fmt::join(names, ", ")));
        continue;
      }
      (*handler)(value, full);
    }
  }

  bool String(const YAML::Node& node, const std::string& path, std::string& out) {
    if (node.IsNull()) {
      out.clear();
      return true;
    }
    if (!node.IsScalar()) {
      Add(node.Mark(), fmt::format("{} must be a string", path));
      return false;
    }
    out = node.Scalar();
    return true;
  }

  void Bool(const YAML::Node& node, const std::string& path, bool& out) {
    bool value = false;
    if (!node.IsScalar() || !YAML::convert<bool>::decode(node, value)) {
      Add(node.Mark(), fmt::format("{} must be true or false", path));
      return;
    }
    out = value;
  }

  template <typename T>
  void Integer(const YAML::Node& node, const std::string& path, T& out, T min, T max) {
    T value{};
    bool ok = false;
    if (node.IsScalar()) {
      const std::string& text = node.Scalar();
      auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
      ok = ec == std::errc() && end == text.data() + text.size() && !text.empty();
      if (ec == std::errc::result_out_of_range) {
        Add(node.Mark(), fmt::format("{} is out of range ({}..{})", path, min, max));
        return;
      }
    }
    if (!ok) {
      Add(node.Mark(), fmt::format("{} must be an integer", path));
      return;
    }
    if (value < min || value > max) {
      Add(node.Mark(), fmt::format("{} must be between {} and {}, got {}", path, min, max, value));
      return;
    }
    out = value;
  }

  // A sequence of strings, each passed through `check` (empty result: fine).
  void StringList(const YAML::Node& node, const std::string& path, std::vector<std::string>& out,
                  const std::function<std::string(const std::string&)>& check) {
    if (node.IsNull()) {
      out.clear();
      return;
    }
    if (!node.IsSequence()) {
      Add(node.Mark(), fmt::format("{} must be a list", path));
      return;
    }
    std::vector<std::string> values;
    bool good = true;
    for (const auto& item : node) {
      if (!item.IsScalar()) {
        Add(item.Mark(), fmt::format("{} entries must be strings", path));
        good = false;
        continue;
      }
      if (check) {
        if (std::string reason = check(item.Scalar()); !reason.empty()) {
          Add(item.Mark(), fmt::format("{}: {}", path, reason));
          good = false;
          continue;
        }
      }
      values.push_back(item.Scalar());
    }
    if (good) out = std::move(values);
  }

  // A string checked by `check` (which returns a reason when the value is bad).
  void Checked(const YAML::Node& node, const std::string& path, std::string& out,
               const std::function<std::string(const std::string&)>& check) {
    std::string value;
    if (!String(node, path, value)) return;
    if (std::string reason = check(value); !reason.empty()) {
      Add(node.Mark(), fmt::format("{}: {}", path, reason));
      return;
    }
    out = std::move(value);
  }

 private:
  std::vector<Problem>& problems_;
};

std::string Reason(const absl::Status& status) { return status.ok() ? "" : std::string(status.message()); }

std::string CheckPolicyRule(const std::string& text) { return Reason(mitm::PolicyRule::Parse(text).status()); }
std::string CheckCidr(const std::string& text) { return Reason(mitm::Cidr::Parse(text).status()); }
std::string CheckListen(const std::string& text) { return Reason(ParseListen(text).status()); }
std::string CheckOptionalListen(const std::string& text) { return text.empty() ? "" : CheckListen(text); }

// gRPC addresses may name a host ("localhost:7443", "store.egress.svc:7443").
std::string CheckHostPort(const std::string& text) {
  auto colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0) return fmt::format("'{}' is not HOST:PORT", text);
  unsigned port = 0;
  const char* first = text.data() + colon + 1;
  const char* last = text.data() + text.size();
  auto [end, ec] = std::from_chars(first, last, port);
  if (ec != std::errc() || end != last || first == last || port > 65535) {
    return fmt::format("'{}' has no valid port (0..65535)", text);
  }
  return "";
}
std::string CheckOptionalHostPort(const std::string& text) { return text.empty() ? "" : CheckHostPort(text); }

void ReadTls(Reader& r, const YAML::Node& node, const std::string& path, TlsFiles& tls, const char* ca_name) {
  r.Map(node, path,
        {{"cert", [&](const YAML::Node& n, const std::string& p) { r.String(n, p, tls.cert); }},
         {"key", [&](const YAML::Node& n, const std::string& p) { r.String(n, p, tls.key); }},
         {ca_name, [&](const YAML::Node& n, const std::string& p) { r.String(n, p, tls.ca); }}});
}

void ReadWorkloads(Reader& r, const YAML::Node& node, const std::string& path, std::vector<Workload>& out) {
  if (node.IsNull()) {
    out.clear();
    return;
  }
  if (!node.IsSequence()) {
    r.Add(node.Mark(), fmt::format("{} must be a list of {{workload, cidrs}}", path));
    return;
  }
  std::vector<Workload> workloads;
  for (size_t i = 0; i < node.size(); ++i) {
    const YAML::Node item = node[i];
    const std::string item_path = fmt::format("{}[{}]", path, i);
    Workload w;
    bool has_name = false;
    bool has_cidrs = false;
    r.Map(item, item_path,
          {{"workload",
            [&](const YAML::Node& n, const std::string& p) {
              r.Checked(n, p, w.workload, [](const std::string& v) { return v.empty() ? "must not be empty" : ""; });
              has_name = !n.IsNull();
            }},
           {"cidrs", [&](const YAML::Node& n, const std::string& p) {
              r.StringList(n, p, w.cidrs, CheckCidr);
              // A bad entry is reported on its own line; only an absent or empty list is "missing".
              has_cidrs = !(n.IsNull() || (n.IsSequence() && n.size() == 0));
            }}});
    if (item.IsMap() && (!has_name || !has_cidrs)) {
      r.Add(item.Mark(), fmt::format("{} needs a workload name and at least one CIDR", item_path));
    }
    workloads.push_back(std::move(w));
  }
  out = std::move(workloads);
}

void ReadProxy(Reader& r, const YAML::Node& node, ProxySection& p) {
  constexpr int64_t kMaxMs = 24ll * 3600 * 1000;
  auto ms = [&](int64_t& field) {
    return [&r, &field](const YAML::Node& n, const std::string& path) { r.Integer<int64_t>(n, path, field, 1, kMaxMs); };
  };
  auto size = [&](uint64_t& field, uint64_t max) {
    return [&r, &field, max](const YAML::Node& n, const std::string& path) { r.Integer<uint64_t>(n, path, field, 1, max); };
  };
  auto flag = [&](bool& field) { return [&r, &field](const YAML::Node& n, const std::string& path) { r.Bool(n, path, field); }; };
  r.Map(node, "proxy",
        {{"listen", [&](const YAML::Node& n, const std::string& path) { r.Checked(n, path, p.listen, CheckListen); }},
         {"workers", [&](const YAML::Node& n, const std::string& path) { r.Integer<int>(n, path, p.workers, 0, 256); }},
         {"transparent_port",
          [&](const YAML::Node& n, const std::string& path) { r.Integer<uint16_t>(n, path, p.transparent_port, 0, 65535); }},
         {"transparent_tproxy", flag(p.transparent_tproxy)},
         {"sni_port", [&](const YAML::Node& n, const std::string& path) { r.Integer<uint16_t>(n, path, p.sni_port, 0, 65535); }},
         {"sni_upstream_port",
          [&](const YAML::Node& n, const std::string& path) { r.Integer<uint16_t>(n, path, p.sni_upstream_port, 1, 65535); }},
         {"auth_users_file", [&](const YAML::Node& n, const std::string& path) { r.String(n, path, p.auth_users_file); }},
         {"auth_realm",
          [&](const YAML::Node& n, const std::string& path) {
            r.Checked(n, path, p.auth_realm, [](const std::string& v) {
              // The realm goes into a quoted header parameter.
              if (v.empty()) return std::string("must not be empty");
              for (char ch : v) {
                if (ch == '"' || ch == '\\' || static_cast<unsigned char>(ch) < 0x20) {
                  return std::string("must not hold quotes, backslashes or control characters");
                }
              }
              return std::string();
            });
          }},
         {"mode",
          [&](const YAML::Node& n, const std::string& path) {
            r.Checked(n, path, p.mode, [](const std::string& v) { return Reason(CheckMode(v)); });
          }},
         {"allow", [&](const YAML::Node& n, const std::string& path) { r.StringList(n, path, p.allow, CheckPolicyRule); }},
         {"no_decrypt",
          [&](const YAML::Node& n, const std::string& path) { r.StringList(n, path, p.no_decrypt, CheckPolicyRule); }},
         {"raw_relay",
          [&](const YAML::Node& n, const std::string& path) { r.StringList(n, path, p.raw_relay, CheckPolicyRule); }},
         {"client_cidrs",
          [&](const YAML::Node& n, const std::string& path) { r.StringList(n, path, p.client_cidrs, CheckCidr); }},
         {"upstream_ca", [&](const YAML::Node& n, const std::string& path) { r.String(n, path, p.upstream_ca); }},
         {"upstream_ca_only", flag(p.upstream_ca_only)},
         {"fail_open", flag(p.fail_open)},
         {"scan_responses", flag(p.scan_responses)},
         {"allow_non_tls", flag(p.allow_non_tls)},
         {"hold_limit", size(p.hold_limit, 1ull << 32)},
         {"audit_log", [&](const YAML::Node& n, const std::string& path) { r.String(n, path, p.audit_log); }},
         {"limits",
          [&](const YAML::Node& n, const std::string& path) {
            r.Map(n, path,
                  {{"max_connections", size(p.max_connections, 1'000'000)},
                   {"max_head_bytes", size(p.max_head_bytes, 16ull << 20)},
                   {"max_header_count", size(p.max_header_count, 10'000)},
                   {"relay_buffer_bytes", size(p.relay_buffer_bytes, 64ull << 20)}});
          }},
         {"h2",
          [&](const YAML::Node& n, const std::string& path) {
            r.Map(n, path,
                  {{"max_concurrent_streams", size(p.h2_max_concurrent_streams, 10'000)},
                   {"max_header_list_bytes", size(p.h2_max_header_list_bytes, 16ull << 20)},
                   {"max_continuation_frames", size(p.h2_max_continuation_frames, 10'000)},
                   {"max_resets_per_second", size(p.h2_max_resets_per_second, 1'000'000)},
                   {"max_control_frames_per_second", size(p.h2_max_control_frames_per_second, 1'000'000)},
                   {"max_held_bytes", size(p.h2_max_held_bytes, 1ull << 40)}});
          }},
         {"timeouts",
          [&](const YAML::Node& n, const std::string& path) {
            r.Map(n, path,
                  {{"header_ms", ms(p.header_timeout_ms)},
                   {"handshake_ms", ms(p.handshake_timeout_ms)},
                   {"idle_ms", ms(p.idle_timeout_ms)},
                   {"drain_ms", ms(p.drain_timeout_ms)}});
          }},
         {"proxy_protocol", flag(p.proxy_protocol)},
         {"proxy_protocol_peers",
          [&](const YAML::Node& n, const std::string& path) { r.StringList(n, path, p.proxy_protocol_peers, CheckCidr); }},
         {"workloads", [&](const YAML::Node& n, const std::string& path) { ReadWorkloads(r, n, path, p.workloads); }}});
}

void ReadConfig(Reader& r, const YAML::Node& root, Config& c) {
  auto str = [&](std::string& field) {
    return [&r, &field](const YAML::Node& n, const std::string& path) { r.String(n, path, field); };
  };
  r.Map(root, "",
        {{"home", str(c.home)},
         {"proxy", [&](const YAML::Node& n, const std::string&) { ReadProxy(r, n, c.proxy); }},
         {"ca", [&](const YAML::Node& n, const std::string& path) {
            r.Map(n, path, {{"cert", str(c.ca.cert)}, {"key", str(c.ca.key)}});
          }},
         {"rules",
          [&](const YAML::Node& n, const std::string& path) {
            r.Map(n, path,
                  {{"pack", str(c.rules.pack)},
                   {"disabled", [&](const YAML::Node& v, const std::string& p) { r.Bool(v, p, c.rules.disabled); }},
                   {"fingerprint_key", str(c.rules.fingerprint_key)},
                   {"max_finding_spans",
                    [&](const YAML::Node& v, const std::string& p) {
                      r.Integer<uint32_t>(v, p, c.rules.max_finding_spans, 0, kMaxFindingSpans);
                    }},
                   {"approvals_required",
                    [&](const YAML::Node& v, const std::string& p) {
                      r.Integer<int64_t>(v, p, c.rules.approvals_required, 1, 2);
                    }},
                   {"approval_ttl_minutes", [&](const YAML::Node& v, const std::string& p) {
                      r.Integer<int64_t>(v, p, c.rules.approval_ttl_minutes, 1, 30 * 24 * 60);
                    }}});
          }},
         {"reporter",
          [&](const YAML::Node& n, const std::string& path) {
            r.Map(n, path,
                  {{"store",
                    [&](const YAML::Node& v, const std::string& p) {
                      r.Checked(v, p, c.reporter.store, CheckOptionalHostPort);
                    }},
                   {"spool", str(c.reporter.spool)},
                   {"spool_max_rows",
                    [&](const YAML::Node& v, const std::string& p) {
                      r.Integer<uint64_t>(v, p, c.reporter.spool_max_rows, 1, kMaxSpoolRows);
                    }},
                   {"spool_max_bytes",
                    [&](const YAML::Node& v, const std::string& p) {
                      r.Integer<uint64_t>(v, p, c.reporter.spool_max_bytes, 1, kMaxSpoolBytes);
                    }},
                   {"reconnect_backoff_max_ms",
                    [&](const YAML::Node& v, const std::string& p) {
                      r.Integer<int64_t>(v, p, c.reporter.reconnect_backoff_max_ms, kMinReconnectBackoffMs,
                                         kMaxReconnectBackoffMs);
                    }},
                   {"tls", [&](const YAML::Node& v, const std::string& p) { ReadTls(r, v, p, c.reporter.tls, "ca"); }}});
          }},
         {"store",
          [&](const YAML::Node& n, const std::string& path) {
            r.Map(n, path,
                  {{"listen",
                    [&](const YAML::Node& v, const std::string& p) { r.Checked(v, p, c.store.listen, CheckHostPort); }},
                   {"db", str(c.store.db)},
                   {"tls", [&](const YAML::Node& v, const std::string& p) { ReadTls(r, v, p, c.store.tls, "client_ca"); }},
                   {"retention_days",
                    [&](const YAML::Node& v, const std::string& p) {
                      r.Integer<int64_t>(v, p, c.store.retention_days, 0, 100'000);
                    }},
                   {"console_listen", [&](const YAML::Node& v, const std::string& p) {
                      r.Checked(v, p, c.store.console_listen, CheckOptionalListen);
                    }},
                   {"console_dir", str(c.store.console_dir)}});
          }},
         {"admin",
          [&](const YAML::Node& n, const std::string& path) {
            r.Map(n, path, {{"listen", [&](const YAML::Node& v, const std::string& p) {
                               r.Checked(v, p, c.admin.listen, CheckOptionalListen);
                             }}});
          }},
         {"log", [&](const YAML::Node& n, const std::string& path) {
            r.Map(n, path,
                  {{"level",
                    [&](const YAML::Node& v, const std::string& p) {
                      r.Checked(v, p, c.log.level, [](const std::string& s) { return Reason(CheckLogLevel(s)); });
                    }},
                   {"format", [&](const YAML::Node& v, const std::string& p) {
                      r.Checked(v, p, c.log.format, [](const std::string& s) { return Reason(CheckLogFormat(s)); });
                    }}});
          }}});
}

// YAML double-quoted scalars take JSON's escapes, so one quoting rule serves both.
std::string Quote(std::string_view s) {
  std::string out = "\"";
  for (char ch : s) {
    switch (ch) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(ch) < 0x20) {
          out += fmt::format("\\x{:02x}", static_cast<unsigned char>(ch));
        } else {
          out += ch;
        }
    }
  }
  return out + "\"";
}

std::string List(const std::vector<std::string>& values) {
  std::vector<std::string> quoted;
  for (const auto& v : values) quoted.push_back(Quote(v));
  return fmt::format("[{}]", fmt::join(quoted, ", "));
}

const char* Bool(bool b) { return b ? "true" : "false"; }

}  // namespace

Config Defaults(Command command) {
  Config c;
  switch (command) {
    case Command::kProxy:
      break;
    case Command::kStore:
      break;
    case Command::kRun:
      c.proxy.mode = "enforce";
      c.proxy.allow = {"*:443"};
      c.store.listen = "127.0.0.1:7690";
      c.admin.listen = "127.0.0.1:9090";
      c.store.console_listen = "127.0.0.1:8443";
      break;
  }
  return c;
}

absl::StatusOr<ListenAddress> ParseListen(std::string_view text) {
  auto colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0 || colon + 1 == text.size()) {
    return absl::InvalidArgumentError(fmt::format("'{}' is not ADDR:PORT", text));
  }
  ListenAddress out;
  std::string_view address = text.substr(0, colon);
  if (address.size() >= 2 && address.front() == '[' && address.back() == ']') {
    address = address.substr(1, address.size() - 2);
  }
  if (!mitm::ParseIp(address)) {
    return absl::InvalidArgumentError(fmt::format("'{}' is not an IP address (in '{}')", address, text));
  }
  unsigned port = 0;
  const char* first = text.data() + colon + 1;
  const char* last = text.data() + text.size();
  auto [end, ec] = std::from_chars(first, last, port);
  if (ec != std::errc() || end != last || port > 65535) {
    return absl::InvalidArgumentError(fmt::format("'{}' has no valid port (0..65535)", text));
  }
  out.address = std::string(address);
  out.port = static_cast<uint16_t>(port);
  return out;
}

absl::Status CheckLogLevel(std::string_view level) {
  for (const char* known : {"trace", "debug", "info", "warn", "error"}) {
    if (level == known) return absl::OkStatus();
  }
  return absl::InvalidArgumentError(fmt::format("unknown log level '{}' (trace, debug, info, warn, error)", level));
}

absl::Status CheckLogFormat(std::string_view format) {
  if (format == "text" || format == "json") return absl::OkStatus();
  return absl::InvalidArgumentError(fmt::format("unknown log format '{}' (text, json)", format));
}

absl::Status CheckMode(std::string_view mode) {
  if (mode == "monitor" || mode == "enforce") return absl::OkStatus();
  return absl::InvalidArgumentError(fmt::format("unknown mode '{}' (monitor, enforce)", mode));
}

ParseResult Parse(std::string_view yaml, const Config& base) {
  ParseResult result;
  result.config = base;
  Reader reader(result.problems);
  YAML::Node root;
  try {
    root = rules::LoadOneYamlDocument(yaml);  // one document; see rules/yaml_document.h
  } catch (const YAML::Exception& e) {
    reader.Add(e.mark, "not valid YAML: " + e.msg);
    return result;
  }
  try {
    ReadConfig(reader, root, result.config);
  } catch (const YAML::Exception& e) {
    reader.Add(e.mark, e.msg);
  }
  return result;
}

std::string FormatProblems(std::string_view file, const std::vector<Problem>& problems) {
  std::string out;
  for (const auto& p : problems) {
    out += fmt::format("{}:{}:{}: {}\n", file, p.line, p.column, p.reason);
  }
  if (!out.empty()) out.pop_back();
  return out;
}

absl::StatusOr<Config> LoadFile(const std::string& path, const Config& base) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(fmt::format("{}: cannot read the config file", path));
  std::stringstream text;
  text << in.rdbuf();
  auto parsed = Parse(text.str(), base);
  if (!parsed.problems.empty()) return absl::InvalidArgumentError(FormatProblems(path, parsed.problems));
  return parsed.config;
}

std::string DefaultsYaml(Command command) {
  const Config c = Defaults(command);
  const auto& p = c.proxy;
  const char* which = command == Command::kRun ? "run" : command == Command::kStore ? "store" : "proxy";
  std::string workloads = p.workloads.empty() ? "[]" : "";
  for (const auto& w : p.workloads) {
    workloads += fmt::format("\n    - workload: {}\n      cidrs: {}", Quote(w.workload), List(w.cidrs));
  }
  return fmt::format(
      R"(# egressguard config: the built-in defaults of `egressguard {which}`.
# Every key is optional; a key overrides the default, a command-line flag overrides
# the key. appliance/CONFIG.md describes each one. Check a file with
# `egressguard config check FILE`.

# run: directory for the dev CA, store, spool and keys ("": $EGRESSGUARD_HOME,
# else ~/.local/state/egressguard).
home: {home}

proxy:
  listen: {listen}            # ADDR:PORT (IP literal; port 0: any free port)
  workers: {workers}                       # worker threads, 0: one per core
  transparent_port: {transparent_port}              # extra listener for iptables REDIRECT / TPROXY traffic, 0: off
  transparent_tproxy: {transparent_tproxy}          # that listener uses TPROXY (IP_TRANSPARENT) instead of REDIRECT
  sni_port: {sni_port}                      # extra listener taking the destination from the ClientHello SNI, 0: off
  sni_upstream_port: {sni_upstream_port}               # origin port the SNI listener connects to
  auth_users_file: {auth_users_file}             # proxy authentication, user:hash lines ("": off)
  auth_realm: {auth_realm}          # realm of the Proxy-Authenticate challenge
  mode: {mode}                 # monitor | enforce (run: mode of the default pack on first start)
  allow: {allow}                  # egress allow-list, PATTERN[:PORTS][@METHODS]; empty refuses all (SIGHUP reloads)
  no_decrypt: {no_decrypt}                   # destinations relayed without decryption (SIGHUP reloads)
  raw_relay: {raw_relay}                    # enforce: destinations whose non-HTTP decrypted stream may be relayed raw, scanned (SIGHUP reloads)
  client_cidrs: {client_cidrs}   # who may use the proxy (SIGHUP reloads)
  upstream_ca: {upstream_ca}                 # extra trust anchors for origins (PEM bundle)
  upstream_ca_only: {upstream_ca_only}          # trust only upstream_ca, not the system store
  fail_open: {fail_open}                 # forward unscanned when the engine cannot scan
  scan_responses: {scan_responses}            # scan response bodies too (reported, never blocked)
  allow_non_tls: {allow_non_tls}             # relay non-TLS bytes after CONNECT instead of refusing
  hold_limit: {hold_limit}            # enforce: bytes of a request body held until scanned
  audit_log: {audit_log}                   # append verdicts as JSON lines here (proxy; with reporter.store too)
  limits:
    max_connections: {max_connections}
    max_head_bytes: {max_head_bytes}
    max_header_count: {max_header_count}
    relay_buffer_bytes: {relay_buffer_bytes}
  h2:                              # HTTP/2 client leg: past a limit, GOAWAY(ENHANCE_YOUR_CALM) and a verdict
    max_concurrent_streams: {h2_streams}       # SETTINGS_MAX_CONCURRENT_STREAMS; opening more is abuse
    max_header_list_bytes: {h2_header_list}     # decoded header block (HPACK bombs stop here)
    max_continuation_frames: {h2_continuations}       # after one HEADERS (CONTINUATION flood)
    max_resets_per_second: {h2_resets}        # client RST_STREAMs of unanswered streams (rapid reset), burst 2x
    max_control_frames_per_second: {h2_control}  # PING, SETTINGS, PRIORITY, empty DATA, burst 2x
    max_held_bytes: {h2_held}         # request bytes held until decided (or queued) per connection
  timeouts:
    header_ms: {header_ms}
    handshake_ms: {handshake_ms}
    idle_ms: {idle_ms}
    drain_ms: {drain_ms}
  proxy_protocol: {proxy_protocol}            # every connection starts with a PROXY protocol v2 header
  proxy_protocol_peers: {proxy_protocol_peers}     # CIDRs of the redirectors trusted to send it (required with proxy_protocol)
  workloads: {workloads}                    # [{{workload: NAME, cidrs: [CIDR, ...]}}], first match names the client

ca:                                # cluster CA (proxy; run keeps its own under home)
  cert: {ca_cert}
  key: {ca_key}                          # PEM, mode 0600

rules:                             # proxy without reporter.store
  pack: {pack}                         # rule pack file or directory ("": the shipped pack)
  disabled: {disabled}                  # start without rules (fail closed unless proxy.fail_open)
  fingerprint_key: {fingerprint_key}              # HMAC key file for match fingerprints ("": random per process)
  max_finding_spans: {max_finding_spans}            # occurrences located per finding in verdicts (0..256; also with reporter.store)
  approvals_required: {approvals_required}           # store: officers who must agree to activate or roll back a pack (1 or 2)
  approval_ttl_minutes: {approval_ttl_minutes}      # store: how long a proposal waits for the second officer

reporter:                          # proxy: report to a compliance store and follow its active pack
  store: {reporter_store}                        # HOST:PORT ("": no store)
  spool: {spool}          # durable verdict spool (sqlite); the last active pack is kept beside it
  spool_max_rows: {spool_max_rows}                # verdicts the spool holds at most; /readyz is not ready at 90% while the store is unreachable
  spool_max_bytes: {spool_max_bytes}            # serialized verdict bytes it holds at most (same)
  reconnect_backoff_max_ms: {reconnect_backoff_max_ms}        # longest wait between attempts to reach the store (100..120000)
  tls:
    cert: {reporter_cert}
    key: {reporter_key}
    ca: {reporter_ca}

store:
  listen: {store_listen}            # HOST:PORT of the gRPC API
  db: {db}                           # sqlite file (store; run uses home/store.db)
  tls:
    cert: {store_cert}
    key: {store_key}
    client_ca: {store_client_ca}
  retention_days: {retention_days}                # delete verdicts older than this, 0: keep all
  console_listen: {console_listen}                 # ADDR:PORT of the officers' web console, HTTPS with store.tls ("": off)
  console_dir: {console_dir}                      # console.key and console.revoked ("": the sqlite file's folder; required with PostgreSQL)

admin:
  listen: {admin_listen}                       # ADDR:PORT of /metrics, /healthz, /readyz ("": off)

log:
  level: {level}                      # trace | debug | info | warn | error
  format: {format}                     # text | json (one object per line)
)",
      fmt::arg("which", which), fmt::arg("home", Quote(c.home)), fmt::arg("listen", Quote(p.listen)),
      fmt::arg("workers", p.workers), fmt::arg("transparent_port", p.transparent_port),
      fmt::arg("transparent_tproxy", Bool(p.transparent_tproxy)), fmt::arg("sni_port", p.sni_port),
      fmt::arg("sni_upstream_port", p.sni_upstream_port), fmt::arg("auth_users_file", Quote(p.auth_users_file)),
      fmt::arg("auth_realm", Quote(p.auth_realm)), fmt::arg("mode", Quote(p.mode)), fmt::arg("allow", List(p.allow)),
      fmt::arg("no_decrypt", List(p.no_decrypt)), fmt::arg("raw_relay", List(p.raw_relay)), fmt::arg("client_cidrs", List(p.client_cidrs)),
      fmt::arg("upstream_ca", Quote(p.upstream_ca)), fmt::arg("upstream_ca_only", Bool(p.upstream_ca_only)),
      fmt::arg("fail_open", Bool(p.fail_open)), fmt::arg("scan_responses", Bool(p.scan_responses)),
      fmt::arg("allow_non_tls", Bool(p.allow_non_tls)), fmt::arg("hold_limit", p.hold_limit),
      fmt::arg("audit_log", Quote(p.audit_log)), fmt::arg("max_connections", p.max_connections),
      fmt::arg("max_head_bytes", p.max_head_bytes), fmt::arg("max_header_count", p.max_header_count),
      fmt::arg("relay_buffer_bytes", p.relay_buffer_bytes), fmt::arg("h2_streams", p.h2_max_concurrent_streams),
      fmt::arg("h2_header_list", p.h2_max_header_list_bytes), fmt::arg("h2_continuations", p.h2_max_continuation_frames),
      fmt::arg("h2_resets", p.h2_max_resets_per_second), fmt::arg("h2_control", p.h2_max_control_frames_per_second),
      fmt::arg("h2_held", p.h2_max_held_bytes), fmt::arg("header_ms", p.header_timeout_ms),
      fmt::arg("handshake_ms", p.handshake_timeout_ms), fmt::arg("idle_ms", p.idle_timeout_ms),
      fmt::arg("drain_ms", p.drain_timeout_ms), fmt::arg("proxy_protocol", Bool(p.proxy_protocol)),
      fmt::arg("proxy_protocol_peers", List(p.proxy_protocol_peers)),
      fmt::arg("workloads", workloads), fmt::arg("ca_cert", Quote(c.ca.cert)), fmt::arg("ca_key", Quote(c.ca.key)),
      fmt::arg("pack", Quote(c.rules.pack)), fmt::arg("disabled", Bool(c.rules.disabled)),
      fmt::arg("fingerprint_key", Quote(c.rules.fingerprint_key)),
      fmt::arg("max_finding_spans", c.rules.max_finding_spans), fmt::arg("reporter_store", Quote(c.reporter.store)),
      fmt::arg("spool", Quote(c.reporter.spool)), fmt::arg("spool_max_rows", c.reporter.spool_max_rows),
      fmt::arg("spool_max_bytes", c.reporter.spool_max_bytes),
      fmt::arg("reconnect_backoff_max_ms", c.reporter.reconnect_backoff_max_ms), fmt::arg("reporter_cert", Quote(c.reporter.tls.cert)),
      fmt::arg("reporter_key", Quote(c.reporter.tls.key)), fmt::arg("reporter_ca", Quote(c.reporter.tls.ca)),
      fmt::arg("store_listen", Quote(c.store.listen)), fmt::arg("db", Quote(c.store.db)),
      fmt::arg("store_cert", Quote(c.store.tls.cert)), fmt::arg("store_key", Quote(c.store.tls.key)),
      fmt::arg("store_client_ca", Quote(c.store.tls.ca)), fmt::arg("retention_days", c.store.retention_days),
      fmt::arg("console_listen", Quote(c.store.console_listen)), fmt::arg("console_dir", Quote(c.store.console_dir)), fmt::arg("approvals_required", c.rules.approvals_required),
      fmt::arg("approval_ttl_minutes", c.rules.approval_ttl_minutes),
      fmt::arg("admin_listen", Quote(c.admin.listen)), fmt::arg("level", Quote(c.log.level)),
      fmt::arg("format", Quote(c.log.format)));
}

mitm::PolicyConfig ToPolicyConfig(const Config& config) {
  mitm::PolicyConfig policy;
  policy.allow = config.proxy.allow;
  policy.no_decrypt = config.proxy.no_decrypt;
  policy.raw_relay = config.proxy.raw_relay;
  policy.client_cidrs = config.proxy.client_cidrs;
  return policy;
}

absl::StatusOr<mitm::ProxyConfig> ToProxyConfig(const Config& config) {
  const ProxySection& p = config.proxy;
  mitm::ProxyConfig out;
  auto listen = ParseListen(p.listen);
  if (!listen.ok()) return absl::InvalidArgumentError(fmt::format("proxy listen: {}", std::string(listen.status().message())));
  if (auto st = CheckMode(p.mode); !st.ok()) return st;
  out.listen_address = listen->address;
  out.listen_port = listen->port;
  out.workers = p.workers;
  out.transparent_port = p.transparent_port;
  out.transparent_tproxy = p.transparent_tproxy;
  out.sni_port = p.sni_port;
  out.sni_upstream_port = p.sni_upstream_port;
  out.auth_users_file = p.auth_users_file;
  out.auth_realm = p.auth_realm;
  out.upstream_ca_file = p.upstream_ca;
  out.upstream_ca_only = p.upstream_ca_only;
  out.policy = ToPolicyConfig(config);
  out.mode = p.mode == "enforce" ? mitm::EnforceMode::kEnforce : mitm::EnforceMode::kMonitor;
  out.fail_open = p.fail_open;
  out.scan_responses = p.scan_responses;
  out.refuse_non_tls = !p.allow_non_tls;
  out.hold_limit = p.hold_limit;
  out.max_connections = p.max_connections;
  out.max_head_bytes = p.max_head_bytes;
  out.max_header_count = p.max_header_count;
  out.relay_buffer_bytes = p.relay_buffer_bytes;
  out.h2.max_concurrent_streams = static_cast<uint32_t>(p.h2_max_concurrent_streams);
  out.h2.max_header_list_bytes = p.h2_max_header_list_bytes;
  out.h2.max_continuation_frames = static_cast<uint32_t>(p.h2_max_continuation_frames);
  out.h2.max_resets_per_second = static_cast<uint32_t>(p.h2_max_resets_per_second);
  out.h2.max_control_frames_per_second = static_cast<uint32_t>(p.h2_max_control_frames_per_second);
  out.h2.max_held_bytes = p.h2_max_held_bytes;
  out.header_timeout = std::chrono::milliseconds(p.header_timeout_ms);
  out.handshake_timeout = std::chrono::milliseconds(p.handshake_timeout_ms);
  out.idle_timeout = std::chrono::milliseconds(p.idle_timeout_ms);
  out.drain_timeout = std::chrono::milliseconds(p.drain_timeout_ms);
  out.proxy_protocol = p.proxy_protocol;
  out.proxy_protocol_peers = p.proxy_protocol_peers;
  for (const auto& w : p.workloads) out.workloads.push_back({w.workload, w.cidrs});
  return out;
}

}  // namespace egressguard::config
