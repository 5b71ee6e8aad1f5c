#!/usr/bin/env bash
# Installs, from Debian 12's packages, everything Starling needs to build, test and benchmark.
# Idempotent: packages already present are skipped, and apt is not touched when nothing is missing.
#
#   deploy/install-deps.sh            build + test dependencies
#   deploy/install-deps.sh --runtime  only what building and running starlingd needs
#   deploy/install-deps.sh --cross    also the arm64/armhf cross toolchains, qemu-user and the
#                                     multiarch libraries starling-agent links (adds the
#                                     architectures to dpkg; cmake/aarch64-linux-gnu.cmake);
#                                     armhf's are best effort (a warning when they fail)
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

# arm64 is what the test command cross-builds and runs (tests/cross/); armhf only the by-hand
# build of edge-agent/README.md: installed with --cross too, but its failure (a mirror whose
# armhf index is mid-sync) is a warning, not the end of the set-up.
cross_pkgs=(crossbuild-essential-arm64 qemu-user)
armhf_pkgs=(crossbuild-essential-armhf)
for p in libmbedtls-dev zlib1g-dev libidn-dev libssl-dev libpugixml-dev libtomlplusplus-dev libflatbuffers-dev; do
  cross_pkgs+=("$p:arm64")
  armhf_pkgs+=("$p:armhf")
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

is_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
missing=()
for p in "${pkgs[@]}"; do
  is_installed "$p" || missing+=("$p")
done
missing_armhf=()
if [[ "${1:-}" == "--cross" ]]; then
  for p in "${armhf_pkgs[@]}"; do
    is_installed "$p" || missing_armhf+=("$p")
  done
fi

# The armhf set, best effort (see armhf_pkgs).
install_armhf() {
  [[ ${#missing_armhf[@]} -eq 0 ]] && return 0
  echo "install-deps: installing ${#missing_armhf[@]} armhf packages: ${missing_armhf[*]}"
  if ! DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends -o Acquire::Retries=3 \
      "${missing_armhf[@]}"; then
    echo "install-deps: WARNING: the armhf cross packages could not be installed (run this again later);" \
         "the armhf build of edge-agent/README.md needs them, the test command does not" >&2
  fi
}

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
  install_armhf
  install_npm_tools "${1:-}"
  exit 0
fi

echo "install-deps: installing ${#missing[@]} packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# A Debian mirror caught mid-sync answers with an index of the wrong size ("Mirror sync in
# progress?"), sometimes for hours. apt-get update then fails for that one index but keeps the
# others: the install goes on with what it could read, and both are tried again a few times.
# Multiarch libraries must have one version across architectures; a mirror whose security
# updates reached amd64 before arm64 offers none that match. Then the versions the foreign
# packages ask for ("Depends: libssl3:arm64 (= V)") are asked for both architectures.
aligned=()
align_versions() {
  local out line name arch ver
  out=$(LC_ALL=C $SUDO apt-get install -s -q --no-install-recommends "${missing[@]}" "${aligned[@]}" 2>&1) || true
  while IFS= read -r line; do
    if [[ $line =~ Depends:\ ([a-z0-9.+-]+):(arm64|armhf)\ \(=\ ([^\)]+)\) ]]; then
      name=${BASH_REMATCH[1]} arch=${BASH_REMATCH[2]} ver=${BASH_REMATCH[3]}
      if [[ " ${aligned[*]} " != *" $name=$ver "* ]]; then
        aligned+=("$name=$ver" "$name:$arch=$ver")
      fi
    fi
  done <<<"$out"
}
installed=0
for attempt in 1 2 3; do
  if ! $SUDO apt-get update -q -o Acquire::Retries=3; then
    echo "install-deps: apt-get update failed (attempt $attempt); installing from the package lists it could read" >&2
  fi
  if $SUDO apt-get install -y -q --no-install-recommends -o Acquire::Retries=3 "${missing[@]}" "${aligned[@]}"; then
    installed=1
    break
  fi
  before=${#aligned[@]}
  align_versions
  align_versions
  if [[ ${#aligned[@]} -gt $before ]]; then
    echo "install-deps: multiarch versions differ between architectures (a mirror mid-sync); asking for: ${aligned[*]}" >&2
    if $SUDO apt-get install -y -q --no-install-recommends --allow-downgrades -o Acquire::Retries=3 \
        "${missing[@]}" "${aligned[@]}"; then
      installed=1
      break
    fi
  fi
  [[ $attempt -eq 3 ]] && break
  echo "install-deps: apt-get install failed (attempt $attempt of 3); again in $((attempt * 15)) s" >&2
  sleep $((attempt * 15))
done
if [[ $installed -ne 1 ]]; then
  echo "install-deps: could not install: ${missing[*]}" >&2
  exit 1
fi
install_armhf
install_npm_tools "${1:-}"
echo "install-deps: done"
