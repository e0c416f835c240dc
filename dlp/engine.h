#pragma once
// The DLP engine's public interface: compile a rule pack once, share it, scan messages
// as streams. Owned by dlp/; consumed by mitm/ (the proxy), appliance/ (scan CLI,
// rule hot-swap). Names here are a contract between folders: add, don't rename.
//
// Threading: an Engine is immutable and shared (EnginePtr) by every worker; a Scanner
// holds one thread's Hyperscan scratch and is used by that thread only; a MessageScan
// is one message (one HTTP request body, URL, header block, or a raw connection) and
// keeps the Engine it was opened with alive until it is destroyed.

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "egressguard/rules/v1/rules.pb.h"
#include "egressguard/v1/verdict.pb.h"

namespace egressguard::dlp {

namespace decode {
struct TextRunConfig;  // dlp/decode/text_runs.h
}  // namespace decode

struct EngineOptions {
  // Key for the HMAC-SHA256 fingerprints of matched values (per deployment secret).
  std::string fingerprint_key;
  // Distinct validated PII values in one message that make a bulk_pii finding;
  // 0 takes the pack's bulk_pii_threshold; when neither sets one, values alone never
  // make bulk_pii (records do, below).
  uint32_t bulk_pii_threshold = 0;
  // Records of people holding a new PII value (CSV/spreadsheet rows, JSON objects of an
  // array, SQL rows, log lines) that make a bulk_pii finding; 0 takes the pack's
  // min_records, or 50 when the pack has none.
  uint32_t bulk_min_records = 0;
  // Occurrences located per finding (Finding.spans), the first this many of each rule's
  // accepted matches; 0: none. Each costs about 100 bytes of verdict.
  uint32_t max_finding_spans = 16;
  // Decoders (percent, JSON escapes, base64, multipart, gzip/deflate/br/zstd).
  bool decode = true;  // false: scan the raw bytes only (benchmarks, raw-stream callers)
  uint32_t max_decode_depth = 3;
  uint64_t max_decoded_bytes = 64ull << 20;  // per message, beyond it: `undecodable`
  // ... plus this many per byte of the message: a 256 MiB base64 attachment (0.75 decoded
  // bytes per byte, 1.5 through a stored zip inside it) is read to its end, a bomb is not.
  uint32_t decoded_bytes_per_input_byte = 8;
  uint32_t max_expansion_ratio = 100;        // decompression bomb guard
  // Action of an `undecodable` finding (bomb, corrupt gzip...) when the pack has no rule
  // of category "undecodable" (which would decide it instead).
  rules::v1::Action undecodable_action = rules::v1::ALERT;
  // Binary documents the decoders find (images, compressed or encrypted bytes inside
  // base64) are scanned only around the runs of bytes the pack's patterns can match,
  // which loses no finding (dlp/decode/text_runs.h). false: every decoded byte is scanned.
  bool filter_binary = true;
  // Set by Compile from the pack (callers leave it empty): what that filter keeps.
  std::shared_ptr<const decode::TextRunConfig> text_runs;
  // Directory of compiled databases to reuse across processes (dlp/db_cache.h);
  // empty: compile every time. Not part of what is compiled.
  std::string db_cache_dir;
  // Load the validators' data when compiling (libphonenumber's metadata: ~15 ms), so
  // the first message does not wait for it. A one-shot command (`scan`) that may never
  // validate a phone number can leave it to the first use.
  bool warm_validators = true;
};

// What the sender declared; a hint only (decoders also sniff the bytes).
struct ContentHint {
  std::string content_type;      // e.g. "application/json; charset=utf-8"
  std::string content_encoding;  // e.g. "gzip", "br", "zstd", "deflate", ""
  bool is_url = false;           // the request target: percent-decode
};

// Where in the message a value was found, with its redacted form: what a record that
// shows the message itself (a URL path, a host name) puts in the value's place.
struct MatchedSpan {
  uint64_t start = 0;  // original offsets, as Finding.start/end
  uint64_t end = 0;
  std::string evidence;  // dlp/redact.h
};

struct MessageResult {
  rules::v1::Action action = rules::v1::ALLOW;  // strongest action of any finding
  std::vector<v1::Finding> findings;            // redacted; never raw values
  std::string reason;                           // deciding rule ids, comma-separated, or a condition
  uint64_t bytes_scanned = 0;
  // Every accepted match (every rule, every action), the first kMaxMatchedSpans of them.
  static constexpr size_t kMaxMatchedSpans = 256;
  std::vector<MatchedSpan> spans;
};

class Engine;
using EnginePtr = std::shared_ptr<const Engine>;

class Engine {
 public:
  // Builds the Hyperscan databases for every enabled rule. A pattern Hyperscan
  // refuses fails the whole pack with the rule id and the reason.
  static absl::StatusOr<EnginePtr> Compile(const rules::v1::RulePack& pack, const EngineOptions& options);
  virtual ~Engine() = default;

  virtual const std::string& pack_version() const = 0;
  virtual const rules::v1::RulePack& pack() const = 0;
  // Hyperscan stream state bytes of one scanned layer (all databases: the digit-run
  // database is block mode and holds none). A MessageScan opens one layer for the raw
  // bytes and, lazily, one per decoded layer it meets (at most 1 + decode::kMaxLayers).
  virtual size_t stream_state_bytes() const = 0;
};

class MessageScan {
 public:
  virtual ~MessageScan() = default;
  // Feeds the next bytes of the message; chunks may be any size, including 0.
  virtual void Feed(std::string_view chunk) = 0;
  // The strongest action decided so far; lets the proxy stop forwarding early.
  virtual rules::v1::Action action_so_far() const = 0;
  // How far the message is decided, as an offset in the bytes fed (the original message,
  // before any decoding): no pending or possible match, open digit run, context window or
  // decoder state reaches back before it, so no byte before it can still become part of a
  // finding. Bytes from here on are undecided: a caller that streams the message on
  // holds them back until a later call or Finish. Cheap (no walk over data); grows with
  // every Feed; after Finish it is the whole message.
  virtual uint64_t decided_offset() const = 0;
  // The offset of the first value counted toward a blocking threshold that is not reached
  // yet (bulk_pii, a rule's min_count), or UINT64_MAX. These bytes are decided on their
  // own but may still be what tips a bulk block: a caller that can afford to holds them
  // back too, within a bound of its own (see HoldFrom).
  virtual uint64_t threshold_from() const = 0;
  // Ends the message (flushes decoders, closes streams) and returns the verdict.
  virtual MessageResult Finish() = 0;
};
using MessageScanPtr = std::unique_ptr<MessageScan>;

// Where a caller that streams a message on must stop forwarding, given `fed` bytes fed:
// the decided offset, and before it the values counted toward a blocking threshold, held
// back while they lie within `threshold_hold` bytes of the end (so the hold stays bounded;
// beyond it a bulk block may come after some of its values left).
inline uint64_t HoldFrom(const MessageScan& scan, uint64_t fed, uint64_t threshold_hold) {
  const uint64_t floor = fed > threshold_hold ? fed - threshold_hold : 0;
  return std::min(scan.decided_offset(), std::max(scan.threshold_from(), floor));
}

// One per thread. Grows its scratch to fit whichever engine it is asked to scan with,
// so a hot-swapped engine needs no coordination beyond passing the new EnginePtr.
// It keeps up to 8 finished scans of the engine it last opened (reset, with their
// buffers and Hyperscan streams) for its next messages; they, and so that engine, are
// dropped when it opens a scan of another engine or is destroyed. A scan may be
// destroyed on any thread and after its Scanner.
class Scanner {
 public:
  Scanner();
  ~Scanner();
  Scanner(const Scanner&) = delete;
  Scanner& operator=(const Scanner&) = delete;

  MessageScanPtr Open(EnginePtr engine, const ContentHint& hint);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace egressguard::dlp
