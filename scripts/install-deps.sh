#!/usr/bin/env bash
# Installs everything egressguard needs to build, test and run on Debian 12.
# Idempotent: packages already present are skipped, so a warm run costs a second.
set -euo pipefail

PACKAGES=(
  # toolchain
  build-essential cmake ninja-build pkg-config ccache clang lld libclang-rt-14-dev
  # libraries fixed by the design card
  libssl-dev openssl libboost-dev libboost-system-dev libhyperscan-dev
  libprotobuf-dev protobuf-compiler libgrpc++-dev protobuf-compiler-grpc
  libsqlite3-dev sqlite3 libgtest-dev libgmock-dev libbenchmark-dev
  # the compliance store's PostgreSQL backend (libpq) and the server its tests start
  libpq-dev postgresql
  # small well-kept libraries
  libcli11-dev libspdlog-dev libfmt-dev libyaml-cpp-dev zlib1g-dev libbrotli-dev libzstd-dev
  liblzma-dev libbz2-dev libexpat1-dev libnghttp2-dev
  libphonenumber-dev libpsl-dev libre2-dev prometheus-cpp-dev libgoogle-perftools-dev
  # real peers used by the tests
  curl ca-certificates python3 python3-pytest python3-grpcio python3-protobuf python3-requests python3-yaml
  gzip brotli zstd
  python3-wsproto python3-websockets python3-selenium chromium chromium-driver libnss3-tools
  # the web console's charts and layout, served from the store's own origin
  libjs-chart.js libjs-bootstrap5
  # documents made by real writers (container tests)
  python3-openpyxl python3-docx python3-odf python3-reportlab python3-xlwt xz-utils zip p7zip-full
  # HTTP/2 peers: nghttp/h2load/nghttpd, a raw-frame client for the attack tests
  nghttp2-client nghttp2-server python3-h2 python3-hyperframe python3-hpack
  iproute2 iptables procps
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "install-deps: need root to apt-get install: ${missing[*]}" >&2
    exit 1
  fi
  echo "install-deps: installing ${#missing[@]} packages: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
