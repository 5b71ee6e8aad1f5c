#!/usr/bin/env bash
# Instructions per archived chat message in starlingd, counted by callgrind (for machines whose
# `perf stat -e instructions` says <not supported>, like the VMs bench/RESULTS.md runs on).
# Each binary runs twice under callgrind with the archive on (the default configuration), a
# short and a long chat from starling-loadgen; the difference of the two runs' instruction
# counts over the difference of their delivered messages is the cost per message, without the
# start-up, the logins and the shutdown (the same in both runs).
#
#   bench/count-archive-instructions.sh [BUILD_DIR]   (needs starlingd, starlingctl and
#                                                      starling-loadgen built there)
#
# Environment (defaults): USERS=100 WINDOW=16 SHORT=4 LONG=12 (seconds of chat) PORT=25242
#   BEFORE=  a second starlingd binary (e.g. main's) counted the same way: a before/after table.
#   MODE=on  "off" adds `[modules] mam = false`.
# Under callgrind starlingd runs ~50x slower; the counts do not depend on the speed (the
# generator keeps WINDOW messages in flight per session whatever the rate).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$repo/build/release}
USERS=${USERS:-100}
WINDOW=${WINDOW:-16}
SHORT=${SHORT:-4}
LONG=${LONG:-12}
PORT=${PORT:-25242}
BEFORE=${BEFORE:-}
MODE=${MODE:-on}

after_bin=$build/broker/starlingd
starlingctl=$build/broker/starlingctl
loadgen=$build/bench/loadgen/starling-loadgen
for f in "$after_bin" "$starlingctl" "$loadgen" ${BEFORE:+"$BEFORE"}; do
  [[ -x $f ]] || { echo "missing $f" >&2; exit 1; }
done
command -v valgrind >/dev/null || { echo "needs valgrind" >&2; exit 1; }

work=$(mktemp -d /tmp/starling-archive-ir.XXXXXX)
server_pid=
cleanup() {
  if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then kill -TERM "$server_pid"; wait "$server_pid" || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

printf '[c2s]\nstanzas_per_second = 1000000\nmax_connections_per_ip = 1000000\nconnection_rate_per_ip = 0\n' >"$work/on.toml"
cp "$work/on.toml" "$work/off.toml"
printf '[modules]\nmam = false\n' >>"$work/off.toml"
"$repo/bench/loadgen/provision.sh" --starlingctl "$starlingctl" --data-dir "$work/seed" --users "$USERS" \
  --prefix user --password pass --domain localhost >/dev/null

# One run: prints "<instructions> <delivered messages>".
run() {
  local tag=$1 bin=$2 seconds=$3
  rm -rf "$work/data" && cp -a "$work/seed" "$work/data"
  valgrind --tool=callgrind --callgrind-out-file=/dev/null --log-file="$work/$tag.vg" \
    "$bin" --config "$work/$MODE.toml" --data-dir "$work/data" --c2s-port "$PORT" --c2s-tls-port 0 \
    --metrics-port 0 --shards 1 --allow-plaintext >"$work/$tag.log" 2>&1 &
  server_pid=$!
  local up=0
  for _ in $(seq 600); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then up=1; break; fi
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
  done
  [[ $up == 1 ]] || { echo "starlingd ($tag) did not start" >&2; cat "$work/$tag.log" >&2; exit 1; }
  "$loadgen" chat --port "$PORT" --users "$USERS" --prefix user --password pass --threads 1 \
    --duration "$seconds" --window "$WINDOW" --timeout $((seconds + 600)) --drain 300 --no-progress \
    --json "$work/$tag.json" >/dev/null || echo "loadgen exit $? ($tag)" >&2
  kill -TERM "$server_pid"
  wait "$server_pid" || true
  server_pid=
  local ir delivered
  ir=$(sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$work/$tag.vg")
  delivered=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["chat"]["delivered"])' "$work/$tag.json")
  echo "$ir $delivered"
}

variants=(after)
[[ -n $BEFORE ]] && variants=(before after)
echo "| binary | archive | instructions, ${SHORT} s / ${LONG} s runs | messages | instructions per message |"
echo "|---|---|---|---|---:|"
declare -A per
for v in "${variants[@]}"; do
  bin=$after_bin
  [[ $v == before ]] && bin=$BEFORE
  read -r ir1 m1 < <(run "$v-short" "$bin" "$SHORT")
  read -r ir2 m2 < <(run "$v-long" "$bin" "$LONG")
  per[$v]=$(python3 -c "print(f'{($ir2 - $ir1) / ($m2 - $m1):.0f}')")
  echo "| $v | $MODE | $ir1 / $ir2 | $m1 / $m2 | ${per[$v]} |"
done
if [[ -n $BEFORE ]]; then
  python3 -c "print(f'after / before: {${per[after]} / ${per[before]}:.3f}')"
fi
