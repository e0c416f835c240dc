#pragma once
// The text a verdict or a refusal carries, shared by every protocol session (HTTP/1.1,
// HTTP/2, WebSocket). Internal to mitm/.

#include <string>
#include <string_view>
#include <vector>

#include "dlp/engine.h"

namespace egressguard::mitm {

// "/p?card=4111...&x=1" -> "/p?card=&x=": a verdict names where data went, never the data.
std::string StripQueryValues(std::string_view target);
// `text` with every span a scan of it matched replaced by that value's redacted evidence
// (overlapping spans merged), so a record can show a path or a host name readably and
// never the value in it.
std::string RedactSpans(std::string_view text, const std::vector<dlp::MatchedSpan>& spans);
// The request target as a verdict records it: query values dropped, and, when the URL
// scan (of the percent-decoded target) matched anything, the decoded target with every
// match redacted, in path segments, query keys, bare query parts and the fragment alike.
// `url_scan` null: no engine scanned it.
std::string RecordedPath(std::string_view target, const dlp::MessageResult* url_scan);
// The methods of RFC 9110 and 5789: a method token that is none of these is scanned
// before it is recorded (a token may be any digits).
bool IsStandardMethod(std::string_view method);
// The strongest action of a transaction's scans (URL, headers, body, ...).
rules::v1::Action Strongest(const std::vector<dlp::MessageResult>& results);
// The deciding reasons (rule ids or conditions) of the results that reached `action`.
std::string ReasonFor(const std::vector<dlp::MessageResult>& results, rules::v1::Action action);
// For a JSON string literal: quotes and backslashes escaped, control bytes as spaces.
std::string JsonEscape(std::string_view s);
// The body of a refusal the proxy answers itself: {"error":"<phrase>","reason":"<why>"}.
std::string RefusalJson(std::string_view phrase, std::string_view why);
// What a 403 says for a transaction the rules (or a proxy condition) blocked.
std::string BlockedWhy(const std::vector<dlp::MessageResult>& results, std::string_view condition);

}  // namespace egressguard::mitm
