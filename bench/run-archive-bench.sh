#!/usr/bin/env bash
# The archive's cost (issue 14): chat throughput of one shard with the XEP-0313 archive on and
# off, measured side by side in one run (runs alternate on/off so that the shared machine's
# load falls on both alike), driven by starling-loadgen. Prints the medians and their ratio.
#
#   bench/run-archive-bench.sh [BUILD_DIR]     (default: build/release; needs starlingd,
#                                               starlingctl and starling-loadgen built there)
#
# Environment (defaults): USERS=1000 WINDOW=64 DURATION=10 RUNS=3 PORT=25232 KEEP=0
#   BEFORE=  a second starlingd binary (e.g. main's) measured in the same run, on and off,
#            interleaved with this tree's: before/after in one table.
#   PERF_CALLGRAPH=-g  perf record's call-graph options with PERF=1 ("--call-graph dwarf,8192"
#            also unwinds through libc and librocksdb, which have no frame pointers)
#   PERF=0   1: `perf record -g` the archive-on server of the last run (perf.data kept in the
#            work folder; implies KEEP=1).
#   PEERS=   e.g. "prosody ejabberd": the same chat on Prosody 0.12 with mod_mam and ejabberd
#            23.01 with mod_mam (Debian 12; bench/compare/lib.sh's set-up, peer_mam=1: every chat
#            message archived, as on Starling), each pinned to core 0 like starlingd, archive on
#            and off, in the same runs. Install them first: bench/compare/install.sh.
#   PEER_MODES="on off"  which of the peers' modes to run ("on": only with their archive).
#   SHARDS=1 shards of starlingd, all on core 0: with 2 or more, a message between two accounts
#            of different home shards crosses shards (on average (SHARDS-1)/SHARDS of them).
#
# Pinning: starlingd (one shard, every thread of it: reactor, committer, RocksDB's background
# work) on core 0, the generator (one thread) on core 1. Limits lifted as in
# run-broker-bench.sh (stanza shaper, per-address connection limits); everything else is the
# default configuration, whose [modules] mam = true archives every chat message twice (sender
# and recipient). "off" adds `[modules] mam = false`.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$repo/build/release}
USERS=${USERS:-1000}
WINDOW=${WINDOW:-64}
DURATION=${DURATION:-10}
RUNS=${RUNS:-3}
PORT=${PORT:-25232}
KEEP=${KEEP:-0}
SHARDS=${SHARDS:-1}
BEFORE=${BEFORE:-}
PERF=${PERF:-0}
PERF_CALLGRAPH=${PERF_CALLGRAPH:--g}
PEERS=${PEERS:-}
PEER_MODES=${PEER_MODES:-"on off"}
[[ $PERF == 1 ]] && KEEP=1

after_bin=$build/broker/starlingd
starlingctl=$build/broker/starlingctl
loadgen=$build/bench/loadgen/starling-loadgen
for f in "$after_bin" "$starlingctl" "$loadgen" ${BEFORE:+"$BEFORE"}; do
  [[ -x $f ]] || { echo "missing $f (build starlingd starlingctl starling-loadgen)" >&2; exit 1; }
done

if [[ -n $BEFORE ]] && ! command -v ldb >/dev/null; then
  apt-get install -y rocksdb-tools >/dev/null || { echo "run-archive-bench.sh: BEFORE= needs ldb (rocksdb-tools)" >&2; exit 1; }
fi
work=$(mktemp -d /tmp/starling-archive-bench.XXXXXX)
server_pid=
cleanup() {
  if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
    if [[ -n $PEERS ]]; then stop_server "$work/logs/cleanup.log"; else kill -TERM "$server_pid"; wait "$server_pid" || true; fi
  fi
  if [[ $KEEP == 1 ]]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

if [[ -n $PEERS ]]; then
  # The peers' configurations, accounts and process handling: bench/compare/lib.sh.
  me=run-archive-bench.sh
  PYTHON=/usr/bin/python3
  port_starling=$((PORT + 10)) port_prosody=$((PORT + 1)) port_ejabberd=$((PORT + 2)) port_ejabberd_dist=$((PORT + 3))
  ej_node=starlingarch@localhost
  starlingd=$after_bin
  starling_flags=()
  # shellcheck source=compare/lib.sh
  source "$repo/bench/compare/lib.sh"
  chmod 755 "$work"
  mkdir -p "$work/logs" "$work/json"
  for peer in $PEERS; do
    case $peer in
      prosody) command -v prosody >/dev/null || { echo "PEERS: prosody is not installed (bench/compare/install.sh)" >&2; exit 1; } ;;
      ejabberd) command -v ejabberdctl >/dev/null || { echo "PEERS: ejabberd is not installed (bench/compare/install.sh)" >&2; exit 1; } ;;
      *) echo "PEERS: unknown server $peer (prosody, ejabberd)" >&2; exit 1 ;;
    esac
  done
  # Both variants of each peer's configuration, kept aside; the accounts are made once.
  for mode in off on; do
    peer_mam=0
    [[ $mode == on ]] && peer_mam=1
    bench_configs 0
    cp "$work/prosody/prosody.cfg.lua" "$work/prosody/prosody-$mode.cfg.lua"
    cp "$work/ejabberd/conf/ejabberd.yml" "$work/ejabberd/conf/ejabberd-$mode.yml"
  done
  for peer in $PEERS; do provision "$peer" "$USERS"; done
  # Every peer run starts from its freshly provisioned store, as every Starling run does (an
  # archive that grew over the earlier runs slows a server down: ejabberd's mnesia table did).
  cp -a "$work/prosody/data" "$work/prosody/data.seed"
  cp -a "$work/ejabberd/spool" "$work/ejabberd/spool.seed"
fi

# peer_run TAG NAME MODE: one chat run against Prosody or ejabberd with its archive on or off,
# on a fresh copy of its provisioned store.
peer_run() {
  local tag=$1 name=$2 mode=$3
  cp "$work/prosody/prosody-$mode.cfg.lua" "$work/prosody/prosody.cfg.lua"
  cp "$work/ejabberd/conf/ejabberd-$mode.yml" "$work/ejabberd/conf/ejabberd.yml"
  chown ejabberd:ejabberd "$work/ejabberd/conf/ejabberd.yml"
  rm -rf "$work/prosody/data" "$work/ejabberd/spool"
  cp -a "$work/prosody/data.seed" "$work/prosody/data"
  cp -a "$work/ejabberd/spool.seed" "$work/ejabberd/spool"
  start_server "$name" 0 "$work/$tag.log"
  sleep 1
  taskset -c 1 "$loadgen" chat --port "$server_port" --users "$USERS" --prefix user --password pass --threads 1 \
    --duration "$DURATION" --window "$WINDOW" --server-pid "$measure_pid" --timeout $((DURATION + 240)) --drain 180 \
    --no-progress --json "$work/$tag.json" >/dev/null || echo "BENCH: loadgen exit $?" >>"$work/$tag.log"
  stop_server "$work/$tag.log"
}

common='[c2s]
stanzas_per_second = 1000000
max_connections_per_ip = 1000000
connection_rate_per_ip = 0
'
printf '%s' "$common" >"$work/on.toml"
printf '%s\n[modules]\nmam = false\n' "$common" >"$work/off.toml"

echo "== provision $USERS accounts" >&2
mkdir -p "$work/seed"
"$repo/bench/loadgen/provision.sh" --starlingctl "$starlingctl" --data-dir "$work/seed" --users "$USERS" \
  --prefix user --password pass --domain localhost >/dev/null

# run TAG BINARY MODE: a fresh copy of the provisioned store, one chat run, its JSON. Every run
# waits up to 180 s for the messages in flight when the sending stops (--drain): a peer with its
# archive on takes ~40 s to deliver 1,000 x WINDOW; the rate counts that time too.
run() {
  local tag=$1 bin=$2 mode=$3 perf_this=${4:-0}
  rm -rf "$work/data" && cp -a "$work/seed" "$work/data"
  # A starlingd from before the archive stored each message once (main before session 9) refuses
  # a store with the "mam_bodies" column family, which this tree's starlingctl creates: its
  # copy of the seed goes without it (empty: nothing is lost). Needs ldb (rocksdb-tools).
  if [[ $bin == "$BEFORE" ]]; then
    ldb --db="$work/data/db" drop_column_family mam_bodies >/dev/null 2>&1 || true
  fi
  local wrap=()
  [[ $perf_this == 1 ]] && wrap=(perf record $PERF_CALLGRAPH -o "$work/perf-$tag.data" --)
  taskset -c 0 "${wrap[@]}" "$bin" --config "$work/$mode.toml" --data-dir "$work/data" --c2s-port "$PORT" \
    --c2s-tls-port 0 --metrics-port 0 --shards "$SHARDS" --allow-plaintext >"$work/$tag.log" 2>&1 &
  server_pid=$!
  local up=0
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then up=1; break; fi
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
  done
  if [[ $up != 1 ]]; then echo "starlingd ($tag) did not start:" >&2; cat "$work/$tag.log" >&2; exit 1; fi
  sleep 0.3
  # With perf in front, the generator measures the server's CPU through perf's child; the
  # figure that matters (delivered msgs/s) does not depend on it.
  taskset -c 1 "$loadgen" chat --port "$PORT" --users "$USERS" --prefix user --password pass --threads 1 \
    --duration "$DURATION" --window "$WINDOW" --server-pid "$server_pid" --timeout $((DURATION + 240)) --drain 180 \
    --no-progress --json "$work/$tag.json" >/dev/null || echo "BENCH: loadgen exit $?" >>"$work/$tag.log"
  kill -TERM "$server_pid" 2>/dev/null || true
  wait "$server_pid" || true
  server_pid=
}

variants=(after)
[[ -n $BEFORE ]] && variants=(before after)
echo "== load average before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for r in $(seq "$RUNS"); do
  for v in "${variants[@]}"; do
    bin=$after_bin
    [[ $v == before ]] && bin=$BEFORE
    for mode in on off; do
      echo "== run $r: $v, archive $mode" >&2
      p=0
      [[ $PERF == 1 && $r == "$RUNS" && $mode == on ]] && p=1
      run "$v-$mode-r$r" "$bin" "$mode" "$p"
    done
  done
  for peer in $PEERS; do
    for mode in $PEER_MODES; do
      echo "== run $r: $peer, archive $mode" >&2
      peer_run "$peer-$mode-r$r" "$peer" "$mode"
    done
  done
done
echo "== load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

python3 - "$work" "$RUNS" "${variants[@]}" $PEERS <<'PY'
import json, statistics, sys
import os
work, runs, variants = sys.argv[1], int(sys.argv[2]), sys.argv[3:]

def load(tag):
    try:
        with open(f"{work}/{tag}.json") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None

print("| binary | archive | delivered msgs/s (each run) | median | server CPU ms / 1000 msgs (median) | lost / dup |")
print("|---|---|---|---:|---:|---|")
med = {}
cpu_med = {}
notes = []
for v in variants:
    for mode in ("on", "off"):
        if not any(os.path.exists(f"{work}/{v}-{mode}-r{r}.log") for r in range(1, runs + 1)):
            continue  # not run (PEER_MODES)
        xs = [load(f"{v}-{mode}-r{r}") for r in range(1, runs + 1)]
        c = [x["chat"] for x in xs if x and "chat" in x]
        for r, x in enumerate(xs, 1):
            if x is None:
                notes.append(f"{v} {mode} run {r}: no result (see {v}-{mode}-r{r}.log)")
            elif not x.get("ok", False):
                notes.append(f"{v} {mode} run {r}: not ok: errors={x.get('errors')}")
        rates = [x["delivered_per_s"] for x in c]
        cpu = [x["server_cpu_s_per_1000_msgs"] * 1000 for x in c if "server_cpu_s_per_1000_msgs" in x]
        m = statistics.median(rates) if rates else None
        med[(v, mode)] = m
        cpu_med[(v, mode)] = statistics.median(cpu) if cpu else None
        print(f"| {v} | {mode} | {' / '.join(f'{x:,.0f}' for x in rates)} | {m:,.0f} | "
              f"{statistics.median(cpu):.2f} | {sum(x['lost'] for x in c)} / {sum(x['duplicates'] for x in c)} |"
              if m is not None else f"| {v} | {mode} | n/a | n/a | n/a | n/a |")
print()
for v in variants:
    on, off = med.get((v, "on")), med.get((v, "off"))
    if on and off:
        print(f"{v}: archive on / archive off = {on / off:.1%}" + (" (goal: at least 50%)" if v in ("before", "after") else ""))
for v in variants:
    if v in ("before", "after"):
        continue
    a, p = med.get(("after", "on")), med.get((v, "on"))
    ca, cp = cpu_med.get(("after", "on")), cpu_med.get((v, "on"))
    if a and p:
        line = f"Starling / {v}, both archiving: {a / p:.1f}x delivered msgs/s"
        if ca and cp:
            line += f", {cp / ca:.1f}x less server CPU per message"
        print(line)
for n in notes:
    print("NOTE:", n)
PY
