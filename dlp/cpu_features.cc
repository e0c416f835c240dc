#include "dlp/cpu_features.h"

#include "dlp/decode/simd.h"

namespace egressguard::dlp {

// One switch for the engine's kernels and the decoders' (dlp/decode/simd.h).
bool UseAvx2() { return decode::simd::UseAvx2(); }

}  // namespace egressguard::dlp
