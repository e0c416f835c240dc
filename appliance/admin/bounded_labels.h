#pragma once
// Keeps a label's cardinality bounded: the first `max_distinct` values seen keep their
// own label, every later new value is reported as "other". Prometheus stores a series per
// label set forever, so an unbounded label (client-chosen host names) would be a memory
// leak in the proxy and in every Prometheus scraping it.

#include <cstddef>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_set>

namespace egressguard::admin {

class BoundedLabels {
 public:
  static constexpr std::string_view kOther = "other";
  explicit BoundedLabels(size_t max_distinct) : max_(max_distinct) {}

  // Thread-safe.
  std::string Bound(std::string_view value);

 private:
  const size_t max_;
  std::mutex mu_;
  std::unordered_set<std::string> seen_;
};

}  // namespace egressguard::admin
