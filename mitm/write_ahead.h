#pragma once
// The write-ahead record of one transaction (DESIGN: nothing leaves without its
// record). Before a transaction's first byte goes upstream its verdict is submitted
// with phase OPEN: who, where, the findings so far, the decision. The verdict that
// ends the transaction completes it: the same id and time, the duration since. A
// sink that keeps write-ahead records (the reporter's spool) replaces the OPEN one
// with its completion; a process that dies first leaves it to the next start, which
// closes it as INTERRUPTED.

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "egressguard/v1/verdict.pb.h"

namespace egressguard::mitm {

class WriteAhead {
 public:
  // Turns `v` into the write-ahead record and remembers it.
  void Open(v1::Verdict& v) {
    v.set_phase(v1::Verdict::OPEN);
    record_ = v;
    start_ = std::chrono::steady_clock::now();
  }
  bool open() const { return !record_.id().empty(); }
  // Makes `v` the record's completion. No-op when none was written.
  void Complete(v1::Verdict& v) {
    if (!open()) return;
    v.set_id(record_.id());
    *v.mutable_time() = record_.time();
    v.set_phase(v1::Verdict::COMPLETE);
    v.set_duration_us(static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start_).count()));
    record_.Clear();
  }
  // The record closed without a completion (the connection ended first): what was
  // known when it was written, INTERRUPTED. Empty when none is open.
  std::optional<v1::Verdict> Abandon(std::string_view why) {
    if (!open()) return std::nullopt;
    v1::Verdict v = std::move(record_);
    record_.Clear();
    v.set_phase(v1::Verdict::INTERRUPTED);
    v.set_reason(v.reason().empty() ? std::string(why) : v.reason() + "; " + std::string(why));
    return v;
  }

 private:
  v1::Verdict record_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace egressguard::mitm
