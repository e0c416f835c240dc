#include "appliance/logging.h"

#include <fmt/chrono.h>
#include <fmt/format.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <mutex>

#include "appliance/config/config.h"

namespace egressguard::appliance {
namespace {

struct State {
  std::mutex mu;
  std::string flag_level;
  std::string flag_format;
};

State& GlobalState() {
  static State state;
  return state;
}

// The format in force, for lines written without spdlog (a fatal start error).
std::atomic<bool> g_json{false};


std::string_view LevelName(spdlog::level::level_enum level) {
  switch (level) {
    case spdlog::level::trace: return "trace";
    case spdlog::level::debug: return "debug";
    case spdlog::level::info: return "info";
    case spdlog::level::warn: return "warn";
    case spdlog::level::err: return "error";
    case spdlog::level::critical: return "critical";
    default: return "off";
  }
}

class JsonFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(msg.time.time_since_epoch()).count() % 1000;
    const std::string ts = fmt::format("{:%Y-%m-%dT%H:%M:%S}.{:03}Z", fmt::gmtime(std::chrono::system_clock::to_time_t(msg.time)), ms);
    std::string line = FormatJsonLogLine(ts, LevelName(msg.level), std::string_view(msg.logger_name.data(), msg.logger_name.size()),
                                         std::string_view(msg.payload.data(), msg.payload.size()));
    line += '\n';
    dest.append(line.data(), line.data() + line.size());
  }
  std::unique_ptr<spdlog::formatter> clone() const override { return std::make_unique<JsonFormatter>(); }
};

spdlog::level::level_enum ToLevel(std::string_view level) {
  if (level == "trace") return spdlog::level::trace;
  if (level == "debug") return spdlog::level::debug;
  if (level == "warn") return spdlog::level::warn;
  if (level == "error") return spdlog::level::err;
  return spdlog::level::info;
}

absl::Status Configure(std::string_view level, std::string_view format) {
  if (auto st = config::CheckLogLevel(level); !st.ok()) return st;
  if (auto st = config::CheckLogFormat(format); !st.ok()) return st;
  static std::once_flag once;
  std::call_once(once, [] {
    auto logger = std::make_shared<spdlog::logger>("egressguard", std::make_shared<spdlog::sinks::stderr_color_sink_mt>());
    spdlog::set_default_logger(logger);
  });
  spdlog::set_level(ToLevel(level));
  g_json.store(format == "json", std::memory_order_relaxed);
  if (format == "json") {
    spdlog::set_formatter(std::make_unique<JsonFormatter>());
  } else {
    spdlog::set_formatter(std::make_unique<spdlog::pattern_formatter>());
  }
  return absl::OkStatus();
}

}  // namespace


std::string FormatJsonLogLine(std::string_view ts, std::string_view level, std::string_view logger,
                              std::string_view msg) {
  std::string out = "{\"ts\":\"";
  AppendJsonEscaped(out, ts);
  out += "\",\"level\":\"";
  AppendJsonEscaped(out, level);
  out += "\",\"logger\":\"";
  AppendJsonEscaped(out, logger);
  out += "\",\"msg\":\"";
  AppendJsonEscaped(out, msg);
  out += "\"}";
  return out;
}

void PrintFatal(std::string_view command, std::string_view what) {
  const std::string msg = fmt::format("egressguard {}: {}", command, what);
  if (!g_json.load(std::memory_order_relaxed)) {
    std::fprintf(stderr, "%s\n", msg.c_str());
    return;
  }
  const auto now = std::chrono::system_clock::now();
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  const std::string ts =
      fmt::format("{:%Y-%m-%dT%H:%M:%S}.{:03}Z", fmt::gmtime(std::chrono::system_clock::to_time_t(now)), ms);
  std::fprintf(stderr, "%s\n", FormatJsonLogLine(ts, "critical", "egressguard", msg).c_str());
}

absl::Status SetLogFlags(std::string level, std::string format) {
  State& s = GlobalState();
  std::lock_guard lock(s.mu);
  s.flag_level = std::move(level);
  s.flag_format = std::move(format);
  return Configure(s.flag_level.empty() ? "info" : s.flag_level, s.flag_format.empty() ? "text" : s.flag_format);
}

absl::Status ApplyLogConfig(std::string_view level, std::string_view format) {
  State& s = GlobalState();
  std::lock_guard lock(s.mu);
  return Configure(s.flag_level.empty() ? level : std::string_view(s.flag_level),
                   s.flag_format.empty() ? format : std::string_view(s.flag_format));
}

}  // namespace egressguard::appliance
