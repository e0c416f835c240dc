// `egressguard verdicts query|show|stats`: read the compliance store (officer or auditor).
#include <fmt/format.h>
#include <google/protobuf/util/time_util.h>

#include <cctype>
#include <iostream>
#include <set>
#include <thread>

#include "appliance/cli/command.h"
#include "appliance/cli/rule_names.h"
#include "appliance/cli/store_client.h"
#include "appliance/reporter/reporter.h"
#include "egressguard/v1/store.grpc.pb.h"

namespace egressguard::cli {

namespace {

using google::protobuf::util::TimeUtil;

struct FilterFlags {
  std::string since, until, client, workload, host, category, rule, action, pack, appliance;
};

void AddFilterFlags(CLI::App& cmd, FilterFlags& f) {
  cmd.add_option("--since", f.since, "From this time: RFC 3339 (2026-11-26T10:00:00Z) or an age (90m, 24h, 7d)");
  cmd.add_option("--until", f.until, "Before this time (same forms)");
  cmd.add_option("--client", f.client, "Client address");
  cmd.add_option("--workload", f.workload, "Workload identity");
  cmd.add_option("--host", f.host, "Destination host (SNI or Host)");
  cmd.add_option("--category", f.category, "Finding category, e.g. credit_card");
  cmd.add_option("--rule", f.rule, "Rule id");
  cmd.add_option("--action", f.action, "allow, alert or block")->check(CLI::IsMember({"allow", "alert", "block"}));
  cmd.add_option("--pack-version", f.pack, "Rule pack version that judged the verdict");
  cmd.add_option("--appliance", f.appliance, "Reporting appliance");
}

absl::StatusOr<google::protobuf::Timestamp> ParseTime(const std::string& text) {
  google::protobuf::Timestamp t;
  if (TimeUtil::FromString(text, &t)) return t;
  static const std::vector<std::pair<char, int64_t>> kUnits = {{'s', 1}, {'m', 60}, {'h', 3600}, {'d', 86400}};
  if (text.size() >= 2) {
    for (const auto& [unit, seconds] : kUnits) {
      if (text.back() != unit) continue;
      try {
        size_t used = 0;
        long long n = std::stoll(text.substr(0, text.size() - 1), &used);
        if (used == text.size() - 1 && n >= 0) {
          return TimeUtil::SecondsToTimestamp(TimeUtil::TimestampToSeconds(TimeUtil::GetCurrentTime()) - n * seconds);
        }
      } catch (const std::exception&) {
      }
    }
  }
  return absl::InvalidArgumentError(fmt::format("cannot read time '{}': use RFC 3339 or an age like 24h", text));
}

absl::Status FillFilter(const FilterFlags& f, v1::VerdictFilter* out) {
  if (!f.since.empty()) {
    auto t = ParseTime(f.since);
    if (!t.ok()) return t.status();
    *out->mutable_since() = *t;
  }
  if (!f.until.empty()) {
    auto t = ParseTime(f.until);
    if (!t.ok()) return t.status();
    *out->mutable_until() = *t;
  }
  out->set_client_address(f.client);
  out->set_workload(f.workload);
  out->set_host(f.host);
  out->set_category(f.category);
  out->set_rule_id(f.rule);
  out->set_rule_pack_version(f.pack);
  out->set_appliance(f.appliance);
  if (f.action == "allow") out->set_action(rules::v1::ALLOW);
  if (f.action == "alert") out->set_action(rules::v1::ALERT);
  if (f.action == "block") out->set_action(rules::v1::BLOCK);
  return absl::OkStatus();
}

std::string ActionName(rules::v1::Action a) {
  switch (a) {
    case rules::v1::ALLOW: return "allow";
    case rules::v1::ALERT: return "alert";
    case rules::v1::BLOCK: return "block";
    default: return "-";
  }
}

struct QueryFlags {
  StoreClientFlags client;
  FilterFlags filter;
  uint32_t limit = 50;
  std::string page_token;
  bool oldest_first = false;
  bool all = false;
  bool json = false;
};

int RunQuery(const QueryFlags& flags) {
  v1::QueryRequest request;
  if (auto s = FillFilter(flags.filter, request.mutable_filter()); !s.ok()) {
    std::cerr << "egressguard verdicts query: " << s.message() << "\n";
    return kExitError;
  }
  request.set_order(flags.oldest_first ? v1::OLDEST_FIRST : v1::NEWEST_FIRST);
  request.set_page_size(flags.limit);
  request.set_page_token(flags.page_token);
  if (!flags.json) {
    std::cout << fmt::format("{:<27} {:<6} {:<28} {:<22} {:<24} {:<12} {}\n", "TIME", "ACTION", "DESTINATION",
                             "CLIENT", "CATEGORIES", "PACK", "ID");
  }
  v1::QueryResponse all;
  auto page_call = [&](auto& stub, auto& ctx) {
    v1::QueryResponse page;
    auto status = stub.Query(&ctx, request, &page);
    if (!status.ok()) return status;
    for (const auto& v : page.verdicts()) {
      if (flags.json) {
        *all.add_verdicts() = v;
        continue;
      }
      std::set<std::string> cats;
      for (const auto& f : v.findings()) cats.insert(f.category());
      std::string c;
      for (const auto& x : cats) c += (c.empty() ? "" : ",") + x;
      std::cout << fmt::format("{:<27} {:<6} {:<28} {:<22} {:<24} {:<12} {}\n", TimeUtil::ToString(v.time()),
                               ActionName(v.action()), fmt::format("{}:{}", v.host(), v.port()), v.client_address(),
                               c.empty() ? "-" : c, v.rule_pack_version(), v.id());
    }
    all.set_next_page_token(page.next_page_token());
    request.set_page_token(page.next_page_token());
    return status;
  };
  int rc = CallStore<v1::VerdictQuery>(flags.client, "verdicts query", page_call,
                                       [&] { return flags.all && !all.next_page_token().empty(); });
  if (rc != kExitOk) return rc;
  PrintResult(flags.json, all, [&] {
    if (!all.next_page_token().empty()) std::cout << "more: --page-token " << all.next_page_token() << "\n";
  });
  return kExitOk;
}

struct ShowFlags {
  StoreClientFlags client;
  std::string id;
  bool json = false;
};

// One verdict for people: who, where, what was found and where each occurrence lies.
void PrintVerdictText(const v1::Verdict& v) {
  auto line = [](const char* name, const std::string& value) {
    if (!value.empty()) std::cout << fmt::format("{:<14} {}\n", name, value);
  };
  line("id:", v.id());
  if (v.has_time()) line("time:", TimeUtil::ToString(v.time()));
  line("appliance:", v.appliance());
  line("connection:", v.connection_id());
  line("client:", v.client_address() + (v.workload().empty() ? "" : " (" + v.workload() + ")"));
  line("destination:", fmt::format("{}:{}", v.host(), v.port()));
  line("request:", fmt::format("{} {}", v.method(), v.path()));
  line("mode:", v.mode() + (v.protocol().empty() ? "" : " " + v.protocol()) +
                    (v.stream_id() == 0 ? "" : fmt::format(" stream {}", v.stream_id())));
  std::string bytes = fmt::format("out {}, in {}", v.bytes_out(), v.bytes_in());
  if (v.bytes_out_before_block() > 0) bytes += fmt::format(", out before the block {}", v.bytes_out_before_block());
  if (v.messages_out() > 0 || v.messages_in() > 0) {
    bytes += fmt::format("; messages out {}, in {}", v.messages_out(), v.messages_in());
  }
  line("bytes:", bytes);
  line("pack:", v.rule_pack_version());
  line("action:", ActionName(v.action()) + (v.enforced() ? " (enforced)" : " (monitor)"));
  line("reason:", v.reason());
  std::cout << fmt::format("{:<14} {}\n", "findings:", v.findings_size());
  for (const auto& f : v.findings()) {
    std::cout << fmt::format("  {} {} action={} severity={} count={} at {}-{}{} evidence={}{}\n", f.category(),
                             f.rule_id(), ActionName(f.action()), SeverityName(f.severity()), f.count(), f.start(),
                             f.end(), f.member().empty() ? "" : " member=" + f.member(), f.evidence(),
                             f.fingerprint().empty() ? "" : " fingerprint=" + f.fingerprint());
    for (const auto& span : f.spans()) {
      std::cout << fmt::format("    occurrence {}-{}{} {}{}\n", span.start(), span.end(),
                               span.member().empty() ? "" : " member=" + span.member(), span.evidence(),
                               span.fingerprint().empty() ? "" : " fingerprint=" + span.fingerprint());
    }
    if (f.spans_truncated()) std::cout << "    (more occurrences than listed)\n";
  }
}

int RunShow(const ShowFlags& flags) {
  v1::QueryRequest request;
  request.mutable_filter()->set_id(flags.id);
  request.set_page_size(1);
  v1::QueryResponse response;
  int rc = CallStore<v1::VerdictQuery>(flags.client, "verdicts show",
                                       [&](auto& stub, auto& ctx) { return stub.Query(&ctx, request, &response); });
  if (rc != kExitOk) return rc;
  if (response.verdicts_size() == 0 || response.verdicts(0).id() != flags.id) {
    std::cerr << "egressguard verdicts show: no verdict " << flags.id << "\n";
    return kExitError;
  }
  PrintResult(flags.json, response.verdicts(0), [&] { PrintVerdictText(response.verdicts(0)); });
  return kExitOk;
}

struct StatsFlags {
  StoreClientFlags client;
  FilterFlags filter;
  std::string by = "category";
  bool json = false;
};

// --by values and the GroupBy each asks for; workload-destination keys are "workload|host".
const std::vector<std::pair<std::string, v1::GroupBy>>& GroupByNames() {
  static const std::vector<std::pair<std::string, v1::GroupBy>> kNames = {
      {"category", v1::CATEGORY}, {"destination", v1::DESTINATION}, {"day", v1::DAY},
      {"action", v1::ACTION},     {"workload", v1::WORKLOAD},       {"workload-destination", v1::WORKLOAD_DESTINATION}};
  return kNames;
}

int RunStats(const StatsFlags& flags) {
  v1::StatsRequest request;
  if (auto s = FillFilter(flags.filter, request.mutable_filter()); !s.ok()) {
    std::cerr << "egressguard verdicts stats: " << s.message() << "\n";
    return kExitError;
  }
  for (const auto& [name, group] : GroupByNames()) {
    if (flags.by == name) request.set_group_by(group);
  }
  v1::StatsResponse response;
  int rc = CallStore<v1::VerdictQuery>(flags.client, "verdicts stats",
                                       [&](auto& stub, auto& ctx) { return stub.Stats(&ctx, request, &response); });
  if (rc != kExitOk) return rc;
  PrintResult(flags.json, response, [&] {
    const bool pairs = request.group_by() == v1::WORKLOAD_DESTINATION;
    std::string head = flags.by;
    for (auto& c : head) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    if (pairs) {
      std::cout << fmt::format("{:<32} {:<32} {:>10} {:>14} {:>14}\n", "WORKLOAD", "DESTINATION", "REQUESTS",
                               "BYTES_OUT", "BYTES_IN");
    } else {
      std::cout << fmt::format("{:<32} {:>10} {:>14} {:>14}\n", head, "VERDICTS", "BYTES_OUT", "BYTES_IN");
    }
    auto shown = [](const std::string& k) { return k.empty() ? std::string("(none)") : k; };
    for (const auto& r : response.rows()) {
      if (pairs) {
        std::cout << fmt::format("{:<32} {:<32} {:>10} {:>14} {:>14}\n", shown(r.workload()), shown(r.host()),
                                 r.verdicts(), r.bytes_out(), r.bytes_in());
      } else {
        std::cout << fmt::format("{:<32} {:>10} {:>14} {:>14}\n", shown(r.key()), r.verdicts(), r.bytes_out(),
                                 r.bytes_in());
      }
    }
  });
  return kExitOk;
}

struct SpoolFlags {
  StoreClientFlags client;
  std::string spool;
  uint64_t count = 1000;
  uint32_t rate = 0;
  std::string prefix = "gen";
  std::string fail_mode = "block";
  uint64_t max_spool = 1'000'000;
  int drain_timeout_s = 300;
};

reporter::ReporterOptions ReporterOptionsFrom(const SpoolFlags& f) {
  reporter::ReporterOptions o;
  o.spool.path = f.spool;
  o.spool.max_rows = f.max_spool;
  o.store_address = f.client.store;
  o.tls = f.client.tls;
  o.fail_mode = f.fail_mode == "drop" ? reporter::FailMode::kDropWithAlarm : reporter::FailMode::kBlock;
  return o;
}

int WaitDrained(reporter::Reporter& rep, const SpoolFlags& f) {
  if (!rep.Drain(std::chrono::seconds(f.drain_timeout_s))) {
    std::cerr << fmt::format("egressguard verdicts: {} verdicts still spooled after {} s (store unreachable?)\n",
                             rep.stats().spool_depth, f.drain_timeout_s);
    return kExitError;
  }
  auto st = rep.stats();
  std::cout << fmt::format("drained: {} acked, {} rejected by the store", st.acked, st.rejected) << std::endl;
  return kExitOk;
}

// Synthetic verdicts through the real reporter (spool + stream): a load generator
// for capacity tests, and the way to exercise a store end to end without a proxy.
int RunGenerate(const SpoolFlags& f) {
  auto rep = reporter::Reporter::Start(ReporterOptionsFrom(f));
  if (!rep.ok()) {
    std::cerr << "egressguard verdicts generate: " << rep.status().message() << "\n";
    return kExitError;
  }
  static const char* kCategories[] = {"credit_card", "iban", "email", "", "", ""};
  static const char* kHosts[] = {"api.example.com", "upload.example.net", "files.example.org", "s3.example.com"};
  const auto start = std::chrono::steady_clock::now();
  uint64_t refused = 0;
  for (uint64_t i = 0; i < f.count; ++i) {
    if (f.rate > 0) {
      std::this_thread::sleep_until(start + std::chrono::microseconds(i * 1000000 / f.rate));
    }
    v1::Verdict v;
    v.set_id(fmt::format("{}-{}", f.prefix, i));
    *v.mutable_time() = TimeUtil::GetCurrentTime();
    v.set_appliance("generator");
    v.set_client_address(fmt::format("10.0.{}.{}", (i / 250) % 250, i % 250 + 1));
    v.set_workload(fmt::format("ns{}/app", i % 7));
    v.set_host(kHosts[i % 4]);
    v.set_port(443);
    v.set_method("POST");
    v.set_path("/v1/upload");
    v.set_mode("bump");
    v.set_bytes_out(1000 + i % 5000);
    v.set_bytes_in(300);
    v.set_rule_pack_version("generated");
    const char* cat = kCategories[i % 6];
    if (*cat) {
      auto* finding = v.add_findings();
      finding->set_rule_id(fmt::format("{}.generated", cat));
      finding->set_category(cat);
      finding->set_count(1);
      finding->set_evidence("**** redacted ****");
      finding->set_fingerprint(fmt::format("{:064x}", i));
      v.set_action(i % 12 == 0 ? rules::v1::BLOCK : rules::v1::ALERT);
    } else {
      v.set_action(rules::v1::ALLOW);
    }
    if (!(*rep)->Submit(std::move(v))) ++refused;
    if ((i + 1) % 1000 == 0) std::cout << "submitted " << (i + 1) << std::endl;
  }
  std::cout << fmt::format("submitted {} (refused {})", f.count, refused) << std::endl;
  return WaitDrained(**rep, f);
}

// Sends what a spool holds (e.g. of a dead appliance) and exits when it is empty.
int RunDrain(const SpoolFlags& f) {
  auto rep = reporter::Reporter::Start(ReporterOptionsFrom(f));
  if (!rep.ok()) {
    std::cerr << "egressguard verdicts drain: " << rep.status().message() << "\n";
    return kExitError;
  }
  std::cout << "spooled: " << (*rep)->stats().spool_depth << std::endl;
  return WaitDrained(**rep, f);
}

}  // namespace

void RegisterVerdicts(CLI::App& app, Context& ctx) {
  auto* cmd = app.add_subcommand("verdicts", "Query verdicts and statistics from the compliance store");
  cmd->require_subcommand(1);

  auto q = std::make_shared<QueryFlags>();
  auto* query = cmd->add_subcommand("query", "List verdicts, newest first, matching the filters");
  AddStoreClientFlags(*query, q->client);
  AddFilterFlags(*query, q->filter);
  query->add_option("--limit", q->limit, "Verdicts per page (at most 1000)")->capture_default_str();
  query->add_option("--page-token", q->page_token, "Continue after a previous page");
  query->add_flag("--oldest-first", q->oldest_first, "Oldest first");
  query->add_flag("--all", q->all, "Follow every page");
  query->add_flag("--json", q->json, "JSON (protobuf mapping, snake_case) for scripts");
  query->callback([&ctx, q] { ctx.exit_code = RunQuery(*q); });

  auto sh = std::make_shared<ShowFlags>();
  auto* show = cmd->add_subcommand(
      "show", "One verdict by id, with each finding's located occurrences (offsets, redacted evidence, member)");
  AddStoreClientFlags(*show, sh->client);
  show->add_option("id", sh->id, "Verdict id")->required();
  show->add_flag("--json", sh->json, "JSON (protobuf mapping, snake_case) of the verdict for scripts");
  show->callback([&ctx, sh] { ctx.exit_code = RunShow(*sh); });

  auto s = std::make_shared<StatsFlags>();
  auto* stats = cmd->add_subcommand(
      "stats", "Verdicts (requests) and bytes grouped by category, destination, day, action, workload or "
               "workload-destination (egress accounting per client identity)");
  AddStoreClientFlags(*stats, s->client);
  AddFilterFlags(*stats, s->filter);
  std::vector<std::string> by_names;
  for (const auto& [name, group] : GroupByNames()) by_names.push_back(name);
  stats->add_option("--by,--group-by", s->by, "Group by")->check(CLI::IsMember(by_names))->capture_default_str();
  stats->add_flag("--json", s->json, "JSON for scripts");
  stats->callback([&ctx, s] { ctx.exit_code = RunStats(*s); });

  auto gen = std::make_shared<SpoolFlags>();
  auto* generate = cmd->add_subcommand(
      "generate", "Load generator: synthetic verdicts through the real reporter (spool + stream), then drain");
  AddStoreClientFlags(*generate, gen->client);
  generate->add_option("--spool", gen->spool, "Spool file (sqlite)")->required();
  generate->add_option("--count", gen->count, "Verdicts to submit")->capture_default_str();
  generate->add_option("--rate", gen->rate, "Verdicts per second (0: as fast as possible)")->capture_default_str();
  generate->add_option("--id-prefix", gen->prefix, "Verdict ids are PREFIX-0, PREFIX-1, ...")->capture_default_str();
  generate->add_option("--max-spool", gen->max_spool, "Spool bound")->capture_default_str();
  generate->add_option("--fail-mode", gen->fail_mode, "At the bound: block or drop")
      ->check(CLI::IsMember({"block", "drop"}))
      ->capture_default_str();
  generate->add_option("--drain-timeout", gen->drain_timeout_s, "Seconds to wait for the spool to empty")
      ->capture_default_str();
  generate->callback([&ctx, gen] { ctx.exit_code = RunGenerate(*gen); });

  auto dr = std::make_shared<SpoolFlags>();
  auto* drain = cmd->add_subcommand("drain", "Send every verdict left in a spool file to the store, then exit");
  AddStoreClientFlags(*drain, dr->client);
  drain->add_option("--spool", dr->spool, "Spool file (sqlite)")->required();
  drain->add_option("--drain-timeout", dr->drain_timeout_s, "Seconds to wait for the spool to empty")
      ->capture_default_str();
  drain->callback([&ctx, dr] { ctx.exit_code = RunDrain(*dr); });
}

}  // namespace egressguard::cli
