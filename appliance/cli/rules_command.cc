// `egressguard rules validate|test`: how a compliance officer checks a rule pack before
// pushing it. The store's `rules push|activate|...` (rules_admin_command.cc) extend the
// same `rules` command.
#include <fmt/format.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <iostream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "appliance/cli/command.h"
#include "appliance/engine_setup.h"
#include "appliance/cli/store_client.h"
#include "dlp/engine.h"
#include "dlp/validators.h"
#include "rules/pack_loader.h"
#include "rules/pattern_check.h"
#include "rules/sample_set.h"
#include "appliance/pack_scoring.h"

namespace egressguard::cli {

namespace {


struct LoadedPack {
  rules::v1::RulePack pack;
  dlp::EnginePtr engine;
  double compile_ms = 0;
};

// Loads, checks and compiles `path`; prints the reasons and returns false when refused.
bool LoadAndCompile(const std::string& command, const std::string& path, LoadedPack* out,
                    dlp::EngineOptions options = {}) {
  auto pack = rules::LoadPackAny(path, appliance::PackLoadOptions());
  if (!pack.ok()) {
    std::cerr << "egressguard " << command << ": " << path << ": " << pack.status().message() << "\n";
    return false;
  }
  const auto t0 = std::chrono::steady_clock::now();
  auto engine = dlp::Engine::Compile(*pack, options);
  out->compile_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  if (!engine.ok()) {
    std::cerr << "egressguard " << command << ": " << path << ": the engine refused the pack: "
              << engine.status().message() << "\n";
    return false;
  }
  out->pack = *std::move(pack);
  out->engine = *std::move(engine);
  return true;
}

int RunValidate(const std::string& path) {
  LoadedPack loaded;
  if (!LoadAndCompile("rules validate", path, &loaded)) return kExitError;
  const auto& pack = loaded.pack;
  std::set<std::string> categories;
  int enabled = 0;
  for (const auto& r : pack.rules()) {
    categories.insert(r.category());
    if (r.enabled()) ++enabled;
  }
  std::cout << fmt::format("{}: valid: pack {} {}, {} rules ({} enabled), {} categories, compiled in {:.0f} ms, "
                           "{} bytes of stream state\n",
                           path, pack.name(), pack.version(), pack.rules_size(), enabled, categories.size(),
                           loaded.compile_ms, loaded.engine->stream_state_bytes());
  return kExitOk;
}

struct TestFlags {
  std::string path;
  std::string samples;
  double min = 0.98;
};

int RunTest(const TestFlags& f) {
  LoadedPack loaded;
  if (!LoadAndCompile("rules test", f.path, &loaded, appliance::ScoringEngineOptions())) return kExitError;
  auto samples = rules::LoadSamples(f.samples);
  if (!samples.ok()) {
    std::cerr << "egressguard rules test: " << samples.status().message() << "\n";
    return kExitError;
  }
  if (samples->empty()) {
    std::cerr << "egressguard rules test: " << f.samples << ": no samples (files with a .expect sidecar)\n";
    return kExitError;
  }
  appliance::PackScorer scorer(loaded.engine);
  for (const auto& sample : *samples) {
    std::ifstream in(sample.path, std::ios::binary);
    std::ostringstream content;
    if (in) content << in.rdbuf();
    if (!in || in.bad()) {
      std::cerr << "egressguard rules test: " << sample.path << ": cannot read\n";
      return kExitError;
    }
    scorer.Add(sample, content.str());
  }
  const appliance::PackScore score = scorer.Result();
  std::cout << fmt::format("pack {} {} on {}\n", loaded.pack.name(), loaded.pack.version(), f.samples)
            << score.Report();
  const auto below = score.Below(f.min);
  if (!below.empty()) {
    std::cout << fmt::format("FAIL: below {:.2f}:", f.min);
    for (const auto& b : below) std::cout << " " << b << ";";
    std::cout << "\n";
    return kExitFindings;
  }
  std::cout << fmt::format("OK: every category at or above {:.2f} precision and recall\n", f.min);
  return kExitOk;
}

}  // namespace

void RegisterRules(CLI::App& app, Context& ctx) {
  auto* rules_cmd = FindOrAddSubcommand(app, "rules", "Validate, test and manage rule packs");
  rules_cmd->require_subcommand(1);

  auto validate_path = std::make_shared<std::string>();
  auto* validate = rules_cmd->add_subcommand(
      "validate", "Check a rule pack (file or directory): schema, ids, validators, patterns, engine compile");
  validate->add_option("pack", *validate_path, "Pack YAML file or directory")->required();
  validate->callback([&ctx, validate_path] { ctx.exit_code = RunValidate(*validate_path); });

  auto test = std::make_shared<TestFlags>();
  auto* t = rules_cmd->add_subcommand(
      "test", "Scan labelled samples (files with a <file>.expect sidecar) and print precision/recall per category");
  t->add_option("pack", test->path, "Pack YAML file or directory")->required();
  t->add_option("--samples", test->samples, "Directory of samples (searched recursively)")->required();
  t->add_option("--min", test->min, "Exit 1 when any category's precision or recall is below this")
      ->default_val(0.98)
      ->check(CLI::Range(0.0, 1.0));
  t->callback([&ctx, test] { ctx.exit_code = RunTest(*test); });
}

}  // namespace egressguard::cli
