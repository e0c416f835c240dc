#include "appliance/store/chain.h"

#include <fmt/format.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

namespace egressguard::store {

namespace {
constexpr size_t kMaxProblems = 100;  // a wholesale rewrite is reported, not enumerated
}

std::string ChainHash(std::string_view prev_hash, std::string_view content) {
  return ChainHash(prev_hash, content, {});
}

std::string ChainHash(std::string_view prev_hash, std::string_view content_head, std::string_view content_tail) {
  // One context per thread, reused: creating one and looking up SHA-256 costs more
  // than hashing a verdict.
  struct Context {
    EVP_MD* md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    ~Context() {
      EVP_MD_CTX_free(ctx);
      EVP_MD_free(md);
    }
  };
  thread_local Context c;
  std::string out(kHashBytes, '\0');
  EVP_DigestInit_ex(c.ctx, c.md, nullptr);
  EVP_DigestUpdate(c.ctx, prev_hash.data(), prev_hash.size());
  EVP_DigestUpdate(c.ctx, content_head.data(), content_head.size());
  EVP_DigestUpdate(c.ctx, content_tail.data(), content_tail.size());
  unsigned int len = 0;
  EVP_DigestFinal_ex(c.ctx, reinterpret_cast<unsigned char*>(out.data()), &len);
  return out;
}

std::string Hex(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 15]);
  }
  return out;
}

ChainVerifier::ChainVerifier(std::string chain, std::string anchor_hash, int64_t head_seq, std::string head_hash,
                             std::function<std::optional<int64_t>(const std::string&)> find_seq_of_hash)
    : chain_(std::move(chain)),
      expected_prev_(std::move(anchor_hash)),
      head_seq_(head_seq),
      head_hash_(std::move(head_hash)),
      find_(std::move(find_seq_of_hash)) {}

void ChainVerifier::Problem(int64_t seq, const char* kind, std::string detail) {
  if (problems_.size() >= kMaxProblems) {
    ++suppressed_;
    return;
  }
  v1::ChainProblem p;
  p.set_chain(chain_);
  p.set_seq(static_cast<uint64_t>(seq));
  p.set_kind(kind);
  p.set_detail(std::move(detail));
  problems_.push_back(std::move(p));
}

void ChainVerifier::Add(const ChainRow& row) {
  ++checked_;
  if (!row.inconsistency.empty()) {
    Problem(row.seq, "edited", fmt::format("row {}: {}", row.seq, row.inconsistency));
  } else if (ChainHash(row.prev_hash, row.content) != row.hash) {
    Problem(row.seq, "edited", fmt::format("row {}: content does not match its hash", row.seq));
  }
  if (row.prev_hash != expected_prev_) {
    std::optional<int64_t> holder;
    if (lookups_left_ > 0) {
      --lookups_left_;
      holder = find_(row.prev_hash);
    }
    if (holder) {
      Problem(row.seq, "reordered",
              fmt::format("row {} follows row {} in the chain but sits after row {}", row.seq, *holder, last_seq_));
    } else {
      Problem(row.seq, "deleted",
              fmt::format("rows missing between seq {} and seq {} (the chain link before row {} is gone)",
                          last_seq_, row.seq, row.seq));
    }
  }
  expected_prev_ = row.hash;
  last_seq_ = row.seq;
}

void ChainVerifier::Finish() {
  if (expected_prev_ != head_hash_) {
    if (head_seq_ > last_seq_) {
      Problem(last_seq_, "deleted",
              fmt::format("rows after seq {} are missing (the chain head is seq {})", last_seq_, head_seq_));
    } else if (expected_prev_ != head_hash_) {
      Problem(last_seq_, "edited",
              fmt::format("the last row (seq {}) is not the recorded chain head (seq {})", last_seq_, head_seq_));
    }
  }
  if (suppressed_ > 0) {
    v1::ChainProblem p;
    p.set_chain(chain_);
    p.set_kind("more");
    p.set_detail(fmt::format("{} further problems not listed", suppressed_));
    problems_.push_back(std::move(p));
  }
}

}  // namespace egressguard::store
