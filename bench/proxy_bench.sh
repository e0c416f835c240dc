#!/usr/bin/env bash
# The proxy benchmark (issue 5): direct-to-origin, egressguard, sslsplit and Squid SslBump
# measured side by side in ONE run on loopback, every one of them really decrypting and
# verifying the origin, against the same nginx HTTPS origin with the same client.
#
#   bench/proxy_bench.sh [--quick] [--out FILE] [--bin PATH/TO/egressguard]
#
# Prints one table: absolute figures, ratios relative to direct, and egressguard/sslsplit.
# The machine is shared, so the targets run interleaved (round-robin, metric by metric,
# EGB_REPS times) and each cell is the median of its repetitions.
#
# Knobs (environment; defaults finish in well under 10 minutes, --quick in under 1):
#   EGB_REPS=3           repetitions of the whole round-robin
#   EGB_SECONDS=5        seconds per new-connection and keep-alive run
#   EGB_LAT_SECONDS=2    seconds per latency run (one connection at a time)
#   EGB_CONNS=16         concurrent client connections for the rate runs
#   EGB_SIZE_MIB=256     upload and download size
#   EGB_IDLE=1000        idle bumped connections for the RSS figure (0: skip; measured first)
#   EGB_METRICS="newconn keepalive latency download upload"   the timed runs to do
#   EGB_TARGETS="direct egressguard sslsplit squid"
#   EGB_EG_WORKERS=2     egressguard worker threads (one per core here)
#   EGB_NGINX_WORKERS=2  origin worker processes
#   EGB_SQUID_WORKERS=1  Squid SMP workers (1 is Squid's default)
#   EGB_EG_AUDIT=1       egressguard writes its JSONL verdict log (what it does in service)
#   EGB_EG_ARGS=""       extra egressguard proxy flags
#   EGB_KEEP=0           keep the work directory (logs, configs) for a post-mortem
#   EGB_EG_START=15      seconds egressguard may take to listen (more under valgrind/callgrind)
#
# Installs what it needs with apt-get (sslsplit, squid-openssl, nginx-light, gcc,
# libssl-dev, curl) on first use. Nothing but loopback is ever touched.
set -euo pipefail

usage() { sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
OUT=""
QUICK=0
BIN="${EGRESSGUARD_BIN:-}"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --out) OUT="${2:?--out wants a file}"; shift ;;
    --bin) BIN="${2:?--bin wants a path}"; shift ;;
    -h|--help) usage ;;
    *) echo "proxy_bench: unknown argument '$1'" >&2; usage ;;
  esac
  shift
done

if [[ $QUICK == 1 ]]; then
  : "${EGB_REPS:=1}" "${EGB_SECONDS:=1}" "${EGB_LAT_SECONDS:=0.5}" "${EGB_SIZE_MIB:=16}" "${EGB_IDLE:=200}"
fi
REPS="${EGB_REPS:-3}"
SECS="${EGB_SECONDS:-5}"
LAT_SECS="${EGB_LAT_SECONDS:-2}"
CONNS="${EGB_CONNS:-16}"
SIZE_MIB="${EGB_SIZE_MIB:-256}"
IDLE="${EGB_IDLE:-1000}"
TARGETS=(${EGB_TARGETS:-direct egressguard sslsplit squid})
EG_WORKERS="${EGB_EG_WORKERS:-2}"
NGINX_WORKERS="${EGB_NGINX_WORKERS:-2}"
SQUID_WORKERS="${EGB_SQUID_WORKERS:-1}"
EG_AUDIT="${EGB_EG_AUDIT:-1}"

die() { echo "proxy_bench: $*" >&2; exit 2; }
log() { echo "[$(date +%T)] $*" >&2; }

if [[ " ${TARGETS[*]} " == *" egressguard "* ]]; then
  [[ -n "$BIN" ]] || BIN="$ROOT/build/appliance/egressguard"
  [[ -x "$BIN" ]] || die "no egressguard binary at '$BIN': build it (./scripts/build.sh) or pass --bin"
  BIN="$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")"
fi

# --- packages ---------------------------------------------------------------------------
need=()
command -v sslsplit >/dev/null || need+=(sslsplit)
[[ -x /usr/sbin/squid && -x /usr/lib/squid/security_file_certgen ]] || need+=(squid-openssl)
command -v nginx >/dev/null || need+=(nginx-light)
command -v gcc >/dev/null || need+=(gcc)
[[ -f /usr/include/openssl/ssl.h ]] || need+=(libssl-dev)
command -v curl >/dev/null || need+=(curl)
command -v openssl >/dev/null || need+=(openssl)
if [[ ${#need[@]} -gt 0 ]]; then
  [[ $(id -u) == 0 ]] || die "needs ${need[*]}: run as root (apt-get) or install them"
  log "installing ${need[*]}"
  # Debian starts a package's service on install; the bench starts its own instances on
  # free loopback ports, so keep the packaged ones (squid on :3128, nginx on :80) down.
  made_policy=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && made_policy=1
  fi
  apt-get update -qq >/dev/null || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  [[ $made_policy == 1 ]] && rm -f /usr/sbin/policy-rc.d
fi

# --- work dir and cleanup ---------------------------------------------------------------
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_workdir bench

# --- PKI: origin root + origin leaf, and the interception CA all three proxies use -----
log "PKI, data and load client in $WORK"
cd "$WORK"
make_bench_pki

# --- data: text without PII (base64 of random bytes), so the DLP engine scans but never blocks
mkdir -p www
head -c 1024 /dev/zero | tr '\0' 'a' > www/1k
make_base64_text www/blob $((SIZE_MIB * 1024 * 1024))
SIZE_BYTES=$(stat -c %s www/blob)
chmod -R a+rX www

gcc -O2 -o loadgen "$HERE/proxy_bench/loadgen.c" -lssl -lcrypto -lpthread || die "cannot build the load client"

# --- origin: nginx ----------------------------------------------------------------------
ORIGIN_PORT=$(free_port)
mkdir -p "$SHM/up" "$SHM/tmp"
chown -R www-data "$SHM" 2>/dev/null || chmod -R 777 "$SHM"
cat > nginx.conf <<EOF
user www-data;
worker_processes $NGINX_WORKERS;
worker_rlimit_nofile 65536;
daemon off;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log warn;
events { worker_connections 16384; }
http {
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 300s;
  client_body_temp_path $SHM/tmp;
  server {
    listen 127.0.0.1:$ORIGIN_PORT ssl;
    ssl_certificate $WORK/origin.pem;
    ssl_certificate_key $WORK/origin.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    root $WORK/www;
    # PUT answers only once the whole body is stored: upload timing is the full transfer.
    location /up/ { root $SHM; dav_methods PUT; client_max_body_size 0; }
  }
}
EOF
nginx -e "$WORK/nginx-error.log" -c "$WORK/nginx.conf" > nginx.out 2>&1 &
NGINX_PID=$!; PIDS+=($NGINX_PID)
wait_port "$ORIGIN_PORT" "$NGINX_PID" nginx

# --- egressguard ------------------------------------------------------------------------
EG_PORT=0
if [[ " ${TARGETS[*]} " == *" egressguard "* ]]; then
  eg_audit=()
  [[ $EG_AUDIT == 1 ]] && eg_audit=(--audit-log "$WORK/egressguard-audit.jsonl")
  # The default pack (no --rules), enforce mode, the bench PKI added to the system trust.
  : > egressguard.out  # exists before the port poll reads it, however late the child opens it
  "$BIN" proxy --listen 127.0.0.1:0 --ca-cert bench-ca.pem --ca-key bench-ca.key --upstream-ca origin-root.pem \
    --mode enforce --workers "$EG_WORKERS" --allow localhost --max-connections 20000 \
    "${eg_audit[@]}" ${EGB_EG_ARGS:-} > egressguard.out 2> egressguard.err &
  EG_PID=$!; PIDS+=($EG_PID)
  for _ in $(seq $((${EGB_EG_START:-15} * 10))); do
    EG_PORT=$(sed -n 's/.*listening on [^ ]*:\([0-9][0-9]*\) .*/\1/p' egressguard.out | head -1)
    [[ -n "$EG_PORT" ]] && break
    kill -0 "$EG_PID" 2>/dev/null || die "egressguard exited at start: $(tail -5 egressguard.err)"
    sleep 0.1
  done
  [[ -n "$EG_PORT" ]] || die "egressguard did not report its port"
fi

# --- sslsplit: decrypts (ssl spec, fixed target), verifies the origin against the bench root
SS_PORT=0
if [[ " ${TARGETS[*]} " == *" sslsplit "* ]]; then
  SS_PORT=$(free_port)
  cat > sslsplit.conf <<EOF
CACert $WORK/bench-ca.pem
CAKey $WORK/bench-ca.key
VerifyPeer yes
Daemon no
EOF
  # sslsplit verifies with OpenSSL's default paths, which SSL_CERT_FILE points at.
  SSL_CERT_FILE="$WORK/origin-root.pem" sslsplit -f sslsplit.conf ssl 127.0.0.1 "$SS_PORT" 127.0.0.1 "$ORIGIN_PORT" \
    > sslsplit.out 2>&1 &
  SS_PID=$!; PIDS+=($SS_PID)
  wait_port "$SS_PORT" "$SS_PID" sslsplit
fi

# --- Squid SslBump (squid-openssl): bump all, leaves from security_file_certgen -------
SQ_PORT=0
if [[ " ${TARGETS[*]} " == *" squid "* ]]; then
  SQ_PORT=$(free_port)
  mkdir -p squid
  /usr/lib/squid/security_file_certgen -c -s "$WORK/squid/ssl_db" -M 16MB > /dev/null
  chown -R proxy:proxy squid
  cat > squid.conf <<EOF
http_port 127.0.0.1:$SQ_PORT ssl-bump tls-cert=$WORK/bench-ca.pem tls-key=$WORK/bench-ca.key generate-host-certificates=on dynamic_cert_mem_cache_size=16MB
sslcrtd_program /usr/lib/squid/security_file_certgen -s $WORK/squid/ssl_db -M 16MB
sslcrtd_children 8 startup=2 idle=1
ssl_bump bump all
tls_outgoing_options cafile=$WORK/origin-root.pem
workers $SQUID_WORKERS
http_access allow localhost
http_access deny all
cache deny all
cache_mem 0 MB
access_log none
cache_store_log none
cache_log $WORK/squid/cache.log
pid_filename $WORK/squid/squid.pid
coredump_dir $WORK/squid
cache_effective_user proxy
max_filedescriptors 65536
client_request_buffer_max_size 1 MB
shutdown_lifetime 1 second
EOF
  squid -f "$WORK/squid.conf" --foreground > squid.out 2>&1 &
  SQ_PID=$!; PIDS+=($SQ_PID)
  wait_port "$SQ_PORT" "$SQ_PID" squid
fi

# --- how each target is reached -----------------------------------------------------
HOSTPORT="localhost:$ORIGIN_PORT"
client_args() {  # loadgen flags for target $1
  case "$1" in
    direct) echo "--connect 127.0.0.1:$ORIGIN_PORT --cafile $WORK/origin-root.pem" ;;
    egressguard) echo "--connect 127.0.0.1:$EG_PORT --tunnel $HOSTPORT --cafile $WORK/bench-ca.pem" ;;
    sslsplit) echo "--connect 127.0.0.1:$SS_PORT --cafile $WORK/bench-ca.pem" ;;
    squid) echo "--connect 127.0.0.1:$SQ_PORT --tunnel $HOSTPORT --cafile $WORK/bench-ca.pem" ;;
  esac
}
curl_args() {  # curl flags for target $1: same URL, SNI and Host for all
  case "$1" in
    direct) echo "--cacert $WORK/origin-root.pem" ;;
    egressguard) echo "--proxy http://127.0.0.1:$EG_PORT --cacert $WORK/bench-ca.pem" ;;
    sslsplit) echo "--connect-to localhost:$ORIGIN_PORT:127.0.0.1:$SS_PORT --cacert $WORK/bench-ca.pem" ;;
    squid) echo "--proxy http://127.0.0.1:$SQ_PORT --cacert $WORK/bench-ca.pem" ;;
  esac
}
target_pid() {
  case "$1" in egressguard) echo "${EG_PID:-}" ;; sslsplit) echo "${SS_PID:-}" ;; squid) echo "${SQ_PID:-}" ;; *) echo "" ;; esac
}
# VmRSS in KiB of a process and all its descendants (Squid: master, kids and helpers).
tree_rss() {
  local total=0 p
  local -a todo=("$1")
  while [[ ${#todo[@]} -gt 0 ]]; do
    p=${todo[0]}; todo=("${todo[@]:1}")
    total=$((total + $(awk '/^VmRSS:/{print $2}' "/proc/$p/status" 2>/dev/null || echo 0)))
    for c in $(ps -o pid= --ppid "$p" 2>/dev/null); do todo+=("$c"); done
  done
  echo "$total"
}

# CPU seconds (user + system, all threads) of a process and its descendants: on a shared
# machine CPU per request is steadier than requests per second.
tree_cpu() {
  local total=0 p
  local -a todo=("$1")
  local tck; tck=$(getconf CLK_TCK)
  while [[ ${#todo[@]} -gt 0 ]]; do
    p=${todo[0]}; todo=("${todo[@]:1}")
    total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
    for c in $(ps -o pid= --ppid "$p" 2>/dev/null); do todo+=("$c"); done
  done
  awk -v t="$total" -v k="$tck" 'BEGIN{printf "%.3f", t/k}'
}

declare -A RES ERRS
add() { RES[$1,$2]="${RES[$1,$2]:-} $3"; }
NERR=0
err() { ERRS[$1,$2]="${ERRS[$1,$2]:-}$3 "; NERR=$((NERR + 1)); log "  $2 $1: $3"; }

declare -A HANDSHAKE
# Every target must answer through real interception before anything is timed: the
# client trusts only the bench CA for the proxies, so a splice would fail here.
for t in "${TARGETS[@]}"; do
  code=$(curl -sS -o /dev/null -w '%{http_code}' $(curl_args "$t") "https://$HOSTPORT/1k" 2> curl.err || true)
  [[ "$code" == 200 ]] || die "$t does not serve the origin (HTTP '$code'): $(cat curl.err)"
  case "$t" in
    direct) sc=(-connect "127.0.0.1:$ORIGIN_PORT") ;;
    egressguard) sc=(-proxy "127.0.0.1:$EG_PORT" -connect "$HOSTPORT") ;;
    sslsplit) sc=(-connect "127.0.0.1:$SS_PORT") ;;
    squid) sc=(-proxy "127.0.0.1:$SQ_PORT" -connect "$HOSTPORT") ;;
  esac
  openssl s_client "${sc[@]}" -servername localhost < /dev/null > "sclient-$t.txt" 2>&1 || true
  tls=$(sed -n 's/^New, \(TLSv[0-9.]*\), Cipher is \(.*\)/\1 \2/p' "sclient-$t.txt" | head -1)
  leaf=$(openssl x509 -noout -text -in "sclient-$t.txt" 2>/dev/null | sed -n 's/^ *Public Key Algorithm: //p; s/^ *Public-Key: //p' | tr '\n' ' ')
  issuer=$(openssl x509 -noout -issuer -in "sclient-$t.txt" 2>/dev/null | sed 's/issuer=//')
  HANDSHAKE[$t]="$tls, leaf $leaf issued by $issuer"
  log "$t ready: ${HANDSHAKE[$t]}"
done

LG=""  # run_loadgen's result, "rate p50 p99" or empty; a global so errors reach ERRS
LG_CPU_US=""  # the target's CPU microseconds per successful request in that run (no pid: empty)
run_loadgen() {  # target mode conns seconds
  local out ok errs pid cpu0=""
  pid=$(target_pid "$1")
  [[ -n "$pid" ]] && cpu0=$(tree_cpu "$pid")
  out=$(./loadgen --mode "$2" $(client_args "$1") --sni localhost --host "$HOSTPORT" --conns "$3" --seconds "$4" \
    --warmup 0.3 2>&1) || true
  ok=$(sed -n 's/.*ok=\([0-9]*\).*/\1/p' <<<"$out")
  errs=$(sed -n 's/.* err=\([0-9]*\).*/\1/p' <<<"$out")
  [[ "${errs:-0}" == 0 ]] || err "$2" "$1" "errors=$errs $(sed -n 's/.*\(first_error=[^ ]*\).*/\1/p' <<<"$out")"
  LG=""
  [[ -n "$ok" && "$ok" != 0 ]] || { err "$2" "$1" "no request succeeded: $out"; return 0; }
  LG=$(sed -n 's/.*rate=\([0-9.]*\) p50_ms=\([0-9.]*\) p99_ms=\([0-9.]*\).*/\1 \2 \3/p' <<<"$out")
  LG_CPU_US=""
  # ok leaves out the warm-up while the CPU includes it: a slight overestimate, the same
  # for every target.
  [[ -n "$cpu0" ]] && LG_CPU_US=$(awk -v a="$(tree_cpu "$pid")" -v b="$cpu0" -v n="$ok" 'BEGIN{printf "%.1f", (a-b)*1e6/n}')
  true
}

m_newconn() {
  run_loadgen "$1" new "$CONNS" "$SECS"
  [[ -z "$LG" ]] || add newconn "$1" "${LG%% *}"
  [[ -z "$LG" || -z "$LG_CPU_US" ]] || add newconn_cpu "$1" "$LG_CPU_US"
}
m_keepalive() {
  run_loadgen "$1" keepalive "$CONNS" "$SECS"
  [[ -z "$LG" ]] || add keepalive "$1" "${LG%% *}"
  [[ -z "$LG" || -z "$LG_CPU_US" ]] || add keepalive_cpu "$1" "$LG_CPU_US"
}
m_latency() {
  local a b
  run_loadgen "$1" new 1 "$LAT_SECS"
  if [[ -n "$LG" ]]; then read -r _ a b <<<"$LG"; add lat_new_p50 "$1" "$a"; add lat_new_p99 "$1" "$b"; fi
  run_loadgen "$1" keepalive 1 "$LAT_SECS"
  if [[ -n "$LG" ]]; then read -r _ a b <<<"$LG"; add lat_ka_p50 "$1" "$a"; add lat_ka_p99 "$1" "$b"; fi
  true
}
m_download() {
  local out code size speed
  out=$(curl -sS -o /dev/null -w '%{http_code} %{size_download} %{speed_download}' $(curl_args "$1") \
    "https://$HOSTPORT/blob" 2>curl.err || true)
  read -r code size speed <<<"$out"
  if [[ "$code" == 200 && "$size" == "$SIZE_BYTES" ]]; then
    add download "$1" "$(awk -v s="$speed" 'BEGIN{printf "%.1f", s/1e6}')"
  else err download "$1" "http=$code bytes=$size $(head -c 200 curl.err)"; fi
}
m_upload() {
  local out code size speed name="u-$1-$RANDOM" pid cpu0=""
  pid=$(target_pid "$1")
  [[ -n "$pid" ]] && cpu0=$(tree_cpu "$pid")
  out=$(curl -sS -o /dev/null -H 'Expect:' -H 'Content-Type: text/plain' -w '%{http_code} %{size_upload} %{speed_upload}' \
    $(curl_args "$1") -T www/blob "https://$HOSTPORT/up/$name" 2>curl.err || true)
  read -r code size speed <<<"$out"
  local stored; stored=$(stat -c %s "$SHM/up/$name" 2>/dev/null || echo 0)
  rm -f "$SHM/up/$name"
  if [[ ("$code" == 201 || "$code" == 204) && "$size" == "$SIZE_BYTES" && "$stored" == "$SIZE_BYTES" ]]; then
    add upload "$1" "$(awk -v s="$speed" 'BEGIN{printf "%.1f", s/1e6}')"
    # The target's CPU seconds per GB uploaded (user + system of its process tree).
    # (`if`, not `&&`: for `direct` there is no process, and a false test must not end the bench.)
    if [[ -n "$cpu0" ]]; then
      add upload_cpu "$1" "$(awk -v a="$(tree_cpu "$pid")" -v b="$cpu0" -v n="$SIZE_BYTES" 'BEGIN{printf "%.2f", (a-b)*1e9/n}')"
    fi
  else err upload "$1" "http=$code sent=$size stored=$stored $(head -c 200 curl.err)"; fi
}
m_idle() {
  local pid; pid=$(target_pid "$1")
  [[ -n "$pid" ]] || return 0
  sleep 1  # let the previous run's connections close
  local before after line out="idle-$1.out"
  before=$(tree_rss "$pid")
  : > "$out"
  ./loadgen --mode idle $(client_args "$1") --sni localhost --host "$HOSTPORT" --conns "$IDLE" --threads 8 --hold 2 \
    > "$out" 2>&1 &
  local lg=$!
  for _ in $(seq 600); do grep -q READY "$out" && break; kill -0 $lg 2>/dev/null || break; sleep 0.1; done
  sleep 0.5
  after=$(tree_rss "$pid")
  wait $lg || true
  line=$(grep READY "$out" || echo "READY ok=0")
  local ok; ok=$(sed -n 's/.*ok=\([0-9]*\).*/\1/p' <<<"$line")
  if [[ "${ok:-0}" -gt 0 ]]; then
    add rss "$1" "$(awk -v a="$after" -v b="$before" -v n="$ok" 'BEGIN{printf "%.1f", (a-b)/n}')"
    [[ "$ok" != "$IDLE" ]] && err idle "$1" "$line"
  else err idle "$1" "$line"; fi
  true
}

METRICS=(${EGB_METRICS-newconn keepalive latency download upload})
log "targets: ${TARGETS[*]}; ${REPS} reps; ${SECS}s rate runs at ${CONNS} conns; ${SIZE_MIB} MiB; ${IDLE} idle"
# Idle RSS first, once, on fresh processes: after the bulk runs an allocator hands freed
# memory back to new connections and the before/after difference would shrink to noise.
if [[ "$IDLE" -gt 0 ]]; then
  for t in "${TARGETS[@]}"; do m_idle "$t"; done
fi
for ((rep = 1; rep <= REPS; rep++)); do
  for m in "${METRICS[@]}"; do
    # Rotate the starting target each repetition so none always runs first.
    for ((k = 0; k < ${#TARGETS[@]}; k++)); do
      t=${TARGETS[$(((k + rep - 1) % ${#TARGETS[@]}))]}
      "m_$m" "$t"
    done
  done
  log "rep $rep/$REPS done"
done

# --- table ------------------------------------------------------------------------------
median() { tr ' ' '\n' <<<"$1" | grep -v '^$' | sort -g | awk '{v[NR]=$1} END{if(NR==0){print ""} else if(NR%2){print v[(NR+1)/2]} else {print (v[NR/2]+v[NR/2+1])/2}}'; }
declare -A MED
for key in "${!RES[@]}"; do MED[$key]=$(median "${RES[$key]}"); done
ratio() { [[ -n "${1:-}" && -n "${2:-}" ]] && awk -v a="$1" -v b="$2" 'BEGIN{if(b>0) printf "%.2f", a/b; else print "-"}' || echo "-"; }

{
  echo "egressguard proxy benchmark  $(date -u +%FT%TZ)  $(nproc) cores, loopback, $(uname -r)"
  [[ -n "$BIN" ]] && echo "egressguard: $BIN ($("$BIN" version 2>/dev/null | head -1 | tr -s ' '))"
  echo "sslsplit $(sslsplit -V 2>&1 | head -1 | awk '{print $2}'), squid $(squid -v | head -1 | awk '{print $4}'), nginx $(nginx -v 2>&1 | cut -d/ -f2), $(openssl version | cut -d' ' -f1-2)"
  echo "reps=$REPS seconds=$SECS conns=$CONNS size=${SIZE_MIB}MiB idle=$IDLE eg_workers=$EG_WORKERS squid_workers=$SQUID_WORKERS nginx_workers=$NGINX_WORKERS eg_audit=$EG_AUDIT; cells are medians"
  echo
  printf '%-26s' "metric"
  for t in "${TARGETS[@]}"; do printf '%12s' "$t"; done
  for t in "${TARGETS[@]}"; do [[ $t != direct ]] && printf '%12s' "${t:0:5}/dir"; done
  printf '%10s %s\n' "eg/ssl" "issue-5 goal"
  row() {  # key label goal
    printf '%-26s' "$2"
    for t in "${TARGETS[@]}"; do printf '%12s' "${MED[$1,$t]:--}"; done
    for t in "${TARGETS[@]}"; do [[ $t != direct ]] && printf '%12s' "$(ratio "${MED[$1,$t]:-}" "${MED[$1,direct]:-}")"; done
    printf '%10s %s\n' "$(ratio "${MED[$1,egressguard]:-}" "${MED[$1,sslsplit]:-}")" "${3:-}"
  }
  row newconn "new conn/s (1 KiB GET)" "eg/ssl >= 1.5"
  row keepalive "keep-alive req/s" "eg/ssl >= 1.5"
  row newconn_cpu "new conn CPU us/conn" ""
  row keepalive_cpu "keep-alive CPU us/req" ""
  row download "download MB/s" "eg/ssl >= 1.3"
  row upload "upload MB/s (scanned)" "eg/ssl >= 1.0"
  row upload_cpu "upload CPU s/GB" "eg/ssl <= 1.5"
  row lat_new_p50 "new-conn latency p50 ms" ""
  row lat_new_p99 "new-conn latency p99 ms" ""
  row lat_ka_p50 "keep-alive lat. p50 ms" ""
  row lat_ka_p99 "keep-alive lat. p99 ms" ""
  for k in lat_new_p50 lat_new_p99 lat_ka_p50 lat_ka_p99; do
    for t in "${TARGETS[@]}"; do
      [[ -n "${MED[$k,$t]:-}" && -n "${MED[$k,direct]:-}" ]] && MED[add_$k,$t]=$(awk -v a="${MED[$k,$t]}" -v b="${MED[$k,direct]}" 'BEGIN{printf "%.3f", a-b}')
    done
  done
  printf '%-26s' "added latency ms (vs direct)"; echo
  for k in lat_new_p50 lat_new_p99 lat_ka_p50 lat_ka_p99; do
    printf '%-26s' "  ${k#lat_}"
    for t in "${TARGETS[@]}"; do printf '%12s' "${MED[add_$k,$t]:--}"; done
    echo
  done
  row rss "RSS KiB per idle conn" "eg <= 64 KiB"
  echo
  echo "new conn: one GET per TLS connection, no resumption, $CONNS clients; keep-alive: $CONNS persistent connections;"
  echo "CPU us: user+system CPU of the target's process tree during the run, per successful request (lower is better)."
  echo "RSS: VmRSS of the proxy's process tree before/after $IDLE idle bumped connections (one GET each), fresh processes."
  echo "latency: one client, request after request (new-conn includes TCP, CONNECT and TLS); added = target - direct."
  echo "The client trusts only the bench CA for the three proxies: every figure is through real interception."
  echo "client-side handshake per target (openssl s_client):"
  for t in "${TARGETS[@]}"; do echo "  $t: ${HANDSHAKE[$t]}"; done
  echo "raw samples (per rep):"
  for key in $(printf '%s\n' "${!RES[@]}" | sort); do echo "  $key:${RES[$key]}"; done
  if [[ $NERR -gt 0 ]]; then
    echo "errors:"
    for key in $(printf '%s\n' "${!ERRS[@]}" | sort); do echo "  $key: ${ERRS[$key]}"; done
  fi
} > "$WORK/table.txt"

cat "$WORK/table.txt"
if [[ -n "$OUT" ]]; then
  mkdir -p "$(dirname "$OUT")"
  cp "$WORK/table.txt" "$OUT"
  log "written to $OUT"
fi
