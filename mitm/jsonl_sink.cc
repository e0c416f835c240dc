#include "mitm/jsonl_sink.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdint>
#include <ctime>
#include <string_view>
#include <cstring>

namespace egressguard::mitm {

namespace {

// The protobuf JSON mapping of Verdict written directly: the library's generic printer
// (binary -> type resolver -> JSON) cost ~15 us per verdict, more than the rest of a
// keep-alive request's user-space work. Same rules: proto field names, default values
// left out, 64-bit integers as strings, enums by name, Timestamp in RFC 3339.
class JsonWriter {
 public:
  explicit JsonWriter(std::string& out) : out_(out) {}

  void Begin() { out_ += '{'; first_ = true; }
  void End() { out_ += '}'; first_ = false; }
  void String(std::string_view key, std::string_view value) {
    if (value.empty()) return;
    Key(key);
    Quoted(value);
  }
  void Uint64(std::string_view key, uint64_t value) {
    if (value == 0) return;
    Key(key);
    out_ += '"';
    AppendDecimal(value);
    out_ += '"';
  }
  void Uint32(std::string_view key, uint32_t value) {
    if (value == 0) return;
    Key(key);
    AppendDecimal(value);
  }
  void Bool(std::string_view key, bool value) {
    if (!value) return;
    Key(key);
    out_ += "true";
  }
  template <typename NameFn>
  void Enum(std::string_view key, int value, NameFn name, bool valid) {
    if (value == 0) return;
    Key(key);
    if (valid) {
      Quoted(name(value));
    } else if (value < 0) {  // an unknown value, printed as a number as protobuf does
      out_ += '-';
      AppendDecimal(static_cast<uint64_t>(-static_cast<int64_t>(value)));
    } else {
      AppendDecimal(static_cast<uint64_t>(value));
    }
  }
  void Timestamp(std::string_view key, int64_t seconds, int32_t nanos) {
    Key(key);
    out_ += '"';
    // Verdicts come many to a second: the calendar part is computed once per second.
    thread_local int64_t cached_seconds = INT64_MIN;
    thread_local std::string cached_text;
    if (seconds != cached_seconds) {
      std::time_t t = static_cast<std::time_t>(seconds);
      std::tm tm{};
      gmtime_r(&t, &tm);
      cached_text = fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                                tm.tm_hour, tm.tm_min, tm.tm_sec);
      cached_seconds = seconds;
    }
    out_ += cached_text;
    if (nanos > 0) {
      out_ += '.';
      if (nanos % 1000000 == 0) {
        AppendFixedDigits(static_cast<uint32_t>(nanos / 1000000), 3);
      } else if (nanos % 1000 == 0) {
        AppendFixedDigits(static_cast<uint32_t>(nanos / 1000), 6);
      } else {
        AppendFixedDigits(static_cast<uint32_t>(nanos), 9);
      }
    }
    out_ += "Z\"";
  }
  void Key(std::string_view key) {
    // One append per key (separator, quotes and colon included): a verdict has a dozen.
    char buf[64];
    size_t n = 0;
    if (!first_) buf[n++] = ',';
    first_ = false;
    if (key.size() > sizeof(buf) - 4) {  // no key of Verdict or Finding is near this long
      out_.append(buf, n);
      out_ += '"';
      out_ += key;
      out_.append("\":", 2);
      return;
    }
    buf[n++] = '"';
    std::memcpy(buf + n, key.data(), key.size());
    n += key.size();
    buf[n++] = '"';
    buf[n++] = ':';
    out_.append(buf, n);
  }
  void Raw(char c) { out_ += c; }
  std::string& out() { return out_; }
  void NextElement(bool first) {
    if (!first) out_ += ',';
  }

 private:
  // JSON string with the escapes protobuf uses; bytes that are not UTF-8 become U+FFFD so
  // the line stays valid JSON whatever a string holds.
  void Quoted(std::string_view s) {
    static constexpr char kHex[] = "0123456789abcdef";
    out_ += '"';
    size_t i = 0;
    while (i < s.size()) {
      // Runs of characters printed as they are (most of any verdict) go in one append.
      size_t run = i;
      while (run < s.size() && IsPlain(static_cast<unsigned char>(s[run]))) ++run;
      if (run > i) {
        out_.append(s.data() + i, run - i);
        i = run;
        continue;
      }
      auto c = static_cast<unsigned char>(s[i]);
      if (c < 0x80) {
        switch (c) {
          case '"': out_ += "\\\""; break;
          case '\\': out_ += "\\\\"; break;
          case '\b': out_ += "\\b"; break;
          case '\f': out_ += "\\f"; break;
          case '\n': out_ += "\\n"; break;
          case '\r': out_ += "\\r"; break;
          case '\t': out_ += "\\t"; break;
          case '<': out_ += "\\u003c"; break;
          case '>': out_ += "\\u003e"; break;
          default:
            if (c < 0x20 || c == 0x7f) {
              out_ += "\\u00";
              out_ += kHex[c >> 4];
              out_ += kHex[c & 0xf];
            } else {
              out_ += static_cast<char>(c);
            }
        }
        ++i;
        continue;
      }
      size_t len = Utf8Length(s.substr(i));
      if (len == 0) {
        out_ += "\xEF\xBF\xBD";
        ++i;
      } else {
        out_.append(s.data() + i, len);
        i += len;
      }
    }
    out_ += '"';
  }
  // Printable ASCII that JSON (as protobuf writes it) leaves as it is; a table, as every
  // byte of every string of a verdict goes through here.
  static constexpr std::array<bool, 256> kPlain = [] {
    std::array<bool, 256> t{};
    for (int c = 0x20; c < 0x7f; ++c) t[static_cast<size_t>(c)] = c != '"' && c != '\\' && c != '<' && c != '>';
    return t;
  }();
  static bool IsPlain(unsigned char c) { return kPlain[c]; }
  void AppendDecimal(uint64_t value) {
    const fmt::format_int digits(value);
    out_.append(digits.data(), digits.size());
  }
  // `value` in exactly `width` digits, zero-padded (value < 10^width).
  void AppendFixedDigits(uint32_t value, int width) {
    char buf[10];
    for (int i = width - 1; i >= 0; --i) {
      buf[i] = static_cast<char>('0' + value % 10);
      value /= 10;
    }
    out_.append(buf, static_cast<size_t>(width));
  }
  // Length of the well-formed UTF-8 sequence at the start of `s` (non-ASCII lead), or 0.
  static size_t Utf8Length(std::string_view s) {
    auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
    auto cont = [&](size_t k) { return k < s.size() && (b(k) & 0xc0) == 0x80; };
    unsigned char c = b(0);
    if (c >= 0xc2 && c <= 0xdf) return cont(1) ? 2 : 0;
    if (c >= 0xe0 && c <= 0xef) {
      if (!cont(1) || !cont(2)) return 0;
      if (c == 0xe0 && b(1) < 0xa0) return 0;  // overlong
      if (c == 0xed && b(1) >= 0xa0) return 0;  // surrogates
      return 3;
    }
    if (c >= 0xf0 && c <= 0xf4) {
      if (!cont(1) || !cont(2) || !cont(3)) return 0;
      if (c == 0xf0 && b(1) < 0x90) return 0;  // overlong
      if (c == 0xf4 && b(1) >= 0x90) return 0;  // past U+10FFFF
      return 4;
    }
    return 0;
  }

  std::string& out_;
  bool first_ = true;
};

void AppendFinding(JsonWriter& w, const v1::Finding& f) {
  w.Begin();
  w.String("rule_id", f.rule_id());
  w.String("category", f.category());
  w.Uint64("count", f.count());
  w.Uint64("start", f.start());
  w.Uint64("end", f.end());
  w.String("evidence", f.evidence());
  w.String("fingerprint", f.fingerprint());
  w.Enum("action", f.action(), [](int v) { return rules::v1::Action_Name(v); }, rules::v1::Action_IsValid(f.action()));
  w.Enum("severity", f.severity(), [](int v) { return rules::v1::Severity_Name(v); },
         rules::v1::Severity_IsValid(f.severity()));
  // Field order as protobuf prints it (by field number): member (10) after severity.
  w.String("member", f.member());  // archive member path
  if (f.spans_size() > 0) {
    w.Key("spans");
    w.Raw('[');
    for (int i = 0; i < f.spans_size(); ++i) {
      w.NextElement(i == 0);
      const v1::FindingSpan& span = f.spans(i);
      JsonWriter inner(w.out());
      inner.Begin();
      inner.Uint64("start", span.start());
      inner.Uint64("end", span.end());
      inner.String("evidence", span.evidence());
      inner.String("member", span.member());
      inner.String("fingerprint", span.fingerprint());
      inner.End();
    }
    w.Raw(']');
  }
  w.Bool("spans_truncated", f.spans_truncated());
  w.End();
}

}  // namespace

void AppendVerdictJson(const v1::Verdict& v, std::string& out) {
  out.reserve(out.size() + 512);  // a typical line, so it grows at most once
  JsonWriter w(out);
  w.Begin();
  w.String("id", v.id());
  if (v.has_time()) w.Timestamp("time", v.time().seconds(), v.time().nanos());
  w.String("appliance", v.appliance());
  w.String("connection_id", v.connection_id());
  w.String("client_address", v.client_address());
  w.String("workload", v.workload());
  w.String("host", v.host());
  w.Uint32("port", v.port());
  w.String("method", v.method());
  w.String("path", v.path());
  w.String("mode", v.mode());
  if (!v.protocol().empty()) {
    w.String("protocol", v.protocol());
    if (v.stream_id() != 0) w.Uint32("stream_id", v.stream_id());
    w.Uint64("messages_out", v.messages_out());
    w.Uint64("messages_in", v.messages_in());
  }
  w.Uint64("bytes_out", v.bytes_out());
  w.Uint64("bytes_in", v.bytes_in());
  w.Uint64("bytes_out_before_block", v.bytes_out_before_block());
  if (v.response_status() != 0) w.Uint32("response_status", v.response_status());
  if (v.duration_us() != 0) w.Uint64("duration_us", v.duration_us());
  if (v.phase() != v1::Verdict::COMPLETE) {
    w.Enum("phase", v.phase(), [](int x) { return v1::Verdict::Phase_Name(x); }, v1::Verdict::Phase_IsValid(v.phase()));
  }
  w.String("rule_pack_version", v.rule_pack_version());
  if (v.findings_size() > 0) {
    w.Key("findings");
    w.Raw('[');
    for (int i = 0; i < v.findings_size(); ++i) {
      w.NextElement(i == 0);
      JsonWriter inner(out);
      AppendFinding(inner, v.findings(i));
    }
    w.Raw(']');
  }
  w.Enum("action", v.action(), [](int x) { return rules::v1::Action_Name(x); }, rules::v1::Action_IsValid(v.action()));
  w.String("reason", v.reason());
  w.Bool("enforced", v.enforced());
  w.End();
}

std::string VerdictToJsonLine(const v1::Verdict& verdict) {
  std::string out;
  AppendVerdictJson(verdict, out);
  return out;
}

absl::StatusOr<std::shared_ptr<JsonlSink>> JsonlSink::Open(const std::string& path, size_t max_queued) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return absl::InvalidArgumentError(fmt::format("cannot open audit log {}: {}", path, std::strerror(errno)));
  return std::shared_ptr<JsonlSink>(new JsonlSink(fd, max_queued == 0 ? 1 : max_queued));
}

JsonlSink::JsonlSink(int fd, size_t max_queued) : fd_(fd), max_queued_(max_queued) {
  writer_ = std::thread([this] { WriterLoop(); });
}

JsonlSink::~JsonlSink() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  wake_writer_.notify_one();
  writer_.join();
  ::close(fd_);
}

bool JsonlSink::Submit(v1::Verdict verdict) {
  if (verdict.phase() == v1::Verdict::OPEN) return true;  // KeepsWriteAhead() is false: completions only
  // Evidence is redacted by the engine; fingerprints are keyed HMACs. Nothing else in a
  // verdict is matched content, so each record is written as is.
  thread_local std::string line;
  line.clear();
  AppendVerdictJson(verdict, line);
  line += '\n';
  {
    std::unique_lock lock(mu_);
    // A full queue means the disk is slower than the traffic: wait for room rather than
    // lose an audit record.
    room_.wait(lock, [&] { return queued_lines_ < max_queued_ || stopping_; });
    if (failed_) return false;
    queue_ += line;
    ++queued_lines_;
    ++submitted_;
    // The first line starts a batch window; a half-full queue ends it early.
    if (queued_lines_ == 1 || queued_lines_ == max_queued_ / 2) wake_writer_.notify_one();
  }
  // One odd verdict (thousands of findings) does not leave its line's size with the thread.
  if (line.capacity() > kKeptLineCapacity) std::string().swap(line);
  return true;
}

void JsonlSink::Flush() {
  std::unique_lock lock(mu_);
  const uint64_t target = submitted_;
  flush_requested_ = true;
  wake_writer_.notify_one();
  room_.wait(lock, [&] { return written_ >= target || failed_; });
}

void JsonlSink::WriterLoop() {
  std::string out;  // the batch being written; swapped with queue_, so both keep their storage
  std::unique_lock lock(mu_);
  while (true) {
    wake_writer_.wait(lock, [&] { return queued_lines_ > 0 || stopping_; });
    if (queued_lines_ == 0 && stopping_) break;
    wake_writer_.wait_for(lock, kBatchWindow,
                          [&] { return stopping_ || flush_requested_ || queued_lines_ >= max_queued_ / 2; });
    flush_requested_ = false;
    out.clear();
    out.swap(queue_);
    const size_t count = queued_lines_;
    queued_lines_ = 0;
    lock.unlock();
    room_.notify_all();

    bool ok = true;
    size_t done = 0;
    while (done < out.size()) {
      ssize_t n = ::write(fd_, out.data() + done, out.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        ok = false;
        spdlog::error("audit log: write failed: {}; verdicts are no longer recorded there", std::strerror(errno));
        break;
      }
      done += static_cast<size_t>(n);
    }
    // A burst's batch (up to max_queued lines) does not stay allocated once it is written.
    if (out.capacity() > kKeptBatchCapacity) std::string().swap(out);

    lock.lock();
    written_ += count;
    if (!ok) failed_ = true;
    room_.notify_all();
  }
}

}  // namespace egressguard::mitm
