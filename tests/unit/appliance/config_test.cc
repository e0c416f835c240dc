// The config loader: good files, every kind of bad key or value with its position,
// the defaults round trip, and the flag > key > default precedence of ConfigFlags.
#include "appliance/config/config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "appliance/cli/config_flags.h"
#include "appliance/logging.h"

namespace egressguard::config {
namespace {

using ::testing::HasSubstr;

// The one problem a text has (fails the test when there is not exactly one).
Problem OnlyProblem(std::string_view yaml) {
  auto parsed = Parse(yaml, Defaults(Command::kProxy));
  EXPECT_EQ(parsed.problems.size(), 1u) << FormatProblems("t.yaml", parsed.problems);
  return parsed.problems.empty() ? Problem{} : parsed.problems.front();
}

// A config file is one YAML document. yaml-cpp 0.7 reads a stray ',' after it as endless
// empty documents (upstream issue 1040); YAML::Load used to drop them, and a second
// document, silently. Refused at once, where the second document starts.
TEST(ConfigParse, SecondDocumentOrStrayContentIsRefused) {
  const auto t0 = std::chrono::steady_clock::now();
  Problem p = OnlyProblem("[a]\n,");
  EXPECT_EQ(p.line, 2);
  EXPECT_EQ(p.column, 1);
  EXPECT_THAT(p.reason, HasSubstr("a second YAML document starts here"));
  p = OnlyProblem("proxy: {mode: enforce}\n---\nproxy: {mode: monitor}\n");
  EXPECT_EQ(p.line, 2);
  EXPECT_THAT(p.reason, HasSubstr("second YAML document"));
  for (const char* text : {",", "{log: {level: info}}\n,", "{log: {level: info}}\n,\n,\n,\n", "{}\n,", "[]\n, ,"}) {
    EXPECT_THAT(OnlyProblem(text).reason, HasSubstr("second YAML document")) << text;
  }
  // After a block mapping a stray ',' is a plain syntax error: refused too.
  EXPECT_THAT(OnlyProblem("log: {level: info}\n,\n").reason, HasSubstr("not valid YAML: end of map not found"));
  EXPECT_TRUE(Parse("---\nlog: {level: info}\n...\n", Defaults(Command::kProxy)).problems.empty());
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
}

TEST(ConfigParse, GoodFileSetsEveryKindOfValue) {
  auto parsed = Parse(R"(
home: /var/lib/egressguard
proxy:
  listen: "0.0.0.0:3128"
  workers: 4
  mode: enforce
  allow: ["*.example.com:443", "10.0.0.0/8:443@GET,HEAD"]
  no_decrypt: [bank.example]
  client_cidrs: [10.0.0.0/8]
  fail_open: true
  limits: {max_connections: 500}
  timeouts: {idle_ms: 30000}
  proxy_protocol: yes
  workloads:
    - workload: payments
      cidrs: [10.1.0.0/16, "fd00::/8"]
reporter: {store: "store.egress.svc:7443", tls: {cert: a.pem, key: a.key, ca: ca.pem}}
store: {listen: "0.0.0.0:7443", db: /data/store.db, tls: {client_ca: api-ca.pem}, retention_days: 30}
admin: {listen: "0.0.0.0:9090"}
log: {level: debug, format: json}
)",
                      Defaults(Command::kProxy));
  ASSERT_TRUE(parsed.problems.empty()) << FormatProblems("t.yaml", parsed.problems);
  const Config& c = parsed.config;
  EXPECT_EQ(c.home, "/var/lib/egressguard");
  EXPECT_EQ(c.proxy.listen, "0.0.0.0:3128");
  EXPECT_EQ(c.proxy.workers, 4);
  EXPECT_EQ(c.proxy.mode, "enforce");
  EXPECT_THAT(c.proxy.allow, ::testing::ElementsAre("*.example.com:443", "10.0.0.0/8:443@GET,HEAD"));
  EXPECT_THAT(c.proxy.client_cidrs, ::testing::ElementsAre("10.0.0.0/8"));
  EXPECT_TRUE(c.proxy.fail_open);
  EXPECT_EQ(c.proxy.max_connections, 500u);
  EXPECT_EQ(c.proxy.idle_timeout_ms, 30000);
  EXPECT_EQ(c.proxy.header_timeout_ms, 10000) << "keys left out keep the default";
  EXPECT_TRUE(c.proxy.proxy_protocol);
  ASSERT_EQ(c.proxy.workloads.size(), 1u);
  EXPECT_EQ(c.proxy.workloads[0].workload, "payments");
  EXPECT_THAT(c.proxy.workloads[0].cidrs, ::testing::ElementsAre("10.1.0.0/16", "fd00::/8"));
  EXPECT_EQ(c.reporter.store, "store.egress.svc:7443");
  EXPECT_EQ(c.reporter.tls.ca, "ca.pem");
  EXPECT_EQ(c.store.tls.ca, "api-ca.pem");
  EXPECT_EQ(c.store.retention_days, 30);
  EXPECT_EQ(c.admin.listen, "0.0.0.0:9090");
  EXPECT_EQ(c.log.format, "json");

  auto proxy = ToProxyConfig(c);
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  EXPECT_EQ(proxy->listen_address, "0.0.0.0");
  EXPECT_EQ(proxy->listen_port, 3128);
  EXPECT_EQ(proxy->mode, mitm::EnforceMode::kEnforce);
  EXPECT_EQ(proxy->idle_timeout, std::chrono::milliseconds(30000));
  ASSERT_EQ(proxy->workloads.size(), 1u);
  EXPECT_EQ(proxy->workloads[0].workload, "payments");
  EXPECT_TRUE(proxy->proxy_protocol);
}

TEST(ConfigParse, EmptyFileIsTheDefaults) {
  auto parsed = Parse("", Defaults(Command::kRun));
  EXPECT_TRUE(parsed.problems.empty());
  EXPECT_EQ(parsed.config, Defaults(Command::kRun));
}

TEST(ConfigParse, UnknownKeyAtItsPosition) {
  auto p = OnlyProblem("proxy:\n  listen: 127.0.0.1:3128\n  alow: [\"*\"]\n");
  EXPECT_EQ(p.line, 3);
  EXPECT_EQ(p.column, 3);
  EXPECT_THAT(p.reason, HasSubstr("unknown key 'proxy.alow'"));
  EXPECT_THAT(p.reason, HasSubstr("allow"));
  auto top = OnlyProblem("prxy: {}\n");
  EXPECT_EQ(top.line, 1);
  EXPECT_THAT(top.reason, HasSubstr("unknown key 'prxy'"));
}

TEST(ConfigParse, WrongTypes) {
  auto list = OnlyProblem("proxy:\n  allow: \"*:443\"\n");
  EXPECT_EQ(list.line, 2);
  EXPECT_EQ(list.column, 10);
  EXPECT_THAT(list.reason, HasSubstr("proxy.allow must be a list"));
  auto integer = OnlyProblem("proxy:\n  workers: many\n");
  EXPECT_EQ(integer.line, 2);
  EXPECT_THAT(integer.reason, HasSubstr("proxy.workers must be an integer"));
  auto boolean = OnlyProblem("proxy:\n  fail_open: sometimes\n");
  EXPECT_THAT(boolean.reason, HasSubstr("proxy.fail_open must be true or false"));
  auto section = OnlyProblem("proxy: [1, 2]\n");
  EXPECT_THAT(section.reason, HasSubstr("proxy must be a mapping"));
  auto string = OnlyProblem("ca:\n  cert: {a: b}\n");
  EXPECT_THAT(string.reason, HasSubstr("ca.cert must be a string"));
}

TEST(ConfigParse, BadValues) {
  auto listen = OnlyProblem("proxy:\n  listen: \"example.com:3128\"\n");
  EXPECT_EQ(listen.line, 2);
  EXPECT_THAT(listen.reason, HasSubstr("not an IP address"));
  auto port = OnlyProblem("admin:\n  listen: \"127.0.0.1:99999\"\n");
  EXPECT_THAT(port.reason, HasSubstr("no valid port"));
  auto cidr = OnlyProblem("proxy:\n  client_cidrs:\n    - 10.0.0.0/8\n    - 10.0.0.0/33\n");
  EXPECT_EQ(cidr.line, 4);
  EXPECT_EQ(cidr.column, 7);
  EXPECT_THAT(cidr.reason, HasSubstr("proxy.client_cidrs"));
  auto rule = OnlyProblem("proxy:\n  allow: [\"example.com:notaport\"]\n");
  EXPECT_EQ(rule.line, 2);
  EXPECT_THAT(rule.reason, HasSubstr("proxy.allow"));
  auto mode = OnlyProblem("proxy:\n  mode: block\n");
  EXPECT_THAT(mode.reason, HasSubstr("unknown mode 'block'"));
  auto range = OnlyProblem("proxy:\n  workers: 1000\n");
  EXPECT_THAT(range.reason, HasSubstr("between 0 and 256"));
  auto level = OnlyProblem("log: {level: loud}\n");
  EXPECT_THAT(level.reason, HasSubstr("unknown log level"));
  auto workload = OnlyProblem("proxy:\n  workloads:\n    - workload: a\n      cidrs: [nope]\n");
  EXPECT_EQ(workload.line, 4);
  EXPECT_THAT(workload.reason, HasSubstr("proxy.workloads[0].cidrs"));
  auto nameless = OnlyProblem("proxy:\n  workloads:\n    - cidrs: [10.0.0.0/8]\n");
  EXPECT_THAT(nameless.reason, HasSubstr("needs a workload name"));
  auto duplicate = OnlyProblem("log: {level: info}\nlog: {level: debug}\n");
  EXPECT_EQ(duplicate.line, 2);
  EXPECT_THAT(duplicate.reason, HasSubstr("duplicate key 'log'"));
  auto syntax = OnlyProblem("proxy:\n  allow: [\"a\"\n");
  EXPECT_THAT(syntax.reason, HasSubstr("not valid YAML"));
  EXPECT_GT(syntax.line, 0);
}

TEST(ConfigParse, MaxFindingSpans) {
  EXPECT_EQ(Defaults(Command::kProxy).rules.max_finding_spans, 16u);
  EXPECT_EQ(Defaults(Command::kRun).rules.max_finding_spans, 16u);
  for (uint32_t n : {0u, 1u, 256u}) {
    auto parsed = Parse("rules:\n  max_finding_spans: " + std::to_string(n) + "\n", Defaults(Command::kProxy));
    EXPECT_TRUE(parsed.problems.empty()) << FormatProblems("t.yaml", parsed.problems);
    EXPECT_EQ(parsed.config.rules.max_finding_spans, n);
  }
  auto high = OnlyProblem("rules:\n  max_finding_spans: 257\n");
  EXPECT_EQ(high.line, 2);
  EXPECT_THAT(high.reason, HasSubstr("rules.max_finding_spans must be between 0 and 256, got 257"));
  EXPECT_THAT(OnlyProblem("rules:\n  max_finding_spans: -1\n").reason, HasSubstr("rules.max_finding_spans"));
  EXPECT_THAT(OnlyProblem("rules:\n  max_finding_spans: lots\n").reason, HasSubstr("must be an integer"));
}

TEST(ConfigParse, ReportsEveryProblemAtOnce) {
  auto parsed = Parse("proxy:\n  mode: x\n  workers: y\nbogus: 1\n", Defaults(Command::kProxy));
  ASSERT_EQ(parsed.problems.size(), 3u);
  EXPECT_EQ(FormatProblems("f.yaml", parsed.problems).substr(0, 11), "f.yaml:2:9:");
}

TEST(ConfigDefaults, RoundTripForEveryCommand) {
  for (Command command : {Command::kProxy, Command::kStore, Command::kRun}) {
    const std::string yaml = DefaultsYaml(command);
    // Over a base that differs, so every key must really be in the text.
    Config other = Defaults(Command::kProxy);
    other.proxy.allow = {"other:1"};
    other.proxy.listen = "127.0.0.2:1";
    other.store.listen = "127.0.0.2:2";
    other.admin.listen = "127.0.0.2:3";
    other.proxy.mode = command == Command::kRun ? "monitor" : "enforce";
    other.log.level = "error";
    other.proxy.client_cidrs = {};
    auto parsed = Parse(yaml, other);
    ASSERT_TRUE(parsed.problems.empty()) << FormatProblems("defaults", parsed.problems) << "\n" << yaml;
    EXPECT_EQ(parsed.config, Defaults(command)) << yaml;
  }
  EXPECT_THAT(DefaultsYaml(Command::kRun), HasSubstr("\"*:443\""));
}

TEST(ConfigLoad, FileErrorsNameTheFile) {
  const std::string path = ::testing::TempDir() + "/egressguard-config-test.yaml";
  {
    std::ofstream out(path);
    out << "proxy:\n  listen: nowhere\n";
  }
  auto loaded = LoadFile(path, Defaults(Command::kProxy));
  ASSERT_FALSE(loaded.ok());
  EXPECT_THAT(std::string(loaded.status().message()), HasSubstr(path + ":2:11: proxy.listen"));
  std::remove(path.c_str());
  EXPECT_FALSE(LoadFile(path, Defaults(Command::kProxy)).ok());
}

// A flag given wins over the key, the key over the built-in default.
TEST(ConfigFlags, FlagOverKeyOverDefault) {
  const std::string path = ::testing::TempDir() + "/egressguard-flags-test.yaml";
  {
    std::ofstream out(path);
    out << "proxy:\n  listen: \"127.0.0.1:4000\"\n  allow: [\"a.example:443\"]\n  workers: 3\n";
  }
  CLI::App app;
  auto* cmd = app.add_subcommand("proxy");
  cli::ConfigFlags flags(cmd, Command::kProxy);
  using C = Config;
  flags.Option("--listen", [](C& c) -> auto& { return c.proxy.listen; }, "");
  flags.Option("--allow", [](C& c) -> auto& { return c.proxy.allow; }, "");
  flags.Option("--workers", [](C& c) -> auto& { return c.proxy.workers; }, "");
  flags.Option("--hold-limit", [](C& c) -> auto& { return c.proxy.hold_limit; }, "");
  flags.Flag("--fail-open", [](C& c) -> auto& { return c.proxy.fail_open; }, "");
  app.parse("proxy --config " + path + " --listen 127.0.0.1:5000 --allow b.example:443 --fail-open", false);
  auto resolved = flags.Resolve();
  ASSERT_TRUE(resolved.ok()) << resolved.status();
  EXPECT_EQ(resolved->proxy.listen, "127.0.0.1:5000");                                  // flag over key
  EXPECT_THAT(resolved->proxy.allow, ::testing::ElementsAre("b.example:443"));          // flag replaces the list
  EXPECT_EQ(resolved->proxy.workers, 3);                                                // key over default
  EXPECT_EQ(resolved->proxy.hold_limit, Defaults(Command::kProxy).proxy.hold_limit);   // default
  EXPECT_TRUE(resolved->proxy.fail_open);

  // Without the file the flags still apply over the defaults.
  CLI::App bare;
  auto* bare_cmd = bare.add_subcommand("proxy");
  cli::ConfigFlags bare_flags(bare_cmd, Command::kRun);
  bare_flags.Option("--workers", [](C& c) -> auto& { return c.proxy.workers; }, "");
  bare.parse("proxy --workers 2", false);
  auto defaults = bare_flags.Resolve();
  ASSERT_TRUE(defaults.ok());
  EXPECT_EQ(defaults->proxy.workers, 2);
  EXPECT_THAT(defaults->proxy.allow, ::testing::ElementsAre("*:443"));
  std::remove(path.c_str());
}

TEST(JsonLog, EscapesEverythingIntoOneLine) {
  const std::string line = appliance::FormatJsonLogLine("t", "info", "egressguard", "a \"q\" \\ \n\t\x01 \xff é end");
  EXPECT_EQ(line, "{\"ts\":\"t\",\"level\":\"info\",\"logger\":\"egressguard\",\"msg\":\"a \\\"q\\\" \\\\ \\n\\t\\u0001 \\ufffd é end\"}");
  EXPECT_EQ(line.find('\n'), std::string::npos);
  std::string truncated;
  appliance::AppendJsonEscaped(truncated, "\xc3");  // a cut multi-byte sequence
  EXPECT_EQ(truncated, "\\ufffd");
}

}  // namespace
}  // namespace egressguard::config
