#pragma once
// The active engine, swapped atomically when a new rule pack is compiled. Workers read
// it once per message; a message keeps the engine it started with, so in-flight
// traffic finishes on the old database while new messages use the new one.

#include <atomic>
#include <memory>

#include "dlp/engine.h"

namespace egressguard::dlp {

class EngineHolder {
 public:
  EngineHolder() = default;
  explicit EngineHolder(EnginePtr initial) : engine_(std::move(initial)) {}

  // Null until a pack has been compiled: callers fail closed (or open, if configured).
  EnginePtr Current() const { return engine_.load(std::memory_order_acquire); }
  void Swap(EnginePtr next) { engine_.store(std::move(next), std::memory_order_release); }

 private:
  std::atomic<EnginePtr> engine_;
};

}  // namespace egressguard::dlp
