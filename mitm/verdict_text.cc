#include "mitm/verdict_text.h"

#include <fmt/format.h>

#include <algorithm>

#include "mitm/http1.h"

namespace egressguard::mitm {

std::string StripQueryValues(std::string_view target) {
  auto q = target.find('?');
  if (q == std::string_view::npos) return std::string(target);
  std::string out(target.substr(0, q + 1));
  std::string_view query = target.substr(q + 1);
  size_t start = 0;
  bool first = true;
  while (start <= query.size()) {
    size_t amp = query.find('&', start);
    std::string_view pair = query.substr(start, amp == std::string_view::npos ? std::string_view::npos : amp - start);
    std::string_view key = pair.substr(0, pair.find('='));
    if (!first) out += '&';
    out += key;
    if (pair.find('=') != std::string_view::npos) out += '=';
    first = false;
    if (amp == std::string_view::npos) break;
    start = amp + 1;
  }
  return out;
}

rules::v1::Action Strongest(const std::vector<dlp::MessageResult>& results) {
  rules::v1::Action a = rules::v1::ALLOW;
  for (const auto& r : results) a = std::max(a, r.action);
  return a;
}

std::string ReasonFor(const std::vector<dlp::MessageResult>& results, rules::v1::Action action) {
  std::string out;
  for (const auto& r : results) {
    if (r.action != action || r.reason.empty() || action == rules::v1::ALLOW) continue;
    if (!out.empty()) out += ',';
    out += r.reason;
  }
  return out;
}

std::string JsonEscape(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      out += ' ';
    } else {
      out += c;
    }
  }
  return out;
}

std::string RedactSpans(std::string_view text, const std::vector<dlp::MatchedSpan>& spans) {
  if (spans.empty()) return std::string(text);
  std::vector<const dlp::MatchedSpan*> sorted;
  sorted.reserve(spans.size());
  for (const auto& s : spans) sorted.push_back(&s);
  std::sort(sorted.begin(), sorted.end(), [](auto* a, auto* b) { return a->start < b->start; });
  std::string out;
  uint64_t pos = 0;
  for (const auto* s : sorted) {
    const uint64_t start = std::min<uint64_t>(s->start, text.size());
    const uint64_t end = std::min<uint64_t>(s->end, text.size());
    if (end <= pos) continue;  // inside a span already replaced
    if (start > pos) out.append(text.substr(pos, start - pos));
    out.append(s->evidence.empty() ? std::string_view("[redacted]") : std::string_view(s->evidence));
    pos = end;
  }
  if (pos < text.size()) out.append(text.substr(pos));
  return out;
}

std::string RecordedPath(std::string_view target, const dlp::MessageResult* url_scan) {
  if (url_scan == nullptr || url_scan->spans.empty()) return StripQueryValues(target);
  return StripQueryValues(RedactSpans(http1::PercentDecode(target), url_scan->spans));
}

bool IsStandardMethod(std::string_view m) {
  static constexpr std::string_view kMethods[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE",
                                                  "PATCH"};
  return std::find(std::begin(kMethods), std::end(kMethods), m) != std::end(kMethods);
}

std::string RefusalJson(std::string_view phrase, std::string_view why) {
  return fmt::format("{{\"error\":\"{}\",\"reason\":\"{}\"}}\n", JsonEscape(phrase), JsonEscape(why));
}

std::string BlockedWhy(const std::vector<dlp::MessageResult>& results, std::string_view condition) {
  if (!condition.empty()) return "blocked: " + std::string(condition);
  return "blocked by data-loss-prevention rules: " + ReasonFor(results, Strongest(results));
}

}  // namespace egressguard::mitm
