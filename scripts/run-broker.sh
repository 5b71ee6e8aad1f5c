#!/usr/bin/env bash
# Installs what is missing, builds starlingd (release), and starts it in the foreground with
# embedded defaults: domain localhost, data in ./data. Extra arguments go to starlingd.
# Idempotent; Ctrl-C stops the broker.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/install-deps.sh --runtime
mkdir -p build
cmake -S . -B build/run -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DSTARLING_BUILD_TESTS=OFF -DSTARLING_BUILD_BENCH=OFF -DSTARLING_BUILD_SHIM=OFF \
    -DSTARLING_BUILD_AGENT=OFF >build/run-configure.log 2>&1 || { cat build/run-configure.log; exit 1; }
cmake --build build/run --target starlingd starlingctl
echo "run-broker: built build/run/broker/starlingd and build/run/broker/starlingctl"
exec build/run/broker/starlingd --data-dir ./data "$@"
