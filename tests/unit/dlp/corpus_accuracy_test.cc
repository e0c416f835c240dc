// Proves the real engine with the shipped default pack keeps precision and recall of
// every category at or above 0.99 on the labelled corpus (tests/data/corpus) and the
// real pg_dump/mysqldump outputs (tests/data/dumps).
#include <gtest/gtest.h>

#include <fstream>
#include <iostream>
#include <set>
#include <string>

#include "dlp/engine.h"
#include "dlp/validators.h"
#include "rules/pack_loader.h"
#include "rules/sample_set.h"

namespace egressguard::dlp {
namespace {

constexpr double kMinimum = 0.99;

std::set<std::string> Categories(Scanner& scanner, const EnginePtr& engine, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << path;
  auto scan = scanner.Open(engine, ContentHint{});
  std::string buf(16 << 10, '\0');
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    if (in.gcount() > 0) scan->Feed(std::string_view(buf.data(), static_cast<size_t>(in.gcount())));
  }
  std::set<std::string> found;
  for (const auto& f : scan->Finish().findings) found.insert(f.category());
  return found;
}

TEST(CorpusAccuracy, DefaultPackMeetsPrecisionAndRecallOnEveryCategory) {
  rules::LoadOptions opts;
  opts.known_validator = [](std::string_view name) { return FindValidator(name) != nullptr; };
  auto pack = rules::LoadPackDir(EGRESSGUARD_DEFAULT_PACK_DIR, opts);
  ASSERT_TRUE(pack.ok()) << pack.status();
  EngineOptions eo;
  eo.fingerprint_key = "corpus-test";
  auto engine = Engine::Compile(*pack, eo);
  ASSERT_TRUE(engine.ok()) << engine.status();

  Scanner scanner;
  rules::Evaluator evaluator;
  size_t total = 0;
  for (const char* dir : {"/corpus", "/dumps"}) {
    auto samples = rules::LoadSamples(std::string(EGRESSGUARD_TEST_DATA_DIR) + dir);
    ASSERT_TRUE(samples.ok()) << samples.status();
    total += samples->size();
    for (const auto& s : *samples) evaluator.Add(s, Categories(scanner, *engine, s.path));
  }
  ASSERT_GE(total, 120u) << "the corpus shrank";
  const rules::Evaluation result = evaluator.Result();
  const auto below = rules::BelowMinimum(result, kMinimum);
  std::cout << rules::FormatEvaluation(result);
  std::string why;
  for (const auto& b : below) why += b + "; ";
  EXPECT_TRUE(below.empty()) << "below " << kMinimum << ": " << why;
  // Every category of the default pack is exercised by at least one positive sample.
  std::set<std::string> expected_somewhere;
  for (const auto& s : result.scores) {
    if (s.true_positives + s.false_negatives > 0) expected_somewhere.insert(s.category);
  }
  for (const auto& r : pack->rules()) {
    // What cannot be read (corrupt, encrypted) is no text sample: the decoder and
    // container tests exercise those.
    if (r.category() == rules::kUndecodableCategory || r.category() == rules::kEncryptedContentCategory) continue;
    EXPECT_TRUE(expected_somewhere.count(r.category())) << r.category();
  }
}

}  // namespace
}  // namespace egressguard::dlp
