#pragma once
// Internal plumbing of the Normalizer: the per-message Context (limits, sink, budgets),
// a Layer (one decoded stream: its id, its sink output and its two child slots) and the
// Decoder interface every decoder implements.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "dlp/decode/mapped.h"
#include "dlp/decode/normalizer.h"

namespace egressguard::dlp::decode {

enum class Codec { kGzip, kDeflate, kZlib, kRawDeflate, kBrotli, kZstd };

// What is known about a document before its bytes are seen.
struct DocHint {
  std::vector<Codec> encodings;  // still to undo, outermost first
  std::string content_type;      // as sent, parameters kept (boundary is case-sensitive)
  std::string transfer_encoding; // multipart part Content-Transfer-Encoding, lower-cased
  std::string unsupported_encoding;  // a declared Content-Encoding no decoder handles
  // The document's file name, when one is known: a container member's path inside its
  // archive ("xl/sharedStrings.xml") or a multipart part's filename. Sniffing uses it
  // next to the bytes; it is never trusted over them.
  std::string name;
  bool is_url = false;
};

struct SharedStrings;  // documents_internal.h
class Layer;

struct Context {
  Context(const NormalizerLimits& l, SegmentSink& s) : limits(l), sink(s) {}

  // Counts decoded bytes; once over the limit reports it and stops all decoding.
  void Charge(size_t n, OrigSpan where);
  // Reported once per decoder; inside a container member the reason names the member.
  void Undecodable(OrigSpan where, const std::string& why);
  // Content that cannot be read without a key (an encrypted archive member, a
  // password-protected document): `what` says which kind, the member is named.
  void Encrypted(OrigSpan where, const std::string& what);

  // Containers. A container decoder calls EnterMember with its output layer when a
  // member begins and LeaveMember when it ends; the member's path ("b/c.csv" inside
  // "x.zip" member "a.zip": "a.zip!b/c.csv") is what findings in that layer, and in the
  // layers decoded from it, are reported inside. Not in other layers at the same depth
  // (the parent's base64 runs): a layer takes the innermost member whose owner is on
  // the chain of layers now emitting, which is always the layer and its ancestors.
  void EnterMember(const Layer& owner, std::string_view name);
  void LeaveMember(const Layer& owner);
  // Path of the innermost open member whose layer is at `depth` or above it, "" outside
  // any container.
  const std::string& MemberAt(uint32_t depth) const;
  // The member the layer emitting now (the top of `active`) is inside.
  const std::string& ActiveMember() const;
  const std::string& InnermostMember() const;
  // The member a report (Undecodable, Encrypted) is about: one a container decoder that
  // runs in the emitting layer has entered for its own report (its output layer is the
  // emitting layer's transform output), else the member the emitting layer is inside.
  // Not a member merely open elsewhere: the parent layer's base64 runs pass the same
  // stored bytes as the member, and their reports are no member's.
  const std::string& ReportMember() const;

  NormalizerLimits limits;
  SegmentSink& sink;
  uint32_t next_layer_id = 1;
  uint64_t decoded_bytes = 0;
  uint64_t input_bytes = 0;  // raw bytes fed to the Normalizer
  bool stopped = false;   // max_decoded_bytes reached
  size_t codec_bytes = 0; // decompressor allocations live now (see compress.cc)
  // Open members, outermost first, each with the layer it is decoded into.
  struct OpenMember {
    const Layer* owner;
    uint32_t depth;
    std::string path;
  };
  std::vector<OpenMember> members;
  uint64_t members_gen = 0;  // bumped on every change: layers re-check their member then
  // The layers whose Emit / BeginDocument / EndDocument are running, outermost first.
  std::vector<const Layer*> active;
  // An xlsx's shared-strings table, which its sheets (other members of the same archive,
  // each read by its own decoder) refer to: by the depth of the layer the members are in.
  std::vector<std::pair<uint32_t, std::shared_ptr<SharedStrings>>> shared_strings;
};

// Library allocations (zlib, brotli, zstd, liblzma, expat) charged to ctx->codec_bytes
// against limits.max_memory_bytes: nullptr once the budget is spent, so a hostile window
// size fails that decoder as undecodable instead of growing memory. A block remembers its
// size and Context (a 16-byte header), so freeing needs only the pointer.
void* ChargedAlloc(Context* ctx, size_t n);
void* ChargedRealloc(Context* ctx, void* p, size_t n);  // nullptr: p stays valid, as realloc
void ChargedFree(void* p);

class Layer;

// Holds. Every part of the tree answers held_from(): the smallest original offset of
// any segment it may still deliver to the sink, counting segments its children deliver
// and, for a part whose output spans do not follow its input (a decompressor's start at
// the stream start), segments made from input it has not seen yet; kNothingHeld when it
// holds nothing. Spans are original offsets at every depth, so a nested part's holds
// need no mapping through its parents. The proxy forwards original bytes below the
// minimum: a value must never be larger than the truth.
class Decoder {
 public:
  virtual ~Decoder() = default;
  virtual void Put(const Src& in) = 0;
  virtual void Finish() = 0;
  virtual size_t memory_bytes() const = 0;
  // Own state only: the Layer it writes to answers for its children.
  virtual uint64_t held_from() const = 0;
};
using DecoderPtr = std::unique_ptr<Decoder>;

// Picks and runs the decoder for each document of its parent layer (see normalizer.cc).
class TransformSlot;
class Base64Finder;
class TextRunFilter;  // text_runs.h

class Layer {
 public:
  // The root (depth 0) is the raw message: it feeds its children but is never emitted.
  Layer(Context& ctx, uint32_t depth);
  ~Layer();

  void BeginDocument(const DocHint& hint);
  // to_sink = false: bytes identical to raw ones (a plain multipart part), fed to the
  // children for sniffing but not scanned twice.
  void Emit(const Src& s, bool to_sink = true);
  void EndDocument();
  size_t memory_bytes() const;
  // Emit passes bytes on at once: a layer holds only what its two child slots hold.
  uint64_t held_from() const;
  uint32_t depth() const { return depth_; }
  Context& ctx() { return ctx_; }
  // The layer this one's documents are decoded into by its TransformSlot, if any yet.
  const Layer* transform_output() const;

 private:
  // The layer's own bytes for the sink: through the binary filter when there is one.
  void Sink(const Src& s);
  void Kept(const Src& s);
  void ToSink(const Src& s);

  Context& ctx_;
  const uint32_t depth_;
  uint32_t id_ = 0;  // 0 until first emitted (root stays 0)
  uint64_t member_gen_ = 0;    // ctx_.members_gen when the member was last reported
  std::string member_;         // member path last reported to the sink for this layer
  bool id_refused_ = false;
  bool emitted_ = false;       // something went to the sink in an earlier document
  bool doc_emitted_ = false;   // ... in this document
  std::unique_ptr<TransformSlot> transform_;
  std::unique_ptr<Base64Finder> base64_;
  // URL documents only: base64 in a path segment ("/d/<base64>") after the '/' before it,
  // which base64_ reads as the run's first character (the standard alphabet has '/'), so
  // it decodes the segment three characters out of step. This finder sees the URL with
  // '/' as a separator; URLs are short, so reading them twice costs little.
  std::unique_ptr<Base64Finder> path_base64_;
  bool url_doc_ = false;
  std::unique_ptr<TextRunFilter> filter_;  // decoded layers, when limits.text_runs is set
  // Between BeginDocument and EndDocument. Unframed output (a base64 body, a non-lazy
  // unescaper) has no end at which the filter could settle, so it bypasses the filter.
  bool in_doc_ = false;
};

// Collects small decoded units (escapes, base64 groups) into segments of bounded size;
// long linear runs pass through without a copy.
class Coalescer {
 public:
  explicit Coalescer(Layer& out, size_t max_unit = 48) : out_(out), max_(max_unit) {}
  void Add(std::string_view bytes, OrigSpan span);
  void AddLinear(const Src& s);  // literal bytes, mapping kept
  void Flush();
  size_t pending() const { return buf_.size(); }
  size_t memory_bytes() const { return buf_.capacity(); }
  // Buffered units go out in one segment spanning from the earliest of them.
  uint64_t held_from() const { return buf_.empty() ? kNothingHeld : span_.begin; }

 private:
  Layer& out_;
  const size_t max_;
  std::string buf_;
  OrigSpan span_;
};

}  // namespace egressguard::dlp::decode
