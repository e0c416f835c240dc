#pragma once
// Check-digit and structure validators that turn a pattern match into a finding.
// They see the matched bytes only (no surrounding context) and must be strict about
// them: every rejected candidate is a false positive the pattern alone would have made.
// Separators that people really type (spaces, dashes, dots) are skipped where noted.
//
// Rule packs name validators by string (`validator: credit_card`); FindValidator is the
// registry the pack loader checks names against and the engine calls through.

#include <string>
#include <string_view>
#include <vector>

namespace egressguard::dlp {

// A validator: true when `matched` is a plausible real value of its kind.
// Pure functions of their input; safe to call from any thread.
using Validator = bool (*)(std::string_view matched);

// The validator registered under `name`, or nullptr. Names are lower-case snake_case.
const Validator* FindValidator(std::string_view name);
// Every registered name, sorted.
std::vector<std::string> ValidatorNames();
// Builds whatever the validator under `name` loads on first use (libphonenumber's
// metadata and regexes cost milliseconds), so that happens when a pack is compiled,
// not inside the first scanned message. Unknown names are ignored.
void WarmValidator(std::string_view name);

// Luhn (mod 10) over the digits of `value`; false when fewer than two digits.
bool LuhnValid(std::string_view value);

// Payment card: 13..19 digits (spaces/dashes allowed between groups), a known issuer
// range (Visa, Mastercard 51-55 and 2221-2720, Amex, Discover, JCB, Diners, UnionPay,
// Maestro) with that brand's lengths, and Luhn.
bool CreditCardValid(std::string_view value);
// Context check of a card candidate (`value`, a window the credit_card patterns matched)
// against the bytes right before and after it (up to kCardNeighborBytes each): true when
// the window is a piece of a longer identifier and so no card, i.e. preceded by '+' or a
// "+CC" group (an international phone number), or, for a grouped window, joined by its
// own separator to an IBAN's country+check group ("SE25 7769 ...") or to a further group
// of digits before or after it ("... 0105 6730").
inline constexpr size_t kCardNeighborBytes = 12;
bool CardWindowInLongerId(std::string_view before, std::string_view value, std::string_view after);
// A phone match that is the tail of a longer token: a '+'-led one whose '+' is glued to a
// letter or digit ("x+1234567"; "1+646-735-8618" in a form body, where '+' is an encoded
// space), or a national-format one right after a "+CC" country code and a separator
// ("+1 646-735-8618"; "%2B1+646-735-8618" as a form sends it), which is an international
// number read from its middle. Reads kPhoneNeighborBytes before the match.
inline constexpr size_t kPhoneNeighborBytes = 8;
bool PhoneInLongerToken(std::string_view before, std::string_view value, std::string_view after);
// The check a validator's matches get against their neighbouring bytes (above), and how
// many bytes on each side it reads; none: {nullptr, 0}.
struct NeighborCheck {
  bool (*in_longer_token)(std::string_view before, std::string_view value, std::string_view after) = nullptr;
  uint32_t bytes = 0;
};
NeighborCheck NeighborCheckFor(std::string_view validator);
// IBAN: country code with its registered length, two check digits, mod-97 == 1.
// Compact or grouped by spaces; letters must be upper-case as printed.
bool IbanValid(std::string_view value);
// Swiss AHV/AVS number: 756 + 9 digits + EAN-13 check digit; dots optional.
bool AhvValid(std::string_view value);
// US SSN: AAA-GG-SSSS (dashes/spaces optional) without never-issued areas (000, 666,
// 9xx), group 00, serial 0000, or values published in ads and docs.
bool UsSsnValid(std::string_view value);
// E-mail address: RFC 5321 sized local part and a domain of LDH labels with an
// alphabetic TLD that is not a file extension (image@2x.png) nor a non-routed name
// (.internal, .local, .test); a token-like local part (URL credentials) is refused.
bool EmailValid(std::string_view value);
// Phone number that libphonenumber calls valid: international (+ or 00) for any
// region, national format for the regions the default pack targets (CH, LI, DE, AT,
// FR, IT, GB, US).
bool PhoneValid(std::string_view value);
// AWS access key id: AKIA (long-term) or ASIA (temporary) + 16 base32 characters.
bool AwsAccessKeyValid(std::string_view value);
// A PEM private key block header followed by at least 40 characters of base64 body.
bool PemPrivateKeyValid(std::string_view value);
// JWT: base64url header '.' claims ['.' signature]; the header must decode to a JSON
// object with a string "alg" and the claims must start like a JSON object (eyJ).
bool JwtValid(std::string_view value);
// GitHub token (ghp_/gho_/ghu_/ghs_/ghr_ + 30 base62 + 6 base62 CRC32 of those 30).
bool GithubTokenValid(std::string_view value);
// UK National Insurance number: two letters from the allowed sets, six digits, A-D.
bool UkNinoValid(std::string_view value);
// German tax id (Steuerliche Identifikationsnummer): 11 digits, ISO 7064 MOD 11,10,
// and the digit-repetition rule of the first ten digits.
bool DeSteuerIdValid(std::string_view value);

}  // namespace egressguard::dlp
