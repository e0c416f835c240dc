#include "appliance/admin/bounded_labels.h"

namespace egressguard::admin {

std::string BoundedLabels::Bound(std::string_view value) {
  std::string key(value);
  std::lock_guard lock(mu_);
  if (seen_.count(key) > 0) return key;
  if (seen_.size() >= max_) return std::string(kOther);
  seen_.insert(key);
  return key;
}

}  // namespace egressguard::admin
