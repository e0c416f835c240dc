#include "dlp/decode/layer.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <fmt/format.h>

#include "dlp/decode/decoders.h"
#include "dlp/decode/text_runs.h"

namespace egressguard::dlp::decode {

void Context::Charge(size_t n, OrigSpan where) {
  if (stopped) return;
  decoded_bytes += n;
  const uint64_t limit = limits.max_decoded_bytes + limits.decoded_bytes_per_input_byte * input_bytes;
  if (decoded_bytes > limit) {
    stopped = true;
    Undecodable(where, limits.decoded_bytes_per_input_byte == 0
                           ? fmt::format("decoded size limit of {} bytes exceeded", limit)
                           : fmt::format("decoded size limit of {} bytes exceeded ({} + {} per byte of the {} read)",
                                         limit, limits.max_decoded_bytes, limits.decoded_bytes_per_input_byte,
                                         input_bytes));
  }
}

void* ChargedAlloc(Context* ctx, size_t n) {
  if (ctx == nullptr || n > ctx->limits.max_memory_bytes || ctx->codec_bytes + n > ctx->limits.max_memory_bytes) {
    return nullptr;
  }
  void* p = std::malloc(n + 16);  // 16 bytes keep the block 16-byte aligned
  if (p == nullptr) return nullptr;
  std::memcpy(p, &n, sizeof n);
  std::memcpy(static_cast<char*>(p) + 8, &ctx, sizeof ctx);
  ctx->codec_bytes += n;
  return static_cast<char*>(p) + 16;
}

void ChargedFree(void* q) {
  if (q == nullptr) return;
  char* p = static_cast<char*>(q) - 16;
  size_t n;
  Context* ctx;
  std::memcpy(&n, p, sizeof n);
  std::memcpy(&ctx, p + 8, sizeof ctx);
  ctx->codec_bytes -= n;
  std::free(p);
}

void* ChargedRealloc(Context* ctx, void* q, size_t n) {
  if (q == nullptr) return ChargedAlloc(ctx, n);
  size_t old;
  std::memcpy(&old, static_cast<char*>(q) - 16, sizeof old);
  void* r = ChargedAlloc(ctx, n);
  if (r == nullptr) return nullptr;
  std::memcpy(r, q, std::min(old, n));
  ChargedFree(q);
  return r;
}

void Context::Undecodable(OrigSpan where, const std::string& why) {
  const std::string& m = ReportMember();
  if (m.empty()) {
    sink.OnUndecodable(where.begin, where.end, why);
  } else {
    sink.OnUndecodable(where.begin, where.end, fmt::format("{} (in {})", why, m));
  }
}

void Context::Encrypted(OrigSpan where, const std::string& what) {
  sink.OnEncrypted(where.begin, where.end, ReportMember(), what);
}

namespace {
constexpr size_t kMaxMemberPath = 512;  // a longer path is cut: it names, it does not prove
const std::string kNoMember;

// Keeps `layer` on Context::active while it runs (see Context::ActiveMember).
class ActiveScope {
 public:
  ActiveScope(Context& ctx, const Layer* layer) : ctx_(ctx) { ctx_.active.push_back(layer); }
  ~ActiveScope() { ctx_.active.pop_back(); }
  ActiveScope(const ActiveScope&) = delete;
  ActiveScope& operator=(const ActiveScope&) = delete;

 private:
  Context& ctx_;
};

}  // namespace

void Context::EnterMember(const Layer& owner, std::string_view name) {
  LeaveMember(owner);
  // The container runs inside its parent layer's emission: the member that layer is in
  // is the parent path.
  const std::string& parent = ActiveMember();
  std::string path = parent.empty() ? std::string(name) : fmt::format("{}!{}", parent, name);
  if (path.size() > kMaxMemberPath) path.resize(kMaxMemberPath);
  members.push_back(OpenMember{&owner, owner.depth(), std::move(path)});
  ++members_gen;
}

void Context::LeaveMember(const Layer& owner) {
  // Members opened inside this one end with it.
  for (size_t i = 0; i < members.size(); ++i) {
    if (members[i].owner != &owner) continue;
    members.resize(i);
    ++members_gen;
    return;
  }
}

const std::string& Context::MemberAt(uint32_t depth) const {
  for (auto it = members.rbegin(); it != members.rend(); ++it) {
    if (it->depth <= depth) return it->path;
  }
  return kNoMember;
}

const std::string& Context::ActiveMember() const {
  for (auto it = members.rbegin(); it != members.rend(); ++it) {
    if (std::find(active.begin(), active.end(), it->owner) != active.end()) return it->path;
  }
  return kNoMember;
}

const std::string& Context::InnermostMember() const { return members.empty() ? kNoMember : members.back().path; }

const std::string& Context::ReportMember() const {
  if (active.empty()) return InnermostMember();
  const Layer* own = active.back()->transform_output();
  for (auto it = members.rbegin(); own != nullptr && it != members.rend(); ++it) {
    if (it->owner == own) return it->path;
  }
  return ActiveMember();
}

Layer::Layer(Context& ctx, uint32_t depth) : ctx_(ctx), depth_(depth) {
  if (depth_ < ctx_.limits.max_depth) {
    transform_ = std::make_unique<TransformSlot>(ctx_, depth_ + 1);
    base64_ = std::make_unique<Base64Finder>(ctx_, depth_ + 1);
  }
  if (depth_ > 0 && ctx_.limits.text_runs && !ctx_.limits.text_runs->classes.empty()) {
    filter_ = std::make_unique<TextRunFilter>(ctx_.limits.text_runs);
  }
}

Layer::~Layer() = default;

const Layer* Layer::transform_output() const { return transform_ ? transform_->output() : nullptr; }

void Layer::BeginDocument(const DocHint& hint) {
  ActiveScope scope(ctx_, this);
  doc_emitted_ = false;
  in_doc_ = true;
  if (filter_) filter_->Begin();
  if (transform_) transform_->Begin(hint);
  if (base64_) base64_->Begin();
  url_doc_ = hint.is_url && base64_;
  if (url_doc_) {
    if (!path_base64_) path_base64_ = std::make_unique<Base64Finder>(ctx_, depth_ + 1);
    path_base64_->Begin();
  }
}

void Layer::Emit(const Src& s, bool to_sink) {
  if (s.empty() || ctx_.stopped) return;
  ActiveScope scope(ctx_, this);
  if (to_sink && depth_ > 0) {
    ctx_.Charge(s.size(), s.SpanOf(0, s.size()));
    if (ctx_.stopped) return;
    Sink(s);
  }
  if (transform_) transform_->Put(s);
  // Bytes withheld from the sink are the parent layer's own bytes: its finder saw them.
  if (base64_ && (to_sink || depth_ == 0)) {
    base64_->Put(s);
    if (url_doc_) {
      MappedBuffer segments;
      segments.Append(s);
      segments.ReplaceBytes('/', ' ');
      path_base64_->Put(segments.src());
    }
  }
}

void Layer::Sink(const Src& s) {
  if (filter_ && in_doc_) {
    filter_->Put(s, [this](const Src& kept) { Kept(kept); });
  } else {
    ToSink(s);
  }
}

// From the binary filter: a kept stretch, or (empty) bytes left out. Stretches are told
// apart as documents are, so no match spans what was left out between them.
void Layer::Kept(const Src& s) {
  if (!s.empty()) {
    ToSink(s);
    return;
  }
  if (doc_emitted_ && id_ != 0 && !id_refused_) ctx_.sink.OnDocumentEnd(id_);
  doc_emitted_ = false;
}

void Layer::ToSink(const Src& s) {
  if (id_ == 0 && !id_refused_) {
    if (ctx_.next_layer_id <= kMaxLayers) {
      id_ = ctx_.next_layer_id++;
    } else {
      id_refused_ = true;
      const OrigSpan at = s.SpanOf(0, s.size());
      ctx_.Undecodable(at, fmt::format("more than {} decode layers", kMaxLayers));
    }
  }
  if (id_refused_) return;
  if (member_gen_ != ctx_.members_gen) {
    member_gen_ = ctx_.members_gen;
    const std::string& m = ctx_.ActiveMember();
    if (m != member_) {
      member_ = m;
      ctx_.sink.OnMember(id_, member_);
    }
  }
  if (emitted_ && !doc_emitted_) {
    // Documents of one layer are unrelated text: keep matches from spanning two.
    const OrigSpan first = s.SpanOf(0, 1);
    ctx_.sink.OnSegment(DecodedSegment{id_, "\n", first.begin, first.end, false});
  }
  s.ForEachRun([this](std::string_view bytes, OrigSpan span, bool linear) {
    ctx_.sink.OnSegment(DecodedSegment{id_, bytes, span.begin, span.end, linear});
  });
  emitted_ = doc_emitted_ = true;
}

void Layer::EndDocument() {
  ActiveScope scope(ctx_, this);
  if (filter_ && in_doc_) {
    if (ctx_.stopped) {
      filter_->Begin();  // nothing goes to the sink any more
    } else {
      filter_->End([this](const Src& kept) { Kept(kept); });
    }
  }
  in_doc_ = false;
  if (transform_) transform_->End();
  if (base64_) base64_->End();
  if (url_doc_) path_base64_->End();
  url_doc_ = false;
  if (doc_emitted_ && id_ != 0 && !id_refused_) ctx_.sink.OnDocumentEnd(id_);
}

uint64_t Layer::held_from() const {
  uint64_t h = filter_ ? filter_->held_from() : kNothingHeld;
  if (transform_) h = std::min(h, transform_->held_from());
  if (base64_) h = std::min(h, base64_->held_from());
  if (path_base64_) h = std::min(h, path_base64_->held_from());
  return h;
}

size_t Layer::memory_bytes() const {
  size_t n = sizeof(*this);
  if (filter_) n += filter_->memory_bytes();
  if (transform_) n += transform_->memory_bytes();
  if (base64_) n += base64_->memory_bytes();
  if (path_base64_) n += path_base64_->memory_bytes();
  return n;
}

void Coalescer::Add(std::string_view bytes, OrigSpan span) {
  if (buf_.empty()) {
    span_ = span;
  } else {
    span_.begin = std::min(span_.begin, span.begin);
    span_.end = std::max(span_.end, span.end);
  }
  buf_.append(bytes);
  if (buf_.size() >= max_) Flush();
}

void Coalescer::AddLinear(const Src& s) {
  if (s.empty()) return;
  // Literal bytes keep their exact mapping; flushing first keeps the grouping of escapes
  // independent of how the input was chunked.
  Flush();
  out_.Emit(s);
}

void Coalescer::Flush() {
  if (buf_.empty()) return;
  SinglePiece piece(buf_, span_, false);
  out_.Emit(piece.src());
  buf_.clear();
}

}  // namespace egressguard::dlp::decode
