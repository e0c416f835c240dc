#pragma once
// MessageScan implementation (internal to dlp/). One message = layer 0 (the raw bytes)
// plus one LayerScan per decoded layer, each with its own Hyperscan stream, digit gate
// and bounded history; candidates from every layer meet in one set of per-rule counts,
// so a value seen raw and decoded counts once.
//
// Memory per open message and layer: Hyperscan stream state (Engine::stream_state_bytes),
// a 16 KiB history ring (allocated on first use), the open digit run (<= 4 KiB) and the
// matches waiting for their after-context, and up to 256 accepted matches (value,
// normalized value, member) waiting in the window of recent spans; per message:
// distinct-value digests (16 bytes each, at most 65536 per rule and for bulk_pii) and
// the counted records (8 bytes each, at most 65536). A finished scan keeps its layers'
// buffers and streams for reuse by its Scanner (Recycle / Reopen); sets that grew past
// 1024 buckets are freed rather than kept.

#include <hs/hs.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "dlp/csv_header.h"
#include "dlp/decode_bridge.h"
#include "dlp/engine.h"
#include "dlp/hyperscan_engine.h"

namespace egressguard::dlp {

class LayerScan;

// Where a candidate lies in its layer: what overlap resolution compares (a layer's own
// offsets are exact where mapped original offsets may cover a whole decoded segment),
// and how to find the record (row, object, line) holding it.
struct CandidatePlace {
  uint64_t layer_start = 0;
  uint64_t layer_end = 0;
  const LayerScan* scan = nullptr;  // the layer, for RecordStart
  std::string_view chunk;           // the bytes fed but not yet in its history
};

class MessageScanImpl final : public MessageScan, public DecodedSink {
 public:
  // `scratch` points at the owning Scanner's scratch slot (it may be reallocated
  // between calls when the Scanner grows it for another engine).
  MessageScanImpl(std::shared_ptr<const HyperscanEngine> engine, hs_scratch_t* const* scratch,
                  const ContentHint& hint);
  ~MessageScanImpl() override;

  // Clears this scan for another message of the same engine, keeping its buffers,
  // layers and Hyperscan streams (the decoders go); false when it cannot be reused.
  bool Recycle();
  // Starts the next message on a recycled scan.
  void Reopen(const ContentHint& hint);
  const std::shared_ptr<const HyperscanEngine>& engine_ptr() const { return engine_; }

  // MessageScan
  void Feed(std::string_view chunk) override;
  rules::v1::Action action_so_far() const override { return so_far_; }
  uint64_t decided_offset() const override;
  uint64_t threshold_from() const override;
  MessageResult Finish() override;

  // DecodedSink
  void OnDecoded(uint32_t layer, std::string_view bytes, uint64_t orig_begin, uint64_t orig_end,
                 bool linear) override;
  void OnUndecodable(uint64_t orig_begin, uint64_t orig_end, std::string_view why) override;
  void OnDocumentEnd(uint32_t layer) override;
  void OnMember(uint32_t layer, std::string_view path) override;
  void OnEncrypted(uint64_t orig_begin, uint64_t orig_end, std::string_view member, std::string_view what) override;

  // From LayerScan: a pattern match with its bytes and context, offsets already mapped
  // to the original message.
  void OnCandidate(uint32_t layer, uint32_t rule, std::string_view value, std::string_view before, std::string_view after,
                   uint64_t orig_start, uint64_t orig_end, const CandidatePlace& place);
  void OnScanError(std::string_view what);
  hs_scratch_t* scratch() const { return *scratch_; }
  const HyperscanEngine& engine() const { return *engine_; }

 private:
  struct RuleState {
    uint64_t count = 0;
    std::unordered_set<std::string> seen;  // 16-byte keyed digests of normalized values
    bool boosted = false;
    bool have_first = false;
    uint64_t first_start = 0;
    uint64_t first_end = 0;
    std::string evidence;
    std::string fingerprint;
    std::string member;  // container member of the first match
    // Finding.spans: the occurrences located, up to the engine's max_finding_spans, and
    // where each lies by (value digest, start), to know the same bytes seen again
    // through another layer.
    std::vector<v1::FindingSpan> spans;
    std::map<std::pair<std::string, uint64_t>, uint32_t> span_at;
    bool spans_truncated = false;
  };
  // A counted occurrence into Finding.spans; `member_path`: the container member it lies in.
  void RecordSpan(RuleState& st, const CompiledRule& rule, std::string_view value, const std::string& normalized,
                  const std::string& key, uint64_t orig_start, uint64_t orig_end, const std::string& member_path);

  // A CSV (or spreadsheet rows) seen through a decoded layer: a container member's, or
  // any decoded document's (a UTF-16 export transcoded, a gzipped CSV), each judged on
  // its own header from its first line; its rows count as records for bulk_pii.
  struct MemberCsv {
    std::unique_ptr<CsvHeaderDetector> csv;
    std::string member;  // "" for a document outside any container
    bool open = false;   // a document or member is being fed
  };
  void CloseMemberCsv(uint32_t layer);
  uint64_t MemberRows() const;  // most rows of a member CSV with PII columns, so far

  // A validated match waiting in its layer's window of recent spans: another rule's
  // match over the same bytes may still arrive (the digit gate, the prefix test and the
  // stream database report in different orders) and take the span. It is counted when
  // it leaves the window (Commit), so counts, first evidence and bulk are of kept spans.
  struct Accepted {
    uint32_t rule = 0;
    bool boosted = false;
    uint64_t layer_start = 0, layer_end = 0;
    uint64_t orig_start = 0, orig_end = 0;
    uint64_t record = 0;  // layer offset of the record holding it (pii rules)
    // The matched bytes stay in memory (as in the History ring) only until Commit,
    // which redacts them for the spans and the first evidence; never logged or stored.
    std::string value, normalized, member;
  };
  // Whether `a` keeps a span it shares with `b`: the more specific rule (checksums over
  // shapes), then the longer match (a number over its tail), then the earlier one.
  bool Beats(const Accepted& a, const Accepted& b) const;
  void Commit(uint32_t layer, Accepted&& a);
  void CommitRecent(uint32_t layer, size_t keep);  // all but the newest `keep`
  // Counts a record (layer, record start) that holds a PII value no earlier record held.
  void NoteRecord(uint32_t layer, uint64_t record, const std::string& category, bool fresh);
  uint64_t Records() const { return records_; }

  LayerScan* Layer(uint32_t layer);
  static void ClearDistinct(std::unordered_set<std::string>* seen);
  void UpdateSoFar();
  bool KeywordNear(const CompiledRule& rule, std::string_view before, std::string_view after) const;
  bool Excluded(const CompiledRule& rule, std::string_view value, const std::string& normalized) const;

  std::shared_ptr<const HyperscanEngine> engine_;
  hs_scratch_t* const* scratch_;
  std::vector<std::unique_ptr<LayerScan>> layers_;
  uint32_t active_layers_ = 1;  // bit i: layers_[i] is part of this message (kMaxLayers <= 32)
  std::unique_ptr<DecodeHook> decoder_;
  std::vector<RuleState> states_;
  std::unordered_set<std::string> bulk_seen_;
  std::vector<std::vector<Accepted>> recent_;  // by layer: accepted, not yet committed
  // Records counted (start * kMaxLayers + layer): values of one record may commit far
  // apart (one rule's values of a whole chunk before another's).
  std::unordered_set<uint64_t> counted_records_;
  // Values that made a record fresh, per layer (the bulk digest with the layer mixed in):
  // a value seen raw and decoded makes a record in each layer, and records_ is the most
  // of one layer (layer_records_), so the same people are not counted twice.
  std::unordered_set<std::string> record_values_;
  std::vector<uint64_t> layer_records_;
  uint64_t records_ = 0;
  std::vector<std::string> record_categories_;  // of the counted records' new values
  uint64_t bulk_overflow_ = 0;
  uint64_t bulk_first_ = UINT64_MAX;  // original start of the first value counted toward bulk_pii
  bool decode_stopped_ = false;       // the decoders hit a limit: decoded layers get nothing more
  CsvHeaderDetector csv_;
  // What the decoders report rather than match (undecodable, encrypted content): counted,
  // the first one kept as the finding's span, reason and member.
  struct Reported {
    uint64_t count = 0;
    uint64_t start = 0, end = 0;
    std::string why, member;
    void Note(uint64_t orig_begin, uint64_t orig_end, std::string_view reason, std::string_view in_member);
    void Clear() { *this = Reported{}; }
    void AddFinding(const MessageRule& rule, MessageResult* r) const;
  };
  Reported undecodable_;
  Reported encrypted_;
  std::vector<std::string> layer_member_;  // by layer id: the member its bytes now come from
  std::vector<MemberCsv> member_csv_;       // by layer id, while a document of that layer is open
  uint64_t member_rows_ = 0;                // most rows of one member CSV with PII columns
  std::string member_rows_columns_, member_rows_member_;
  std::string scan_error_;
  std::vector<MatchedSpan> spans_;  // accepted matches, for MessageResult::spans
  uint64_t total_bytes_ = 0;
  rules::v1::Action so_far_ = rules::v1::ALLOW;
  bool finished_ = false;
  MessageResult result_;
};

}  // namespace egressguard::dlp
