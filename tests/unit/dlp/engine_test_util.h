#pragma once
// Helpers shared by the engine tests: building small packs in C++, loading the shipped
// default pack, scanning a message in given chunk sizes.

#include <string>
#include <string_view>
#include <vector>

#include "dlp/engine.h"
#include "egressguard/rules/v1/rules.pb.h"

namespace egressguard::dlp::testing {

rules::v1::Rule MakeRule(const std::string& id, const std::string& category, std::vector<std::string> patterns,
                         const std::string& validator = "", rules::v1::Action action = rules::v1::ALERT);
rules::v1::RulePack MakePack(std::vector<rules::v1::Rule> rules);
// The shipped default pack (rules/default), loaded with the real loader.
rules::v1::RulePack DefaultPack();
EnginePtr CompileOrDie(const rules::v1::RulePack& pack, EngineOptions options = {});

// Scans `data` as one message cut at the given offsets (ascending, any values).
MessageResult ScanSplit(const EnginePtr& engine, std::string_view data, const std::vector<size_t>& cuts,
                        const ContentHint& hint = {});
MessageResult ScanWhole(const EnginePtr& engine, std::string_view data, const ContentHint& hint = {});
// A stable text form of the findings for comparisons in failure messages.
std::string Describe(const MessageResult& r);
const v1::Finding* FindCategory(const MessageResult& r, std::string_view category);

}  // namespace egressguard::dlp::testing
