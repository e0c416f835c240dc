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

namespace {

// "START-END", both at most 2^40 (a sample is a file, not a disk), START < END.
bool ParseRange(std::string_view s, uint64_t* start, uint64_t* end) {
  const size_t dash = s.find('-');
  if (dash == std::string_view::npos) return false;
  auto number = [](std::string_view d, uint64_t* v) {
    if (d.empty() || d.size() > 13) return false;
    *v = 0;
    for (char ch : d) {
      if (ch < '0' || ch > '9') return false;
      *v = *v * 10 + static_cast<uint64_t>(ch - '0');
    }
    return *v <= (uint64_t{1} << 40);
  };
  return number(s.substr(0, dash), start) && number(s.substr(dash + 1), end) && *start < *end;
}

}  // namespace

absl::StatusOr<Expectation> ParseExpectation(std::string_view text, const std::string& source) {
  Expectation out;
  bool none = false;
  size_t line_no = 0;
  size_t pos = 0;
  std::vector<size_t> at_lines;  // of `located`, to name the line of a category not listed
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
    // "at category start-end": one located occurrence.
    if (line.substr(0, 3) == "at ") {
      const std::string_view rest = Trim(line.substr(3));
      const size_t sp = rest.find_first_of(" \t");
      Occurrence o;
      if (sp == std::string_view::npos || !ValidCategory(rest.substr(0, sp)) ||
          !ParseRange(Trim(rest.substr(sp)), &o.start, &o.end)) {
        return absl::InvalidArgumentError(fmt::format(
            "{}:{}: '{}': an occurrence is 'at CATEGORY START-END' (byte offsets, START < END)", source, line_no,
            line));
      }
      o.category = std::string(rest.substr(0, sp));
      out.located.push_back(std::move(o));
      at_lines.push_back(line_no);
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
    out.categories.emplace(line);
    if (count) out.counts[std::string(line)] = *count;
  }
  if (none && !out.categories.empty()) {
    return absl::InvalidArgumentError(fmt::format("{}: 'none' together with categories", source));
  }
  if (!none && out.categories.empty()) {
    return absl::InvalidArgumentError(fmt::format("{}: empty sidecar: list categories or write none", source));
  }
  for (size_t i = 0; i < out.located.size(); ++i) {
    if (!out.categories.count(out.located[i].category)) {
      return absl::InvalidArgumentError(fmt::format("{}:{}: occurrence of '{}', a category the sidecar does not list",
                                                    source, at_lines[i], out.located[i].category));
    }
  }
  std::stable_sort(out.located.begin(), out.located.end(),
                   [](const Occurrence& a, const Occurrence& b) { return a.start < b.start; });
  return out;
}

absl::StatusOr<std::set<std::string>> ParseExpect(std::string_view text, const std::string& source) {
  return ParseExpect(text, source, nullptr);
}

absl::StatusOr<std::set<std::string>> ParseExpect(std::string_view text, const std::string& source,
                                                  std::map<std::string, uint64_t>* counts) {
  auto e = ParseExpectation(text, source);
  if (!e.ok()) return e.status();
  if (counts != nullptr) *counts = std::move(e->counts);
  return std::move(e->categories);
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
    auto e = ParseExpectation(ss.str(), sidecar.string());
    if (!e.ok()) return e.status();
    samples.push_back(
        Sample{sample.string(), std::move(e->categories), std::move(e->counts), std::move(e->located)});
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

namespace {

CategoryScore& ScoreOf(Evaluation& e, const std::string& category) {
  auto& scores = e.scores;
  auto it = std::lower_bound(scores.begin(), scores.end(), category,
                             [](const CategoryScore& s, const std::string& c) { return s.category < c; });
  if (it == scores.end() || it->category != category) it = scores.insert(it, CategoryScore{category});
  return *it;
}

}  // namespace

void Evaluator::Add(const Sample& sample, const std::set<std::string>& found) {
  ++result_.samples;
  for (const auto& c : sample.expected) {
    if (found.count(c)) {
      ++ScoreOf(result_, c).true_positives;
    } else {
      ++ScoreOf(result_, c).false_negatives;
      result_.mismatches.push_back(Mismatch{sample.path, c, true});
    }
  }
  for (const auto& c : found) {
    if (sample.expected.count(c)) continue;
    ++ScoreOf(result_, c).false_positives;
    result_.mismatches.push_back(Mismatch{sample.path, c, false});
  }
}

void OccurrenceEvaluator::Add(const Sample& sample, std::vector<Occurrence> found) {
  ++result_.samples;
  std::set<std::string> located_categories;
  for (const auto& o : sample.located) located_categories.insert(o.category);
  for (const auto& c : sample.expected) {
    if (!located_categories.count(c)) ++unlocated_pairs_;
  }
  std::sort(found.begin(), found.end(), [](const Occurrence& a, const Occurrence& b) { return a.start < b.start; });
  std::vector<bool> taken(sample.located.size(), false);
  auto where = [](const Occurrence& o) { return fmt::format("{}-{}", o.start, o.end); };
  for (const auto& f : found) {
    const bool listed = sample.expected.count(f.category) != 0;
    if (listed && !located_categories.count(f.category)) continue;  // unlocated: per file only
    CategoryScore& score = ScoreOf(result_, f.category);
    bool matched = false;
    for (size_t i = 0; i < sample.located.size() && sample.located[i].start < f.end; ++i) {
      const Occurrence& l = sample.located[i];
      if (taken[i] || l.category != f.category || l.end <= f.start) continue;
      taken[i] = matched = true;
      break;
    }
    if (matched) {
      ++score.true_positives;
    } else {
      ++score.false_positives;
      result_.mismatches.push_back(Mismatch{sample.path, f.category, false, where(f)});
    }
  }
  for (size_t i = 0; i < sample.located.size(); ++i) {
    ++labelled_;
    if (taken[i]) continue;
    ++ScoreOf(result_, sample.located[i].category).false_negatives;
    result_.mismatches.push_back(Mismatch{sample.path, sample.located[i].category, true, where(sample.located[i])});
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
    out += fmt::format("  {} {}: {}{}{}\n", m.missed ? "missed" : "false ", m.category, m.path,
                       m.where.empty() ? "" : ":", m.where);
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
