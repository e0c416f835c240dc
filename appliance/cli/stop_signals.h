#pragma once
// The long-running commands (proxy, store, run) stop on SIGTERM or SIGINT. The signals
// are blocked before any worker thread starts, so threads inherit the mask and only the
// main thread's sigwait sees them: no handler runs inside a worker.

#include <csignal>

namespace egressguard::cli {

class StopSignals {
 public:
  // Blocks SIGTERM and SIGINT in the calling thread (and every thread it starts later)
  // and ignores SIGPIPE, which a peer closing a socket would otherwise raise.
  StopSignals() {
    sigemptyset(&set_);
    sigaddset(&set_, SIGTERM);
    sigaddset(&set_, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set_, nullptr);
    std::signal(SIGPIPE, SIG_IGN);
  }
  // Blocks until one of them arrives and returns its number.
  int Wait() const {
    int sig = 0;
    sigwait(&set_, &sig);
    return sig;
  }

 private:
  sigset_t set_{};
};

}  // namespace egressguard::cli
