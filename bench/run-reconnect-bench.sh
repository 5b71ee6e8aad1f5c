#!/usr/bin/env bash
# TLS reconnect benchmark (issue 13, "Benchmark"), side by side in one run: Starling vs Prosody 0.12
# vs ejabberd 23.01 (Debian 12), each pinned to core 0 (one core), starling-loadgen's reconnect
# scenario (OpenSSL client) on core 1, same certificate (EC P-256, self-signed), same accounts,
# STARTTLS on all three.
#
#   bench/run-reconnect-bench.sh [BUILD_DIR]      (default build/release; needs starlingd,
#                                                  starlingctl and starling-loadgen built there)
#
# Per run and server:
#   (a) full:   --users devices loop for DURATION s, each login a new TLS handshake + RFC 6120 SCRAM
#               + restart + bind (Starling also: SASL2 SCRAM + Bind2)
#   (b) resume: the same with the TLS session of the last login offered (ticket), and on Starling
#               SASL2 + FAST token instead of SCRAM (peers: they offer no SASL2; RFC 6120 SCRAM)
#   (c) storm:  DEVICES devices bound, all links cut at once by the client, all reconnect with
#               WINDOW logins in flight (resumption + FAST where the server gives them); time until
#               all are bound again, p50/p99 per device
# The figure per core is logins per second of server CPU (utime+stime from /proc): the server has
# one core, and the client (one core too, and as expensive per TLS handshake) cannot always
# saturate it. The wall-clock rate is printed beside it.
#
# Environment (defaults): USERS=64 DURATION=10 RUNS=3 DEVICES=15000 WINDOW=256 STORM=1
#   STORM_CUT=client (server: the script stops and starts the server under the bound devices;
#   Starling's FAST tokens survive, TLS tickets do not, their keys are in memory only)
#   SERVERS="starling prosody ejabberd"  STARLINGD= STARLINGCTL= LOADGEN= (default: in BUILD_DIR)
#   BEFORE=/path/to/starlingd (adds a "starling-before"
#   column: the same runs against that binary)  KEEP=0  PORT_BASE=30322  SKIP_INSTALL=1
#   UPDATE_RESULTS=0 (1: the table goes to the top of bench/RESULTS.md)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
build=${1:-$repo/build/release}
USERS=${USERS:-64}
DURATION=${DURATION:-10}
RUNS=${RUNS:-3}
DEVICES=${DEVICES:-15000}
WINDOW=${WINDOW:-256}
STORM=${STORM:-1}
STORM_CUT=${STORM_CUT:-client}
SERVERS=${SERVERS:-"starling prosody ejabberd"}
KEEP=${KEEP:-0}
PORT_BASE=${PORT_BASE:-30322}
UPDATE_RESULTS=${UPDATE_RESULTS:-0}
port_starling=$PORT_BASE
port_prosody=$((PORT_BASE + 1))
port_ejabberd=$((PORT_BASE + 2))
port_ejabberd_dist=$((PORT_BASE + 68))
PYTHON=/usr/bin/python3
log() { echo "== $(date +%H:%M:%S) $*" >&2; }

[[ ${SKIP_INSTALL:-1} == 1 ]] || "$repo/bench/compare/install.sh"
starlingd=${STARLINGD:-$build/broker/starlingd}
starlingctl=${STARLINGCTL:-$build/broker/starlingctl}
loadgen=${LOADGEN:-$build/bench/loadgen/starling-loadgen}
needed=("$loadgen")
[[ " $SERVERS " == *" starling"* || -n ${BEFORE:-} ]] && needed+=("$starlingctl")
[[ " $SERVERS " == *" starling "* ]] && needed+=("$starlingd")
for b in "${needed[@]}"; do [[ -x $b ]] || { echo "run-reconnect-bench.sh: $b missing" >&2; exit 1; }; done
[[ -z ${BEFORE:-} || -x $BEFORE ]] || { echo "run-reconnect-bench.sh: BEFORE=$BEFORE is not executable" >&2; exit 1; }
[[ -n ${BEFORE:-} ]] && SERVERS="$SERVERS starling-before"

# 15,000 devices need 15,000 sockets in the generator and as many in the server, plus slack.
need=$((DEVICES + 1000))
ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)"
if (( $(ulimit -n) < need )); then
  echo "run-reconnect-bench.sh: ulimit -n is $(ulimit -n), the storm needs $need; DEVICES=$(( $(ulimit -n) - 1000 ))" >&2
  DEVICES=$(( $(ulimit -n) - 1000 ))
fi
accounts=$(( DEVICES > USERS ? DEVICES : USERS ))

ej_node=starlingrc@localhost
me="run-reconnect-bench.sh"
starling_flags=()
# shellcheck source=compare/lib.sh
source "$repo/bench/compare/lib.sh"
ports_free "$port_starling" "$port_prosody" "$port_ejabberd" "$port_ejabberd_dist"

work=$(mktemp -d /tmp/starling-reconnect.XXXXXX)
chmod 755 "$work"
mkdir -p "$work/json" "$work/logs"
server_pid= server_name= measure_pid= lg_pid=
cleanup() {
  local rc=$?
  stop_leftovers
  if [[ $KEEP == 1 || $rc != 0 ]]; then echo "run-reconnect-bench.sh: kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
reserve_ports "$PORT_BASE" "$port_ejabberd_dist" # no source port from our range meanwhile (lib.sh)

# ---------------------------------------------------------------- configurations
# One certificate for all, STARTTLS required on all three (bench/compare/lib.sh).
bench_configs 1

# ---------------------------------------------------------------- provisioning
# user1..userN@localhost, password "pass", SCRAM (4096 iterations) on all three.
for s in $SERVERS; do
  case $s in starling|prosody|ejabberd) provision "$s" "$accounts" ;; esac
done
[[ " $SERVERS " == *" starling-before "* && " $SERVERS " != *" starling "* ]] && provision starling "$accounts"
log "provisioned $accounts accounts on: $SERVERS"

# ---------------------------------------------------------------- runs
loadgen_run() { # TAG ARGS...: the generator on core 1, one thread
  local tag=$1; shift
  local rc=0
  taskset -c 1 "$loadgen" reconnect --port "$server_port" --domain localhost --prefix user --password pass \
    --tls starttls --threads 1 --server-pid "$measure_pid" --no-progress --json "$work/json/$tag.json" "$@" \
    >/dev/null 2>"$work/logs/$tag.loadgen.log" &
  lg_pid=$!
  wait "$lg_pid" || rc=$?
  lg_pid=
  ((rc == 0)) || log "  $tag: loadgen exit $rc (failures counted in its JSON)"
}

loadavg_before=$(cut -d' ' -f1-3 /proc/loadavg)
for run in $(seq "$RUNS"); do
  for s in $SERVERS; do
    log "run $run/$RUNS: $s"
    bin=$starlingd; [[ $s == starling-before ]] && bin=$BEFORE
    start_server "$s" 0 "$work/logs/$s-r$run.server.log" "$bin"
    loadgen_run "$s-r$run-full-legacy" --mode full --auth legacy --sasl scram-sha-1 --users "$USERS" --duration "$DURATION" --timeout $((DURATION + 120))
    loadgen_run "$s-r$run-resume-legacy" --mode resume --auth legacy --sasl scram-sha-1 --users "$USERS" --duration "$DURATION" --timeout $((DURATION + 120))
    if [[ $s == starling* ]]; then
      loadgen_run "$s-r$run-full-sasl2" --mode full --auth sasl2 --users "$USERS" --duration "$DURATION" --timeout $((DURATION + 120))
      loadgen_run "$s-r$run-resume-sasl2" --mode resume --auth sasl2 --users "$USERS" --duration "$DURATION" --timeout $((DURATION + 120))
    fi
    if [[ $STORM == 1 && $STORM_CUT == client ]]; then
      loadgen_run "$s-r$run-storm" --mode storm --auth sasl2 --sasl scram-sha-1 --users "$DEVICES" --connect-window "$WINDOW" --timeout 900
    elif [[ $STORM == 1 ]]; then
      # The server is restarted under the bound devices: stop it once all are bound, start it
      # again; the devices retry (connection refused meanwhile) until they are bound again.
      rm -f "$work/ready"
      loadgen_run "$s-r$run-storm" --mode storm --storm-cut server --ready-file "$work/ready" --auth sasl2 \
        --sasl scram-sha-1 --users "$DEVICES" --connect-window "$WINDOW" --timeout 900 &
      storm_lg=$!
      while [[ ! -f $work/ready ]] && kill -0 "$storm_lg" 2>/dev/null; do sleep 0.2; done
      if [[ -f $work/ready ]]; then
        stop_server "$work/logs/$s-r$run.server.log"
        keep_data=1 start_server "$s" 0 "$work/logs/$s-r$run.restarted.server.log" "$bin"  # same store: tokens kept
      fi
      wait "$storm_lg" || true
    fi
    stop_server "$work/logs/$s-r$run.server.log"
    sleep 1
  done
done
loadavg_after=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- summary
STORM_CUT=$STORM_CUT "$PYTHON" - "$work/json" "$RUNS" "$SERVERS" "$USERS" "$DEVICES" "$WINDOW" "$DURATION" "$loadavg_before" "$loadavg_after" \
  "$(git -C "$repo" describe --always --dirty 2>/dev/null || echo unknown)" >"$work/summary.md" <<'PY'
import glob, json, os, re, statistics, sys
jdir, runs, servers, users, devices, window, duration, la0, la1, git = sys.argv[1:]
servers = servers.split()
def load(tag):
    out = []
    for f in sorted(glob.glob(os.path.join(jdir, f"*-r*-{tag}.json"))):
        m = re.match(r"^(.+?)-r(\d+)-(.+)\.json$", os.path.basename(f))
        if not m or m.group(3) != tag:
            continue
        name = m.group(1)
        with open(f) as fh:
            out.append((name, json.load(fh)))
    return out
def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None
rows = [("full-legacy", "(a) full TLS handshake + SCRAM-SHA-1 + bind"),
        ("full-sasl2", "(a') full TLS handshake + SASL2 SCRAM-SHA-256 + Bind2"),
        ("resume-legacy", "(b) TLS resumption + SCRAM-SHA-1 + bind"),
        ("resume-sasl2", "(b') TLS resumption + SASL2 FAST + Bind2")]
print(f"Runs: {runs} (medians); {users} devices looping for {duration} s per row; server on core 0, "
      f"starling-loadgen (OpenSSL 3 client, STARTTLS) on core 1; load average {la0} -> {la1}; git {git}.\n")
print("Logins per second of server CPU (= per core), median; in brackets: wall-clock logins/s, "
      "server CPU us per login, share of TLS resumed; failures summed over the runs.\n")
peers = [p for p in servers if not p.startswith("starling")]
print("| login | " + " | ".join(servers + [f"starling/{p}" for p in peers]) + " |")
print("|---|" + "---:|" * (len(servers) + len(peers)))
for tag, label in rows:
    data = load(tag)
    if not data:
        continue
    cells, per = [], {}
    for s in servers:
        ds = [d for n, d in data if n == s]
        if not ds:
            cells.append("no SASL2" if tag.endswith("sasl2") and not s.startswith("starling") else "-")
            continue
        pc = med([d["logins"]["logins_per_server_cpu_s"] for d in ds])
        wall = med([d["logins"]["rate_per_s"] for d in ds])
        us = med([d["logins"]["server_cpu_us_per_login"] for d in ds])
        res = med([d["logins"]["tls_resumed"] / d["logins"]["ok"] if d["logins"]["ok"] else 0 for d in ds])
        fails = sum(d["logins"]["failed"] + d.get("setup_failed_devices", 0) for d in ds)
        per[s] = pc
        cells.append(f"**{pc:,.0f}** ({wall:,.0f}/s, {us:,.0f} us, {100*res:.0f}% resumed" + (f", {fails} failed" if fails else "") + ")")
    ratios = []
    base = per.get("starling")
    if base is None:
        # no Starling row of this kind (peers have no SASL2): compare with the legacy row
        ref = {n: d for n, d in load(tag.replace("sasl2", "legacy"))}
    for p in servers:
        if p.startswith("starling"):
            continue
        peer = per.get(p)
        if peer is None and tag.endswith("sasl2"):
            peer = med([d["logins"]["logins_per_server_cpu_s"] for n, d in load(tag.replace("sasl2", "legacy")) if n == p])
        ratios.append(f"{base / peer:.1f}x" if base and peer else "-")
    print(f"| {label} | " + " | ".join(cells + ratios) + " |")
storm = load("storm")
if storm:
    cut = ("the server stopped and started again by the script (server CPU not measured: another process)"
           if os.environ.get("STORM_CUT") == "server" else "all links cut at once by the client")
    print(f"\nStorm: {devices} devices bound over STARTTLS, {cut}, all reconnect "
          f"with {window} logins in flight (TLS resumption + SASL2 FAST where offered, else RFC 6120 SCRAM-SHA-1); "
          "median over runs.\n")
    print("| server | bound again | all bound after (s) | p50 per device (ms) | p99 per device (ms) | TLS resumed | FAST | "
          "server CPU s | set-up: full logins of all devices (s) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for s in servers:
        ds = [d for n, d in storm if n == s]
        if not ds:
            continue
        st = [d.get("storm", {}) for d in ds]
        print(f"| {s} | {min(x.get('bound_again', 0) for x in st)}/{min(x.get('devices', 0) for x in st)} "
              f"| {med([x.get('all_bound_s') for x in st]):.2f} "
              f"| {med([x['per_device']['p50_us'] / 1000 for x in st if 'per_device' in x]):.0f} "
              f"| {med([x['per_device']['p99_us'] / 1000 for x in st if 'per_device' in x]):.0f} "
              f"| {med([d['logins']['tls_resumed'] for d in ds]):.0f} | {med([d['logins']['fast'] for d in ds]):.0f} "
              f"| {med([d['logins']['server_cpu_s'] for d in ds]):.2f} | {med([d['setup_wall_s'] for d in ds]):.1f} |")
errs = {}
for f in glob.glob(os.path.join(jdir, "*.json")):
    with open(f) as fh:
        d = json.load(fh)
    for k, v in d.get("errors", {}).items():
        errs[f"{os.path.basename(f)[:-5]}: {k}"] = v
if errs:
    print("\nFailures (never counted as logins):\n")
    for k, v in sorted(errs.items()):
        print(f"- {k}: {v}")
PY
cat "$work/summary.md"
if [[ $UPDATE_RESULTS == 1 ]]; then
  # A new section above the newest one (RESULTS.md is newest first).
  {
    echo "## TLS reconnects: full logins, resumed reconnects, a storm (issue 13), $(date -u +'%Y-%m-%d %H:%M') UTC"
    echo
    echo "\`USERS=$USERS DURATION=$DURATION RUNS=$RUNS DEVICES=$DEVICES WINDOW=$WINDOW${BEFORE:+ BEFORE=$BEFORE} bench/run-reconnect-bench.sh\`"
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
