#pragma once
// A strict, incremental HTTP/1.1 message parser for requests and responses.
//
// Strict because the proxy scans what it parses: anything two implementations could
// frame differently (Content-Length with Transfer-Encoding, differing duplicate
// Content-Length, bad chunk sizes, obs-fold, bare CR or LF, whitespace before a colon,
// invalid tokens) is refused with a reason, so nothing can be smuggled past the scanner.
//
// Use: call Parse(bytes) repeatedly. Each call consumes a prefix of `bytes` (possibly
// none when a head is still incomplete: keep those bytes and append more) and reports
// one event. The consumed raw bytes are exactly the message's wire bytes, so the
// caller may forward them unchanged; `body` holds the de-chunked payload to scan.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace egressguard::mitm::http1 {

struct Limits {
  size_t max_head_bytes = 64 * 1024;  // request/status line + headers (and trailers)
  size_t max_header_count = 100;
};

struct Header {
  std::string name;   // as sent
  std::string value;  // OWS trimmed
};

struct MessageHead {
  // request
  std::string method;
  std::string target;
  // response
  int status = 0;
  std::string reason;
  // both
  int version_minor = 1;  // HTTP/1.<minor>
  std::vector<Header> headers;

  // Derived framing, filled by the parser.
  std::optional<uint64_t> content_length;
  bool chunked = false;
  bool keep_alive = true;       // after this message the connection may carry another
  bool expect_continue = false;
  bool upgrade = false;         // Upgrade requested (request) or 101 (response)
  bool body_until_close = false;  // response without length: body ends at EOF

  // First value of a header (case-insensitive name), or nullopt.
  std::optional<std::string_view> Get(std::string_view name) const;
  // Every value of a list header, joined with ", " as RFC 9110 5.3 combines field lines
  // ("" when absent): what a recipient that merges repeated lines sees.
  std::string GetList(std::string_view name) const;
};

// Serializes a head with CRLFs (used to rewrite a forward request to origin-form and to
// drop hop-by-hop headers before sending it on).
std::string SerializeRequestHead(const MessageHead& head, std::string_view target,
                                 const std::vector<std::string_view>& drop_headers);

enum class Event {
  kNeedMore,         // consumed bytes (maybe 0) but nothing complete yet
  kHeadComplete,     // head() is valid
  kBody,             // body holds payload bytes (de-chunked)
  kMessageComplete,  // the message ended; the next Parse starts a new message
  kError,            // error() says why; the parser stays in error
};

struct Result {
  Event event = Event::kNeedMore;
  size_t consumed = 0;
  std::string_view body;  // kBody only; points into the input
};

class Parser {
 public:
  enum class Kind { kRequest, kResponse };
  explicit Parser(Kind kind, Limits limits = {});

  Result Parse(std::string_view input);
  // For a response parser: the method of the request this response answers (HEAD and
  // CONNECT change the body rules). Set before the response head is parsed.
  void SetRequestMethod(std::string_view method) { request_method_ = std::string(method); }
  // Tells a response parser the peer closed: completes a read-until-close body.
  Result Eof();

  const MessageHead& head() const { return head_; }
  const std::string& error() const { return error_; }
  bool in_body() const { return state_ != State::kHead && state_ != State::kError; }
  // True between messages (nothing of the next message parsed yet).
  bool at_message_start() const { return state_ == State::kHead && scan_from_ == 0; }

 private:
  enum class State { kHead, kBodyLength, kBodyUntilClose, kChunkSize, kChunkData, kChunkDataCrlf, kTrailers, kError };

  Result ParseHead(std::string_view input);
  Result ParseChunkSize(std::string_view input);
  Result ParseTrailers(std::string_view input);
  Result Fail(std::string reason);
  Result CompleteMessage(size_t consumed);
  bool DecideFraming();

  Kind kind_;
  Limits limits_;
  State state_ = State::kHead;
  MessageHead head_;
  std::string error_;
  std::string request_method_;
  uint64_t remaining_ = 0;  // body or chunk bytes left
  size_t scan_from_ = 0;    // resume point of the end-of-head search
};

// Syntax helpers, exposed for policy and tests.
bool IsToken(std::string_view s);
// Percent-decodes a request target for scanning (invalid escapes are kept as-is).
std::string PercentDecode(std::string_view s);

}  // namespace egressguard::mitm::http1
