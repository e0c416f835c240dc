#include "dlp/csv_header.h"

#include <algorithm>

namespace egressguard::dlp {

namespace {

constexpr size_t kMaxHeader = 4096;

// "Card Number" / "card-number" / "\"CardNumber\"" -> "card_number"-like token string
// with '_' between runs of letters and digits, lower-case.
std::string Tokens(std::string_view column) {
  std::string out;
  char prev = 0;
  for (char c : column) {
    bool upper = c >= 'A' && c <= 'Z';
    bool alnum = upper || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
    if (!alnum) {
      if (!out.empty() && out.back() != '_') out.push_back('_');
      prev = c;
      continue;
    }
    // camelCase boundary
    if (upper && prev >= 'a' && prev <= 'z' && !out.empty() && out.back() != '_') out.push_back('_');
    out.push_back(upper ? static_cast<char>(c + 32) : c);
    prev = c;
  }
  while (!out.empty() && out.back() == '_') out.pop_back();
  return out;
}

// `kw`: a keyword already passed through Tokens().
bool NamesKeyword(const std::string& tokens, const std::string& kw) {
  if (kw.empty()) return false;
  for (size_t pos = tokens.find(kw); pos != std::string::npos; pos = tokens.find(kw, pos + 1)) {
    bool left = pos == 0 || tokens[pos - 1] == '_';
    size_t end = pos + kw.size();
    // allow a plural "s" (emails, phones)
    bool right = end == tokens.size() || tokens[end] == '_' ||
                 (tokens[end] == 's' && (end + 1 == tokens.size() || tokens[end + 1] == '_'));
    if (left && right) return true;
  }
  return false;
}

}  // namespace

std::string PiiColumnsOfHeader(std::string_view line, const std::vector<std::string>& keywords) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  char delim = 0;
  size_t best = 0;
  for (char d : std::string_view(",;\t|")) {
    size_t c = static_cast<size_t>(std::count(line.begin(), line.end(), d));
    if (c > best) {
      best = c;
      delim = d;
    }
  }
  if (delim == 0) return "";
  std::vector<std::string> kw_tokens;
  kw_tokens.reserve(keywords.size());
  for (const auto& kw : keywords) kw_tokens.push_back(Tokens(kw));
  std::string found;
  size_t start = 0;
  while (start <= line.size()) {
    size_t end = line.find(delim, start);
    if (end == std::string_view::npos) end = line.size();
    std::string tokens = Tokens(line.substr(start, end - start));
    for (const auto& kw : kw_tokens) {
      if (NamesKeyword(tokens, kw)) {
        if (!found.empty()) found += ",";
        found += tokens;
        break;
      }
    }
    start = end + 1;
  }
  return found;
}

void CsvHeaderDetector::DecideHeader() {
  pii_columns_ = keywords_ ? PiiColumnsOfHeader(header_, *keywords_) : "";
  state_ = pii_columns_.empty() ? State::kNotCsv : State::kRows;
  header_.clear();
  header_.shrink_to_fit();
}

void CsvHeaderDetector::Feed(std::string_view chunk) {
  if (state_ == State::kHeader) {
    size_t nl = chunk.find('\n');
    size_t take = nl == std::string_view::npos ? chunk.size() : nl;
    if (header_.size() + take > kMaxHeader) {
      state_ = State::kNotCsv;
      return;
    }
    header_.append(chunk.data(), take);
    if (nl == std::string_view::npos) return;
    DecideHeader();
    chunk.remove_prefix(nl + 1);
  }
  if (state_ != State::kRows) return;
  // Count non-empty lines: a line counts when it holds a byte other than '\r'.
  for (char c : chunk) {
    if (c == '\n') {
      if (line_open_) ++rows_;
      line_open_ = false;
    } else if (c != '\r') {
      line_open_ = true;
    }
  }
}

void CsvHeaderDetector::Finish() {
  if (state_ == State::kHeader) state_ = State::kNotCsv;  // a single line is no table
}

}  // namespace egressguard::dlp
