#pragma once
// What a finding may show of the value it found. Evidence goes into verdicts, logs and
// 403 pages, so it keeps only what identifies the kind of value (issuer, country and
// check digits, e-mail domain, key prefix) and at most about four characters of the
// secret part; fingerprints are computed over NormalizeValue so that "4111 1111 ..."
// and "4111-1111-..." correlate as the same card.

#include <string>
#include <string_view>

namespace egressguard::dlp {

// Redacted evidence for a matched value of `category`, e.g. "4111 **** **** 1111",
// "CH93 **** **** **** *295 7", "j***@example.com", "***-**-6789",
// "AKIA************MPLE". Unknown categories get a generic mask.
std::string Redact(std::string_view category, std::string_view value);

// Canonical form of a matched value for fingerprints and distinct counting: separators
// removed, upper/lower-cased where case carries no meaning (IBAN, NINO, e-mail).
std::string NormalizeValue(std::string_view category, std::string_view value);

}  // namespace egressguard::dlp
