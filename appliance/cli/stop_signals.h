#pragma once
// The long-running commands (proxy, store, run) stop on SIGTERM or SIGINT and reload
// their config on SIGHUP. The signals are blocked before any worker thread starts, so
// threads inherit the mask and only the main thread's sigwait sees them: no handler
// runs inside a worker.

#include <csignal>

namespace egressguard::cli {

class StopSignals {
 public:
  // Blocks SIGTERM, SIGINT and SIGHUP in the calling thread (and every thread it
  // starts later) and ignores SIGPIPE, which a peer closing a socket would otherwise raise.
  StopSignals() {
    sigemptyset(&set_);
    sigaddset(&set_, SIGTERM);
    sigaddset(&set_, SIGINT);
    sigaddset(&set_, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set_, nullptr);
    std::signal(SIGPIPE, SIG_IGN);
  }
  // Blocks until one of them arrives and returns its number.
  int Wait() const {
    int sig = 0;
    sigwait(&set_, &sig);
    return sig;
  }
  // SIGHUP asks for a reload, every other signal here for a stop.
  static bool IsReload(int sig) { return sig == SIGHUP; }

 private:
  sigset_t set_{};
};

}  // namespace egressguard::cli
