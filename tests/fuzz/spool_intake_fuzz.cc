// The verdict spool's intake replay (appliance/reporter/spool.cc): whatever a damaged
// `<spool>.intake` holds, Open replays the whole records before the first bad one and
// never crashes, the counts agree with what Peek gives, and the spool keeps working.
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "appliance/reporter/spool.h"

using egressguard::reporter::Spool;
using egressguard::reporter::SpoolOptions;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string dir = [] {
    char tmpl[] = "/tmp/spool-intake-fuzz.XXXXXX";
    const char* d = mkdtemp(tmpl);
    if (d == nullptr) std::abort();
    return std::string(d);
  }();
  const std::string path = dir + "/spool.db";
  for (const char* suffix : {"", "-wal", "-shm", ".intake"}) std::filesystem::remove(path + suffix);
  {
    std::ofstream intake(path + ".intake", std::ios::binary);
    intake.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  SpoolOptions o;
  o.path = path;
  auto spool = Spool::Open(o);
  if (!spool.ok()) return 0;  // refused with a reason is an answer too
  auto all = (*spool)->Peek(0, 100000);
  if (!all.ok()) return 0;
  // Open closed every OPEN record it replayed: all of them are sendable.
  if (all->size() != (*spool)->size()) std::abort();
  egressguard::v1::Verdict v;
  v.set_id("after-replay");
  if (!(*spool)->Append(v).ok()) std::abort();
  auto again = (*spool)->Peek(0, 100000);
  if (!again.ok() || again->size() != all->size() + 1) std::abort();
  return 0;
}
