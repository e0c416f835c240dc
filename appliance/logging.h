#pragma once
// Process-wide logging: level and format (text for people, JSON lines for log
// shippers) from the global `--log-level/--log-format` flags or the config file's
// `log` section, the flags winning. Logs go to stderr, so stdout stays for the
// commands' own output (ready lines, query results).
//
// What is logged never carries payload or matched data: callers log sizes, rule ids,
// categories and destinations, never bodies or match text.

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "appliance/json_text.h"  // AppendJsonEscaped, which the log lines use

namespace egressguard::appliance {

// The global flags as given (empty: not given); applies them (or the defaults).
absl::Status SetLogFlags(std::string level, std::string format);

// A config file's `log` section; a flag given on the command line keeps its value.
absl::Status ApplyLogConfig(std::string_view level, std::string_view format);

// A fatal error that ends a command (cannot start, bad config): "egressguard
// COMMAND: WHAT" on stderr, or one JSON line at level "critical" when the log
// format is json, so a log shipper parses it like every other line.
void PrintFatal(std::string_view command, std::string_view what);

// One JSON object per line: {"ts","level","logger","msg"} (exposed for tests).
std::string FormatJsonLogLine(std::string_view ts, std::string_view level, std::string_view logger,
                              std::string_view msg);


}  // namespace egressguard::appliance
