#!/usr/bin/env bash
# What the compliance record costs a keep-alive request (issue 20): two egressguard
# binaries, each run as it is deployed with a store (`--store`, the verdict spool, no
# JSONL log), measured by bench/proxy_bench.sh's keep-alive run (proxy CPU per request:
# user+system of the process, /proc) in alternating pairs, so both see the same machine.
#
#   bench/record_bench.sh --old PATH/TO/egressguard --new PATH/TO/egressguard [--pairs N]
#
# One `egressguard store` (the new binary, a temporary sqlite file) serves both, with the
# shipped pack pushed and activated in enforce mode. Each binary keeps its own spool
# across its runs, so from the second run on it starts from its cached pack. Prints the
# per-run figures, the medians and new/old. Knobs: EGB_SECONDS (default 5), EGB_CONNS (16).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
OLD="" NEW="" PAIRS=5
while [[ $# -gt 0 ]]; do
  case "$1" in
    --old) OLD="${2:?}"; shift ;;
    --new) NEW="${2:?}"; shift ;;
    --pairs) PAIRS="${2:?}"; shift ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[[ -x "$OLD" && -x "$NEW" ]] || { echo "--old and --new must name egressguard binaries" >&2; exit 2; }

WORK=$(mktemp -d /tmp/egressguard-record-bench.XXXXXX)
STORE_PID=""
cleanup() { [[ -n "$STORE_PID" ]] && kill "$STORE_PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
STORE="127.0.0.1:$PORT"
"$NEW" store --listen "$STORE" --db "$WORK/store.db" > "$WORK/store.out" 2> "$WORK/store.err" &
STORE_PID=$!
for _ in $(seq 100); do grep -q "listening on" "$WORK/store.out" 2>/dev/null && break; sleep 0.1; done
grep -q "listening on" "$WORK/store.out" || { echo "store did not start: $(tail -3 "$WORK/store.err")" >&2; exit 1; }
version=$(sed -n 's/^version:[[:space:]]*"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$ROOT/rules/default/pack.yaml" | head -1)
"$NEW" rules push "$ROOT/rules/default" --reason bench --store "$STORE" > /dev/null
"$NEW" rules activate "$version" --mode enforce --reason bench --store "$STORE" > /dev/null

run() {  # binary label -> prints keep-alive CPU us/req
  local out="$WORK/$2-$3.txt"
  EGB_TARGETS=egressguard EGB_METRICS=keepalive EGB_REPS=1 EGB_IDLE=0 EGB_EG_AUDIT=0 \
    EGB_EG_ARGS="--store $STORE --spool $WORK/spool-$2.db" \
    "$HERE/proxy_bench.sh" --bin "$1" --out "$out" > "$WORK/$2-$3.log" 2>&1 ||
    { echo "proxy_bench failed for $2: $(tail -5 "$WORK/$2-$3.log")" >&2; exit 1; }
  awk '/^keep-alive CPU us\/req/ {print $4}' "$out"
}

# A proxy started without a pack refuses until the store's arrives; proxy_bench checks at
# once, so each binary first fetches the pack into the cache beside its spool.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=seed \
  -keyout "$WORK/seed.key" -out "$WORK/seed.pem" 2> /dev/null
chmod 600 "$WORK/seed.key"
seed() {  # binary label
  "$1" proxy --listen 127.0.0.1:0 --ca-cert "$WORK/seed.pem" --ca-key "$WORK/seed.key" --store "$STORE" \
    --spool "$WORK/spool-$2.db" > "$WORK/seed-$2.out" 2>&1 &
  local pid=$!
  for _ in $(seq 300); do [[ -s "$WORK/spool-$2.pack-cache" ]] && break; sleep 0.1; done
  kill "$pid"; wait "$pid" 2>/dev/null || true
  [[ -s "$WORK/spool-$2.pack-cache" ]] || { echo "$2: no pack from the store: $(tail -3 "$WORK/seed-$2.out")" >&2; exit 1; }
}
seed "$OLD" old
seed "$NEW" new
run "$OLD" old warmup > /dev/null
run "$NEW" new warmup > /dev/null
old_all="" new_all=""
for i in $(seq "$PAIRS"); do
  if (( i % 2 )); then a=$(run "$OLD" old "$i"); b=$(run "$NEW" new "$i"); else b=$(run "$NEW" new "$i"); a=$(run "$OLD" old "$i"); fi
  echo "pair $i: keep-alive CPU us/req old $a new $b"
  old_all="$old_all $a" new_all="$new_all $b"
done
median() { tr ' ' '\n' <<<"$1" | grep -v '^$' | sort -g | awk '{v[NR]=$1} END{if(NR%2){print v[(NR+1)/2]} else {print (v[NR/2]+v[NR/2+1])/2}}'; }
mo=$(median "$old_all") mn=$(median "$new_all")
echo "median keep-alive CPU us/req: old $mo, new $mn, new/old $(awk -v a="$mn" -v b="$mo" 'BEGIN{printf "%.3f", a/b}')"
