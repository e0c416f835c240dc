// The reporter's keys (issue 20): spool bounds and the reconnect backoff are read from
// the file with their ranges checked, default to what the reporter uses, and appear in
// the printed defaults; the proxy's flags for them win over the keys.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "appliance/cli/config_flags.h"
#include "appliance/config/config.h"
#include "appliance/reporter/reporter.h"

namespace egressguard::config {
namespace {

using ::testing::HasSubstr;

TEST(ReporterConfig, KeysAreReadAndDefaultToTheReportersOwn) {
  const Config defaults = Defaults(Command::kProxy);
  reporter::ReporterOptions ro;
  EXPECT_EQ(defaults.reporter.spool_max_rows, ro.spool.max_rows);
  EXPECT_EQ(defaults.reporter.spool_max_bytes, ro.spool.max_bytes);
  EXPECT_EQ(defaults.reporter.reconnect_backoff_max_ms, ro.max_backoff.count());
  EXPECT_LE(defaults.reporter.reconnect_backoff_max_ms, 5000);
  auto parsed = Parse("reporter: {spool_max_rows: 10, spool_max_bytes: 4096, reconnect_backoff_max_ms: 500}\n", defaults);
  ASSERT_TRUE(parsed.problems.empty()) << FormatProblems("t.yaml", parsed.problems);
  EXPECT_EQ(parsed.config.reporter.spool_max_rows, 10u);
  EXPECT_EQ(parsed.config.reporter.spool_max_bytes, 4096u);
  EXPECT_EQ(parsed.config.reporter.reconnect_backoff_max_ms, 500);
  const std::string yaml = DefaultsYaml(Command::kProxy);
  for (const char* key : {"spool_max_rows: 1000000", "spool_max_bytes: 1073741824", "reconnect_backoff_max_ms: 2000"}) {
    EXPECT_THAT(yaml, HasSubstr(key));
  }
}

TEST(ReporterConfig, OutOfRangeValuesAreRefusedWithTheirPosition) {
  auto parsed = Parse(
      "reporter:\n  spool_max_rows: 0\n  spool_max_bytes: -1\n  reconnect_backoff_max_ms: 50\n", Defaults(Command::kProxy));
  ASSERT_EQ(parsed.problems.size(), 3u) << FormatProblems("t.yaml", parsed.problems);
  EXPECT_EQ(parsed.problems[0].line, 2);
  EXPECT_THAT(parsed.problems[0].reason, HasSubstr("reporter.spool_max_rows must be between 1 and"));
  EXPECT_EQ(parsed.problems[1].line, 3);
  EXPECT_THAT(parsed.problems[1].reason, HasSubstr("reporter.spool_max_bytes"));
  EXPECT_EQ(parsed.problems[2].line, 4);
  EXPECT_THAT(parsed.problems[2].reason, HasSubstr("reporter.reconnect_backoff_max_ms must be between 100 and 120000"));
  EXPECT_FALSE(Parse("reporter: {reconnect_backoff_max_ms: 120001}\n", Defaults(Command::kProxy)).problems.empty());
}

TEST(ReporterConfig, FlagsWinOverKeys) {
  const std::string file = (std::filesystem::temp_directory_path() / "egressguard-reporter-config.yaml").string();
  {
    std::ofstream out(file);
    out << "reporter: {spool_max_rows: 10, spool_max_bytes: 4096, reconnect_backoff_max_ms: 500}\n";
  }
  CLI::App app;
  auto* cmd = app.add_subcommand("proxy");
  cli::ConfigFlags flags(cmd, Command::kProxy);
  using C = Config;
  flags.Option("--spool-max-rows", [](C& c) -> auto& { return c.reporter.spool_max_rows; }, "");
  flags.Option("--reconnect-backoff-max-ms", [](C& c) -> auto& { return c.reporter.reconnect_backoff_max_ms; }, "");
  app.parse("proxy --reconnect-backoff-max-ms 300 --config " + file, false);
  auto resolved = flags.Resolve();
  std::remove(file.c_str());
  ASSERT_TRUE(resolved.ok()) << resolved.status();
  EXPECT_EQ(resolved->reporter.reconnect_backoff_max_ms, 300);  // the flag
  EXPECT_EQ(resolved->reporter.spool_max_rows, 10u);            // the key (flag not given)
  EXPECT_EQ(resolved->reporter.spool_max_bytes, 4096u);
}

}  // namespace
}  // namespace egressguard::config
