// Fuzzes the rule-pack loader: any bytes as YAML (and as JSON) must yield a pack or a
// clean error, never a crash, a hang or an unbounded walk; a pack that loads must
// survive PackToYaml and load again to the same message. Runs under libFuzzer's default
// memory limit: five bytes ("[a]\n,", seed tests/fuzz/corpus/pack_loader) once made
// yaml-cpp's LoadAll collect empty documents until memory ran out; the loader now stops
// at the second document (rules/yaml_document.h).
// Seeds: rules/default/*.yaml and tests/fuzz/corpus/pack_loader.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "rules/pack_loader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > (64 << 10)) return 0;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  egressguard::rules::LoadOptions opts;
  opts.known_validator = [](std::string_view v) { return v == "luhn" || v == "email"; };
  auto pack = egressguard::rules::LoadPackYaml(text, "fuzz.yaml", opts);
  if (pack.ok()) {
    const std::string yaml = egressguard::rules::PackToYaml(*pack);
    auto again = egressguard::rules::LoadPackYaml(yaml, "roundtrip.yaml", opts);
    if (!again.ok() || again->SerializeAsString() != pack->SerializeAsString()) std::abort();
  }
  (void)egressguard::rules::PackFromJson(text, opts);
  return 0;
}
