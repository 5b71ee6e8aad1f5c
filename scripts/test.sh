#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test Starling has:
#   1. unit tests (GoogleTest under ctest) in the release build,
#   2. the same under AddressSanitizer + UBSan,
#   3. the libFuzzer harnesses for a bounded time (STARLING_FUZZ_SECONDS, default 15),
#   4. integration tests against the real binaries, when there are any,
#   5. the Debian package: built, installed, run, removed and purged (tests/deploy/),
#   6. starling-agent cross-built for arm64 and run under qemu-aarch64 against the host's
#      starlingd (tests/cross/).
# Idempotent; safe to run again. Ends with one summary line: "N passed, N failed".
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
logs="$root/build/test-logs"
fuzz_seconds="${STARLING_FUZZ_SECONDS:-15}"
jobs=$(nproc)

say() { printf '\n==> %s\n' "$*"; }

say "dependencies"
# --cross: also the arm64/armhf cross compilers, qemu-user and the :arm64 libraries (step 6).
# When Debian's mirror cannot give those (its arm64 indexes behind amd64's mid-sync: the
# multiarch libraries then have no common version), everything else is installed and tested,
# and step 6 says plainly that it did not run, and why.
cross_ready=1
if ! bash deploy/install-deps.sh --cross; then
    cross_ready=0
    echo "test.sh: the cross-build packages could not be installed (above); installing the rest" >&2
    bash deploy/install-deps.sh
fi

mkdir -p "$logs"
passed=0
failed=0
status=0

# Runs ctest for a preset, keeps its log, and adds its counts to the totals.
run_ctest() {
    local preset=$1; shift
    local log="$logs/$preset.log"
    set +e
    ctest --preset "$preset" -j "$jobs" "$@" 2>&1 | tee "$log"
    local rc=${PIPESTATUS[0]}
    set -e
    local line
    line=$(grep -E 'tests passed, [0-9]+ tests? failed out of [0-9]+' "$log" | tail -n 1 || true)
    if [[ -z "$line" ]]; then
        echo "test.sh: ctest ($preset) ran no tests" >&2
        failed=$((failed + 1))
        status=1
        return
    fi
    local nfail total
    nfail=$(sed -E 's/.*tests passed, ([0-9]+) tests? failed out of ([0-9]+).*/\1/' <<<"$line")
    total=$(sed -E 's/.*tests passed, ([0-9]+) tests? failed out of ([0-9]+).*/\2/' <<<"$line")
    passed=$((passed + total - nfail))
    failed=$((failed + nfail))
    if [[ $rc -ne 0 ]]; then status=1; fi
}

build() {
    local preset=$1; shift
    say "configure + build: $preset"
    cmake --preset "$preset" "$@" >"$logs/configure-$preset.log" || { cat "$logs/configure-$preset.log"; exit 1; }
    cmake --build --preset "$preset" -j "$jobs"
}

build release
say "unit tests (release)"
run_ctest release -L unit

build asan
say "unit tests (AddressSanitizer + UBSan)"
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 run_ctest asan -L unit

build fuzz -DSTARLING_FUZZ_SECONDS="$fuzz_seconds"
say "fuzzing (${fuzz_seconds}s per harness, ASan + UBSan)"
run_ctest fuzz -L fuzz

# Adds the "N passed, N failed" line of log $1 (from run.sh) to the totals; a non-zero exit
# status $2 without that line counts as one failure.
tally() {
    local log=$1 rc=$2 line
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1 || true)
    if [[ -n "$line" ]]; then
        passed=$((passed + $(cut -d' ' -f1 <<<"$line")))
        failed=$((failed + $(cut -d' ' -f3 <<<"$line")))
    fi
    if [[ $rc -ne 0 ]]; then status=1; [[ -n "$line" ]] || failed=$((failed + 1)); fi
}

# Integration tests: the real starlingd driven by slixmpp, once from the release build and once
# from the ASan + UBSan build (a sanitizer report aborts the broker or fails its exit status).
run_integration() {
    local build=$1 log="$logs/integration-$2.log"
    say "integration tests ($2)"
    set +e
    STARLING_LOADGEN="$root/build/release/bench/loadgen/starling-loadgen" \
        tests/integration/run.sh "$build" 2>&1 | tee "$log"
    local rc=${PIPESTATUS[0]}
    set -e
    tally "$log" "$rc"
}
if [[ -x tests/integration/run.sh ]]; then
    run_integration "$root/build/release" release
    ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        run_integration "$root/build/asan" asan
fi

# The Debian packages (tests/deploy/test_package.py: starlingd; test_agent_package.py:
# starling-agent, and both side by side): built from the release build, installed with dpkg,
# run, removed and purged. Once, not per build; needs root for dpkg.
if [[ -x tests/integration/run.sh ]]; then
    say "Debian packages (cpack, dpkg -i / -r / -P)"
    log="$logs/package.log"
    sudo_cmd=()
    [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo --preserve-env=STARLING_BUILD_DIR,STARLING_JOBS)
    set +e
    STARLING_JOBS=1 "${sudo_cmd[@]}" tests/integration/run.sh "$root/build/release" "$root/tests/deploy/test_package.py" \
        "$root/tests/deploy/test_agent_package.py" 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    set -e
    tally "$log" "$rc"
fi

# starling-agent for arm64 (cmake/aarch64-linux-gnu.cmake, Debian's cross compiler and :arm64
# libraries) under qemu-user against the release starlingd on the host (tests/cross/).
not_run=""
if [[ -x tests/integration/run.sh && $cross_ready -eq 0 ]]; then
    say "starling-agent arm64 under qemu-aarch64: NOT RUN"
    not_run="the arm64 cross-build and its qemu test did not run: Debian's mirror could not give their packages (install-deps.sh --cross failed above)"
    echo "$not_run"
elif [[ -x tests/integration/run.sh ]]; then
    say "starling-agent arm64 under qemu-aarch64"
    log="$logs/cross-arm64.log"
    set +e
    {
        cmake -S . -B build/arm64 -G Ninja --toolchain cmake/aarch64-linux-gnu.cmake -DCMAKE_BUILD_TYPE=MinSizeRel \
            -DSTARLING_BUILD_BROKER=OFF -DSTARLING_BUILD_BENCH=OFF -DSTARLING_BUILD_TESTS=OFF \
            -DSTARLING_BUILD_AGENT=ON >"$logs/configure-arm64.log" &&
            cmake --build build/arm64 -j "$jobs" --target starling-agent &&
            STARLING_AGENT_BINARY="$root/build/arm64/edge-agent/starling-agent" \
            STARLING_AGENT_EMULATOR="qemu-aarch64 -L /usr/aarch64-linux-gnu" \
            tests/integration/run.sh "$root/build/release" "$root/tests/cross/test_agent_qemu.py"
    } 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    set -e
    tally "$log" "$rc"
fi

echo
echo "Logs: $logs"
[[ -n $not_run ]] && echo "NOT RUN: $not_run"
echo "$passed passed, $failed failed"
exit $status
