#include "dlp/decode/text_runs.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>

namespace egressguard::dlp::decode {

namespace {

// Expected bytes kept per byte of random data: qualifying runs start at a rate of
// (1 - p) p^N and keep N + p / (1 - p) run bytes plus 2 (W + 1) around them.
double Cost(const std::bitset<256>& u, uint32_t n, uint32_t w) {
  const double p = static_cast<double>(u.count()) / 256.0;
  if (p >= 1.0) return 1.0;
  const double rate = (1.0 - p) * std::pow(p, static_cast<double>(n));
  return std::min(1.0, rate * (static_cast<double>(n) + p / (1.0 - p) + 2.0 * (w + 1)));
}

struct Draft {
  std::bitset<256> u;
  uint32_t n;
  uint32_t w;
  double cost() const { return Cost(u, n, w); }
};

Draft Merge(const Draft& a, const Draft& b) { return Draft{a.u | b.u, std::min(a.n, b.n), std::max(a.w, b.w)}; }

bool Has(std::string_view s, std::string_view prefix) { return s.substr(0, prefix.size()) == prefix; }

}  // namespace

std::shared_ptr<const TextRunConfig> BuildTextRunConfig(const std::vector<TextRunPattern>& patterns) {
  if (patterns.empty()) return nullptr;
  std::vector<Draft> drafts;
  for (const auto& p : patterns) {
    if (p.min_width == 0 || p.alphabet.none()) return nullptr;
    const uint32_t n = std::min(p.min_width, kMaxTextRunLength);
    auto same = std::find_if(drafts.begin(), drafts.end(), [&](const Draft& d) { return d.u == p.alphabet; });
    if (same == drafts.end()) {
      drafts.push_back(Draft{p.alphabet, n, p.context});
    } else {
      same->n = std::min(same->n, n);
      same->w = std::max(same->w, p.context);
    }
  }
  // Fewer classes cost less per byte: merge the pair whose union adds least, while there
  // are too many or the union adds next to nothing.
  while (drafts.size() > 1) {
    double best = 2.0;
    size_t bi = 0, bj = 0;
    for (size_t i = 0; i < drafts.size(); ++i) {
      for (size_t j = i + 1; j < drafts.size(); ++j) {
        const double extra = Merge(drafts[i], drafts[j]).cost() - drafts[i].cost() - drafts[j].cost();
        if (extra < best) best = extra, bi = i, bj = j;
      }
    }
    // Each class costs a mask and an erosion per 64 bytes: merge while what the union
    // adds to the bytes kept of random data stays small.
    double total = 0;
    for (const Draft& d : drafts) total += d.cost();
    if (drafts.size() <= kMaxTextRunClasses && (best > 1e-3 || total + best > 2e-3)) break;
    drafts[bi] = Merge(drafts[bi], drafts[bj]);
    drafts.erase(drafts.begin() + static_cast<std::ptrdiff_t>(bj));
  }
  auto config = std::make_shared<TextRunConfig>();
  for (const Draft& d : drafts) {
    TextRunClass c;
    c.members = d.u;
    for (size_t b = 0; b < 256; ++b) {
      if (d.u.test(b)) c.bytes.Add(static_cast<uint8_t>(b));
    }
    c.min_run = d.n;
    c.context = d.w;
    config->classes.push_back(c);
  }
  return config;
}

bool LooksBinary(std::string_view b) {
  static constexpr std::string_view kMagic[] = {
      std::string_view("PK\x03\x04", 4), std::string_view("PK\x05\x06", 4), std::string_view("\x1f\x8b", 2),
      std::string_view("\x28\xb5\x2f\xfd", 4), std::string_view("\xfd" "7zXZ\x00", 6), "%PDF-",
      std::string_view("\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", 8), std::string_view("\x89PNG", 4),
      std::string_view("\xff\xd8\xff", 3), "GIF8", std::string_view("7z\xbc\xaf", 4), "BZh", "Rar!"};
  for (std::string_view m : kMagic) {
    if (Has(b, m)) return true;
  }
  // Text has no control bytes but whitespace (and ESC in coloured logs), and its bytes
  // above 0x7f are UTF-8 or, in a legacy 8-bit encoding, a few accented letters. Random,
  // compressed and encrypted bytes have both in numbers: ~7 control bytes and ~30 bytes
  // that are no UTF-8 in every 64.
  int control = 0, not_utf8 = 0;
  const size_t n = std::min(b.size(), kBinarySniff);
  for (size_t i = 0; i < n;) {
    const auto c = static_cast<unsigned char>(b[i]);
    if (c < 0x80) {
      control += (c < 0x20 && c != '\t' && c != '\n' && c != '\r' && c != '\f' && c != '\v' && c != 0x1b) || c == 0x7f;
      ++i;
      continue;
    }
    const size_t len = c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
    size_t k = 1;
    while (len != 0 && k < len && i + k < n && (static_cast<unsigned char>(b[i + k]) & 0xc0) == 0x80) ++k;
    if (len != 0 && (k == len || i + k == n)) {
      i += k;  // a sequence, or one the sniff window cuts
    } else {
      ++not_utf8;
      ++i;
    }
  }
  return control >= 2 || not_utf8 >= 4;
}

namespace {
simd::ErosionPlan PlanOf(const TextRunConfig& config) {
  uint32_t need[8] = {};
  for (size_t c = 0; c < config.classes.size() && c < 8; ++c) need[c] = config.classes[c].min_run;
  return simd::ErosionPlan(need, config.classes.size());
}
}  // namespace

TextRunFilter::TextRunFilter(std::shared_ptr<const TextRunConfig> config)
    : config_(std::move(config)), avx2_(simd::UseAvx2()), plan_(PlanOf(*config_)) {
  run_.assign(config_->classes.size(), 0);
  open_.assign(config_->classes.size(), 0);
  for (const auto& c : config_->classes) sets_.push_back(c.bytes);
}

TextRunFilter::~TextRunFilter() = default;

void TextRunFilter::Reset() {
  mode_ = Mode::kSniff;
  sniff_.Clear();
  win_.Clear();
  pos_ = put_start_ = fwd_end_ = out_end_ = win_begin_ = 0;
  kept_.clear();
  gap_sent_ = false;
  std::fill(run_.begin(), run_.end(), 0);
  std::fill(open_.begin(), open_.end(), 0);
  open_count_ = 0;
  out_any_ = false;
}

void TextRunFilter::Begin() { Reset(); }

void TextRunFilter::Put(const Src& s, const Keep& keep) {
  if (s.empty()) return;
  switch (mode_) {
    case Mode::kText:
      keep(s);
      return;
    case Mode::kBinary:
      Binary(s, keep);
      return;
    case Mode::kSniff: {
      const size_t take = std::min(s.size(), kBinarySniff - sniff_.size());
      sniff_.Append(s.Sub(0, take));
      if (sniff_.size() < kBinarySniff) return;
      Decide(keep);
      if (take < s.size()) Put(s.Sub(take, s.size()), keep);
      return;
    }
  }
}

void TextRunFilter::Decide(const Keep& keep) {
  mode_ = LooksBinary(sniff_.bytes()) ? Mode::kBinary : Mode::kText;
  MappedBuffer held = std::move(sniff_);
  sniff_.Clear();
  if (!held.empty()) Put(held.src(), keep);
}

void TextRunFilter::End(const Keep& keep) {
  if (mode_ == Mode::kSniff && !sniff_.empty()) Decide(keep);
  // Nothing can qualify any more: what is kept goes out, the other bytes are left out.
  if (mode_ == Mode::kBinary) HandOut(kNothingHeld, Src(), keep);
  Reset();
}

uint64_t TextRunFilter::held_from() const {
  switch (mode_) {
    case Mode::kSniff: return sniff_.orig_begin();
    case Mode::kText: return kNothingHeld;
    case Mode::kBinary: return win_.orig_begin();
  }
  return kNothingHeld;
}

size_t TextRunFilter::memory_bytes() const {
  return sizeof(*this) + sniff_.memory_bytes() + win_.memory_bytes() + run_.capacity() * sizeof(uint32_t);
}

void TextRunFilter::Out(const Src& piece, const Keep& keep) {
  kept_bytes_ += piece.size();
  keep(piece);
}

void TextRunFilter::Gap(const Keep& keep) {
  if (gap_sent_) return;
  gap_sent_ = true;
  keep(Src());
}

// Hands out the kept bytes below `upto`, in order: from the window for bytes before this
// Put, from `s` for the rest; a gap first where bytes were left out.
void TextRunFilter::HandOut(uint64_t upto, const Src& s, const Keep& keep) {
  size_t done = 0;
  for (; done < kept_.size(); ++done) {
    auto& [a, b] = kept_[done];
    if (a >= upto) break;
    const uint64_t e = std::min(b, upto);
    if (out_any_ && a > out_end_) Gap(keep);
    if (a < put_start_) Out(win_.src().Sub(a - win_begin_, std::min(e, put_start_) - win_begin_), keep);
    if (e > put_start_) Out(s.Sub(std::max(a, put_start_) - put_start_, e - put_start_), keep);
    out_end_ = e;
    out_any_ = true;
    gap_sent_ = false;
    if (b > e) {
      a = e;  // the rest waits
      break;
    }
  }
  kept_.erase(kept_.begin(), kept_.begin() + static_cast<std::ptrdiff_t>(done));
}

// Bytes [a, b) are kept. Calls come in order of b; a back-fill may reach before kept
// ranges still pending (never before what was handed out), and merges with them.
void TextRunFilter::KeepRange(uint64_t a, uint64_t b) {
  a = std::max(a, out_end_);
  if (a >= b) return;
  while (!kept_.empty() && kept_.back().second >= a) {
    a = std::min(a, kept_.back().first);
    b = std::max(b, kept_.back().second);
    kept_.pop_back();
  }
  kept_.emplace_back(a, b);
}

void TextRunFilter::Binary(const Src& s, const Keep& keep) {
  const auto& classes = config_->classes;
  const size_t nc = classes.size();
  const char* d = s.data();
  const size_t n = s.size();
  put_start_ = pos_;
  binary_bytes_ += n;
  alignas(32) uint64_t m[8] = {}, r[8] = {};
  uint64_t q[kMaxTextRunClasses] = {}, e[kMaxTextRunClasses] = {};
  for (size_t i = 0; i < n; i += 64) {
    const size_t len = std::min<size_t>(64, n - i);
    const char* p = d + i;
    char block[64];
    if (len < 64) {
      std::memset(block, 0, sizeof block);
      std::memcpy(block, p, len);
      p = block;
    }
    const uint64_t valid = len == 64 ? ~uint64_t{0} : (uint64_t{1} << len) - 1;
    const uint64_t b0 = pos_;
    uint64_t events = 0;
    simd::ByteSetMasks64(p, sets_.data(), nc, m, avx2_);
    for (size_t c = 0; c < nc; ++c) m[c] &= valid;
    // Bit j of r[c]: byte j is at least the N-th of its run. Runs inside the block by
    // erosion (all classes at once); the run the block starts with may go on from
    // earlier blocks.
    uint64_t any = simd::Erode64(m, plan_, r, avx2_);
    for (size_t c = 0; c < nc; ++c) {
      if (run_[c] == 0) continue;
      const uint32_t need = classes[c].min_run;
      const auto lead = static_cast<uint32_t>(std::countr_one(m[c]));
      if (lead > 0 && uint64_t{run_[c]} + lead >= need) {
        const uint32_t first = run_[c] >= need ? 0 : need - run_[c] - 1;
        r[c] |= (lead == 64 ? ~uint64_t{0} : (uint64_t{1} << lead) - 1) & (~uint64_t{0} << first);
        any |= r[c];
      }
    }
    if (any != 0 || open_count_ > 0) {
      for (size_t c = 0; c < nc; ++c) {
        const uint64_t was = open_[c] ? 1 : 0;  // the byte before the block was qualified
        q[c] = r[c] & ~((r[c] << 1) | was);
        e[c] = ~m[c] & valid & ((r[c] << 1) | was);
        events |= q[c] | e[c];
      }
    }
    if (events != 0 || open_count_ > 0 || fwd_end_ > b0) {
      size_t cur = 0;
      for (;;) {
        const size_t next = events != 0 ? static_cast<size_t>(std::countr_zero(events)) : len;
        if (open_count_ > 0) {
          KeepRange(b0 + cur, b0 + next);
        } else if (fwd_end_ > b0 + cur) {
          KeepRange(b0 + cur, std::min(b0 + next, fwd_end_));
        }
        if (next == len) break;
        const uint64_t bit = uint64_t{1} << next;
        for (size_t c = 0; c < nc; ++c) {
          if (e[c] & bit) {
            open_[c] = 0;
            --open_count_;
            fwd_end_ = std::max(fwd_end_, b0 + next + classes[c].context + 1);
          }
          if (q[c] & bit) {
            open_[c] = 1;
            ++open_count_;
            // The run began N - 1 bytes back; its context and the byte before it too.
            const uint64_t back = uint64_t{classes[c].min_run} - 1 + classes[c].context + 1;
            KeepRange(b0 + next >= back ? b0 + next - back : 0, b0 + next);
          }
        }
        cur = next;
        events &= events - 1;
      }
    }
    for (size_t c = 0; c < nc; ++c) {
      if (m[c] == valid) {
        run_[c] = run_[c] > UINT32_MAX - 64 ? run_[c] : run_[c] + static_cast<uint32_t>(len);
      } else {
        run_[c] = static_cast<uint32_t>(std::countl_one(m[c] << (64 - len)));
      }
    }
    pos_ += len;
  }
  // Below the horizon no run can reach back any more (a run not yet qualifying pulls in
  // at most its own bytes and its context before them): what is kept there goes out,
  // the rest of it is left out. Above it the window keeps the bytes.
  uint64_t from = pos_;
  for (size_t c = 0; c < nc; ++c) {
    if (open_[c]) continue;  // its pull-back is already kept
    const uint64_t back = uint64_t{run_[c]} + classes[c].context + 1;
    from = std::min(from, pos_ >= back ? pos_ - back : 0);
  }
  from = std::max(from, win_begin_);
  HandOut(from, s, keep);
  // Bytes after the last stretch are left out: say so now, so the sink need not hold
  // that stretch's end open for a match that can no longer come.
  if (out_any_ && from > out_end_ && (kept_.empty() || kept_.front().first > out_end_)) Gap(keep);
  if (from >= put_start_) {
    win_.Clear();
    if (from < pos_) win_.Append(s.Sub(from - put_start_, n));
  } else {
    win_.DropFront(from - win_begin_);
    win_.Append(s);
  }
  win_begin_ = from;
  put_start_ = pos_;
}

}  // namespace egressguard::dlp::decode
