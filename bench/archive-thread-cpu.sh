#!/usr/bin/env bash
# CPU per delivered message, thread by thread, of starlingd binaries run alternately on the same
# chat (issue 14): which thread a change moved, when run-archive-bench.sh's throughput is too
# noisy to tell. One shard, every thread of starlingd on core 0, starling-loadgen (1000 users,
# 64 messages in flight each) on core 1, as in run-archive-bench.sh. Each run reads the
# threads' user+system ticks from /proc over a window of SECS seconds after 3 s of warm-up.
#
#   bench/archive-thread-cpu.sh STARLINGD [STARLINGD...]
#
# Environment (defaults): N=3 runs of each binary, alternating; MODE=on ("off": [modules]
#   mam = false); SECS=8; PORT=25282; BUILD=build/release (its starlingctl and
#   starling-loadgen are used with every binary).
# Prints one line a run: delivered msgs/s (the generator's, whole run), then ns of CPU per
# message in total and per thread (RocksDB's threads summed as "rocksdb").
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD:-$repo/build/release}
N=${N:-3}
MODE=${MODE:-on}
SECS=${SECS:-8}
PORT=${PORT:-25282}
loadgen=$build/bench/loadgen/starling-loadgen
starlingctl=$build/broker/starlingctl
[[ $# -ge 1 ]] || { echo "usage: $0 STARLINGD [STARLINGD...]" >&2; exit 2; }
for f in "$loadgen" "$starlingctl" "$@"; do
  [[ -x $f ]] || { echo "missing $f" >&2; exit 1; }
done

work=$(mktemp -d /tmp/starling-thread-cpu.XXXXXX)
pid=
cleanup() {
  if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid"; wait "$pid" || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

ticks() {  # thread name and user+system ticks, one line per thread
  local t
  for t in /proc/"$pid"/task/*; do
    echo "$(cut -d: -f1 <"$t/comm") $(awk '{print $14 + $15}' "$t/stat")"
  done
}

for _ in $(seq "$N"); do
  for bin in "$@"; do
    rm -rf "$work/run"
    mkdir -p "$work/run"
    printf '[c2s]\nstanzas_per_second = 1000000\nmax_connections_per_ip = 1000000\nconnection_rate_per_ip = 0\n' >"$work/run/c.toml"
    [[ $MODE == off ]] && printf '[modules]\nmam = false\n' >>"$work/run/c.toml"
    "$repo/bench/loadgen/provision.sh" --starlingctl "$starlingctl" --data-dir "$work/run/data" --users 1000 \
      --prefix user --password pass --domain localhost >"$work/run/provision.log" 2>&1 ||
      { cat "$work/run/provision.log" >&2; exit 1; }
    taskset -c 0 "$bin" --config "$work/run/c.toml" --data-dir "$work/run/data" --c2s-port "$PORT" --c2s-tls-port 0 \
      --metrics-port 0 --shards 1 --allow-plaintext >"$work/run/log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
    taskset -c 1 "$loadgen" chat --port "$PORT" --users 1000 --prefix user --password pass --threads 1 \
      --duration $((SECS + 4)) --window 64 --timeout 120 --drain 30 --no-progress --json "$work/run/lg.json" >/dev/null &
    lg=$!
    sleep 3
    ticks >"$work/run/t0"
    sleep "$SECS"
    ticks >"$work/run/t1"
    wait "$lg"
    kill -TERM "$pid"
    wait "$pid" || true
    pid=
    python3 - "$work/run/t0" "$work/run/t1" "$work/run/lg.json" "$SECS" "$bin" "$(getconf CLK_TCK)" <<'PY'
import collections, json, sys
def read(path):
    d = collections.Counter()
    for line in open(path):
        name, v = line.rsplit(' ', 1)
        d[name] += int(v)
    return d
a, b = read(sys.argv[1]), read(sys.argv[2])
rate = json.load(open(sys.argv[3]))["chat"]["delivered_per_s"]
msgs, hz = rate * float(sys.argv[4]), float(sys.argv[6])
per = {k: (b[k] - a[k]) / hz * 1e9 / msgs for k in b}
parts = "  ".join(f"{k} {v:.0f}" for k, v in sorted(per.items(), key=lambda x: -x[1]) if v >= 5)
print(f"{sys.argv[5]}: {rate:,.0f} msgs/s  total {sum(per.values()):.0f} ns/msg  {parts}")
PY
  done
done
