#include "mitm/http1.h"

#include <fmt/format.h>

#include <algorithm>

namespace egressguard::mitm::http1 {
namespace {

constexpr uint64_t kMaxBodyLength = 1ull << 62;
constexpr size_t kMaxChunkLine = 1024;

bool IsTchar(unsigned char c) {
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

// field-vchar / SP / HTAB, obs-text allowed; every other control byte refused.
bool IsFieldValueChar(unsigned char c) { return c == '\t' || (c >= 0x20 && c != 0x7f); }

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

// Splits a comma-separated list value, trimming OWS; empty elements are kept so that
// "5,,5" or "chunked," are visible to the callers that refuse them.
std::vector<std::string_view> SplitList(std::string_view v) {
  std::vector<std::string_view> out;
  size_t start = 0;
  while (true) {
    size_t comma = v.find(',', start);
    out.push_back(TrimOws(v.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start)));
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return out;
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

std::string SerializeRequestHead(const MessageHead& head, std::string_view target,
                                 const std::vector<std::string_view>& drop_headers) {
  std::string out = fmt::format("{} {} HTTP/1.{}\r\n", head.method, target, head.version_minor);
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
  for (size_t i = scan_from_; i < limit; ++i) {
    char c = input[i];
    if (i > 0 && input[i - 1] == '\r' && c != '\n') return Fail("bare CR in message head");
    if (c == '\n') {
      if (i == 0 || input[i - 1] != '\r') return Fail("bare LF in message head");
      if (i >= 3 && input[i - 2] == '\n' && input[i - 3] == '\r') {
        end = i + 1;
        break;
      }
    } else if (c == '\0') {
      return Fail("NUL byte in message head");
    }
  }
  if (end == std::string_view::npos) {
    if (input.size() > limits_.max_head_bytes) {
      return Fail(fmt::format("message head exceeds {} bytes", limits_.max_head_bytes));
    }
    scan_from_ = input.size();
    return Result{Event::kNeedMore, 0, {}};
  }

  head_ = MessageHead{};
  std::string_view text = input.substr(0, end - 4);  // without the final CRLFCRLF
  std::vector<std::string_view> lines;
  size_t start = 0;
  while (true) {
    size_t crlf = text.find("\r\n", start);
    lines.push_back(text.substr(start, crlf == std::string_view::npos ? std::string_view::npos : crlf - start));
    if (crlf == std::string_view::npos) break;
    start = crlf + 2;
  }
  if (lines.size() - 1 > limits_.max_header_count) {
    return Fail(fmt::format("more than {} header fields", limits_.max_header_count));
  }

  std::string_view first = lines[0];
  if (kind_ == Kind::kRequest) {
    size_t sp1 = first.find(' ');
    size_t sp2 = sp1 == std::string_view::npos ? sp1 : first.find(' ', sp1 + 1);
    if (sp2 == std::string_view::npos || first.find(' ', sp2 + 1) != std::string_view::npos) {
      return Fail("request line is not 'method SP target SP version'");
    }
    std::string_view method = first.substr(0, sp1);
    std::string_view target = first.substr(sp1 + 1, sp2 - sp1 - 1);
    if (!IsToken(method)) return Fail("method is not a token");
    if (target.empty() ||
        !std::all_of(target.begin(), target.end(), [](char c) { return IsTargetChar(static_cast<unsigned char>(c)); })) {
      return Fail("request target empty or has invalid characters");
    }
    if (!ParseVersion(first.substr(sp2 + 1), head_.version_minor)) return Fail("unsupported HTTP version");
    head_.method.assign(method);
    head_.target.assign(target);
  } else {
    if (first.size() < 12 || first[8] != ' ' || !ParseVersion(first.substr(0, 8), head_.version_minor)) {
      return Fail("status line is not 'HTTP/1.x SP status'");
    }
    std::string_view code = first.substr(9, 3);
    if (!std::all_of(code.begin(), code.end(), [](char c) { return c >= '0' && c <= '9'; }) || code[0] == '0') {
      return Fail("status code is not three digits");
    }
    head_.status = (code[0] - '0') * 100 + (code[1] - '0') * 10 + (code[2] - '0');
    if (first.size() > 12) {
      if (first[12] != ' ') return Fail("status code followed by junk");
      std::string_view reason = first.substr(13);
      for (char c : reason) {
        if (!IsFieldValueChar(static_cast<unsigned char>(c))) return Fail("control character in reason phrase");
      }
      head_.reason.assign(reason);
    }
  }
  for (size_t i = 1; i < lines.size(); ++i) {
    Header h;
    std::string err = ParseFieldLine(lines[i], h);
    if (!err.empty()) return Fail(std::move(err));
    head_.headers.push_back(std::move(h));
  }
  if (!DecideFraming()) return Result{Event::kError, 0, {}};
  scan_from_ = 0;
  return Result{Event::kHeadComplete, end, {}};
}

bool Parser::DecideFraming() {
  bool has_te = false;
  std::vector<std::string_view> codings;
  std::optional<uint64_t> content_length;
  bool connection_close = false;
  bool connection_keep_alive = false;
  bool connection_upgrade = false;
  int host_count = 0;
  for (const auto& h : head_.headers) {
    if (EqualsIgnoreCase(h.name, "transfer-encoding")) {
      has_te = true;
      for (auto c : SplitList(h.value)) codings.push_back(c);
    } else if (EqualsIgnoreCase(h.name, "content-length")) {
      for (auto v : SplitList(h.value)) {
        uint64_t n = 0;
        if (!ParseDecimal(v, n)) {
          Fail("invalid Content-Length");
          return false;
        }
        if (content_length && *content_length != n) {
          Fail("differing Content-Length values");
          return false;
        }
        content_length = n;
      }
    } else if (EqualsIgnoreCase(h.name, "connection")) {
      for (auto t : SplitList(h.value)) {
        if (EqualsIgnoreCase(t, "close")) connection_close = true;
        if (EqualsIgnoreCase(t, "keep-alive")) connection_keep_alive = true;
        if (EqualsIgnoreCase(t, "upgrade")) connection_upgrade = true;
      }
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
    if (codings.size() != 1 || !EqualsIgnoreCase(codings[0], "chunked")) {
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
