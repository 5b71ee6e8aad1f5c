#!/usr/bin/env bash
# Fleet presence benchmark (issue 10), side by side in one run: one operator account subscribed
# to the presence of DEVICES device accounts that connect, flap and change status
# (bench/fleet/fleet_bench.py, fixed seed). Bytes and stanzas delivered to the operator's socket
# in three modes: none (no CSI), csi (XEP-0352 inactive; the <active/> flush at the end counts),
# csi+zlib (the same over XEP-0138 zlib), on Starling, Prosody 0.12 (mod_csi_simple) and
# ejabberd 23.01 (mod_client_state), all from Debian 12. See bench/fleet/README.md.
#
#   bench/run-fleet-bench.sh [BUILD_DIR]     (default build/release; as root)
#
# Environment (defaults): DEVICES=5000 EVENTS=10 PERIOD=60 RUNS=1 SEED=20261204
#   SERVERS="starling prosody ejabberd" MODES="none csi csi+zlib" SKIP_INSTALL=0 SKIP_BUILD=0
#   KEEP=0 PORT_BASE=29422 (below the ephemeral port range; starling +0, prosody +1, ejabberd +2, ejabberd dist +68)
#   OUT=bench/fleet/out (results.json, summary.md)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
build=${1:-$repo/build/release}
DEVICES=${DEVICES:-5000}
EVENTS=${EVENTS:-10}
PERIOD=${PERIOD:-60}
RUNS=${RUNS:-1}
SEED=${SEED:-20261204}
SERVERS=${SERVERS:-"starling prosody ejabberd"}
MODES=${MODES:-"none csi csi+zlib"}
KEEP=${KEEP:-0}
OUT=${OUT:-$here/fleet/out}
PORT_BASE=${PORT_BASE:-29422}
port_starling=$PORT_BASE
port_prosody=$((PORT_BASE + 1))
port_ejabberd=$((PORT_BASE + 2))
port_ejabberd_dist=$((PORT_BASE + 68))
PYTHON=/usr/bin/python3
started_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)
t_start=$(date +%s)
loadavg_before=$(cut -d' ' -f1-3 /proc/loadavg)
me="run-fleet-bench.sh"
# Process, port and log helpers (log, kill_tree, stop_leftovers, reserve_ports, wait_port,
# wait_bindable); this script keeps its own configurations, start and provisioning (CSI modes).
# shellcheck source=compare/lib.sh
source "$repo/bench/compare/lib.sh"

# ---------------------------------------------------------------- install and build
if [[ ${SKIP_INSTALL:-0} != 1 ]]; then
  log "install (bench/compare/install.sh)"
  "$repo/bench/compare/install.sh"
fi
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
  log "build ($build)"
  [[ -f $build/build.ninja ]] || cmake --preset release >/dev/null
  cmake --build "$build" --target starlingd starlingctl >&2
fi
starlingd=$build/broker/starlingd
starlingctl=$build/broker/starlingctl
if [[ " $SERVERS " == *" starling"* ]]; then
  for b in "$starlingd" "$starlingctl"; do [[ -x $b ]] || { echo "run-fleet-bench.sh: $b missing" >&2; exit 1; }; done
fi

# DEVICES connections in one client process, and as many on each server.
ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)"
ports_free $port_starling $port_prosody $port_ejabberd $port_ejabberd_dist

work=$(mktemp -d /tmp/starling-fleet.XXXXXX)
chmod 755 "$work" # ejabberd runs as the ejabberd user and must reach its dir
mkdir -p "$work/json" "$work/logs"
server_pid='' server_name='' lg_pid=''

cleanup() {
  local rc=$?
  stop_leftovers
  if [[ $KEEP == 1 || $rc != 0 ]]; then echo "$me: kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# Our ports are in the ephemeral range: keep the kernel from handing them out as source ports
# for the run (bench/compare/README.md, Caveats); cleanup takes them back.
reserve_ports "$PORT_BASE" $((PORT_BASE + 77))

# ---------------------------------------------------------------- configurations
# As bench/compare/run.sh (plain c2s on loopback, no shaper or rate limit, no MAM, SCRAM-SHA-1
# 4096 credentials on the peers), plus each server's CSI and, where it exists, zlib.

## Starling: CSI is a default module; compression is off by default and turned on for csi+zlib.
mkdir -p "$work/starling/template"
printf '[c2s]\nstanzas_per_second = 1000000\nmax_connections_per_ip = 1000000\nconnection_rate_per_ip = 0\n\n[modules]\nmam = false\n' >"$work/starling/base.toml"
# Variants (optional, SERVERS="... starling-q starling-qp"): starling-q has room to hold one
# presence per contact of a 5,000-device roster while inactive (the defaults, 256 stanzas /
# 256 KiB, flush on overflow) and the slow-reader limit above that, as csi/README.md asks;
# starling-qp is starling-q without server pings ([ping] idle_ms = 0): the XEP-0199 ping a
# silent client gets after 60 s is an IQ, urgent, and flushes everything held.
starling_config() { # SERVER MODE -> path
  local f=$work/starling/$1-$2.toml
  cp "$work/starling/base.toml" "$f"
  [[ $2 == csi+zlib ]] && sed -i 's/^\[c2s\]$/[c2s]\ncompression = true/' "$f"
  if [[ $1 == starling-q* ]]; then
    sed -i 's/^\[c2s\]$/[c2s]\nmax_output_bytes = 8388608/' "$f"
    printf '\n[csi]\nmax_held = 16384\nmax_held_bytes = 4194304\n' >>"$f"
  fi
  [[ $1 == starling-qp ]] && printf '\n[ping]\nidle_ms = 0\n' >>"$f"
  echo "$f"
}
if [[ " $SERVERS " == *" starling"* ]]; then
  "$starlingd" --config "$(starling_config starling-qp csi+zlib)" --data-dir "$work/starling/check" --check-config >/dev/null
fi

## Prosody 0.12: mod_csi_simple (built in); 0.12 has no stream compression (mod_compression
## left the core in 0.10), so csi+zlib is n/a there.
mkdir -p "$work/prosody/data" "$work/prosody/certs"
cat >"$work/prosody/prosody.cfg.lua" <<LUA
-- bench/run-fleet-bench.sh: Prosody; everything under $work/prosody.
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
max_connections_per_ip = 0
-- csi_simple: holds presence and other unimportant stanzas while inactive (csi_queue_size 256).
modules_enabled = { "roster", "saslauth", "disco", "ping", "offline", "carbons", "blocklist", "vcard_legacy", "version", "csi_simple" }
modules_disabled = { "s2s", "tls", "limits", "mam", "admin_socket" }
VirtualHost "localhost"
LUA

## ejabberd 23.01: mod_client_state queues presence (latest per full JID), chat states and PEP;
## the listener offers zlib (erlang-p1-zlib comes with Debian's ejabberd).
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
    zlib: true
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
  mod_client_state:
    queue_presence: true
    queue_chat_states: true
    queue_pep: true
YML
cat >"$work/ejabberd/conf/ejabberdctl.cfg" <<CFG
ERLANG_NODE=starlingfleet@localhost
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
start_server() { # NAME MODE LOG
  local name=$1 mode=$2 logf=$3 port
  server_name=$name
  case $name in
    starling|starling-q|starling-qp)
      port=$port_starling
      wait_bindable "$port"
      rm -rf "$work/starling/data" && cp -a "$work/starling/template" "$work/starling/data"
      taskset -c 0 "$starlingd" --config "$(starling_config "$name" "$mode")" --data-dir "$work/starling/data" \
        --c2s-port "$port" --c2s-tls-port 0 --metrics-port 0 --shards 1 --allow-plaintext \
        --log-level warn >"$logf" 2>&1 &
      server_pid=$!
      ;;
    prosody)
      port=$port_prosody
      wait_bindable "$port"
      taskset -c 0 prosody -F --config "$work/prosody/prosody.cfg.lua" >"$logf" 2>&1 &
      server_pid=$!
      ;;
    ejabberd)
      port=$port_ejabberd
      wait_bindable "$port"; wait_bindable "$port_ejabberd_dist"
      taskset -c 0 "${ejctl[@]}" foreground >"$logf" 2>&1 &
      server_pid=$!
      ;;
  esac
  wait_port "$port" "$server_pid" "$name" "$logf" || { tail -30 "$logf" >&2; exit 1; }
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
  server_pid=
}

# ---------------------------------------------------------------- provisioning
# Accounts dev1..devN and op1 @localhost, password "pass". Rosters: op1 has every device with
# subscription 'to' (it receives their presence), each device has op1 with 'from' (it sends its
# presence to op1). Nothing goes from the operator to the devices.
provision() { # NAME
  local t0=$SECONDS
  case $1 in
    starling)
      "$repo/bench/loadgen/provision.sh" --starlingctl "$starlingctl" --data-dir "$work/starling/template" \
        --users "$DEVICES" --prefix dev --password pass >/dev/null 2>"$work/logs/provision-starling.log"
      "$repo/bench/loadgen/provision.sh" --starlingctl "$starlingctl" --data-dir "$work/starling/template" \
        --users 1 --prefix op --password pass >/dev/null 2>>"$work/logs/provision-starling.log"
      awk -v n="$DEVICES" 'BEGIN { for (i = 1; i <= n; i++) {
          printf "op1@localhost,dev%d@localhost,to\n", i; printf "dev%d@localhost,op1@localhost,from\n", i } }' \
        >"$work/starling/rosters.csv"
      "$starlingctl" --data-dir "$work/starling/template" roster import "$work/starling/rosters.csv" \
        >>"$work/logs/provision-starling.log" 2>&1
      ;;
    prosody)
      "$PYTHON" "$repo/bench/compare/provision_prosody.py" --data-dir "$work/prosody/data" --users "$DEVICES" --prefix dev
      "$PYTHON" "$repo/bench/compare/provision_prosody.py" --data-dir "$work/prosody/data" --users 1 --prefix op
      # mod_roster's storage (keyval store "roster"): contact JID -> item; [false] holds the version.
      "$PYTHON" - "$work/prosody/data/localhost/roster" "$DEVICES" <<'PY'
import os, sys
d, n = sys.argv[1], int(sys.argv[2])
os.makedirs(d, exist_ok=True)
item = '\t["%s"] = {\n\t\t["groups"] = {};\n\t\t["subscription"] = "%s";\n\t};\n'
head = 'return {\n\t[false] = {\n\t\t["version"] = 1;\n\t};\n'
with open(os.path.join(d, "op1.dat"), "w") as f:
    f.write(head + "".join(item % (f"dev{i}@localhost", "to") for i in range(1, n + 1)) + "};\n")
for i in range(1, n + 1):
    with open(os.path.join(d, f"dev{i}.dat"), "w") as f:
        f.write(head + item % ("op1@localhost", "from") + "};\n")
PY
      ;;
    ejabberd)
      # One distributed-Erlang client: register op1 and dev1 the normal way, copy dev1's SCRAM
      # record to dev2..devN, and write the roster records mod_roster would write (mnesia).
      erl -noshell -hidden -sname "prov$$" -setcookie "$(cat "$work/ejabberd/cookie")" \
        -erl_epmd_port "$port_ejabberd_dist" -start_epmd false -dist_listen false -eval "
          N = 'starlingfleet@localhost', H = <<\"localhost\">>, Devs = $DEVICES,
          R0 = rpc:call(N, ejabberd_auth, try_register, [<<\"op1\">>, H, <<\"pass\">>]),
          R1 = rpc:call(N, ejabberd_auth, try_register, [<<\"dev1\">>, H, <<\"pass\">>]),
          [Rec] = rpc:call(N, mnesia, dirty_read, [passwd, {<<\"dev1\">>, H}]),
          Attrs = rpc:call(N, mnesia, table_info, [roster, attributes]),
          Dev = fun(I) -> <<\"dev\", (integer_to_binary(I))/binary>> end,
          Item = fun(U, C, Sub) -> list_to_tuple([roster | [case A of
                    usj -> {U, H, {C, H, <<>>}}; us -> {U, H}; jid -> {C, H, <<>>}; name -> <<>>;
                    subscription -> Sub; ask -> none; groups -> []; askmessage -> <<>>; xs -> [] end
                  || A <- Attrs]]) end,
          F = fun() -> lists:foreach(fun(I) ->
                  I > 1 andalso (ok = mnesia:dirty_write(setelement(2, Rec, {Dev(I), H}))),
                  ok = mnesia:dirty_write(Item(<<\"op1\">>, Dev(I), to)),
                  ok = mnesia:dirty_write(Item(Dev(I), <<\"op1\">>, from))
                end, lists:seq(1, Devs)), ok end,
          R2 = rpc:call(N, erlang, apply, [F, []]),
          C = rpc:call(N, mnesia, table_info, [roster, size]),
          io:format(\"register: ~p ~p, copies: ~p, roster records: ~p~n\", [R0, R1, R2, C]),
          halt(case {R2, C >= 2 * Devs} of {ok, true} -> 0; _ -> 1 end)." >"$work/logs/provision-ejabberd.log" 2>&1 \
        || { echo "run-fleet-bench.sh: ejabberd provisioning failed:" >&2; cat "$work/logs/provision-ejabberd.log" >&2; exit 1; }
      ;;
  esac
  log "provisioned $DEVICES devices + op1 with rosters on $1 in $((SECONDS - t0)) s"
}

for s in $SERVERS; do case $s in starling|starling-q|starling-qp|prosody|ejabberd) ;; *) echo "unknown server $s" >&2; exit 2 ;; esac; done
log "work dir $work; DEVICES=$DEVICES EVENTS=$EVENTS PERIOD=$PERIOD RUNS=$RUNS SEED=$SEED MODES='$MODES'"
log "load average before: $loadavg_before"
provisioned_starling=
for s in $SERVERS; do
  if [[ $s == starling* ]]; then
    [[ -n $provisioned_starling ]] || provision starling
    provisioned_starling=1
  elif [[ $s == ejabberd ]]; then
    start_server ejabberd none "$work/logs/ejabberd-provision.log"
    provision ejabberd
    stop_server "$work/logs/ejabberd-provision.log"
  else
    provision "$s"
  fi
done

# ---------------------------------------------------------------- runs (client on core 1)
for run in $(seq "$RUNS"); do
  for s in $SERVERS; do
    for mode in $MODES; do
      tag="$s-${mode/+/_}-r$run"
      if [[ $s == prosody && $mode == csi+zlib ]]; then
        echo "{\"server\": \"prosody\", \"mode\": \"csi+zlib\", \"na\": \"Prosody 0.12 has no XEP-0138 stream compression\"}" >"$work/json/$tag.json"
        continue
      fi
      log "run $run/$RUNS: $s, mode $mode"
      start_server "$s" "$mode" "$work/logs/$tag.server.log"
      rc=0
      taskset -c 1 "$PYTHON" "$here/fleet/fleet_bench.py" --port "$server_port" --server "$s" --mode "$mode" \
        --devices "$DEVICES" --events "$EVENTS" --period "$PERIOD" --seed "$SEED" \
        --json "$work/json/$tag.json" >/dev/null 2>"$work/logs/$tag.client.log" &
      lg_pid=$!
      wait "$lg_pid" || rc=$?
      lg_pid=
      if ((rc != 0)); then
        echo "run-fleet-bench.sh: the fleet client failed on $s ($mode), exit $rc:" >&2; tail -20 "$work/logs/$tag.client.log" >&2
        echo "{\"server\": \"$s\", \"mode\": \"$mode\", \"failed\": $rc}" >"$work/json/$tag.json"
      fi
      sleep 1
      stop_server "$work/logs/$tag.server.log"
    done
  done
done

cat >"$work/json/meta.json" <<JSON
{"command": "bench/run-fleet-bench.sh${1:+ $1}", "started": "$started_at", "wall_s": $(( $(date +%s) - t_start )),
 "env": "DEVICES=$DEVICES EVENTS=$EVENTS PERIOD=$PERIOD RUNS=$RUNS SEED=$SEED",
 "loadavg_before": "$loadavg_before", "loadavg_after": "$(cut -d' ' -f1-3 /proc/loadavg)", "nproc": $(nproc),
 "cpu": "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//;s/"/ /g')",
 "git": "$(git -C "$repo" describe --always --dirty 2>/dev/null || echo unknown)",
 "prosody": "$(dpkg-query -W -f='${Version}' prosody)", "ejabberd": "$(dpkg-query -W -f='${Version}' ejabberd)"}
JSON
mkdir -p "$OUT"
"$PYTHON" "$here/fleet/summarize.py" "$work/json" --out "$OUT"
