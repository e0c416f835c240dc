#pragma once
// Tamper evidence: each row's hash = SHA-256(previous row's hash || canonical
// content). ChainVerifier walks a chain in seq order and says where it breaks.

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "egressguard/v1/audit.pb.h"

namespace egressguard::store {

inline constexpr size_t kHashBytes = 32;

// 32 raw bytes.
std::string ChainHash(std::string_view prev_hash, std::string_view content);
// The same hash when the content comes in two pieces (saves joining them).
std::string ChainHash(std::string_view prev_hash, std::string_view content_head, std::string_view content_tail);
std::string Hex(std::string_view bytes);

struct ChainRow {
  int64_t seq = 0;
  std::string prev_hash;
  std::string hash;
  std::string content;       // canonical content, rebuilt from the stored row
  std::string inconsistency; // non-empty: a copied column disagrees with the content
};

class ChainVerifier {
 public:
  // `find_seq_of_hash` finds the row holding a given hash (to tell a reorder from a
  // deletion); it is called at most a bounded number of times.
  ChainVerifier(std::string chain, std::string anchor_hash, int64_t head_seq, std::string head_hash,
                std::function<std::optional<int64_t>(const std::string&)> find_seq_of_hash);

  void Add(const ChainRow& row);
  // Checks the last row against the recorded head (a deleted tail).
  void Finish();

  uint64_t checked() const { return checked_; }
  const std::vector<v1::ChainProblem>& problems() const { return problems_; }

 private:
  void Problem(int64_t seq, const char* kind, std::string detail);

  std::string chain_;
  std::string expected_prev_;
  int64_t head_seq_;
  std::string head_hash_;
  std::function<std::optional<int64_t>(const std::string&)> find_;
  int64_t last_seq_ = 0;
  uint64_t checked_ = 0;
  int lookups_left_ = 64;
  uint64_t suppressed_ = 0;
  std::vector<v1::ChainProblem> problems_;
};

}  // namespace egressguard::store
