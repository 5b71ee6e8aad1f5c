#!/usr/bin/env bash
# Installs, from Debian 12's packages, everything Starling needs to build, test and benchmark.
# Idempotent: packages already present are skipped, and apt is not touched when nothing is missing.
#
#   deploy/install-deps.sh            build + test dependencies
#   deploy/install-deps.sh --runtime  only what building and running starlingd needs
#   deploy/install-deps.sh --cross    also the arm64/armhf cross toolchains, qemu-user and the
#                                     multiarch libraries starling-agent links (adds the
#                                     architectures to dpkg; cmake/aarch64-linux-gnu.cmake)
set -euo pipefail

runtime_pkgs=(
  build-essential cmake ninja-build pkg-config
  libasio-dev libmbedtls-dev libssl-dev libpugixml-dev libflatbuffers-dev flatbuffers-compiler
  librocksdb-dev prometheus-cpp-dev libcivetweb-dev zlib1g-dev libidn-dev libtomlplusplus-dev
)
test_pkgs=(
  libgtest-dev libgmock-dev libbenchmark-dev libexpat1-dev
  clang libclang-rt-14-dev
  python3 python3-slixmpp python3-aioxmpp python3-nbxmpp profanity tmux openssl
  gcc-arm-none-eabi libstdc++-arm-none-eabi-newlib binutils
  dpkg-dev adduser openssl systemd prometheus
)

SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi

cross_pkgs=(crossbuild-essential-arm64 crossbuild-essential-armhf qemu-user)
for arch in arm64 armhf; do
  for p in libmbedtls-dev zlib1g-dev libidn-dev libssl-dev libpugixml-dev libtomlplusplus-dev libflatbuffers-dev; do
    cross_pkgs+=("$p:$arch")
  done
done

pkgs=("${runtime_pkgs[@]}")
if [[ "${1:-}" != "--runtime" ]]; then
  pkgs+=("${test_pkgs[@]}")
fi
if [[ "${1:-}" == "--cross" ]]; then
  pkgs+=("${cross_pkgs[@]}")
  for arch in arm64 armhf; do
    if ! dpkg --print-foreign-architectures | grep -qx "$arch"; then
      $SUDO dpkg --add-architecture "$arch"
    fi
  done
fi

missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

# The Kubernetes manifest validator (deploy/kubernetes/validate) runs on Node.js: Debian's,
# unless a node with npm is already there.
if [[ "${1:-}" != "--runtime" ]] && ! command -v npm >/dev/null 2>&1; then
  missing+=(nodejs npm)
fi

install_npm_tools() {
  if [[ "${1:-}" != "--runtime" ]]; then
    bash "$(dirname "$0")/kubernetes/validate/install.sh"
  fi
}

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "install-deps: all ${#pkgs[@]} packages present"
  install_npm_tools "${1:-}"
  exit 0
fi

echo "install-deps: installing ${#missing[@]} packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# A Debian mirror caught mid-sync answers with an index of the wrong size ("Mirror sync in
# progress?") for a minute or so: try again a few times before giving up, and the same for
# the install's downloads.
retry() {
  local n
  for n in 1 2 3 4 5; do
    "$@" && return 0
    echo "install-deps: '$*' failed (attempt $n of 5); again in $((n * 15)) s" >&2
    sleep $((n * 15))
  done
  "$@"
}
retry $SUDO apt-get update -q -o Acquire::Retries=3
retry $SUDO apt-get install -y -q --no-install-recommends -o Acquire::Retries=3 "${missing[@]}"
install_npm_tools "${1:-}"
echo "install-deps: done"
