#include "dlp/cpu_features.h"

#include <cstdlib>

namespace egressguard::dlp {

bool UseAvx2() {
  static const bool use = [] {
    if (const char* off = std::getenv("EGRESSGUARD_NO_AVX2"); off != nullptr && *off != '\0') return false;
#if defined(__x86_64__)
    return __builtin_cpu_supports("avx2") != 0;
#else
    return false;
#endif
  }();
  return use;
}

}  // namespace egressguard::dlp
