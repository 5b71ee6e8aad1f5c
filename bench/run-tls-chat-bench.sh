#!/usr/bin/env bash
# Chat throughput and idle memory over TLS (issue 13, "Benchmark"), side by side in one run:
# Starling vs Prosody 0.12 vs ejabberd 23.01 (Debian 12), every session over STARTTLS, and
# Starling over plain TCP beside them so that the cost of TLS is visible. The peer set-up is
# bench/compare's (bench/compare/lib.sh): same accounts, modules, certificate.
#
#   bench/run-tls-chat-bench.sh [BUILD_DIR]     (default build/release; needs starlingd,
#                                                starlingctl and starling-loadgen built there)
#
# Per run and server, on a fresh server process pinned to core 0 (one core: Starling --shards 1,
# ejabberd +S 1:1, Prosody is single-threaded), starling-loadgen (one thread) on core 1:
#   (1) idle:  SESSIONS sessions log in (STARTTLS, SCRAM, bind, presence) and stay idle HOLD s;
#              the server's RSS growth / sessions, when all are bound and after the hold
#   (2) chat:  USERS sessions, each keeping WINDOW messages (BODY_BYTES of padding) in flight to
#              random other sessions for DURATION s; delivered msgs/s, server CPU, loss/dup
# The servers take turns within each run, and the order rotates from run to run, so that a
# change in the machine's load hits all of them alike.
#
# Environment (defaults): USERS=1000 WINDOW=16 DURATION=15 BODY_BYTES=0 SESSIONS=5000 HOLD=5
#   RUNS=3  SERVERS="starling starling-plain prosody ejabberd"  KEEP=0  PORT_BASE=30422
#   STARLINGD= STARLINGCTL= LOADGEN= (default: in BUILD_DIR)
#   RATE=0 (messages/s offered in all, paced by the generator; 0: as fast as WINDOW allows.
#           A paced generator sends each message in its own record and segment, so a server's
#           CPU per message is higher than at full speed: compare binaries at one RATE only)
#   SERVER_CPU_QUOTA=0 (percent of one core, e.g. 50: each server process is held to it by a
#           cgroup v1 CPU quota, 10 ms period, so that the server and not the generator is the
#           limit, as it is for the peers; 0: only pinned to core 0)
#   PERF=0 (1: one more Starling TLS chat run after the measured ones, not counted, with
#           `perf record -g` on the server while the messages flow; the top entries go into
#           the summary. RUNS=0 PERF=1 SERVERS=starling: the profile alone)
#   PERF_SERVER=starling (or starling-plain: the same profile over plain TCP, to compare)
#   PERF_CALLGRAPH=-g (perf record's call-graph options; "--call-graph dwarf" also unwinds
#           through libc and libcrypto, which have no frame pointers, to see who calls malloc)
#   BEFORE= (another starlingd binary, e.g. main's before a change: server "starling-before" in
#           SERVERS runs it over STARTTLS on the same accounts and settings, side by side)
#   UPDATE_RESULTS=0 (1: the summary becomes a new top section of bench/RESULTS.md)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
build=${1:-$repo/build/release}
USERS=${USERS:-1000}
WINDOW=${WINDOW:-16}
DURATION=${DURATION:-15}
RATE=${RATE:-0}
SERVER_CPU_QUOTA=${SERVER_CPU_QUOTA:-0}
BODY_BYTES=${BODY_BYTES:-0}
SESSIONS=${SESSIONS:-5000}
HOLD=${HOLD:-5}
RUNS=${RUNS:-3}
SERVERS=${SERVERS:-"starling starling-plain prosody ejabberd"}
KEEP=${KEEP:-0}
PERF=${PERF:-0}
PERF_SERVER=${PERF_SERVER:-starling}
PERF_CALLGRAPH=${PERF_CALLGRAPH:--g}
PORT_BASE=${PORT_BASE:-30422}
BEFORE=${BEFORE:-}
UPDATE_RESULTS=${UPDATE_RESULTS:-0}
port_starling=$PORT_BASE
port_prosody=$((PORT_BASE + 1))
port_ejabberd=$((PORT_BASE + 2))
port_ejabberd_dist=$((PORT_BASE + 68))
PYTHON=/usr/bin/python3
me="run-tls-chat-bench.sh"
ej_node=starlingtc@localhost
starlingd=${STARLINGD:-$build/broker/starlingd}
starlingctl=${STARLINGCTL:-$build/broker/starlingctl}
loadgen=${LOADGEN:-$build/bench/loadgen/starling-loadgen}
for b in "$starlingd" "$starlingctl" "$loadgen"; do [[ -x $b ]] || { echo "$me: $b missing" >&2; exit 1; }; done
for s in $SERVERS; do case $s in starling|starling-plain|starling-before|prosody|ejabberd) ;; *) echo "$me: unknown server $s" >&2; exit 2 ;; esac; done
if [[ " $SERVERS " == *" starling-before "* ]]; then
  [[ -x $BEFORE ]] || { echo "$me: server starling-before needs BEFORE=<a starlingd binary>" >&2; exit 2; }
fi
[[ $PERF_SERVER == starling || $PERF_SERVER == starling-plain ]] || { echo "$me: PERF_SERVER is starling or starling-plain" >&2; exit 2; }
[[ $PERF == 1 ]] && { command -v perf >/dev/null || { echo "$me: PERF=1 needs perf (linux-perf)" >&2; exit 1; }; }

# shellcheck source=compare/lib.sh
source "$repo/bench/compare/lib.sh"
ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)"
(( $(ulimit -n) > SESSIONS + 500 )) || { echo "$me: ulimit -n $(ulimit -n) is too low for SESSIONS=$SESSIONS" >&2; exit 1; }
ports_free "$port_starling" "$port_prosody" "$port_ejabberd" "$port_ejabberd_dist"

work=$(mktemp -d /tmp/starling-tlschat.XXXXXX)
chmod 755 "$work"
mkdir -p "$work/json" "$work/logs"
server_pid= server_name= measure_pid= lg_pid=
quota_cgroup=
if ((SERVER_CPU_QUOTA > 0)); then
  [[ -d /sys/fs/cgroup/cpu ]] || { echo "$me: SERVER_CPU_QUOTA needs the cgroup v1 cpu controller at /sys/fs/cgroup/cpu" >&2; exit 2; }
  quota_cgroup=/sys/fs/cgroup/cpu/starling-tlschat-$$
  mkdir -p "$quota_cgroup"
  echo 10000 >"$quota_cgroup/cpu.cfs_period_us"
  echo $((SERVER_CPU_QUOTA * 100)) >"$quota_cgroup/cpu.cfs_quota_us"
fi
cleanup() {
  local rc=$?
  stop_leftovers
  [[ -n $quota_cgroup ]] && rmdir "$quota_cgroup" 2>/dev/null
  if [[ $KEEP == 1 || $rc != 0 ]]; then echo "$me: kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
reserve_ports "$PORT_BASE" "$port_ejabberd_dist" # no source port from our range meanwhile (lib.sh)

# STARTTLS required on all three (Starling-plain: the same configuration plus --allow-plaintext,
# and its clients never start TLS).
bench_configs 1
accounts=$(( SESSIONS > USERS ? SESSIONS : USERS ))
for s in $SERVERS; do
  case $s in starling|prosody|ejabberd) provision "$s" "$accounts" ;; esac
done
# starling-plain and starling-before start on the store provisioned for starling.
[[ " $SERVERS " =~ " starling-(plain|before) " && " $SERVERS " != *" starling "* ]] && provision starling "$accounts"

loadgen_run() { # TAG SCENARIO ARGS...: the generator on core 1, one thread
  local tag=$1 scenario=$2; shift 2
  local rc=0 tls=(--tls starttls)
  [[ $server_name == starling-plain ]] && tls=()
  taskset -c 1 "$loadgen" "$scenario" --port "$server_port" --domain localhost --prefix user --password pass \
    "${tls[@]}" --threads 1 --server-pid "$measure_pid" --no-progress --json "$work/json/$tag.json" "$@" \
    >/dev/null 2>"$work/logs/$tag.loadgen.log" &
  lg_pid=$! # in the background so that a signal reaches our trap at once
  wait "$lg_pid" || rc=$?
  lg_pid=
  ((rc == 0)) || log "  $tag: loadgen exit $rc (failures and loss are counted in its JSON)"
}

start() { # NAME LOG
  starling_flags=()
  [[ $1 == starling-plain ]] && starling_flags=(--allow-plaintext)
  if [[ $1 == starling-before ]]; then start_server "$1" 0 "$2" "$BEFORE"; else start_server "$1" 0 "$2"; fi
  # The whole server process (every thread) under the quota.
  if [[ -n $quota_cgroup ]]; then echo "$measure_pid" >"$quota_cgroup/cgroup.procs"; fi
}

chat_args=(--users "$USERS" --window "$WINDOW" --duration "$DURATION" --body-bytes "$BODY_BYTES" --timeout $((DURATION + 300)))
((RATE > 0)) && chat_args+=(--rate "$RATE")
read -ra order <<<"$SERVERS"
loadavg_before=$(cut -d' ' -f1-3 /proc/loadavg)
t_start=$(date +%s)
log "work dir $work; USERS=$USERS WINDOW=$WINDOW DURATION=$DURATION BODY_BYTES=$BODY_BYTES SESSIONS=$SESSIONS HOLD=$HOLD RUNS=$RUNS; load average $loadavg_before"
for run in $(seq "$RUNS"); do
  for s in "${order[@]}"; do
    tag="$s-r$run"
    log "run $run/$RUNS: $s (idle $SESSIONS, chat $USERS x window $WINDOW); load average $(cut -d' ' -f1 /proc/loadavg)"
    start "$s" "$work/logs/$tag.server.log"
    loadgen_run "$tag-idle" connect --users "$SESSIONS" --hold "$HOLD" --timeout 900
    sleep 1 # let the server close the idle sessions
    cut -d' ' -f1 /proc/loadavg >"$work/json/$tag-chat.load"
    loadgen_run "$tag-chat" chat "${chat_args[@]}"
    sleep 1 # Prosody 0.12 can trip over sessions still closing when SIGTERM comes (mod_c2s.lua:469)
    stop_server "$work/logs/$tag.server.log"
  done
  order=("${order[@]:1}" "${order[0]}") # the next run starts with the next server
done

if [[ $PERF == 1 ]]; then
  # Not counted: perf's sampling costs the server CPU. Recorded while the messages flow: from
  # 2 s after all USERS sessions are connected (the TLS logins take seconds: the generator's
  # mbedTLS handshakes) for DURATION - 4 s, so neither logins nor the drain are in it.
  log "perf: one more $PERF_SERVER chat run with perf record -g on the shard"
  start "$PERF_SERVER" "$work/logs/perf.server.log"
  loadgen_run perf-chat chat "${chat_args[@]}" &
  perf_lg=$!
  for _ in $(seq 600); do
    (( $(ss -Htn state established "( sport = :$port_starling )" | wc -l) >= USERS )) && break
    sleep 0.2
  done
  sleep 2
  # shellcheck disable=SC2086 # PERF_CALLGRAPH is a list of perf options
  perf record $PERF_CALLGRAPH -p "$measure_pid" -o "$work/perf.data" -- sleep $((DURATION > 6 ? DURATION - 4 : 2)) >"$work/logs/perf.log" 2>&1 || true
  wait "$perf_lg" || true
  stop_server "$work/logs/perf.server.log"
  perf report -i "$work/perf.data" --no-children --sort dso,symbol --percent-limit 1 --stdio 2>/dev/null |
    grep -E '^ +[0-9.]+%' | sed -E 's/[[:space:]]+-[[:space:]]+-[[:space:]]*$//; s/[[:space:]]+$//' | cut -c1-160 |
    head -25 >"$work/perf-top.txt" || true
  perf report -i "$work/perf.data" --no-children --sort dso --stdio 2>/dev/null |
    grep -E '^ +[0-9.]+%' | sed -E 's/[[:space:]]+$//' | head -10 >"$work/perf-dso.txt" || true
fi
loadavg_after=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- summary
"$PYTHON" - "$work" "$RUNS" "$SERVERS" "$USERS" "$WINDOW" "$DURATION" "$BODY_BYTES" "$SESSIONS" "$HOLD" \
  "$loadavg_before" "$loadavg_after" "$(( $(date +%s) - t_start ))" \
  "$(git -C "$repo" describe --always --dirty 2>/dev/null || echo unknown)" \
  "$(dpkg-query -W -f='${Version}' prosody 2>/dev/null)" "$(dpkg-query -W -f='${Version}' ejabberd 2>/dev/null)" "$PERF_SERVER" \
  >"$work/summary.md" <<'PY'
import glob, json, os, statistics, sys
(work, runs, servers, users, window, duration, body, sessions, hold, la0, la1, wall, git,
 v_prosody, v_ejabberd, perf_server) = sys.argv[1:]
servers = servers.split()
def load(name, kind):
    out = []
    for r in range(1, int(runs) + 1):
        f = os.path.join(work, "json", f"{name}-r{r}-{kind}.json")
        if os.path.exists(f):
            with open(f) as fh:
                d = json.load(fh)
            if kind == "chat" and os.path.exists(f[:-5] + ".load"):
                d["_load"] = open(f[:-5] + ".load").read().strip()
            out.append(d)
    return out
def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None
def f0(x): return "-" if x is None else f"{x:,.0f}"
def f2(x): return "-" if x is None else f"{x:.2f}"
label = {"starling": "Starling, STARTTLS", "starling-plain": "Starling, plain TCP",
         "starling-before": "Starling before (BEFORE=), STARTTLS",
         "prosody": f"Prosody {v_prosody}, STARTTLS", "ejabberd": f"ejabberd {v_ejabberd}, STARTTLS"}
print(f"{runs} runs, medians; each server on core 0 (one core), starling-loadgen (1 thread) on core 1; "
      f"load average {la0} -> {la1}; {int(wall) // 60} min {int(wall) % 60} s; git {git}.\n")
print(f"**Chat**: {users} sessions, each keeping {window} messages in flight to random other sessions for "
      f"{duration} s (body padding {body} B); delivered = distinct messages received / time from the first "
      "send to the last receipt; per server CPU-second = delivered / (utime + stime of the server process "
      "over the chat); gen = the generator's CPU in cores (near 1.0: the generator was the limit).\n")
print("| server | delivered msgs/s | per server CPU-s | server cores | server CPU us/msg | gen | lost / dup (of delivered) | raw msgs/s (load avg at start) |")
print("|---|---:|---:|---:|---:|---:|---:|---|")
chat = {}
for s in servers:
    ds = [d["chat"] | {"_load": d.get("_load", "?")} for d in load(s, "chat") if "chat" in d]
    if not ds:
        continue
    rate = med([c["delivered_per_s"] for c in ds])
    per_cpu = med([c["delivered"] / c["server_cpu_s"] if c.get("server_cpu_s") else None for c in ds])
    chat[s] = (rate, per_cpu)
    lost = sum(c["lost"] for c in ds); dup = sum(c["duplicates"] for c in ds); tot = sum(c["delivered"] for c in ds)
    raw = ", ".join(f"{c['delivered_per_s']:,.0f} ({c['_load']})" for c in ds)
    us = med([c["server_cpu_s"] * 1e6 / c["delivered"] if c.get("server_cpu_s") and c["delivered"] else None for c in ds])
    print(f"| {label[s]} | **{f0(rate)}** | **{f0(per_cpu)}** | {f2(med([c.get('server_cpu_util') for c in ds]))} "
          f"| {f2(us)} | {f2(med([c.get('generator_cpu_util') for c in ds]))} | {lost} / {dup} (of {tot:,}) | {raw} |")
if "starling" in chat:
    print()
    for p in ("prosody", "ejabberd", "starling-plain", "starling-before"):
        if p in chat and chat[p][0] and chat[p][1]:
            what = {"starling-plain": "TLS/plain on Starling",
                    "starling-before": "Starling after/before over TLS"}.get(p, f"Starling/{p} over TLS")
            print(f"- {what}: **{chat['starling'][0] / chat[p][0]:.1f}x** delivered msgs/s, "
                  f"**{chat['starling'][1] / chat[p][1]:.1f}x** per server CPU-second")
print(f"\n**Idle**: {sessions} sessions logged in (STARTTLS unless plain; SCRAM, bind, initial presence), held "
      f"{hold} s; the server's RSS (VmRSS of starlingd, Prosody's lua5.4, ejabberd's beam.smp) with all bound "
      "minus before the clients, / sessions; and the same after the hold.\n")
print("| server | sessions bound | RSS / session, all bound (B) | RSS / session, after the hold (B) | logins/s | raw after the hold (B) |")
print("|---|---:|---:|---:|---:|---|")
for s in servers:
    ds = load(s, "idle")
    if not ds:
        continue
    def after(d):
        r = d.get("server_rss") or {}
        ok = d["login"]["ok"]
        return (r["end_kib"] - r["before_kib"]) * 1024 / ok if ok and r.get("end_kib") is not None and r.get("before_kib") is not None else None
    print(f"| {label[s]} | {min(d['login']['ok'] for d in ds):,} | {f0(med([(d.get('server_rss') or {}).get('per_session_bytes') for d in ds]))} "
          f"| **{f0(med([after(d) for d in ds]))}** | {f0(med([d['login']['rate_per_s'] for d in ds]))} "
          f"| {', '.join(f0(after(d)) for d in ds)} |")
errs = {}
for f in glob.glob(os.path.join(work, "json", "*.json")):
    with open(f) as fh:
        d = json.load(fh)
    for k, v in (d.get("errors") or {}).items():
        errs[f"{os.path.basename(f)[:-5]}: {k}"] = v
if errs:
    print("\nErrors reported by the generator:\n")
    for k, v in sorted(errs.items()):
        print(f"- {k}: {v}")
for name, title in (("perf-dso.txt", "by object"), ("perf-top.txt", "by symbol (>= 1%)")):
    p = os.path.join(work, name)
    if os.path.exists(p) and os.path.getsize(p):
        print(f"\n`perf record -g` of the shard of {label[perf_server]} during an extra chat run (not counted), "
              f"while the messages flowed; self time {title}:\n")
        print("```\n" + open(p).read().rstrip() + "\n```")
PY
cat "$work/summary.md"
if [[ $UPDATE_RESULTS == 1 ]]; then
  {
    echo "## Chat throughput and idle memory over TLS: Starling vs Prosody vs ejabberd (issue 13), $(date -u +'%Y-%m-%d %H:%M') UTC"
    echo
    echo "\`USERS=$USERS WINDOW=$WINDOW DURATION=$DURATION BODY_BYTES=$BODY_BYTES SESSIONS=$SESSIONS HOLD=$HOLD RUNS=$RUNS PERF=$PERF bench/run-tls-chat-bench.sh\`"
    echo
    cat "$work/summary.md"
    echo
  } >"$work/section.md"
  "$PYTHON" - "$repo/bench/RESULTS.md" "$work/section.md" <<'PY'
import sys
path, section = sys.argv[1], open(sys.argv[2]).read()
text = open(path).read()
at = text.find("\n## ")
text = text + "\n" + section if at < 0 else text[:at + 1] + section + "\n" + text[at + 1:]
open(path, "w").write(text)
PY
fi
