#!/usr/bin/env bash
# Configures and builds egressguard. Usage: scripts/build.sh [BUILD_DIR] [extra cmake args...]
# EGRESSGUARD_SANITIZE=1 builds with ASan+UBSan (default dir build-asan).
set -euo pipefail
cd "$(dirname "$0")/.."

default_dir=build
san=OFF
if [[ "${EGRESSGUARD_SANITIZE:-0}" == 1 ]]; then
  default_dir=build-asan
  san=ON
fi
dir=${1:-$default_dir}
shift || true

# ccache keys on paths relative to the checkout and ignores the build folder's path
# (which -g would otherwise hash), so clean clones in other folders share the cache.
export CCACHE_BASEDIR=$PWD
export CCACHE_NOHASHDIR=1
cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE="${CMAKE_BUILD_TYPE:-RelWithDebInfo}" \
  -DEGRESSGUARD_SANITIZE="$san" "$@" >/dev/null
cmake --build "$dir" --parallel "$(nproc)"
