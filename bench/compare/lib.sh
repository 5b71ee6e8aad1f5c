# shellcheck shell=bash
# Shared set-up of the side-by-side benchmarks (issues 6 and 13): Starling, Prosody 0.12 and
# ejabberd 23.01 (Debian 12) configured alike, with or without STARTTLS, the same accounts on
# all three, and their processes started and stopped by PID. Sourced, never run:
#
#   source "$repo/bench/compare/lib.sh"
#
# The caller sets, before calling anything here:
#   me                  script name for messages
#   work                its temp dir (mktemp -d; chmod 755: ejabberd runs as its own user)
#   repo PYTHON         the repository root, /usr/bin/python3
#   port_starling port_prosody port_ejabberd port_ejabberd_dist
#   ej_node             ejabberd's node name (e.g. starlingcmp@localhost): one per script, so
#                       two scripts' ejabberds never share a node
#   starlingd starlingctl   the binaries
#   starling_flags      (array, may be empty) extra starlingd flags, e.g. (--allow-plaintext)
# and may set keep_data=1 around start_server (Starling starts on the store it left).
#
# Globals written: server_pid (what we started), measure_pid (the process whose RSS and CPU
# are measured: starlingd, Prosody's lua, ejabberd's beam.smp), server_name, server_port,
# starling_mam (off|on), bench_tls (0|1), lg_pid (the caller's generator, stopped by the trap).
#
# bench/compare/README.md says what is comparable and why; run.sh, run-reconnect-bench.sh and
# run-tls-chat-bench.sh use all of it; run-pubsub-bench.sh and run-fleet-bench.sh its process,
# port and log helpers (their peers' configurations differ).

log() { echo "== $(date +%H:%M:%S) $*" >&2; }

# ---------------------------------------------------------------- processes
# descendants PID: every process below PID (ejabberdctl -> beam.smp -> erl_child_setup, inet_gethost).
descendants() {
  local c
  for c in $(ps -o pid= --ppid "$1" 2>/dev/null); do echo "$c"; descendants "$c"; done
}

kill_tree() { # kill_tree PID: TERM the tree rooted at PID (all processes we started), then KILL after 20 s
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

# The server we started and the caller's generator, by PID; for the caller's EXIT trap.
stop_leftovers() {
  if [[ -n ${server_pid:-} ]] && kill -0 "$server_pid" 2>/dev/null; then
    echo "$me: stopping $server_name (pid $server_pid)" >&2
    kill_tree "$server_pid"
    wait "$server_pid" 2>/dev/null || true
  fi
  if [[ -n ${lg_pid:-} ]]; then kill -TERM "$lg_pid" 2>/dev/null || true; wait "$lg_pid" 2>/dev/null || true; fi
  unreserve_ports
}

# reserve_ports FIRST LAST: our ports lie inside the kernel's ephemeral range (32768-60999). A
# client socket of anyone on the machine (our loadgen, another engineer's benchmark spreading
# thousands of connections over 127.0.0.1-254) that got one of them as its source port keeps it
# in TIME-WAIT for 60 s after closing, and a server's bind to that port then fails
# (SO_REUSEADDR does not help against a client socket). Seen: 22 attempts in a row over 60 s.
# net.ipv4.ip_local_reserved_ports keeps the kernel from handing FIRST-LAST out as source ports;
# it only changes the choice of ephemeral ports. stop_leftovers takes our range out again
# (only ours: another run's reservation made meanwhile stays). RESERVE_PORTS=0 skips it.
reserved_range=
reserve_ports() {
  local f=/proc/sys/net/ipv4/ip_local_reserved_ports cur
  [[ ${RESERVE_PORTS:-1} == 1 && -w $f ]] || return 0
  cur=$(cat "$f")
  if echo "${cur:+$cur,}$1-$2" >"$f"; then
    reserved_range="$1-$2"
    log "reserved ports $1-$2 against ephemeral use until the end of the run"
  fi
}
unreserve_ports() {
  local f=/proc/sys/net/ipv4/ip_local_reserved_ports lo hi
  [[ -n $reserved_range ]] || return 0
  lo=${reserved_range%-*} hi=${reserved_range#*-}
  # The kernel prints ranges merged with neighbours; rewrite the list without lo..hi.
  "${PYTHON:-/usr/bin/python3}" - "$f" "$lo" "$hi" <<'PY' || true
import sys
path, lo, hi = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
out = []
for part in filter(None, open(path).read().strip().split(",")):
    a, _, b = part.partition("-")
    a, b = int(a), int(b or a)
    if a < lo: out.append((a, min(b, lo - 1)))
    if b > hi: out.append((max(a, hi + 1), b))
open(path, "w").write(",".join(f"{a}-{b}" if a != b else str(a) for a, b in out) + "\n")
PY
  reserved_range=
}

ports_free() { # PORT...: exit when one is listened on (another engineer's run, or a leftover of ours)
  local p
  for p in "$@"; do
    if ss -ltnH "sport = :$p" | grep -q .; then echo "$me: port $p is busy" >&2; exit 1; fi
  done
}

wait_port() { # wait_port PORT PID NAME LOG: 0 when PORT accepts; 1 when PID died, lost its port, or WAIT_PORT_S (60) s passed
  for _ in $(seq $((${WAIT_PORT_S:-60} * 10))); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then sleep 0.5; return 0; fi
    kill -0 "$2" 2>/dev/null || { echo "$me: $3 died at start-up" >&2; return 1; }
    if grep -qiE 'address already in use|eaddrinuse|Failed to open server port' "$4" 2>/dev/null; then return 1; fi
    sleep 0.1
  done
  echo "$me: $3 did not open port $1 in ${WAIT_PORT_S:-60} s" >&2
  return 1
}

# Our ports lie inside the kernel's ephemeral range (32768-60999): someone's client socket may
# hold one (live, or for 60 s in TIME-WAIT, which SO_REUSEADDR does not get past). Wait until
# no live socket uses it; start_server retries while a TIME-WAIT one makes the bind fail.
wait_bindable() { # PORT
  local waited=0
  while ss -tanH "( sport = :$1 )" | grep -qv '^TIME-WAIT'; do
    ((waited == 0)) && { log "port $1 is in use; waiting:"; ss -tanpH "( sport = :$1 )" | grep -v '^TIME-WAIT' | head -3 >&2; }
    ((waited < 120)) || { echo "$me: port $1 stayed in use for 120 s" >&2; exit 1; }
    sleep 1; waited=$((waited + 1))
  done
}

# ---------------------------------------------------------------- configurations
# bench_certificate: one self-signed EC P-256 certificate for localhost, for all three servers:
# $work/certs/localhost.{crt,key} and .pem (both, for ejabberd).
bench_certificate() {
  mkdir -p "$work/certs"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 -subj "/CN=localhost" \
    -addext "subjectAltName=DNS:localhost" -keyout "$work/certs/localhost.key" -out "$work/certs/localhost.crt" 2>/dev/null
  cat "$work/certs/localhost.crt" "$work/certs/localhost.key" >"$work/certs/localhost.pem"
  chmod 644 "$work/certs/"*
}

# bench_configs TLS: the three servers' configurations under $work. Common ground: c2s on
# 127.0.0.1, no stanza shaper, rate limit or per-IP cap, no MAM, offline storage, rosters,
# SCRAM-hashed credentials (4096 iterations), logs at warning level, the optional modules
# Starling has on (carbons, blocking, vcard, version, ping, disco).
#   TLS=0: plain c2s, SASL PLAIN over plaintext allowed (Starling needs --allow-plaintext).
#   TLS=1: STARTTLS required on all three, with bench_certificate's certificate; TLS settings
#          otherwise each server's defaults.
bench_configs() {
  bench_tls=$1
  local tls_toml="" prosody_tls ej_tls ej_certs="" prosody_mam="" ej_mam=""
  # peer_mam=1 (the archive bench, issue 14): Prosody and ejabberd archive every chat message as
  # Starling does by default (XEP-0313): Prosody's mod_mam with its default storage (internal,
  # files) and "always" as the default policy, ejabberd's mod_mam on mnesia with default: always.
  if [[ ${peer_mam:-0} == 1 ]]; then
    prosody_mam='default_archive_policy = true
archive_expires_after = "1w"'
    ej_mam='  mod_mam:
    db_type: mnesia
    default: always'
  fi
  if [[ $bench_tls == 1 ]]; then
    [[ -f $work/certs/localhost.pem ]] || bench_certificate
    tls_toml="[[tls.certificates]]
domains = [\"localhost\"]
cert_file = \"$work/certs/localhost.crt\"
key_file = \"$work/certs/localhost.key\""
    prosody_tls="ssl = { certificate = \"$work/certs/localhost.crt\"; key = \"$work/certs/localhost.key\"; }
c2s_require_encryption = true
modules_enabled = { \"roster\", \"saslauth\", \"tls\", \"disco\", \"ping\", \"offline\", \"carbons\", \"blocklist\", \"vcard_legacy\", \"version\" }
modules_disabled = { \"s2s\", \"limits\", \"mam\", \"admin_socket\" }"
    ej_tls="starttls: true
    starttls_required: true"
    ej_certs="certfiles:
  - \"$work/certs/localhost.pem\""
  else
    prosody_tls="certificates = \"certs\"  -- empty: no TLS
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
-- The modules Starling has on (no MAM, no TLS, no s2s, no HTTP).
modules_enabled = { \"roster\", \"saslauth\", \"disco\", \"ping\", \"offline\", \"carbons\", \"blocklist\", \"vcard_legacy\", \"version\" }
modules_disabled = { \"s2s\", \"tls\", \"limits\", \"mam\", \"admin_socket\" }"
    ej_tls="starttls: false"
  fi

  ## Starling
  mkdir -p "$work/starling/template"
  printf '[c2s]\nstanzas_per_second = 1000000\nmax_connections_per_ip = 1000000\nconnection_rate_per_ip = 0\n' >"$work/starling/bench.toml"
  # MAM off needs the [modules] switches; a starlingd without them (an old BEFORE binary)
  # rejects the unknown table, so ask the binary itself.
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
  [[ -n $tls_toml ]] && echo "$tls_toml" >>"$work/starling/bench.toml"

  if [[ ${peer_mam:-0} == 1 ]]; then
    prosody_tls=${prosody_tls//\"mam\", /}
    prosody_tls=${prosody_tls/modules_enabled = \{ /modules_enabled = \{ \"mam\", }
  fi

  ## Prosody
  mkdir -p "$work/prosody/data" "$work/prosody/certs"
  cat >"$work/prosody/prosody.cfg.lua" <<LUA
-- bench/compare: Prosody for the side-by-side benchmarks; everything under $work/prosody.
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
authentication = "internal_hashed"
storage = "internal"
-- No shaping: mod_limits is not loaded; the limits are lifted as well in case it ever is.
limits = { c2s = { rate = "1000mb/s"; burst = "10s" }; c2s_stream_error_timeout = 60 }
c2s_stanza_size_limit = 262144
max_connections_per_ip = 0
$prosody_tls
$prosody_mam
VirtualHost "localhost"
LUA

  ## ejabberd
  mkdir -p "$work/ejabberd/conf" "$work/ejabberd/spool" "$work/ejabberd/logs"
  head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$work/ejabberd/cookie"
  cp /etc/ejabberd/inetrc "$work/ejabberd/conf/inetrc" 2>/dev/null || echo '{lookup,["file","native"]}.' >"$work/ejabberd/conf/inetrc"
  cat >"$work/ejabberd/conf/ejabberd.yml" <<YML
# bench/compare: ejabberd for the side-by-side benchmarks; everything under $work/ejabberd.
loglevel: warning
log_rotate_count: 0
hosts:
  - localhost
$ej_certs
listen:
  -
    port: $port_ejabberd
    ip: "127.0.0.1"
    module: ejabberd_c2s
    max_stanza_size: 262144
    shaper: none
    access: c2s
    $ej_tls
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
# The modules Starling has on; no mod_stream_mgmt, no HTTP, no s2s listener; mod_mam with peer_mam=1.
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
$ej_mam
YML
  chown -R ejabberd:ejabberd "$work/ejabberd"
  # ejabberdctl run by root su's to the ejabberd user, and su applies PAM's limits: 1024 fds, and
  # ejabberd dies of emfile at ~1000 sessions. setpriv switches user without PAM, so the raised
  # ulimit -n stays; ejabberdctl run as that user then runs erl directly.
  ejctl=(setpriv --reuid=ejabberd --regid=ejabberd --init-groups env HOME="$work/ejabberd" ejabberdctl
         --config-dir "$work/ejabberd/conf" --spool "$work/ejabberd/spool" --logs "$work/ejabberd/logs")
}

# ejabberdctl.cfg for CPUS (taskset list): one scheduler when CPUS is one core, else the
# default (one per core). No epmd: the node listens for distribution on a fixed port of ours
# (ERL_DIST_PORT, OTP 23.1+), loopback only; the cookie is ours. Busy-wait of idle schedulers is
# off (+sbwt none), or their spinning would count as server CPU and steal the generator's core.
write_ejabberdctl_cfg() { # CPUS
  local sched=""
  [[ $1 =~ ^[0-9]+$ ]] && sched="+S 1:1 +SDcpu 1:1 +SDio 1"
  cat >"$work/ejabberd/conf/ejabberdctl.cfg" <<CFG
ERLANG_NODE=$ej_node
ERL_DIST_PORT=$port_ejabberd_dist
INET_DIST_INTERFACE=127.0.0.1
ERL_MAX_PORTS=1100000
ERL_PROCESSES=4000000
ERL_OPTIONS="-setcookie $(cat "$work/ejabberd/cookie") +sbwt none +sbwtdcpu none +sbwtdio none $sched -env ERL_CRASH_DUMP_BYTES 0"
EJABBERD_BYPASS_WARNINGS=true
CFG
  chown ejabberd:ejabberd "$work/ejabberd/conf/ejabberdctl.cfg"
}

# ---------------------------------------------------------------- start / stop
# Starling's store keeps what a run wrote, and a bigger store made later runs measurably slower
# (issue 6: 1092 -> 180 -> 126 logins/s over three runs with MAM on). Each Starling run therefore
# starts from a copy of the freshly provisioned store, as Prosody and ejabberd (no MAM) effectively do.
fresh_starling_data() { # [BINARY]
  rm -rf "$work/starling/data"
  cp -a "$work/starling/template" "$work/starling/data"
  [[ -n ${1:-} && $1 != "$starlingd" ]] && store_for_older_binary "$work/starling/data"
  return 0
}

# store_for_older_binary DATA_DIR: a starlingd from before the archive stored each message once
# (main before session 9) refuses a store with the "mam_bodies" column family, which this tree's
# starlingctl creates when it provisions. An older binary's copy goes without it (the family is
# empty there: nothing is lost). Uses ldb (rocksdb-tools, installed if missing).
store_for_older_binary() {
  command -v ldb >/dev/null || apt-get install -y rocksdb-tools >/dev/null 2>&1 || true
  ldb --db="$1/db" drop_column_family mam_bodies >/dev/null 2>&1 || true
}

# start_server NAME CPUS LOG [BINARY]: NAME starling* (BINARY, default $starlingd; one shard
# per CPU in CPUS), prosody or ejabberd, pinned with taskset -c CPUS. Retries for 80 s (longer
# than a TIME-WAIT) while the port is taken by someone else's socket.
start_server() {
  local attempt
  for attempt in $(seq 40); do
    start_server_once "$@" && return 0
    log "$1 could not bind its port (attempt $attempt); retrying"
    sleep 2
  done
  echo "$me: $1 could not bind its port for 80 s" >&2; tail -30 "$3" >&2; exit 1
}

start_server_once() { # as start_server; returns 1 when the server lost its port to someone else
  local name=$1 cpus=$2 logf=$3 bin=${4:-$starlingd} port p
  server_name=$name
  case $name in starling*) port=$port_starling ;; prosody) port=$port_prosody ;; ejabberd) port=$port_ejabberd ;; esac
  wait_bindable "$port"
  [[ $name == ejabberd ]] && wait_bindable "$port_ejabberd_dist"
  case $name in
    starling*)
      [[ ${keep_data:-0} == 1 ]] || fresh_starling_data "$bin"
      local shards
      shards=$(taskset -c "$cpus" nproc)
      taskset -c "$cpus" "$bin" --config "$work/starling/bench.toml" --data-dir "$work/starling/data" \
        --c2s-port "$port" --c2s-tls-port 0 --metrics-port 0 --shards "$shards" ${starling_flags[@]+"${starling_flags[@]}"} \
        --log-level warn >"$logf" 2>&1 &
      server_pid=$! measure_pid=$!
      ;;
    prosody)
      taskset -c "$cpus" prosody -F --config "$work/prosody/prosody.cfg.lua" >"$logf" 2>&1 &
      server_pid=$! measure_pid=$!
      ;;
    ejabberd)
      write_ejabberdctl_cfg "$cpus"
      taskset -c "$cpus" "${ejctl[@]}" foreground >"$logf" 2>&1 &
      server_pid=$!
      ;;
  esac
  if ! wait_port "$port" "$server_pid" "$name" "$logf"; then
    if grep -qiE 'address already in use|eaddrinuse|Failed to open server port' "$logf"; then
      kill -0 "$server_pid" 2>/dev/null && kill_tree "$server_pid"
      wait "$server_pid" 2>/dev/null || true
      server_pid= measure_pid=
      return 1
    fi
    echo "$me: $name did not start:" >&2; tail -30 "$logf" >&2; exit 1
  fi
  if [[ $name == ejabberd ]]; then
    measure_pid=
    for p in $(descendants "$server_pid"); do
      [[ $(cat /proc/"$p"/comm 2>/dev/null) == beam.smp ]] && measure_pid=$p
    done
    [[ -n $measure_pid ]] || { echo "$me: no beam.smp below $server_pid" >&2; exit 1; }
  fi
  server_port=$port
}

stop_server() { # LOG: stop what start_server started (ejabberd: ejabberdctl stop first)
  local rc=0
  [[ -n ${server_pid:-} ]] || return 0
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
# provision NAME USERS: accounts user1..userUSERS@localhost, password "pass", SCRAM (4096
# iterations), written into $work/json/provision-NAME.json with the time it took. Starling and
# Prosody are provisioned while stopped; ejabberd is started for it (on both cores) and stopped.
provision() {
  local name=$1 users=$2 t0 t1
  t0=$(date +%s.%N)
  case $name in
    starling)
      # Into a template: every Starling run starts from a copy (see fresh_starling_data).
      "$repo/bench/loadgen/provision.sh" --starlingctl "$starlingctl" --data-dir "$work/starling/template" \
        --users "$users" --prefix user --password pass --domain localhost >/dev/null 2>"$work/logs/provision-starling.log"
      ;;
    prosody)
      # mod_auth_internal_hashed's account files, written directly: one PBKDF2 for all (one salt),
      # which the server cannot tell from per-user salts; prosodyctl would take ~0.1 s per user.
      "$PYTHON" "$repo/bench/compare/provision_prosody.py" --data-dir "$work/prosody/data" --domain localhost \
        --users "$users" --prefix user --password pass
      ;;
    ejabberd)
      # ejabberdctl register costs ~1 s per call (a new Erlang VM each time). Instead one RPC:
      # register user1 the normal way, then copy its SCRAM passwd record to user2..userN with
      # mnesia:dirty_write inside the node (the same record a registration would write).
      # Under load, ejabberd's first start (creating its Mnesia schema) has crashed once in
      # mnesia_tm ("FATAL ** mnesia_tm crashed: badarg ... release_schema_commit_lock"); a second
      # start on a fresh spool went through. So: up to 3 attempts, each on an empty spool.
      local attempt
      for attempt in 1 2 3; do
        start_server ejabberd 0-1 "$work/logs/ejabberd-provision.log"
        t0=$(date +%s.%N)
        provision_ejabberd_once "$users" && break
        stop_server "$work/logs/ejabberd-provision.log"
        ((attempt < 3)) || { echo "$me: ejabberd provisioning failed:" >&2; cat "$work/logs/provision-ejabberd.log" >&2; exit 1; }
        log "ejabberd provisioning failed (attempt $attempt): again on an empty spool"
        cat "$work/logs/provision-ejabberd.log" >>"$work/logs/provision-ejabberd.failed.log"
        find "$work/ejabberd/spool" -mindepth 1 -delete
      done
      ;;
  esac
  t1=$(date +%s.%N)
  [[ $name == ejabberd ]] && stop_server "$work/logs/ejabberd-provision.log"
  awk -v n="$users" -v s="$t0" -v e="$t1" -v name="$name" \
    'BEGIN { printf "{\"server\": \"%s\", \"users\": %d, \"seconds\": %.3f}\n", name, n, e - s }' >"$work/json/provision-$name.json"
  log "provisioned $users accounts on $name in $(awk -v s="$t0" -v e="$t1" 'BEGIN { printf "%.2f", e - s }') s"
}

provision_ejabberd_once() { # USERS: the RPC into the running node; 1 when it failed
  (cd "$work/ejabberd" && erl -noshell -hidden -sname "prov$$" -setcookie "$(cat "$work/ejabberd/cookie")" \
        -erl_epmd_port "$port_ejabberd_dist" -start_epmd false -dist_listen false -eval "
          N = '$ej_node', H = <<\"localhost\">>,
          ok = rpc:call(N, mnesia, wait_for_tables, [[passwd], 60000]),
          R1 = rpc:call(N, ejabberd_auth, try_register, [<<\"user1\">>, H, <<\"pass\">>]),
          [Rec] = rpc:call(N, mnesia, dirty_read, [passwd, {<<\"user1\">>, H}]),
          F = fun() -> lists:foreach(fun(I) ->
                  ok = mnesia:dirty_write(setelement(2, Rec, {<<\"user\", (integer_to_binary(I))/binary>>, H}))
                end, lists:seq(2, $1)), ok end,
          R2 = rpc:call(N, erlang, apply, [F, []]),
          C = rpc:call(N, mnesia, table_info, [passwd, size]),
          io:format(\"register user1: ~p, copies: ~p, passwd records: ~p~n\", [R1, R2, C]),
          halt(case {R2, C >= $1} of {ok, true} -> 0; _ -> 1 end)." >"$work/logs/provision-ejabberd.log" 2>&1)
}
