#!/usr/bin/env bash
# The test command: installs what is missing, builds, and runs the whole suite (ctest).
# EGRESSGUARD_SANITIZE=1 runs it under ASan+UBSan in build-asan/.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
scripts/build.sh
dir=build
[[ "${EGRESSGUARD_SANITIZE:-0}" == 1 ]] && dir=build-asan
ctest --test-dir "$dir" --output-on-failure --parallel "$(nproc)" "$@"
