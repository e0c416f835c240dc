#include "dlp/csv_header.h"

#include <algorithm>
#include <optional>

namespace egressguard::dlp {

namespace {

constexpr size_t kMaxHeader = 4096;

// "Card Number" / "card-number" / "\"CardNumber\"" -> "card_number"-like token string
// with '_' between runs of letters and digits, lower-case. Into `out`, whose buffer is
// reused across the columns of a header.
void Tokens(std::string_view column, std::string* out_ptr) {
  std::string& out = *out_ptr;
  out.clear();
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

std::vector<std::string> ColumnKeywordTokens(const std::vector<std::string>& keywords) {
  std::vector<std::string> out(keywords.size());
  for (size_t i = 0; i < keywords.size(); ++i) Tokens(keywords[i], &out[i]);
  return out;
}

std::optional<CsvHeaderLine> SplitCsvHeader(std::string_view line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (line.size() > kMaxHeader) return std::nullopt;
  // The delimiter: the most frequent of these (the first on a tie), counted in one pass.
  static constexpr char kDelims[] = {',', ';', '\t', '|'};
  size_t counts[4] = {};
  for (char c : line) {
    // None of a log's or a statement's punctuation (see below): most first lines that are
    // no header (JSON, HTML, a log) end here, at their first bytes.
    if (c == '=' || c == '[' || c == ']' || c == '{' || c == '}' || c == '<' || c == '>') return std::nullopt;
    counts[0] += c == kDelims[0];
    counts[1] += c == kDelims[1];
    counts[2] += c == kDelims[2];
    counts[3] += c == kDelims[3];
  }
  char delim = 0;
  size_t best = 0;
  for (size_t i = 0; i < 4; ++i) {
    if (counts[i] > best) {
      best = counts[i];
      delim = kDelims[i];
    }
  }
  if (delim == 0) return std::nullopt;
  // Every field of a header is a column name: a few words at most, none of a log's or a
  // statement's punctuation. A log line that lists columns ("... [sqlalchemy.engine]
  // SELECT users.id, users.email, users.phone FROM users") is no header, and its lines no
  // rows of people.
  {
    size_t words = 0;
    bool in_word = false;
    for (char c : line) {
      if (c == delim) {
        words = 0;
        in_word = false;
        continue;
      }
      const bool space = c == ' ' || c == '\t';
      if (!space && !in_word && ++words > 4) return std::nullopt;
      in_word = !space;
    }
  }
  CsvHeaderLine out{delim, {}};
  size_t start = 0;
  while (start <= line.size()) {
    size_t end = line.find(delim, start);
    if (end == std::string_view::npos) end = line.size();
    out.columns.emplace_back(line.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

size_t CsvColumnOf(std::string_view line_before, char delim) {
  size_t column = 0;
  bool quoted = false;
  for (char c : line_before) {
    if (c == '"') {
      quoted = !quoted;  // "" inside a quoted field toggles twice: still quoted
    } else if (c == delim && !quoted) {
      ++column;
    }
  }
  return column;
}

std::string PiiColumnsOfHeaderTokens(std::string_view line, const std::vector<std::string>& keyword_tokens) {
  const auto header = SplitCsvHeader(line);
  if (!header) return "";
  std::string found;
  std::string tokens;
  for (const std::string& column : header->columns) {
    Tokens(column, &tokens);
    for (const auto& kw : keyword_tokens) {
      if (NamesKeyword(tokens, kw)) {
        if (!found.empty()) found += ",";
        found += tokens;
        break;
      }
    }
  }
  return found;
}

std::string PiiColumnsOfHeader(std::string_view line, const std::vector<std::string>& keywords) {
  return PiiColumnsOfHeaderTokens(line, ColumnKeywordTokens(keywords));
}

void CsvHeaderDetector::DecideHeader() {
  // A header line is text: control bytes (a zip's local header, any binary prefix) mean
  // this is no CSV, whatever column-like words follow them. Tabs are TSV delimiters.
  const bool binary = std::any_of(header_.begin(), header_.end(), [](char c) {
    return (static_cast<unsigned char>(c) < 0x20 && c != '\t' && c != '\r') || c == 0x7f;
  });
  pii_columns_ = keywords_ && !binary ? PiiColumnsOfHeaderTokens(header_, *keywords_) : "";
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
