#!/usr/bin/env bash
# Idle sessions at scale (issue 6): SESSIONS authenticated plain-TCP sessions held open at the
# same time on this machine, and what each costs in memory: the broker's RSS (user space) and
# the kernel's socket memory, measured side by side.
#
#   bench/run-idle-bench.sh [BUILD_DIR]        (default: build/loadgen, configured here)
#
# Environment (defaults): SESSIONS=100000 HOLD=30 PORT=27100 KEEP=0
#   LOADGEN_ARGS=  more starling-loadgen arguments, e.g. --sm (XEP-0198 enabled on every session),
#                  --tls starttls (every session upgrades with STARTTLS before it logs in)
#   STARLINGD=     the broker binary to measure (default BUILD_DIR/broker/starlingd), e.g. one
#                  built from another commit (bench/run-tls-idle-compare.sh)
#   PER_PROCESS=   sessions per starlingd (default: what the file-descriptor limit allows)
#
# One starlingd holds one descriptor per client. On a normal host raise the limit
# (systemd LimitNOFILE=1048576, or ulimit -Hn) and PER_PROCESS = SESSIONS: one process holds
# them all. Where the hard limit is low and cannot be raised (a container without
# CAP_SYS_RESOURCE: 20000 here), the sessions are spread over several starlingd processes
# (each --shards 1, its own port and accounts), so the machine still carries all of them at
# once; the figures are per session either way. Each starlingd gets its own starling-loadgen
# (`connect`, one thread, the same limit applies to it).
#
# Reported: sessions established at once (counted by ss on the server ports), the broker's RSS
# per session (VmRSS of all starlingd after all bound minus before the clients, / sessions),
# the kernel's memory per socket: TCP buffers (/proc/net/sockstat "mem" pages) and kernel
# objects (the Slab line of /proc/meminfo: socket, file, epoll entries...), each divided by
# 2 x sessions since both ends of a loopback connection are in this kernel.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$repo/build/loadgen}
SESSIONS=${SESSIONS:-100000}
HOLD=${HOLD:-30}
PORT=${PORT:-27100}
KEEP=${KEEP:-0}
hard=$(ulimit -Hn)
[[ $hard == unlimited ]] && hard=1048576
ulimit -n "$hard"
PER_PROCESS=${PER_PROCESS:-$((hard - 200 < SESSIONS ? hard - 200 : SESSIONS))}
procs=$(((SESSIONS + PER_PROCESS - 1) / PER_PROCESS))

if [[ ${SKIP_BUILD:-0} != 1 ]]; then
  echo "== build ($build)" >&2
  cmake -S "$repo" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSTARLING_BUILD_TESTS=OFF >/dev/null
  ninja -C "$build" starlingd starlingctl starling-loadgen >&2
fi
starlingd=${STARLINGD:-$build/broker/starlingd}
starlingctl=$build/broker/starlingctl
loadgen=$build/bench/loadgen/starling-loadgen

work=$(mktemp -d /tmp/starling-idle-bench.XXXXXX)
pids=()
gens=()
cleanup() {
  for p in "${gens[@]}" "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${gens[@]}" "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [[ $KEEP == 1 ]]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

cat >"$work/bench.toml" <<TOML
[c2s]
max_connections_per_ip = 1000000
connection_rate_per_ip = 0
TOML

echo "== $SESSIONS sessions: $procs starlingd x up to $PER_PROCESS (descriptor limit $hard)" >&2
first=1
for i in $(seq 0 $((procs - 1))); do
  n=$((SESSIONS - i * PER_PROCESS < PER_PROCESS ? SESSIONS - i * PER_PROCESS : PER_PROCESS))
  mkdir -p "$work/d$i"
  "$repo/bench/loadgen/provision.sh" --starlingctl "$starlingctl" --data-dir "$work/d$i" --users "$n" \
    --first "$first" --prefix user --password pass --domain localhost 2>&1 | sed 's/^/   /' >&2
  echo "$first $n" >"$work/range$i"
  first=$((first + n))
done

sock_mem() { awk '/^TCP:/ { for (i = 1; i <= NF; i++) if ($i == "mem") print $(i + 1) }' /proc/net/sockstat; }
rss_kib() { local t=0; for p in "${pids[@]}"; do t=$((t + $(awk '/VmRSS/ { print $2 }' "/proc/$p/status"))); done; echo $t; }
established() { ss -Htn state established "( sport >= :$PORT and sport < :$((PORT + procs)) )" | wc -l; }

for i in $(seq 0 $((procs - 1))); do
  "$starlingd" --config "$work/bench.toml" --data-dir "$work/d$i" --c2s-port $((PORT + i)) --c2s-tls-port 0 \
    --metrics-port 0 --shards 1 --allow-plaintext >"$work/server$i.log" 2>&1 &
  pids+=($!)
done
for i in $(seq 0 $((procs - 1))); do
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$((PORT + i))") 2>/dev/null && break
    sleep 0.1
  done
done
sleep 1
page_kib=$(($(getconf PAGESIZE) / 1024))
slab() { awk '/^Slab:/ { print $2 }' /proc/meminfo; }
rss0=$(rss_kib) mem0=$(sock_mem) slab0=$(slab)
start=$(date +%s.%N)
# Long enough a hold that every generator is still holding when the last one has logged in.
for i in $(seq 0 $((procs - 1))); do
  read -r f n <"$work/range$i"
  "$loadgen" connect --port $((PORT + i)) --users "$n" --first "$f" --prefix user --password pass \
    --threads 1 --hold $((HOLD + 600)) --no-progress --timeout $((HOLD + 900)) ${LOADGEN_ARGS:-} \
    --json "$work/gen$i.json" >/dev/null 2>"$work/gen$i.err" &
  gens+=($!)
done

# Wait until every session is established (or a generator gave up), with progress.
peak=0 last_print=0
while :; do
  e=$(established)
  ((e > peak)) && peak=$e
  now=$(date +%s)
  if ((now - last_print >= 5)); then echo "   $e established" >&2; last_print=$now; fi
  ((e >= SESSIONS)) && break
  alive=0
  for p in "${gens[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
  ((alive)) || break
  sleep 1
done
sleep 2
bound_s=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
e=$(established) rss1=$(rss_kib) mem1=$(sock_mem) slab1=$(slab)
echo "   all in: $e established after ${bound_s}s; holding ${HOLD}s" >&2
sleep "$HOLD"
e2=$(established) rss2=$(rss_kib)

/usr/bin/python3 - "$SESSIONS" "$procs" "$e" "$e2" "$rss0" "$rss1" "$rss2" "$mem0" "$mem1" "$page_kib" "$slab0" "$slab1" "$bound_s" <<'PY'
import sys
(sessions, procs, est, est2, rss0, rss1, rss2, mem0, mem1, page_kib, slab0, slab1, bound_s) = (
    float(x) for x in sys.argv[1:])
n = max(est, 1)
print(f"| sessions wanted | established at once | still after the hold | starlingd processes | "
      f"broker RSS / session (B) | kernel TCP buffers / socket (B) | kernel slab / socket (B) | "
      f"time to all established (s) |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|")
print(f"| {sessions:,.0f} | {est:,.0f} | {est2:,.0f} | {procs:.0f} | {(rss1 - rss0) * 1024 / n:,.0f} | "
      f"{(mem1 - mem0) * page_kib * 1024 / (2 * n):,.0f} | {(slab1 - slab0) * 1024 / (2 * n):,.0f} | {bound_s:.1f} |")
print(f"\nbroker RSS: {rss0 / 1024:.0f} MiB before, {rss1 / 1024:.0f} MiB with all sessions, "
      f"{rss2 / 1024:.0f} MiB after the hold")
PY
((e >= SESSIONS)) || { echo "only $e of $SESSIONS sessions were established at once" >&2; tail -n 3 "$work"/gen*.err >&2; exit 1; }
