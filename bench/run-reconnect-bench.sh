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

for p in $port_starling $port_prosody $port_ejabberd $port_ejabberd_dist; do
  if ss -ltnH "sport = :$p" | grep -q .; then echo "run-reconnect-bench.sh: port $p is busy" >&2; exit 1; fi
done

work=$(mktemp -d /tmp/starling-reconnect.XXXXXX)
chmod 755 "$work"
mkdir -p "$work/json" "$work/logs" "$work/certs"
server_pid= server_name= measure_pid= lg_pid=

descendants() { local c; for c in $(ps -o pid= --ppid "$1" 2>/dev/null); do echo "$c"; descendants "$c"; done; }
kill_tree() {
  local pids p
  pids="$1 $(descendants "$1")"
  for p in $pids; do kill -TERM "$p" 2>/dev/null || true; done
  for _ in $(seq 100); do
    local alive=0
    for p in $pids; do kill -0 "$p" 2>/dev/null && alive=1; done
    ((alive)) || return 0
    sleep 0.2
  done
  for p in $pids; do kill -KILL "$p" 2>/dev/null || true; done
}
cleanup() {
  local rc=$?
  if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then kill_tree "$server_pid"; wait "$server_pid" 2>/dev/null || true; fi
  if [[ -n $lg_pid ]]; then kill -TERM "$lg_pid" 2>/dev/null || true; wait "$lg_pid" 2>/dev/null || true; fi
  if [[ $KEEP == 1 || $rc != 0 ]]; then echo "run-reconnect-bench.sh: kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- one certificate for all
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 -subj "/CN=localhost" \
  -addext "subjectAltName=DNS:localhost" -keyout "$work/certs/localhost.key" -out "$work/certs/localhost.crt" 2>/dev/null
cat "$work/certs/localhost.crt" "$work/certs/localhost.key" >"$work/certs/localhost.pem"
chmod 644 "$work/certs/"*

# ---------------------------------------------------------------- configurations
mkdir -p "$work/starling/template"
cat >"$work/starling/bench.toml" <<TOML
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

mkdir -p "$work/prosody/data"
cat >"$work/prosody/prosody.cfg.lua" <<LUA
-- Prosody for the reconnect benchmark; everything under $work/prosody. TLS settings: Prosody's defaults.
run_as_root = true
pidfile = "$work/prosody/prosody.pid"
data_path = "$work/prosody/data"
log = { warn = "$work/prosody/prosody.log" }
network_backend = "epoll"
network_settings = { tcp_backlog = 4096 }
interfaces = { "127.0.0.1" }
c2s_ports = { $port_prosody }
c2s_direct_tls_ports = { }
s2s_ports = { }
component_ports = { }
http_ports = { }
https_ports = { }
ssl = { certificate = "$work/certs/localhost.crt"; key = "$work/certs/localhost.key"; }
c2s_require_encryption = true
authentication = "internal_hashed"
storage = "internal"
limits = { c2s = { rate = "1000mb/s"; burst = "10s" } }
max_connections_per_ip = 0
modules_enabled = { "roster", "saslauth", "tls", "disco", "ping", "offline", "carbons", "blocklist", "vcard_legacy", "version" }
modules_disabled = { "s2s", "limits", "mam", "admin_socket" }
VirtualHost "localhost"
LUA

mkdir -p "$work/ejabberd/conf" "$work/ejabberd/spool" "$work/ejabberd/logs"
head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$work/ejabberd/cookie"
cp /etc/ejabberd/inetrc "$work/ejabberd/conf/inetrc" 2>/dev/null || echo '{lookup,["file","native"]}.' >"$work/ejabberd/conf/inetrc"
cat >"$work/ejabberd/conf/ejabberd.yml" <<YML
loglevel: warning
log_rotate_count: 0
hosts:
  - localhost
certfiles:
  - "$work/certs/localhost.pem"
listen:
  -
    port: $port_ejabberd
    ip: "127.0.0.1"
    module: ejabberd_c2s
    max_stanza_size: 262144
    shaper: none
    access: c2s
    starttls: true
    starttls_required: true
    max_fsm_queue: 10000000
    backlog: 4096
auth_method: internal
auth_password_format: scram
auth_scram_hash: sha
disable_sasl_mechanisms:
  - "digest-md5"
  - "X-OAUTH2"
acl:
  local:
    user_regexp: ""
access_rules:
  local:
    allow: local
  c2s:
    allow: all
api_permissions:
  "console commands":
    from:
      - ejabberd_ctl
    who: all
    what: "*"
shaper: {}
shaper_rules:
  max_user_sessions: 10
  c2s_shaper: none
modules:
  mod_roster: {}
  mod_disco: {}
  mod_ping: {}
  mod_offline: {}
  mod_carboncopy: {}
  mod_privacy: {}
  mod_blocking: {}
  mod_vcard: {}
  mod_version: {}
YML
cat >"$work/ejabberd/conf/ejabberdctl.cfg" <<CFG
ERLANG_NODE=starlingrc@localhost
ERL_DIST_PORT=$port_ejabberd_dist
INET_DIST_INTERFACE=127.0.0.1
ERL_MAX_PORTS=1100000
ERL_PROCESSES=4000000
ERL_OPTIONS="-setcookie $(cat "$work/ejabberd/cookie") +sbwt none +sbwtdcpu none +sbwtdio none +S 1:1 +SDcpu 1:1 +SDio 1 -env ERL_CRASH_DUMP_BYTES 0"
EJABBERD_BYPASS_WARNINGS=true
CFG
chown -R ejabberd:ejabberd "$work/ejabberd"
ejctl=(setpriv --reuid=ejabberd --regid=ejabberd --init-groups env HOME="$work/ejabberd" ejabberdctl --config-dir "$work/ejabberd/conf" --spool "$work/ejabberd/spool" --logs "$work/ejabberd/logs")

# ---------------------------------------------------------------- start / stop
wait_port() { # PORT PID NAME
  for _ in $(seq 600); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then sleep 0.5; return 0; fi
    kill -0 "$2" 2>/dev/null || { echo "run-reconnect-bench.sh: $3 died at start-up" >&2; return 1; }
    sleep 0.1
  done
  echo "run-reconnect-bench.sh: $3 did not open port $1 in 60 s" >&2
  return 1
}

start_server() { # NAME LOG [ATTEMPT]
  local name=$1 logf=$2 port
  server_name=$name
  case $name in
    starling|starling-before)
      port=$port_starling
      local bin=$starlingd; [[ $name == starling-before ]] && bin=$BEFORE
      if [[ ${keep_data:-0} != 1 ]]; then rm -rf "$work/starling/data"; cp -a "$work/starling/template" "$work/starling/data"; fi
      taskset -c 0 "$bin" --config "$work/starling/bench.toml" --data-dir "$work/starling/data" \
        --c2s-port "$port" --c2s-tls-port 0 --metrics-port 0 --shards 1 --log-level warn >"$logf" 2>&1 &
      server_pid=$! measure_pid=$!
      ;;
    prosody)
      port=$port_prosody
      taskset -c 0 prosody -F --config "$work/prosody/prosody.cfg.lua" >"$logf" 2>&1 &
      server_pid=$! measure_pid=$!
      ;;
    ejabberd)
      port=$port_ejabberd
      taskset -c 0 "${ejctl[@]}" foreground >"$logf" 2>&1 &
      server_pid=$!
      ;;
  esac
  if ! wait_port "$port" "$server_pid" "$name"; then
    # Our port can be held for up to 60 s by someone's client socket in TIME-WAIT (the port is
    # in the ephemeral range): start again until it binds (compare/run.sh does the same).
    if grep -qiE 'address already in use|eaddrinuse|Failed to open server port' "$logf" && ((${3:-0} < 40)); then
      kill_tree "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=
      log "$name could not bind port $port; retrying in 2 s"
      sleep 2
      start_server "$name" "$logf" $((${3:-0} + 1))
      return
    fi
    tail -30 "$logf" >&2; exit 1
  fi
  if [[ $name == ejabberd ]]; then
    measure_pid=
    for p in $(descendants "$server_pid"); do [[ $(cat /proc/"$p"/comm 2>/dev/null) == beam.smp ]] && measure_pid=$p; done
    [[ -n $measure_pid ]] || { echo "run-reconnect-bench.sh: no beam.smp below $server_pid" >&2; exit 1; }
  fi
  server_port=$port
}

stop_server() { # LOG
  [[ -n $server_pid ]] || return 0
  if kill -0 "$server_pid" 2>/dev/null; then
    if [[ $server_name == ejabberd ]]; then
      timeout 60 "${ejctl[@]}" stop >>"$1" 2>&1 || true
      for _ in $(seq 100); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.2; done
    fi
    kill -0 "$server_pid" 2>/dev/null && kill_tree "$server_pid"
  fi
  wait "$server_pid" 2>/dev/null || true
  server_pid= measure_pid=
}

# ---------------------------------------------------------------- provisioning
# user1..userN@localhost, password "pass", SCRAM (4096 iterations) on all three.
for s in $SERVERS; do
  case $s in
    starling)
      "$repo/bench/loadgen/provision.sh" --starlingctl "$starlingctl" --data-dir "$work/starling/template" \
        --users "$accounts" --prefix user --password pass --domain localhost >/dev/null 2>"$work/logs/provision-starling.log"
      ;;
    prosody)
      "$PYTHON" "$repo/bench/compare/provision_prosody.py" --data-dir "$work/prosody/data" --domain localhost \
        --users "$accounts" --prefix user --password pass
      ;;
    ejabberd)
      start_server ejabberd "$work/logs/ejabberd-provision.log"
      erl -noshell -hidden -sname "prov$$" -setcookie "$(cat "$work/ejabberd/cookie")" \
        -erl_epmd_port "$port_ejabberd_dist" -start_epmd false -dist_listen false -eval "
          N = 'starlingrc@localhost', H = <<\"localhost\">>,
          R1 = rpc:call(N, ejabberd_auth, try_register, [<<\"user1\">>, H, <<\"pass\">>]),
          [Rec] = rpc:call(N, mnesia, dirty_read, [passwd, {<<\"user1\">>, H}]),
          F = fun() -> lists:foreach(fun(I) ->
                  ok = mnesia:dirty_write(setelement(2, Rec, {<<\"user\", (integer_to_binary(I))/binary>>, H}))
                end, lists:seq(2, $accounts)), ok end,
          R2 = rpc:call(N, erlang, apply, [F, []]),
          C = rpc:call(N, mnesia, table_info, [passwd, size]),
          io:format(\"register user1: ~p, copies: ~p, passwd records: ~p~n\", [R1, R2, C]),
          halt(case {R2, C >= $accounts} of {ok, true} -> 0; _ -> 1 end)." >"$work/logs/provision-ejabberd.log" 2>&1 \
        || { echo "run-reconnect-bench.sh: ejabberd provisioning failed:" >&2; cat "$work/logs/provision-ejabberd.log" >&2; exit 1; }
      stop_server "$work/logs/ejabberd-provision.log"
      ;;
  esac
done
[[ " $SERVERS " == *" starling-before "* && " $SERVERS " != *" starling "* ]] && \
  "$repo/bench/loadgen/provision.sh" --starlingctl "$starlingctl" --data-dir "$work/starling/template" \
    --users "$accounts" --prefix user --password pass --domain localhost >/dev/null 2>"$work/logs/provision-starling.log"
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
    start_server "$s" "$work/logs/$s-r$run.server.log"
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
        keep_data=1 start_server "$s" "$work/logs/$s-r$run.restarted.server.log"  # same store: tokens kept
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
