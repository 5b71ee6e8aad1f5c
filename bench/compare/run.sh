#!/usr/bin/env bash
# Side-by-side benchmark (issue 6): Starling vs Prosody 0.12 vs ejabberd 23.01 (Debian 12), all
# driven by the same starling-loadgen over plain c2s on loopback, same accounts, same scenarios.
# See bench/compare/README.md for what is measured and why.
#
#   bench/compare/run.sh [BUILD_DIR]     (default: build/compare in this repo, configured here)
#
# Environment (defaults):
#   USERS=1000 DURATION=15 RUNS=3 WINDOW=16 RATE=1000 HOLD=5
#   SERVERS="starling prosody ejabberd"  TABLES="1 2" (1: one core per server, 2: both cores)
#   QUICK=0 (1: ~3-minute smoke run: USERS=200 DURATION=4 RUNS=1 HOLD=2 RATE=1000)
#   KEEP=0 (1: keep the temp dir with configs, data, logs and JSON)
#   TSUNG=1 (0: skip the tsung cross-check)  TSUNG_SERVERS="starling prosody"
#   SKIP_INSTALL=0  SKIP_BUILD=0 (1: use the binaries already in BUILD_DIR)
#   UPDATE_RESULTS=0 (1: rewrite the compare section of bench/RESULTS.md)
#   PROVISION_ONLY=0 (1: create the accounts on each server, print the times, stop there)
#   OUT=bench/compare/out (where the summary JSON/markdown go; charts go to bench/compare/charts)
#   RESERVE_PORTS=1 (0: do not add PORT_BASE..+77 to net.ipv4.ip_local_reserved_ports during the run)
#   PORT_BASE=35222 (starling +0, prosody +1, ejabberd +2, ejabberd dist +68, tsung epmd +69)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
build=${1:-$repo/build/compare}
QUICK=${QUICK:-0}
if [[ $QUICK == 1 ]]; then
  : "${USERS:=200}" "${DURATION:=4}" "${RUNS:=1}" "${HOLD:=2}" "${RATE:=1000}"
fi
USERS=${USERS:-1000}
DURATION=${DURATION:-15}
RUNS=${RUNS:-3}
WINDOW=${WINDOW:-16}
RATE=${RATE:-1000}
HOLD=${HOLD:-5}
SERVERS=${SERVERS:-"starling prosody ejabberd"}
TABLES=${TABLES:-"1 2"}
KEEP=${KEEP:-0}
TSUNG=${TSUNG:-1}
TSUNG_SERVERS=${TSUNG_SERVERS:-"starling prosody"}
UPDATE_RESULTS=${UPDATE_RESULTS:-0}
OUT=${OUT:-$here/out}
PORT_BASE=${PORT_BASE:-35222}
port_starling=$PORT_BASE
port_prosody=$((PORT_BASE + 1))
port_ejabberd=$((PORT_BASE + 2))
port_ejabberd_dist=$((PORT_BASE + 68))
port_tsung_epmd=$((PORT_BASE + 69))
PYTHON=/usr/bin/python3
command_line="bench/compare/run.sh${1:+ $1}"
started_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)
t_start=$(date +%s)
loadavg_before=$(cut -d' ' -f1-3 /proc/loadavg)

log() { echo "== $(date +%H:%M:%S) $*" >&2; }

# ---------------------------------------------------------------- install and build
if [[ ${SKIP_INSTALL:-0} != 1 ]]; then
  log "install (bench/compare/install.sh)"
  "$here/install.sh"
fi
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
  log "build ($build)"
  cmake -S "$repo" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSTARLING_BUILD_TESTS=OFF >/dev/null
  ninja -C "$build" starlingd starlingctl starling-loadgen >&2
fi
starlingd=$build/broker/starlingd
starlingctl=$build/broker/starlingctl
loadgen=$build/bench/loadgen/starling-loadgen
for b in "$starlingd" "$starlingctl" "$loadgen"; do [[ -x $b ]] || { echo "run.sh: $b missing" >&2; exit 1; }; done

# 1000 users need ~1000 fds per side; 100k users need the hard limit raised (root can).
ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)"

# The configurations, start/stop and provisioning shared with the other side-by-side benchmarks.
me=run.sh
ej_node=starlingcmp@localhost
starling_flags=(--allow-plaintext)
# shellcheck source=lib.sh
source "$here/lib.sh"

# Each port in our range must be free (another engineer's run, or a leftover of ours).
ports_free "$port_starling" "$port_prosody" "$port_ejabberd" "$port_ejabberd_dist" "$port_tsung_epmd"

# Our ports lie in the ephemeral range: keep the kernel from handing them out as source ports
# during the run (lib.sh; RESERVE_PORTS=0 to skip).
reserve_ports "$PORT_BASE" $((PORT_BASE + 77))

work=$(mktemp -d /tmp/starling-compare.XXXXXX)
chmod 755 "$work" # ejabberd runs as the ejabberd user (setpriv, below) and must reach its dir
mkdir -p "$work/json" "$work/logs"
server_pid= server_name= measure_pid= lg_pid=

cleanup() {
  local rc=$?
  stop_leftovers
  if [[ $KEEP == 1 || $rc != 0 ]]; then echo "run.sh: kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- configurations
# Plain c2s on 127.0.0.1 on all three, PLAIN over plaintext allowed (see lib.sh and README.md).
bench_configs 0
# Table 1: each server on core 0; table 2: on both cores (start_server's CPUS).
table_cpus() { if [[ $1 == 2 ]]; then echo 0-1; else echo 0; fi; }

# ---------------------------------------------------------------- scenarios
run_loadgen() { # TABLE TAG SCENARIO ARGS...: loadgen on core 1 (table 1) or anywhere (table 2)
  local table=$1 tag=$2 scenario=$3; shift 3
  local pin=(taskset -c 1) threads=1
  [[ $table == 2 ]] && pin=() threads=2
  local rc=0
  "${pin[@]}" "$loadgen" "$scenario" --port "$server_port" --domain localhost --users "$USERS" --prefix user \
    --password pass --threads "$threads" --server-pid "$measure_pid" --no-progress \
    --json "$work/json/$tag.json" "$@" >/dev/null 2>"$work/logs/$tag.loadgen.log" &
  lg_pid=$! # in the background so that a signal reaches our trap at once
  wait "$lg_pid" || rc=$?
  lg_pid=
  ((rc == 0)) || echo "BENCH: loadgen $scenario exit $rc" >>"$work/logs/$tag.loadgen.log"
}

for s in $SERVERS; do case $s in starling|prosody|ejabberd) ;; *) echo "run.sh: unknown server $s" >&2; exit 2 ;; esac; done
log "work dir $work; USERS=$USERS DURATION=$DURATION RUNS=$RUNS WINDOW=$WINDOW RATE=$RATE HOLD=$HOLD TABLES='$TABLES' SERVERS='$SERVERS'"
log "load average before: $loadavg_before"
for s in $SERVERS; do provision "$s" "$USERS"; done

if [[ ${PROVISION_ONLY:-0} == 1 ]]; then
  cat "$work"/json/provision-*.json
  exit 0
fi

for run in $(seq "$RUNS"); do
  for table in $TABLES; do
    for s in $SERVERS; do
      tag="t$table-$s-r$run"
      log "table $table run $run/$RUNS: $s (connect, chat window $WINDOW, chat rate $RATE)"
      start_server "$s" "$(table_cpus "$table")" "$work/logs/$tag.server.log"
      run_loadgen "$table" "$tag-connect" connect --hold "$HOLD" --timeout 300
      sleep 1 # let the server close the held sessions
      run_loadgen "$table" "$tag-chat" chat --window "$WINDOW" --duration "$DURATION" --timeout $((DURATION + 300))
      sleep 1
      run_loadgen "$table" "$tag-rate" chat --rate "$RATE" --window "$WINDOW" --duration "$DURATION" --timeout $((DURATION + 300))
      sleep 1 # Prosody 0.12 can trip over sessions still closing when SIGTERM comes (mod_c2s.lua:469)
      stop_server "$work/logs/$tag.server.log"
    done
  done
done

# ---------------------------------------------------------------- tsung cross-check
if [[ $TSUNG == 1 ]]; then
  export work loadgen port_starling port_prosody port_tsung_epmd USERS PYTHON
  for s in $TSUNG_SERVERS; do
    [[ " $SERVERS " == *" $s "* ]] || continue
    log "tsung cross-check: login rate on $s"
    start_server "$s" 0 "$work/logs/tsung-$s.server.log"
    "$here/tsung.sh" "$s" "$server_port" "$measure_pid" >&2 || echo "BENCH: tsung.sh $s exit $?" >>"$work/logs/tsung-$s.server.log"
    stop_server "$work/logs/tsung-$s.server.log"
  done
fi

loadavg_after=$(cut -d' ' -f1-3 /proc/loadavg)
log "load average after: $loadavg_after"
cat >"$work/json/meta.json" <<JSON
{"command": "$command_line", "env": "USERS=$USERS DURATION=$DURATION RUNS=$RUNS WINDOW=$WINDOW RATE=$RATE HOLD=$HOLD QUICK=$QUICK TABLES='$TABLES' SERVERS='$SERVERS'",
 "started": "$started_at", "wall_s": $(( $(date +%s) - t_start )), "loadavg_before": "$loadavg_before", "loadavg_after": "$loadavg_after",
 "nproc": $(nproc), "cpu": "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//;s/"/ /g')",
 "git": "$(git -C "$repo" describe --always --dirty 2>/dev/null || echo unknown)", "starling_mam": "$starling_mam",
 "prosody": "$(dpkg-query -W -f='${Version}' prosody)", "ejabberd": "$(dpkg-query -W -f='${Version}' ejabberd)",
 "users": $USERS, "duration": $DURATION, "runs": $RUNS, "window": $WINDOW, "rate": $RATE, "hold": $HOLD,
 "servers": "$SERVERS", "tables": "$TABLES"}
JSON
args=("$work" --out "$OUT" --charts "$here/charts")
[[ $UPDATE_RESULTS == 1 ]] && args+=(--update-results "$repo/bench/RESULTS.md")
"$PYTHON" "$here/summarize.py" "${args[@]}"
