#!/usr/bin/env bash
# Server CPU per full TLS login, two starlingd binaries A and B in alternating rounds (same
# minute, same certificate, same accounts): the before/after measure of issue 13's "5x on full
# logins". Each round starts the binary pinned to core 0 (one shard), runs
# `starling-loadgen reconnect --mode full --tls starttls` on core 1 for DURATION s, stops it.
#
#   bench/run-tls-login-ab.sh A_STARLINGD B_STARLINGD [BUILD_DIR]
#
# Environment (defaults): ROUNDS=4 DURATION=8 USERS=64 AUTH=legacy (legacy: RFC 6120
#   SCRAM-SHA-1 + bind; sasl2: SASL2 SCRAM-SHA-256 + Bind2)  PORT=36422  CERT=ec (ec: P-256,
#   rsa: RSA 2048)  PERF=0 (1: perf record -g --call-graph dwarf of the server in round 1,
#   kept in the work folder)  PERF_FREQ=1999  KEEP=0
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
A=${1:?A_STARLINGD}; B=${2:?B_STARLINGD}; build=${3:-$repo/build/release}
ROUNDS=${ROUNDS:-4} DURATION=${DURATION:-8} USERS=${USERS:-64} AUTH=${AUTH:-legacy}
PORT=${PORT:-36422} CERT=${CERT:-ec} PERF=${PERF:-0} KEEP=${KEEP:-0}
ctl=$build/broker/starlingctl loadgen=$build/bench/loadgen/starling-loadgen
for b in "$A" "$B" "$ctl" "$loadgen"; do [[ -x $b ]] || { echo "run-tls-login-ab.sh: $b missing" >&2; exit 1; }; done
work=$(mktemp -d /tmp/starling-tlsab.XXXXXX)
pid=
cleanup() {
  [[ -n $pid ]] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  if [[ $KEEP == 1 ]]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
mkdir -p "$work/certs" "$work/json"
if [[ $CERT == rsa ]]; then keyopt=(-newkey rsa:2048); else keyopt=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1); fi
openssl req -x509 "${keyopt[@]}" -nodes -days 30 -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost" \
  -keyout "$work/certs/localhost.key" -out "$work/certs/localhost.crt" 2>/dev/null
cat >"$work/bench.toml" <<TOML
[c2s]
stanzas_per_second = 1000000
max_connections_per_ip = 1000000
connection_rate_per_ip = 0
[modules]
mam = false
[[tls.certificates]]
domains = ["localhost"]
cert_file = "$work/certs/localhost.crt"
key_file = "$work/certs/localhost.key"
TOML
"$repo/bench/loadgen/provision.sh" --starlingctl "$ctl" --data-dir "$work/template" --users "$USERS" \
  --prefix user --password pass --domain localhost >/dev/null 2>&1
sasl=(--auth "$AUTH"); [[ $AUTH == legacy ]] && sasl+=(--sasl scram-sha-1)
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq "$ROUNDS"); do
  for side in A B; do
    bin=$A; [[ $side == B ]] && bin=$B
    rm -rf "$work/data"; cp -a "$work/template" "$work/data"
    taskset -c 0 "$bin" --config "$work/bench.toml" --data-dir "$work/data" --c2s-port "$PORT" --c2s-tls-port 0 \
      --metrics-port 0 --shards 1 --log-level warn >"$work/$side-$r.log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do ss -ltnH "sport = :$PORT" | grep -q . && break; sleep 0.1; done
    perf_pid=
    if [[ $PERF == 1 && $r == 1 ]]; then
      perf record -g --call-graph dwarf -F "${PERF_FREQ:-1999}" -p "$pid" -o "$work/perf-$side.data" -- sleep $((DURATION - 1)) >/dev/null 2>&1 &
      perf_pid=$!
    fi
    taskset -c 1 "$loadgen" reconnect --port "$PORT" --domain localhost --prefix user --password pass --tls starttls \
      --threads 1 --server-pid "$pid" --no-progress --json "$work/json/$side-$r.json" --mode full "${sasl[@]}" \
      --users "$USERS" --duration "$DURATION" --timeout $((DURATION + 60)) >/dev/null 2>"$work/$side-$r.loadgen.log" || true
    [[ -n $perf_pid ]] && wait "$perf_pid" || true
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1]))["logins"]; print("round %s %s: %.0f us server CPU per login, %d ok, %d failed, %.0f/s wall" % (sys.argv[2], sys.argv[3], d["server_cpu_us_per_login"], d["ok"], d["failed"], d["rate_per_s"]))' \
      "$work/json/$side-$r.json" "$r" "$side"
  done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$work/json" "$ROUNDS" <<'PY'
import json, statistics, sys, os
d, n = sys.argv[1], int(sys.argv[2])
for side in "AB":
    xs = [json.load(open(os.path.join(d, f"{side}-{r}.json")))["logins"]["server_cpu_us_per_login"] for r in range(1, n + 1)]
    print(f"{side}: median {statistics.median(xs):.0f} us per login; rounds " + " / ".join(f"{x:.0f}" for x in xs))
PY
if [[ $PERF == 1 ]]; then KEEP=1; echo "perf data: $work/perf-A.data $work/perf-B.data"; fi
