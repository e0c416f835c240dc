#pragma once
// The one way this project reads a YAML file (rule packs, the config file): exactly one
// document, or an error that says where a second one starts.
//
// Why not YAML::Load / YAML::LoadAll: yaml-cpp 0.7 reads a stray flow indicator after the
// first document (",", "[a]\n,") as an endless run of empty documents (upstream issue
// 1040). LoadAll collects them until memory runs out, before any node limit of ours can
// run; Load stops after the first and silently drops whatever follows.

#include <yaml-cpp/yaml.h>

#include <string_view>

namespace egressguard::rules {

// The document `text` holds, as YAML::Load builds it (marks kept for error locations), or
// a null node when it holds none. Throws YAML::Exception on a syntax error and on a
// second document (its mark: where that document starts); never parses past it.
YAML::Node LoadOneYamlDocument(std::string_view text);

}  // namespace egressguard::rules
