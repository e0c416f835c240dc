#pragma once
// Recognizes a CSV/TSV export whose header line names PII columns ("email",
// "iban", "card_number"...) and counts its data rows, so a customer table leaving as a
// spreadsheet is bulk PII even where single values would not validate.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace egressguard::dlp {

class CsvHeaderDetector {
 public:
  // `keywords`: column-name keywords (the bulk_pii rule's context keywords) as
  // ColumnKeywordTokens() gives them, once per pack rather than once per message.
  explicit CsvHeaderDetector(const std::vector<std::string>* keywords) : keywords_(keywords) {}

  void Feed(std::string_view chunk);
  void Finish();
  // Ready for the next message, keeping the buffers.
  void Reset() {
    state_ = State::kHeader;
    header_.clear();
    pii_columns_.clear();
    rows_ = 0;
    line_open_ = false;
  }

  bool is_pii_csv() const { return state_ == State::kRows; }
  uint64_t rows() const { return rows_ + (line_open_ ? 1 : 0); }
  // The PII columns the header named (for evidence), comma-separated.
  const std::string& pii_columns() const { return pii_columns_; }

 private:
  enum class State { kHeader, kRows, kNotCsv };
  void DecideHeader();

  const std::vector<std::string>* keywords_;
  State state_ = State::kHeader;
  std::string header_;
  std::string pii_columns_;
  uint64_t rows_ = 0;
  bool line_open_ = false;  // a data line has started and not yet ended
};

// A header line split into its column names (as written, \r dropped), or nullopt when
// the line is no delimited header: no delimiter, or a field that reads like a log or a
// statement rather than a column name.
struct CsvHeaderLine {
  char delimiter = ',';
  std::vector<std::string> columns;
};
std::optional<CsvHeaderLine> SplitCsvHeader(std::string_view line);
// The column a field lies in, given its line's bytes before it (quotes respected).
size_t CsvColumnOf(std::string_view line_before, char delimiter);

// Exposed for tests: the PII columns of one header line ("" when it is not a CSV header
// naming at least one of `keywords`).
std::string PiiColumnsOfHeader(std::string_view line, const std::vector<std::string>& keywords);
// The same with keywords already through ColumnKeywordTokens().
std::string PiiColumnsOfHeaderTokens(std::string_view line, const std::vector<std::string>& keyword_tokens);
// Column-name keywords in the token form headers are compared in ("Card Number" ->
// "card_number").
std::vector<std::string> ColumnKeywordTokens(const std::vector<std::string>& keywords);

}  // namespace egressguard::dlp
