#pragma once
// A VerdictSink decorator that counts what each verdict says, then hands it on: verdicts
// by mode and action, findings by category and action, bytes by destination, and bytes
// and requests per workload x destination (FinOps accounting). Destinations, categories,
// workloads and workload x destination pairs are bounded (BoundedLabels), so a client
// that visits a million hosts adds series only up to the bound, then "other".

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/registry.h>

#include <cstddef>
#include <mutex>
#include <string>
#include <unordered_map>

#include "appliance/admin/bounded_labels.h"
#include "mitm/verdict_sink.h"

namespace egressguard::admin {

struct CountingSinkLimits {
  size_t destinations = 50;       // distinct host labels, then "other"
  size_t workloads = 50;
  size_t workload_destinations = 500;  // distinct (workload, host) pairs, then host "other"
  size_t categories = 50;
};

class CountingSink final : public mitm::VerdictSink {
 public:
  // `next` may be null (verdicts are only counted). The registry must outlive the sink.
  CountingSink(mitm::VerdictSinkPtr next, prometheus::Registry& registry, CountingSinkLimits limits = {});

  bool Submit(v1::Verdict verdict) override;
  bool KeepsWriteAhead() const override { return next_ && next_->KeepsWriteAhead(); }
  bool CanAccept() const override { return next_ == nullptr || next_->CanAccept(); }

 private:
  // The counters one (workload, destination) pair moves.
  struct PairCounters {
    prometheus::Counter* destination_out;
    prometheus::Counter* destination_in;
    prometheus::Counter* requests;
    prometheus::Counter* bytes_out;
    prometheus::Counter* bytes_in;
  };
  // Counters found once and kept by their raw label values: Family::Add builds a label map
  // and takes the family's lock, seven times a verdict. A raw value's bounded label never
  // changes once given, so a kept entry stays right; the cache itself is bounded too
  // (past `capacity` entries the counters are looked up each time, as before).
  template <typename V>
  class Cache {
   public:
    explicit Cache(size_t capacity) : capacity_(capacity) {}
    template <typename Make>
    V Get(const std::string& key, Make make) {
      std::lock_guard lock(mu_);
      if (auto it = map_.find(key); it != map_.end()) return it->second;
      V v = make();
      if (map_.size() < capacity_) map_.emplace(key, v);
      return v;
    }

   private:
    const size_t capacity_;
    std::mutex mu_;
    std::unordered_map<std::string, V> map_;
  };

  PairCounters MakePairCounters(const std::string& workload, const std::string& host);

  mitm::VerdictSinkPtr next_;
  prometheus::Family<prometheus::Counter>& verdicts_;
  prometheus::Family<prometheus::Counter>& findings_;
  prometheus::Family<prometheus::Counter>& destination_bytes_;
  prometheus::Family<prometheus::Counter>& workload_requests_;
  prometheus::Family<prometheus::Counter>& workload_bytes_;
  BoundedLabels destinations_;
  BoundedLabels workloads_;
  BoundedLabels pairs_;
  BoundedLabels categories_;
  Cache<prometheus::Counter*> verdict_counters_;  // by mode and action
  Cache<prometheus::Counter*> finding_counters_;  // by category and action
  Cache<PairCounters> pair_counters_;              // by workload and host
};

}  // namespace egressguard::admin
