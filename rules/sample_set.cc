#include "rules/sample_set.h"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

namespace egressguard::rules {

namespace {

namespace fs = std::filesystem;

constexpr size_t kMaxSidecarBytes = 64 << 10;

bool ValidCategory(std::string_view c) {
  return !c.empty() && c.size() <= 64 &&
         std::all_of(c.begin(), c.end(), [](char ch) { return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_'; });
}

std::string_view Trim(std::string_view s) {
  const size_t b = s.find_first_not_of(" \t\r");
  if (b == std::string_view::npos) return {};
  const size_t e = s.find_last_not_of(" \t\r");
  return s.substr(b, e - b + 1);
}

}  // namespace

absl::StatusOr<std::set<std::string>> ParseExpect(std::string_view text, const std::string& source) {
  return ParseExpect(text, source, nullptr);
}

absl::StatusOr<std::set<std::string>> ParseExpect(std::string_view text, const std::string& source,
                                                  std::map<std::string, uint64_t>* counts) {
  std::set<std::string> out;
  bool none = false;
  size_t line_no = 0;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string_view::npos) eol = text.size();
    ++line_no;
    std::string_view line = text.substr(pos, eol - pos);
    pos = eol + 1;
    const size_t hash = line.find('#');
    if (hash != std::string_view::npos) line = line.substr(0, hash);
    line = Trim(line);
    if (line.empty()) continue;
    if (line == "none") {
      none = true;
      continue;
    }
    // "category count": the count the finding must report.
    std::optional<uint64_t> count;
    if (const size_t sp = line.find_first_of(" \t"); sp != std::string_view::npos) {
      const std::string_view num = Trim(line.substr(sp));
      uint64_t v = 0;
      const bool digits = !num.empty() && num.size() <= 9 &&
                          std::all_of(num.begin(), num.end(), [](char ch) { return ch >= '0' && ch <= '9'; });
      if (digits) {
        for (char ch : num) v = v * 10 + static_cast<uint64_t>(ch - '0');
      }
      if (digits && v == 0) {
        return absl::InvalidArgumentError(fmt::format(
            "{}:{}: '{}': a category's count is a number from 1 to 999999999", source, line_no, line));
      }
      if (digits) {  // otherwise the whole line is judged as a category name below
        count = v;
        line = Trim(line.substr(0, sp));
      }
    }
    if (!ValidCategory(line)) {
      return absl::InvalidArgumentError(
          fmt::format("{}:{}: '{}' is not a category ([a-z0-9_]+, one per line, or none)", source, line_no, line));
    }
    out.emplace(line);
    if (count && counts != nullptr) (*counts)[std::string(line)] = *count;
  }
  if (none && !out.empty()) {
    return absl::InvalidArgumentError(fmt::format("{}: 'none' together with categories", source));
  }
  if (!none && out.empty()) {
    return absl::InvalidArgumentError(fmt::format("{}: empty sidecar: list categories or write none", source));
  }
  return out;
}

absl::StatusOr<std::vector<Sample>> LoadSamples(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return absl::NotFoundError(fmt::format("{}: not a directory", dir));
  std::vector<fs::path> sidecars;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    const fs::path& p = it->path();
    if (it->is_regular_file() && p.extension() == kExpectSuffix) sidecars.push_back(p);
  }
  if (ec) return absl::NotFoundError(fmt::format("{}: {}", dir, ec.message()));
  std::sort(sidecars.begin(), sidecars.end());
  std::vector<Sample> samples;
  for (const auto& sidecar : sidecars) {
    fs::path sample = sidecar;
    sample.replace_extension();
    if (!fs::is_regular_file(sample, ec)) {
      return absl::InvalidArgumentError(fmt::format("{}: sidecar without its sample file", sidecar.string()));
    }
    if (fs::file_size(sidecar, ec) > kMaxSidecarBytes) {
      return absl::InvalidArgumentError(fmt::format("{}: sidecar larger than {} bytes", sidecar.string(), kMaxSidecarBytes));
    }
    std::ifstream in(sidecar, std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    std::map<std::string, uint64_t> counts;
    auto expected = ParseExpect(ss.str(), sidecar.string(), &counts);
    if (!expected.ok()) return expected.status();
    samples.push_back(Sample{sample.string(), *std::move(expected), std::move(counts)});
  }
  return samples;
}

double CategoryScore::precision() const {
  const uint64_t found = true_positives + false_positives;
  return found == 0 ? 1.0 : static_cast<double>(true_positives) / static_cast<double>(found);
}

double CategoryScore::recall() const {
  const uint64_t expected = true_positives + false_negatives;
  return expected == 0 ? 1.0 : static_cast<double>(true_positives) / static_cast<double>(expected);
}

CategoryScore& Evaluator::Score(const std::string& category) {
  auto& scores = result_.scores;
  auto it = std::lower_bound(scores.begin(), scores.end(), category,
                             [](const CategoryScore& s, const std::string& c) { return s.category < c; });
  if (it == scores.end() || it->category != category) it = scores.insert(it, CategoryScore{category});
  return *it;
}

void Evaluator::Add(const Sample& sample, const std::set<std::string>& found) {
  ++result_.samples;
  for (const auto& c : sample.expected) {
    if (found.count(c)) {
      ++Score(c).true_positives;
    } else {
      ++Score(c).false_negatives;
      result_.mismatches.push_back(Mismatch{sample.path, c, true});
    }
  }
  for (const auto& c : found) {
    if (sample.expected.count(c)) continue;
    ++Score(c).false_positives;
    result_.mismatches.push_back(Mismatch{sample.path, c, false});
  }
}

std::string FormatEvaluation(const Evaluation& e) {
  std::string out = fmt::format("{:<16} {:>8} {:>5} {:>5} {:>5} {:>9} {:>7}\n", "category", "expected", "tp", "fp",
                                "fn", "precision", "recall");
  for (const auto& s : e.scores) {
    out += fmt::format("{:<16} {:>8} {:>5} {:>5} {:>5} {:>9.3f} {:>7.3f}\n", s.category,
                       s.true_positives + s.false_negatives, s.true_positives, s.false_positives, s.false_negatives,
                       s.precision(), s.recall());
  }
  out += fmt::format("{} samples, {} mismatches\n", e.samples, e.mismatches.size());
  for (const auto& m : e.mismatches) {
    out += fmt::format("  {} {}: {}\n", m.missed ? "missed" : "false ", m.category, m.path);
  }
  return out;
}

std::vector<std::string> BelowMinimum(const Evaluation& e, double min) {
  std::vector<std::string> out;
  for (const auto& s : e.scores) {
    if (s.precision() < min) out.push_back(fmt::format("{} precision {:.3f}", s.category, s.precision()));
    if (s.recall() < min) out.push_back(fmt::format("{} recall {:.3f}", s.category, s.recall()));
  }
  return out;
}

}  // namespace egressguard::rules
