#pragma once
// Which SIMD paths the engine may take on this CPU. The AVX2 paths (digit gate,
// letter-prefix test) have scalar twins with the same results; setting
// EGRESSGUARD_NO_AVX2 in the environment forces the scalar ones, so the test suite
// runs both on an AVX2 machine and a CPU without AVX2 is never the first to see them.

namespace egressguard::dlp {

bool UseAvx2();

}  // namespace egressguard::dlp
