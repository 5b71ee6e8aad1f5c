#!/usr/bin/env bash
# Side-by-side benchmark (issue 6): Starling vs Prosody 0.12 vs ejabberd 23.01 (Debian 12), all
# driven by the same starling-loadgen over plain c2s on loopback, same accounts, same scenarios.
# See bench/compare/README.md for what is measured and why.
#
#   bench/compare/run.sh [BUILD_DIR]     (default: build/compare in this repo, configured here)
#
# Environment (defaults):
#   USERS=1000 DURATION=15 RUNS=3 WINDOW=16 RATE=1000 HOLD=5
#   SERVERS="starling prosody ejabberd"  TABLES="1 2" (1: one core per server, 2: both cores)
#   QUICK=0 (1: ~3-minute smoke run: USERS=200 DURATION=4 RUNS=1 HOLD=2 RATE=1000)
#   KEEP=0 (1: keep the temp dir with configs, data, logs and JSON)
#   TSUNG=1 (0: skip the tsung cross-check)  TSUNG_SERVERS="starling prosody"
#   SKIP_INSTALL=0  SKIP_BUILD=0 (1: use the binaries already in BUILD_DIR)
#   UPDATE_RESULTS=0 (1: rewrite the compare section of bench/RESULTS.md)
#   PROVISION_ONLY=0 (1: create the accounts on each server, print the times, stop there)
#   OUT=bench/compare/out (where the summary JSON/markdown go; charts go to bench/compare/charts)
#   RESERVE_PORTS=1 (0: do not add PORT_BASE..+77 to net.ipv4.ip_local_reserved_ports during the run)
#   PORT_BASE=35222 (starling +0, prosody +1, ejabberd +2, ejabberd dist +68, tsung epmd +69)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
build=${1:-$repo/build/compare}
QUICK=${QUICK:-0}
if [[ $QUICK == 1 ]]; then
  : "${USERS:=200}" "${DURATION:=4}" "${RUNS:=1}" "${HOLD:=2}" "${RATE:=1000}"
fi
USERS=${USERS:-1000}
DURATION=${DURATION:-15}
RUNS=${RUNS:-3}
WINDOW=${WINDOW:-16}
RATE=${RATE:-1000}
HOLD=${HOLD:-5}
SERVERS=${SERVERS:-"starling prosody ejabberd"}
TABLES=${TABLES:-"1 2"}
KEEP=${KEEP:-0}
TSUNG=${TSUNG:-1}
TSUNG_SERVERS=${TSUNG_SERVERS:-"starling prosody"}
UPDATE_RESULTS=${UPDATE_RESULTS:-0}
OUT=${OUT:-$here/out}
PORT_BASE=${PORT_BASE:-35222}
port_starling=$PORT_BASE
port_prosody=$((PORT_BASE + 1))
port_ejabberd=$((PORT_BASE + 2))
port_ejabberd_dist=$((PORT_BASE + 68))
port_tsung_epmd=$((PORT_BASE + 69))
PYTHON=/usr/bin/python3
command_line="bench/compare/run.sh${1:+ $1}"
started_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)
t_start=$(date +%s)
loadavg_before=$(cut -d' ' -f1-3 /proc/loadavg)

log() { echo "== $(date +%H:%M:%S) $*" >&2; }

# ---------------------------------------------------------------- install and build
if [[ ${SKIP_INSTALL:-0} != 1 ]]; then
  log "install (bench/compare/install.sh)"
  "$here/install.sh"
fi
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
  log "build ($build)"
  cmake -S "$repo" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSTARLING_BUILD_TESTS=OFF >/dev/null
  ninja -C "$build" starlingd starlingctl starling-loadgen >&2
fi
starlingd=$build/broker/starlingd
starlingctl=$build/broker/starlingctl
loadgen=$build/bench/loadgen/starling-loadgen
for b in "$starlingd" "$starlingctl" "$loadgen"; do [[ -x $b ]] || { echo "run.sh: $b missing" >&2; exit 1; }; done

# 1000 users need ~1000 fds per side; 100k users need the hard limit raised (root can).
ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)"

# Each port in our range must be free (another engineer's run, or a leftover of ours).
for p in $port_starling $port_prosody $port_ejabberd $port_ejabberd_dist $port_tsung_epmd; do
  if ss -ltnH "sport = :$p" | grep -q .; then echo "run.sh: port $p is busy" >&2; exit 1; fi
done

# Our ports lie inside the kernel's ephemeral range (32768-60999). A client socket of anyone on
# the machine (our loadgen, another engineer's benchmark with thousands of connections) that got
# one of them as its source port keeps it in TIME-WAIT for 60 s after closing, and a server's
# bind to 0.0.0.0 on that port then fails (SO_REUSEADDR does not help against a client socket).
# ip_local_reserved_ports keeps the kernel from handing our range out as source ports; it only
# changes the choice of ephemeral ports, and the previous value is put back at exit.
reserved_before= reserved_set=
if [[ ${RESERVE_PORTS:-1} == 1 && -w /proc/sys/net/ipv4/ip_local_reserved_ports ]]; then
  reserved_before=$(cat /proc/sys/net/ipv4/ip_local_reserved_ports)
  if echo "${reserved_before:+$reserved_before,}$PORT_BASE-$((PORT_BASE + 77))" >/proc/sys/net/ipv4/ip_local_reserved_ports; then
    reserved_set=1
    log "reserved ports $PORT_BASE-$((PORT_BASE + 77)) against ephemeral use until the end of the run"
  fi
fi

work=$(mktemp -d /tmp/starling-compare.XXXXXX)
chmod 755 "$work" # ejabberd runs as the ejabberd user (setpriv, below) and must reach its dir
mkdir -p "$work/json" "$work/logs"
server_pid= server_name= measure_pid= lg_pid=

# descendants PID: every process below PID (ejabberdctl -> beam.smp -> erl_child_setup, inet_gethost).
descendants() {
  local c
  for c in $(ps -o pid= --ppid "$1" 2>/dev/null); do echo "$c"; descendants "$c"; done
}

kill_tree() { # kill_tree PID: TERM the tree rooted at PID (all processes we started), then KILL
  local pids p
  pids="$1 $(descendants "$1")"
  for p in $pids; do kill -TERM "$p" 2>/dev/null || true; done
  for _ in $(seq 50); do
    local alive=0
    for p in $pids; do kill -0 "$p" 2>/dev/null && alive=1; done
    ((alive)) || return 0
    sleep 0.2
  done
  for p in $pids; do kill -KILL "$p" 2>/dev/null || true; done
}

cleanup() {
  local rc=$?
  if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
    echo "run.sh: stopping $server_name (pid $server_pid)" >&2
    kill_tree "$server_pid"
    wait "$server_pid" 2>/dev/null || true
  fi
  if [[ -n $lg_pid ]]; then kill -TERM "$lg_pid" 2>/dev/null || true; wait "$lg_pid" 2>/dev/null || true; fi
  if [[ -n $reserved_set ]]; then
    echo "$reserved_before" >/proc/sys/net/ipv4/ip_local_reserved_ports 2>/dev/null || true
  fi
  if [[ $KEEP == 1 || $rc != 0 ]]; then echo "run.sh: kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_port() { # wait_port PORT PID NAME LOG: 0 when PORT accepts; 1 when PID died or 60 s passed
  for _ in $(seq 600); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then sleep 0.5; return 0; fi
    kill -0 "$2" 2>/dev/null || { echo "run.sh: $3 died at start-up" >&2; return 1; }
    if grep -qiE 'address already in use|eaddrinuse|Failed to open server port' "$4" 2>/dev/null; then return 1; fi
    sleep 0.1
  done
  echo "run.sh: $3 did not open port $1 in 60 s" >&2
  return 1
}

# ---------------------------------------------------------------- configurations
# Common ground: plain c2s on 127.0.0.1, PLAIN over plaintext allowed, no shaper/rate limit/
# per-IP cap, no MAM, offline storage, rosters, SCRAM-hashed credentials (4096 iterations:
# a PLAIN login costs one PBKDF2 on every server), logs at warning level.

## Starling
mkdir -p "$work/starling/template"
printf '[c2s]\nstanzas_per_second = 1000000\nmax_connections_per_ip = 1000000\nconnection_rate_per_ip = 0\n' >"$work/starling/bench.toml"
# MAM off needs the [modules] switches (the lead's change, documented in deploy/starlingd.toml once
# it is in); a starlingd without them rejects the unknown table, so ask the binary itself.
cp "$work/starling/bench.toml" "$work/starling/try.toml"
printf '[modules]\nmam = false\n' >>"$work/starling/try.toml"
if "$starlingd" --config "$work/starling/try.toml" --data-dir "$work/starling/check" --check-config >/dev/null 2>&1; then
  mv "$work/starling/try.toml" "$work/starling/bench.toml"
  starling_mam=off
else
  rm -f "$work/starling/try.toml"
  echo "# TODO(#6): [modules] mam = false once this starlingd has the [modules] switches: MAM is ON" >>"$work/starling/bench.toml"
  starling_mam=on
  log "warning: this starlingd has no [modules] mam switch: Starling runs WITH its message archive"
fi

## Prosody
mkdir -p "$work/prosody/data" "$work/prosody/certs"
cat >"$work/prosody/prosody.cfg.lua" <<LUA
-- bench/compare: Prosody for the side-by-side benchmark; everything under $work/prosody.
run_as_root = true          -- the benchmark runs as root; no setuid to a system user
-- started with -F (foreground)
pidfile = "$work/prosody/prosody.pid"
data_path = "$work/prosody/data"
log = { warn = "$work/prosody/prosody.log" }
network_backend = "epoll"
-- listen backlog 4096 like Starling's (Prosody's default 128 drops SYNs under a login burst)
network_settings = { tcp_backlog = 4096 }
interfaces = { "127.0.0.1" }
c2s_ports = { $port_prosody }
c2s_direct_tls_ports = { }
s2s_ports = { }
component_ports = { }
http_ports = { }
https_ports = { }
admin_socket = "$work/prosody/prosody.sock"
certificates = "certs"  -- empty: no TLS
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
authentication = "internal_hashed"
storage = "internal"
-- No shaping: mod_limits is not loaded; the limits are lifted as well in case it ever is.
limits = { c2s = { rate = "1000mb/s"; burst = "10s" }; c2s_stream_error_timeout = 60 }
c2s_stanza_size_limit = 262144
max_connections_per_ip = 0
-- The modules Starling has on (no MAM, no TLS, no s2s, no HTTP).
modules_enabled = { "roster", "saslauth", "disco", "ping", "offline", "carbons", "blocklist", "vcard_legacy", "version" }
modules_disabled = { "s2s", "tls", "limits", "mam", "admin_socket" }
VirtualHost "localhost"
LUA

## ejabberd
mkdir -p "$work/ejabberd/conf" "$work/ejabberd/spool" "$work/ejabberd/logs"
head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$work/ejabberd/cookie"
cp /etc/ejabberd/inetrc "$work/ejabberd/conf/inetrc" 2>/dev/null || echo '{lookup,["file","native"]}.' >"$work/ejabberd/conf/inetrc"
cat >"$work/ejabberd/conf/ejabberd.yml" <<YML
# bench/compare: ejabberd for the side-by-side benchmark; everything under $work/ejabberd.
loglevel: warning
log_rotate_count: 0
hosts:
  - localhost
listen:
  -
    port: $port_ejabberd
    ip: "127.0.0.1"
    module: ejabberd_c2s
    max_stanza_size: 262144
    shaper: none
    access: c2s
    starttls: false
    max_fsm_queue: 10000000
    backlog: 4096
auth_method: internal
auth_password_format: scram
auth_scram_hash: sha
disable_sasl_mechanisms:
  - "digest-md5"
  - "X-OAUTH2"
max_fsm_queue: 10000000
acl:
  local:
    user_regexp: ""
  loopback:
    ip:
      - 127.0.0.0/8
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
  max_user_offline_messages: 100
  c2s_shaper: none
  s2s_shaper: none
# The modules Starling has on; no mod_mam, no mod_stream_mgmt, no HTTP, no s2s listener.
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
chown -R ejabberd:ejabberd "$work/ejabberd"

# ejabberdctl.cfg per table: one scheduler on one core, default schedulers on two. No epmd: the
# node listens for distribution on a fixed port of ours (ERL_DIST_PORT, OTP 23.1+), loopback
# only; the cookie is ours. Busy-wait of idle schedulers is off (+sbwt none), or their spinning
# would count as server CPU and steal the generator's core in table 2.
write_ejabberdctl_cfg() { # TABLE
  local sched=""
  [[ $1 == 1 ]] && sched="+S 1:1 +SDcpu 1:1 +SDio 1"
  cat >"$work/ejabberd/conf/ejabberdctl.cfg" <<CFG
ERLANG_NODE=starlingcmp@localhost
ERL_DIST_PORT=$port_ejabberd_dist
INET_DIST_INTERFACE=127.0.0.1
ERL_MAX_PORTS=1100000
ERL_PROCESSES=4000000
ERL_OPTIONS="-setcookie $(cat "$work/ejabberd/cookie") +sbwt none +sbwtdcpu none +sbwtdio none $sched -env ERL_CRASH_DUMP_BYTES 0"
EJABBERD_BYPASS_WARNINGS=true
CFG
  chown ejabberd:ejabberd "$work/ejabberd/conf/ejabberdctl.cfg"
}
# ejabberdctl run by root su's to the ejabberd user, and su applies PAM's limits: 1024 fds, and
# ejabberd dies of emfile at ~1000 sessions. setpriv switches user without PAM, so the raised
# ulimit -n stays; ejabberdctl run as that user then runs erl directly.
ejctl=(setpriv --reuid=ejabberd --regid=ejabberd --init-groups env HOME="$work/ejabberd" ejabberdctl --config-dir "$work/ejabberd/conf" --spool "$work/ejabberd/spool" --logs "$work/ejabberd/logs")

# ---------------------------------------------------------------- start / stop
# A port of ours may still be held by someone's client socket (see ip_local_reserved_ports above;
# also when the reservation was not possible): wait until no live socket uses it, and start
# again while the server fails to bind ("Address already in use"; Prosody even keeps running
# without its listener), which a TIME-WAIT client socket can cause for up to 60 s.
wait_bindable() { # PORT
  local waited=0
  while ss -tanH "( sport = :$1 )" | grep -qv '^TIME-WAIT'; do
    ((waited == 0)) && { log "port $1 is in use; waiting:"; ss -tanpH "( sport = :$1 )" | grep -v '^TIME-WAIT' | head -3 >&2; }
    ((waited < 120)) || { echo "run.sh: port $1 stayed in use for 120 s" >&2; exit 1; }
    sleep 1; waited=$((waited + 1))
  done
}

start_server() {
  local attempt
  for attempt in $(seq 40); do # 80 s: longer than a TIME-WAIT (60 s)
    start_server_once "$@" && return 0
    log "$1 could not bind its port (attempt $attempt); retrying"
    sleep 2
  done
  echo "run.sh: $1 could not bind its port for 80 s" >&2; tail -30 "$3" >&2; exit 1
}

# Starling's store keeps what a run wrote (the MAM archive while it cannot be switched off: ~600k
# messages per run), and a bigger store made later runs' logins and routing measurably slower
# (1092 -> 180 -> 126 logins/s over three runs). Each Starling run therefore starts from a
# copy of the freshly provisioned store, as Prosody and ejabberd (no MAM) effectively do.
fresh_starling_data() {
  rm -rf "$work/starling/data"
  cp -a "$work/starling/template" "$work/starling/data"
}

start_server_once() { # as start_server; returns 1 when the server lost its port to someone else
  local name=$1 table=$2 logf=$3 cpus=0 port
  [[ $table == 2 ]] && cpus=0-1
  server_name=$name
  case $name in starling) port=$port_starling ;; prosody) port=$port_prosody ;; ejabberd) port=$port_ejabberd ;; esac
  wait_bindable "$port"
  [[ $name == ejabberd ]] && wait_bindable "$port_ejabberd_dist"
  case $name in
    starling)
      port=$port_starling
      fresh_starling_data
      local shards=1; [[ $table == 2 ]] && shards=2
      taskset -c "$cpus" "$starlingd" --config "$work/starling/bench.toml" --data-dir "$work/starling/data" \
        --c2s-port "$port" --c2s-tls-port 0 --metrics-port 0 --shards "$shards" --allow-plaintext \
        --log-level warn >"$logf" 2>&1 &
      server_pid=$! measure_pid=$!
      ;;
    prosody)
      port=$port_prosody
      taskset -c "$cpus" prosody -F --config "$work/prosody/prosody.cfg.lua" >"$logf" 2>&1 &
      server_pid=$! measure_pid=$!
      ;;
    ejabberd)
      port=$port_ejabberd
      write_ejabberdctl_cfg "$table"
      taskset -c "$cpus" "${ejctl[@]}" foreground >"$logf" 2>&1 &
      server_pid=$!
      ;;
  esac
  if ! wait_port "$port" "$server_pid" "$name" "$logf"; then
    if grep -qiE 'address already in use|eaddrinuse|Failed to open server port' "$logf"; then
      [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null && kill_tree "$server_pid"
      wait "$server_pid" 2>/dev/null || true
      server_pid= measure_pid=
      return 1
    fi
    echo "run.sh: $name did not start:" >&2; tail -30 "$logf" >&2; exit 1
  fi
  if [[ $name == ejabberd ]]; then
    measure_pid=
    for p in $(descendants "$server_pid"); do
      [[ $(cat /proc/"$p"/comm 2>/dev/null) == beam.smp ]] && measure_pid=$p
    done
    [[ -n $measure_pid ]] || { echo "run.sh: no beam.smp below $server_pid" >&2; exit 1; }
  fi
  server_port=$port
}

stop_server() { # LOG
  local rc=0
  [[ -n $server_pid ]] || return 0
  if ! kill -0 "$server_pid" 2>/dev/null; then
    wait "$server_pid" || rc=$?
    echo "BENCH: $server_name had exited by itself, status $rc" >>"$1"
  else
    if [[ $server_name == ejabberd ]]; then
      timeout 60 "${ejctl[@]}" stop >>"$1" 2>&1 || true
      for _ in $(seq 100); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.2; done
    fi
    kill -0 "$server_pid" 2>/dev/null && kill_tree "$server_pid"
    wait "$server_pid" || rc=$?
    echo "BENCH: $server_name stopped, status $rc" >>"$1"
  fi
  server_pid= measure_pid=
}

# ---------------------------------------------------------------- provisioning
# Same accounts on all three: user1..userN@localhost, password "pass", SCRAM-SHA-1 4096.
provision() { # NAME  (server stopped for starling and prosody, running for ejabberd)
  local t0 t1
  t0=$(date +%s.%N)
  case $1 in
    starling)
      # Into a template: every Starling run starts from a copy (see fresh_starling_data).
      "$repo/bench/loadgen/provision.sh" --starlingctl "$starlingctl" --data-dir "$work/starling/template" \
        --users "$USERS" --prefix user --password pass --domain localhost >/dev/null 2>"$work/logs/provision-starling.log"
      ;;
    prosody)
      # mod_auth_internal_hashed's account files, written directly: one PBKDF2 for all (one salt),
      # which the server cannot tell from per-user salts; prosodyctl would take ~0.1 s per user.
      "$PYTHON" "$here/provision_prosody.py" --data-dir "$work/prosody/data" --domain localhost \
        --users "$USERS" --prefix user --password pass
      ;;
    ejabberd)
      # ejabberdctl register costs ~1 s per call (a new Erlang VM each time). Instead one RPC:
      # register user1 the normal way, then copy its SCRAM passwd record to user2..userN with
      # mnesia:dirty_write inside the node (the same record a registration would write).
      local users=$USERS
      erl -noshell -hidden -sname "prov$$" -setcookie "$(cat "$work/ejabberd/cookie")" \
        -erl_epmd_port "$port_ejabberd_dist" -start_epmd false -dist_listen false -eval "
          N = 'starlingcmp@localhost', H = <<\"localhost\">>,
          R1 = rpc:call(N, ejabberd_auth, try_register, [<<\"user1\">>, H, <<\"pass\">>]),
          [Rec] = rpc:call(N, mnesia, dirty_read, [passwd, {<<\"user1\">>, H}]),
          F = fun() -> lists:foreach(fun(I) ->
                  ok = mnesia:dirty_write(setelement(2, Rec, {<<\"user\", (integer_to_binary(I))/binary>>, H}))
                end, lists:seq(2, $users)), ok end,
          R2 = rpc:call(N, erlang, apply, [F, []]),
          C = rpc:call(N, mnesia, table_info, [passwd, size]),
          io:format(\"register user1: ~p, copies: ~p, passwd records: ~p~n\", [R1, R2, C]),
          halt(case {R2, C >= $users} of {ok, true} -> 0; _ -> 1 end)." >"$work/logs/provision-ejabberd.log" 2>&1 \
        || { echo "run.sh: ejabberd provisioning failed:" >&2; cat "$work/logs/provision-ejabberd.log" >&2; exit 1; }
      ;;
  esac
  t1=$(date +%s.%N)
  awk -v n="$USERS" -v s="$t0" -v e="$t1" -v name="$1" \
    'BEGIN { printf "{\"server\": \"%s\", \"users\": %d, \"seconds\": %.3f}\n", name, n, e - s }' >"$work/json/provision-$1.json"
  log "provisioned $USERS accounts on $1 in $(awk -v s="$t0" -v e="$t1" 'BEGIN { printf "%.2f", e - s }') s"
}

# ---------------------------------------------------------------- scenarios
run_loadgen() { # TABLE TAG SCENARIO ARGS...: loadgen on core 1 (table 1) or anywhere (table 2)
  local table=$1 tag=$2 scenario=$3; shift 3
  local pin=(taskset -c 1) threads=1
  [[ $table == 2 ]] && pin=() threads=2
  local rc=0
  "${pin[@]}" "$loadgen" "$scenario" --port "$server_port" --domain localhost --users "$USERS" --prefix user \
    --password pass --threads "$threads" --server-pid "$measure_pid" --no-progress \
    --json "$work/json/$tag.json" "$@" >/dev/null 2>"$work/logs/$tag.loadgen.log" &
  lg_pid=$! # in the background so that a signal reaches our trap at once
  wait "$lg_pid" || rc=$?
  lg_pid=
  ((rc == 0)) || echo "BENCH: loadgen $scenario exit $rc" >>"$work/logs/$tag.loadgen.log"
}

for s in $SERVERS; do case $s in starling|prosody|ejabberd) ;; *) echo "run.sh: unknown server $s" >&2; exit 2 ;; esac; done
log "work dir $work; USERS=$USERS DURATION=$DURATION RUNS=$RUNS WINDOW=$WINDOW RATE=$RATE HOLD=$HOLD TABLES='$TABLES' SERVERS='$SERVERS'"
log "load average before: $loadavg_before"
for s in $SERVERS; do
  case $s in
    starling|prosody) provision "$s" ;;
    ejabberd)
      start_server ejabberd 2 "$work/logs/ejabberd-provision.log"
      provision ejabberd
      stop_server "$work/logs/ejabberd-provision.log"
      ;;
  esac
done

if [[ ${PROVISION_ONLY:-0} == 1 ]]; then
  cat "$work"/json/provision-*.json
  exit 0
fi

for run in $(seq "$RUNS"); do
  for table in $TABLES; do
    for s in $SERVERS; do
      tag="t$table-$s-r$run"
      log "table $table run $run/$RUNS: $s (connect, chat window $WINDOW, chat rate $RATE)"
      start_server "$s" "$table" "$work/logs/$tag.server.log"
      run_loadgen "$table" "$tag-connect" connect --hold "$HOLD" --timeout 300
      sleep 1 # let the server close the held sessions
      run_loadgen "$table" "$tag-chat" chat --window "$WINDOW" --duration "$DURATION" --timeout $((DURATION + 300))
      sleep 1
      run_loadgen "$table" "$tag-rate" chat --rate "$RATE" --window "$WINDOW" --duration "$DURATION" --timeout $((DURATION + 300))
      sleep 1 # Prosody 0.12 can trip over sessions still closing when SIGTERM comes (mod_c2s.lua:469)
      stop_server "$work/logs/$tag.server.log"
    done
  done
done

# ---------------------------------------------------------------- tsung cross-check
if [[ $TSUNG == 1 ]]; then
  export work loadgen port_starling port_prosody port_tsung_epmd USERS PYTHON
  for s in $TSUNG_SERVERS; do
    [[ " $SERVERS " == *" $s "* ]] || continue
    log "tsung cross-check: login rate on $s"
    start_server "$s" 1 "$work/logs/tsung-$s.server.log"
    "$here/tsung.sh" "$s" "$server_port" "$measure_pid" >&2 || echo "BENCH: tsung.sh $s exit $?" >>"$work/logs/tsung-$s.server.log"
    stop_server "$work/logs/tsung-$s.server.log"
  done
fi

loadavg_after=$(cut -d' ' -f1-3 /proc/loadavg)
log "load average after: $loadavg_after"
cat >"$work/json/meta.json" <<JSON
{"command": "$command_line", "env": "USERS=$USERS DURATION=$DURATION RUNS=$RUNS WINDOW=$WINDOW RATE=$RATE HOLD=$HOLD QUICK=$QUICK TABLES='$TABLES' SERVERS='$SERVERS'",
 "started": "$started_at", "wall_s": $(( $(date +%s) - t_start )), "loadavg_before": "$loadavg_before", "loadavg_after": "$loadavg_after",
 "nproc": $(nproc), "cpu": "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//;s/"/ /g')",
 "git": "$(git -C "$repo" describe --always --dirty 2>/dev/null || echo unknown)", "starling_mam": "$starling_mam",
 "prosody": "$(dpkg-query -W -f='${Version}' prosody)", "ejabberd": "$(dpkg-query -W -f='${Version}' ejabberd)",
 "users": $USERS, "duration": $DURATION, "runs": $RUNS, "window": $WINDOW, "rate": $RATE, "hold": $HOLD,
 "servers": "$SERVERS", "tables": "$TABLES"}
JSON
args=("$work" --out "$OUT" --charts "$here/charts")
[[ $UPDATE_RESULTS == 1 ]] && args+=(--update-results "$repo/bench/RESULTS.md")
"$PYTHON" "$here/summarize.py" "${args[@]}"
