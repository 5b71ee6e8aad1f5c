#!/usr/bin/env bash
# Server CPU per TLS 1.3 handshake: OpenSSL 3.0 through Starling's engine (tls_handshake_bench)
# and wolfSSL 5.5.4 (wolfssl_handshake_bench), both Debian 12's, in memory, alternating, same
# certificate type (ECDSA P-256, X25519 key exchange). Issue 13: is another TLS library from
# Debian a way to the login goals? Installs libwolfssl-dev (apt) if it is missing.
#
#   bench/run-tls-engine-compare.sh [BUILD_DIR] (default build/release)   ROUNDS=3 N=300
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../build/release}
ROUNDS=${ROUNDS:-3}
N=${N:-300}
dpkg -s libwolfssl-dev >/dev/null 2>&1 || apt-get install -y libwolfssl-dev >/dev/null
cmake "$build" >/dev/null  # picks wolfSSL up
cmake --build "$build" --target tls_handshake_bench wolfssl_handshake_bench >/dev/null
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
openssl ecparam -name prime256v1 -genkey -noout -out "$work/key.pem" 2>/dev/null
openssl req -new -x509 -key "$work/key.pem" -out "$work/cert.pem" -days 1 -subj /CN=localhost \
  -addext "subjectAltName=DNS:localhost" 2>/dev/null
for r in $(seq "$ROUNDS"); do
  echo "round $r (load average $(cut -d' ' -f1 /proc/loadavg))"
  echo -n "  OpenSSL 3.0 (Starling's engine): "; "$build/bench/tls_handshake_bench" "$N" 5 tls1.3 full | grep median
  echo -n "  OpenSSL 3.0 (Starling's engine): "; "$build/bench/tls_handshake_bench" "$N" 5 tls1.3 resumed | grep median
  "$build/bench/wolfssl_handshake_bench" "$work/cert.pem" "$work/key.pem" "$N" | grep median | sed 's/^/  wolfSSL 5.5.4: /'
done
