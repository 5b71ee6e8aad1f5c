#!/usr/bin/env bash
# Creates the load generator's accounts PREFIX1..PREFIXN@DOMAIN with one password on Starling,
# in one `starlingctl user import -` (one store transaction; PBKDF2 runs in starlingctl).
# With starlingd running, the import goes through its admin socket; otherwise starlingctl
# opens the store in DATA_DIR directly.
#
#   bench/loadgen/provision.sh --starlingctl build/loadgen/broker/starlingctl --data-dir DIR \
#       --users 1000 [--prefix user] [--password pass] [--domain localhost] [--first 1]
set -euo pipefail

ctl=starlingctl data_dir= users= prefix=user password=pass domain=localhost first=1
while [[ $# -gt 0 ]]; do
  case "$1" in
    --starlingctl) ctl=$2; shift 2 ;;
    --data-dir) data_dir=$2; shift 2 ;;
    --users) users=$2; shift 2 ;;
    --prefix) prefix=$2; shift 2 ;;
    --password) password=$2; shift 2 ;;
    --domain) domain=$2; shift 2 ;;
    --first) first=$2; shift 2 ;;
    -h|--help) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "provision.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ -n $data_dir && -n $users ]] || { echo "provision.sh: --data-dir and --users are required" >&2; exit 2; }
case "$password" in *,*|*$'\n'*) echo "provision.sh: the password must not hold ',' or a newline" >&2; exit 2 ;; esac

last=$((first + users - 1))
start=$(date +%s.%N)
awk -v f="$first" -v l="$last" -v p="$prefix" -v d="$domain" -v pw="$password" \
  'BEGIN { for (i = f; i <= l; i++) printf "%s%d@%s,%s\n", p, i, d, pw }' |
  "$ctl" --data-dir "$data_dir" --domain "$domain" user import -
end=$(date +%s.%N)
awk -v n="$users" -v s="$start" -v e="$end" \
  'BEGIN { printf "provision.sh: %d accounts in %.2f s (%.0f/s)\n", n, e - s, n / (e - s) }' >&2
