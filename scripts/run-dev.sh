#!/usr/bin/env bash
# Starts the appliance on its embedded default: loopback listeners, a dev CA generated
# on first run and a sqlite store, all under ./var (override with EGRESSGUARD_HOME).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
scripts/build.sh
home=${EGRESSGUARD_HOME:-$PWD/var}
mkdir -p "$home"
chmod 700 "$home"
exec build/appliance/egressguard run --home "$home" "$@"
