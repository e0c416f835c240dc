# Shared by the proxy benchmarks (proxy_bench.sh, h2_bench.sh), sourced after the caller
# defined die() and log(): the work directory and its cleanup, loopback ports, the test
# PKI, upload data.

# Makes WORK (a temp directory) and SHM (one in memory, where uploads land), both removed
# at exit together with every process in PIDS (newest first: TERM, then KILL for whoever
# ignores it). NAME names them and the script in messages.
bench_workdir() {  # NAME
  BENCH_NAME=$1
  WORK="$(mktemp -d "/tmp/egressguard-$1.XXXXXX")"
  SHM="$(mktemp -d "/dev/shm/egressguard-$1-up.XXXXXX")"
  chmod 755 "$WORK" "$SHM"
  PIDS=()
  trap bench_cleanup EXIT
  trap 'echo "$BENCH_NAME: failed at line $LINENO: $BASH_COMMAND" >&2' ERR
  trap 'exit 130' INT TERM
  ulimit -n "$(ulimit -Hn)"  # 1,000 idle connections need ~4 fds each across client, proxy, origin
  unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY no_proxy NO_PROXY
}

bench_cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do kill -TERM "${PIDS[i]}" 2>/dev/null || true; done
  for _ in $(seq 30); do
    local alive=0
    for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [[ $alive == 0 ]] && break
    sleep 0.2
  done
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$SHM"
  if [[ "${EGB_KEEP:-0}" == 1 ]]; then echo "$BENCH_NAME: work directory kept: $WORK" >&2; else rm -rf "$WORK"; fi
  exit $rc
}

free_port() { /usr/bin/python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

wait_port() {  # PORT PID NAME [SECONDS]
  for _ in $(seq $((${4:-10} * 10))); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || die "$3 exited at start; see its log in $WORK (EGB_KEEP=1 keeps it)"
    sleep 0.1
  done
  die "$3 is not listening on $1"
}

# In the current directory: origin-root.{pem,key} and an origin leaf for localhost signed
# by it (origin.{pem,key}), and bench-ca.{pem,key}, the interception CA the proxies mint from.
make_bench_pki() {
  ca() {
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$1.key" -out "$1.pem" -subj "/CN=$1" \
      -days 30 -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
    chmod 600 "$1.key"
  }
  ca origin-root
  ca bench-ca
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout origin.key -out origin.csr \
    -subj /CN=localhost 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n' > origin.ext
  openssl x509 -req -in origin.csr -CA origin-root.pem -CAkey origin-root.key -CAcreateserial -days 30 \
    -extfile origin.ext -out origin.pem 2>/dev/null
  chmod 600 origin.key
  chmod 644 origin-root.pem bench-ca.pem origin.pem
}

# base64 text of random bytes, exactly BYTES long, in FILE: what an attachment looks like,
# with no PII, so the DLP engine decodes and scans it and never blocks.
make_base64_text() {  # FILE BYTES
  (set +o pipefail; head -c $(($2 * 3 / 4 + 4096)) /dev/urandom | base64 -w 76 | head -c "$2" > "$1")
}
