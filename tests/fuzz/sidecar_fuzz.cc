// Fuzzes the labelled-sample sidecar parser (`email 3`, `at email 120-139`, `none`) and
// the delimited-header reader the engine takes column context from: any bytes. A parsed
// sidecar has what it promised (sorted ranges of listed categories, nothing listed beside
// `none`... or a reason with its line); a header's column of any line prefix is within its
// columns' count, and the columns joined by the delimiter give back the line.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "dlp/csv_header.h"
#include "rules/sample_set.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  auto e = egressguard::rules::ParseExpectation(input, "f.expect");
  if (e.ok()) {
    uint64_t last = 0;
    for (const auto& o : e->located) {
      if (o.start >= o.end || o.start < last || !e->categories.count(o.category)) std::abort();
      last = o.start;
    }
    for (const auto& [c, n] : e->counts) {
      if (n == 0 || !e->categories.count(c)) std::abort();
    }
  } else if (std::string(e.status().message()).rfind("f.expect", 0) != 0) {
    std::abort();  // every refusal names the file
  }

  const size_t nl = input.find('\n');
  const std::string_view line = input.substr(0, nl);
  if (auto header = egressguard::dlp::SplitCsvHeader(line)) {
    std::string joined;
    for (size_t i = 0; i < header->columns.size(); ++i) {
      if (i > 0) joined += header->delimiter;
      joined += header->columns[i];
    }
    std::string_view expect = line;
    if (!expect.empty() && expect.back() == '\r') expect.remove_suffix(1);
    if (joined != expect) std::abort();
    if (nl != std::string_view::npos) {
      const std::string_view row = input.substr(nl + 1);
      for (size_t k = 0; k <= row.size(); k += 1 + k / 8) {
        if (egressguard::dlp::CsvColumnOf(row.substr(0, k), header->delimiter) > row.size()) std::abort();
      }
    }
  }
  return 0;
}
