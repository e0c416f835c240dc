#!/usr/bin/env bash
# The HTTP/2 benchmark: direct-to-origin, egressguard and mitmproxy measured side by side in
# ONE run on loopback, against the same nginx HTTPS origin (h2 and http/1.1 on one port,
# chosen by ALPN), with the same clients. Both proxies decrypt (leaves minted from the same
# bench CA, which is all the clients trust for them) and verify the origin.
#
#   bench/h2_bench.sh [--quick] [--out FILE] [--bin PATH/TO/egressguard]
#
# Rows (EGB_ROWS picks them):
#   h2_1x100   h2load, 1 connection x 100 concurrent streams, EGB_REQUESTS GETs of 1 KiB
#   h2_32x10   h2load, 32 connections x 10 concurrent streams, EGB_REQUESTS GETs of 1 KiB
#   h2_upload  curl --http2, one PUT of EGB_UPLOAD_MIB MiB (text, no PII: the DLP scans, never blocks)
#   h1_ka      h2load --h1, 32 keep-alive HTTP/1.1 connections, one request at a time each
#              (no pipelining), EGB_REQUESTS GETs of 1 KiB
#   h1_upload  curl --http1.1, the same PUT as h2_upload
# For each: requests/s (MB/s for uploads) and the proxy's CPU (utime+stime of its process
# tree from /proc/PID/stat, before and after the run) per request (µs) or per GB (s).
# Ratios printed: egressguard h2 req/s ÷ mitmproxy h2 req/s; proxy CPU per h2 request ÷ per
# HTTP/1.1 keep-alive request; h2 upload CPU/GB ÷ h1 upload CPU/GB. Ratios are taken per
# repetition, then the median; the other cells are medians of the repetitions. The targets
# run interleaved (round-robin, row by row, the first target rotating each repetition).
#
# How the proxies are reached. h2load has no proxy support, so the request rows go through a
# CONNECT forwarder (a ~100-line C program built here): h2load connects in plain TCP to it
# (h2load --connect-to), it opens a connection to the proxy, sends `CONNECT localhost:ORIGIN`,
# waits for the 200 and then splices bytes both ways; h2load's TLS (SNI localhost, ALPN h2
# or http/1.1) runs inside that tunnel to the proxy, which bumps it. So both proxies run in
# their ordinary explicit-proxy mode (the path `curl --proxy` takes), the same way, and
# neither gets a special listener (egressguard's --sni-port, mitmproxy's reverse mode) that
# the other lacks. The forwarder's splice costs land on the client core, identically for
# both proxies, never in the proxy CPU figures. `direct` is h2load straight to the origin
# (no forwarder): a ceiling, not a proxy. The uploads use curl, which speaks CONNECT itself.
# Before anything is timed every target must serve /1k over h2 to the client AND over h2 to
# the origin (the origin's /proto echoes its $server_protocol); a proxy that falls back to
# HTTP/1.1 on either leg stops the bench with a message saying so (unless EGB_ROWS has no
# h2 row). h2load's own output must also say "Application protocol: h2" (h1 rows:
# http/1.1) and every request must succeed, else the cell is empty and the error listed.
#
# Pinning (EGB_PIN=1, needs 2 usable cores): the proxy on the first core (egressguard with
# one worker; mitmdump is one Python process), h2load, curl, the forwarder and nginx (one
# worker) on the second. Each proxy thus has one core; the rates are the proxy's capacity
# when the client core keeps up (direct shows how far it goes).
# mitmproxy: Debian's mitmproxy (mitmdump -q, regular mode, http2 on, upstream verified
# against the bench origin root, stream_large_bodies=1m, its defaults otherwise). Streaming
# bodies above 1 MiB is how mitmproxy is run for large transfers; buffered (its default,
# EGB_MITM_STREAM=""), 8.1.1's h2 upload is quadratic in the body: 2.3 MB/s at 8 MiB,
# 0.6 at 16, 0.2 at 32 on this machine (64 MiB: many minutes).
#
# Knobs (environment; the defaults take about 2-4 minutes on a 2-core machine, --quick ~1):
#   EGB_REQUESTS=8000   requests per request row and target
#   EGB_REPS=3          repetitions of the whole round-robin
#   EGB_UPLOAD_MIB=64   upload size
#   EGB_ROWS="h2_1x100 h2_32x10 h2_upload h1_ka h1_upload"
#   EGB_TARGETS="direct egressguard mitmproxy"
#   EGB_PIN=1           pin as above (0: no pinning)
#   EGB_EG_WORKERS      egressguard worker threads (default 1 pinned, 2 unpinned)
#   EGB_EG_AUDIT=1      egressguard writes its JSONL verdict log (what it does in service)
#   EGB_EG_ARGS=""      extra egressguard proxy flags
#   EGB_MITM_STREAM=1m  mitmproxy's stream_large_bodies ("": buffer whole bodies, its default)
#   EGB_MITM_ARGS=""    extra mitmdump flags
#   EGB_TIMEOUT=300     seconds any one run may take
#   EGB_KEEP=0          keep the work directory (logs, configs) for a post-mortem
#   EGB_EG_START=15     seconds egressguard may take to listen
#
# Needs (Debian 12): nghttp2-client (h2load), nginx (its ssl, http2 and dav modules),
# mitmproxy, curl, openssl, gcc, util-linux (taskset), python3; installs the missing ones
# with apt-get when root.
# Nothing but loopback is ever touched.
set -euo pipefail

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 2; }

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
    *) echo "h2_bench: unknown argument '$1'" >&2; usage ;;
  esac
  shift
done

if [[ $QUICK == 1 ]]; then
  : "${EGB_REQUESTS:=4000}" "${EGB_REPS:=1}" "${EGB_UPLOAD_MIB:=16}"
fi
REQUESTS="${EGB_REQUESTS:-8000}"
REPS="${EGB_REPS:-3}"
UPLOAD_MIB="${EGB_UPLOAD_MIB:-64}"
ROWS=(${EGB_ROWS:-h2_1x100 h2_32x10 h2_upload h1_ka h1_upload})
TARGETS=(${EGB_TARGETS:-direct egressguard mitmproxy})
EG_AUDIT="${EGB_EG_AUDIT:-1}"
TIMEOUT="${EGB_TIMEOUT:-300}"
MITM_STREAM="${EGB_MITM_STREAM-1m}"

die() { echo "h2_bench: $*" >&2; exit 2; }
log() { echo "[$(date +%T)] $*" >&2; }

for t in "${TARGETS[@]}"; do
  case "$t" in direct|egressguard|mitmproxy) ;; *) die "unknown target '$t' (EGB_TARGETS: direct egressguard mitmproxy)" ;; esac
done
for r in "${ROWS[@]}"; do
  case "$r" in h2_1x100|h2_32x10|h2_upload|h1_ka|h1_upload) ;; *) die "unknown row '$r' (EGB_ROWS: h2_1x100 h2_32x10 h2_upload h1_ka h1_upload)" ;; esac
done
[[ "$REQUESTS" =~ ^[0-9]+$ && "$REQUESTS" -ge 320 ]] || die "EGB_REQUESTS must be a number >= 320"

has_target() { [[ " ${TARGETS[*]} " == *" $1 "* ]]; }
if has_target egressguard; then
  [[ -n "$BIN" ]] || BIN="$ROOT/build/appliance/egressguard"
  [[ -x "$BIN" ]] || die "no egressguard binary at '$BIN': build it (./scripts/build.sh) or pass --bin"
  BIN="$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")"
fi

# --- pinning ----------------------------------------------------------------------------
CPUS=($(/usr/bin/python3 -c 'import os;print(*sorted(os.sched_getaffinity(0)))'))
PIN="${EGB_PIN:-1}"
if [[ $PIN == 1 && ${#CPUS[@]} -ge 2 ]]; then
  PROXY_CPU=${CPUS[0]}; CLIENT_CPU=${CPUS[1]}
  # Prefixes, not shell functions: `taskset ... cmd &` execs cmd, so $! is cmd's own pid
  # (what cleanup signals and whose CPU is read).
  ON_PROXY=(taskset -c "$PROXY_CPU")
  ON_CLIENT=(taskset -c "$CLIENT_CPU")
  EG_WORKERS="${EGB_EG_WORKERS:-1}"
else
  PIN=0
  ON_PROXY=()
  ON_CLIENT=()
  EG_WORKERS="${EGB_EG_WORKERS:-2}"
fi

# --- packages ---------------------------------------------------------------------------
need=()
command -v h2load >/dev/null || need+=(nghttp2-client)
command -v nginx >/dev/null || need+=(nginx)
if has_target mitmproxy; then command -v mitmdump >/dev/null || need+=(mitmproxy); fi
command -v gcc >/dev/null || need+=(gcc)
command -v curl >/dev/null || need+=(curl)
command -v openssl >/dev/null || need+=(openssl)
command -v taskset >/dev/null || need+=(util-linux)
if [[ ${#need[@]} -gt 0 ]]; then
  [[ $(id -u) == 0 ]] || die "needs ${need[*]}: run as root (apt-get) or install them"
  log "installing ${need[*]}"
  # Debian starts a package's service on install (nginx on :80); the bench runs its own.
  made_policy=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && made_policy=1
  fi
  apt-get update -qq >/dev/null || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  [[ $made_policy == 1 ]] && rm -f /usr/sbin/policy-rc.d
fi
curl -V | grep -q 'HTTP2' || die "this curl has no HTTP/2 (libnghttp2)"

# --- work dir and cleanup ---------------------------------------------------------------
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_workdir h2bench

# --- PKI: origin root + origin leaf, and the interception CA both proxies mint from -----
log "PKI, data and forwarder in $WORK"
cd "$WORK"
make_bench_pki

# --- data: text without PII (base64 of random bytes), so the DLP engine scans but never blocks
mkdir -p www
head -c 1024 /dev/zero | tr '\0' 'a' > www/1k
make_base64_text up.bin $((UPLOAD_MIB * 1024 * 1024))
UPLOAD_BYTES=$(stat -c %s up.bin)
chmod -R a+rX www

# --- the CONNECT forwarder ----------------------------------------------------------------
# fwd LISTEN_PORT_FILE UP_PORT [CONNECT_AUTHORITY]: accepts on 127.0.0.1 (any port, written to
# the file), connects each client to 127.0.0.1:UP_PORT, sends CONNECT AUTHORITY (if given) and
# waits for a 2xx, then splices both ways (kernel pipes, no copies through user space).
cat > fwd.c <<'EOF'
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int up_port;
static const char *authority;

static void pump(int from, int to) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) { shutdown(from, SHUT_RDWR); shutdown(to, SHUT_RDWR); return; }
  fcntl(p[1], F_SETPIPE_SZ, 1 << 20);
  for (;;) {
    ssize_t n = splice(from, NULL, p[1], NULL, 1 << 20, SPLICE_F_MOVE);
    if (n == 0) { shutdown(to, SHUT_WR); break; }                  /* EOF: pass it on */
    if (n < 0) { if (errno == EINTR) continue; shutdown(from, SHUT_RDWR); shutdown(to, SHUT_RDWR); break; }
    while (n > 0) {
      ssize_t m = splice(p[0], NULL, to, NULL, (size_t)n, SPLICE_F_MOVE);
      if (m < 0 && errno == EINTR) continue;
      if (m <= 0) { shutdown(from, SHUT_RDWR); shutdown(to, SHUT_RDWR); goto out; }
      n -= m;
    }
  }
out:
  close(p[0]);
  close(p[1]);
}

struct pair { int client, up; };
static void *back(void *arg) { struct pair *pp = arg; pump(pp->up, pp->client); return NULL; }

static void *conn(void *arg) {
  int c = (int)(intptr_t)arg, one = 1;
  int u = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(up_port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (u < 0 || connect(u, (struct sockaddr *)&a, sizeof a) != 0) goto fail;
  setsockopt(u, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (authority) {
    char req[512], resp[4096];
    int len = snprintf(req, sizeof req, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", authority, authority);
    if (write(u, req, (size_t)len) != len) goto fail;
    size_t got = 0;  /* byte by byte: nothing after the blank line may be consumed */
    while (got < sizeof resp - 1) {
      ssize_t n = read(u, resp + got, 1);
      if (n <= 0) goto fail;
      got++;
      if (got >= 4 && memcmp(resp + got - 4, "\r\n\r\n", 4) == 0) break;
    }
    resp[got] = 0;
    if (strncmp(resp, "HTTP/1.", 7) != 0 || resp[9] != '2') {
      fprintf(stderr, "fwd: CONNECT refused: %.200s\n", resp);
      goto fail;
    }
  }
  struct pair pp = {c, u};
  pthread_t t;
  if (pthread_create(&t, NULL, back, &pp) != 0) goto fail;
  pump(c, u);
  pthread_join(t, NULL);
  close(c);
  close(u);
  return NULL;
fail:
  close(c);
  if (u >= 0) close(u);
  return NULL;
}

int main(int argc, char **argv) {
  if (argc < 3) { fprintf(stderr, "usage: fwd PORTFILE UP_PORT [AUTHORITY]\n"); return 2; }
  up_port = atoi(argv[2]);
  authority = argc > 3 ? argv[3] : NULL;
  signal(SIGPIPE, SIG_IGN);
  int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
  setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t al = sizeof a;
  if (bind(l, (struct sockaddr *)&a, sizeof a) != 0 || listen(l, 1024) != 0 ||
      getsockname(l, (struct sockaddr *)&a, &al) != 0) { perror("fwd: listen"); return 1; }
  FILE *f = fopen(argv[1], "w");
  if (!f) { perror("fwd: port file"); return 1; }
  fprintf(f, "%d\n", ntohs(a.sin_port));
  fclose(f);
  pthread_attr_t at;
  pthread_attr_init(&at);
  pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&at, 256 * 1024);
  for (;;) {
    int c = accept4(l, NULL, NULL, SOCK_CLOEXEC);
    if (c < 0) { if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE) continue; perror("fwd: accept"); return 1; }
    pthread_t t;
    if (pthread_create(&t, &at, conn, (void *)(intptr_t)c) != 0) close(c);
  }
}
EOF
gcc -O2 -Wall -o fwd fwd.c -lpthread || die "cannot build the CONNECT forwarder"

declare -A FWD_PORT
start_fwd() {  # NAME UP_PORT AUTHORITY -> FWD_PORT[NAME] (not in $(...): PIDS must see the pid)
  rm -f "fwd-$1.port"
  "${ON_CLIENT[@]}" ./fwd "fwd-$1.port" "$2" "$3" > "fwd-$1.out" 2>&1 &
  local pid=$!; PIDS+=($pid)
  for _ in $(seq 50); do [[ -s "fwd-$1.port" ]] && break; kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  [[ -s "fwd-$1.port" ]] || die "the forwarder for $1 did not start: $(cat "fwd-$1.out")"
  FWD_PORT[$1]=$(cat "fwd-$1.port")
}

# --- origin: nginx, h2 and http/1.1 on one TLS port ----------------------------------------
ORIGIN_PORT=$(free_port)
mkdir -p "$SHM/up" "$SHM/tmp"
chown -R www-data "$SHM" 2>/dev/null || chmod -R 777 "$SHM"
nginx_user=""
[[ $(id -u) == 0 ]] && nginx_user="user www-data;"
cat > nginx.conf <<EOF
$nginx_user
worker_processes 1;
worker_rlimit_nofile 65536;
daemon off;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log warn;
events { worker_connections 16384; }
http {
  access_log off;
  # one h2 connection carries every request of a row (nginx's default GOAWAYs after 1000)
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  http2_max_concurrent_streams 128;
  client_body_temp_path $SHM/tmp;
  server {
    listen 127.0.0.1:$ORIGIN_PORT ssl http2;
    ssl_certificate $WORK/origin.pem;
    ssl_certificate_key $WORK/origin.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    root $WORK/www;
    # which protocol reached the origin: checks that a proxy speaks h2 upstream too
    location = /proto { default_type text/plain; return 200 "\$server_protocol\n"; }
    # PUT answers only once the whole body is stored: upload timing is the full transfer.
    location /up/ { root $SHM; dav_methods PUT; client_max_body_size 0; }
  }
}
EOF
"${ON_CLIENT[@]}" nginx -e "$WORK/nginx-error.log" -c "$WORK/nginx.conf" > nginx.out 2>&1 &
NGINX_PID=$!; PIDS+=($NGINX_PID)
wait_port "$ORIGIN_PORT" "$NGINX_PID" nginx
HOSTPORT="localhost:$ORIGIN_PORT"

# --- egressguard: enforce mode, the default pack ----------------------------------------------
EG_PORT=0
if has_target egressguard; then
  eg_audit=()
  [[ $EG_AUDIT == 1 ]] && eg_audit=(--audit-log "$WORK/egressguard-audit.jsonl")
  : > egressguard.out
  "${ON_PROXY[@]}" "$BIN" proxy --listen 127.0.0.1:0 --ca-cert bench-ca.pem --ca-key bench-ca.key --upstream-ca origin-root.pem \
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

# --- mitmproxy: mitmdump, regular (explicit proxy) mode, leaves from the bench CA -------------
MP_PORT=0
if has_target mitmproxy; then
  MP_PORT=$(free_port)
  mkdir -p mitm
  cat bench-ca.key bench-ca.pem > mitm/mitmproxy-ca.pem  # mitmproxy's CA file: key then certificate
  chmod 600 mitm/mitmproxy-ca.pem
  "${ON_PROXY[@]}" mitmdump -q --listen-host 127.0.0.1 --listen-port "$MP_PORT" --set confdir="$WORK/mitm" \
    --set ssl_verify_upstream_trusted_ca="$WORK/origin-root.pem" --set http2=true \
    ${MITM_STREAM:+--set stream_large_bodies=$MITM_STREAM} \
    ${EGB_MITM_ARGS:-} > mitmproxy.out 2>&1 &
  MP_PID=$!; PIDS+=($MP_PID)
  wait_port "$MP_PORT" "$MP_PID" mitmproxy 30
fi

# --- how each target is reached -----------------------------------------------------------------
if has_target egressguard; then start_fwd egressguard "$EG_PORT" "$HOSTPORT"; fi
if has_target mitmproxy; then start_fwd mitmproxy "$MP_PORT" "$HOSTPORT"; fi
h2load_args() {  # the URL is always https://localhost:ORIGIN/...: same SNI and :authority for all
  case "$1" in
    direct) echo "" ;;
    *) echo "--connect-to=127.0.0.1:${FWD_PORT[$1]}" ;;
  esac
}
curl_args() {
  case "$1" in
    direct) echo "--cacert $WORK/origin-root.pem" ;;
    egressguard) echo "--proxy http://127.0.0.1:$EG_PORT --cacert $WORK/bench-ca.pem" ;;
    mitmproxy) echo "--proxy http://127.0.0.1:$MP_PORT --cacert $WORK/bench-ca.pem" ;;
  esac
}
target_pid() {
  case "$1" in egressguard) echo "${EG_PID:-}" ;; mitmproxy) echo "${MP_PID:-}" ;; *) echo "" ;; esac
}
# CPU ticks (user + system, all threads) of a process and its descendants.
tree_ticks() {
  local total=0 p
  local -a todo=("$1")
  while [[ ${#todo[@]} -gt 0 ]]; do
    p=${todo[0]}; todo=("${todo[@]:1}")
    total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
    for c in $(ps -o pid= --ppid "$p" 2>/dev/null); do todo+=("$c"); done
  done
  echo "$total"
}
TCK=$(getconf CLK_TCK)

# --- every target must really intercept, and speak h2 on both legs, before anything is timed ---
declare -A HANDSHAKE
NEED_H2=0  # only h2 rows need h2: EGB_ROWS="h1_ka h1_upload" runs on an HTTP/1.1-only proxy
[[ " ${ROWS[*]}" == *" h2_"* ]] && NEED_H2=1
others() {  # how to run without target $1's h2
  local x o=()
  for x in "${TARGETS[@]}"; do [[ $x == "$1" ]] || o+=("$x"); done
  [[ ${#o[@]} -gt 0 ]] && echo "EGB_TARGETS=\"${o[*]}\" leaves it out; "
  echo "EGB_ROWS=\"h1_ka h1_upload\" measures HTTP/1.1 only"
}
for t in "${TARGETS[@]}"; do
  out=$("${ON_CLIENT[@]}" curl -sS --http2 -o /dev/null -w '%{http_code} %{http_version}' $(curl_args "$t") \
    "https://$HOSTPORT/1k" 2> curl.err || true)
  read -r code ver <<<"$out"
  [[ "${code:-}" == 200 ]] || die "$t does not serve the origin (HTTP '${code:-}'): $(head -c 400 curl.err)"
  up=$("${ON_CLIENT[@]}" curl -sS --http2 $(curl_args "$t") "https://$HOSTPORT/proto" 2> curl.err || true)
  if [[ $NEED_H2 == 1 && "$ver" != 2 ]]; then
    die "$t did not negotiate h2 with the client (curl --http2 got HTTP/${ver:-?}): no HTTP/2 support in this build?" \
      "($(others "$t" | tr -d '\n'))"
  fi
  if [[ $NEED_H2 == 1 && "$up" != "HTTP/2.0" ]]; then
    die "$t speaks h2 to the client but '${up:-nothing}' to the origin (curl --http2 .../proto):" \
      "its upstream leg is not h2 ($(others "$t" | tr -d '\n'))"
  fi
  code1=$("${ON_CLIENT[@]}" curl -sS --http1.1 -o /dev/null -w '%{http_code} %{http_version}' $(curl_args "$t") \
    "https://$HOSTPORT/1k" 2> curl.err || true)
  [[ "$code1" == "200 1.1" ]] || die "$t does not serve the origin over HTTP/1.1 (curl --http1.1 got '$code1'): $(head -c 400 curl.err)"
  # The client's TLS session as h2load sees it through the forwarder (leaf issuer, ALPN).
  if [[ $t == direct ]]; then sc=(-connect "127.0.0.1:$ORIGIN_PORT"); else sc=(-connect "127.0.0.1:${FWD_PORT[$t]}"); fi
  "${ON_CLIENT[@]}" openssl s_client "${sc[@]}" -servername localhost -alpn h2 < /dev/null > "sclient-$t.txt" 2>&1 || true
  tls=$(sed -n 's/^New, \(TLSv[0-9.]*\), Cipher is \(.*\)/\1 \2/p' "sclient-$t.txt" | head -1)
  alpn=$(sed -n 's/^ALPN protocol: //p' "sclient-$t.txt" | head -1)
  issuer=$(openssl x509 -noout -issuer -in "sclient-$t.txt" 2>/dev/null | sed 's/issuer=//')
  HANDSHAKE[$t]="$tls, ALPN ${alpn:-none}, leaf issued by $issuer; origin saw $up"
  [[ $NEED_H2 == 0 || "$alpn" == h2 ]] || die "$t: ALPN through the forwarder is '${alpn:-none}', not h2"
  log "$t ready: ${HANDSHAKE[$t]}"
done

# --- runs -----------------------------------------------------------------------------------
SAMPLES="$WORK/samples.tsv"  # row target rep metric value
: > "$SAMPLES"
NERR=0
ERRLOG="$WORK/errors.txt"
: > "$ERRLOG"
sample() { printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$REP" "$3" "$4" >> "$SAMPLES"; }
err() { echo "  $1 $2 rep $REP: $3" >> "$ERRLOG"; NERR=$((NERR + 1)); log "  $1 $2: $3"; }

run_h2load() {  # row target proto(h2|h1) conns streams
  local row=$1 t=$2 pid out t0 t1 c0="" c1 want
  local -a proto_args
  if [[ $3 == h2 ]]; then proto_args=(--npn-list=h2); want=h2; else proto_args=(--h1); want=http/1.1; fi
  pid=$(target_pid "$t")
  [[ -n "$pid" ]] && c0=$(tree_ticks "$pid")
  out=$("${ON_CLIENT[@]}" timeout "$TIMEOUT" h2load "${proto_args[@]}" -t 1 -c "$4" -m "$5" -n "$REQUESTS" \
    $(h2load_args "$t") "https://$HOSTPORT/1k" 2>&1) || true
  [[ -n "$pid" ]] && c1=$(tree_ticks "$pid")
  echo "$out" > "h2load-$row-$t-$REP.txt"
  local proto ok rate
  proto=$(sed -n 's/^Application protocol: //p' <<<"$out" | head -1)
  ok=$(sed -n 's/^requests: .* \([0-9]*\) succeeded.*/\1/p' <<<"$out")
  rate=$(sed -n 's/^finished in [^,]*, \([0-9.]*\) req\/s.*/\1/p' <<<"$out")
  if [[ "$proto" != "$want" ]]; then
    err "$row" "$t" "negotiated '${proto:-nothing}', not $want: $(grep -m2 -i 'error\|fail\|protocol' <<<"$out" | tr '\n' ' ')"
    return 0
  fi
  if [[ "${ok:-0}" != "$REQUESTS" ]]; then
    err "$row" "$t" "$(grep -m1 '^requests:' <<<"$out"); $(grep -m1 '^status codes:' <<<"$out")"
    return 0
  fi
  sample "$row" "$t" rate "$rate"
  [[ -n "$c0" ]] && sample "$row" "$t" cpu "$(awk -v a="$c1" -v b="$c0" -v k="$TCK" -v n="$ok" 'BEGIN{printf "%.2f", (a-b)/k*1e6/n}')"
  true
}
run_upload() {  # row target proto(2|1.1)
  local row=$1 t=$2 pid out c0="" c1 code size speed ver name="u-$2-$RANDOM"
  pid=$(target_pid "$t")
  [[ -n "$pid" ]] && c0=$(tree_ticks "$pid")
  # A transfer stalled for 20 s is a failure (not the proxy's idle timeout later).
  out=$("${ON_CLIENT[@]}" timeout "$TIMEOUT" curl -sS "--http$3" --speed-limit 1 --speed-time 20 -o /dev/null \
    -H 'Expect:' -H 'Content-Type: text/plain' \
    -w '%{http_code} %{size_upload} %{speed_upload} %{http_version}' $(curl_args "$t") -T up.bin \
    "https://$HOSTPORT/up/$name" 2>curl.err) || true
  [[ -n "$pid" ]] && c1=$(tree_ticks "$pid")
  read -r code size speed ver <<<"$out"
  local stored; stored=$(stat -c %s "$SHM/up/$name" 2>/dev/null || echo 0)
  rm -f "$SHM/up/$name"
  if [[ ("$code" == 201 || "$code" == 204) && "$ver" != "$3" ]]; then
    err "$row" "$t" "curl used HTTP/${ver:-?}, not HTTP/$3"
  elif [[ ("$code" == 201 || "$code" == 204) && "$size" == "$UPLOAD_BYTES" && "$stored" == "$UPLOAD_BYTES" ]]; then
    sample "$row" "$t" rate "$(awk -v s="$speed" 'BEGIN{printf "%.1f", s/1e6}')"
    [[ -n "$c0" ]] && sample "$row" "$t" cpu "$(awk -v a="$c1" -v b="$c0" -v k="$TCK" -v n="$UPLOAD_BYTES" 'BEGIN{printf "%.3f", (a-b)/k/(n/1e9)}')"
  else
    err "$row" "$t" "http=$code sent=$size of $UPLOAD_BYTES stored=$stored $(head -c 200 curl.err | tr '\n' ' ')"
  fi
  true
}
run_row() {  # row target
  case "$1" in
    h2_1x100) run_h2load "$1" "$2" h2 1 100 ;;
    h2_32x10) run_h2load "$1" "$2" h2 32 10 ;;
    h1_ka) run_h2load "$1" "$2" h1 32 1 ;;
    h2_upload) run_upload "$1" "$2" 2 ;;
    h1_upload) run_upload "$1" "$2" 1.1 ;;
  esac
  sleep 0.3  # let the run's connections close before the next one counts CPU
}

log "targets: ${TARGETS[*]}; rows: ${ROWS[*]}; $REPS reps; $REQUESTS requests per request row; ${UPLOAD_MIB} MiB uploads"
# Warm-up, untimed: a proxy's first large upload pays for faulting in its buffers (up to
# the hold limit; ~16k page faults, measured). Timed cold, that cost lands on whichever
# upload row runs first, so h2 vs http/1.1 would compare a cold process with a warm one.
REP=0
for t in "${TARGETS[@]}"; do
  for row in "${ROWS[@]}"; do
    case "$row" in h2_upload) run_upload warmup "$t" 2 ;; h1_upload) run_upload warmup "$t" 1.1 ;; esac
  done
done
T_START=$(date +%s)
for ((REP = 1; REP <= REPS; REP++)); do
  for row in "${ROWS[@]}"; do
    for ((k = 0; k < ${#TARGETS[@]}; k++)); do
      t=${TARGETS[$(((k + REP - 1) % ${#TARGETS[@]}))]}
      run_row "$row" "$t"
    done
  done
  log "rep $REP/$REPS done"
done
T_RUN=$(( $(date +%s) - T_START ))

# --- table ------------------------------------------------------------------------------
{
  echo "egressguard HTTP/2 benchmark  $(date -u +%FT%TZ)  $(nproc) cores, loopback, $(uname -r)"
  [[ -n "$BIN" ]] && echo "egressguard: $BIN ($("$BIN" version 2>/dev/null | head -1 | tr -s ' '))"
  mp=""
  has_target mitmproxy && mp="mitmproxy $(mitmdump --version 2>/dev/null | sed -n 's/^Mitmproxy: *//p'), "
  echo "$mp$(h2load --version | head -1), nginx $(nginx -v 2>&1 | cut -d/ -f2), curl $(curl -V | head -1 | cut -d' ' -f2), $(openssl version | cut -d' ' -f1-2)"
  if [[ $PIN == 1 ]]; then pin="proxy on core $PROXY_CPU, clients+forwarder+nginx on core $CLIENT_CPU"; else pin="none"; fi
  echo "reps=$REPS requests=$REQUESTS upload=${UPLOAD_MIB}MiB eg_workers=$EG_WORKERS eg_audit=$EG_AUDIT mitm_stream_large_bodies=${MITM_STREAM:-off} pinning: $pin; timed part ${T_RUN}s"
} > "$WORK/head.txt"

/usr/bin/python3 - "$SAMPLES" "${TARGETS[*]}" "${ROWS[*]}" "$REQUESTS" "$UPLOAD_MIB" > "$WORK/table.txt" <<'PY'
import collections, statistics, sys
path, targets, rows, nreq, mib = sys.argv[1], sys.argv[2].split(), sys.argv[3].split(), sys.argv[4], sys.argv[5]
S = collections.defaultdict(dict)  # (row, target, metric) -> {rep: value}
for line in open(path):
    row, t, rep, metric, value = line.rstrip("\n").split("\t")
    S[(row, t, metric)][int(rep)] = float(value)

def med(row, t, metric):
    v = list(S.get((row, t, metric), {}).values())
    return statistics.median(v) if v else None

def per_rep_ratio(a, b):  # a, b: (row, target, metric); ratio per repetition, then the median
    x, y = S.get(a, {}), S.get(b, {})
    r = [x[k] / y[k] for k in x if k in y and y[k] > 0]
    return (statistics.median(r), r) if r else (None, [])

def fmt(v, nd):
    return "-" if v is None else f"{v:.{nd}f}"

label = {
    "h2_1x100": ("h2 1 conn x 100 streams, 1 KiB GET", "req/s", "proxy CPU us/req", 0, 1),
    "h2_32x10": ("h2 32 conns x 10 streams, 1 KiB GET", "req/s", "proxy CPU us/req", 0, 1),
    "h2_upload": (f"h2 one {mib} MiB upload", "MB/s", "proxy CPU s/GB", 1, 2),
    "h1_ka": ("http/1.1 32 keep-alive conns, 1 KiB GET", "req/s", "proxy CPU us/req", 0, 1),
    "h1_upload": (f"http/1.1 one {mib} MiB upload", "MB/s", "proxy CPU s/GB", 1, 2),
}
proxies = [t for t in targets if t != "direct"]
W = 44
hdr = f"{'row':<{W}}" + "".join(f"{t:>13}" for t in targets)
if "egressguard" in targets and "mitmproxy" in targets:
    hdr += f"{'eg/mitm':>10}"
print(hdr)
for row in rows:
    name, unit, cpu_unit, nd_rate, nd_cpu = label[row]
    for metric, u, nd in (("rate", unit, nd_rate), ("cpu", cpu_unit, nd_cpu)):
        line = f"{(name + ': ' + u) if metric == 'rate' else ('  ' + u):<{W}}"
        for t in targets:
            line += f"{fmt(med(row, t, metric), nd):>13}"
        if "egressguard" in targets and "mitmproxy" in targets:
            r, _ = per_rep_ratio((row, "egressguard", metric), (row, "mitmproxy", metric))
            line += f"{fmt(r, 2):>10}"
        print(line)
print()
print("ratios (per repetition, then the median; samples in brackets):")
def show(text, r):
    v, xs = r
    print(f"  {text:<64}{fmt(v, 2):>7}  [{' '.join(f'{x:.2f}' for x in xs)}]")
if "egressguard" in targets and "mitmproxy" in targets:
    for row in ("h2_1x100", "h2_32x10"):
        if row in rows:
            show(f"egressguard h2 req/s / mitmproxy h2 req/s, {row}", per_rep_ratio((row, "egressguard", "rate"), (row, "mitmproxy", "rate")))
    if "h2_upload" in rows:
        show("egressguard h2 upload MB/s / mitmproxy h2 upload MB/s", per_rep_ratio(("h2_upload", "egressguard", "rate"), ("h2_upload", "mitmproxy", "rate")))
for t in proxies:
    for row in ("h2_1x100", "h2_32x10"):
        if row in rows and "h1_ka" in rows:
            show(f"{t}: CPU per h2 req ({row}) / per http/1.1 keep-alive req", per_rep_ratio((row, t, "cpu"), ("h1_ka", t, "cpu")))
    if "h2_upload" in rows and "h1_upload" in rows:
        show(f"{t}: h2 upload CPU/GB / http/1.1 upload CPU/GB", per_rep_ratio(("h2_upload", t, "cpu"), ("h1_upload", t, "cpu")))
print()
print(f"request rows: h2load -t1, {nreq} requests each, rate = h2load's req/s (connection setup included); upload: curl -T, MB = 1e6 B.")
print("proxy CPU: utime+stime of the proxy's process tree (/proc/PID/stat) across the run, over the requests or bytes")
print("(10 ms ticks). eg/mitm: egressguard / mitmproxy (for CPU lower is better, for rates higher).")
print("raw samples (per rep):")
for key in sorted(S):
    print(f"  {key[0]} {key[1]} {key[2]}: " + " ".join(f"{S[key][r]:g}" for r in sorted(S[key])))
PY

{
  cat "$WORK/head.txt"
  echo
  cat "$WORK/table.txt"
  echo "client-side handshake per target (openssl s_client -alpn h2, through the forwarder for proxies):"
  for t in "${TARGETS[@]}"; do echo "  $t: ${HANDSHAKE[$t]}"; done
  if [[ $NERR -gt 0 ]]; then echo "errors ($NERR):"; cat "$ERRLOG"; fi
} > "$WORK/report.txt"

cat "$WORK/report.txt"
if [[ -n "$OUT" ]]; then
  mkdir -p "$(dirname "$OUT")"
  cp "$WORK/report.txt" "$OUT"
  log "written to $OUT"
fi
[[ $NERR == 0 ]] || exit 1
