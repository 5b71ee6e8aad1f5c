#!/usr/bin/env bash
# Idle memory per authenticated STARTTLS session, two brokers back to back in one run (issue 13):
# BEFORE (e.g. main, mbedTLS) and AFTER (this tree, OpenSSL), each measured by
# bench/run-idle-bench.sh with every session upgraded by STARTTLS, with the same load generator
# (this tree's, mbedTLS client) and the same accounts.
#
#   BEFORE=/path/to/old/starlingd bench/run-tls-idle-compare.sh [BUILD_DIR]   (default build/release)
#
# Build the old broker from a clean export, e.g.:
#   git archive main | tar -x -C /tmp/before && cmake -S /tmp/before -B /tmp/before/build -G Ninja \
#     -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSTARLING_BUILD_TESTS=OFF -DSTARLING_BUILD_BENCH=OFF \
#     && ninja -C /tmp/before/build starlingd
# Environment: SESSIONS=5000 HOLD=5 (passed on).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$repo/build/release}
: "${BEFORE:?set BEFORE to the starlingd to compare against}"
export SESSIONS=${SESSIONS:-5000} HOLD=${HOLD:-5} SKIP_BUILD=1 LOADGEN_ARGS="--tls starttls ${LOADGEN_ARGS:-}"
for side in before after; do
  if [[ $side == before ]]; then bin=$BEFORE; else bin=$build/broker/starlingd; fi
  echo "== $side: $bin" >&2
  STARLINGD=$bin bash "$repo/bench/run-idle-bench.sh" "$build" | sed "s/^/$side  /"
done
