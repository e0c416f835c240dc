#pragma once
// Binds a command's flags to keys of config::Config so `--config FILE` and flags
// combine in one place: built-in defaults < keys in the file < flags given. Each flag
// writes into a private Config; Resolve() copies only the flags that were given over
// the file's values, so an unset flag never masks a key.

#include <CLI/CLI.hpp>

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "appliance/config/config.h"

namespace egressguard::cli {

class ConfigFlags {
 public:
  // Adds --config to `cmd`. Keep the object alive (and in place) while `cmd` parses.
  ConfigFlags(CLI::App* cmd, config::Command which) : cmd_(cmd), which_(which), flags_(config::Defaults(which)) {
    cmd_->add_option("--config", file_, "YAML config file (see appliance/CONFIG.md); flags given win over its keys");
  }
  ConfigFlags(const ConfigFlags&) = delete;
  ConfigFlags& operator=(const ConfigFlags&) = delete;

  // `key` maps a Config to the field the flag sets: [](config::Config& c) -> auto& { return c.proxy.listen; }
  template <typename Key>
  CLI::Option* Option(const std::string& name, Key key, const std::string& help) {
    CLI::Option* opt = cmd_->add_option(name, key(flags_), help);
    Track(opt, key);
    return opt;
  }
  template <typename Key>
  CLI::Option* Flag(const std::string& name, Key key, const std::string& help) {
    CLI::Option* opt = cmd_->add_flag(name, key(flags_), help);
    Track(opt, key);
    return opt;
  }

  // The listener, proxy-auth and admin flags `proxy` and `run` share.
  void AddListenerFlags() {
    using C = config::Config;
    Option("--transparent-port", [](C& c) -> auto& { return c.proxy.transparent_port; },
           "Extra listener for REDIRECT/TPROXY traffic on the listen address (0: off)");
    Flag("--tproxy", [](C& c) -> auto& { return c.proxy.transparent_tproxy; },
         "The transparent listener uses TPROXY (IP_TRANSPARENT) instead of REDIRECT");
    Option("--sni-port", [](C& c) -> auto& { return c.proxy.sni_port; },
           "Extra listener taking the destination from the ClientHello SNI (0: off)");
    Option("--sni-upstream-port", [](C& c) -> auto& { return c.proxy.sni_upstream_port; },
           "Origin port the SNI listener connects to")
        ->capture_default_str();
    Option("--auth-users", [](C& c) -> auto& { return c.proxy.auth_users_file; },
           "Proxy authentication: FILE of user:hash lines (default: off)");
    Option("--auth-realm", [](C& c) -> auto& { return c.proxy.auth_realm; }, "Realm of the Proxy-Authenticate challenge")
        ->capture_default_str();
    Option("--admin-listen", [](C& c) -> auto& { return c.admin.listen; },
           "ADDR:PORT for /metrics, /healthz, /readyz (\"\": off)")
        ->capture_default_str();
  }

  const std::string& file() const { return file_; }

  // Defaults, then the file (if any), then the flags given. Re-reads the file on each
  // call (SIGHUP reload); the error lists every problem as FILE:LINE:COL: reason.
  absl::StatusOr<config::Config> Resolve() const {
    config::Config merged = config::Defaults(which_);
    if (!file_.empty()) {
      auto loaded = config::LoadFile(file_, merged);
      if (!loaded.ok()) return loaded.status();
      merged = *std::move(loaded);
    }
    for (const auto& apply : overrides_) apply(merged);
    return merged;
  }

 private:
  template <typename Key>
  void Track(CLI::Option* opt, Key key) {
    overrides_.push_back([this, opt, key](config::Config& merged) {
      if (opt->count() > 0) key(merged) = key(flags_);
    });
  }

  CLI::App* cmd_;
  config::Command which_;
  config::Config flags_;
  std::string file_;
  std::vector<std::function<void(config::Config&)>> overrides_;
};

}  // namespace egressguard::cli
