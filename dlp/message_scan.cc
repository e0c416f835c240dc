#include "dlp/message_scan.h"

#include <fmt/format.h>

#include <algorithm>
#include <deque>
#include <mutex>
#include <optional>

#if defined(__x86_64__)
#include <immintrin.h>
#elif defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "dlp/fingerprint.h"
#include "dlp/redact.h"
#include "dlp/validators.h"

namespace egressguard::dlp {

namespace {

using rules::v1::Action;

constexpr size_t kHistoryBytes = 16 << 10;
constexpr uint64_t kMaxValueBytes = 8 << 10;
// A match that has not grown for this many bytes (beyond its after-context) is final.
// Patterns whose successive match ends lie further apart than this are not extended
// across it; none of the shipped patterns has such gaps.
constexpr uint64_t kPendingSlack = 512;
constexpr size_t kMaxDistinct = 1 << 16;
// How far back a PII value's record start is looked for (LayerScan::RecordStart).
constexpr uint64_t kRecordLookback = 2048;
constexpr uint64_t kRecordShortLookback = 256;
// Accepted matches kept per layer before they are counted, for overlap resolution
// (MessageScanImpl::Accepted): each layer evaluates its matches in offset order per
// Drain, and a match is reported at most a digit run (DigitGate's max_run, 4 KiB) plus
// kPendingSlack after the matches of other rules over the same bytes, so a window
// reaching kRecentBytes back from the newest start (at most kRecentSpans) sees every pair.
constexpr size_t kRecentSpans = 256;
constexpr uint64_t kRecentBytes = 8 << 10;
constexpr size_t kMaxSegments = 4096;
constexpr uint32_t kMaxLayers = 16;
static_assert(kMaxLayers <= 32, "MessageScanImpl::active_layers_ is a 32-bit mask");
// Finished scans a Scanner keeps for its next messages (a worker rarely has more than a
// URL, a header block and a body open at once).
constexpr size_t kMaxPooledScans = 8;
constexpr size_t kMaxScanCall = 1u << 30;  // hs_scan takes unsigned lengths
constexpr size_t kBatchBytes = 16 << 10;     // digit-run windows per block scan
// Decoded bytes arrive in small segments (a base64 line, a few escapes): they are
// scanned in batches of up to this many bytes or segments, and always by the end of the
// raw chunk that produced them.
constexpr size_t kDecodedBatchBytes = 16 << 10;
constexpr size_t kDecodedBatchSegments = kMaxSegments / 4;

Action Stronger(Action a, Action b) { return static_cast<int>(a) >= static_cast<int>(b) ? a : b; }

// The last kHistoryBytes bytes of a stream, for start-of-match and context windows.
class History {
 public:
  uint64_t end() const { return end_; }

  History() = default;
  History(const History&) = delete;
  History& operator=(const History&) = delete;
  ~History() {
    // Back to this thread's spares: a 16 KiB malloc/free per message made glibc
    // consolidate its free lists each time (~5% of a scan of small messages).
    if (buf_ && !spares_gone_ && Spares().bufs.size() < 16) Spares().bufs.push_back(std::move(buf_));
  }

  void Append(std::string_view s) {
    if (s.empty()) return;
    if (!buf_) {
      if (!spares_gone_ && !Spares().bufs.empty()) {
        buf_ = std::move(Spares().bufs.back());
        Spares().bufs.pop_back();
      } else {
        buf_.reset(new char[kHistoryBytes]);  // not zero-filled: only written bytes are read
      }
    }
    if (s.size() >= kHistoryBytes) {
      uint64_t start = end_ + s.size() - kHistoryBytes;
      s.remove_prefix(s.size() - kHistoryBytes);
      end_ = start;
    }
    size_t pos = static_cast<size_t>(end_ % kHistoryBytes);
    size_t first = std::min(s.size(), kHistoryBytes - pos);
    std::copy_n(s.data(), first, buf_.get() + pos);
    std::copy_n(s.data() + first, s.size() - first, buf_.get());
    end_ += s.size();
  }

  // Appends to `out` the held bytes of [a, b): from the ring, then from `chunk`, which
  // holds the bytes at [end(), end() + chunk.size()) not yet appended.
  void Copy(uint64_t a, uint64_t b, std::string_view chunk, std::string* out) const {
    out->clear();
    Append(a, b, chunk, out);
  }
  void Append(uint64_t a, uint64_t b, std::string_view chunk, std::string* out) const {
    uint64_t floor = end_ > kHistoryBytes ? end_ - kHistoryBytes : 0;
    a = std::max(a, floor);
    for (uint64_t i = a; i < std::min(b, end_);) {
      size_t pos = static_cast<size_t>(i % kHistoryBytes);
      size_t n = static_cast<size_t>(std::min<uint64_t>(std::min(b, end_) - i, kHistoryBytes - pos));
      out->append(buf_.get() + pos, n);
      i += n;
    }
    uint64_t ca = std::max(a, end_);
    uint64_t cb = std::min(b, end_ + chunk.size());
    if (ca < cb) out->append(chunk.data() + (ca - end_), static_cast<size_t>(cb - ca));
  }

  size_t memory_bytes() const { return buf_ ? kHistoryBytes : 0; }
  // Empty again; the ring buffer stays (only bytes written after this are read).
  void Reset() { end_ = 0; }

 private:
  // A History destroyed after its thread's pool (a MessageScan held by a static object)
  // frees its buffer instead: the flag, trivially destructible, outlives the pool.
  struct SparePool {
    std::vector<std::unique_ptr<char[]>> bufs;
    ~SparePool() { spares_gone_ = true; }
  };
  static SparePool& Spares() {
    thread_local SparePool pool;
    return pool;
  }
  static thread_local bool spares_gone_;

  std::unique_ptr<char[]> buf_;
  uint64_t end_ = 0;
};

thread_local bool History::spares_gone_ = false;

// Bit j set when bytes p[j] and p[j + 1] lie in [lo0, hi0] and [lo1, hi1], j < 16.
inline unsigned PairMask16(const char* p, const PrefixGateConfig& c) {
#if defined(__SSE2__)
  auto in = [](__m128i v, unsigned char lo, unsigned char hi) {
    const __m128i d = _mm_sub_epi8(v, _mm_set1_epi8(static_cast<char>(lo)));
    const __m128i span = _mm_set1_epi8(static_cast<char>(hi - lo));
    return _mm_cmpeq_epi8(_mm_min_epu8(d, span), d);
  };
  const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 1));
  return static_cast<unsigned>(_mm_movemask_epi8(_mm_and_si128(in(a, c.lo0, c.hi0), in(b, c.lo1, c.hi1))));
#else
  unsigned m = 0;
  for (unsigned j = 0; j < 16; ++j) {
    const auto x = static_cast<unsigned char>(p[j]), y = static_cast<unsigned char>(p[j + 1]);
    if (x >= c.lo0 && x <= c.hi0 && y >= c.lo1 && y <= c.hi1) m |= 1u << j;
  }
  return m;
#endif
}

inline bool IsDigitByte(char c) { return static_cast<unsigned char>(c - '0') <= 9; }
inline bool IsWordByte(char c) {
  return IsDigitByte(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

#if defined(__x86_64__)
// Appends base + j for every start j in [0, 32 * blocks) where all kShapePrefix bytes of
// p[j..] fit (p must hold 32 * blocks + kShapePrefix - 1 bytes).
__attribute__((target("avx2"))) void PrefixStartsAvx2(const char* p, size_t blocks, uint64_t base,
                                                      const PrefixGateConfig& c, std::vector<uint64_t>* out) {
  const __m256i nib = _mm256_set1_epi8(0x0f);
  __m256i lo[kShapePrefix], hi[kShapePrefix];
  for (size_t i = 0; i < kShapePrefix; ++i) {
    lo[i] = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(c.nibble_lo[i].data())));
    hi[i] = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(c.nibble_hi[i].data())));
  }
  for (size_t blk = 0; blk < blocks; ++blk) {
    const char* q = p + 32 * blk;
    __m256i all = _mm256_set1_epi8(-1);
    for (size_t i = 0; i < kShapePrefix; ++i) {
      const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + i));
      const __m256i hit = _mm256_and_si256(_mm256_shuffle_epi8(lo[i], _mm256_and_si256(v, nib)),
                                           _mm256_shuffle_epi8(hi[i], _mm256_and_si256(_mm256_srli_epi16(v, 4), nib)));
      all = _mm256_andnot_si256(_mm256_cmpeq_epi8(hit, _mm256_setzero_si256()), all);
    }
    for (auto m = static_cast<uint32_t>(_mm256_movemask_epi8(all)); m != 0; m &= m - 1) {
      out->push_back(base + 32 * blk + static_cast<uint64_t>(__builtin_ctz(m)));
    }
  }
}
#endif

inline bool PrefixAt(const char* p, const PrefixGateConfig& c) {
  uint8_t m = 0xff;
  for (size_t i = 0; i < kShapePrefix; ++i) m &= static_cast<uint8_t>(c.mask[static_cast<unsigned char>(p[i])] | ~(1u << i));
  return m == 0xff;
}

// A message that cannot be scanned (no engine): fail closed.
class UnavailableScan final : public MessageScan {
 public:
  void Feed(std::string_view chunk) override { bytes_ += chunk.size(); }
  Action action_so_far() const override { return rules::v1::BLOCK; }
  uint64_t decided_offset() const override { return 0; }
  uint64_t threshold_from() const override { return UINT64_MAX; }
  MessageResult Finish() override {
    MessageResult r;
    r.action = rules::v1::BLOCK;
    r.reason = "engine_unavailable";
    r.bytes_scanned = bytes_;
    return r;
  }

 private:
  uint64_t bytes_ = 0;
};

}  // namespace

// One layer of one message: a Hyperscan stream over the stream database, the digit
// gate in front of the block database, and the bookkeeping that turns raw matches
// (pattern, start, end) into leftmost-longest candidates with their context.
class LayerScan {
 public:
  LayerScan(MessageScanImpl* owner, uint32_t layer)
      : owner_(owner), engine_(owner->engine()), layer_(layer), pending_(engine_.patterns().size()),
        taken_end_(engine_.patterns().size(), 0) {
    if (engine_.stream_db() != nullptr) {
      if (hs_open_stream(engine_.stream_db(), 0, &stream_) != HS_SUCCESS) {
        stream_ = nullptr;
        owner_->OnScanError("hs_open_stream failed");
      }
    }
    if (!engine_.gated_dbs().empty()) {
      gate_ = std::make_unique<DigitGate>(&engine_.gate_config());
      gate_batches_.resize(engine_.gated_dbs().size());
      for (auto& b : gate_batches_) b.owner = this;
      gate_keywords_.ends = &keyword_ends_;
      for (const auto& g : engine_.gated_dbs()) {
        if (!g.keyed) continue;
        gate_keywords_.keyed_classes |= g.cls;
        gate_keywords_.window = std::max(gate_keywords_.window, g.keyword_window);
      }
      keyed_classes_ = gate_keywords_.keyed_classes;

    }
    prefix_ = engine_.prefix_db() != nullptr;
    for (const CompiledRule& rule : engine_.rules()) {
      if (rule.effect != rules::v1::Context::REQUIRE) continue;
      for (const std::string& kw : rule.keywords) {
        if (std::find(required_keywords_.begin(), required_keywords_.end(), kw) == required_keywords_.end()) {
          required_keywords_.push_back(kw);
        }
      }
    }
  }

  ~LayerScan() {
    if (stream_ != nullptr) hs_close_stream(stream_, nullptr, nullptr, nullptr);
  }

  LayerScan(const LayerScan&) = delete;
  LayerScan& operator=(const LayerScan&) = delete;

  void Feed(std::string_view chunk) {
    if (finished_ || chunk.empty()) return;
    stream_fresh_ = false;
    const uint64_t base = history_.end();
    if (header_open_) TakeHeader(chunk, base);
    for (size_t at = 0; at < chunk.size(); at += kMaxScanCall) {
      std::string_view part = chunk.substr(at, kMaxScanCall);
      if (stream_ != nullptr) {
        hs_error_t rc = hs_scan_stream(stream_, part.data(), static_cast<unsigned>(part.size()), 0,
                                       owner_->scratch(), &LayerScan::OnStreamMatch, this);
        if (rc != HS_SUCCESS) owner_->OnScanError(fmt::format("hs_scan_stream failed ({})", rc));
      }
    }
    if (gate_) {
      gate_->Feed(chunk, base, [this](const GateWindow& w) { QueueWindow(w); }, &gate_keywords_);
      ScanBatch();
      PruneKeywords(base + chunk.size());
    }
    if (prefix_) {
      FindPrefixes(chunk, base);
      ScanPrefixes(chunk, /*final=*/false);
    }
    Drain(chunk, /*final=*/false);
    history_.Append(chunk);
  }

  // Decoded bytes of this layer (the decoder separates unrelated documents itself).
  // Each scan call costs a few thousand instructions whatever its size (stream scan,
  // gate, prefix test, drain over every pattern), so segments are scanned in batches:
  // a stream matches the same however it is cut.
  void FeedSegment(std::string_view bytes, uint64_t orig_begin, uint64_t orig_end, bool linear) {
    if (bytes.empty() || finished_) return;
    const uint64_t begin = history_.end() + decoded_.size();
    segments_.push_back(Segment{begin, begin + bytes.size(), orig_begin, orig_end, linear});
    if (segments_.size() > kMaxSegments) {
      segments_.pop_front();
      segments_dropped_ = true;
    }
    decoded_.append(bytes);
    if (decoded_.size() >= kDecodedBatchBytes || ++decoded_segments_ >= kDecodedBatchSegments) FlushDecoded();
  }

  // Scans the decoded bytes held back by FeedSegment.
  void FlushDecoded() {
    if (decoded_.empty()) return;
    Feed(decoded_);
    decoded_.clear();
    decoded_segments_ = 0;
  }

  void Finish() {
    if (finished_) return;
    FlushDecoded();
    if (gate_) {
      gate_->Finish([this](const GateWindow& w) { QueueWindow(w); }, &gate_keywords_);
      ScanBatch();
    }
    if (prefix_) ScanPrefixes({}, /*final=*/true);
    if (stream_ != nullptr) {
      // Reports the end-of-data matches as hs_close_stream would, but keeps the stream,
      // now fresh, for the next message of a pooled scan.
      hs_error_t rc = hs_reset_stream(stream_, 0, owner_->scratch(), &LayerScan::OnStreamMatch, this);
      if (rc != HS_SUCCESS) owner_->OnScanError(fmt::format("hs_reset_stream failed ({})", rc));
      stream_fresh_ = true;
    }
    Drain({}, /*final=*/true);
    finished_ = true;
  }

  // A document of this decoded layer ended; the next one is unrelated (the decoder puts a
  // "\n" between them). Everything pending is judged now, as at the end of the message,
  // and matching starts afresh, so the layer holds nothing back while it waits for a
  // next document that may never come.
  void EndDocument() {
    if (finished_) return;
    FlushDecoded();
    if (gate_) {
      gate_->Finish([this](const GateWindow& w) { QueueWindow(w); }, &gate_keywords_);
      ScanBatch();
      gate_->Reset();
    }
    if (prefix_) {
      ScanPrefixes({}, /*final=*/true);
      prefix_carry_.clear();
    }
    if (stream_ != nullptr && !stream_fresh_) {
      hs_error_t rc = hs_reset_stream(stream_, 0, owner_->scratch(), &LayerScan::OnStreamMatch, this);
      if (rc != HS_SUCCESS) owner_->OnScanError(fmt::format("hs_reset_stream failed ({})", rc));
      stream_fresh_ = true;
    }
    stream_base_ = history_.end();
    Drain({}, /*final=*/true);
    ForgetHeader(history_.end());  // the next document has its own first line
  }

  // Back to the state of a new LayerScan of the same engine and layer, keeping every
  // buffer and the Hyperscan stream (a MessageScan is pooled by its Scanner).
  void Reset() {
    if (stream_ != nullptr && !stream_fresh_) hs_reset_stream(stream_, 0, nullptr, nullptr, nullptr);
    stream_fresh_ = true;
    if (gate_) gate_->Reset();
    for (auto& b : gate_batches_) ClearBatch(&b);
    ClearBatch(&hit_batch_);
    keyword_ends_.clear();
    prefix_carry_.clear();
    prefix_starts_.clear();
    prefix_batch_.clear();
    prefix_windows_.clear();
    history_.Reset();
    std::fill(pending_.begin(), pending_.end(), Pending{});
    live_ = 0;
    std::fill(taken_end_.begin(), taken_end_.end(), 0);
    completed_.clear();
    segments_.clear();
    segments_dropped_ = false;
    stream_base_ = 0;
    decoded_.clear();
    decoded_segments_ = 0;
    finished_ = false;
    ForgetHeader(0);
  }

  // The original offset before which no candidate of this layer is still to come, or
  // UINT64_MAX when every byte of it is decided. Called between Feeds (no decoded bytes
  // waiting in decoded_).
  uint64_t UndecidedOrigin() const {
    if (finished_) return UINT64_MAX;
    const uint64_t from = UndecidedFrom();
    if (layer_ == 0) return from;
    if (from >= history_.end()) return UINT64_MAX;
    // Decoded segments need not map in order (a lazy unescaper's windows overlap), so the
    // bound is the lowest original offset of any byte from `from` on.
    uint64_t orig = UINT64_MAX;
    for (auto it = segments_.rbegin(); it != segments_.rend(); ++it) {
      if (it->layer_end <= from) return orig;
      uint64_t o = it->orig_begin;
      if (it->linear && from > it->layer_begin) o += from - it->layer_begin;
      orig = std::min(orig, o);
    }
    // Every segment kept lies after `from`; if older ones were dropped, the origin of
    // `from` is unknown, so nothing is decided (the caller keeps holding).
    return segments_dropped_ ? 0 : orig;
  }

 private:
  // The layer offset before which no candidate is still to come: a stream-database match
  // ends at a byte not fed yet, so it starts at most its pattern's width back (capped at
  // the history, the furthest a value is ever read from); gated matches lie in runs the
  // gate has not judged; prefix matches start at a start not scanned yet; and a pending
  // match or one waiting for its after-context starts where it starts.
  uint64_t UndecidedFrom() const {
    const uint64_t avail = history_.end();
    const uint64_t width = std::min<uint64_t>(engine_.stream_max_width(), kHistoryBytes);
    uint64_t from = engine_.stream_db() != nullptr ? std::max(stream_base_, avail - std::min(avail, width)) : avail;
    if (gate_) from = std::min(from, gate_->undecided_from(avail));
    if (prefix_) from = std::min(from, PrefixSettled(avail));
    for (uint32_t i = 0; live_ > 0 && i < pending_.size(); ++i) {
      if (pending_[i].live) from = std::min(from, pending_[i].start);
    }
    for (const RawMatch& m : completed_) from = std::min(from, m.start);
    return from;
  }

  struct Pending {
    bool live = false;
    uint64_t start = 0;
    uint64_t end = 0;
  };
  struct RawMatch {
    uint32_t pattern;
    uint64_t start;
    uint64_t end;
  };
  struct BatchWindow {
    uint64_t at;    // offset in batch_
    uint64_t size;  // window bytes
    uint64_t base;  // stream offset of the window's first byte
    uint32_t first_start;
    uint64_t end_after;
    uint64_t end_limit;
  };
  struct PrefixWindow {
    uint64_t at;     // offset in prefix_batch_
    uint64_t size;   // window bytes
    uint64_t base;   // stream offset of the window's first byte
    uint32_t start;  // offset of the possible match start in the window (0 or 1)
  };
  struct Segment {
    uint64_t layer_begin;
    uint64_t layer_end;
    uint64_t orig_begin;
    uint64_t orig_end;
    bool linear;
  };

  static int OnStreamMatch(unsigned id, unsigned long long from, unsigned long long to, unsigned, void* ctx) {
    auto* self = static_cast<LayerScan*>(ctx);
    if (id >= self->engine_.keyword_id_base()) {
      self->OnKeyword(self->stream_base_ + to);
      return 0;
    }
    const CompiledPattern& p = self->engine_.patterns()[id];
    uint64_t start = p.fixed_width > 0 ? (to >= p.fixed_width ? to - p.fixed_width : 0) : from;
    // Stream offsets restart at 0 where the stream was reset (a document end): the
    // layer offset is the reset point plus them.
    self->Collect(id, self->stream_base_ + start, self->stream_base_ + to);
    return 0;
  }

  static int OnGateMatch(unsigned id, unsigned long long from, unsigned long long to, unsigned, void* ctx) {
    auto* batch = static_cast<GateBatch*>(ctx);
    const unsigned width = batch->owner->engine_.patterns()[id].fixed_width;
    if (width > 0) {
      if (to < width) return 0;
      from = to - width;
    }
    // The window holding the match (matches never cross the '\0' between windows).
    auto it = std::upper_bound(batch->windows.begin(), batch->windows.end(), from,
                               [](unsigned long long v, const BatchWindow& w) { return v < w.at; });
    if (it == batch->windows.begin()) return 0;
    const BatchWindow& w = *std::prev(it);
    if (from < w.at + w.first_start || to > w.at + w.size) return 0;
    const uint64_t start = w.base + (from - w.at);
    const uint64_t end = w.base + (to - w.at);
    if (end <= w.end_after || end > w.end_limit) return 0;
    batch->owner->Collect(id, start, end);
    return 0;
  }

  // A keyword of a keyed rule ended at `end` (stream order, so mostly ascending).
  void OnKeyword(uint64_t end) {
    if (keyword_ends_.empty() || keyword_ends_.back() <= end) {
      keyword_ends_.push_back(end);
    } else {
      keyword_ends_.insert(std::upper_bound(keyword_ends_.begin(), keyword_ends_.end(), end), end);
    }
  }

  // Whether a keyword ended where a keyed match in this window could see it: within
  // `window` bytes before the window's first possible start, up to the window's end.
  bool KeywordBefore(const GateWindow& w, uint32_t window) const {
    const uint64_t first = w.base + w.first_start;
    const uint64_t lo = first > window ? first - window : 0;
    auto it = std::lower_bound(keyword_ends_.begin(), keyword_ends_.end(), lo);
    return it != keyword_ends_.end() && *it <= w.base + w.bytes.size();
  }

  // Keyword ends no window still to come can reach: the gate holds back at most a
  // max_run run plus a max_width tail.
  void PruneKeywords(uint64_t avail) {
    if (keyword_ends_.empty()) return;
    const DigitGateConfig& c = engine_.gate_config();
    const uint64_t reach = std::max<uint64_t>(c.max_run, 2ull * c.max_width + 8) + 2ull * c.max_width + 16 +
                           engine_.max_window();
    if (avail <= reach) return;
    auto it = std::lower_bound(keyword_ends_.begin(), keyword_ends_.end(), avail - reach);
    keyword_ends_.erase(keyword_ends_.begin(), it);
  }

  // Digit-run windows are batched per gated database into one block scan: one hs_scan
  // call per database and chunk instead of one per number, and only for the runs that
  // can hold one of its patterns. A '\0' (never in a gated pattern, a non-word byte like
  // the buffer edge) keeps windows apart and leaves \b meaning what it meant.
  void QueueWindow(const GateWindow& w) {
    const auto& dbs = engine_.gated_dbs();
    bool full = false;
    for (size_t k = 0; k < dbs.size(); ++k) {
      if ((w.classes & dbs[k].cls) == 0) continue;
      if (dbs[k].keyed && gate_keywords_.keyed_classes != 0 && !KeywordBefore(w, dbs[k].keyword_window)) continue;
      GateBatch& b = gate_batches_[k];
      b.windows.push_back(BatchWindow{b.bytes.size(), w.bytes.size(), w.base, w.first_start, w.end_after, w.end_limit});
      b.bytes.append(w.bytes);
      b.bytes.push_back('\0');
      full = full || b.bytes.size() >= kBatchBytes;
    }
    if (full) ScanBatch();
  }

  // The probe marks the windows in which some pattern ends.
  static int OnProbeMatch(unsigned, unsigned long long, unsigned long long to, unsigned, void* ctx) {
    auto* batch = static_cast<GateBatch*>(ctx);
    const unsigned long long last = to - 1;  // the match's last byte
    if (batch->last_hit < batch->windows.size()) {
      const BatchWindow& w = batch->windows[batch->last_hit];
      if (last >= w.at && last < w.at + w.size) return 0;
    }
    auto it = std::upper_bound(batch->windows.begin(), batch->windows.end(), last,
                               [](unsigned long long v, const BatchWindow& w) { return v < w.at; });
    if (it == batch->windows.begin()) return 0;
    const size_t idx = static_cast<size_t>(std::prev(it) - batch->windows.begin());
    batch->hit[idx] = 1;
    batch->last_hit = idx;
    return 0;
  }

  void ScanBatch() {
    const auto& dbs = engine_.gated_dbs();
    for (size_t k = 0; k < dbs.size(); ++k) {
      GateBatch& b = gate_batches_[k];
      if (b.windows.empty()) continue;
      if (dbs[k].fixed) {
        hs_error_t rc = hs_scan(dbs[k].db.get(), b.bytes.data(), static_cast<unsigned>(b.bytes.size()), 0,
                                owner_->scratch(), &LayerScan::OnGateMatch, &b);
        if (rc != HS_SUCCESS) owner_->OnScanError(fmt::format("hs_scan failed ({})", rc));
        b.bytes.clear();
        b.windows.clear();
        continue;
      }
      // Most windows hold no match at all: find those that do without start-of-match
      // tracking, then scan just them again for exact starts.
      b.hit.assign(b.windows.size(), 0);
      b.last_hit = SIZE_MAX;
      hs_error_t rc = hs_scan(dbs[k].probe.get(), b.bytes.data(), static_cast<unsigned>(b.bytes.size()), 0,
                              owner_->scratch(), &LayerScan::OnProbeMatch, &b);
      if (rc != HS_SUCCESS) owner_->OnScanError(fmt::format("hs_scan failed ({})", rc));
      GateBatch& hits = hit_batch_;
      hits.bytes.clear();
      hits.windows.clear();
      for (size_t i = 0; i < b.windows.size(); ++i) {
        if (!b.hit[i]) continue;
        BatchWindow w = b.windows[i];
        const uint64_t from = w.at;
        w.at = hits.bytes.size();
        hits.windows.push_back(w);
        hits.bytes.append(b.bytes, static_cast<size_t>(from), static_cast<size_t>(w.size));
        hits.bytes.push_back('\0');
      }
      if (!hits.windows.empty()) {
        rc = hs_scan(dbs[k].db.get(), hits.bytes.data(), static_cast<unsigned>(hits.bytes.size()), 0,
                     owner_->scratch(), &LayerScan::OnGateMatch, &hits);
        if (rc != HS_SUCCESS) owner_->OnScanError(fmt::format("hs_scan failed ({})", rc));
      }
      b.bytes.clear();
      b.windows.clear();
    }
  }

  // Possible match starts of prefix_db patterns in this chunk (and in the few bytes
  // carried from the previous one), each checked once, when its kShapePrefix-th byte arrives.
  void FindPrefixes(std::string_view chunk, uint64_t base) {
    const PrefixGateConfig& c = engine_.prefix_config();
    const size_t n = chunk.size();
    if (!prefix_carry_.empty()) {
      char joint[2 * kShapePrefix];
      const size_t k = prefix_carry_.size();
      std::copy_n(prefix_carry_.data(), k, joint);
      const size_t extra = std::min(n, kShapePrefix - 1);
      std::copy_n(chunk.data(), extra, joint + k);
      for (size_t i = 0; i < k && i + kShapePrefix <= k + extra; ++i) {
        if (PrefixAt(joint + i, c)) prefix_starts_.push_back(base - k + i);
      }
    }
    size_t i = 0;
    if (n >= kShapePrefix) {
      const size_t last = n - kShapePrefix;  // last start that fits in the chunk
#if defined(__x86_64__)
      if (c.simd && n >= 32 + kShapePrefix) {
        const size_t blocks = (n - kShapePrefix) / 32;
        PrefixStartsAvx2(chunk.data(), blocks, base, c, &prefix_starts_);
        i = 32 * blocks;
      }
#endif
      for (; i + 17 <= n && i <= last; i += 16) {
        for (unsigned m = PairMask16(chunk.data() + i, c); m != 0; m &= m - 1) {
          const size_t at = i + static_cast<size_t>(__builtin_ctz(m));
          if (at <= last && PrefixAt(chunk.data() + at, c)) prefix_starts_.push_back(base + at);
        }
      }
      for (; i <= last; ++i) {
        if (PrefixAt(chunk.data() + i, c)) prefix_starts_.push_back(base + i);
      }
    }
    // Keep the last kShapePrefix - 1 bytes: the starts not checked yet.
    if (n >= kShapePrefix - 1) {
      prefix_carry_.assign(chunk.data() + n - (kShapePrefix - 1), kShapePrefix - 1);
    } else {
      prefix_carry_.append(chunk.data(), n);
      if (prefix_carry_.size() > kShapePrefix - 1) prefix_carry_.erase(0, prefix_carry_.size() - (kShapePrefix - 1));
    }
  }

  // Scans, in one block call, the window of every start whose bytes have all arrived:
  // one context byte before it (for \b), max_width bytes, and one after (for \b).
  void ScanPrefixes(std::string_view chunk, bool final) {
    const uint64_t avail = history_.end() + chunk.size();
    const uint64_t width = engine_.prefix_config().max_width;
    size_t used = 0;
    for (; used < prefix_starts_.size(); ++used) {
      const uint64_t s = prefix_starts_[used];
      const uint64_t a = s > 0 ? s - 1 : 0;
      const uint64_t b = s + width + 1;
      if (b > avail && !final) break;
      const size_t at = prefix_batch_.size();
      history_.Append(a, std::min(b, avail), chunk, &prefix_batch_);
      // Every prefixed pattern needs \b before its first (word) byte
      // (PrefixGateConfig::boundary): a start right after a word byte holds no match.
      if (s > 0 && engine_.prefix_config().boundary && IsWordByte(prefix_batch_[at])) {
        prefix_batch_.resize(at);
        continue;
      }
      prefix_windows_.push_back(PrefixWindow{at, prefix_batch_.size() - at, a, static_cast<uint32_t>(s - a)});
      prefix_batch_.push_back('\0');
    }
    prefix_starts_.erase(prefix_starts_.begin(), prefix_starts_.begin() + static_cast<std::ptrdiff_t>(used));
    if (prefix_windows_.empty()) return;
    hs_error_t rc = hs_scan(engine_.prefix_db(), prefix_batch_.data(), static_cast<unsigned>(prefix_batch_.size()), 0,
                            owner_->scratch(), &LayerScan::OnPrefixMatch, this);
    if (rc != HS_SUCCESS) owner_->OnScanError(fmt::format("hs_scan failed ({})", rc));
    prefix_batch_.clear();
    prefix_windows_.clear();
  }

  // Every prefix_db match started at some window's own start: that window reports it;
  // the others' SOM-leftmost reports for it are dropped.
  static int OnPrefixMatch(unsigned id, unsigned long long from, unsigned long long to, unsigned, void* ctx) {
    auto* self = static_cast<LayerScan*>(ctx);
    auto it = std::upper_bound(self->prefix_windows_.begin(), self->prefix_windows_.end(), from,
                               [](unsigned long long v, const PrefixWindow& w) { return v < w.at; });
    if (it == self->prefix_windows_.begin()) return 0;
    const PrefixWindow& w = *std::prev(it);
    if (from != w.at + w.start || to > w.at + w.size) return 0;
    self->Collect(id, w.base + (from - w.at), w.base + (to - w.at));
    return 0;
  }

  // Every prefix_db match ending at or before this offset has been collected.
  uint64_t PrefixSettled(uint64_t avail) const {
    const uint64_t unchecked = avail - std::min<uint64_t>(avail, prefix_carry_.size());
    return prefix_starts_.empty() ? unchecked : std::min(prefix_starts_.front(), unchecked);
  }

  // Leftmost-longest per pattern: matches arrive in end order with their leftmost start.
  void Collect(uint32_t pattern, uint64_t start, uint64_t end) {
    if (start < taken_end_[pattern]) return;  // inside a match already taken
    Pending& p = pending_[pattern];
    if (!p.live) {
      p = Pending{true, start, end};
      ++live_;
      return;
    }
    if (start <= p.start) {  // same or earlier start, later end: the longer match
      p.start = start;
      p.end = std::max(p.end, end);
      return;
    }
    if (start < p.end) return;  // overlaps the pending match, which starts first
    completed_.push_back(RawMatch{pattern, p.start, p.end});
    taken_end_[pattern] = p.end;
    p = Pending{true, start, end};
  }

  uint32_t WindowAfter(uint32_t pattern) const {
    const CompiledRule& r = engine_.rules()[engine_.patterns()[pattern].rule];
    return std::max(r.window_after, r.neighbor_bytes);
  }

  void Drain(std::string_view chunk, bool final) {
    const uint64_t avail = history_.end() + chunk.size();
    // Gated matches of an open digit run are reported late: judge them by what the gate
    // has settled, or a match could be closed before its own extension arrives.
    const uint64_t gate_settled = gate_ ? gate_->settled(avail) : avail;
    const uint64_t prefix_settled = prefix_ ? PrefixSettled(avail) : avail;
    // Most calls find no pending match at all: skip the walk over every pattern.
    for (uint32_t i = 0; live_ > 0 && i < pending_.size(); ++i) {
      Pending& p = pending_[i];
      const CompiledPattern& cp = engine_.patterns()[i];
      const uint64_t limit = cp.gated ? gate_settled : cp.prefixed ? prefix_settled : avail;
      if (p.live && (final || p.end + WindowAfter(i) + kPendingSlack <= limit)) {
        completed_.push_back(RawMatch{i, p.start, p.end});
        taken_end_[i] = p.end;
        p.live = false;
        --live_;
      }
    }
    size_t keep = 0;
    ready_.clear();
    for (size_t i = 0; i < completed_.size(); ++i) {
      const RawMatch m = completed_[i];
      if (final || m.end + WindowAfter(m.pattern) <= avail) {
        ready_.push_back(m);
      } else {
        completed_[keep++] = m;
      }
    }
    completed_.resize(keep);
    // In the order they lie in: the stream database, the prefix test and the digit gate
    // each report a whole chunk's matches in turn, and the owner's overlap resolution and
    // record counting look at a window of recent spans.
    if (ready_.size() > 1) {
      std::sort(ready_.begin(), ready_.end(),
                [](const RawMatch& a, const RawMatch& b) { return a.start != b.start ? a.start < b.start : a.end < b.end; });
    }
    for (const RawMatch& m : ready_) Evaluate(m, chunk);
  }

  // A delimited export says what its values are once, in its header line; the rows far
  // below it have no keyword near them. The first line of the layer (of each document of
  // it) is kept while it arrives; when it is a header that names a keyword of a rule that
  // requires one, a value's column name counts as context (ColumnName), and the digit
  // gate looks at keyed classes everywhere in the document.
  void TakeHeader(std::string_view chunk, uint64_t base) {
    const size_t nl = chunk.find('\n');
    const size_t take = nl == std::string_view::npos ? chunk.size() : nl;
    if (header_line_.size() + take > kMaxHeaderLine) {
      header_open_ = false;
      header_line_.clear();
      return;
    }
    header_line_.append(chunk.data(), take);
    if (nl == std::string_view::npos) return;
    header_open_ = false;
    header_end_ = base + nl + 1;
    // The same application sends the same header message after message: decided once.
    if (header_line_ != last_header_) {
      last_header_.swap(header_line_);
      last_columns_ = DecideHeader(last_header_);
    }
    header_line_.clear();
    if (!last_columns_) return;
    columns_ = last_columns_;
    gate_keywords_.keyed_classes = 0;  // every row may hold a keyed value
  }

  // The header's columns (lower-case) when `line` is a delimited header that names a
  // keyword of a rule that requires one (only those rules miss rows far from the header;
  // the others are found there anyway).
  std::optional<CsvHeaderLine> DecideHeader(const std::string& line) const {
    if (required_keywords_.empty()) return std::nullopt;
    // Split first: most first lines that are no header (JSON, HTML, logs) are refused at
    // their first bytes there.
    auto header = SplitCsvHeader(line);
    if (!header) return std::nullopt;
    for (std::string& column : header->columns) {
      for (char& c : column) {
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
      }
    }
    for (const std::string& column : header->columns) {
      if (std::any_of(column.begin(), column.end(), [](char c) {
            return (static_cast<unsigned char>(c) < 0x20 && c != '\t' && c != '\r') || c == 0x7f;
          })) {
        return std::nullopt;  // a header line is text, not a binary prefix
      }
      for (const std::string& kw : required_keywords_) {
        if (column.find(kw) != std::string::npos) return header;
      }
    }
    return std::nullopt;
  }

  void ForgetHeader(uint64_t at) {
    header_open_ = true;
    header_line_.clear();
    header_end_ = at;
    columns_.reset();
    gate_keywords_.keyed_classes = keyed_classes_;
  }

  // The header's name of the column the byte at `at` lies in, when the layer's document
  // has a header that names a keyword and `at` lies on a row within kColumnLookback
  // bytes of its line start; else null.
  const std::string* ColumnName(uint64_t at, std::string_view chunk) {
    if (!columns_ || at < header_end_) return nullptr;
    // Most rows are short: 256 bytes back find the line start; all of kColumnLookback
    // only when they do not (a cost paid per keyword-rule candidate of such a table).
    std::string_view line;
    for (const uint64_t lookback : {kColumnShortLookback, kColumnLookback}) {
      const uint64_t from = std::max(header_end_, at - std::min<uint64_t>(at, lookback));
      history_.Copy(from, at, chunk, &column_buf_);
      const size_t nl = column_buf_.rfind('\n');
      if (nl != std::string::npos) {
        line = std::string_view(column_buf_).substr(nl + 1);
        break;
      }
      if (at - column_buf_.size() == header_end_) {  // the first row: it starts at the header's end
        line = column_buf_;
        break;
      }
      if (lookback == kColumnLookback) return nullptr;  // line start too far back
    }
    const size_t column = CsvColumnOf(line, columns_->delimiter);
    return column < columns_->columns.size() ? &columns_->columns[column] : nullptr;
  }

  void Evaluate(const RawMatch& m, std::string_view chunk) {
    const uint32_t rule_index = engine_.patterns()[m.pattern].rule;
    const CompiledRule& rule = engine_.rules()[rule_index];
    history_.Copy(m.start, std::min(m.end, m.start + kMaxValueBytes), chunk, &value_);
    if (rule.neighbor_bytes > 0) {
      // A card window read out of a longer identifier (an IBAN, a '+' phone number, a
      // longer group sequence) is no card, whatever its Luhn says; a '+' glued to a word
      // starts no international number.
      history_.Copy(m.start - std::min<uint64_t>(m.start, rule.neighbor_bytes), m.start, chunk, &before_);
      history_.Copy(m.end, m.end + rule.neighbor_bytes, chunk, &after_);
      if (rule.in_longer_token(before_, value_, after_)) return;
    }
    before_.clear();
    after_.clear();
    if (!rule.keywords.empty()) {
      history_.Copy(m.start - std::min<uint64_t>(m.start, rule.window_before), m.start, chunk, &before_);
      history_.Copy(m.end, m.end + rule.window_after, chunk, &after_);
      // The name of the value's column is context like the words before it.
      if (const std::string* name = ColumnName(m.start, chunk)) before_.insert(0, *name + "\n");
    }
    auto [orig_start, orig_end] = ToOriginal(m.start, m.end);
    owner_->OnCandidate(layer_, rule_index, value_, before_, after_, orig_start, orig_end,
                        CandidatePlace{m.start, m.end, this, chunk});
  }

 public:
  // The layer offset where the record holding the byte at `at` starts: the element of a
  // JSON array (after "[", "},", "}" + blank), the tuple of an SQL row (after "VALUES" or
  // "),"), else the line. A pretty-printed object spans lines, so an array element found
  // within the look-back wins over a nearer newline. Without either within
  // kRecordLookback bytes: the look-back's start, rounded so neighbours share it.
  // `chunk`: the bytes fed after the history, as in Evaluate.
  uint64_t RecordStart(uint64_t at, std::string_view chunk) const {
    // Most records are short lines: 256 bytes back decide; all of kRecordLookback only
    // when they do not (a cost paid per accepted PII value).
    uint64_t found = UINT64_MAX;
    if (at > kRecordShortLookback && RecordStartIn(at, kRecordShortLookback, chunk, /*last=*/false, &found)) return found;
    RecordStartIn(at, kRecordLookback, chunk, /*last=*/true, &found);
    return found;
  }

 private:
  // RecordStart over `lookback` bytes before `at`: false when they do not decide (not
  // `last`, and the answer may lie further back).
  bool RecordStartIn(uint64_t at, uint64_t lookback, std::string_view chunk, bool last, uint64_t* out) const {
    const uint64_t from = at - std::min<uint64_t>(at, lookback);
    history_.Copy(from, at, chunk, &record_buf_);
    const std::string& b = record_buf_;
    const uint64_t base = at - b.size();  // the history may hold fewer bytes
    bool undecided = false;  // a look back reached the buffer's start
    auto prev_non_blank = [&](size_t i) -> int {  // index of the last non-blank byte before i, or -1
      while (i > 0) {
        const char c = b[i - 1];
        if (c != ' ' && c != '\t' && c != '\r' && c != '\n') return static_cast<int>(i - 1);
        --i;
      }
      if (base != 0) undecided = true;
      return -1;
    };
    auto done = [&](uint64_t v) {
      if (undecided && !last) return false;
      *out = v;
      return true;
    };
    uint64_t newline = UINT64_MAX;
    for (size_t i = b.size(); i > 0; --i) {
      const char c = b[i - 1];
      if (c == '\n') {
        if (newline != UINT64_MAX) continue;
        newline = base + i;
        // When the line before the value's line does not end inside a structure (',',
        // '{', '[', '(' before the newline, as pretty-printed JSON and multi-line
        // statements do), the value's line is the record (a CSV row, a log line): no
        // need to read further back.
        const int p = prev_non_blank(i - 1);
        if (p < 0 || (b[p] != ',' && b[p] != '{' && b[p] != '[' && b[p] != '(')) return done(newline);
        continue;
      }
      if (c != '{' && c != '(') continue;
      const int p = prev_non_blank(i - 1);
      if (p < 0) {
        if (base == 0) return done(base + i - 1);  // the layer's first object or tuple
        continue;
      }
      if (c == '{') {
        if (b[p] == '[' || b[p] == '}') return done(base + i - 1);
        if (b[p] == ',') {
          const int q = prev_non_blank(static_cast<size_t>(p));
          if (q >= 0 && b[q] == '}') return done(base + i - 1);
        }
      } else {
        if (b[p] == ',') {
          const int q = prev_non_blank(static_cast<size_t>(p));
          if (q >= 0 && b[q] == ')') return done(base + i - 1);
        } else if (p >= 5 && (b[p] == 's' || b[p] == 'S')) {
          std::string_view w(b.data() + p - 5, 6);
          if (w == "VALUES" || w == "values") return done(base + i - 1);
        }
      }
    }
    if (!last && base != 0) return false;
    *out = newline != UINT64_MAX ? newline : base == 0 ? 0 : at - at % kRecordLookback;
    return true;
  }

 private:

  std::pair<uint64_t, uint64_t> ToOriginal(uint64_t start, uint64_t end) const {
    if (layer_ == 0 || segments_.empty()) return {start, end};
    auto containing = [this](uint64_t pos) -> const Segment& {
      auto it = std::upper_bound(segments_.begin(), segments_.end(), pos,
                                 [](uint64_t v, const Segment& s) { return v < s.layer_begin; });
      return it == segments_.begin() ? segments_.front() : *std::prev(it);
    };
    // Conservative: the whole segment, unless it maps byte for byte.
    const Segment& first = containing(start);
    const Segment& last = containing(end > start ? end - 1 : start);
    uint64_t os = first.orig_begin;
    if (first.linear && start >= first.layer_begin && start < first.layer_end) {
      os = first.orig_begin + (start - first.layer_begin);
    }
    uint64_t oe = last.orig_end;
    if (last.linear && end > last.layer_begin && end <= last.layer_end) {
      oe = last.orig_begin + (end - last.layer_begin);
    }
    return {os, std::max(os, oe)};
  }

  MessageScanImpl* owner_;
  const HyperscanEngine& engine_;
  const uint32_t layer_;
  hs_stream_t* stream_ = nullptr;
  bool stream_fresh_ = true;  // nothing scanned since the stream was opened or reset
  uint64_t stream_base_ = 0;  // layer offset where the stream was last reset (a document end)
  std::unique_ptr<DigitGate> gate_;
  struct GateBatch {
    LayerScan* owner;
    std::string bytes;
    std::vector<BatchWindow> windows;
    std::vector<char> hit;  // per window: the probe saw a match end in it
    size_t last_hit = SIZE_MAX;
  };
  std::vector<GateBatch> gate_batches_;  // one per engine gated_dbs() entry
  GateBatch hit_batch_{this, {}, {}, {}, SIZE_MAX};  // the windows the probe marked
  static void ClearBatch(GateBatch* b) {
    b->bytes.clear();
    b->windows.clear();
    b->hit.clear();
    b->last_hit = SIZE_MAX;
  }
  std::vector<uint64_t> keyword_ends_;    // ends of keyed-rule keywords, ascending
  GateKeywords gate_keywords_;            // keyed classes, their window, keyword_ends_
  bool prefix_ = false;
  std::string prefix_carry_;
  std::vector<uint64_t> prefix_starts_;
  std::string prefix_batch_;
  std::vector<PrefixWindow> prefix_windows_;
  History history_;
  std::vector<Pending> pending_;
  size_t live_ = 0;  // entries of pending_ with live set
  std::vector<uint64_t> taken_end_;
  std::vector<RawMatch> completed_;
  std::vector<RawMatch> ready_;  // Drain's matches to evaluate now
  std::deque<Segment> segments_;
  bool segments_dropped_ = false;  // segments_ lost its oldest entries (kMaxSegments)
  std::string decoded_;  // decoded bytes not scanned yet (see FeedSegment)
  size_t decoded_segments_ = 0;
  bool finished_ = false;
  std::string value_, before_, after_;
  mutable std::string record_buf_;
  static constexpr size_t kMaxHeaderLine = 4096;
  static constexpr uint64_t kColumnShortLookback = 256;
  static constexpr uint64_t kColumnLookback = 2048;
  bool header_open_ = true;  // the first line of the layer's document is still arriving
  std::string header_line_;
  uint64_t header_end_ = 0;                // layer offset just past the header line
  std::optional<CsvHeaderLine> columns_;   // lower-case; only when one names a keyword
  std::string last_header_;                // the last header line decided, and its decision
  std::optional<CsvHeaderLine> last_columns_;
  std::vector<std::string> required_keywords_;  // of the rules that require a keyword
  std::string column_buf_;
  uint32_t keyed_classes_ = 0;             // the engine's, while no header names a keyword
};

uint64_t RecordStartOf(const CandidatePlace& place) {
  return place.scan != nullptr ? place.scan->RecordStart(place.layer_start, place.chunk) : place.layer_start;
}

MessageScanImpl::MessageScanImpl(std::shared_ptr<const HyperscanEngine> engine, hs_scratch_t* const* scratch,
                                 const ContentHint& hint)
    : engine_(std::move(engine)), scratch_(scratch), states_(engine_->rules().size()),
      csv_(&engine_->csv_keywords()) {
  layers_.push_back(std::make_unique<LayerScan>(this, 0));
  decoder_ = MakeDecodeHook(hint, engine_->options(), *this);
}

MessageScanImpl::~MessageScanImpl() = default;

bool MessageScanImpl::Recycle() {
  if (!scan_error_.empty()) return false;  // e.g. a stream that failed to open: start afresh
  // The decoder tree first: it may still report into the layers while it is destroyed.
  decoder_.reset();
  for (uint32_t i = 0; i < layers_.size(); ++i) {
    if ((active_layers_ >> i) & 1u) layers_[i]->Reset();
  }
  active_layers_ = 1;
  for (RuleState& st : states_) {
    st.count = 0;
    ClearDistinct(&st.seen);
    st.boosted = false;
    st.have_first = false;
    st.first_start = st.first_end = 0;
    st.evidence.clear();
    st.fingerprint.clear();
    st.member.clear();
    st.spans.clear();
    st.span_at.clear();
    st.spans_truncated = false;
  }
  ClearDistinct(&bulk_seen_);
  bulk_overflow_ = 0;
  for (auto& r : recent_) r.clear();
  // As ClearDistinct: clear() wipes the bucket array even when empty (most messages).
  if (counted_records_.bucket_count() > 1024) {
    std::unordered_set<uint64_t>().swap(counted_records_);
  } else if (!counted_records_.empty()) {
    counted_records_.clear();
  }
  records_ = 0;
  layer_records_.clear();
  ClearDistinct(&record_values_);
  record_categories_.clear();
  bulk_first_ = UINT64_MAX;
  decode_stopped_ = false;
  csv_.Reset();
  undecodable_.Clear();
  encrypted_.Clear();
  layer_member_.clear();
  for (MemberCsv& m : member_csv_) {  // detectors kept for reuse
    m.member.clear();
    m.open = false;
  }
  member_rows_ = 0;
  member_rows_columns_.clear();
  member_rows_member_.clear();
  total_bytes_ = 0;
  so_far_ = rules::v1::ALLOW;
  finished_ = false;
  result_ = MessageResult{};
  return true;
}

void MessageScanImpl::Reopen(const ContentHint& hint) { decoder_ = MakeDecodeHook(hint, engine_->options(), *this); }

void MessageScanImpl::ClearDistinct(std::unordered_set<std::string>* seen) {
  // A set that grew for a big message gives its buckets back rather than parking them.
  if (seen->empty()) return;  // clear() would still wipe the bucket array
  if (seen->bucket_count() > 1024) {
    std::unordered_set<std::string>().swap(*seen);
  } else {
    seen->clear();
  }
}

LayerScan* MessageScanImpl::Layer(uint32_t layer) {
  if (layer >= kMaxLayers) return nullptr;
  if (layers_.size() <= layer) layers_.resize(layer + 1);
  if (!layers_[layer]) layers_[layer] = std::make_unique<LayerScan>(this, layer);
  active_layers_ |= 1u << layer;
  return layers_[layer].get();
}

void MessageScanImpl::Feed(std::string_view chunk) {
  if (finished_ || chunk.empty()) return;
  layers_[0]->Feed(chunk);
  csv_.Feed(chunk);
  total_bytes_ += chunk.size();
  if (decoder_) {
    decoder_->Feed(chunk);
    // Once decoding stops for good (a limit), the decoded layers' open documents end
    // here: nothing more will come to complete what they hold, nor to decide it.
    const bool stopped = !decode_stopped_ && decoder_->stopped();
    decode_stopped_ = decode_stopped_ || stopped;
    for (size_t i = 1; i < layers_.size(); ++i) {
      if (!((active_layers_ >> i) & 1u)) continue;
      if (stopped) {
        layers_[i]->EndDocument();
      } else {
        layers_[i]->FlushDecoded();
      }
    }
  }
  UpdateSoFar();
}

uint64_t MessageScanImpl::decided_offset() const {
  if (finished_) return total_bytes_;
  uint64_t decided = total_bytes_;
  for (size_t i = 0; i < layers_.size(); ++i) {
    if ((active_layers_ >> i) & 1u) decided = std::min(decided, layers_[i]->UndecidedOrigin());
  }
  if (decoder_) decided = std::min(decided, decoder_->held_from());
  return decided;
}

uint64_t MessageScanImpl::threshold_from() const {
  if (finished_) return UINT64_MAX;
  uint64_t from = UINT64_MAX;
  const auto& rules = engine_->rules();
  for (size_t i = 0; i < rules.size(); ++i) {
    const RuleState& st = states_[i];
    if (rules[i].action == rules::v1::BLOCK && st.count > 0 && st.count < rules[i].min_count) {
      from = std::min(from, st.first_start);
    }
  }
  // Matches still in the window of recent spans count toward their rule and bulk_pii.
  for (const auto& recent : recent_) {
    for (const Accepted& a : recent) {
      const CompiledRule& r = rules[a.rule];
      if ((r.action == rules::v1::BLOCK && r.min_count > 1) || (r.pii && engine_->bulk_rule().action == rules::v1::BLOCK)) {
        from = std::min(from, a.orig_start);
      }
    }
  }
  if (engine_->bulk_rule().action == rules::v1::BLOCK) {
    from = std::min(from, bulk_first_);
    if (csv_.is_pii_csv()) from = 0;  // the header is the message's first line
    // A member CSV's header lies somewhere before its rows: hold from the start.
    for (const MemberCsv& m : member_csv_) {
      if (m.open && m.csv->is_pii_csv()) from = 0;
    }
  }
  return from;
}

void MessageScanImpl::OnDecoded(uint32_t layer, std::string_view bytes, uint64_t orig_begin, uint64_t orig_end,
                                bool linear) {
  if (layer == 0) return;  // layer 0 is the raw message, scanned already
  if (LayerScan* l = Layer(layer)) l->FeedSegment(bytes, orig_begin, orig_end, linear);
  // Every decoded document is read for a CSV header, not only container members: a
  // UTF-16 export or a gzipped CSV is a table whose header the raw layer cannot see, and
  // a header naming PII columns makes its rows count (names and birth dates validate as
  // nothing). Documents end at OnDocumentEnd, members at OnMember.
  if (layer >= kMaxLayers) return;
  if (member_csv_.size() <= layer) member_csv_.resize(layer + 1);
  MemberCsv& m = member_csv_[layer];
  // The "\n" a layer sends between two of its documents is not the next one's header.
  if (!m.open && bytes == "\n") return;
  if (!m.open) {
    if (!m.csv) m.csv = std::make_unique<CsvHeaderDetector>(&engine_->csv_keywords());
    m.csv->Reset();
    m.member = layer < layer_member_.size() ? layer_member_[layer] : std::string();
    m.open = true;
  }
  m.csv->Feed(bytes);
}

void MessageScanImpl::OnMember(uint32_t layer, std::string_view path) {
  if (layer == 0 || layer >= kMaxLayers) return;
  CloseMemberCsv(layer);
  if (layer_member_.size() <= layer) layer_member_.resize(layer + 1);
  layer_member_[layer] = std::string(path);
}

void MessageScanImpl::CloseMemberCsv(uint32_t layer) {
  if (layer >= member_csv_.size() || !member_csv_[layer].open) return;
  MemberCsv& m = member_csv_[layer];
  m.csv->Finish();
  if (m.csv->is_pii_csv() && m.csv->rows() > member_rows_) {
    member_rows_ = m.csv->rows();
    member_rows_columns_ = m.csv->pii_columns();
    member_rows_member_ = m.member;
  }
  m.member.clear();
  m.open = false;
}

uint64_t MessageScanImpl::MemberRows() const {
  uint64_t rows = member_rows_;
  for (const MemberCsv& m : member_csv_) {
    if (m.open && m.csv->is_pii_csv()) rows = std::max(rows, m.csv->rows());
  }
  return rows;
}

void MessageScanImpl::OnEncrypted(uint64_t orig_begin, uint64_t orig_end, std::string_view member,
                                  std::string_view what) {
  encrypted_.Note(orig_begin, orig_end, what, member);
  so_far_ = Stronger(so_far_, engine_->encrypted_rule().action);
}

void MessageScanImpl::OnDocumentEnd(uint32_t layer) {
  CloseMemberCsv(layer);
  if (layer == 0 || layer >= layers_.size() || !((active_layers_ >> layer) & 1u) || !layers_[layer]) return;
  layers_[layer]->EndDocument();
}

void MessageScanImpl::OnUndecodable(uint64_t orig_begin, uint64_t orig_end, std::string_view why) {
  undecodable_.Note(orig_begin, orig_end, why, {});
  so_far_ = Stronger(so_far_, engine_->undecodable_rule().action);
}

void MessageScanImpl::Reported::Note(uint64_t orig_begin, uint64_t orig_end, std::string_view reason,
                                     std::string_view in_member) {
  if (count++ > 0) return;
  start = orig_begin;
  end = std::max(orig_begin, orig_end);
  why = std::string(reason.substr(0, 200));
  member = std::string(in_member.substr(0, 512));
}

void MessageScanImpl::Reported::AddFinding(const MessageRule& rule, MessageResult* r) const {
  if (count == 0) return;
  v1::Finding f;
  f.set_rule_id(rule.id);
  f.set_category(rule.category);
  f.set_count(count);
  f.set_start(start);
  f.set_end(end);
  f.set_evidence(why);
  f.set_member(member);
  f.set_action(rule.action);
  f.set_severity(rule.severity);
  r->findings.push_back(std::move(f));
}

void MessageScanImpl::OnScanError(std::string_view what) {
  if (scan_error_.empty()) scan_error_ = std::string(what);
  so_far_ = rules::v1::BLOCK;  // a scan we cannot finish fails closed
}

bool MessageScanImpl::KeywordNear(const CompiledRule& rule, std::string_view before, std::string_view after) const {
  std::string window;
  window.reserve(before.size() + after.size() + 1);
  window.append(before);
  window.push_back('\n');
  window.append(after);
  for (char& c : window) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
  }
  return std::any_of(rule.keywords.begin(), rule.keywords.end(),
                     [&](const std::string& kw) { return window.find(kw) != std::string::npos; });
}

bool MessageScanImpl::Excluded(const CompiledRule& rule, std::string_view value, const std::string& normalized) const {
  if (rule.literal_exclusions.count(normalized) != 0) return true;
  if (!rule.exclusion_db) return false;
  bool hit = false;
  auto on_match = [](unsigned, unsigned long long, unsigned long long, unsigned, void* ctx) -> int {
    *static_cast<bool*>(ctx) = true;
    return 1;  // one is enough
  };
  for (std::string_view v : {value, std::string_view(normalized)}) {
    hs_scan(rule.exclusion_db.get(), v.data(), static_cast<unsigned>(v.size()), 0, scratch(), on_match, &hit);
    if (hit) return true;
  }
  return false;
}

void MessageScanImpl::OnCandidate(uint32_t layer, uint32_t rule_index, std::string_view value, std::string_view before,
                                  std::string_view after, uint64_t orig_start, uint64_t orig_end,
                                  const CandidatePlace& place) {
  const CompiledRule& rule = engine_->rules()[rule_index];
  // Cheapest test first: a keyword search over two short windows costs far less than
  // some validators (libphonenumber parses with ICU regexes).
  bool boosted = false;
  if (!rule.keywords.empty()) {
    const bool near = KeywordNear(rule, before, after);
    switch (rule.effect) {
      case rules::v1::Context::REQUIRE:
        if (!near) return;
        break;
      case rules::v1::Context::SUPPRESS:
        if (near) return;
        break;
      default:
        boosted = near;
        break;
    }
  }
  if (rule.validator != nullptr && !rule.validator(value)) return;
  std::string normalized = NormalizeValue(rule.category, value);
  if (Excluded(rule, value, normalized)) return;

  Accepted a;
  a.rule = rule_index;
  a.boosted = boosted;
  a.layer_start = place.layer_start;
  a.layer_end = place.layer_end;
  a.orig_start = orig_start;
  a.orig_end = orig_end;
  a.normalized = std::move(normalized);
  a.value.assign(value);  // redacted at Commit, where it is needed (most values are not)
  if (layer < layer_member_.size()) a.member = layer_member_[layer];
  if (rule.count_matches) {  // a dump is the whole message: every match counts, none overlaps
    Commit(layer, std::move(a));
    return;
  }
  if (rule.pii) a.record = RecordStartOf(place);
  // Each span of a layer belongs to one finding: the match that beats every match it
  // overlaps takes the span from them; one that loses to any is dropped. (A match taken
  // over by a winner that a later, better match replaces is not brought back; such
  // three-way overlaps do not occur with the shipped patterns.)
  if (recent_.size() <= layer) recent_.resize(layer + 1);
  std::vector<Accepted>& recent = recent_[layer];
  for (const Accepted& r : recent) {
    if (r.layer_start < a.layer_end && a.layer_start < r.layer_end && Beats(r, a)) return;
  }
  std::erase_if(recent, [&](const Accepted& r) { return r.layer_start < a.layer_end && a.layer_start < r.layer_end; });
  // The action is raised now, not when the match is counted: the bytes it decides may
  // leave meanwhile. (A span taken over later leaves it raised: only a more specific
  // rule's match takes a span, and the shipped ones block at least as strongly.)
  if (rule.min_count <= 1) so_far_ = Stronger(so_far_, rule.action);
  const uint64_t newest = a.layer_start;
  recent.push_back(std::move(a));
  // What no later match can overlap any more is counted now.
  size_t old = 0;
  while (old < recent.size() && recent[old].layer_end + kRecentBytes < newest) ++old;
  CommitRecent(layer, std::min(recent.size() - old, kRecentSpans));
}

bool MessageScanImpl::Beats(const Accepted& a, const Accepted& b) const {
  const CompiledRule& ra = engine_->rules()[a.rule];
  const CompiledRule& rb = engine_->rules()[b.rule];
  if (ra.specificity != rb.specificity) return ra.specificity > rb.specificity;
  const uint64_t la = a.layer_end - a.layer_start, lb = b.layer_end - b.layer_start;
  if (la != lb) return la > lb;
  if (a.layer_start != b.layer_start) return a.layer_start < b.layer_start;
  return a.rule < b.rule;
}

void MessageScanImpl::CommitRecent(uint32_t layer, size_t keep) {
  if (layer >= recent_.size()) return;
  std::vector<Accepted>& recent = recent_[layer];
  if (recent.size() <= keep) return;
  const size_t n = recent.size() - keep;
  for (size_t i = 0; i < n; ++i) Commit(layer, std::move(recent[i]));
  recent.erase(recent.begin(), recent.begin() + static_cast<std::ptrdiff_t>(n));
}

void MessageScanImpl::Commit(uint32_t layer, Accepted&& a) {
  const CompiledRule& rule = engine_->rules()[a.rule];
  if (spans_.size() < MessageResult::kMaxMatchedSpans) {
    spans_.push_back({a.orig_start, a.orig_end, Redact(rule.category, a.value)});
  }
  RuleState& st = states_[a.rule];
  const Digest digest = HmacSha256(engine_->dedup_key(), a.normalized);
  const std::string key(reinterpret_cast<const char*>(digest.data()), 16);
  if (rule.count_matches || st.seen.size() >= kMaxDistinct) {
    ++st.count;
  } else if (st.seen.insert(key).second) {
    ++st.count;
  }
  RecordSpan(st, rule, a.value, a.normalized, key, a.orig_start, a.orig_end, a.member);  // a counted occurrence
  st.boosted = st.boosted || a.boosted;
  if (st.have_first && st.member.empty() && !a.member.empty() && a.orig_start < st.first_end &&
      st.first_start < a.orig_end) {
    // The same bytes seen again inside a container member (a stored member is also
    // raw bytes, a tar's data also the gzip layer's output): the member names where
    // they lie, which the outer view cannot.
    st.member = a.member;
  }
  if (!st.have_first || a.orig_start < st.first_start) {
    st.have_first = true;
    st.first_start = a.orig_start;
    st.first_end = a.orig_end;
    st.member = std::move(a.member);
    st.evidence = Redact(rule.category, a.value);
    st.fingerprint = engine_->options().fingerprint_key.empty()
                         ? std::string()
                         : HexDigest(HmacSha256(engine_->options().fingerprint_key, a.normalized));
  }
  if (rule.pii) {
    bulk_first_ = std::min(bulk_first_, a.orig_start);
    // Fresh per layer: each layer shows its own records (a spreadsheet's XML is one long
    // line, its text layer one row per line), and the one with the most decides.
    bool fresh = true;
    const Digest bd = HmacSha256(engine_->dedup_key(), rule.category + '\0' + a.normalized);
    std::string key(reinterpret_cast<const char*>(bd.data()), 16);
    if (bulk_seen_.size() >= kMaxDistinct) {
      ++bulk_overflow_;
    } else {
      bulk_seen_.insert(key);
    }
    key[0] = static_cast<char>(key[0] ^ static_cast<char>(layer));
    if (record_values_.size() < kMaxDistinct) fresh = record_values_.insert(std::move(key)).second;
    NoteRecord(layer, a.record, rule.category, fresh);
  }
  if (st.count >= rule.min_count) so_far_ = Stronger(so_far_, rule.action);
}

void MessageScanImpl::NoteRecord(uint32_t layer, uint64_t record, const std::string& category, bool fresh) {
  // A record counts once, and only with a value no earlier record held: a log that
  // repeats one person's address on every line is one record, a page that repeats a
  // customer's e-mail in an "updated_by" field adds nobody.
  if (!fresh) return;
  if (std::find(record_categories_.begin(), record_categories_.end(), category) == record_categories_.end()) {
    record_categories_.push_back(category);
  }
  // Record starts are layer offsets; kMaxLayers (16) fits in the low bits.
  const uint64_t id = record * kMaxLayers + layer;
  if (counted_records_.size() < kMaxDistinct && !counted_records_.insert(id).second) return;
  if (layer_records_.size() <= layer) layer_records_.resize(layer + 1);
  records_ = std::max(records_, ++layer_records_[layer]);
}

void MessageScanImpl::RecordSpan(RuleState& st, const CompiledRule& rule, std::string_view value,
                                 const std::string& normalized, const std::string& key, uint64_t orig_start,
                                 uint64_t orig_end, const std::string& member_path) {
  const uint32_t limit = engine_->options().max_finding_spans;
  if (limit == 0) return;  // no spans asked for: none collected, none said missing
  const std::string* member = member_path.empty() ? nullptr : &member_path;
  // The same value recorded last before this end: if it overlaps, these are the same bytes
  // seen again through another layer (raw and a stored member, raw and a JSON string), one
  // occurrence; a member view names where it lies.
  auto it = st.span_at.lower_bound({key, orig_end});
  if (it != st.span_at.begin()) {
    auto prev = std::prev(it);
    v1::FindingSpan& seen = st.spans[prev->second];
    if (prev->first.first == key && seen.end() > orig_start) {
      if (seen.member().empty() && member != nullptr) seen.set_member(*member);
      return;
    }
  }
  if (st.spans.size() >= limit) {
    st.spans_truncated = true;
    return;
  }
  v1::FindingSpan& span = st.spans.emplace_back();
  span.set_start(orig_start);
  span.set_end(orig_end);
  span.set_evidence(Redact(rule.category, value));
  if (member != nullptr) span.set_member(*member);
  if (!engine_->options().fingerprint_key.empty()) {
    span.set_fingerprint(HexDigest(HmacSha256(engine_->options().fingerprint_key, normalized)));
  }
  st.span_at.emplace(std::make_pair(key, orig_start), static_cast<uint32_t>(st.spans.size() - 1));
}

void MessageScanImpl::UpdateSoFar() {
  const uint64_t threshold = engine_->bulk_threshold();
  const uint64_t min_records = engine_->bulk_min_records();
  if ((threshold > 0 && bulk_seen_.size() + bulk_overflow_ >= threshold) || records_ >= min_records ||
      (csv_.is_pii_csv() && csv_.rows() >= min_records) || MemberRows() >= min_records) {
    so_far_ = Stronger(so_far_, engine_->bulk_rule().action);
  }
}

MessageResult MessageScanImpl::Finish() {
  if (finished_) return result_;
  if (decoder_) decoder_->Finish();
  for (size_t i = 0; i < layers_.size(); ++i) {
    if ((active_layers_ >> i) & 1u) layers_[i]->Finish();
  }
  for (uint32_t i = 0; i < recent_.size(); ++i) CommitRecent(i, 0);
  csv_.Finish();
  for (uint32_t i = 0; i < member_csv_.size(); ++i) CloseMemberCsv(i);
  finished_ = true;

  MessageResult r;
  r.bytes_scanned = total_bytes_;
  r.spans = std::move(spans_);
  const auto& rules = engine_->rules();
  for (size_t i = 0; i < rules.size(); ++i) {
    RuleState& st = states_[i];
    const CompiledRule& rule = rules[i];
    if (st.count == 0 || st.count < rule.min_count) continue;
    v1::Finding f;
    f.set_rule_id(rule.id);
    f.set_category(rule.category);
    f.set_count(st.count);
    if (rule.count_matches) {  // a dump is the whole message
      f.set_start(0);
      f.set_end(total_bytes_);
    } else {
      f.set_start(st.first_start);
      f.set_end(st.first_end);
    }
    f.set_evidence(st.evidence);
    f.set_fingerprint(st.fingerprint);
    if (!rule.count_matches) f.set_member(st.member);
    std::stable_sort(st.spans.begin(), st.spans.end(), [](const v1::FindingSpan& a, const v1::FindingSpan& b) {
      return a.start() != b.start() ? a.start() < b.start() : a.end() < b.end();
    });
    for (v1::FindingSpan& span : st.spans) *f.add_spans() = std::move(span);
    f.set_spans_truncated(st.spans_truncated);
    f.set_action(rule.action);
    int sev = static_cast<int>(rule.severity) + (st.boosted ? 1 : 0);
    f.set_severity(static_cast<rules::v1::Severity>(std::min(sev, static_cast<int>(rules::v1::CRITICAL))));
    r.findings.push_back(std::move(f));
  }

  // A dump's banner is db_schema only when no table rows came with it: a full dump is
  // one db_dump finding, not a db_dump and a db_schema one for the same message.
  if (std::any_of(r.findings.begin(), r.findings.end(), [](const v1::Finding& f) { return f.category() == "db_dump"; })) {
    std::erase_if(r.findings, [](const v1::Finding& f) { return f.category() == "db_schema"; });
  }

  // bulk_pii counts people: records (rows, array objects, SQL rows, log lines) that
  // bring a new PII value, or the rows of a CSV whose header names PII columns (their
  // cells need not validate: names, birth dates); a distinct-value count decides only
  // where the pack asks for one (bulk_pii_threshold).
  const uint64_t threshold = engine_->bulk_threshold();
  const uint64_t min_records = engine_->bulk_min_records();
  const uint64_t distinct = bulk_seen_.size() + bulk_overflow_;
  const uint64_t raw_rows = csv_.is_pii_csv() ? csv_.rows() : 0;
  const bool member_decides = member_rows_ > raw_rows;
  const uint64_t rows = std::max(raw_rows, member_rows_);
  const bool by_rows = rows >= min_records && rows >= records_;
  const bool by_records = !by_rows && records_ >= min_records;
  if (by_rows || by_records || (threshold > 0 && distinct >= threshold)) {
    const MessageRule& br = engine_->bulk_rule();
    v1::Finding f;
    f.set_rule_id(br.id);
    f.set_category(br.category);
    f.set_count(by_rows ? rows : by_records ? records_ : distinct);
    f.set_start(0);
    f.set_end(total_bytes_);
    std::vector<std::string> cats = record_categories_;
    std::sort(cats.begin(), cats.end());
    f.set_evidence(by_rows      ? fmt::format("CSV with {} records of people: {}", rows,
                                              member_decides ? member_rows_columns_ : csv_.pii_columns())
                   : by_records ? fmt::format("{}{} records of people: {}", csv_.is_pii_csv() ? "CSV with " : "",
                                              records_, fmt::join(cats, ", "))
                                : fmt::format("{} distinct PII values", distinct));
    if (by_rows && member_decides) f.set_member(member_rows_member_);
    f.set_action(br.action);
    f.set_severity(br.severity);
    r.findings.push_back(std::move(f));
  }

  undecodable_.AddFinding(engine_->undecodable_rule(), &r);
  encrypted_.AddFinding(engine_->encrypted_rule(), &r);

  std::stable_sort(r.findings.begin(), r.findings.end(), [](const v1::Finding& a, const v1::Finding& b) {
    return a.start() != b.start() ? a.start() < b.start() : a.rule_id() < b.rule_id();
  });
  Action action = rules::v1::ALLOW;
  for (const auto& f : r.findings) action = Stronger(action, f.action());
  std::vector<std::string> deciding;
  for (const auto& f : r.findings) {
    if (f.action() == action && std::find(deciding.begin(), deciding.end(), f.rule_id()) == deciding.end()) {
      deciding.push_back(f.rule_id());
    }
  }
  r.action = action;
  r.reason = fmt::format("{}", fmt::join(deciding, ","));
  if (!scan_error_.empty()) {
    r.action = rules::v1::BLOCK;  // fail closed: part of the message went unscanned
    r.reason = r.reason.empty() ? "scan_error" : r.reason + ",scan_error";
  }
  result_ = r;
  return r;
}

// Scanner

namespace {

// Finished MessageScanImpls of one engine, reset and ready for the next message. A
// Scanner opens scans on its own thread, but a scan may be destroyed elsewhere (and
// after its Scanner), hence the lock and the shared ownership.
struct ScanPool {
  std::mutex mu;
  // The engine of the parked scans. Compared by address only: while any scan is
  // parked it holds that engine alive, so an equal address is the same engine.
  const HyperscanEngine* engine = nullptr;
  std::vector<std::unique_ptr<MessageScanImpl>> parked;
  bool closed = false;  // the Scanner is gone: scans returned now are destroyed
};

// What Scanner::Open hands out: forwards to a pooled MessageScanImpl and, when
// destroyed, resets it and gives it back. A scan of an engine that has since been
// swapped out is destroyed instead, so connections still in flight finish on their
// old database and nothing pooled outlives it for long.
class PooledScan final : public MessageScan {
 public:
  PooledScan(std::unique_ptr<MessageScanImpl> impl, std::shared_ptr<ScanPool> pool)
      : impl_(std::move(impl)), pool_(std::move(pool)) {}
  ~PooledScan() override {
    if (!impl_->Recycle()) return;
    std::unique_ptr<MessageScanImpl> doomed;  // destroyed outside the lock
    std::lock_guard<std::mutex> lock(pool_->mu);
    if (pool_->closed || impl_->engine_ptr().get() != pool_->engine || pool_->parked.size() >= kMaxPooledScans) {
      doomed = std::move(impl_);
    } else {
      pool_->parked.push_back(std::move(impl_));
    }
  }
  void Feed(std::string_view chunk) override { impl_->Feed(chunk); }
  Action action_so_far() const override { return impl_->action_so_far(); }
  uint64_t decided_offset() const override { return impl_->decided_offset(); }
  uint64_t threshold_from() const override { return impl_->threshold_from(); }
  MessageResult Finish() override { return impl_->Finish(); }

 private:
  std::unique_ptr<MessageScanImpl> impl_;
  std::shared_ptr<ScanPool> pool_;
};

}  // namespace

struct Scanner::Impl {
  hs_scratch_t* scratch = nullptr;
  // The engine the scratch was last sized for: hs_alloc_scratch is costly even when
  // the scratch already fits, so it runs once per engine, not once per message.
  std::weak_ptr<const Engine> sized_for;
  std::shared_ptr<ScanPool> pool = std::make_shared<ScanPool>();
  ~Impl() {
    std::vector<std::unique_ptr<MessageScanImpl>> parked;
    {
      std::lock_guard<std::mutex> lock(pool->mu);
      pool->closed = true;
      parked.swap(pool->parked);
    }
    parked.clear();
    if (scratch != nullptr) hs_free_scratch(scratch);
  }
};

Scanner::Scanner() : impl_(std::make_unique<Impl>()) {}
Scanner::~Scanner() = default;

MessageScanPtr Scanner::Open(EnginePtr engine, const ContentHint& hint) {
  auto hs = std::dynamic_pointer_cast<const HyperscanEngine>(engine);
  if (!hs) return std::make_unique<UnavailableScan>();
  if (impl_->sized_for.lock() != engine) {
    for (const hs_database_t* db : hs->databases()) {
      if (hs_alloc_scratch(db, &impl_->scratch) != HS_SUCCESS) return std::make_unique<UnavailableScan>();
    }
    impl_->sized_for = engine;
  }
  std::unique_ptr<MessageScanImpl> impl;
  std::vector<std::unique_ptr<MessageScanImpl>> stale;  // another engine's: destroyed outside the lock
  {
    ScanPool& pool = *impl_->pool;
    std::lock_guard<std::mutex> lock(pool.mu);
    if (pool.engine != hs.get()) {
      stale.swap(pool.parked);
      pool.engine = hs.get();
    } else if (!pool.parked.empty()) {
      impl = std::move(pool.parked.back());
      pool.parked.pop_back();
    }
  }
  if (impl) {
    impl->Reopen(hint);
  } else {
    impl = std::make_unique<MessageScanImpl>(std::move(hs), &impl_->scratch, hint);
  }
  return std::make_unique<PooledScan>(std::move(impl), impl_->pool);
}

}  // namespace egressguard::dlp
