#!/usr/bin/env python3
"""Connection limits that serve fleets behind carrier NAT and still stop floods: with the
defaults, hundreds of devices behind one address all get in; an address that opens connections
faster than c2s.connection_rate_per_ip (burst of ten seconds' worth) is refused past the burst
while another address is not; the refusals are counted by reason in /metrics."""
import asyncio
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

FEATURES = harness.FEATURES_END


async def open_streams(port, n, local="127.0.0.1"):
    """Opens n plain connections from `local` and sends a stream header on each; returns how
    many got stream features."""
    async def one():
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(harness.HOST, port, local_addr=(local, 0)), 5)
        except (OSError, asyncio.TimeoutError):
            return None, False
        writer.write(harness.stream_header().encode())
        got = b""
        try:
            while not FEATURES.search(got.decode("utf-8", "replace")):
                chunk = await asyncio.wait_for(reader.read(4096), 5)
                if not chunk:
                    break
                got += chunk
        except (OSError, asyncio.TimeoutError):
            pass
        return writer, bool(FEATURES.search(got.decode("utf-8", "replace")))
    results = await asyncio.gather(*(one() for _ in range(n)))
    return results


def close_all(results):
    for w, _ in results:
        if w is not None:
            w.close()


async def test_a_fleet_behind_one_address_gets_in_with_the_defaults(t):
    s = await t.server(shards=1)
    results = await open_streams(s.c2s_port, 300)
    ok = sum(1 for _, good in results if good)
    close_all(results)
    assert ok == 300, f"only {ok} of 300 connections from one address were served"


async def test_a_flooding_address_is_refused_past_its_burst_and_others_are_not(t):
    s = await t.starling_with("[c2s]\nconnection_rate_per_ip = 5\n", shards=1)
    flood = await open_streams(s.c2s_port, 80)
    served = sum(1 for _, good in flood if good)
    # A burst of 10 s x 5/s = 50 (less the harness's own readiness probes of the port, plus
    # what refilled meanwhile); the rest refused.
    assert 44 <= served <= 60, f"{served} of 80 flood connections were served"
    other = await open_streams(s.c2s_port, 10, local="127.0.0.2")
    assert all(good for _, good in other), "another address was refused too"
    close_all(flood)
    close_all(other)
    text = await asyncio.get_event_loop().run_in_executor(None, s.metrics_text)
    m = re.search(r'starling_connections_refused_total\{reason="rate"\}\s+(\S+)', text)
    assert m and float(m.group(1)) >= 80 - served, text[:2000]


if __name__ == "__main__":
    harness.main(globals())
