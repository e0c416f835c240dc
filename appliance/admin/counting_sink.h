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

 private:
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
};

}  // namespace egressguard::admin
