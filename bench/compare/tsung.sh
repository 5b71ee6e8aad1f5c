#!/usr/bin/env bash
# tsung cross-check for bench/compare/run.sh: the login rate of one running server measured by
# tsung (Debian's, an independent Erlang XMPP load generator), then by starling-loadgen's connect
# scenario on the same server instance, so starling-loadgen is not the only witness.
#
#   tsung.sh SERVER PORT SERVER_PID      (run.sh starts and stops the server)
#
# Environment from run.sh: work (temp dir), loadgen, USERS, port_tsung_epmd, PYTHON.
# Optional: TSUNG_ARRIVAL_RATE=5000 (users/s; above any server's login rate), TSUNG_HOLD=10 (s).
# tsung needs Erlang distribution: it gets its own epmd on port_tsung_epmd (loopback), its own
# node name and cookie (-i), distribution ports port_tsung_epmd+1..+2, no web GUI (-n), and
# HOME in the temp dir (it writes ~/.tsung). Generator on core 1 like table 1's loadgen.
# Writes $work/json/tsung-SERVER.json.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
server=$1 port=$2 server_pid=$3
: "${work:?}" "${loadgen:?}" "${USERS:?}" "${port_tsung_epmd:?}"
PYTHON=${PYTHON:-/usr/bin/python3}
rate=${TSUNG_ARRIVAL_RATE:-5000}
hold=${TSUNG_HOLD:-10}
tdir=$work/tsung/$server
mkdir -p "$tdir/home" "$tdir/log"
out=$work/json/tsung-$server.json

awk -v n="$USERS" 'BEGIN { for (i = 1; i <= n; i++) printf "user%d;pass\n", i }' >"$tdir/users.csv"
arrival_s=$(( 2 * USERS / rate + 5 )) # maxnumber ends the phase; tsung gives up on users it is late for
sed -e "s#@PORT@#$port#g" -e "s#@USERS@#$USERS#g" -e "s#@MAXUSERS@#$((USERS + 1000))#g" -e "s#@ARRIVAL_RATE@#$rate#g" -e "s#@ARRIVAL_S@#$arrival_s#g" \
  -e "s#@USERS_CSV@#$tdir/users.csv#g" -e "s#@HOLD@#$hold#g" "$here/tsung.xml.in" >"$tdir/tsung.xml"

epmd_pid= tsung_pid=
descendants() { local c; for c in $(ps -o pid= --ppid "$1" 2>/dev/null); do echo "$c"; descendants "$c"; done; }
finish() {
  local p
  for p in $tsung_pid $epmd_pid; do
    [[ -n $p ]] || continue
    for q in $(descendants "$p") $p; do kill -TERM "$q" 2>/dev/null || true; done
    wait "$p" 2>/dev/null || true
  done
}
trap finish EXIT

fail() { # REASON: the cross-check could not run; say why in the JSON and go on
  echo "tsung.sh: $1" >&2
  "$PYTHON" -c 'import json,sys; json.dump({"server": sys.argv[1], "error": sys.argv[2]}, open(sys.argv[3], "w"))' \
    "$server" "$1" "$out"
  exit 0
}

command -v tsung >/dev/null || fail "tsung is not installed"
ulimit -n 1048576 2>/dev/null || true
export ERL_EPMD_PORT=$port_tsung_epmd HOME=$tdir/home
epmd -port "$port_tsung_epmd" -address 127.0.0.1 >"$tdir/epmd.log" 2>&1 &
epmd_pid=$!
for _ in $(seq 50); do epmd -names >/dev/null 2>&1 && break; sleep 0.1; done

# 0.1-s statistics instead of tsung's 10 s: the login burst lasts only a second or a few.
export ERL_AFLAGS="-tsung_controller dumpstats_interval 100"
t0=$(date +%s.%N)
taskset -c 1 timeout $((USERS / 20 + hold + 120)) tsung -n -i "cmp$$" -t $((port_tsung_epmd + 1)) -T $((port_tsung_epmd + 2)) \
  -f "$tdir/tsung.xml" -l "$tdir/log" start >"$tdir/tsung.out" 2>&1 &
tsung_pid=$!
rc=0; wait "$tsung_pid" || rc=$?
tsung_pid=
t1=$(date +%s.%N)
log=$(find "$tdir/log" -name tsung.log | head -1)
[[ $rc == 0 && -n $log ]] || fail "tsung exit $rc, no tsung.log ($(tail -3 "$tdir/tsung.out" | tr '\n' ' '))"

# The same figure from starling-loadgen on the same server instance, same pinning.
taskset -c 1 "$loadgen" connect --port "$port" --domain localhost --users "$USERS" --prefix user --password pass \
  --threads 1 --hold 1 --server-pid "$server_pid" --no-progress --timeout 300 --json "$tdir/loadgen-connect.json" \
  >/dev/null 2>"$tdir/loadgen.log" || echo "tsung.sh: loadgen connect exit $?" >&2

"$PYTHON" - "$server" "$log" "$tdir/loadgen-connect.json" "$out" "$USERS" "$t0" "$t1" <<'PY'
import json, re, statistics, sys
server, log, lg, out, users, t0, t1 = sys.argv[1:8]
# tsung.log: "# stats: dump at EPOCH" then "stats: NAME count mean stddev max min meanAll countAll"
# (count for the interval), "stats: error_... count total" for errors.
dumps, cur, errors = [], None, {}
for line in open(log):
    m = re.match(r"# stats: dump at (\d+)", line)
    if m:
        cur = {"t": int(m.group(1))}; dumps.append(cur); continue
    f = line.split()
    if cur is not None and len(f) >= 3 and f[0] == "stats:":
        cur[f[1]] = [float(x) for x in f[2:]]
        if f[1].startswith("error") or f[1].endswith("error"):
            errors[f[1]] = int(float(f[-1]))
# Rate as starling-loadgen defines it: logins / (first connect .. last login), here in dump
# intervals of 0.1 s: from the first interval with a user started to the last with a login done.
step = 0.1
first = next((i for i, d in enumerate(dumps) if d.get("users", [0])[0] > 0), None)
done = [(i, d["tr_login"][0], d["tr_login"][1]) for i, d in enumerate(dumps) if d.get("tr_login") and d["tr_login"][0] > 0]
res = {"server": server, "users": int(users), "tsung_log": log}
if not done or first is None:
    res["error"] = "tsung.log has no completed login transaction (tr_login)"
else:
    total = sum(c for _, c, _ in done)
    span = (done[-1][0] - first + 1) * step
    res.update({"tsung_logins": int(total), "tsung_span_s": round(span, 1),
                "tsung_logins_per_s": total / span,
                "tsung_login_ms": sum(c * m for _, c, m in done) / total,
                "tsung_max_users": max(int(d.get("users", [0])[0]) for d in dumps),
                "tsung_errors": sum(errors.values()), "tsung_error_kinds": errors})
try:
    j = json.load(open(lg))
    res["loadgen_logins_per_s"] = j["login"]["rate_per_s"]
    res["loadgen_login_p50_ms"] = j["login"]["latency"]["p50_us"] / 1000
except (OSError, ValueError, KeyError):
    res["loadgen_error"] = "no loadgen connect result"
json.dump(res, open(out, "w"), indent=1)
print(f"tsung.sh: {server}: tsung {res.get('tsung_logins_per_s', 0):.0f} logins/s "
      f"({res.get('tsung_logins')} logins, {res.get('tsung_errors')} errors); "
      f"starling-loadgen {res.get('loadgen_logins_per_s', 0):.0f} logins/s", file=sys.stderr)
PY
