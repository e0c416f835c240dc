#include "dlp/validators.h"

#include <libpsl.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <string>
#include <utility>

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <phonenumbers/phonenumberutil.h>

#include "absl/strings/escaping.h"

namespace egressguard::dlp {

namespace {

bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsUpper(char c) { return c >= 'A' && c <= 'Z'; }
bool IsLower(char c) { return c >= 'a' && c <= 'z'; }
bool IsAlnum(char c) { return IsDigit(c) || IsUpper(c) || IsLower(c); }

// Collects the digits of `value` into `out`, skipping the separators in `seps`; false
// when any other character appears.
bool DigitsOnly(std::string_view value, std::string_view seps, std::string* out) {
  out->clear();
  for (char c : value) {
    if (IsDigit(c)) {
      out->push_back(c);
    } else if (seps.find(c) == std::string_view::npos) {
      return false;
    }
  }
  return true;
}

// Separators between digit groups must be single and consistent ("4111 1111-1111" is
// not how anyone writes a card); leading or trailing separators are refused.
bool SeparatorsConsistent(std::string_view value, std::string_view seps) {
  char used = 0;
  char prev = 0;
  for (size_t i = 0; i < value.size(); ++i) {
    char c = value[i];
    if (seps.find(c) == std::string_view::npos) {
      prev = c;
      continue;
    }
    if (i == 0 || i + 1 == value.size()) return false;
    if (seps.find(prev) != std::string_view::npos) return false;
    if (used != 0 && used != c) return false;
    used = c;
    prev = c;
  }
  return true;
}

int PrefixNumber(const std::string& digits, size_t n) {
  int v = 0;
  for (size_t i = 0; i < n && i < digits.size(); ++i) v = v * 10 + (digits[i] - '0');
  return v;
}

bool InRange(int v, int lo, int hi) { return v >= lo && v <= hi; }

bool IsMaestroIin(const std::string& d) {
  static constexpr std::array<int, 9> kMaestro = {5018, 5020, 5038, 5893, 6304, 6759, 6761, 6762, 6763};
  const int p4 = PrefixNumber(d, 4), p6 = PrefixNumber(d, 6);
  return std::find(kMaestro.begin(), kMaestro.end(), p4) != kMaestro.end() || p6 == 676770 || p6 == 676774;
}

// Issuer ranges (IIN prefixes) and the lengths each brand issues.
bool KnownCardBrand(const std::string& d) {
  const size_t len = d.size();
  const int p1 = PrefixNumber(d, 1), p2 = PrefixNumber(d, 2), p3 = PrefixNumber(d, 3),
            p4 = PrefixNumber(d, 4), p6 = PrefixNumber(d, 6);
  // Visa
  if (p1 == 4) return len == 13 || len == 16 || len == 19;
  // Mastercard
  if (InRange(p2, 51, 55) || InRange(p4, 2221, 2720)) return len == 16;
  // American Express
  if (p2 == 34 || p2 == 37) return len == 15;
  // Diners Club International / Carte Blanche
  if (InRange(p3, 300, 305) || p4 == 3095 || p2 == 36 || p2 == 38 || p2 == 39) return len >= 14 && len <= 19;
  // JCB
  if (InRange(p4, 3528, 3589)) return len >= 16 && len <= 19;
  // Discover (incl. the China UnionPay co-branded 622126-622925 range)
  if (p4 == 6011 || InRange(p3, 644, 649) || p2 == 65 || InRange(p6, 622126, 622925)) {
    return len >= 16 && len <= 19;
  }
  // UnionPay
  if (p2 == 62) return len >= 16 && len <= 19;
  // Maestro: 12..19 digits (ISO/IEC 7812 allows 12; UK Maestro issued them), so a
  // 12-digit number is a card only in these ranges. Mastercard's published Maestro
  // IINs: 5018, 5020, 5038, 5893, 6304, 6759, 6761-6763, and the former UK Maestro
  // (Switch/Solo successor) 676770 and 676774.
  if (IsMaestroIin(d)) return len >= 12 && len <= 19;
  return false;
}

// Registered IBAN lengths: every SEPA country plus the other IBAN countries seen in
// Swiss/EU payment traffic.
int IbanLength(std::string_view cc) {
  static constexpr std::pair<std::string_view, int> kLengths[] = {
      {"AD", 24}, {"AE", 23}, {"AL", 28}, {"AT", 20}, {"AZ", 28}, {"BA", 20}, {"BE", 16}, {"BG", 22},
      {"BH", 22}, {"BR", 29}, {"BY", 28}, {"CH", 21}, {"CR", 22}, {"CY", 28}, {"CZ", 24}, {"DE", 22},
      {"DK", 18}, {"DO", 28}, {"EE", 20}, {"EG", 29}, {"ES", 24}, {"FI", 18}, {"FO", 18}, {"FR", 27},
      {"GB", 22}, {"GE", 22}, {"GI", 23}, {"GL", 18}, {"GR", 27}, {"GT", 28}, {"HR", 21}, {"HU", 28},
      {"IE", 22}, {"IL", 23}, {"IQ", 23}, {"IS", 26}, {"IT", 27}, {"JO", 30}, {"KW", 30}, {"KZ", 20},
      {"LB", 28}, {"LC", 32}, {"LI", 21}, {"LT", 20}, {"LU", 20}, {"LV", 21}, {"MC", 27}, {"MD", 24},
      {"ME", 22}, {"MK", 19}, {"MR", 27}, {"MT", 31}, {"MU", 30}, {"NL", 18}, {"NO", 15}, {"PK", 24},
      {"PL", 28}, {"PS", 29}, {"PT", 25}, {"QA", 29}, {"RO", 24}, {"RS", 22}, {"SA", 24}, {"SC", 31},
      {"SE", 24}, {"SI", 19}, {"SK", 24}, {"SM", 27}, {"ST", 25}, {"SV", 28}, {"TL", 23}, {"TN", 24},
      {"TR", 26}, {"UA", 29}, {"VA", 22}, {"VG", 24}, {"XK", 20},
  };
  for (const auto& [code, len] : kLengths) {
    if (code == cc) return len;
  }
  return 0;
}

// Base62 value of `s` in GitHub's alphabet (0-9, A-Z, a-z); false on overflow/bad char.
bool Base62Decode(std::string_view s, uint64_t* out) {
  uint64_t v = 0;
  for (char c : s) {
    int d;
    if (IsDigit(c)) {
      d = c - '0';
    } else if (IsUpper(c)) {
      d = c - 'A' + 10;
    } else if (IsLower(c)) {
      d = c - 'a' + 36;
    } else {
      return false;
    }
    v = v * 62 + static_cast<uint64_t>(d);
  }
  *out = v;
  return true;
}

// 2026-11-26, 26.11.2026, 2026/11/26: digit counts that national plans accept.
bool LooksLikeDate(std::string_view v) {
  auto shape = [&](std::string_view pattern) {
    if (v.size() != pattern.size()) return false;
    for (size_t i = 0; i < v.size(); ++i) {
      if (pattern[i] == 'd' ? !IsDigit(v[i]) : std::string_view("-./").find(v[i]) == std::string_view::npos) {
        return false;
      }
    }
    return true;
  };
  return shape("dddd-dd-dd") || shape("dd-dd-dddd") || shape("dd-dd-dd");
}

bool IsBase64Char(char c) { return IsAlnum(c) || c == '+' || c == '/'; }
bool IsBase64UrlChar(char c) { return IsAlnum(c) || c == '-' || c == '_'; }

bool ValidBase64UrlJsonObjectWithAlg(std::string_view segment) {
  std::string decoded;
  if (!absl::WebSafeBase64Unescape(absl::string_view(segment.data(), segment.size()), &decoded)) return false;
  google::protobuf::Struct header;
  google::protobuf::util::JsonParseOptions opts;
  opts.ignore_unknown_fields = true;
  if (!google::protobuf::util::JsonStringToMessage(decoded, &header, opts).ok()) return false;
  const auto& fields = header.fields();
  auto it = fields.find("alg");
  return it != fields.end() && it->second.kind_case() == google::protobuf::Value::kStringValue &&
         !it->second.string_value().empty();
}

}  // namespace

bool LuhnValid(std::string_view value) {
  int sum = 0;
  int digits = 0;
  for (auto it = value.rbegin(); it != value.rend(); ++it) {
    if (*it < '0' || *it > '9') continue;
    int d = *it - '0';
    if (digits % 2 == 1) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    ++digits;
  }
  return digits >= 2 && sum % 10 == 0;
}

bool CreditCardValid(std::string_view value) {
  std::string d;
  if (!DigitsOnly(value, " -", &d) || !SeparatorsConsistent(value, " -")) return false;
  if (d.size() < 12 || d.size() > 19) return false;  // 12: Maestro only (KnownCardBrand)
  // A run of one digit passes Luhn for some lengths and is never a real PAN.
  if (std::all_of(d.begin(), d.end(), [&](char c) { return c == d[0]; })) return false;
  return KnownCardBrand(d) && LuhnValid(d);
}

namespace {

// One group of a grouped identifier next to a card window: 1..4 digits or upper-case
// letters holding at least one digit (IBAN BBAN groups like "0105" or "1B2C"); "VISA"
// or "Card" in front of a card is not one.
bool IsIdGroup(std::string_view g) {
  if (g.empty() || g.size() > 4) return false;
  bool digit = false;
  for (char c : g) {
    if (IsDigit(c)) {
      digit = true;
    } else if (!IsUpper(c)) {
      return false;
    }
  }
  return digit;
}

bool IsIbanHead(std::string_view g) {
  return g.size() == 4 && IsUpper(g[0]) && IsUpper(g[1]) && IsDigit(g[2]) && IsDigit(g[3]) &&
         IbanLength(g.substr(0, 2)) != 0;
}

}  // namespace

bool PhoneInLongerToken(std::string_view before, std::string_view value, std::string_view) {
  if (value.empty() || before.empty()) return false;
  if (value.front() == '+') return IsAlnum(before.back());
  size_t i = before.size();
  const char sep = before[i - 1];
  if (sep != ' ' && sep != '+' && sep != '-' && sep != '.' && sep != '/') return false;
  const size_t digits_end = --i;
  while (i > 0 && IsDigit(before[i - 1]) && digits_end - i < 3) --i;
  if (i == digits_end) return false;  // no country code group
  if (i >= 1 && before[i - 1] == '+') return true;
  return i >= 3 && before[i - 3] == '%' && before[i - 2] == '2' && (before[i - 1] == 'B' || before[i - 1] == 'b');
}

NeighborCheck NeighborCheckFor(std::string_view validator) {
  if (validator == "credit_card") return {&CardWindowInLongerId, kCardNeighborBytes};
  if (validator == "phone") return {&PhoneInLongerToken, kPhoneNeighborBytes};
  return {};
}

bool CardWindowInLongerId(std::string_view before, std::string_view value, std::string_view after) {
  if (value.empty()) return false;
  char sep = 0;
  for (char c : value) {
    if (c == ' ' || c == '-') {
      sep = c;
      break;
    }
  }
  // Ungrouped: an international phone number ("+4916026889900", "+1 4155550123456") is
  // the only longer token that can end where  lets a compact window start; an IBAN
  // printed compactly is one word and never yields a window.
  if (sep == 0) {
    if (!before.empty() && before.back() == '+') return true;
    // "+49 1602..." / "+1-4155...": a country code group right after the '+'.
    size_t i = before.size();
    if (i >= 2 && (before[i - 1] == ' ' || before[i - 1] == '-')) {
      size_t j = i - 1;
      while (j > 0 && IsDigit(before[j - 1]) && i - 1 - j < 4) --j;
      if (j < i - 1 && j > 0 && before[j - 1] == '+') return true;
    }
    return false;
  }
  // Grouped: the group right before the window, joined by the same separator, makes it
  // part of a longer sequence (an IBAN's country+check group "SE25", a BBAN group, a
  // phone number's country code "+49"); so does a further group right after it.
  if (before.size() >= 2 && before.back() == sep) {
    std::string_view head = before.substr(0, before.size() - 1);
    size_t k = head.size();
    while (k > 0 && (IsDigit(head[k - 1]) || IsUpper(head[k - 1]))) --k;
    std::string_view group = head.substr(k);
    const bool plus = k > 0 && head[k - 1] == '+';
    if (IsIbanHead(group) || (plus && IsIdGroup(group))) return true;
    // A full 4-character group before it: the window is a later part of a grouped
    // IBAN or account number. A shorter group ("Order 12 4111 1111 ...") is not read
    // as the same grouping.
    if (group.size() == 4 && IsIdGroup(group)) return true;
  }
  if (after.size() >= 2 && after[0] == sep) {
    size_t k = 1;
    while (k < after.size() && (IsDigit(after[k]) || IsUpper(after[k]))) ++k;
    std::string_view group = after.substr(1, k - 1);
    // The group must end the token: "4111 1111 1111 1111 12/27" is a card and its expiry.
    const bool ends = k == after.size() || !(after[k] == '/' || after[k] == '.' || IsLower(after[k]));
    if (IsIdGroup(group) && ends) return true;
  }
  return false;
}

bool IbanValid(std::string_view value) {
  std::string compact;
  for (char c : value) {
    if (c == ' ') continue;
    if (!IsUpper(c) && !IsDigit(c)) return false;
    compact.push_back(c);
  }
  if (!SeparatorsConsistent(value, " ")) return false;
  if (compact.size() < 15 || compact.size() > 34) return false;
  if (!IsUpper(compact[0]) || !IsUpper(compact[1]) || !IsDigit(compact[2]) || !IsDigit(compact[3])) return false;
  const int expected = IbanLength(std::string_view(compact).substr(0, 2));
  if (expected == 0 || static_cast<size_t>(expected) != compact.size()) return false;
  // ISO 13616: move the first four characters to the end, letters to 10..35, mod 97.
  std::string rearranged = compact.substr(4) + compact.substr(0, 4);
  int rem = 0;
  for (char c : rearranged) {
    if (IsDigit(c)) {
      rem = (rem * 10 + (c - '0')) % 97;
    } else {
      rem = (rem * 100 + (c - 'A' + 10)) % 97;
    }
  }
  return rem == 1;
}

bool AhvValid(std::string_view value) {
  std::string d;
  if (!DigitsOnly(value, ".", &d) || !SeparatorsConsistent(value, ".")) return false;
  if (d.size() != 13 || d.compare(0, 3, "756") != 0) return false;
  // Dotted form is exactly 756.dddd.dddd.dd.
  if (value.size() != 13 && (value.size() != 16 || value[3] != '.' || value[8] != '.' || value[13] != '.')) {
    return false;
  }
  int sum = 0;
  for (size_t i = 0; i < 12; ++i) sum += (d[i] - '0') * (i % 2 == 0 ? 1 : 3);
  return (10 - sum % 10) % 10 == d[12] - '0';
}

bool UsSsnValid(std::string_view value) {
  std::string d;
  if (!DigitsOnly(value, "- ", &d) || d.size() != 9 || !SeparatorsConsistent(value, "- ")) return false;
  // Only AAA-GG-SSSS groupings (or none) are how an SSN is written.
  if (value.size() == 11 && !((value[3] == '-' || value[3] == ' ') && value[6] == value[3])) return false;
  if (value.size() != 9 && value.size() != 11) return false;
  const int area = PrefixNumber(d, 3);
  const int group = PrefixNumber(d.substr(3), 2);
  const int serial = PrefixNumber(d.substr(5), 4);
  if (area == 0 || area == 666 || area >= 900 || group == 0 || serial == 0) return false;
  // Published in advertising, documentation and test suites; never a person's number.
  static constexpr std::string_view kPublished[] = {"078051120", "219099999", "123456789", "457555462"};
  for (auto p : kPublished) {
    if (d == p) return false;
  }
  return !std::all_of(d.begin(), d.end(), [&](char c) { return c == d[0]; });
}

bool EmailValid(std::string_view value) {
  if (value.size() < 6 || value.size() > 254) return false;
  const size_t at = value.find('@');
  if (at == std::string_view::npos || at == 0 || at > 64 || value.find('@', at + 1) != std::string_view::npos) {
    return false;
  }
  std::string_view local = value.substr(0, at);
  std::string_view domain = value.substr(at + 1);
  static constexpr std::string_view kLocalSpecials = ".!#$%&'*+/=?^_`{|}~-";
  char prev = 0;
  for (char c : local) {
    if (!IsAlnum(c) && kLocalSpecials.find(c) == std::string_view::npos) return false;
    if (c == '.' && prev == '.') return false;
    prev = c;
  }
  if (local.front() == '.' || local.back() == '.') return false;
  // Domain: LDH labels of 1..63, at least two, TLD alphabetic 2..24.
  size_t labels = 0;
  size_t start = 0;
  std::string_view tld;
  while (start <= domain.size()) {
    size_t dot = domain.find('.', start);
    if (dot == std::string_view::npos) dot = domain.size();
    std::string_view label = domain.substr(start, dot - start);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') return false;
    for (char c : label) {
      if (!IsAlnum(c) && c != '-') return false;
    }
    ++labels;
    tld = label;
    start = dot + 1;
  }
  if (labels < 2 || tld.size() < 2 || tld.size() > 24) return false;
  std::string lower_tld;
  for (char c : tld) {
    if (!IsUpper(c) && !IsLower(c)) return false;
    lower_tld.push_back(static_cast<char>(IsUpper(c) ? c - 'A' + 'a' : c));
  }
  // Retina assets and bundles (logo@2x.png, inter@3x.woff2, pkg@1.2.3.js) look like
  // addresses; so do hosts on names that never route on the Internet (app@db.internal).
  static constexpr std::string_view kNotMailTlds[] = {
      "png",  "jpg",  "jpeg", "gif", "svg",   "webp",     "ico",      "avif",     "bmp",  "js",   "css",
      "map",  "ts",   "json", "tgz", "gz",    "zip",      "woff",     "ttf",      "otf",  "eot",  "mp4",
      "webm", "pdf",  "html", "htm", "php",   "internal", "local",    "localhost", "lan", "intranet",
      "test", "invalid", "localdomain"};
  for (auto tld_name : kNotMailTlds) {
    if (lower_tld == tld_name) return false;
  }
  // A TLD the root zone has (the Public Suffix List's ICANN section, without its "any
  // unknown label is a suffix" rule): random bytes and base64 make a@b.xq shapes by the
  // thousand, real mail never goes there.
  // (Debian's libpsl carries the list built in; a build without one skips the check.)
  static const psl_ctx_t* const kSuffixes = psl_builtin();
  if (kSuffixes != nullptr &&
      psl_is_public_suffix2(kSuffixes, lower_tld.c_str(), PSL_TYPE_ICANN | PSL_TYPE_NO_STAR_RULE) != 1) {
    return false;
  }
  // Credentials in URLs (https://x-access-token:ghs_...@github.com) put a token where
  // the local part would be: long, mixed case and digits, which addresses people use
  // never are.
  const bool upper = std::any_of(local.begin(), local.end(), IsUpper);
  const bool lower = std::any_of(local.begin(), local.end(), IsLower);
  const bool digit = std::any_of(local.begin(), local.end(), IsDigit);
  if (local.size() >= 20 && upper && lower && digit) return false;
  // A UUID before the '@' is a machine's id (Message-ID: <uuid@mail.example.ch>, a
  // Content-ID), never a person's mailbox: counted as an address it inflates every
  // e-mail's count by one.
  if (local.size() == 36) {
    bool uuid = true;
    for (size_t i = 0; i < 36 && uuid; ++i) {
      const char c = local[i];
      uuid = (i == 8 || i == 13 || i == 18 || i == 23) ? c == '-' : (IsDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'));
    }
    if (uuid) return false;
  }
  return true;
}

bool PhoneValid(std::string_view value) {
  using i18n::phonenumbers::PhoneNumber;
  using i18n::phonenumbers::PhoneNumberUtil;
  if (value.size() < 6 || value.size() > 32) return false;
  std::string text(value);
  for (char c : text) {
    if (!IsDigit(c) && c != '+' && c != ' ' && c != '-' && c != '.' && c != '(' && c != ')' && c != '/') return false;
  }
  if (LooksLikeDate(value)) return false;
  const PhoneNumberUtil& util = *PhoneNumberUtil::GetInstance();
  PhoneNumber number;
  if (text.rfind("00", 0) == 0) text = "+" + text.substr(2);
  if (text[0] == '+') {
    return util.Parse(text, "ZZ", &number) == PhoneNumberUtil::NO_PARSING_ERROR && util.IsValidNumber(number);
  }
  static const char* const kRegions[] = {"CH", "LI", "DE", "AT", "FR", "IT", "GB", "US"};
  for (const char* region : kRegions) {
    if (util.Parse(text, region, &number) == PhoneNumberUtil::NO_PARSING_ERROR &&
        util.IsValidNumberForRegion(number, region)) {
      return true;
    }
  }
  return false;
}

bool AwsAccessKeyValid(std::string_view value) {
  if (value.size() != 20) return false;
  if (value.substr(0, 4) != "AKIA" && value.substr(0, 4) != "ASIA") return false;
  for (char c : value.substr(4)) {
    if (!IsUpper(c) && !(c >= '2' && c <= '7')) return false;
  }
  return true;
}

bool PemPrivateKeyValid(std::string_view value) {
  static constexpr std::string_view kBegin = "-----BEGIN ";
  static constexpr std::string_view kEnd = "PRIVATE KEY-----";
  if (value.substr(0, kBegin.size()) != kBegin) return false;
  const size_t end = value.find(kEnd);
  if (end == std::string_view::npos || end > kBegin.size() + 16) return false;
  // Only the key kinds that exist: PKCS#8, RSA, EC, DSA, OpenSSH, encrypted PKCS#8.
  std::string_view kind = value.substr(kBegin.size(), end - kBegin.size());
  static constexpr std::string_view kKinds[] = {"", "RSA ", "EC ", "DSA ", "OPENSSH ", "ENCRYPTED "};
  if (std::find(std::begin(kKinds), std::end(kKinds), kind) == std::end(kKinds)) return false;
  // Body: skip RFC 1421 headers (Proc-Type:, DEK-Info:), count base64 characters.
  std::string_view body = value.substr(end + kEnd.size());
  size_t b64 = 0;
  std::array<bool, 128> seen{};
  size_t distinct = 0;
  size_t pos = 0;
  while (pos < body.size()) {
    size_t eol = body.find('\n', pos);
    if (eol == std::string_view::npos) eol = body.size();
    std::string_view line = body.substr(pos, eol - pos);
    if (line.find(':') == std::string_view::npos) {
      for (char c : line) {
        if (IsBase64Char(c) || c == '=') {
          ++b64;
          const auto idx = static_cast<unsigned char>(c);
          if (!seen[idx]) {
            seen[idx] = true;
            ++distinct;
          }
        } else if (c != '\r' && c != ' ' && c != '\t') {
          return false;
        }
      }
    }
    pos = eol + 1;
  }
  // Placeholders ("MIIxxxx...", "AAAA") do not reach the variety of real key bytes.
  return b64 >= 40 && distinct >= 12;
}

bool JwtValid(std::string_view value) {
  // header.claims.signature, or header.claims-prefix as the default pack matches it
  // (the claims are as long as the sender likes; the header decides).
  const size_t d1 = value.find('.');
  if (d1 == std::string_view::npos) return false;
  const size_t d2 = value.find('.', d1 + 1);
  if (d2 != std::string_view::npos && value.find('.', d2 + 1) != std::string_view::npos) return false;
  std::string_view header = value.substr(0, d1);
  std::string_view payload = value.substr(d1 + 1, d2 == std::string_view::npos ? std::string_view::npos : d2 - d1 - 1);
  std::string_view signature = d2 == std::string_view::npos ? std::string_view() : value.substr(d2 + 1);
  if (header.size() < 10 || payload.size() < 4 || header.size() > 2048) return false;
  if (payload.substr(0, 3) != "eyJ") return false;
  for (std::string_view seg : {header, payload, signature}) {
    for (char c : seg) {
      if (!IsBase64UrlChar(c)) return false;
    }
  }
  // alg=none tokens carry no signature; they still carry the claims, so they count.
  return ValidBase64UrlJsonObjectWithAlg(header);
}

bool GithubTokenValid(std::string_view value) {
  static constexpr std::string_view kPrefixes[] = {"ghp_", "gho_", "ghu_", "ghs_", "ghr_"};
  if (value.size() != 40) return false;
  if (std::find(std::begin(kPrefixes), std::end(kPrefixes), value.substr(0, 4)) == std::end(kPrefixes)) return false;
  std::string_view random = value.substr(4, 30);
  std::string_view checksum = value.substr(34, 6);
  for (char c : value.substr(4)) {
    if (!IsAlnum(c)) return false;
  }
  uint64_t expected = 0;
  if (!Base62Decode(checksum, &expected)) return false;
  const uLong crc = crc32(crc32(0L, Z_NULL, 0), reinterpret_cast<const Bytef*>(random.data()),
                          static_cast<uInt>(random.size()));
  return expected == static_cast<uint64_t>(crc);
}

bool UkNinoValid(std::string_view value) {
  std::string c;
  for (char ch : value) {
    if (ch == ' ') continue;
    c.push_back(ch);
  }
  if (c.size() != 9 || !SeparatorsConsistent(value, " ")) return false;
  if (!IsUpper(c[0]) || !IsUpper(c[1])) return false;
  for (size_t i = 2; i < 8; ++i) {
    if (!IsDigit(c[i])) return false;
  }
  if (c[8] < 'A' || c[8] > 'D') return false;
  if (std::string_view("DFIQUV").find(c[0]) != std::string_view::npos) return false;
  if (std::string_view("DFIOQUV").find(c[1]) != std::string_view::npos) return false;
  static constexpr std::string_view kNeverIssued[] = {"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"};
  std::string_view prefix(c.data(), 2);
  return std::find(std::begin(kNeverIssued), std::end(kNeverIssued), prefix) == std::end(kNeverIssued);
}

bool DeSteuerIdValid(std::string_view value) {
  std::string d;
  if (!DigitsOnly(value, " ", &d) || d.size() != 11 || d[0] == '0') return false;
  // In the first ten digits exactly one digit repeats (twice, or three times but not
  // three in a row); all others appear at most once.
  std::array<int, 10> counts{};
  for (size_t i = 0; i < 10; ++i) ++counts[static_cast<size_t>(d[i] - '0')];
  int repeated = 0;
  for (int n : counts) {
    if (n > 3) return false;
    if (n >= 2) ++repeated;
  }
  if (repeated != 1) return false;
  for (size_t i = 0; i + 2 < 10; ++i) {
    if (d[i] == d[i + 1] && d[i] == d[i + 2]) return false;
  }
  // ISO/IEC 7064 MOD 11,10.
  int product = 10;
  for (size_t i = 0; i < 10; ++i) {
    int sum = (d[i] - '0' + product) % 10;
    if (sum == 0) sum = 10;
    product = (sum * 2) % 11;
  }
  int check = 11 - product;
  if (check == 10) check = 0;
  return check == d[10] - '0';
}

namespace {

struct Entry {
  std::string_view name;
  Validator fn;
};

// Sorted by name. Aliases keep the names the proto comment promises (iban_mod97, ean13).
constexpr Entry kRegistry[] = {
    {"ahv", &AhvValid},
    {"aws_access_key", &AwsAccessKeyValid},
    {"credit_card", &CreditCardValid},
    {"de_steuer_id", &DeSteuerIdValid},
    {"email", &EmailValid},
    {"github_token", &GithubTokenValid},
    {"iban", &IbanValid},
    {"iban_mod97", &IbanValid},
    {"jwt", &JwtValid},
    {"luhn", &LuhnValid},
    {"pem_private_key", &PemPrivateKeyValid},
    {"phone", &PhoneValid},
    {"uk_nino", &UkNinoValid},
    {"us_ssn", &UsSsnValid},
};

}  // namespace

const Validator* FindValidator(std::string_view name) {
  for (const auto& e : kRegistry) {
    if (e.name == name) return &e.fn;
  }
  return nullptr;
}

void WarmValidator(std::string_view name) {
  if (name == "phone") (void)i18n::phonenumbers::PhoneNumberUtil::GetInstance();
}

std::vector<std::string> ValidatorNames() {
  std::vector<std::string> names;
  for (const auto& e : kRegistry) names.emplace_back(e.name);
  return names;
}

}  // namespace egressguard::dlp
