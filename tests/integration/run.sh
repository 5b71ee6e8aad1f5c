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
passed=0
failed=0
start=$(date +%s)
for f in "${files[@]}"; do
    [[ -f "$f" ]] || f="$here/$f"
    name=$(basename "$f")
    out=$(mktemp)
    # Drop slixmpp's import-time notice about stringprep; keep everything else.
    timeout -k 10 "$file_timeout" "$py" -u "$f" 2>&1 | grep -v --line-buffered 'slower stringprep' | tee "$out"
    rc=${PIPESTATUS[0]}
    p=$(grep -c '^PASS ' "$out")
    n=$(grep -c '^FAIL ' "$out")
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
    rm -f "$out"
done
echo "integration: $(( $(date +%s) - start ))s against $sut"
echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
