#pragma once
// Where the proxy hands each finished verdict. Owned by mitm/; implemented by the
// JSONL audit-log sink (mitm/) and the spooling gRPC reporter (appliance/).

#include <memory>

#include "egressguard/v1/verdict.pb.h"

namespace egressguard::mitm {

class VerdictSink {
 public:
  virtual ~VerdictSink() = default;
  // Called from worker threads; must be thread-safe and must not block on the network.
  // Returns false when the sink refused the verdict (spool full in fail-closed mode):
  // the proxy then treats the transaction as not allowed to proceed.
  virtual bool Submit(v1::Verdict verdict) = 0;
  // Whether a verdict submitted now would be recorded (the spool has room). Asked before
  // a transaction is forwarded: in enforce mode one that cannot be recorded is refused.
  virtual bool CanAccept() const { return true; }
  // Whether the sink keeps write-ahead records: a verdict with phase OPEN submitted before
  // a transaction's first byte goes upstream, completed by a later verdict with the same
  // id (the reporter's spool). A sink that does not (a JSONL file) gets completions only.
  virtual bool KeepsWriteAhead() const { return false; }
};
using VerdictSinkPtr = std::shared_ptr<VerdictSink>;

}  // namespace egressguard::mitm
