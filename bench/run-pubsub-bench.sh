#!/usr/bin/env bash
# PubSub benchmark (issue 11), side by side in one run: XEP-0060 fan-out and telemetry on
# Starling, Prosody 0.12 (`pubsub` component) and ejabberd 23.01 (mod_pubsub), all from Debian 12,
# driven by the same starling-loadgen (`pubsub` scenario) over plain c2s on loopback. Each server
# is pinned to core 0, the generator to core 1. See bench/pubsub/README.md.
#
#   bench/run-pubsub-bench.sh [BUILD_DIR]     (default build/release; as root)
#
# Scenarios (SCENARIOS, all by default):
#   fanout1k   1 publisher, 1 node, 1,000 subscribers: notifications delivered per second
#   fanout10k  1 publisher, 1 node, 10,000 subscribers: notifications delivered per second
#   telemetry  1,000 publishers, each to its own node with 1 subscriber, items persisted:
#              publishes acknowledged per second
#
# Environment (defaults):
#   SCENARIOS="fanout1k fanout10k telemetry" SERVERS="starling prosody ejabberd" RUNS=3
#   DURATION=10 DRAIN=60 (seconds of publishing; seconds to wait for notifications in flight)
#   SETUP_TIMEOUT=600 (seconds for logins, node creation and subscriptions; the generator's
#   --timeout is DURATION + DRAIN + SETUP_TIMEOUT)
#   SKIP="" (SERVER/SCENARIO pairs not to run, e.g. SKIP="prosody/fanout10k": Prosody 0.12 does
#   not get through 10,000 subscriptions to one node in 10 minutes)
#   WINDOW_FANOUT1K=64 WINDOW_FANOUT10K=8 (publish IQs the fan-out publisher keeps outstanding:
#   64,000 and 80,000 notifications in flight) WINDOW_TELEMETRY=4 (per device: 4,000 in flight)
#   BODY_BYTES=0 (item payload padding)
#   SKIP_INSTALL=0 SKIP_BUILD=0 KEEP=0 OUT=bench/pubsub/out (results.json, summary.md)
#   PORT_BASE=29622 (below the ephemeral port range; starling +0, prosody +1, ejabberd +2, ejabberd dist +68)
#   PERF=0 (1: record `perf record -g` of Starling during its first run of each scenario, into OUT)
#   PERF_DELAY=0 (with PERF=1: start recording this many seconds after the server, for DURATION
#     seconds, so that the logins and subscriptions of the set-up stay out of the profile)
#   PERF_ARGS="-g -F 499" (perf record options, e.g. "--call-graph dwarf -F 199")
#   BEFORE= (a second starlingd binary, e.g. main's, run as server "before" right after
#   "starling" on the same accounts and settings: before/after side by side in one run; the
#   summary's "Starling / this" column of its rows is after/before)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
build=${1:-$repo/build/release}
SCENARIOS=${SCENARIOS:-"fanout1k fanout10k telemetry"}
SERVERS=${SERVERS:-"starling prosody ejabberd"}
RUNS=${RUNS:-3}
DURATION=${DURATION:-10}
DRAIN=${DRAIN:-60}
SETUP_TIMEOUT=${SETUP_TIMEOUT:-600}
SKIP=${SKIP:-}
WINDOW_FANOUT1K=${WINDOW_FANOUT1K:-64}
WINDOW_FANOUT10K=${WINDOW_FANOUT10K:-8}
WINDOW_TELEMETRY=${WINDOW_TELEMETRY:-4}
BODY_BYTES=${BODY_BYTES:-0}
KEEP=${KEEP:-0}
PERF=${PERF:-0}
PERF_DELAY=${PERF_DELAY:-0}
PERF_ARGS=${PERF_ARGS:-"-g -F 499"}
BEFORE=${BEFORE:-}
OUT=${OUT:-$here/pubsub/out}
PORT_BASE=${PORT_BASE:-29622}
port_starling=$PORT_BASE
port_prosody=$((PORT_BASE + 1))
port_ejabberd=$((PORT_BASE + 2))
port_ejabberd_dist=$((PORT_BASE + 68))
PYTHON=/usr/bin/python3
started_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)
t_start=$(date +%s)
loadavg_before=$(cut -d' ' -f1-3 /proc/loadavg)
me="run-pubsub-bench.sh"
WAIT_PORT_S=90  # ejabberd with 10,000 subscriptions in Mnesia starts slowly
# Process, port and log helpers (log, kill_tree, stop_leftovers, reserve_ports, wait_port,
# wait_bindable); this script keeps its own configurations, start and provisioning (PubSub).
# shellcheck source=compare/lib.sh
source "$repo/bench/compare/lib.sh"

# Scenario shapes: users nodes subscribers-per-node publishers window.
shape() { # SCENARIO -> "USERS NODES SUBS PUBLISHERS WINDOW"
  case $1 in
    fanout1k) echo "1001 1 1000 1 $WINDOW_FANOUT1K" ;;
    fanout10k) echo "10001 1 10000 1 $WINDOW_FANOUT10K" ;;
    telemetry) echo "2000 1000 1 1000 $WINDOW_TELEMETRY" ;;
    *) echo "run-pubsub-bench.sh: unknown scenario $1" >&2; exit 2 ;;
  esac
}
USERS=0 MAX_PUBLISHERS=0
for sc in $SCENARIOS; do
  read -r u _ _ p _ <<<"$(shape "$sc")"
  ((u > USERS)) && USERS=$u
  ((p > MAX_PUBLISHERS)) && MAX_PUBLISHERS=$p
done
if [[ -n $BEFORE && " $SERVERS " != *" before "* ]]; then
  SERVERS=$(for s in $SERVERS; do echo "$s"; [[ $s == starling ]] && echo before; done | xargs)
  [[ " $SERVERS " == *" before "* ]] || SERVERS="before $SERVERS"
fi
[[ " $SERVERS " == *" before "* && -z $BEFORE ]] && { echo "run-pubsub-bench.sh: server 'before' needs BEFORE=<starlingd>" >&2; exit 2; }
for s in $SERVERS; do case $s in starling|before|prosody|ejabberd) ;; *) echo "run-pubsub-bench.sh: unknown server $s" >&2; exit 2 ;; esac; done

# ---------------------------------------------------------------- install and build
if [[ ${SKIP_INSTALL:-0} != 1 ]]; then
  log "install (bench/compare/install.sh)"
  "$repo/bench/compare/install.sh"
fi
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
  log "build ($build)"
  [[ -f $build/build.ninja ]] || cmake --preset release >/dev/null
  cmake --build "$build" --target starlingd starlingctl starling-loadgen >&2
fi
starlingd=$build/broker/starlingd
starlingctl=$build/broker/starlingctl
loadgen=$build/bench/loadgen/starling-loadgen
for b in "$starlingd" "$starlingctl" "$loadgen" ${BEFORE:+"$BEFORE"}; do [[ -x $b ]] || { echo "run-pubsub-bench.sh: $b missing" >&2; exit 1; }; done

# 10,001 sessions in the generator and as many on the server (the generator spreads its source
# addresses over 127.0.0.1-254, so ephemeral ports do not run out).
ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)"
ports_free $port_starling $port_prosody $port_ejabberd $port_ejabberd_dist

work=$(mktemp -d /tmp/starling-pubsub.XXXXXX)
chmod 755 "$work" # ejabberd runs as the ejabberd user and must reach its dir
mkdir -p "$work/json" "$work/logs" "$OUT"
server_pid='' server_name='' measure_pid='' lg_pid='' perf_pid=''

cleanup() {
  local rc=$?
  if [[ -n $perf_pid ]]; then kill -INT "$perf_pid" 2>/dev/null || true; wait "$perf_pid" 2>/dev/null || true; fi
  stop_leftovers
  if [[ $KEEP == 1 || $rc != 0 ]]; then echo "$me: kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# Our ports are in the ephemeral range: keep the kernel from handing them out as source ports
# (bench/compare/README.md, Caveats); cleanup takes them back.
reserve_ports "$PORT_BASE" $((PORT_BASE + 77))

# ---------------------------------------------------------------- configurations
# As bench/compare/run.sh: plain c2s on loopback, no shaper or rate limit, no MAM, SCRAM-SHA-1
# 4096 credentials on the peers, PLAIN on the wire. Items are persisted on all three (Starling:
# RocksDB, acknowledged after the batch's fsync; Prosody: persist_items = true by default,
# storage "internal" (files); ejabberd: mod_pubsub's flat nodes, persist_items true by default,
# items in Mnesia).
#
## Starling: the per-account limits that would throttle a benchmark client are lifted: the
## c2s stanza rate (200/s by default), [pubsub] max_publishes_per_second (100/s per account by
## default) and max_subscriptions_per_node (10,000 by default: exactly the 10k fan-out, raised
## so the limit is not what is measured). Everything else keeps its default (persist_items,
## max_items 10, payload size, slow-reader limit max_output_bytes 2 MiB).
mkdir -p "$work/starling/template"
cat >"$work/starling/bench.toml" <<'TOML'
[c2s]
stanzas_per_second = 1000000
max_connections_per_ip = 1000000
connection_rate_per_ip = 0

[modules]
mam = false

[pubsub]
max_publishes_per_second = 0
max_subscriptions_per_node = 100000
TOML
"$starlingd" --config "$work/starling/bench.toml" --data-dir "$work/starling/check" --check-config >/dev/null

## Prosody 0.12: the `pubsub` component; only admins may create nodes (mod_pubsub's
## get_affiliation), so the publishers user1..userP are listed as admins.
mkdir -p "$work/prosody/data" "$work/prosody/certs"
admins=$(seq 1 "$MAX_PUBLISHERS" | awk '{ printf "%s\"user%d@localhost\"", (NR > 1 ? ", " : ""), $1 }')
cat >"$work/prosody/prosody.cfg.lua" <<LUA
-- bench/run-pubsub-bench.sh: Prosody; everything under $work/prosody.
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
certificates = "certs"
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
authentication = "internal_hashed"
storage = "internal"
limits = { c2s = { rate = "1000mb/s"; burst = "10s" } }
c2s_stanza_size_limit = 262144
max_connections_per_ip = 0
admins = { $admins }
modules_enabled = { "roster", "saslauth", "disco", "ping", "offline", "carbons", "blocklist", "vcard_legacy", "version" }
modules_disabled = { "s2s", "tls", "limits", "mam", "admin_socket" }
VirtualHost "localhost"
Component "pubsub.localhost" "pubsub"
LUA

## ejabberd 23.01: mod_pubsub with its defaults (service pubsub.localhost, plugin flat, nodes
## created by any local user, persist_items true).
mkdir -p "$work/ejabberd/conf" "$work/ejabberd/spool" "$work/ejabberd/logs"
head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$work/ejabberd/cookie"
cp /etc/ejabberd/inetrc "$work/ejabberd/conf/inetrc" 2>/dev/null || echo '{lookup,["file","native"]}.' >"$work/ejabberd/conf/inetrc"
cat >"$work/ejabberd/conf/ejabberd.yml" <<YML
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
access_rules:
  local:
    allow: local
  c2s:
    allow: all
shaper: {}
shaper_rules:
  max_user_sessions: 10
  max_user_offline_messages: 100
  c2s_shaper: none
  s2s_shaper: none
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
  mod_pubsub:
    host: "pubsub.localhost"
    access_createnode: local
    plugins:
      - "flat"
YML
cat >"$work/ejabberd/conf/ejabberdctl.cfg" <<CFG
ERLANG_NODE=starlingpubsub@localhost
ERL_DIST_PORT=$port_ejabberd_dist
INET_DIST_INTERFACE=127.0.0.1
ERL_MAX_PORTS=1100000
ERL_PROCESSES=4000000
ERL_OPTIONS="-setcookie $(cat "$work/ejabberd/cookie") +sbwt none +sbwtdcpu none +sbwtdio none +S 1:1 +SDcpu 1:1 +SDio 1 -env ERL_CRASH_DUMP_BYTES 0"
EJABBERD_BYPASS_WARNINGS=true
CFG
chown -R ejabberd:ejabberd "$work/ejabberd"
ejctl=(setpriv --reuid=ejabberd --regid=ejabberd --init-groups env HOME="$work/ejabberd" ejabberdctl --config-dir "$work/ejabberd/conf" --spool "$work/ejabberd/spool" --logs "$work/ejabberd/logs")

# ---------------------------------------------------------------- start / stop (server on core 0)
# A port of ours may have been taken as a source port by someone's client socket just before
# the reservation (or still be in TIME-WAIT): start again while the server fails to bind.
start_server() { # NAME LOG
  local attempt
  for attempt in $(seq 40); do
    start_server_once "$@" && return 0
    log "$1 could not bind its port (attempt $attempt); retrying"
    sleep 2
  done
  echo "run-pubsub-bench.sh: $1 could not bind its port for 80 s" >&2; tail -30 "$2" >&2; exit 1
}
start_server_once() { # NAME LOG; 1 when the server lost its port to someone else
  local name=$1 logf=$2 port
  server_name=$name
  case $name in
    starling|before)
      port=$port_starling
      wait_bindable "$port"
      rm -rf "$work/starling/data" && cp -a "$work/starling/template" "$work/starling/data"
      local bin=$starlingd
      [[ $name == before ]] && bin=$BEFORE
      taskset -c 0 "$bin" --config "$work/starling/bench.toml" --data-dir "$work/starling/data" \
        --c2s-port "$port" --c2s-tls-port 0 --metrics-port 0 --shards 1 --allow-plaintext \
        --log-level warn >"$logf" 2>&1 &
      server_pid=$! measure_pid=$!
      ;;
    prosody)
      port=$port_prosody
      wait_bindable "$port"
      taskset -c 0 prosody -F --config "$work/prosody/prosody.cfg.lua" >"$logf" 2>&1 &
      server_pid=$! measure_pid=$!
      ;;
    ejabberd)
      port=$port_ejabberd
      wait_bindable "$port"; wait_bindable "$port_ejabberd_dist"
      taskset -c 0 "${ejctl[@]}" foreground >"$logf" 2>&1 &
      server_pid=$!
      ;;
  esac
  if ! wait_port "$port" "$server_pid" "$name" "$logf"; then
    if grep -qiE 'address already in use|eaddrinuse|Failed to open server port' "$logf"; then
      kill -0 "$server_pid" 2>/dev/null && kill_tree "$server_pid"
      wait "$server_pid" 2>/dev/null || true
      server_pid='' measure_pid=''
      return 1
    fi
    tail -30 "$logf" >&2; exit 1
  fi
  if [[ $name == ejabberd ]]; then
    measure_pid=
    for p in $(descendants "$server_pid"); do
      [[ $(cat /proc/"$p"/comm 2>/dev/null) == beam.smp ]] && measure_pid=$p
    done
    [[ -n $measure_pid ]] || { echo "run-pubsub-bench.sh: no beam.smp below $server_pid" >&2; exit 1; }
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
  else
    echo "BENCH: $server_name had exited by itself" >>"$1"
  fi
  wait "$server_pid" 2>/dev/null || true
  server_pid='' measure_pid=''
}

# ---------------------------------------------------------------- provisioning
# user1..userUSERS@localhost, password "pass", as bench/compare/run.sh does it.
provision() { # NAME
  local t0=$SECONDS
  case $1 in
    starling)
      "$repo/bench/loadgen/provision.sh" --starlingctl "$starlingctl" --data-dir "$work/starling/template" \
        --users "$USERS" --prefix user --password pass --domain localhost >/dev/null 2>"$work/logs/provision-starling.log"
      ;;
    prosody)
      "$PYTHON" "$repo/bench/compare/provision_prosody.py" --data-dir "$work/prosody/data" --domain localhost \
        --users "$USERS" --prefix user --password pass
      ;;
    ejabberd)
      erl -noshell -hidden -sname "prov$$" -setcookie "$(cat "$work/ejabberd/cookie")" \
        -erl_epmd_port "$port_ejabberd_dist" -start_epmd false -dist_listen false -eval "
          N = 'starlingpubsub@localhost', H = <<\"localhost\">>,
          R1 = rpc:call(N, ejabberd_auth, try_register, [<<\"user1\">>, H, <<\"pass\">>]),
          [Rec] = rpc:call(N, mnesia, dirty_read, [passwd, {<<\"user1\">>, H}]),
          F = fun() -> lists:foreach(fun(I) ->
                  ok = mnesia:dirty_write(setelement(2, Rec, {<<\"user\", (integer_to_binary(I))/binary>>, H}))
                end, lists:seq(2, $USERS)), ok end,
          R2 = rpc:call(N, erlang, apply, [F, []]),
          C = rpc:call(N, mnesia, table_info, [passwd, size]),
          io:format(\"register user1: ~p, copies: ~p, passwd records: ~p~n\", [R1, R2, C]),
          halt(case {R2, C >= $USERS} of {ok, true} -> 0; _ -> 1 end)." >"$work/logs/provision-ejabberd.log" 2>&1 \
        || { echo "run-pubsub-bench.sh: ejabberd provisioning failed:" >&2; cat "$work/logs/provision-ejabberd.log" >&2; exit 1; }
      ;;
  esac
  log "provisioned $USERS accounts on $1 in $((SECONDS - t0)) s"
}

log "work dir $work; SCENARIOS='$SCENARIOS' SERVERS='$SERVERS' RUNS=$RUNS DURATION=$DURATION DRAIN=$DRAIN SETUP_TIMEOUT=$SETUP_TIMEOUT SKIP='$SKIP' WINDOW_FANOUT1K=$WINDOW_FANOUT1K WINDOW_FANOUT10K=$WINDOW_FANOUT10K WINDOW_TELEMETRY=$WINDOW_TELEMETRY"
log "load average before: $loadavg_before"
for s in $SERVERS; do
  [[ $s == before && " $SERVERS " == *" starling "* ]] && continue  # the same accounts as starling
  [[ $s == before ]] && s=starling
  if [[ $s == ejabberd ]]; then
    start_server ejabberd "$work/logs/ejabberd-provision.log"
    provision ejabberd
    stop_server "$work/logs/ejabberd-provision.log"
  else
    provision "$s"
  fi
done

# ---------------------------------------------------------------- runs (generator on core 1)
# One server start per (run, server, scenario): every scenario starts from the provisioned
# accounts with no nodes (Starling: a fresh copy of its store; the peers: nodes of earlier
# scenarios stay but are other nodes, a new --node-prefix each time).
for run in $(seq "$RUNS"); do
  for sc in $SCENARIOS; do
    read -r users nodes subs pubs window <<<"$(shape "$sc")"
    for s in $SERVERS; do
      tag="$sc-$s-r$run"
      [[ " $SKIP " == *" $s/$sc "* ]] && { log "run $run/$RUNS: $sc on $s skipped (SKIP)"; continue; }
      log "run $run/$RUNS: $sc on $s (users $users, nodes $nodes x $subs subscribers, $pubs publishers, window $window)"
      start_server "$s" "$work/logs/$tag.server.log"
      if [[ $PERF == 1 && $s == starling && $run == 1 ]]; then
        if ((PERF_DELAY > 0)); then  # skip the logins: record PERF_DELAY s after the start, for DURATION s
          (sleep "$PERF_DELAY"; exec perf record $PERF_ARGS -p "$measure_pid" -o "$OUT/perf-$sc.data" -- sleep "$DURATION") \
            >/dev/null 2>"$work/logs/$tag.perf.log" &
        else
          perf record $PERF_ARGS -p "$measure_pid" -o "$OUT/perf-$sc.data" >/dev/null 2>"$work/logs/$tag.perf.log" &
        fi
        perf_pid=$!
      fi
      rc=0
      taskset -c 1 "$loadgen" pubsub --port "$server_port" --domain localhost --users "$users" --prefix user \
        --password pass --threads 1 --server-pid "$measure_pid" --no-progress \
        --nodes "$nodes" --subscribers-per-node "$subs" --publishers "$pubs" --node-prefix "$sc-r$run-" \
        --window "$window" --duration "$DURATION" --drain "$DRAIN" --body-bytes "$BODY_BYTES" \
        --timeout $((DURATION + DRAIN + SETUP_TIMEOUT)) \
        --json "$work/json/$tag.json" >/dev/null 2>"$work/logs/$tag.loadgen.log" &
      lg_pid=$!
      wait "$lg_pid" || rc=$?
      lg_pid=''
      if [[ -n $perf_pid ]]; then kill -INT "$perf_pid" 2>/dev/null || true; wait "$perf_pid" 2>/dev/null || true; perf_pid=''; fi
      if ((rc != 0)); then
        echo "run-pubsub-bench.sh: loadgen exit $rc on $s ($sc):" >&2; tail -5 "$work/logs/$tag.loadgen.log" >&2
      fi
      [[ -s $work/json/$tag.json ]] || echo "{\"failed\": $rc}" >"$work/json/$tag.json"
      sleep 1
      stop_server "$work/logs/$tag.server.log"
    done
  done
done

cat >"$work/json/meta.json" <<JSON
{"command": "bench/run-pubsub-bench.sh${1:+ $1}", "started": "$started_at", "wall_s": $(( $(date +%s) - t_start )),
 "env": "SCENARIOS='$SCENARIOS' RUNS=$RUNS DURATION=$DURATION DRAIN=$DRAIN SETUP_TIMEOUT=$SETUP_TIMEOUT SKIP='$SKIP' WINDOW_FANOUT1K=$WINDOW_FANOUT1K WINDOW_FANOUT10K=$WINDOW_FANOUT10K WINDOW_TELEMETRY=$WINDOW_TELEMETRY BODY_BYTES=$BODY_BYTES",
 "loadavg_before": "$loadavg_before", "loadavg_after": "$(cut -d' ' -f1-3 /proc/loadavg)", "nproc": $(nproc),
 "cpu": "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//;s/"/ /g')",
 "git": "$(git -C "$repo" describe --always --dirty 2>/dev/null || echo unknown)",
 "prosody": "$(dpkg-query -W -f='${Version}' prosody)", "ejabberd": "$(dpkg-query -W -f='${Version}' ejabberd)"}
JSON
[[ $KEEP == 1 ]] && cp -r "$work/json" "$OUT/json"
"$PYTHON" "$here/pubsub/summarize.py" "$work/json" --out "$OUT"
