#!/usr/bin/env bash
# Integration tests: start the real starlingd on loopback with temporary data folders and drive
# it with an independent client (Debian's python3-slixmpp).
#
#   tests/integration/run.sh BUILD_DIR [test_file.py ...]
#
# Finds BUILD_DIR/broker/starlingd and starlingctl, runs every tests/integration/test_*.py (or
# the files named) with a per-file timeout, prints one PASS/FAIL line per test and ends with
# exactly one line "N passed, N failed". Exit status is non-zero if anything failed.
#
# Environment:
#   STARLING_FILE_TIMEOUT=120   seconds per test file
#   STARLING_JOBS=$(nproc)      test files run side by side (each on its own port range)
#   STARLING_SUT=prosody        run against Debian's prosody instead (validates the tests
#                               themselves; BUILD_DIR is then ignored; some tests fail or skip
#                               where Prosody 0.12 lacks a feature, e.g. SCRAM-SHA-256)
#   STARLING_KEEP_TMP=1         keep the servers' temporary data folders
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)

if [[ $# -lt 1 ]]; then
    echo "usage: $0 BUILD_DIR [test_file.py ...]" >&2
    exit 2
fi
build_dir=$(cd "$1" 2>/dev/null && pwd) || { echo "run.sh: no such build folder: $1" >&2; echo "0 passed, 1 failed"; exit 1; }
shift
sut=${STARLING_SUT:-starling}
file_timeout=${STARLING_FILE_TIMEOUT:-120}

if [[ "$sut" == starling ]]; then
    for bin in starlingd starlingctl; do
        if [[ ! -x "$build_dir/broker/$bin" ]]; then
            echo "run.sh: $build_dir/broker/$bin not found; build first (cmake --build --preset release)" >&2
            echo "0 passed, 1 failed"
            exit 1
        fi
    done
fi

# Debian's python3-slixmpp lives in /usr/lib/python3/dist-packages: prefer the system python
# (a pyenv/venv python3 earlier in PATH would not see it).
py=""
for cand in /usr/bin/python3 python3; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import slixmpp' >/dev/null 2>&1; then
        py=$(command -v "$cand")
        break
    fi
done
if [[ -z "$py" ]]; then
    echo "run.sh: python3 cannot import slixmpp. Install it with:" >&2
    echo "    apt-get install python3-slixmpp     (or: bash deploy/install-deps.sh)" >&2
    echo "0 passed, 1 failed"
    exit 1
fi

if [[ $# -gt 0 ]]; then
    files=("$@")
else
    files=("$here"/test_*.py)
fi

export STARLING_BUILD_DIR="$build_dir" STARLING_SUT="$sut" PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1

# Test files run side by side, STARLING_JOBS at a time (each starts its own servers). Each
# worker slot gets its own port range below the kernel's ephemeral range (32768 and up on
# Debian), so two files never race for a port. A file's output is printed whole when it ends.
jobs=${STARLING_JOBS:-$(nproc)}
[[ "$jobs" =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: STARLING_JOBS must be a positive integer" >&2; exit 2; }
(( jobs > 8 )) && jobs=8
port_span=$(( 12000 / jobs ))
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

passed=0
failed=0
start=$(date +%s)

# Runs file $2 in slot $1; its output and exit status land in $work/$1.out and $work/$1.rc.
run_file() {
    local slot=$1 f=$2 lo=$(( 20000 + $1 * port_span ))
    STARLING_PORT_RANGE="$lo-$(( lo + port_span ))" \
        timeout -k 10 "$file_timeout" "$py" -u "$f" >"$work/$slot.out" 2>&1
    echo $? >"$work/$slot.rc"
}

# Prints and counts what slot $1 ran (file name $2).
report() {
    local slot=$1 name=$2 rc p n
    # Drop slixmpp's import-time notice about stringprep; keep everything else.
    grep -v 'slower stringprep' "$work/$slot.out" || true
    rc=$(cat "$work/$slot.rc" 2>/dev/null || echo 1)
    p=$(grep -c '^PASS ' "$work/$slot.out")
    n=$(grep -c '^FAIL ' "$work/$slot.out")
    passed=$((passed + p))
    failed=$((failed + n))
    if [[ $rc -ne 0 && $n -eq 0 ]]; then
        if [[ $rc -eq 124 || $rc -eq 137 ]]; then
            echo "FAIL $name: timed out after ${file_timeout}s"
        else
            echo "FAIL $name: exited with status $rc"
        fi
        failed=$((failed + 1))
    fi
}

declare -A slot_of_pid name_of_slot
free_slots=()
for (( i = 0; i < jobs; i++ )); do free_slots+=("$i"); done
for f in "${files[@]}"; do
    [[ -f "$f" ]] || f="$here/$f"
    if (( ${#free_slots[@]} == 0 )); then
        wait -n -p done_pid
        slot=${slot_of_pid[$done_pid]}
        unset "slot_of_pid[$done_pid]"
        report "$slot" "${name_of_slot[$slot]}"
        free_slots+=("$slot")
    fi
    slot=${free_slots[0]}
    free_slots=("${free_slots[@]:1}")
    name_of_slot[$slot]=$(basename "$f")
    run_file "$slot" "$f" &
    slot_of_pid[$!]=$slot
done
while (( ${#slot_of_pid[@]} > 0 )); do
    wait -n -p done_pid
    slot=${slot_of_pid[$done_pid]}
    unset "slot_of_pid[$done_pid]"
    report "$slot" "${name_of_slot[$slot]}"
done
echo "integration: $(( $(date +%s) - start ))s against $sut, $jobs files at a time"
echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
