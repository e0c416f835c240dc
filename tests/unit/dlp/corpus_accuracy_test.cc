// Proves the real engine with the shipped default pack keeps precision and recall of
// every category at or above 0.99 on the labelled corpus (tests/data/corpus) and the
// real pg_dump/mysqldump outputs (tests/data/dumps), per file and per occurrence (the
// sidecars' `at` lines against the occurrences the engine locates, what `scan
// --each-match` prints), and reports the labelled count ("email 3" in a sidecar) for at
// least 99% of the (file, category) pairs that give one.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <string>

#include "dlp/engine.h"
#include "dlp/validators.h"
#include "rules/pack_loader.h"
#include "rules/sample_set.h"

namespace egressguard::dlp {
namespace {

constexpr double kMinimum = 0.99;

struct Reported {
  std::map<std::string, uint64_t> counts;  // category -> its rules' finding counts added up
  std::vector<rules::Occurrence> occurrences;
};

Reported Scan(Scanner& scanner, const EnginePtr& engine, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << path;
  auto scan = scanner.Open(engine, ContentHint{});
  std::string buf(16 << 10, '\0');
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    if (in.gcount() > 0) scan->Feed(std::string_view(buf.data(), static_cast<size_t>(in.gcount())));
  }
  Reported out;
  for (const auto& f : scan->Finish().findings) {
    out.counts[f.category()] += f.count();
    EXPECT_FALSE(f.spans_truncated()) << path << " " << f.rule_id();
    for (const auto& s : f.spans()) out.occurrences.push_back({f.category(), s.start(), s.end()});
  }
  return out;
}

TEST(CorpusAccuracy, DefaultPackMeetsPrecisionAndRecallOnEveryCategory) {
  rules::LoadOptions opts;
  opts.known_validator = [](std::string_view name) { return FindValidator(name) != nullptr; };
  auto pack = rules::LoadPackDir(EGRESSGUARD_DEFAULT_PACK_DIR, opts);
  ASSERT_TRUE(pack.ok()) << pack.status();
  EngineOptions eo;
  eo.fingerprint_key = "corpus-test";
  eo.max_finding_spans = 100'000;  // every occurrence, as scan --each-match asks
  auto engine = Engine::Compile(*pack, eo);
  ASSERT_TRUE(engine.ok()) << engine.status();

  Scanner scanner;
  rules::Evaluator evaluator;
  rules::OccurrenceEvaluator occurrences;
  size_t total = 0;
  // Sidecars that give a count ("email 3"): the finding must report exactly that.
  size_t counted = 0, counted_right = 0;
  std::string wrong_counts;
  for (const char* dir : {"/corpus", "/dumps"}) {
    auto samples = rules::LoadSamples(std::string(EGRESSGUARD_TEST_DATA_DIR) + dir);
    ASSERT_TRUE(samples.ok()) << samples.status();
    total += samples->size();
    for (const auto& s : *samples) {
      Reported reported = Scan(scanner, *engine, s.path);
      const auto& found = reported.counts;
      std::set<std::string> categories;
      for (const auto& [c, n] : found) categories.insert(c);
      evaluator.Add(s, categories);
      occurrences.Add(s, std::move(reported.occurrences));
      for (const auto& [c, want] : s.counts) {
        ++counted;
        const auto it = found.find(c);
        const uint64_t got = it == found.end() ? 0 : it->second;
        if (got == want) {
          ++counted_right;
        } else {
          wrong_counts += fmt::format("  {} {}: labelled {}, reported {}\n", s.path, c, want, got);
        }
      }
    }
  }
  ASSERT_GE(total, 120u) << "the corpus shrank";
  const rules::Evaluation result = evaluator.Result();
  const auto below = rules::BelowMinimum(result, kMinimum);
  std::cout << rules::FormatEvaluation(result);
  std::string why;
  for (const auto& b : below) why += b + "; ";
  EXPECT_TRUE(below.empty()) << "below " << kMinimum << ": " << why;
  std::cout << counted_right << " of " << counted << " labelled counts reported exactly\n" << wrong_counts;
  EXPECT_GE(counted, 25u) << "the labelled counts shrank";

  const rules::Evaluation per_occurrence = occurrences.Result();
  std::cout << "per occurrence (" << occurrences.labelled() << " labelled; " << occurrences.unlocated_pairs()
            << " listed (file, category) pairs unlocated, scored per file only):\n"
            << rules::FormatEvaluation(per_occurrence);
  EXPECT_GE(occurrences.labelled(), 3000u) << "the located occurrences shrank";
  why.clear();
  for (const auto& b : rules::BelowMinimum(per_occurrence, kMinimum)) why += b + "; ";
  EXPECT_TRUE(why.empty()) << "per occurrence below " << kMinimum << ": " << why;
  EXPECT_GE(static_cast<double>(counted_right), kMinimum * static_cast<double>(counted)) << wrong_counts;
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
