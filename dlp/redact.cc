#include "dlp/redact.h"

#include <cctype>
#include <string>

namespace egressguard::dlp {

namespace {

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

std::string DigitsOf(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (IsDigit(c)) out.push_back(c);
  }
  return out;
}

std::string Without(std::string_view v, std::string_view drop) {
  std::string out;
  for (char c : v) {
    if (drop.find(c) == std::string_view::npos) out.push_back(c);
  }
  return out;
}

std::string Upper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Keeps the first `head` and last `tail` characters, masks the rest; when the value is
// too short to hide anything that way, masks it all.
std::string MaskMiddle(std::string_view v, size_t head, size_t tail) {
  if (v.size() <= head + tail + 4) return std::string(v.size() < 4 ? 4 : v.size(), '*');
  std::string out(v.substr(0, head));
  out.append(v.size() - head - tail, '*');
  out.append(v.substr(v.size() - tail));
  return out;
}

std::string GroupsOfFour(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (i > 0 && i % 4 == 0) out.push_back(' ');
    out.push_back(s[i]);
  }
  return out;
}

std::string RedactEmail(std::string_view v) {
  const size_t at = v.rfind('@');
  if (at == std::string_view::npos || at == 0) return MaskMiddle(v, 0, 0);
  // The domain names the organisation, not the person: it stays.
  return std::string(1, v[0]) + "***" + Lower(std::string(v.substr(at)));
}

std::string RedactPem(std::string_view v) {
  const size_t end = v.find("-----", 5);
  if (v.substr(0, 5) != "-----" || end == std::string_view::npos || end > 64) return "-----BEGIN PRIVATE KEY----- [redacted]";
  return std::string(v.substr(0, end + 5)) + " [redacted]";
}

std::string RedactJwt(std::string_view v) {
  // The header (algorithm, key id) is not secret and tells an analyst what leaked.
  const size_t dot = v.find('.');
  std::string_view header = v.substr(0, dot == std::string_view::npos ? 0 : dot);
  if (header.size() > 36) header = header.substr(0, 36);
  return std::string(header) + ".****.****";
}

std::string RedactPhone(std::string_view v) {
  // Keep the country code area (first two digits) and the last two digits.
  const std::string digits = DigitsOf(v);
  if (digits.size() < 7) return "****";
  std::string out;
  size_t seen = 0;
  for (char c : v) {
    if (!IsDigit(c)) {
      out.push_back(c);
      continue;
    }
    out.push_back(seen < 2 || seen + 2 >= digits.size() ? c : '*');
    ++seen;
  }
  return out;
}

}  // namespace

std::string NormalizeValue(std::string_view category, std::string_view value) {
  if (category == "credit_card" || category == "ahv" || category == "us_ssn" || category == "de_steuer_id") {
    return DigitsOf(value);
  }
  if (category == "iban" || category == "uk_nino") return Upper(Without(value, " -"));
  if (category == "email") {
    // A form or URL percent-encodes the local part ("jane%2Bnews@..."): the same
    // mailbox as "jane+news@...", so the same value for counting and fingerprints.
    std::string out;
    out.reserve(value.size());
    const size_t at = value.find('@');
    auto hex = [](char c) -> int {
      if (c >= '0' && c <= '9') return c - '0';
      if (c >= 'a' && c <= 'f') return c - 'a' + 10;
      if (c >= 'A' && c <= 'F') return c - 'A' + 10;
      return -1;
    };
    for (size_t i = 0; i < value.size(); ++i) {
      if (value[i] == '%' && i < at && i + 2 < value.size() && hex(value[i + 1]) >= 0 && hex(value[i + 2]) >= 0) {
        out.push_back(static_cast<char>(hex(value[i + 1]) * 16 + hex(value[i + 2])));
        i += 2;
      } else {
        out.push_back(value[i]);
      }
    }
    return Lower(std::move(out));
  }
  if (category == "phone") {
    std::string digits = DigitsOf(value);
    std::string_view trimmed = value.substr(value.find_first_not_of(" \t") == std::string_view::npos
                                                ? value.size()
                                                : value.find_first_not_of(" \t"));
    if (!trimmed.empty() && trimmed[0] == '+') return "+" + digits;
    if (digits.rfind("00", 0) == 0) return "+" + digits.substr(2);
    return digits;
  }
  return Without(value, " \t\r\n");
}

std::string Redact(std::string_view category, std::string_view value) {
  if (category == "credit_card") {
    const std::string d = DigitsOf(value);
    if (d.size() < 12) return "****";
    std::string masked = d.substr(0, 4) + std::string(d.size() - 8, '*') + d.substr(d.size() - 4);
    return GroupsOfFour(masked);
  }
  if (category == "iban") {
    const std::string c = NormalizeValue(category, value);
    if (c.size() < 12) return "****";
    return GroupsOfFour(c.substr(0, 4) + std::string(c.size() - 8, '*') + c.substr(c.size() - 4));
  }
  if (category == "ahv") {
    const std::string d = DigitsOf(value);
    if (d.size() != 13) return "756.****.****.**";
    return "756.****.**" + d.substr(9, 2) + "." + d.substr(11, 2);
  }
  if (category == "us_ssn") {
    const std::string d = DigitsOf(value);
    if (d.size() != 9) return "***-**-****";
    return "***-**-" + d.substr(5);
  }
  if (category == "email") return RedactEmail(value);
  if (category == "phone") return RedactPhone(value);
  if (category == "aws_access_key") return MaskMiddle(value, 4, 4);
  if (category == "github_token") return MaskMiddle(value, 4, 4);
  if (category == "private_key") return RedactPem(value);
  if (category == "jwt") return RedactJwt(value);
  if (category == "uk_nino") return MaskMiddle(NormalizeValue(category, value), 2, 1);
  if (category == "de_steuer_id") return MaskMiddle(DigitsOf(value), 0, 4);
  return MaskMiddle(NormalizeValue(category, value), 2, 2);
}

}  // namespace egressguard::dlp
