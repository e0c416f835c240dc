#include "rules/yaml_document.h"

#include <yaml-cpp/eventhandler.h>

#include <sstream>
#include <string>

namespace egressguard::rules {
namespace {

// Ignores a document's content; remembers where the latest document started.
class DocumentStart final : public YAML::EventHandler {
 public:
  void OnDocumentStart(const YAML::Mark& mark) override { at = mark; }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t, const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}

  YAML::Mark at = YAML::Mark::null_mark();
};

}  // namespace

YAML::Node LoadOneYamlDocument(std::string_view text) {
  const std::string copy(text);
  {
    // First pass: count documents, stopping at the second. The nodes are built by a
    // second pass through YAML::Load because yaml-cpp's node builder is not public, and
    // only its nodes carry the marks our error messages point at.
    std::istringstream in(copy);
    YAML::Parser parser(in);
    DocumentStart start;
    if (!parser.HandleNextDocument(start)) return YAML::Node();
    if (parser.HandleNextDocument(start)) {
      throw YAML::ParserException(start.at,
                                  "a second YAML document starts here (or stray content after the first, such as a "
                                  "lone ','); the file must hold exactly one");
    }
  }
  return YAML::Load(copy);
}

}  // namespace egressguard::rules
