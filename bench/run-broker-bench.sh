#!/usr/bin/env bash
# Broker core benchmark (issue 3, "Benchmark"): messages/s routed between 1,000 clients over
# plain TCP on loopback and the RSS per idle authenticated session, with 1 and 2 shards, driven
# by starling-loadgen (bench/loadgen). Medians of RUNS runs; a fresh starlingd for every run.
#
#   bench/run-broker-bench.sh [BUILD_DIR]        (default: build/loadgen, configured here)
#
# Environment (defaults): USERS=1000 DURATION=20 WINDOW=8 HOLD=5 RUNS=3 PORT=25222
#   SHARDS="1 2"  KEEP=0 (1: keep the temp folder with data, logs and JSON)
#   SKIP_BUILD=0 (1: use the binaries already in BUILD_DIR, e.g. while the tree does not build)
#   QUIET_LOAD= (e.g. 1.0: before each run wait, at most QUIET_WAIT=600 s, until the 1-minute
#   load average is below it; the load average is reported with every figure either way)
#
# Pinning: shards=1 runs starlingd on core 0 and the generator (1 thread) on core 1.
# shards=2 runs starlingd on cores 0-1 and the generator (2 threads) on cores 0-1 too: a 2-core
# machine has no core left over, so the generator competes with the broker there; its CPU use
# is reported beside every figure.
# Limits: the per-session stanza shaper (c2s.stanzas_per_second, default 200) and the
# per-IP connection cap are lifted in a config file, as for any throughput benchmark; everything
# else is the default configuration.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$repo/build/loadgen}
USERS=${USERS:-1000}
DURATION=${DURATION:-20}
WINDOW=${WINDOW:-8}
HOLD=${HOLD:-5}
RUNS=${RUNS:-3}
PORT=${PORT:-25222}
SHARDS=${SHARDS:-"1 2"}
KEEP=${KEEP:-0}
QUIET_LOAD=${QUIET_LOAD:-}
QUIET_WAIT=${QUIET_WAIT:-600}

# A shared machine's other work distorts everything: optionally wait for it to calm down.
wait_quiet() {
  [[ -n $QUIET_LOAD ]] || return 0
  local waited=0
  while awk -v q="$QUIET_LOAD" '{ exit !($1 >= q) }' /proc/loadavg && ((waited < QUIET_WAIT)); do
    sleep 5; waited=$((waited + 5))
  done
  echo "   load average $(cut -d' ' -f1 /proc/loadavg) after waiting ${waited}s" >&2
}

if [[ ${SKIP_BUILD:-0} != 1 ]]; then
  echo "== build ($build)" >&2
  cmake -S "$repo" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSTARLING_BUILD_TESTS=OFF >/dev/null
  ninja -C "$build" starlingd starlingctl starling-loadgen >&2
fi
starlingd=$build/broker/starlingd
starlingctl=$build/broker/starlingctl
loadgen=$build/bench/loadgen/starling-loadgen

work=$(mktemp -d /tmp/starling-broker-bench.XXXXXX)
server_pid=
cleanup() {
  if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then kill -TERM "$server_pid"; wait "$server_pid" || true; fi
  if [[ $KEEP == 1 ]]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

cat >"$work/bench.toml" <<TOML
[c2s]
stanzas_per_second = 1000000
max_connections_per_ip = 1000000
connection_rate_per_ip = 0
TOML

echo "== provision $USERS accounts" >&2
mkdir -p "$work/data"
"$repo/bench/loadgen/provision.sh" --starlingctl "$starlingctl" --data-dir "$work/data" --users "$USERS" \
  --prefix user --password pass --domain localhost >/dev/null

# start_server SHARDS CPUS LOG: a fresh starlingd on the provisioned data, ready when it answers.
start_server() {
  taskset -c "$2" "$starlingd" --config "$work/bench.toml" --data-dir "$work/data" --c2s-port "$PORT" \
    --c2s-tls-port 0 --metrics-port 0 --shards "$1" --allow-plaintext >"$3" 2>&1 &
  server_pid=$!
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then sleep 0.3; return 0; fi
    kill -0 "$server_pid" 2>/dev/null || { echo "starlingd died at start-up:" >&2; cat "$3" >&2; exit 1; }
    sleep 0.1
  done
  echo "starlingd did not open port $PORT" >&2
  exit 1
}

# stop_server LOG: SIGTERM, then the exit status goes into the log for the summary.
stop_server() {
  local rc=0
  if ! kill -0 "$server_pid" 2>/dev/null; then
    wait "$server_pid" || rc=$?
    echo "BENCH: starlingd had exited by itself, status $rc" >>"$1"
  else
    kill -TERM "$server_pid"
    wait "$server_pid" || rc=$?
    echo "BENCH: starlingd stopped, status $rc" >>"$1"
  fi
  server_pid=
}

echo "== load average before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for shards in $SHARDS; do
  if [[ $shards == 1 ]]; then server_cpus=0 gen_cpus=1 gen_threads=1; else server_cpus=0-1 gen_cpus=0-1 gen_threads=2; fi
  for run in $(seq "$RUNS"); do
    tag="s${shards}-r${run}"
    echo "== shards=$shards run $run: connect" >&2
    wait_quiet
    start_server "$shards" "$server_cpus" "$work/$tag-connect.log"
    taskset -c "$gen_cpus" "$loadgen" connect --port "$PORT" --users "$USERS" --prefix user --password pass \
      --threads "$gen_threads" --hold "$HOLD" --server-pid "$server_pid" --timeout 120 --no-progress \
      --json "$work/$tag-connect.json" >/dev/null || echo "BENCH: loadgen connect exit $?" >>"$work/$tag-connect.log"
    stop_server "$work/$tag-connect.log"

    echo "== shards=$shards run $run: chat ${DURATION}s, window $WINDOW" >&2
    wait_quiet
    start_server "$shards" "$server_cpus" "$work/$tag-chat.log"
    taskset -c "$gen_cpus" "$loadgen" chat --port "$PORT" --users "$USERS" --prefix user --password pass \
      --threads "$gen_threads" --duration "$DURATION" --window "$WINDOW" --server-pid "$server_pid" \
      --timeout $((DURATION + 120)) --no-progress --json "$work/$tag-chat.json" >/dev/null \
      || echo "BENCH: loadgen chat exit $?" >>"$work/$tag-chat.log"
    stop_server "$work/$tag-chat.log"
  done
done
echo "== load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

python3 - "$work" "$SHARDS" "$RUNS" <<'PY'
import json, os, statistics, sys
work, shards, runs = sys.argv[1], sys.argv[2].split(), int(sys.argv[3])

def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None

def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None

def fmt(v, spec):
    return "n/a" if v is None else format(v, spec)

rows, notes = [], []
for s in shards:
    chats = [load(f"{work}/s{s}-r{r}-chat.json") for r in range(1, runs + 1)]
    conns = [load(f"{work}/s{s}-r{r}-connect.json") for r in range(1, runs + 1)]
    c = [x["chat"] for x in chats if x and "chat" in x]
    k = [x for x in conns if x]
    for r in range(1, runs + 1):
        for kind in ("connect", "chat"):
            with open(f"{work}/s{s}-r{r}-{kind}.log") as f:
                for line in f:
                    if line.startswith("BENCH:") and "status 0" not in line and "status 143" not in line:
                        notes.append(f"shards={s} run {r} {kind}: {line.strip()}")
                    elif " error " in line or line.startswith("error") or "fatal" in line.lower():
                        notes.append(f"shards={s} run {r} {kind} log: {line.strip()[:200]}")
    for x in chats + conns:
        if x and not x.get("ok", False):
            notes.append(f"shards={s}: a {x['scenario']} run was not ok: errors={x.get('errors')} "
                         f"lost={x.get('chat', {}).get('lost')} dup={x.get('chat', {}).get('duplicates')}")
    rows.append({
        "shards": s,
        "msgs": med([x["delivered_per_s"] for x in c]),
        "p50": med([x["latency"]["p50_us"] / 1000 for x in c]),
        "p99": med([x["latency"]["p99_us"] / 1000 for x in c]),
        "p999": med([x["latency"]["p999_us"] / 1000 for x in c]),
        "lost": sum(x["lost"] for x in c), "dup": sum(x["duplicates"] for x in c),
        "sent": sum(x["sent"] for x in c),
        "gen_cpu": med([x["generator_cpu_util"] for x in c]),
        "gen_us": med([x["generator_cpu_us_per_msg"] for x in c]),
        "srv_cpu": med([x.get("server_cpu_util") for x in c]),
        "srv_ms_1k": med([x["server_cpu_s_per_1000_msgs"] * 1000 if "server_cpu_s_per_1000_msgs" in x else None for x in c]),
        "rss": med([x["server_rss"]["per_session_bytes"] for x in k if "server_rss" in x]),
        "rss_marg": med([x["server_rss"].get("marginal_per_session_bytes") for x in k if "server_rss" in x]),
        "login": med([x["login"]["rate_per_s"] for x in k]),
        "n_chat": len(c), "n_conn": len(k),
        "load": [x.get("loadavg1_before") for x in chats if x],
        "all_msgs": [round(x["delivered_per_s"]) for x in c],
        "all_rss": [round(x["server_rss"]["per_session_bytes"]) for x in k if "server_rss" in x and x["server_rss"]["per_session_bytes"] is not None],
    })

print("| shards | delivered msgs/s | p50 ms | p99 ms | p99.9 ms | lost / dup (of sent) | RSS/idle session (B) | marginal RSS/session (B) | logins/s | server CPU (cores) | server CPU ms / 1000 msgs | msgs per server CPU-second | generator CPU (cores) | generator CPU us/msg |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for r in rows:
    print(f"| {r['shards']} | {fmt(r['msgs'], ',.0f')} | {fmt(r['p50'], '.2f')} | {fmt(r['p99'], '.2f')} | {fmt(r['p999'], '.2f')} "
          f"| {r['lost']} / {r['dup']} (of {r['sent']:,}) | {fmt(r['rss'], ',.0f')} | {fmt(r['rss_marg'], ',.0f')} | {fmt(r['login'], ',.0f')} "
          f"| {fmt(r['srv_cpu'], '.2f')} | {fmt(r['srv_ms_1k'], '.2f')} | {fmt(1e6 / r['srv_ms_1k'] if r['srv_ms_1k'] else None, ',.0f')} | {fmt(r['gen_cpu'], '.2f')} | {fmt(r['gen_us'], '.2f')} |")
print()
for r in rows:
    print(f"shards={r['shards']}: chat runs {r['n_chat']} msgs/s {r['all_msgs']} (1-min load average at their start {r['load']}); "
          f"connect runs {r['n_conn']} RSS/session {r['all_rss']}")
for n in notes:
    print("NOTE:", n)
PY
