#include "mitm/http1.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cstring>

namespace egressguard::mitm::http1 {
namespace {

constexpr uint64_t kMaxBodyLength = 1ull << 62;
constexpr size_t kMaxChunkLine = 1024;

constexpr bool IsTcharSlow(unsigned char c) {
  if (c >= '0' && c <= '9') return true;
  if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') return true;
  switch (c) {
    case '!': case '#': case '$': case '%': case '&': case '\'': case '*': case '+':
    case '-': case '.': case '^': case '_': case '`': case '|': case '~':
      return true;
    default:
      return false;
  }
}

// A table: every header name of every message goes through here byte by byte.
constexpr std::array<bool, 256> kTchar = [] {
  std::array<bool, 256> t{};
  for (int c = 0; c < 256; ++c) t[static_cast<size_t>(c)] = IsTcharSlow(static_cast<unsigned char>(c));
  return t;
}();

bool IsTchar(unsigned char c) { return kTchar[c]; }

// field-vchar / SP / HTAB, obs-text allowed; every other control byte refused. A table
// too: every header value byte goes through here.
constexpr std::array<bool, 256> kFieldValueChar = [] {
  std::array<bool, 256> t{};
  for (int c = 0; c < 256; ++c) t[static_cast<size_t>(c)] = c == '\t' || (c >= 0x20 && c != 0x7f);
  return t;
}();

bool IsFieldValueChar(unsigned char c) { return kFieldValueChar[c]; }

char Lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (Lower(a[i]) != Lower(b[i])) return false;
  }
  return true;
}

std::string_view TrimOws(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Calls `fn` with each element of a comma-separated list value, OWS trimmed; empty
// elements are kept so that "5,,5" or "chunked," are visible to the callers that refuse
// them. Stops early (and returns false) when `fn` returns false. No allocation: this
// runs on every header of every message.
template <typename Fn>
bool ForEachListElement(std::string_view v, Fn&& fn) {
  size_t start = 0;
  while (true) {
    size_t comma = v.find(',', start);
    if (!fn(TrimOws(v.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start)))) {
      return false;
    }
    if (comma == std::string_view::npos) return true;
    start = comma + 1;
  }
}

bool ParseDecimal(std::string_view s, uint64_t& out) {
  if (s.empty() || s.size() > 19) return false;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  if (v > kMaxBodyLength) return false;
  out = v;
  return true;
}

bool ParseVersion(std::string_view s, int& minor) {
  if (s == "HTTP/1.1") {
    minor = 1;
    return true;
  }
  if (s == "HTTP/1.0") {
    minor = 0;
    return true;
  }
  return false;
}

bool IsTargetChar(unsigned char c) { return c > 0x20 && c < 0x7f; }

// Validates one field line ("name: value") into `out`; returns an error or "".
std::string ParseFieldLine(std::string_view line, Header& out) {
  if (line.empty()) return "empty field line";
  if (line.front() == ' ' || line.front() == '\t') return "obs-fold (line folding) is not allowed";
  size_t colon = line.find(':');
  if (colon == std::string_view::npos) return "header line without a colon";
  std::string_view name = line.substr(0, colon);
  if (name.empty()) return "empty header name";
  if (!IsToken(name)) {
    if (name.back() == ' ' || name.back() == '\t') return "whitespace between header name and colon";
    return "header name is not a token";
  }
  std::string_view value = TrimOws(line.substr(colon + 1));
  for (char c : value) {
    if (!IsFieldValueChar(static_cast<unsigned char>(c))) return "control character in header value";
  }
  out.name.assign(name);
  out.value.assign(value);
  return "";
}

}  // namespace

bool IsToken(std::string_view s) {
  if (s.empty()) return false;
  return std::all_of(s.begin(), s.end(), [](char c) { return IsTchar(static_cast<unsigned char>(c)); });
}

std::string PercentDecode(std::string_view s) {
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    c = Lower(c);
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      int hi = hex(s[i + 1]);
      int lo = hex(s[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out.push_back(static_cast<char>(hi * 16 + lo));
        i += 2;
        continue;
      }
    } else if (s[i] == '+') {
      out.push_back(' ');
      continue;
    }
    out.push_back(s[i]);
  }
  return out;
}

std::optional<std::string_view> MessageHead::Get(std::string_view name) const {
  for (const auto& h : headers) {
    if (EqualsIgnoreCase(h.name, name)) return std::string_view(h.value);
  }
  return std::nullopt;
}

std::string MessageHead::GetList(std::string_view name) const {
  std::string out;
  for (const auto& h : headers) {
    if (!EqualsIgnoreCase(h.name, name) || h.value.empty()) continue;
    if (!out.empty()) out += ", ";
    out += h.value;
  }
  return out;
}

std::string SerializeRequestHead(const MessageHead& head, std::string_view target,
                                 const std::vector<std::string_view>& drop_headers) {
  size_t size = head.method.size() + target.size() + 13;
  for (const auto& h : head.headers) size += h.name.size() + h.value.size() + 4;
  std::string out;
  out.reserve(size + 2);
  out.append(head.method).append(" ").append(target).append(" HTTP/1.");
  out.append(fmt::format_int(head.version_minor).c_str());
  out.append("\r\n");
  for (const auto& h : head.headers) {
    bool drop = std::any_of(drop_headers.begin(), drop_headers.end(),
                            [&](std::string_view d) { return EqualsIgnoreCase(h.name, d); });
    if (drop) continue;
    out += h.name;
    out += ": ";
    out += h.value;
    out += "\r\n";
  }
  out += "\r\n";
  return out;
}

Parser::Parser(Kind kind, Limits limits) : kind_(kind), limits_(limits) {}

Result Parser::Fail(std::string reason) {
  state_ = State::kError;
  error_ = std::move(reason);
  return Result{Event::kError, 0, {}};
}

Result Parser::CompleteMessage(size_t consumed) {
  state_ = State::kHead;
  scan_from_ = 0;
  return Result{Event::kMessageComplete, consumed, {}};
}

Result Parser::Parse(std::string_view input) {
  switch (state_) {
    case State::kError:
      return Result{Event::kError, 0, {}};
    case State::kHead:
      return ParseHead(input);
    case State::kBodyLength:
    case State::kChunkData: {
      if (remaining_ == 0) {
        if (state_ == State::kBodyLength) return CompleteMessage(0);
        state_ = State::kChunkDataCrlf;
        return Parse(input);
      }
      size_t n = static_cast<size_t>(std::min<uint64_t>(remaining_, input.size()));
      if (n == 0) return Result{Event::kNeedMore, 0, {}};
      remaining_ -= n;
      return Result{Event::kBody, n, input.substr(0, n)};
    }
    case State::kBodyUntilClose:
      if (input.empty()) return Result{Event::kNeedMore, 0, {}};
      return Result{Event::kBody, input.size(), input};
    case State::kChunkDataCrlf:
      if (input.size() < 2) {
        if (!input.empty() && input[0] != '\r') return Fail("chunk data not followed by CRLF");
        return Result{Event::kNeedMore, 0, {}};
      }
      if (input[0] != '\r' || input[1] != '\n') return Fail("chunk data not followed by CRLF");
      state_ = State::kChunkSize;
      return Result{Event::kNeedMore, 2, {}};
    case State::kChunkSize:
      return ParseChunkSize(input);
    case State::kTrailers:
      return ParseTrailers(input);
  }
  return Fail("unreachable parser state");
}

Result Parser::Eof() {
  if (state_ == State::kBodyUntilClose) return CompleteMessage(0);
  if (state_ == State::kHead && scan_from_ == 0) return Result{Event::kNeedMore, 0, {}};
  if (state_ == State::kError) return Result{Event::kError, 0, {}};
  return Fail("connection closed in the middle of a message");
}

Result Parser::ParseHead(std::string_view input) {
  // Tolerate the empty line some clients send after a body (RFC 9112 2.2), requests only.
  // (A head never starts with CRLF, so this holds however the bytes were split.)
  if (kind_ == Kind::kRequest && input.size() >= 2 && input[0] == '\r' && input[1] == '\n') {
    scan_from_ = 0;
    return Result{Event::kNeedMore, 2, {}};
  }
  size_t end = std::string_view::npos;
  size_t limit = std::min(input.size(), limits_.max_head_bytes + 1);
  // A CR that ended the bytes of the previous call must be followed by LF.
  if (scan_from_ > 0 && scan_from_ < limit && input[scan_from_ - 1] == '\r' && input[scan_from_] != '\n') {
    return Fail("bare CR in message head");
  }
  // Line by line with memchr (vectorized) rather than byte by byte: the earliest bare CR
  // (one not followed by LF), bare LF or NUL is refused; the head ends at CRLFCRLF.
  const char* base = input.data();
  for (size_t pos = scan_from_; pos < limit;) {
    const auto* lf = static_cast<const char*>(std::memchr(base + pos, '\n', limit - pos));
    const size_t stop = lf != nullptr ? static_cast<size_t>(lf - base) : limit;  // [pos, stop) holds no LF
    const auto* nul = static_cast<const char*>(std::memchr(base + pos, '\0', stop - pos));
    const auto* cr = static_cast<const char*>(std::memchr(base + pos, '\r', stop - pos));
    // A CR is bare unless the next byte is LF; one whose next byte is not here yet is
    // checked when more comes (above).
    const bool bare_cr = cr != nullptr && static_cast<size_t>(cr - base) + 1 < limit && cr + 1 != lf;
    if (bare_cr && (nul == nullptr || cr < nul)) return Fail("bare CR in message head");
    if (nul != nullptr) return Fail("NUL byte in message head");
    if (lf == nullptr) break;
    if (stop == 0 || input[stop - 1] != '\r') return Fail("bare LF in message head");
    if (stop >= 3 && input[stop - 2] == '\n' && input[stop - 3] == '\r') {
      end = stop + 1;
      break;
    }
    pos = stop + 1;
  }
  if (end == std::string_view::npos) {
    if (input.size() > limits_.max_head_bytes) {
      return Fail(fmt::format("message head exceeds {} bytes", limits_.max_head_bytes));
    }
    scan_from_ = input.size();
    return Result{Event::kNeedMore, 0, {}};
  }

  // A fresh head, but the header strings of the previous message keep their storage:
  // on a keep-alive connection the next message has much the same headers, so parsing
  // it allocates nothing.
  std::vector<Header> header_storage = std::move(head_.headers);
  head_ = MessageHead{};
  head_.headers = std::move(header_storage);
  // A refused head leaves no header of the previous message behind.
  auto fail = [&](std::string reason) {
    head_.headers.clear();
    return Fail(std::move(reason));
  };
  std::string_view text = input.substr(0, end - 4);  // without the final CRLFCRLF
  // Every LF in the head ends a CRLF (bare ones were refused above): one line per LF, plus one.
  size_t header_count = 0;
  for (size_t lf = text.find('\n'); lf != std::string_view::npos; lf = text.find('\n', lf + 1)) ++header_count;
  if (header_count > limits_.max_header_count) {
    return fail(fmt::format("more than {} header fields", limits_.max_header_count));
  }
  size_t line_end = text.find("\r\n");
  std::string_view first = text.substr(0, line_end);
  if (kind_ == Kind::kRequest) {
    size_t sp1 = first.find(' ');
    size_t sp2 = sp1 == std::string_view::npos ? sp1 : first.find(' ', sp1 + 1);
    if (sp2 == std::string_view::npos || first.find(' ', sp2 + 1) != std::string_view::npos) {
      return fail("request line is not 'method SP target SP version'");
    }
    std::string_view method = first.substr(0, sp1);
    std::string_view target = first.substr(sp1 + 1, sp2 - sp1 - 1);
    if (!IsToken(method)) return fail("method is not a token");
    if (target.empty() ||
        !std::all_of(target.begin(), target.end(), [](char c) { return IsTargetChar(static_cast<unsigned char>(c)); })) {
      return fail("request target empty or has invalid characters");
    }
    if (!ParseVersion(first.substr(sp2 + 1), head_.version_minor)) return fail("unsupported HTTP version");
    head_.method.assign(method);
    head_.target.assign(target);
  } else {
    if (first.size() < 12 || first[8] != ' ' || !ParseVersion(first.substr(0, 8), head_.version_minor)) {
      return fail("status line is not 'HTTP/1.x SP status'");
    }
    std::string_view code = first.substr(9, 3);
    if (!std::all_of(code.begin(), code.end(), [](char c) { return c >= '0' && c <= '9'; }) || code[0] == '0') {
      return fail("status code is not three digits");
    }
    head_.status = (code[0] - '0') * 100 + (code[1] - '0') * 10 + (code[2] - '0');
    if (first.size() > 12) {
      if (first[12] != ' ') return fail("status code followed by junk");
      std::string_view reason = first.substr(13);
      for (char c : reason) {
        if (!IsFieldValueChar(static_cast<unsigned char>(c))) return fail("control character in reason phrase");
      }
      head_.reason.assign(reason);
    }
  }
  if (head_.headers.size() > header_count) head_.headers.resize(header_count);
  head_.headers.reserve(header_count);
  for (size_t i = 0; i < header_count; ++i) {
    const size_t start = line_end + 2;
    line_end = text.find("\r\n", start);
    std::string_view line = text.substr(start, line_end == std::string_view::npos ? std::string_view::npos : line_end - start);
    if (i == head_.headers.size()) head_.headers.emplace_back();
    std::string err = ParseFieldLine(line, head_.headers[i]);
    if (!err.empty()) return fail(std::move(err));
  }
  if (!DecideFraming()) return Result{Event::kError, 0, {}};
  scan_from_ = 0;
  return Result{Event::kHeadComplete, end, {}};
}

bool Parser::DecideFraming() {
  bool has_te = false;
  size_t coding_count = 0;
  std::string_view first_coding;
  std::optional<uint64_t> content_length;
  bool connection_close = false;
  bool connection_keep_alive = false;
  bool connection_upgrade = false;
  int host_count = 0;
  for (const auto& h : head_.headers) {
    if (EqualsIgnoreCase(h.name, "transfer-encoding")) {
      has_te = true;
      ForEachListElement(h.value, [&](std::string_view c) {
        if (coding_count++ == 0) first_coding = c;
        return true;
      });
    } else if (EqualsIgnoreCase(h.name, "content-length")) {
      const char* problem = nullptr;
      ForEachListElement(h.value, [&](std::string_view v) {
        uint64_t n = 0;
        if (!ParseDecimal(v, n)) {
          problem = "invalid Content-Length";
        } else if (content_length && *content_length != n) {
          problem = "differing Content-Length values";
        } else {
          content_length = n;
        }
        return problem == nullptr;
      });
      if (problem != nullptr) {
        Fail(problem);
        return false;
      }
    } else if (EqualsIgnoreCase(h.name, "connection")) {
      ForEachListElement(h.value, [&](std::string_view t) {
        if (EqualsIgnoreCase(t, "close")) connection_close = true;
        if (EqualsIgnoreCase(t, "keep-alive")) connection_keep_alive = true;
        if (EqualsIgnoreCase(t, "upgrade")) connection_upgrade = true;
        return true;
      });
    } else if (EqualsIgnoreCase(h.name, "host")) {
      ++host_count;
    } else if (EqualsIgnoreCase(h.name, "expect")) {
      if (EqualsIgnoreCase(h.value, "100-continue")) head_.expect_continue = true;
    }
  }
  if (has_te) {
    if (content_length) {
      Fail("both Content-Length and Transfer-Encoding");
      return false;
    }
    if (head_.version_minor == 0) {
      Fail("Transfer-Encoding in an HTTP/1.0 message");
      return false;
    }
    if (coding_count != 1 || !EqualsIgnoreCase(first_coding, "chunked")) {
      Fail("unsupported Transfer-Encoding (only 'chunked' is accepted)");
      return false;
    }
  }
  head_.keep_alive = head_.version_minor == 1 ? !connection_close : (connection_keep_alive && !connection_close);

  if (kind_ == Kind::kRequest) {
    if (head_.version_minor == 1 && host_count != 1) {
      Fail(host_count == 0 ? "HTTP/1.1 request without Host" : "more than one Host header");
      return false;
    }
    head_.upgrade = connection_upgrade && head_.Get("upgrade").has_value();
    if (has_te) {
      head_.chunked = true;
      state_ = State::kChunkSize;
    } else if (content_length && *content_length > 0) {
      head_.content_length = content_length;
      remaining_ = *content_length;
      state_ = State::kBodyLength;
    } else {
      head_.content_length = content_length;
      remaining_ = 0;
      state_ = State::kBodyLength;  // completes on the next Parse
    }
    return true;
  }

  // Responses (RFC 9112 6.3).
  bool no_body = request_method_ == "HEAD" || (head_.status >= 100 && head_.status < 200) || head_.status == 204 ||
                 head_.status == 304 || (request_method_ == "CONNECT" && head_.status / 100 == 2);
  head_.upgrade = head_.status == 101;
  head_.content_length = content_length;
  if (no_body) {
    remaining_ = 0;
    state_ = State::kBodyLength;
  } else if (has_te) {
    head_.chunked = true;
    state_ = State::kChunkSize;
  } else if (content_length) {
    remaining_ = *content_length;
    state_ = State::kBodyLength;
  } else {
    head_.body_until_close = true;
    head_.keep_alive = false;
    state_ = State::kBodyUntilClose;
  }
  return true;
}

Result Parser::ParseChunkSize(std::string_view input) {
  size_t crlf = input.find("\r\n");
  if (crlf == std::string_view::npos) {
    if (input.size() > kMaxChunkLine) return Fail("chunk size line too long");
    for (size_t i = 0; i < input.size(); ++i) {
      if (input[i] == '\n') return Fail("bare LF in chunk size line");
      if (input[i] == '\r' && i + 1 < input.size()) return Fail("bare CR in chunk size line");
    }
    return Result{Event::kNeedMore, 0, {}};
  }
  if (crlf > kMaxChunkLine) return Fail("chunk size line too long");
  std::string_view line = input.substr(0, crlf);
  size_t digits = 0;
  uint64_t size = 0;
  while (digits < line.size()) {
    char c = Lower(line[digits]);
    int v = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
    if (v < 0) break;
    if (digits >= 15) return Fail("chunk size too large");
    size = size * 16 + static_cast<uint64_t>(v);
    ++digits;
  }
  if (digits == 0) return Fail("invalid chunk size");
  std::string_view ext = line.substr(digits);
  if (!ext.empty()) {
    if (ext.front() != ';') return Fail("invalid chunk size");
    for (char c : ext) {
      if (!IsFieldValueChar(static_cast<unsigned char>(c))) return Fail("control character in chunk extension");
    }
  }
  if (size == 0) {
    state_ = State::kTrailers;
    scan_from_ = 0;
  } else {
    remaining_ = size;
    state_ = State::kChunkData;
  }
  return Result{Event::kNeedMore, crlf + 2, {}};
}

Result Parser::ParseTrailers(std::string_view input) {
  size_t crlf = input.find("\r\n");
  if (crlf == std::string_view::npos) {
    if (scan_from_ + input.size() > limits_.max_head_bytes) return Fail("trailer section too large");
    for (size_t i = 0; i < input.size(); ++i) {
      if (input[i] == '\n') return Fail("bare LF in trailer section");
      if (input[i] == '\r' && i + 1 < input.size()) return Fail("bare CR in trailer section");
    }
    return Result{Event::kNeedMore, 0, {}};
  }
  if (crlf == 0) return CompleteMessage(2);
  std::string_view line = input.substr(0, crlf);
  if (line.find('\r') != std::string_view::npos || line.find('\n') != std::string_view::npos) {
    return Fail("bare CR or LF in trailer section");
  }
  Header h;
  std::string err = ParseFieldLine(line, h);
  if (!err.empty()) return Fail("trailer: " + err);
  // scan_from_ counts trailer bytes here: the section shares the head size limit.
  scan_from_ += crlf + 2;
  if (scan_from_ > limits_.max_head_bytes) return Fail("trailer section too large");
  return Result{Event::kNeedMore, crlf + 2, {}};
}

}  // namespace egressguard::mitm::http1
