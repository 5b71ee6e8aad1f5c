#!/usr/bin/env bash
# Installs what bench/compare/run.sh needs from Debian: Prosody, ejabberd, tsung, gnuplot.
# Idempotent: packages already installed are left alone (no apt-get at all when all are there).
# The packages' postinst would start system-wide services on 5222/5269/5280: a policy-rc.d that
# answers 101 ("action forbidden") keeps them down during the install (an existing policy-rc.d,
# e.g. Docker's, is kept as it is; ours is removed afterwards), and any prosody/ejabberd system
# service that runs anyway is stopped. The benchmark runs its own instances under a temp dir.
#
#   bench/compare/install.sh          (as root; FORCE=1 runs apt-get even when all is present)
set -euo pipefail

pkgs=(prosody ejabberd erlang-base tsung gnuplot-nox python3 procps util-linux)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done

epmd_before=$(pgrep -x epmd || true)
if ((${#missing[@]})) || [[ ${FORCE:-0} == 1 ]]; then
  [[ $(id -u) == 0 ]] || { echo "install.sh: need root to install: ${missing[*]}" >&2; exit 1; }
  ours=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\n# bench/compare/install.sh: no service starts during the install\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    ours=1
  fi
  remove_policy() { if ((ours)); then rm -f /usr/sbin/policy-rc.d; fi; }
  trap remove_policy EXIT
  echo "install.sh: apt-get install ${missing[*]:-${pkgs[*]}}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends "${pkgs[@]}" >&2 || {
    apt-get update -q >&2
    apt-get install -y -q --no-install-recommends "${pkgs[@]}" >&2
  }
fi

# Whatever happened during the install (or before it): no system-wide instance may stay up,
# it would take 5222/5269/5280 and a CPU share. Only the Debian services are touched, never
# the benchmark's own instances (those run under /tmp/starling-compare.*).
stop_system_services() {
  local svc
  for svc in prosody ejabberd; do
    if command -v systemctl >/dev/null && systemctl is-active --quiet "$svc" 2>/dev/null; then
      systemctl stop "$svc" || true
    fi
    if [[ -x /etc/init.d/$svc ]] && /etc/init.d/"$svc" status >/dev/null 2>&1; then
      /etc/init.d/"$svc" stop >/dev/null 2>&1 || true
    fi
  done
  # System prosody: its pid file; system ejabberd: the node ejabberd@<host> in /var/lib/ejabberd.
  if [[ -s /run/prosody/prosody.pid ]] && kill -0 "$(cat /run/prosody/prosody.pid)" 2>/dev/null; then
    kill -TERM "$(cat /run/prosody/prosody.pid)" || true
  fi
  # (Asked through epmd -names, which starts nothing; `ejabberdctl status` would start an epmd.)
  if command -v epmd >/dev/null && epmd -names 2>/dev/null | grep -q '^name ejabberd '; then
    timeout 60 ejabberdctl stop >/dev/null 2>&1 || true
  fi
}
stop_system_services

# ejabberd's postinst also leaves an epmd (Erlang port mapper, port 4369) behind. If the install
# started it (none ran before) and no Erlang node uses it, stop it; run.sh needs none on 4369.
if [[ -z $epmd_before ]] && pgrep -x epmd >/dev/null && command -v epmd >/dev/null &&
  ! epmd -names 2>/dev/null | grep -q '^name '; then
  epmd -kill >/dev/null 2>&1 || true
fi

for port in 5222 5269 5280; do
  if ss -ltnH "sport = :$port" | grep -q .; then
    echo "install.sh: warning: something still listens on $port:" >&2
    ss -ltnpH "sport = :$port" >&2
  fi
done

for b in prosody prosodyctl ejabberdctl erl tsung gnuplot taskset; do
  command -v "$b" >/dev/null || { echo "install.sh: $b is missing after the install" >&2; exit 1; }
done
echo "install.sh: prosody $(dpkg-query -W -f='${Version}' prosody), ejabberd $(dpkg-query -W -f='${Version}' ejabberd)," \
  "tsung $(dpkg-query -W -f='${Version}' tsung), gnuplot $(dpkg-query -W -f='${Version}' gnuplot-nox)" >&2
