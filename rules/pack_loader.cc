#include "rules/pack_loader.h"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <vector>

#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>
#include <google/protobuf/reflection.h>

#include "rules/rule_id.h"
#include "rules/yaml_document.h"

namespace egressguard::rules {

namespace {

namespace pb = google::protobuf;
namespace fs = std::filesystem;

// Beyond these a pack is hostile or broken, not large: stop listing and stop walking
// (aliases can make a small file expand into many nodes).
constexpr size_t kMaxErrors = 50;
constexpr size_t kMaxNodes = 200000;

struct Location {
  std::string file;
  int line = 0;
  int column = 0;
  std::string str() const { return fmt::format("{}:{}:{}", file, line, column); }
};

// One parsed file before merging: the pack, where each rule starts, and which
// top-level keys were present (a rule file in a directory may only hold `rules`).
struct ParsedFile {
  v1::RulePack pack;
  std::vector<Location> rule_locations;
  std::vector<std::pair<std::string, Location>> top_keys;
  std::vector<std::string> errors;
};

bool IsCategoryChar(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'; }

std::string Upper(std::string s) {
  for (char& c : s) {
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  }
  return s;
}

// proto3 strings must be UTF-8 (serialization complains otherwise), and a pattern or
// keyword that is not is a corrupt file, not a rule.
bool ValidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    size_t n = 0;
    uint32_t cp = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c >> 5) == 0x6) {
      n = 1;
      cp = c & 0x1f;
    } else if ((c >> 4) == 0xe) {
      n = 2;
      cp = c & 0x0f;
    } else if ((c >> 3) == 0x1e) {
      n = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    for (size_t k = 1; k <= n; ++k) {
      if (i + k >= s.size()) return false;
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc >> 6) != 0x2) return false;
      cp = (cp << 6) | (cc & 0x3f);
    }
    // Overlong forms, surrogates and values beyond U+10FFFF.
    if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10ffff ||
        (cp >= 0xd800 && cp <= 0xdfff)) {
      return false;
    }
    i += n + 1;
  }
  return true;
}

class Walker {
 public:
  Walker(std::string file, const LoadOptions& opts, ParsedFile* out) : file_(std::move(file)), opts_(opts), out_(out) {}

  void Document(const YAML::Node& root) {
    if (!root.IsDefined() || root.IsNull()) {
      Error(Location{file_, 1, 1}, "empty pack: expected a mapping with name, version and rules");
      return;
    }
    if (!root.IsMap()) {
      Error(At(root, {file_, 1, 1}), "a pack must be a mapping (name, version, rules, ...)");
      return;
    }
    for (auto it = root.begin(); it != root.end(); ++it) {
      if (it->first.IsScalar()) out_->top_keys.emplace_back(it->first.Scalar(), At(it->first, {file_, 1, 1}));
    }
    Message(root, &out_->pack, {file_, 1, 1});
  }

 private:
  Location At(const YAML::Node& node, const Location& fallback) const {
    const YAML::Mark m = node.Mark();
    if (m.is_null() || m.line < 0) return fallback;
    return Location{file_, m.line + 1, m.column + 1};
  }

  void Error(const Location& loc, const std::string& reason) {
    if (out_->errors.size() < kMaxErrors) {
      out_->errors.push_back(fmt::format("{}: {}", loc.str(), reason));
    } else if (out_->errors.size() == kMaxErrors) {
      out_->errors.push_back(fmt::format("{}: too many errors; stopped listing", file_));
    }
  }

  bool Spend(const Location& loc) {
    if (++nodes_ <= kMaxNodes) return true;
    if (nodes_ == kMaxNodes + 1) Error(loc, fmt::format("pack expands to more than {} YAML nodes", kMaxNodes));
    return false;
  }

  static const pb::FieldDescriptor* FindField(const pb::Descriptor* d, const std::string& key) {
    for (int i = 0; i < d->field_count(); ++i) {
      const pb::FieldDescriptor* f = d->field(i);
      if (f->name() == key || f->json_name() == key) return f;
    }
    return nullptr;
  }

  static std::string AllowedFields(const pb::Descriptor* d) {
    std::string out;
    for (int i = 0; i < d->field_count(); ++i) {
      if (i) out += ", ";
      out += d->field(i)->name();
    }
    return out;
  }

  void Message(const YAML::Node& node, pb::Message* msg, const Location& where) {
    if (!Spend(where)) return;
    const pb::Descriptor* d = msg->GetDescriptor();
    if (!node.IsMap()) {
      Error(where, fmt::format("wrong type: {} must be a mapping", d->name()));
      return;
    }
    std::set<const pb::FieldDescriptor*> seen;
    std::map<const pb::OneofDescriptor*, std::string> oneof_seen;
    for (auto it = node.begin(); it != node.end(); ++it) {
      const Location key_loc = At(it->first, where);
      if (!it->first.IsScalar()) {
        Error(key_loc, fmt::format("wrong type: keys of {} must be field names", d->name()));
        continue;
      }
      const std::string key = it->first.Scalar();
      const pb::FieldDescriptor* f = FindField(d, key);
      if (f == nullptr) {
        Error(key_loc, fmt::format("unknown field '{}' in {}; allowed: {}", key, d->name(), AllowedFields(d)));
        continue;
      }
      if (!seen.insert(f).second) {
        Error(key_loc, fmt::format("duplicate field '{}' in {}", key, d->name()));
        continue;
      }
      if (const pb::OneofDescriptor* o = f->containing_oneof()) {
        auto [prev, inserted] = oneof_seen.emplace(o, f->name());
        if (!inserted) {
          Error(key_loc, fmt::format("'{}' and '{}' are alternatives ({}): give only one", prev->second, f->name(),
                                     o->name()));
          continue;
        }
      }
      // A copy: yaml-cpp's iterator hands out a temporary pair (a reference dangles).
      const YAML::Node value = it->second;
      const Location value_loc = At(value, key_loc);
      if (value.IsNull()) continue;  // JSON null: the field keeps its default
      if (f->is_repeated()) {
        if (!value.IsSequence()) {
          Error(value_loc, fmt::format("wrong type: '{}' must be a list", f->name()));
          continue;
        }
        int index = 0;
        for (const auto& element : value) {
          Field(element, msg, f, At(element, value_loc), index++);
        }
      } else {
        Field(value, msg, f, value_loc, -1);
      }
    }
    if (d == v1::Rule::descriptor()) {
      auto* rule = static_cast<v1::Rule*>(msg);
      if (seen.count(d->FindFieldByName("enabled")) == 0) rule->set_enabled(true);
    }
  }

  // One value of field `f` (element `index` of a repeated field, or -1).
  void Field(const YAML::Node& node, pb::Message* msg, const pb::FieldDescriptor* f, const Location& loc, int index) {
    if (!Spend(loc)) return;
    const pb::Reflection* r = msg->GetReflection();
    const bool rep = index >= 0;
    if (f->type() == pb::FieldDescriptor::TYPE_MESSAGE) {
      pb::Message* sub = rep ? r->AddMessage(msg, f) : r->MutableMessage(msg, f);
      if (f->message_type() == v1::Rule::descriptor()) out_->rule_locations.push_back(loc);
      Message(node, sub, loc);
      if (f->message_type() == v1::Rule::descriptor()) CheckRule(*static_cast<v1::Rule*>(sub), node, loc);
      return;
    }
    if (!node.IsScalar()) {
      Error(loc, fmt::format("wrong type: '{}' must be a single value, not a {}", f->name(),
                             node.IsMap() ? "mapping" : "list"));
      return;
    }
    const std::string& text = node.Scalar();
    switch (f->cpp_type()) {
      case pb::FieldDescriptor::CPPTYPE_STRING:
        if (!ValidUtf8(text)) {
          Error(loc, fmt::format("'{}' is not valid UTF-8", f->name()));
          return;
        }
        rep ? r->AddString(msg, f, text) : r->SetString(msg, f, text);
        return;
      case pb::FieldDescriptor::CPPTYPE_UINT32: {
        uint32_t v = 0;
        const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
        if (text.empty() || ec != std::errc() || end != text.data() + text.size()) {
          Error(loc, fmt::format("wrong type: '{}' must be an integer from 0 to 4294967295, got '{}'", f->name(), text));
          return;
        }
        rep ? r->AddUInt32(msg, f, v) : r->SetUInt32(msg, f, v);
        return;
      }
      case pb::FieldDescriptor::CPPTYPE_BOOL: {
        const std::string u = Upper(text);
        if (u != "TRUE" && u != "FALSE") {
          Error(loc, fmt::format("wrong type: '{}' must be true or false, got '{}'", f->name(), text));
          return;
        }
        rep ? r->AddBool(msg, f, u == "TRUE") : r->SetBool(msg, f, u == "TRUE");
        return;
      }
      case pb::FieldDescriptor::CPPTYPE_ENUM: {
        const pb::EnumDescriptor* e = f->enum_type();
        const pb::EnumValueDescriptor* ev = e->FindValueByName(Upper(text));
        if (ev == nullptr || ev->number() == 0) {
          std::string allowed;
          for (int i = 1; i < e->value_count(); ++i) allowed += (i > 1 ? ", " : "") + e->value(i)->name();
          Error(loc, fmt::format("bad value '{}' for '{}'; allowed: {}", text, f->name(), allowed));
          return;
        }
        rep ? r->AddEnum(msg, f, ev) : r->SetEnum(msg, f, ev);
        return;
      }
      default:
        Error(loc, fmt::format("field '{}' has a type packs cannot set", f->name()));
        return;
    }
  }

  // Where a field of a rule mapping was written; the rule's own location otherwise.
  Location FieldAt(const YAML::Node& rule_node, std::string_view snake, const Location& fallback) const {
    if (!rule_node.IsMap()) return fallback;
    for (auto it = rule_node.begin(); it != rule_node.end(); ++it) {
      if (!it->first.IsScalar()) continue;
      const pb::FieldDescriptor* f = FindField(v1::Rule::descriptor(), it->first.Scalar());
      if (f == nullptr) f = FindField(v1::Context::descriptor(), it->first.Scalar());
      if (f != nullptr && f->name() == snake) return At(it->second, At(it->first, fallback));
    }
    return fallback;
  }

  YAML::Node Child(const YAML::Node& map, std::string_view snake) const {
    if (!map.IsMap()) return YAML::Node(YAML::NodeType::Undefined);
    for (auto it = map.begin(); it != map.end(); ++it) {
      if (!it->first.IsScalar()) continue;
      const std::string& k = it->first.Scalar();
      if (FindField(v1::Rule::descriptor(), k) != nullptr && FindField(v1::Rule::descriptor(), k)->name() == snake) {
        return it->second;
      }
    }
    return YAML::Node(YAML::NodeType::Undefined);
  }

  void CheckPattern(std::string_view what, const std::string& pattern, bool ci, const Location& loc) {
    if (pattern.empty()) {
      Error(loc, fmt::format("empty {}", what));
      return;
    }
    if (pattern.size() > kMaxPatternBytes) {
      Error(loc, fmt::format("{} longer than {} bytes", what, kMaxPatternBytes));
      return;
    }
    if (opts_.check_pattern) {
      absl::Status st = opts_.check_pattern(pattern, ci);
      if (!st.ok()) Error(loc, fmt::format("{} refused: {}", what, std::string(st.message())));
    }
  }

  void CheckRule(const v1::Rule& rule, const YAML::Node& node, const Location& loc) {
    const std::string label = rule.id().empty() ? std::string("rule") : fmt::format("rule '{}'", rule.id());
    if (!IsValidRuleId(rule.id())) {
      Error(FieldAt(node, "id", loc),
            rule.id().empty() ? std::string("rule without an id")
                              : fmt::format("invalid rule id '{}': 1-64 characters of [a-z0-9_.-], starting "
                                            "with a letter or digit",
                                            rule.id()));
    }
    // A present but bad value was already reported where it was written.
    const YAML::Node category = Child(node, "category");
    if (rule.category().empty()) {
      if (!category.IsDefined() || !(category.IsMap() || category.IsSequence())) {
        Error(FieldAt(node, "category", loc), fmt::format("{}: missing category", label));
      }
    } else if (rule.category().size() > 64 ||
               !std::all_of(rule.category().begin(), rule.category().end(), IsCategoryChar)) {
      Error(FieldAt(node, "category", loc),
            fmt::format("{}: invalid category '{}': use [a-z0-9_]+", label, rule.category()));
    }
    if (rule.action() == v1::ACTION_UNSPECIFIED && !Child(node, "action").IsDefined()) {
      Error(loc, fmt::format("{}: missing action (allow, alert or block)", label));
    }
    const bool bulk = rule.category() == kBulkPiiCategory;
    if (rule.patterns().empty() && !IsMessageLevelCategory(rule.category())) {
      Error(FieldAt(node, "patterns", loc),
            fmt::format("{}: empty patterns: a rule needs at least one (only {}, {} and {} rules have none)", label,
                        kBulkPiiCategory, kUndecodableCategory, kEncryptedContentCategory));
    }
    const YAML::Node patterns = Child(node, "patterns");
    for (int i = 0; i < rule.patterns_size(); ++i) {
      Location ploc = loc;
      if (patterns.IsSequence() && static_cast<size_t>(i) < patterns.size()) ploc = At(patterns[static_cast<size_t>(i)], loc);
      CheckPattern(fmt::format("{} pattern {}", label, i + 1), rule.patterns(i), rule.case_insensitive(), ploc);
    }
    if (!rule.validator().empty()) {
      const bool known = opts_.known_validator
                             ? opts_.known_validator(rule.validator())
                             : std::all_of(rule.validator().begin(), rule.validator().end(), IsCategoryChar);
      if (!known) {
        Error(FieldAt(node, "validator", loc), fmt::format("{}: unknown validator '{}'", label, rule.validator()));
      }
    }
    if (rule.min_count() > kMaxMinCount) {
      Error(FieldAt(node, "min_count", loc),
            fmt::format("{}: min_count {} out of range 0..{}", label, rule.min_count(), kMaxMinCount));
    }
    if (rule.has_context()) CheckContext(rule, label, bulk, Child(node, "context"), FieldAt(node, "context", loc));
    const YAML::Node exclusions = Child(node, "exclusions");
    for (int i = 0; i < rule.exclusions_size(); ++i) {
      const v1::Exclusion& ex = rule.exclusions(i);
      Location eloc = loc;
      if (exclusions.IsSequence() && static_cast<size_t>(i) < exclusions.size()) {
        eloc = At(exclusions[static_cast<size_t>(i)], loc);
      }
      if (ex.kind_case() == v1::Exclusion::KIND_NOT_SET) {
        Error(eloc, fmt::format("{} exclusion {}: needs a literal or a regex", label, i + 1));
      } else if (ex.kind_case() == v1::Exclusion::kLiteral && ex.literal().empty()) {
        Error(eloc, fmt::format("{} exclusion {}: empty literal", label, i + 1));
      } else if (ex.kind_case() == v1::Exclusion::kRegex) {
        CheckPattern(fmt::format("{} exclusion {} regex", label, i + 1), ex.regex(), rule.case_insensitive(), eloc);
      }
    }
  }

  // For bulk_pii the keywords name PII columns of a CSV header: no window, no effect.
  void CheckContext(const v1::Rule& rule, const std::string& label, bool bulk, const YAML::Node& node,
                    const Location& loc) {
    const v1::Context& c = rule.context();
    auto at = [&](std::string_view field) {
      if (node.IsMap()) {
        for (auto it = node.begin(); it != node.end(); ++it) {
          if (!it->first.IsScalar()) continue;
          const pb::FieldDescriptor* f = FindField(v1::Context::descriptor(), it->first.Scalar());
          if (f != nullptr && f->name() == field) return At(it->second, loc);
        }
      }
      return loc;
    };
    if (c.keywords().empty()) Error(at("keywords"), fmt::format("{}: context without keywords", label));
    for (const auto& k : c.keywords()) {
      if (k.empty()) Error(at("keywords"), fmt::format("{}: empty context keyword", label));
    }
    if (c.effect() == v1::Context::EFFECT_UNSPECIFIED && !bulk) {
      Error(at("effect"), fmt::format("{}: context needs an effect (REQUIRE, BOOST or SUPPRESS)", label));
    }
    if (c.window_before() > kMaxContextWindow) {
      Error(at("window_before"), fmt::format("{}: context window_before {} out of range 0..{}", label,
                                             c.window_before(), kMaxContextWindow));
    }
    if (c.window_after() > kMaxContextWindow) {
      Error(at("window_after"), fmt::format("{}: context window_after {} out of range 0..{}", label,
                                            c.window_after(), kMaxContextWindow));
    }
    if (c.window_before() == 0 && c.window_after() == 0 && !bulk) {
      Error(loc, fmt::format("{}: context window is empty: set window_before and/or window_after (1..{})", label,
                             kMaxContextWindow));
    }
  }

  std::string file_;
  const LoadOptions& opts_;
  ParsedFile* out_;
  size_t nodes_ = 0;
};

ParsedFile ParseText(std::string_view text, const std::string& filename, const LoadOptions& opts) {
  ParsedFile out;
  YAML::Node doc;
  try {
    // One document: a second (or yaml-cpp's endless empty ones after a stray ',') is
    // refused where it starts, before anything is walked.
    doc = LoadOneYamlDocument(text);
  } catch (const YAML::Exception& e) {
    const int line = e.mark.is_null() ? 0 : e.mark.line + 1;
    const int col = e.mark.is_null() ? 0 : e.mark.column + 1;
    out.errors.push_back(fmt::format("{}:{}:{}: YAML syntax error: {}", filename, line, col, e.msg));
    return out;
  }
  Walker walker(filename, opts, &out);
  try {
    walker.Document(doc);
  } catch (const YAML::Exception& e) {
    // yaml-cpp reports some structural problems (bad alias use) only while walking.
    out.errors.push_back(fmt::format("{}: YAML error: {}", filename, e.msg));
  }
  return out;
}

void CheckPackFields(const v1::RulePack& pack, const std::string& file, std::vector<std::string>* errors) {
  if (pack.name().empty()) errors->push_back(fmt::format("{}:1:1: pack without a name", file));
  if (pack.version().empty()) errors->push_back(fmt::format("{}:1:1: pack without a version", file));
  if (pack.bulk_pii_threshold() > kMaxBulkPiiThreshold) {
    errors->push_back(fmt::format("{}:1:1: bulk_pii_threshold {} out of range 0..{}", file, pack.bulk_pii_threshold(),
                                  kMaxBulkPiiThreshold));
  }
  if (pack.min_records() > kMaxMinRecords) {
    errors->push_back(
        fmt::format("{}:1:1: min_records {} out of range 0..{} (0: 50 records)", file, pack.min_records(), kMaxMinRecords));
  }
}

void CheckUniqueIds(const v1::RulePack& pack, const std::vector<Location>& locations, std::vector<std::string>* errors) {
  std::map<std::string, size_t> first;
  for (int i = 0; i < pack.rules_size(); ++i) {
    const std::string& id = pack.rules(i).id();
    if (id.empty()) continue;
    auto [it, inserted] = first.emplace(id, static_cast<size_t>(i));
    if (!inserted && static_cast<size_t>(i) < locations.size()) {
      errors->push_back(fmt::format("{}: duplicate rule id '{}' (first defined at {})", locations[static_cast<size_t>(i)].str(),
                                    id, locations[it->second].str()));
    }
  }
}

absl::Status Refuse(const std::vector<std::string>& errors) {
  std::string msg = fmt::format("rule pack refused ({} problem{}):", errors.size(), errors.size() == 1 ? "" : "s");
  for (const auto& e : errors) msg += "\n" + e;
  return absl::InvalidArgumentError(msg);
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return absl::NotFoundError(fmt::format("{}: not a readable file", path));
  const auto size = fs::file_size(path, ec);
  if (ec) return absl::NotFoundError(fmt::format("{}: {}", path, ec.message()));
  if (size > kMaxPackFileBytes) {
    return absl::InvalidArgumentError(fmt::format("{}: {} bytes, larger than the {} byte limit for a pack file", path,
                                                  size, kMaxPackFileBytes));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(fmt::format("{}: cannot open", path));
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

absl::StatusOr<v1::RulePack> Finish(ParsedFile parsed, const std::string& file) {
  CheckPackFields(parsed.pack, file, &parsed.errors);
  CheckUniqueIds(parsed.pack, parsed.rule_locations, &parsed.errors);
  if (!parsed.errors.empty()) return Refuse(parsed.errors);
  return std::move(parsed.pack);
}

// ---- YAML writer ----

void EmitMessage(YAML::Emitter& out, const pb::Message& msg);

void EmitScalar(YAML::Emitter& out, const pb::Message& msg, const pb::FieldDescriptor* f, int index) {
  const pb::Reflection* r = msg.GetReflection();
  const bool rep = index >= 0;
  switch (f->cpp_type()) {
    case pb::FieldDescriptor::CPPTYPE_STRING:
      // Always quoted: a pattern or version must never be re-read as a number or null.
      out << YAML::DoubleQuoted << (rep ? r->GetRepeatedString(msg, f, index) : r->GetString(msg, f));
      return;
    case pb::FieldDescriptor::CPPTYPE_UINT32:
      out << (rep ? r->GetRepeatedUInt32(msg, f, index) : r->GetUInt32(msg, f));
      return;
    case pb::FieldDescriptor::CPPTYPE_BOOL:
      out << ((rep ? r->GetRepeatedBool(msg, f, index) : r->GetBool(msg, f)) ? "true" : "false");
      return;
    case pb::FieldDescriptor::CPPTYPE_ENUM:
      out << (rep ? r->GetRepeatedEnum(msg, f, index) : r->GetEnum(msg, f))->name();
      return;
    case pb::FieldDescriptor::CPPTYPE_MESSAGE:
      EmitMessage(out, rep ? r->GetRepeatedMessage(msg, f, index) : r->GetMessage(msg, f));
      return;
    default:
      out << YAML::Null;
      return;
  }
}

void EmitMessage(YAML::Emitter& out, const pb::Message& msg) {
  const pb::Descriptor* d = msg.GetDescriptor();
  const pb::Reflection* r = msg.GetReflection();
  out << YAML::BeginMap;
  for (int i = 0; i < d->field_count(); ++i) {
    const pb::FieldDescriptor* f = d->field(i);
    const bool always = d == v1::Rule::descriptor() && f->name() == "enabled";
    if (f->is_repeated()) {
      if (r->FieldSize(msg, f) == 0) continue;
      out << YAML::Key << f->name() << YAML::Value << YAML::BeginSeq;
      for (int j = 0; j < r->FieldSize(msg, f); ++j) EmitScalar(out, msg, f, j);
      out << YAML::EndSeq;
    } else if (always || r->HasField(msg, f)) {
      out << YAML::Key << f->name() << YAML::Value;
      EmitScalar(out, msg, f, -1);
    }
  }
  out << YAML::EndMap;
}

}  // namespace

absl::StatusOr<v1::RulePack> LoadPackYaml(std::string_view text, const std::string& filename, const LoadOptions& opts) {
  return Finish(ParseText(text, filename, opts), filename);
}

absl::StatusOr<v1::RulePack> LoadPackFile(const std::string& path, const LoadOptions& opts) {
  absl::StatusOr<std::string> text = ReadFile(path);
  if (!text.ok()) return text.status();
  return LoadPackYaml(*text, path, opts);
}

absl::StatusOr<v1::RulePack> LoadPackDir(const std::string& dir, const LoadOptions& opts) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return absl::NotFoundError(fmt::format("{}: not a directory", dir));
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const auto ext = entry.path().extension();
    if (entry.is_regular_file() && (ext == ".yaml" || ext == ".yml")) files.push_back(entry.path());
  }
  if (ec) return absl::NotFoundError(fmt::format("{}: {}", dir, ec.message()));
  std::sort(files.begin(), files.end());
  const auto pack_file = std::find_if(files.begin(), files.end(), [](const fs::path& p) {
    return p.filename() == "pack.yaml" || p.filename() == "pack.yml";
  });
  if (pack_file == files.end()) {
    return absl::InvalidArgumentError(fmt::format("{}: no pack.yaml (name, version, ...) in the pack directory", dir));
  }
  // pack.yaml first, then the rule files in name order: the order rules are listed in.
  std::rotate(files.begin(), pack_file, pack_file + 1);

  v1::RulePack merged;
  std::vector<Location> locations;
  std::vector<std::string> errors;
  for (const auto& file : files) {
    absl::StatusOr<std::string> text = ReadFile(file.string());
    if (!text.ok()) {
      errors.emplace_back(text.status().message());
      continue;
    }
    ParsedFile parsed = ParseText(*text, file.string(), opts);
    const bool is_pack_file = &file == &files.front();
    if (is_pack_file) {
      CheckPackFields(parsed.pack, file.string(), &parsed.errors);
      merged.set_name(parsed.pack.name());
      merged.set_version(parsed.pack.version());
      merged.set_description(parsed.pack.description());
      merged.set_bulk_pii_threshold(parsed.pack.bulk_pii_threshold());
      merged.set_min_records(parsed.pack.min_records());
    } else {
      for (const auto& [key, loc] : parsed.top_keys) {
        if (key != "rules") {
          parsed.errors.push_back(fmt::format("{}: '{}' belongs in pack.yaml; a rule file holds only 'rules'",
                                              loc.str(), key));
        }
      }
    }
    for (auto& rule : *parsed.pack.mutable_rules()) *merged.add_rules() = std::move(rule);
    locations.insert(locations.end(), parsed.rule_locations.begin(), parsed.rule_locations.end());
    errors.insert(errors.end(), parsed.errors.begin(), parsed.errors.end());
  }
  CheckUniqueIds(merged, locations, &errors);
  if (!errors.empty()) return Refuse(errors);
  return merged;
}

absl::StatusOr<v1::RulePack> LoadPackAny(const std::string& path, const LoadOptions& opts) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) return LoadPackDir(path, opts);
  return LoadPackFile(path, opts);
}

absl::StatusOr<v1::RulePack> PackFromJson(std::string_view json, const LoadOptions& opts) {
  // JSON is (for everything the pack schema can hold) YAML flow syntax, so the same
  // walker gives the API the same checks and messages as files.
  return LoadPackYaml(json, "<json>", opts);
}

std::string PackToYaml(const v1::RulePack& pack) {
  YAML::Emitter out;
  EmitMessage(out, pack);
  return std::string(out.c_str()) + "\n";
}

}  // namespace egressguard::rules
