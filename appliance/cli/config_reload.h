#pragma once
// SIGHUP: re-read --config (flags still win) and apply what can change in place: the
// log settings, and with a proxy (proxy, run) its policy lists. Connections stay up; a
// file with problems is logged with its reasons and the running config stays.

#include "appliance/cli/config_flags.h"
#include "mitm/proxy_server.h"

namespace egressguard::cli {

// `proxy` may be null (the store: only the log settings reload).
void ReloadConfig(const ConfigFlags& flags, mitm::ProxyServer* proxy);

}  // namespace egressguard::cli
