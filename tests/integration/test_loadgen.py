#!/usr/bin/env python3
"""starling-loadgen against a real starlingd: it provisions accounts in-band (XEP-0077), logs
them in over plain TCP and STARTTLS, its chat and presence scenarios lose nothing, and its
reconnect scenario resumes TLS, uses FAST tokens and never counts a failed login.

Short runs only: this checks that the generator's protocol flows work end to end, not the
broker's speed (bench/run-broker-bench.sh does that). Skipped when the loadgen is not built
(STARLING_BUILD_DIR/bench/loadgen/starling-loadgen) or the server is not Starling (opening
registration needs starlingd's configuration file).
"""
import asyncio
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

OPEN = '[register]\nopen = true\nper_ip_per_minute = 0\n'


def loadgen_path() -> str:
    # STARLING_LOADGEN: the generator is a client, so a sanitizer build of the server (which
    # builds no benchmarks) is driven by the release build's generator.
    path = os.environ.get("STARLING_LOADGEN") or os.path.join(harness.BUILD_DIR, "bench", "loadgen",
                                                                "starling-loadgen")
    if not os.access(path, os.X_OK):
        raise harness.Skip(f"{path} not built (ninja starling-loadgen)")
    return path


async def server(t):
    return await t.starling_with(OPEN, plaintext=True, shards=2, max_connections_per_ip=1000)


async def loadgen(s, *args, timeout: float = 60.0):
    """Runs the generator against `s`; returns (exit status, the JSON summary)."""
    proc = await asyncio.create_subprocess_exec(
        loadgen_path(), *args, "--port", str(s.c2s_port), "--domain", s.domain, "--no-progress",
        "--timeout", str(int(timeout - 5)),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    try:
        summary = json.loads(out.decode())
    except ValueError:
        raise AssertionError(f"loadgen {args[0]}: no JSON summary (exit {proc.returncode}): {err.decode()[-2000:]}")
    return proc.returncode, summary


@harness.timeout(90)
async def test_register_provisions_accounts_then_reports_them_existing(t):
    # 60 accounts registered in-band, one connection each; the second run finds them all there.
    s = await server(t)
    prefix = harness.unique("lg")
    rc, j = await loadgen(s, "register", "--users", "60", "--prefix", prefix, "--password", "pw")
    assert rc == 0, j
    assert (j["register"]["created"], j["register"]["existing"], j["register"]["failed"]) == (60, 0, 0), j["register"]
    rc, j = await loadgen(s, "register", "--users", "60", "--prefix", prefix, "--password", "pw")
    assert rc == 0, j
    assert (j["register"]["created"], j["register"]["existing"]) == (0, 60), j["register"]
    # The accounts log in and chat: nothing lost, nothing doubled.
    rc, j = await loadgen(s, "chat", "--users", "60", "--prefix", prefix, "--password", "pw",
                          "--rate", "600", "--duration", "1")
    assert rc == 0, j
    assert j["chat"]["lost"] == 0 and j["chat"]["duplicates"] == 0 and j["chat"]["delivered"] > 0, j["chat"]


@harness.timeout(60)
async def test_register_failures_are_counted_by_condition_and_fail_the_run(t):
    # A username that is not a valid localpart: jid-malformed, exit status 1 unless tolerated.
    s = await server(t)
    rc, j = await loadgen(s, "register", "--users", "3", "--prefix", "bad@x")
    assert rc == 1, j
    assert j["register"]["failed_by_condition"] == {"jid-malformed": 3}, j["register"]
    rc, _ = await loadgen(s, "register", "--users", "3", "--prefix", "bad@x", "--max-loss", "3")
    assert rc == 0


@harness.timeout(90)
async def test_presence_over_starttls_reaches_every_contact(t):
    # 20 devices in a ring, each subscribed both ways with 2 neighbours on each side, over
    # STARTTLS (self-signed certificate: not verified, the generator's default).
    s = await server(t)
    prefix = harness.unique("lgp")
    rc, j = await loadgen(s, "register", "--users", "20", "--prefix", prefix, "--password", "pw")
    assert rc == 0, j
    rc, j = await loadgen(s, "presence", "--users", "20", "--prefix", prefix, "--password", "pw",
                          "--neighbours", "2", "--rate", "100", "--duration", "1", "--tls", "starttls")
    assert rc == 0, j
    assert j["setup"]["subscriptions_confirmed"] == 80, j["setup"]
    p = j["presence"]
    assert p["lost"] == 0 and p["duplicates"] == 0 and p["non_neighbour_receipts"] == 0, p
    assert p["delivered"] == p["notifications_expected"] == 4 * p["sent"], p


@harness.timeout(120)
async def test_reconnect_resumes_tls_and_uses_fast_tokens_and_survives_a_storm(t):
    # issue 13: the reconnect scenario's OpenSSL client over STARTTLS. Every resumed login
    # offers the ticket of the device's last connection: the broker must take all of them
    # (a fresh ticket per resumption) and every login must use the FAST token it was given.
    s = await server(t)
    prefix = harness.unique("lgr")
    rc, j = await loadgen(s, "register", "--users", "12", "--prefix", prefix, "--password", "pw")
    assert rc == 0, j
    common = ("--prefix", prefix, "--password", "pw", "--tls", "starttls")
    rc, j = await loadgen(s, "reconnect", "--mode", "resume", "--auth", "sasl2", "--users", "4",
                          "--duration", "1", *common)
    assert rc == 0, j
    lg = j["logins"]
    assert lg["ok"] >= 4 and lg["failed"] == 0, j
    assert lg["tls_offered"] == lg["ok"] and lg["tls_resumed"] == lg["ok"], lg
    assert lg["fast"] == lg["ok"], lg
    assert j["tls_negotiated"].startswith("TLSv1.3"), j["tls_negotiated"]
    # RFC 6120 SCRAM + bind with full handshakes: nothing resumed, nothing failed.
    rc, j = await loadgen(s, "reconnect", "--mode", "full", "--auth", "legacy", "--users", "4",
                          "--duration", "1", *common)
    assert rc == 0, j
    assert j["logins"]["ok"] >= 4 and j["logins"]["failed"] == 0 and j["logins"]["tls_resumed"] == 0, j["logins"]
    assert j["auth_used"].startswith("legacy SCRAM"), j["auth_used"]
    # A storm: 12 devices bound, links cut, all bound again, resumed and with FAST.
    rc, j = await loadgen(s, "reconnect", "--mode", "storm", "--auth", "sasl2", "--users", "12",
                          "--connect-window", "4", *common)
    assert rc == 0, j
    st = j["storm"]
    assert (st["devices"], st["links_lost"], st["bound_again"], st["not_bound"]) == (12, 12, 12, 0), st
    assert j["logins"]["tls_resumed"] == 12 and j["logins"]["fast"] == 12, j["logins"]
    assert st["per_device"]["count"] == 12, st


@harness.timeout(60)
async def test_reconnect_never_counts_a_failed_login(t):
    # A wrong password: every attempt fails (by reason), none is a login, the exit status is 1.
    # The broker answers a failed SASL exchange after auth_failure_delay_ms (1 s): 3 s of trying.
    s = await server(t)
    prefix = harness.unique("lgw")
    rc, j = await loadgen(s, "register", "--users", "2", "--prefix", prefix, "--password", "pw")
    assert rc == 0, j
    rc, j = await loadgen(s, "reconnect", "--mode", "full", "--users", "2", "--duration", "3",
                          "--prefix", prefix, "--password", "wrong", "--tls", "starttls")
    assert rc == 1, j
    assert j["logins"]["ok"] == 0 and j["logins"]["failed"] > 0, j["logins"]
    assert any(k.startswith("sasl failure") for k in j["errors"]), j["errors"]


if __name__ == "__main__":
    harness.main(globals())
