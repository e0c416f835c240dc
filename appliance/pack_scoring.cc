#include "appliance/pack_scoring.h"

#include <fmt/format.h>

namespace egressguard::appliance {

namespace {

constexpr size_t kChunk = 64 << 10;
constexpr uint32_t kEveryOccurrence = 100'000;  // spans per finding collected for scoring

void ToProto(const rules::Evaluation& e, google::protobuf::RepeatedPtrField<v1::CategoryScore>* scores,
             google::protobuf::RepeatedPtrField<v1::SampleMismatch>* mismatches) {
  for (const auto& s : e.scores) {
    auto* out = scores->Add();
    out->set_category(s.category);
    out->set_true_positives(s.true_positives);
    out->set_false_positives(s.false_positives);
    out->set_false_negatives(s.false_negatives);
    out->set_precision(s.precision());
    out->set_recall(s.recall());
  }
  for (const auto& m : e.mismatches) {
    auto* out = mismatches->Add();
    out->set_sample(m.path);
    out->set_category(m.category);
    out->set_missed(m.missed);
    out->set_where(m.where);
  }
}

}  // namespace

dlp::EngineOptions ScoringEngineOptions(dlp::EngineOptions base) {
  base.max_finding_spans = kEveryOccurrence;
  return base;
}

void PackScorer::Add(const rules::Sample& sample, std::string_view content) {
  auto scan = scanner_.Open(engine_, dlp::ContentHint{});
  for (size_t at = 0; at < content.size(); at += kChunk) scan->Feed(content.substr(at, kChunk));
  const dlp::MessageResult result = scan->Finish();
  std::set<std::string> categories;
  std::vector<rules::Occurrence> located;
  for (const auto& f : result.findings) {
    categories.insert(f.category());
    for (const auto& span : f.spans()) located.push_back({f.category(), span.start(), span.end()});
  }
  files_.Add(sample, categories);
  occurrences_.Add(sample, std::move(located));
}

PackScore PackScorer::Result() const {
  return PackScore{files_.Result(), occurrences_.Result(), occurrences_.labelled(), occurrences_.unlocated_pairs()};
}

std::vector<std::string> PackScore::Below(double min) const {
  auto below = rules::BelowMinimum(per_file, min);
  if (located > 0) {
    for (auto& b : rules::BelowMinimum(per_occurrence, min)) below.push_back("per occurrence " + b);
  }
  return below;
}

std::string PackScore::Report() const {
  std::string out = rules::FormatEvaluation(per_file);
  if (located > 0) {
    out += fmt::format("per occurrence ({} located; {} listed (file, category) pairs unlocated, scored per file only):\n",
                       located, unlocated_pairs);
    out += rules::FormatEvaluation(per_occurrence);
  }
  return out;
}

absl::StatusOr<v1::TestPackResponse> TestPack(const rules::v1::RulePack& pack, const v1::TestPackRequest& request,
                                              const dlp::EngineOptions& engine_options) {
  if (request.samples().empty()) return absl::InvalidArgumentError("no samples: send files with their sidecars");
  if (static_cast<size_t>(request.samples_size()) > kMaxTestSamples) {
    return absl::InvalidArgumentError(fmt::format("{} samples: at most {}", request.samples_size(), kMaxTestSamples));
  }
  size_t bytes = 0;
  for (const auto& s : request.samples()) bytes += s.content().size();
  if (bytes > kMaxTestBytes) {
    return absl::InvalidArgumentError(fmt::format("{} bytes of samples: at most {}", bytes, kMaxTestBytes));
  }
  const double min = request.min() == 0 ? 0.98 : request.min();
  if (min < 0 || min > 1) return absl::InvalidArgumentError("min is a score from 0 to 1");
  auto engine = dlp::Engine::Compile(pack, ScoringEngineOptions(engine_options));
  if (!engine.ok()) return absl::InvalidArgumentError(
        fmt::format("the engine refused the pack: {}", std::string(engine.status().message())));
  PackScorer scorer(*std::move(engine));
  for (const auto& s : request.samples()) {
    const std::string name = s.name().empty() ? "sample" : s.name();
    auto e = rules::ParseExpectation(s.expect(), name + ".expect");
    if (!e.ok()) return e.status();
    scorer.Add(rules::Sample{name, std::move(e->categories), std::move(e->counts), std::move(e->located)}, s.content());
  }
  const PackScore score = scorer.Result();
  v1::TestPackResponse out;
  out.set_pack_version(pack.version());
  out.set_samples(static_cast<uint32_t>(request.samples_size()));
  ToProto(score.per_file, out.mutable_per_file(), out.mutable_file_mismatches());
  if (score.located > 0) ToProto(score.per_occurrence, out.mutable_per_occurrence(), out.mutable_occurrence_mismatches());
  out.set_located(score.located);
  for (auto& b : score.Below(min)) out.add_below(std::move(b));
  out.set_ok(out.below().empty());
  out.set_report(score.Report());
  return out;
}

}  // namespace egressguard::appliance
