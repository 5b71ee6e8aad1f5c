#!/usr/bin/env python3
"""starling-loadgen against a real starlingd: it provisions accounts in-band (XEP-0077), logs
them in over plain TCP and STARTTLS, and its chat and presence scenarios lose nothing.

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


if __name__ == "__main__":
    harness.main(globals())
