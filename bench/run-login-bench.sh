#!/usr/bin/env bash
# Login rate with rosters (issue 4): USERS accounts, each with CONTACTS contacts in
# subscription "both" (a symmetric ring: user i knows i±1..i±CONTACTS/2), provisioned with
# `starlingctl roster import`. starling-loadgen `connect` logs every account in and sends
# initial presence, so each login costs the SASL exchange, binding, a roster read, probes to
# every contact and a broadcast to those online. Medians of RUNS runs for 1 and 2 shards.
#
#   bench/run-login-bench.sh [BUILD_DIR]      (env: USERS=1000 CONTACTS=100 RUNS=3 SKIP_BUILD=1)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$repo/build/loadgen}
USERS=${USERS:-1000}
CONTACTS=${CONTACTS:-100}
RUNS=${RUNS:-3}
PORT=${PORT:-25322}
SHARDS=${SHARDS:-"1 2"}

if [[ ${SKIP_BUILD:-0} != 1 ]]; then
  cmake -S "$repo" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSTARLING_BUILD_TESTS=OFF >/dev/null
  ninja -C "$build" starlingd starlingctl starling-loadgen >&2
fi
starlingd=$build/broker/starlingd
starlingctl=$build/broker/starlingctl
loadgen=$build/bench/loadgen/starling-loadgen

work=$(mktemp -d /tmp/starling-login-bench.XXXXXX)
server_pid=
cleanup() {
  if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then kill -TERM "$server_pid"; wait "$server_pid" || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
printf '[c2s]\nstanzas_per_second = 1000000\nmax_connections_per_ip = 1000000\nconnection_rate_per_ip = 0\n' >"$work/bench.toml"

echo "== provision $USERS accounts with $CONTACTS contacts each" >&2
mkdir -p "$work/data"
"$repo/bench/loadgen/provision.sh" --starlingctl "$starlingctl" --data-dir "$work/data" --users "$USERS" \
  --prefix user --password pass --domain localhost >/dev/null
python3 - "$USERS" "$CONTACTS" >"$work/rosters.csv" <<'PY'
import sys
n, c = int(sys.argv[1]), int(sys.argv[2])
half = c // 2
for i in range(1, n + 1):
    for d in range(1, half + 1):
        for j in ((i - 1 + d) % n + 1, (i - 1 - d) % n + 1):
            if j != i:
                print(f"user{i}@localhost,user{j}@localhost,both")
PY
"$starlingctl" --data-dir "$work/data" roster import "$work/rosters.csv" >&2

start_server() {
  taskset -c "$2" "$starlingd" --config "$work/bench.toml" --data-dir "$work/data" --c2s-port "$PORT" \
    --c2s-tls-port 0 --metrics-port 0 --shards "$1" --allow-plaintext >"$3" 2>&1 &
  server_pid=$!
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then sleep 0.3; return 0; fi
    sleep 0.1
  done
  echo "starlingd did not open port $PORT" >&2; cat "$3" >&2; exit 1
}

echo "| shards | logins/s (median of $RUNS) | runs | login p50 ms | login p99 ms | failed |"
echo "|---|---:|---|---:|---:|---:|"
for shards in $SHARDS; do
  if [[ $shards == 1 ]]; then server_cpus=0 gen_cpus=1 gen_threads=1; else server_cpus=0-1 gen_cpus=0-1 gen_threads=2; fi
  rates=() p50s=() p99s=() fails=0
  for run in $(seq "$RUNS"); do
    start_server "$shards" "$server_cpus" "$work/s$shards-$run.log"
    taskset -c "$gen_cpus" "$loadgen" connect --port "$PORT" --users "$USERS" --prefix user --password pass \
      --threads "$gen_threads" --hold 1 --timeout 300 --no-progress --json "$work/s$shards-$run.json" >/dev/null || true
    kill -TERM "$server_pid"; wait "$server_pid" || true; server_pid=
    read -r rate p50 p99 failed < <(python3 -c "
import json,sys; d=json.load(open(sys.argv[1]))['login']
print(round(d['rate_per_s']), round(d['latency']['p50_us']/1000,1), round(d['latency']['p99_us']/1000,1), d['failed'])" "$work/s$shards-$run.json")
    rates+=("$rate"); p50s+=("$p50"); p99s+=("$p99"); fails=$((fails + failed))
  done
  med() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
  echo "| $shards | $(med "${rates[@]}") | ${rates[*]} | $(med "${p50s[@]}") | $(med "${p99s[@]}") | $fails |"
done
