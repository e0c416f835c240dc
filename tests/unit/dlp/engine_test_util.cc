#include "tests/unit/dlp/engine_test_util.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>

#include "dlp/validators.h"
#include "rules/pack_loader.h"

namespace egressguard::dlp::testing {

rules::v1::Rule MakeRule(const std::string& id, const std::string& category, std::vector<std::string> patterns,
                         const std::string& validator, rules::v1::Action action) {
  rules::v1::Rule r;
  r.set_id(id);
  r.set_version(1);
  r.set_category(category);
  for (auto& p : patterns) r.add_patterns(p);
  r.set_validator(validator);
  r.set_action(action);
  r.set_severity(rules::v1::MEDIUM);
  r.set_enabled(true);
  return r;
}

rules::v1::RulePack MakePack(std::vector<rules::v1::Rule> rules) {
  rules::v1::RulePack pack;
  pack.set_name("test");
  pack.set_version("test.1");
  for (auto& r : rules) *pack.add_rules() = std::move(r);
  return pack;
}

rules::v1::RulePack DefaultPack() {
  rules::LoadOptions opts;
  opts.known_validator = [](std::string_view name) { return FindValidator(name) != nullptr; };
  auto pack = rules::LoadPackAny(EGRESSGUARD_DEFAULT_PACK_DIR, opts);
  EXPECT_TRUE(pack.ok()) << pack.status();
  return pack.ok() ? *pack : rules::v1::RulePack();
}

EnginePtr CompileOrDie(const rules::v1::RulePack& pack, EngineOptions options) {
  if (options.fingerprint_key.empty()) options.fingerprint_key = "test-key";
  auto engine = Engine::Compile(pack, options);
  EXPECT_TRUE(engine.ok()) << engine.status();
  return engine.ok() ? *engine : nullptr;
}

MessageResult ScanSplit(const EnginePtr& engine, std::string_view data, const std::vector<size_t>& cuts,
                        const ContentHint& hint) {
  Scanner scanner;
  auto scan = scanner.Open(engine, hint);
  size_t at = 0;
  for (size_t cut : cuts) {
    cut = std::clamp(cut, at, data.size());
    scan->Feed(data.substr(at, cut - at));
    at = cut;
  }
  scan->Feed(data.substr(at));
  return scan->Finish();
}

MessageResult ScanWhole(const EnginePtr& engine, std::string_view data, const ContentHint& hint) {
  return ScanSplit(engine, data, {}, hint);
}

std::string Describe(const MessageResult& r) {
  std::string s = fmt::format("action={} reason={} [", static_cast<int>(r.action), r.reason);
  for (const auto& f : r.findings) {
    s += fmt::format(" {}/{} n={} [{},{}) '{}' sev={}", f.rule_id(), f.category(), f.count(), f.start(), f.end(),
                     f.evidence(), static_cast<int>(f.severity()));
  }
  return s + " ]";
}

const v1::Finding* FindCategory(const MessageResult& r, std::string_view category) {
  for (const auto& f : r.findings) {
    if (f.category() == category) return &f;
  }
  return nullptr;
}

}  // namespace egressguard::dlp::testing
