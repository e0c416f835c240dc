#include "appliance/cli/command.h"

#include <iostream>

namespace egressguard::cli {

int NotBuiltYet(const std::string& what, int issue) {
  std::cerr << "egressguard " << what << ": not built yet (tracked in issue " << issue
            << "); nothing was done\n";
  return kExitError;
}

}  // namespace egressguard::cli
