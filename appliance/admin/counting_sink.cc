#include "appliance/admin/counting_sink.h"

#include <string>

namespace egressguard::admin {
namespace {

std::string ActionLabel(rules::v1::Action action) {
  switch (action) {
    case rules::v1::ALLOW: return "allow";
    case rules::v1::ALERT: return "alert";
    case rules::v1::BLOCK: return "block";
    default: return "unspecified";
  }
}

std::string ModeLabel(const std::string& mode) {
  if (mode == "bump" || mode == "splice" || mode == "refuse" || mode == "plain") return mode;
  return "other";
}

}  // namespace

CountingSink::CountingSink(mitm::VerdictSinkPtr next, prometheus::Registry& registry, CountingSinkLimits limits)
    : next_(std::move(next)),
      verdicts_(prometheus::BuildCounter()
                    .Name("egressguard_verdicts_total")
                    .Help("Verdicts (one per HTTP transaction, or per connection when not HTTP) by mode and action")
                    .Register(registry)),
      findings_(prometheus::BuildCounter()
                    .Name("egressguard_findings_total")
                    .Help("DLP findings by category and the action of their rule")
                    .Register(registry)),
      destination_bytes_(prometheus::BuildCounter()
                             .Name("egressguard_destination_bytes_total")
                             .Help("Bytes relayed by destination host (bounded: then \"other\") and direction "
                                   "(out: client to origin, in: origin to client)")
                             .Register(registry)),
      workload_requests_(prometheus::BuildCounter()
                             .Name("egressguard_workload_requests_total")
                             .Help("Requests (verdicts) per workload and destination host (bounded)")
                             .Register(registry)),
      workload_bytes_(prometheus::BuildCounter()
                          .Name("egressguard_workload_bytes_total")
                          .Help("Bytes per workload, destination host (bounded) and direction")
                          .Register(registry)),
      destinations_(limits.destinations),
      workloads_(limits.workloads),
      pairs_(limits.workload_destinations),
      categories_(limits.categories),
      verdict_counters_(64),
      finding_counters_(4 * (limits.categories + 1) * 4),
      pair_counters_(4 * (limits.workload_destinations + limits.destinations + limits.workloads)) {}

CountingSink::PairCounters CountingSink::MakePairCounters(const std::string& raw_workload, const std::string& raw_host) {
  std::string host = destinations_.Bound(raw_host);
  std::string workload = workloads_.Bound(raw_workload);
  std::string pair_host = host;
  if (pairs_.Bound(workload + '\n' + host) == BoundedLabels::kOther) pair_host = std::string(BoundedLabels::kOther);
  return PairCounters{
      &destination_bytes_.Add({{"destination", host}, {"direction", "out"}}),
      &destination_bytes_.Add({{"destination", host}, {"direction", "in"}}),
      &workload_requests_.Add({{"workload", workload}, {"destination", pair_host}}),
      &workload_bytes_.Add({{"workload", workload}, {"destination", pair_host}, {"direction", "out"}}),
      &workload_bytes_.Add({{"workload", workload}, {"destination", pair_host}, {"direction", "in"}}),
  };
}

bool CountingSink::Submit(v1::Verdict verdict) {
  // A write-ahead record is counted once, when it completes.
  if (verdict.phase() == v1::Verdict::OPEN) return next_ ? next_->Submit(std::move(verdict)) : true;
  const std::string action = ActionLabel(verdict.action());
  const std::string mode = ModeLabel(verdict.mode());
  verdict_counters_.Get(mode + '\n' + action, [&] {
    return &verdicts_.Add({{"mode", mode}, {"action", action}});
  })->Increment();
  for (const auto& f : verdict.findings()) {
    const std::string finding_action = ActionLabel(f.action());
    finding_counters_.Get(f.category() + '\n' + finding_action, [&] {
      return &findings_.Add({{"category", categories_.Bound(f.category())}, {"action", finding_action}});
    })->Increment();
  }
  const std::string host = verdict.host().empty() ? "none" : verdict.host();
  const std::string workload = verdict.workload().empty() ? "unmapped" : verdict.workload();
  PairCounters c = pair_counters_.Get(workload + '\n' + host, [&] { return MakePairCounters(workload, host); });
  const double out = static_cast<double>(verdict.bytes_out());
  const double in = static_cast<double>(verdict.bytes_in());
  c.destination_out->Increment(out);
  c.destination_in->Increment(in);
  c.requests->Increment();
  c.bytes_out->Increment(out);
  c.bytes_in->Increment(in);
  return next_ ? next_->Submit(std::move(verdict)) : true;
}

}  // namespace egressguard::admin
