#!/usr/bin/env bash
# The leaf-minting benchmark (issue 4) against the raw `openssl speed` signing rate of the
# same key type, measured in ONE run: rounds of `openssl speed ecdsap256` and `ca_bench`
# alternate on the same core, so both see the same machine.
#
#   bench/ca_bench.sh [--rounds N] [--cpu C] [--bin PATH/TO/ca_bench]
#
# Each round: `openssl speed -elapsed -seconds 3 ecdsap256`, then `ca_bench` (cache miss in the
# steady state of a full 10k-entry cache, the openssl-speed-style signature in-process,
# cache hit), median of its 5 repetitions. Every figure is wall time per operation on one
# pinned core: `openssl speed` counts only user CPU time unless given -elapsed, and so
# leaves out the kernel half of the getpid() its DRBG makes for every signature's nonce,
# which a CPU-time figure for ca_bench would include. Prints a row per round and the
# median of the rounds.
#
# Targets (issue 4): a miss costs at most 1.5x one raw ECDSA P-256 signature; a hit >= 2 M/s.
set -euo pipefail

usage() { sed -n '2,/^set /p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; exit 2; }

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ROUNDS=3
CPU=1
BIN="$ROOT/build/bench/ca_bench"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --rounds) ROUNDS="${2:?--rounds wants a number}"; shift ;;
    --cpu) CPU="${2:?--cpu wants a core number}"; shift ;;
    --bin) BIN="${2:?--bin wants a path}"; shift ;;
    -h|--help) usage ;;
    *) echo "ca_bench.sh: unknown argument '$1'" >&2; usage ;;
  esac
  shift
done
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || { echo "ca_bench.sh: --rounds must be a positive number" >&2; exit 2; }
[[ -x "$BIN" ]] || { echo "ca_bench.sh: no ca_bench at $BIN (build first: scripts/build.sh)" >&2; exit 2; }
command -v openssl >/dev/null || { echo "ca_bench.sh: the openssl CLI is missing (apt-get install openssl)" >&2; exit 2; }
command -v python3 >/dev/null || { echo "ca_bench.sh: python3 is missing (apt-get install python3)" >&2; exit 2; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

for ((r = 1; r <= ROUNDS; ++r)); do
  echo "round $r/$ROUNDS: openssl speed ecdsap256" >&2
  # -mr: "+F4:<n>:256:<sign/s>:<verify/s>".
  taskset -c "$CPU" openssl speed -elapsed -mr -seconds 3 ecdsap256 2>/dev/null |
    awk -F: '$1 == "+F4" && $3 == 256 { print $4 }' >"$work/speed.$r"
  [[ -s "$work/speed.$r" ]] || { echo "ca_bench.sh: could not read openssl speed's sign rate" >&2; exit 1; }
  echo "round $r/$ROUNDS: ca_bench" >&2
  taskset -c "$CPU" "$BIN" --benchmark_repetitions=5 --benchmark_report_aggregates_only=true \
    --benchmark_filter='SpeedStyle|BM_MintForMiss$|BM_CacheHitLookup|BM_MintForHit' \
    --benchmark_format=json --benchmark_out="$work/bench.$r.json" --benchmark_out_format=json >/dev/null
done

python3 - "$work" "$ROUNDS" <<'EOF'
import json, statistics, sys

work, rounds = sys.argv[1], int(sys.argv[2])
rows = []
for r in range(1, rounds + 1):
    speed_us = 1e6 / float(open(f"{work}/speed.{r}").read().split()[0])
    med = {}
    for b in json.load(open(f"{work}/bench.{r}.json"))["benchmarks"]:
        if b.get("aggregate_name") == "median":
            scale = {"ns": 1e-3, "us": 1.0, "ms": 1e3}[b["time_unit"]]
            med[b["run_name"]] = b["real_time"] * scale
    rows.append((speed_us, med["BM_RawEcdsaP256SignSpeedStyle"], med["BM_MintForMiss"],
                 med["BM_CacheHitLookup"], med["BM_MintForHit"]))

print("wall time per operation, one pinned core; ca_bench cells are the median of 5 repetitions")
print(f"{'round':>5} {'openssl speed':>14} {'in-process':>11} {'miss':>8} {'miss/speed':>11} "
      f"{'miss/in-proc':>13} {'hit lookup':>11} {'MintFor hit':>12}")
def show(label, speed, inproc, miss, hit, mint_hit):
    print(f"{label:>5} {speed:>11.1f} us {inproc:>8.1f} us {miss:>5.1f} us {miss / speed:>10.2f}x "
          f"{miss / inproc:>12.2f}x {1 / hit:>7.1f} M/s {1 / mint_hit:>8.2f} M/s")
for i, row in enumerate(rows, 1):
    show(str(i), *row)
show("med", *(statistics.median(col) for col in zip(*rows)))
ratio = statistics.median(row[2] / row[0] for row in rows)
hit = 1 / statistics.median(row[3] for row in rows)
print(f"\ncache miss = {ratio:.2f}x one `openssl speed` ECDSA P-256 signature (target <= 1.5x): "
      f"{'met' if ratio <= 1.5 else 'MISSED'}")
print(f"cache hit lookup = {hit:.1f} M/s (target >= 2 M/s): {'met' if hit >= 2 else 'MISSED'}")
EOF
